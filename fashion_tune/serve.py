"""The retailer's service: upload a product photo, get its category. Built on Ray Serve, so the
same command runs one replica here or several on a Ray cluster.

  GET  /                    a page: drop photos, see each one's category and probabilities
  POST /v1/classify         one image: multipart (field `file`) or the raw bytes as the body
  POST /v1/classify/batch   several images: multipart, any number of `files` fields
  GET  /v1/model            the model card
  GET  /healthz             ok once the model is loaded

Both classify endpoints take `?include_input=true` (or 1; false or 0 is the default): each
classified result then carries "model_input", the 28x28 image the model saw, as a PNG data URL
("data:image/png;base64,..."). Any other value of include_input is a 400.

The model is an ExportDir (its model card gives the review threshold). Images go through
images.to_model_input_from_bytes, the code `predict` uses. Every error has one shape,
{"error": "<one line naming the file and the problem>"}, and the service keeps serving:
  400  not a usable image (empty, not an image, broken, a decompression bomb), a bad include_input,
       more than MAX_BATCH_FILES files in one request
  404  no such endpoint;  405  a wrong method (GET /v1/classify)
  413  over the size limit (--max-mb), told as soon as the body passes it, Content-Length or not
  415  an unsupported content type
  422  no garment found: a readable image with nothing in it to classify (blank, uniform, noise)
In /v1/classify/batch the request answers 200 and each file's result is a classification or
that file's {"file", "error", "status"}; the other files are still classified.

Throughput: each request is decoded and preprocessed on its own, then waits up to
BATCH_WAIT_TIMEOUT_S for other requests to the same replica, and up to MAX_BATCH_SIZE inputs go
through the model in one call (Ray Serve's @serve.batch); a multi-file request calls the model
once itself.
"""

# No `from __future__ import annotations` here, unlike the other modules: FastAPI reads the routes'
# annotations (request: Request) at run time, and Request is imported inside build_app.
import errno
import logging
import os
import signal
import socket
from importlib import resources
from typing import Optional

import numpy as np

from fashion_tune import images, ray_start
from fashion_tune.classifier import ExportedModel
from fashion_tune.errors import UserError
from fashion_tune.layout import ExportDir
from fashion_tune.quiet_tensorflow import configure_tensorflow

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # per image
MAX_BATCH_FILES = 32
MULTIPART_OVERHEAD = 64 * 1024  # room for a form's boundaries and part headers around its files
RAW_TYPES = ("image/", "application/octet-stream")
FLAG_VALUES = {"true": True, "1": True, "false": False, "0": False}
ENDPOINTS = "GET /, POST /v1/classify, POST /v1/classify/batch, GET /v1/model, GET /healthz"

# Batching of concurrent single-image requests (@serve.batch), chosen with benchmarks/serve_load.py
# on 2 cores (results/reference/benchmarks.md, 2026-11-22), when a model call was eager Keras,
# mostly fixed cost (~17 ms; +1-2 ms an image); compiled (classifier.py) it is 2.3 ms for one
# image and 5.0 for 8, and the settings measured the same over HTTP (48.7 req/s). The call blocks the
# replica's event loop, and the requests that arrive meanwhile make up the next batch by
# themselves; the short wait also pairs requests that arrive a few ms apart (2 clients: 39 req/s,
# against 20 with no wait), at a cost of 5 ms to a request that comes alone. At 8 clients, waits
# of 0-20 ms and batches of 4-16 measured the same within the noise.
MAX_BATCH_SIZE = 8
BATCH_WAIT_TIMEOUT_S = 0.005
# CPUs a replica is given (Ray's num_cpus); its TensorFlow gets as many threads. With TensorFlow's
# default of one a core, the replica spent 9.5 ms of CPU a request instead of 8.9, and answered 1.05x
# fewer requests (benchmarks/serve_load.py, alternated; results/reference/benchmarks.md).
REPLICA_CPUS = 1
# Requests one replica takes at once: Ray's default (5) caps every batch at 5 (34 req/s against 45-53).
MAX_ONGOING_REQUESTS = 2 * MAX_BATCH_SIZE


