"""The FastAPI application: ``POST /v1/analyze`` (a multipart ``file``, or JSON ``{"image": base64 or
a data: URI}`` or ``{"path": a file under the data root}``; no URL is fetched), ``POST /v1/jobs``, ``GET /v1/jobs/{id}``,
``GET /v1/jobs/{id}/summary``, ``GET /healthz``; OpenAPI docs at ``/docs``.

Every ``/v1`` route needs ``Authorization: Bearer <token>``, checked by an ASGI middleware on the
request headers, before any byte of the body is received (401 otherwise). Bodies over
``max_upload_bytes`` are refused with 413 before they are read in full (by ``Content-Length``, or by
counting a chunked body).

Memory per request is bounded (see :class:`ServiceSettings`): a still image's pixel count is read
from its header before it is decoded; a clip is decoded frame by frame into frames no larger than
``clip_max_side`` and goes to the models one chunk at a time, so no full-resolution RGB frame is kept;
a clip cut short by a limit says so (``truncated``, ``truncated_reason``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from ferbatch import __version__
from ferbatch.config import JobConfig
from ferbatch.errors import FerbatchError
from ferbatch.faces import FaceBatch
from ferbatch.labels import EMOTIONS
from ferbatch.live.infer import faces_json
from ferbatch.service.batcher import Batcher, Busy
from ferbatch.service.bodies import ANALYZE_BODY, JSON_TYPES, AnalyzeJson, JobRequest, error_responses, json_body, read_data_file
from ferbatch.service.jobs import JobManager
from ferbatch.service.media import BadUpload, Upload, decode_base64, open_upload, short_name
from ferbatch.service.middleware import BearerAuth, BodyLimit, token_matches

__all__ = ["ServiceSettings", "create_app"]


@dataclass(frozen=True)
class ServiceSettings:
    """How the service runs.

    Attributes:
        token: the bearer token clients must send (non-empty).
        cfg: model and backend settings (as for ``ferbatch run``).
        max_upload_bytes: largest request body, in bytes.
        max_pixels: most pixels of a still image (width x height, read from its header before
            decoding; decoded it takes 3 bytes per pixel).
        max_clip_pixels: most pixels per clip frame (stream header and each frame); FFmpeg's
            decoder state holds a few frames of this size (1.5 bytes per pixel for YUV 4:2:0).
        max_clip_total_pixels: most pixels decoded from one clip (sampled or not); the clip is cut
            there (``truncated``).
        clip_max_side: clip frames are downscaled right after decoding to this longest side, in
            pixels (2 x the default detector's ``input_max_side``; boxes come back in the clip's
            own pixels).
        max_frames: most frames analysed per clip; the clip is cut there (``truncated``).
        max_batch: most frames per model call, across requests.
        max_wait_ms: how long a batch waits for more requests, in ms.
        max_pending: most requests admitted at once (decoding or waiting for the models, a clip
            counted once); more get 503. Memory: at most this many times the per-request bound.
        data_root, jobs_dir: where job inputs may come from and where their datasets go (None =
            the jobs routes answer 503).
        use_ray, address: run jobs on Ray (local or that cluster) instead of in-process.
    """

    token: str
    cfg: JobConfig = JobConfig()
    max_upload_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_clip_pixels: int = 3840 * 2160
    max_clip_total_pixels: int = 300 * 1920 * 1080
    clip_max_side: int = 1024
    max_frames: int = 300
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_pending: int = 64
    data_root: Path | None = None
    jobs_dir: Path | None = None
    use_ray: bool = False
    address: str | None = None


_JOB_ID = re.compile(r"[0-9a-f]{32}")


_bearer = HTTPBearer(auto_error=False)


def _auth(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    token: str = request.app.state.ferbatch_token
    if cred is None or cred.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)", headers={"WWW-Authenticate": "Bearer"})
    if not token_matches(cred.credentials.encode(), token.encode()):
        raise HTTPException(401, "wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def _jobs(request: Request) -> JobManager:
    mgr = request.app.state.ferbatch.get("jobs")
    if mgr is None:
        raise HTTPException(503, "jobs are off: start the service with --data-root and --jobs-dir")
    return mgr


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each invalid field and why in one line, without echoing the value back (a field
    may be 100k characters)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))} | {e.get('msg', 'invalid')}" for e in errors[:5]]
    return JSONResponse({"detail": "; ".join(parts)[:1000] or "invalid request"}, status_code=422)


def _job(mgr: JobManager, job_id: str) -> Any:
    rec = mgr.get(job_id) if _JOB_ID.fullmatch(job_id) else None
    if rec is None:
        raise HTTPException(404, f"no job {short_name(job_id)!r}" + ("" if _JOB_ID.fullmatch(job_id) else " (a job id is 32 hex digits)"))
    return rec


def _frames_json(up: Upload, results: list[FaceBatch]) -> list[dict[str, Any]]:
    """Per-frame JSON of ``results``, boxes scaled back to the upload's own pixels."""
    out = []
    for i, t, (sx, sy), ff in zip(up.frame_idx, up.pts_ms, up.scale, results, strict=True):
        if (sx, sy) != (1.0, 1.0) and len(ff.boxes):
            ff = dataclasses.replace(ff, boxes=ff.boxes * np.array([sx, sy, sx, sy], np.float32))
        out.append({"frame_idx": i, "pts_ms": t, "faces": faces_json(ff)})
    return out


