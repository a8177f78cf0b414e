"""The bodies of the service's routes: request models (validated, documented in the OpenAPI schema),
the error body, and reading a ``path`` under the data root. No FastAPI app here (:mod:`ferbatch.service.app`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated, Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from ferbatch.errors import FerbatchError
from ferbatch.service.jobs import resolve_under
from ferbatch.service.media import BadUpload, is_url, short_name

__all__ = [
    "ANALYZE_BODY",
    "JSON_TYPES",
    "MAX_INPUT_CHARS",
    "AnalyzeJson",
    "ErrorBody",
    "JobRequest",
    "error_responses",
    "json_body",
    "read_data_file",
]

MAX_INPUT_CHARS = 4096  # PATH_MAX


class ErrorBody(BaseModel):
    """Every error answer: ``{"detail": "<one line naming the cause>"}``."""

    detail: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these status codes, each an :class:`ErrorBody`."""
    why = {
        400: "a bad argument or input path",
        401: "no or a wrong bearer token",
        404: "no such job",
        409: "the job has not finished",
        413: "the body or the image / clip frame is over a limit",
        415: "not an image or a video",
        422: "a missing or invalid field (named, with the reason)",
        503: "busy (Retry-After) or jobs are off",
    }
    return {c: {"model": ErrorBody, "description": why[c]} for c in codes}


class JobRequest(BaseModel):
    """Body of ``POST /v1/jobs``."""

    input: str = Field(
        description="A file or directory of videos, relative to the service's data root (no null byte).",
        min_length=1,
        max_length=MAX_INPUT_CHARS,
        json_schema_extra={"pattern": "^[^\\x00]*$"},
    )

    @field_validator("input")
    @classmethod
    def _no_nul(cls, v: str) -> str:
        if "\x00" in v:
            raise ValueError("contains a null byte (not allowed in a path)")
        return v


class AnalyzeJson(BaseModel):
    """JSON body of ``POST /v1/analyze`` (instead of a multipart ``file``): exactly one of ``image``
    or ``path``. URLs are refused (400): the service fetches nothing."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["image"]}, {"required": ["path"]}]})

    image: str | SkipJsonSchema[None] = Field(
        None,
        description="The file's bytes in base64 (standard alphabet), or a data URI 'data:image/jpeg;base64,...'; "
        "at most --max-upload-mb once decoded.",
    )
    # the length bound on the str arm only: on the union pydantic applies it to None too (a TypeError)
    path: Annotated[str, StringConstraints(max_length=MAX_INPUT_CHARS)] | SkipJsonSchema[None] = Field(
        None,
        description="A file (image or clip) under the service's --data-root: relative to it, or absolute; its real path "
        "(symlinks resolved) must lie under the data root's. Refused without --data-root.",
    )

    @field_validator("path")
    @classmethod
    def _no_nul(cls, v: str | None) -> str | None:
        if v is not None and "\x00" in v:
            raise ValueError("contains a null byte (not allowed in a path)")
        return v

    @model_validator(mode="after")
    def _one(self) -> AnalyzeJson:
        if (self.image is None) == (self.path is None):
            raise ValueError("give exactly one of 'image' (base64 or a data: URI) or 'path' (a file under the data root)")
        return self


JSON_TYPES = ("application/json",)
ANALYZE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": AnalyzeJson.model_json_schema()}},
    }
}


async def json_body(request: Request) -> AnalyzeJson:
    """The request's JSON body (read as it arrives, not cached on the request), validated.

    Raises:
        RequestValidationError: not JSON, or not exactly one of ``image`` / ``path`` (422).
    """
    chunks = [chunk async for chunk in request.stream()]
    raw = b"".join(chunks)
    del chunks
    try:
        return AnalyzeJson.model_validate_json(raw)
    except ValidationError as e:
        # a flat model: the field's name is the whole location ("image.str | ..." and "image.none | Input
        # should be null", the two arms of ``str | None``, -> "image | ...")
        errs = [er for er in e.errors(include_input=False) if er["loc"][-1:] != ("none",)]
        raise RequestValidationError([{**er, "loc": ("body", *er["loc"][:1])} for er in errs]) from None
    finally:
        del raw


def read_data_file(data_root: Path | None, rel: str, max_bytes: int) -> bytes:
    """The bytes of the file ``rel`` names under ``data_root`` (a real path; None = paths are off),
    at most ``max_bytes``, its size checked before it is read (``path`` of ``POST /v1/analyze``).

    Raises:
        BadUpload: no data root, a URL, outside the data root or missing, not a file (400); over
            the size limit (413).
    """
    shown = short_name(rel)
    if data_root is None:
        raise BadUpload(f"path {shown!r} | paths are off: start the service with --data-root (only files under it are read)", 400)
    if is_url(rel):
        raise BadUpload(f"path {shown!r} | a URL: the service fetches nothing (it has no network access)", 400)
    try:
        p = resolve_under(data_root, rel, field="path", absolute=True, file_only=True)
        # opened without blocking (a FIFO under the data root would wait for a writer), then checked
        with open(os.open(p, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise BadUpload(f"path {shown!r} | not a regular file (a device or a pipe?); give one image or clip", 400)
            if st.st_size > max_bytes:
                raise BadUpload(f"path {shown!r} | {st.st_size} bytes is over the limit of {max_bytes} bytes", 413)
            data = f.read(max_bytes + 1)
    except FerbatchError as e:
        if isinstance(e, BadUpload):
            raise
        raise BadUpload(str(e), 400) from None
    except OSError as e:
        raise BadUpload(f"path {shown!r} | cannot be read: {e.strerror or type(e).__name__}", 400) from None
    if len(data) > max_bytes:  # grew since its size was read
        raise BadUpload(f"path {shown!r} | over the limit of {max_bytes} bytes", 413)
    return data