class RequestError(Exception):
    """A client mistake: answered with `status` and a JSON {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ModelService:
    """The model and what the endpoints do with it; no web framework here, so it tests plainly."""

    def __init__(self, export: ExportDir, max_bytes: int = DEFAULT_MAX_BYTES):
        self.exported = ExportedModel(export)
        self.max_bytes = max_bytes

    def decode(self, name: str, raw: bytes) -> np.ndarray:
        """One upload -> model input; RequestError 413 (too large), 422 (no garment in it) or
        400 (not a usable image)."""
        self.check_size(len(raw), name)
        try:
            return images.to_model_input_from_bytes(raw, name)
        except images.NoGarmentFound as e:
            raise RequestError(422, str(e)) from None
        except images.ImageError as e:
            raise RequestError(400, str(e)) from None

    def classify_many(self, uploads: list[tuple[str, bytes]], include_input: bool = False) -> list[dict]:
        """(name, bytes) pairs -> one result each: a classification or that file's error; one
        model call for all the usable images."""
        decoded, results = [], []
        for name, raw in uploads:
            try:
                decoded.append((len(results), name, self.decode(name, raw)))
                results.append(None)
            except RequestError as e:
                results.append({"file": name, "error": str(e), "status": e.status})
        if decoded:
            for (i, name, x), probs in zip(decoded, self.predict_each([x for _, _, x in decoded])):
                results[i] = self.exported.answer(name, x, probs, include_input)
        return results

    def predict_each(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Model inputs (28, 28, 1) each -> their probabilities, in one model call."""
        return list(self.exported.probabilities(np.stack(inputs)))

    def check_size(self, size: int, name: str = "the upload") -> None:
        """413 when one image's bytes exceed the limit."""
        self._refuse_over(size, self.max_bytes, name)

    def check_form_size(self, size: int) -> None:
        """413 when a multipart request is over the limit (--max-mb is the request's, however many
        files it carries), with room for the form's own headers."""
        self._refuse_over(size, self.max_bytes + MULTIPART_OVERHEAD, "the request")

    @staticmethod
    def _refuse_over(size: int, limit: int, name: str) -> None:
        if size > limit:
            raise RequestError(413, f"{name}: {size:,} bytes is over the limit of {limit:,}")


def flag(query, name: str) -> bool:
    """A true/false query parameter (absent: false); 400 for any other value."""
    value = query.get(name, "false")
    if value.lower() not in FLAG_VALUES:
        raise RequestError(400, f"{name} is {value!r}, must be true or false (or 1 or 0)")
    return FLAG_VALUES[value.lower()]


def page_html() -> str:
    return resources.files("fashion_tune").joinpath("page.html").read_text()


