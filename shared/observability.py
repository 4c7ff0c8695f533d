"""What every service exposes for operators: /healthz, /readyz, /metrics, and request metrics."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "backbone_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "backbone_http_request_duration_seconds", "Time to answer an HTTP request", ["method", "route"]
)
# Every retry loop counts its rounds: `cause` is "infrastructure" (a database or broker away,
# waited out with backoff, unbounded) or "error" (bounded, then the record is dead-lettered).
RETRIES = Counter("backbone_retries_total", "Rounds of a retry loop, by loop and cause", ["component", "cause"])


def count_retries_of(component: str, *causes: str) -> None:
    """Start a loop's retry series at 0."""
    for cause in causes:
        RETRIES.labels(component, cause)


READY = Gauge("backbone_ready", "1 when the broker and the database both answer, else 0")

Check = Callable[[], Awaitable[bool]]


def observability_router(checks: dict[str, Check], timeout_seconds: float = 2.0,
                         details: dict[str, Callable[[], Any]] | None = None) -> APIRouter:
    """/healthz, /readyz and /metrics. `checks` decide readiness; `details` are reported in
    /readyz's body only (how the background workers and consumers are doing)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process serves requests")
    async def healthz() -> dict:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: Kafka and MongoDB both answer")
    async def readyz(response: Response) -> dict:
        async def run(check: Check) -> bool:
            try:
                return await asyncio.wait_for(check(), timeout_seconds)
            except Exception:
                return False

        results = dict(zip(checks, await asyncio.gather(*(run(c) for c in checks.values())), strict=True))
        ready = all(results.values())
        READY.set(1 if ready else 0)
        response.status_code = 200 if ready else 503
        return {"status": "ready" if ready else "not_ready", "checks": results,
                **{name: describe() for name, describe in (details or {}).items()}}

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router


def instrument(app: FastAPI) -> None:
    """Count and time requests by route template, so label values stay bounded."""

    @app.middleware("http")
    async def measure(request: Request, call_next):
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(request.method, path, str(status)).inc()
            HTTP_SECONDS.labels(request.method, path).observe(time.perf_counter() - started)


# Every answer: never sniffed into another type, never framed, no referrer leaked. Pages add a
# Content-Security-Policy of their own; the API's /docs loads its viewer from a CDN, so the API
# gets only `frame-ancestors`.
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def secure_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def add_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("content-security-policy", "frame-ancestors 'none'")
        return response
