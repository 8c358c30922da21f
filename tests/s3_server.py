"""A local S3-compatible server for the tests: moto's server mode (what Ray's own tests use) on
loopback, behind a TCP relay that a test can take down and bring back: the store goes away (its
clients' connections refused) and returns with everything it held, as a restarted S3 endpoint would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class Relay:
    """Forwards TCP connections from a loopback port to another; stop() refuses new ones and cuts
    those open, start() listens again on the same port."""

    def __init__(self, target_port: int):
        self.target_port, self.port = target_port, free_port()
        self._listener, self._open = None, []

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def stop(self) -> None:
        self._listener.close()
        for connection in self._open:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()
        self._open = []

    def _accept(self, listener) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._open += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pipe, args=(source, target), daemon=True).start()


def _pipe(source, target) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class S3Server:
    """moto_server on loopback, reached through a Relay: `endpoint` is what clients use."""

    def __init__(self, log: Path):
        self.port = free_port()
        moto = Path(sys.executable).with_name("moto_server")
        self._process = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                                         stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or self._process.poll() is not None:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        self.relay = Relay(self.port)
        self.relay.start()
        self.endpoint = f"http://127.0.0.1:{self.relay.port}"
        self.env = {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def make_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials()).create_bucket(Bucket=name)

    def stop(self) -> None:
        self.relay.stop()
        self._process.terminate()
        self._process.wait(timeout=30)


def _boto_credentials() -> dict:
    return {"aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "region_name": CREDENTIALS["AWS_DEFAULT_REGION"]}


def files_under(uri: str) -> list[str]:
    """The paths of the files under an s3:// URI (relative to it), as the store lists them now."""
    import pyarrow.fs

    filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
    selector = pyarrow.fs.FileSelector(path, recursive=True, allow_not_found=True)
    return sorted(os.path.relpath(info.path, path) for info in filesystem.get_file_info(selector)
                  if info.type == pyarrow.fs.FileType.File)
