"""HTTP middleware: request ids, the body-size limit, one structured log line, request metrics."""

from __future__ import annotations

import json
import logging
import time
import uuid

from fastapi import FastAPI, Request

from api.errors import error_response
from api.metrics import Metrics

log = logging.getLogger("rag.api")


class BodyLimit:
    """ASGI middleware counting the body bytes as they arrive, so that a body sent with chunked
    transfer encoding (no Content-Length) is limited like one that declares its length. Past the
    limit the app reads a disconnect (it stops parsing: nothing is ingested) and the request is
    marked, so that the request middleware answers 413 whatever the app made of the cut body."""

    def __init__(self, app, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    scope.setdefault("state", {})["body_too_large"] = True
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counted, send)


def install(app: FastAPI, metrics: Metrics, max_body_mb: float) -> None:
    max_body = int(max_body_mb * 1e6)
    too_large = f"limit is {max_body_mb:g} MB"

    @app.middleware("http")
    async def observe(request: Request, call_next):
        """No bodies or keys are logged; an unhandled error is a 500 with the request id, never a trace."""
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        t = time.perf_counter()
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_body:
            response = error_response(413, "request body too large", too_large)
        else:
            try:
                response = await call_next(request)
            except Exception:
                log.exception("unhandled error (request %s)", rid)
                response = error_response(500, "internal error", f"request id {rid}")
            if getattr(request.state, "body_too_large", False):
                response = error_response(413, "request body too large", too_large)
        endpoint = getattr(request.scope.get("route"), "path", "unmatched")
        seconds = time.perf_counter() - t
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(seconds)
        response.headers["x-request-id"] = rid
        log.info(json.dumps({"request_id": rid, "method": request.method, "endpoint": endpoint,
                             "status": response.status_code, "ms": round(seconds * 1000, 1),
                             **getattr(request.state, "log_extra", {})}))
        return response

    app.add_middleware(BodyLimit, max_body=max_body)
