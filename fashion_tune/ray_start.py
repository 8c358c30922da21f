"""Ray for a command: a local Ray of our own, or a running cluster joined within a time limit.

search and serve both start here, so both fail the same way, in one line, on a cluster that
cannot be reached, and neither prints Ray's start-up notices that ask nothing of the user.

What Ray's worker processes print (TensorFlow's warnings in a trial, a replica's access log, the
traceback a worker prints when Ray's shutdown stops it in the middle of garbage collection)
stays in Ray's log files (/tmp/ray/session_latest/logs) rather than being forwarded to the
terminal: the driver tells the story (search/progress.py), and a failed trial's error is read from its
error file. `--debug` forwards them again.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import urllib.parse

from fashion_tune.errors import UserError
from fashion_tune.quiet_tensorflow import debugging


def start_local(**options) -> None:
    """ray.init("local"): always a new Ray of our own, never a cluster someone left running here.

    Ray turns token authentication on for it and says so at every start; nothing to act on.
    """
    import ray

    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=debugging(),
             **options)


def join_cluster(address: str, timeout: float) -> None:
    """ray.init(address), within `timeout` seconds or not at all.

    Ray retries an unreachable head without end, printing a warning every 5 s and deaf to SIGTERM
    (issue 15). So the head's port is tried first (refused: at once; no answer: after `timeout`),
    and a watchdog ends the process if Ray still has not joined by then. Nothing has been written
    yet (search.new_study and resume_study, serve.serve_forever).
    """
    import ray

    host_port = _host_and_port(address)
    if host_port:
        try:
            socket.create_connection(host_port, timeout=timeout).close()
        except OSError as e:
            raise UserError(f"cannot reach a Ray cluster at --address {address} within {timeout:g} s "
                            f"({e.strerror or type(e).__name__.lower()}); check that its head is running (`ray "
                            "status` there; `ray up cluster/config.yaml` starts one) and the host and port, or "
                            "raise --connect-timeout") from None

    def give_up():
        # The port answered, so something listens there: most often a head that wants its token.
        print(f"fashion-tune: error: the Ray cluster at --address {address} did not let Ray join within "
              f"{timeout:g} s; if it uses token authentication (heads of Ray 2.60 do), export "
              "RAY_AUTH_MODE=token with the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN "
              "(cluster/README.md); else check it is a Ray head, or raise --connect-timeout",
              file=sys.stderr, flush=True)
        os._exit(2)

    if not debugging():
        # The driver's C++ client warns every second while a head does not let it in; errors still show.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    watchdog = threading.Timer(timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=debugging())
    except ray.exceptions.AuthenticationError:
        raise UserError(f"the Ray cluster at --address {address} asks for its token: export RAY_AUTH_MODE=token, "
                        "with the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN (cluster/README.md)") from None
    finally:
        watchdog.cancel()


def _host_and_port(address: str):
    """(host, port) of 'host:port' or 'ray://host:port'; None for 'auto' and other forms."""
    parsed = urllib.parse.urlsplit(address if "://" in address else f"gcs://{address}")
    try:
        return (parsed.hostname, parsed.port) if parsed.hostname and parsed.port else None
    except ValueError:  # a port that is not a number
        return None
