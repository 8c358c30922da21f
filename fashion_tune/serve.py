"""The retailer's service: upload a product photo, get its category. Built on Ray Serve, so the
same command runs one replica here or several on a Ray cluster.

  GET  /                    a page: drop photos, see each one's category and probabilities
  POST /v1/classify         one image: multipart (field `file`) or the raw bytes as the body
  POST /v1/classify/batch   several images: multipart, any number of `files` fields
  GET  /v1/model            the model card
  GET  /healthz             ok once the model is loaded

The model is an ExportDir (its model card gives the review threshold). Images go through
images.to_model_input_from_bytes, the code `predict` uses. Bad input (empty,
not an image, too large, a decompression bomb, an unsupported content type) gets a 4xx JSON
error {"error": ...} and the service keeps serving.
"""


import logging
from importlib import resources
from typing import Optional

import numpy as np

from fashion_tune import images
from fashion_tune.errors import UserError
from fashion_tune.layout import ExportDir
from fashion_tune.predict import ExportedModel

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # per image
MAX_BATCH_FILES = 32
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around each file
RAW_TYPES = ("image/", "application/octet-stream")


class RequestError(Exception):
    """A client mistake: answered with `status` and a JSON {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ModelService:
    """The model and what the endpoints do with it; no web framework here, so it tests plainly."""

    def __init__(self, export: ExportDir, max_bytes: int = DEFAULT_MAX_BYTES):
        self.exported = ExportedModel(export)
        self.card = self.exported.card
        self.max_bytes = max_bytes

    def decode(self, name: str, raw: bytes) -> np.ndarray:
        """One upload -> model input; RequestError 413 (too large) or 400 (not a usable image)."""
        self.check_size(len(raw), name)
        try:
            return images.to_model_input_from_bytes(raw, name)
        except images.ImageError as e:
            raise RequestError(400, str(e)) from None

    def classify(self, name: str, raw: bytes) -> dict:
        return {"file": name, **self.describe(self.predict(self.decode(name, raw)[None])[0])}

    def classify_many(self, uploads: list[tuple[str, bytes]]) -> list[dict]:
        """(name, bytes) pairs -> one result each: a classification or that file's error."""
        results, batch, where = [], [], []
        for name, raw in uploads:
            try:
                batch.append(self.decode(name, raw))
                where.append(len(results))
                results.append({"file": name})
            except RequestError as e:
                results.append({"file": name, "error": str(e), "status": e.status})
        if batch:
            for i, probs in zip(where, self.predict(np.stack(batch))):
                results[i].update(self.describe(probs))
        return results

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.exported.probabilities(x)

    def describe(self, probs: np.ndarray) -> dict:
        return self.exported.describe(probs)

    def check_size(self, size: int, name: str = "the upload") -> None:
        """413 when one image's bytes exceed the limit."""
        self._refuse_over(size, self.max_bytes, name)

    def check_form_size(self, size: int, images: int) -> None:
        """413 when a multipart request is larger than `images` images at the limit could make it."""
        self._refuse_over(size, images * (self.max_bytes + MULTIPART_OVERHEAD), "the request")

    @staticmethod
    def _refuse_over(size: int, limit: int, name: str) -> None:
        if size > limit:
            raise RequestError(413, f"{name}: {size:,} bytes is over the limit of {limit:,}")


def page_html() -> str:
    return resources.files("fashion_tune").joinpath("page.html").read_text()


async def read_body(request, service: ModelService) -> bytes:
    """The raw request body, refused (413) as soon as it is larger than one image may be."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        service.check_size(int(declared))  # refuse before reading a byte too many
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        service.check_size(len(body))
    return bytes(body)


async def uploads_from(request, service: ModelService, field: Optional[str]) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image in a request: the multipart field `field` (None: every file),
    or, for one image, the raw body; 400, 413 or 415 otherwise."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        # The whole request first (room for one image, or a full batch); each image again in decode().
        declared = request.headers.get("content-length", "0")
        service.check_form_size(int(declared) if declared.isdigit() else 0, 1 if field else MAX_BATCH_FILES)
        form = await request.form(max_files=MAX_BATCH_FILES)
        files = [(v.filename or key, await v.read()) for key, v in form.multi_items()
                 if hasattr(v, "read") and (field is None or key == field)]
        if not files:
            raise RequestError(400, f"no file in the form; send the image in a field named '{field or 'files'}'")
        return files
    if field is not None and content_type.startswith(RAW_TYPES):
        return [("body", await read_body(request, service))]
    expected = "multipart/form-data" + (", image/* or application/octet-stream" if field else "")
    raise RequestError(415, f"content type {content_type or 'none'!r} is not accepted; send {expected}")


def build_app(export: ExportDir, max_bytes: int):
    """The FastAPI app on a Ray Serve deployment (not yet bound: call .bind())."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from ray import serve

    app = FastAPI(title="fashion_tune", description="Classify product photos into 10 clothing categories.")

    @app.exception_handler(RequestError)
    async def request_error(request, error: RequestError):
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @serve.deployment(name="classifier", ray_actor_options={"num_cpus": 1})
    @serve.ingress(app)
    class Classifier:
        def __init__(self):
            self.service = ModelService(export, max_bytes)

        @app.get("/", response_class=HTMLResponse)
        def page(self):
            return page_html()

        @app.get("/healthz")
        def healthz(self):
            return {"status": "ok", "model": self.service.card.get("name")}

        @app.get("/v1/model")
        def model_card(self):
            return self.service.card

        @app.post("/v1/classify")
        async def classify(self, request: Request):
            name, raw = (await uploads_from(request, self.service, "file"))[0]
            return self.service.classify(name, raw)

        @app.post("/v1/classify/batch")
        async def classify_batch(self, request: Request):
            uploads = await uploads_from(request, self.service, None)
            return {"results": self.service.classify_many(uploads)}

    return Classifier


def serve_forever(export: ExportDir, host: str, port: int, replicas: int, max_mb: float,
                  address: Optional[str] = None) -> None:
    """Run the service until interrupted: local Ray, or the cluster at `address`."""
    import ray
    from ray import serve

    if max_mb <= 0:
        raise UserError(f"--max-mb is {max_mb}, must be > 0")
    export = ExportDir(export.path.resolve(), export.model_name)  # the replicas may start in another folder
    ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING)
    try:
        serve.start(http_options={"host": host, "port": port})
        app = build_app(export, int(max_mb * 1024 * 1024)).options(num_replicas=replicas).bind()
        log.info("serving %s on http://%s:%d/ with %d replica(s)", export.path, host, port, replicas)
        serve.run(app, blocking=True)
    finally:
        serve.shutdown()
        ray.shutdown()