def create_app(settings: ServiceSettings, models: Any = None) -> FastAPI:
    """Build the application; the models are loaded once, when it starts (or ``models`` is used).

    Raises:
        ConfigError: empty token.
    """
    from ferbatch.errors import ConfigError

    if not settings.token:
        raise ConfigError("token | empty; give one with --token-file or FERBATCH_TOKEN")
    state: dict[str, Any] = {}
    data_root = Path(os.path.realpath(settings.data_root)) if settings.data_root is not None else None

    def read_path(rel: str) -> tuple[bytes, str]:
        return read_data_file(data_root, rel, settings.max_upload_bytes), rel

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from ferbatch.models.load import load_models

        m = models if models is not None else await run_in_threadpool(load_models, settings.cfg)
        state["models"] = m
        state["batcher"] = Batcher(m, max_frames=settings.max_batch, max_wait_ms=settings.max_wait_ms, max_pending=settings.max_pending)
        if settings.data_root is not None and settings.jobs_dir is not None:
            state["jobs"] = JobManager(
                settings.data_root, settings.jobs_dir, settings.cfg, use_ray=settings.use_ray, address=settings.address
            )
        try:
            yield
        finally:
            state["batcher"].close()
            if "jobs" in state:
                state["jobs"].close()
            if models is None:
                m.close()

    app = FastAPI(
        title="ferbatch",
        version=__version__,
        description="Facial emotion recognition: faces, boxes and the 8 FER+ probabilities of an image or a clip; directory jobs.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(BearerAuth, token=settings.token)  # added last = outermost: before the body is read
    app.state.ferbatch = state
    app.state.ferbatch_token = settings.token
    app.add_exception_handler(RequestValidationError, _invalid)

    @app.get("/healthz", summary="Liveness and model names (no auth)")
    def healthz() -> dict[str, Any]:
        m = state.get("models")
        refs = {k: r.name for k, r in m.refs.items()} if m is not None and hasattr(m, "refs") else {}
        b = state.get("batcher")
        stats = dataclasses.asdict(b.stats) if b is not None else {}
        return {"status": "ok" if m is not None else "starting", "version": __version__, "models": refs, "batcher": stats}

    @app.post(
        "/v1/analyze",
        dependencies=[Depends(_auth)],
        summary="Faces and emotions of an image or a short clip",
        description='The image or clip comes as a multipart `file`, or as JSON: `{"image": "<base64>"}` (or a '
        '`data:image/...;base64,` URI) or `{"path": "<file under --data-root>"}`. URLs are refused (400): the '
        "service fetches nothing. The same limits hold for every form: the body size, the image header's pixels "
        "(before decoding) and the clip limits.",
        responses=error_responses(400, 401, 413, 415, 422, 503),
        openapi_extra=ANALYZE_BODY,
    )
    async def analyze(
        request: Request,
        file: Annotated[UploadFile | None, File(description="An image (JPEG, PNG, BMP, WebP, TIFF) or a short video clip.")] = None,
        every: Annotated[int, Query(ge=1, le=1000, description="Clips: analyse every N-th frame.")] = 1,
    ) -> dict[str, Any]:
        b: Batcher = state["batcher"]
        body: AnalyzeJson | None = None
        if file is None:
            ctype = request.headers.get("content-type", "").partition(";")[0].strip().lower()
            if ctype not in JSON_TYPES:
                msg = 'Field required (a multipart file; or JSON {"image": "<base64>"} or {"path": "<file under the data root>"})'
                raise RequestValidationError([{"type": "missing", "loc": ("body", "file"), "msg": msg}])
            body = await json_body(request)
        try:
            with b.admit():  # counted once, however many chunks a clip takes
                if file is not None:
                    name = file.filename or "upload"
                    data = await file.read()
                elif body is not None and body.image is not None:
                    name = "image"
                    try:  # the text as ASCII bytes, the text itself freed before it is decoded
                        b64 = body.image.encode("ascii")
                    except UnicodeEncodeError:
                        raise BadUpload(
                            "image | not valid base64 (standard alphabet A-Z a-z 0-9 + /): a character that is not ASCII", 400
                        ) from None
                    body = None
                    data = await run_in_threadpool(decode_base64, b64, settings.max_upload_bytes)
                    del b64
                else:
                    assert body is not None and body.path is not None
                    data, name = await run_in_threadpool(read_path, body.path)
                up = await run_in_threadpool(
                    open_upload,
                    data,
                    name,
                    max_pixels=settings.max_pixels,
                    max_clip_pixels=settings.max_clip_pixels,
                    max_frames=settings.max_frames,
                    max_total_pixels=settings.max_clip_total_pixels,
                    max_side=settings.clip_max_side,
                    every=every,
                )
                del data
                if isinstance(up, Upload):
                    results = await asyncio.wrap_future(b.submit(up.images, admitted=True))
                    frames = _frames_json(up, results)
                else:
                    # a clip: decoded and analysed one model call's worth of frames at a time, so
                    # only one chunk of small frames is held and image requests queued meanwhile are
                    # not held up by it
                    frames = []
                    try:
                        while True:
                            part = await run_in_threadpool(up.read, settings.max_batch)
                            if not part.images:
                                break
                            results = await asyncio.wrap_future(b.submit(part.images, admitted=True))
                            frames += _frames_json(part, results)
                            del part
                    finally:
                        up.close()
        except Busy as e:
            raise HTTPException(503, str(e), headers={"Retry-After": "1"}) from None
        except BadUpload as e:
            raise HTTPException(e.status, str(e)) from None
        except MemoryError:
            raise HTTPException(
                503, "out of memory while decoding the upload; retry later or send less", headers={"Retry-After": "5"}
            ) from None
        return {
            "kind": up.kind,
            "width": up.width,
            "height": up.height,
            "emotions": list(EMOTIONS),
            "frames_decoded": up.frames_total,
            "truncated": up.truncated,
            "truncated_reason": up.truncated_reason,
            "frames": frames,
        }

    @app.post(
        "/v1/jobs",
        dependencies=[Depends(_auth)],
        status_code=202,
        summary="Start a job over a directory under the data root",
        responses=error_responses(400, 401, 413, 422, 503),
    )
    def submit(body: JobRequest, mgr: Annotated[JobManager, Depends(_jobs)]) -> dict[str, Any]:
        try:
            return mgr.submit(body.input).public()
        except FerbatchError as e:
            raise HTTPException(400, str(e)) from None

    @app.get(
        "/v1/jobs/{job_id}",
        dependencies=[Depends(_auth)],
        summary="A job's status and progress",
        responses=error_responses(401, 404, 422, 503),
    )
    def job_status(job_id: str, mgr: Annotated[JobManager, Depends(_jobs)]) -> dict[str, Any]:
        rec = _job(mgr, job_id)
        return rec.public()

    @app.get(
        "/v1/jobs/{job_id}/summary",
        dependencies=[Depends(_auth)],
        summary="A finished job's counts and per-video summary",
        responses=error_responses(401, 404, 409, 422, 503),
    )
    def job_summary(job_id: str, mgr: Annotated[JobManager, Depends(_jobs)]) -> dict[str, Any]:
        rec = _job(mgr, job_id)
        if rec.status in ("queued", "running"):
            raise HTTPException(409, f"job {job_id} is {rec.status}; the summary is there once it finishes")
        if rec.status == "failed":
            return {"id": rec.id, "status": rec.status, "error": rec.error, "job": rec.summary, "videos": []}
        return {"id": rec.id, "status": rec.status, "job": rec.summary, "videos": mgr.dataset_summary(rec)}

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, the multipart form of ``/v1/analyze`` saying ``file`` is required there
        (the route declares it optional: JSON bodies come without it)."""
        if app.openapi_schema is None:
            schema = default_openapi()
            form = schema["components"]["schemas"]["Body_analyze_v1_analyze_post"]
            form["properties"]["file"] = {k: v for k, v in form["properties"]["file"].items() if k != "anyOf"} | {
                "type": "string",
                "contentMediaType": "application/octet-stream",
            }
            form["required"] = ["file"]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
