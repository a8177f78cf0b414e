"""ASGI middlewares of the service: the bearer token checked on the request headers (before any
byte of the body is received) and the body size limit counted as the body passes."""

from __future__ import annotations

import hmac

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BearerAuth", "BodyLimit", "token_matches"]


def token_matches(given: bytes, token: bytes) -> bool:
    """Whether ``given`` is the whole ``token`` (constant time in the content: ``hmac.compare_digest``)."""
    return hmac.compare_digest(given, token)


class BearerAuth:
    """ASGI middleware: requests to ``/v1`` paths without ``Authorization: Bearer <token>`` get 401
    from their headers alone, before any byte of the body is received; the token is compared in
    constant time, whole."""

    def __init__(self, app: ASGIApp, token: str, prefix: str = "/v1"):
        self.app, self.token, self.prefix = app, token.encode(), prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            if path == self.prefix or path.startswith(self.prefix + "/"):
                why = self._refusal(scope)
                if why:
                    resp = JSONResponse({"detail": why}, status_code=401, headers={"WWW-Authenticate": "Bearer", "Connection": "close"})
                    await resp({"type": "http"}, _no_receive, send)
                    return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> str:
        """Why the request is refused ("" = the right token)."""
        values = [v for k, v in scope.get("headers") or [] if k == b"authorization"]
        if len(values) != 1:
            return "missing bearer token (Authorization: Bearer <token>)"
        scheme, _, cred = values[0].partition(b" ")
        if scheme.lower() != b"bearer" or not cred.strip():
            return "missing bearer token (Authorization: Bearer <token>)"
        if not token_matches(cred.strip(), self.token):
            return "wrong bearer token"
        return ""


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, declared by ``Content-Length`` (before
    any of it is read) or counted while it arrives. The body is passed on as it arrives, never
    buffered here; past the limit the app sees the client go away and its answer is replaced by the
    413."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(self.limit, send)
            return
        seen, over, started = 0, False, False

        async def counted() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    over = True
                    return {"type": "http.disconnect"}
            return msg

        async def guarded(msg: Message) -> None:
            nonlocal started
            if over:  # the app's answer to the cut body is replaced by the 413
                if not started:
                    started = True
                    await _too_large(self.limit, send)
                return
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _too_large(self.limit, send)


async def _too_large(limit: int, send: Send) -> None:
    resp = JSONResponse({"detail": f"the request body is over the limit of {limit} bytes"}, status_code=413)
    await resp({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