async def read_body(request, check_size) -> bytes:
    """The raw request body, refused (413) by check_size(bytes) as soon as it is too large: by its
    Content-Length before a byte is read, and while reading, for a chunked upload that has none."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        check_size(int(declared))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        check_size(len(body))
    return bytes(body)


async def read_form(request, service: ModelService):
    """The multipart form of a request within the size limit (else 413, read no further); more than
    MAX_BATCH_FILES files is a 400 in our words."""
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    body = await read_body(request, service.check_form_size)

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, replay).form(max_files=MAX_BATCH_FILES)
    except HTTPException as e:
        if "Too many files" in str(e.detail):
            raise RequestError(400, f"more than {MAX_BATCH_FILES} files in one request; send at most "
                                    f"{MAX_BATCH_FILES} a request") from None
        raise RequestError(e.status_code, f"the form cannot be read ({e.detail})") from None


async def uploads_from(request, service: ModelService, field: Optional[str]) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image in a request: the multipart field `field` (None: every file),
    or, for one image, the raw body; 400, 413 or 415 otherwise."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        # The whole request first, within the limit; each image again in decode().
        form = await read_form(request, service)
        files = [(v.filename or key, await v.read()) for key, v in form.multi_items()
                 if hasattr(v, "read") and (field is None or key == field)]
        if not files:
            raise RequestError(400, f"no file in the form; send the image in a field named '{field or 'files'}'")
        return files
    if field is not None and content_type.startswith(RAW_TYPES):
        return [("body", await read_body(request, service.check_size))]
    expected = "multipart/form-data" + (", image/* or application/octet-stream" if field else "")
    raise RequestError(415, f"content type {content_type or 'none'!r} is not accepted; send {expected}")


def build_app(export: ExportDir, max_bytes: int):
    """The FastAPI app on a Ray Serve deployment (not yet bound: call .bind())."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse
    from ray import serve

    app = FastAPI(title="fashion_tune", description="Classify product photos into 10 clothing categories.")
    answer_errors_in_one_shape(app)

    @serve.deployment(name="classifier", ray_actor_options={"num_cpus": REPLICA_CPUS},
                      max_ongoing_requests=MAX_ONGOING_REQUESTS)
    @serve.ingress(app)
    class Classifier:
        def __init__(self):
            configure_tensorflow(threads=REPLICA_CPUS)  # before the model is loaded
            self.service = ModelService(export, max_bytes)

        @app.get("/", response_class=HTMLResponse)
        def page(self):
            return page_html()

        @app.get("/healthz")
        def healthz(self):
            return {"status": "ok", "model": self.service.exported.card_json().get("name")}

        @app.get("/v1/model")
        def model_card(self):
            return self.service.exported.card_json()

        @app.post("/v1/classify")
        async def classify(self, request: Request):
            include_input = flag(request.query_params, "include_input")
            name, raw = (await uploads_from(request, self.service, "file"))[0]
            # Preprocessing on the event loop, per request, before joining a batch: in a thread it
            # measured slower on 2 cores (results/reference/benchmarks.md, 2026-11-22).
            x = self.service.decode(name, raw)
            return self.service.exported.answer(name, x, await self.predict_batched(x), include_input)

        @app.post("/v1/classify/batch")
        async def classify_batch(self, request: Request):
            include_input = flag(request.query_params, "include_input")
            uploads = await uploads_from(request, self.service, None)
            return {"results": self.service.classify_many(uploads, include_input)}

        @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_TIMEOUT_S)
        async def predict_batched(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
            """Concurrent single-image requests on this replica -> one model call. Called directly,
            not in a thread: with the event loop free, the next batch forms while this one runs,
            and batches measured 1-2 images (~30 req/s against ~50)."""
            return self.service.predict_each(inputs)

    return Classifier


def answer_errors_in_one_shape(app) -> None:
    """Every error the app answers, ours and FastAPI's own (an unknown path, a wrong method, an
    unreadable request), as {"error": "..."} with its status."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(RequestError)
    async def request_error(request, error: RequestError):
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, error: StarletteHTTPException):
        what = f"{request.method} {request.url.path}"
        message = {404: f"{what}: no such endpoint; the service answers {ENDPOINTS}",
                   405: f"{what}: method not allowed; the service answers {ENDPOINTS}"}.get(
                       error.status_code, f"{what}: {error.detail}")
        return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"error": f"{request.method} {request.url.path}: {where}: {first.get('msg', 'invalid')}"},
                            status_code=422)


def serve_forever(export: ExportDir, host: str, port: int, replicas: int, max_mb: float,
                  address: Optional[str] = None, connect_timeout: float = 30.0) -> None:
    """Run the service until interrupted (Ctrl-C or SIGTERM): local Ray, or the cluster at `address`."""
    import ray
    from ray import serve

    export = ExportDir(export.path.resolve(), export.model_name)  # the replicas may start in another folder
    if address:  # the HTTP proxy listens on the cluster's head, not necessarily here
        ray_start.join_cluster(address, connect_timeout)
    else:
        check_can_listen(host, port)
        # Serve kills an HTTP proxy not ready within 5 s and serve.start() then fails: on a busy 2-core
        # machine (a search beside it) starting one took longer (CI, 2026-12-06). A local Ray's
        # processes inherit this; a cluster's are set when it starts.
        os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
        ray_start.start_local()
    # SIGTERM (a service manager, `kill`) stops the service as Ctrl-C does: Ray's own handler
    # would end the driver with a C++ stack dump and leave the cleanup undone.
    signal.signal(signal.SIGTERM, _interrupt)
    # Serve's INFO lines (every request, every replica change) stay in Ray's log files.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    quiet = {"log_level": "WARNING"}
    try:
        serve.start(http_options={"host": host, "port": port}, logging_config=quiet)
        app = build_app(export, int(max_mb * 1024 * 1024)).options(num_replicas=replicas).bind()
        log.info("serving %s on http://%s:%d/ with %d replica(s); Ctrl-C stops it", export.path, host, port, replicas)
        serve.run(app, blocking=True, logging_config=quiet)
    finally:
        if address:  # a cluster's Serve outlives this driver unless told to stop
            serve.shutdown()
        # A local Ray of our own stops with everything in it. Serve's own shutdown of it raced its
        # controller's graceful stop: Ray printed a "(raylet) Task ServeController.graceful_shutdown
        # failed" line in raw colour codes, and a stop sometimes took 37 s.
        ray.shutdown()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def check_can_listen(host: str, port: int) -> None:
    """The mistakes of --host and --port, in one line each, before Ray starts: an address that is
    not this machine's, a port in use or reserved."""
    try:
        family, kind, _, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        raise UserError(f"--host {host}: not an address or a host name this machine knows") from None
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the service's own socket will
        try:
            probe.bind(where)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(f"--port {port}: already in use on {host} (the service already running? another "
                                "program?); choose another with --port") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise UserError(f"--host {host}: not an address of this machine; use 127.0.0.1 (this machine "
                                "only) or 0.0.0.0 (every network interface)") from None
            if e.errno == errno.EACCES:
                raise UserError(f"--port {port}: reserved for the administrator (ports below 1024); choose one "
                                "from 1024 up") from None
            raise UserError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None
