"""Domain errors that use cases raise, and their one mapping to HTTP.

Use cases (each service's `service.py`) decide who may do what and raise these; entry points
never choose a status code themselves. `install_error_handlers` maps them for every service's
HTTP app, and trims FastAPI's validation errors so an answer never echoes a large input back.
"""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

EXCERPT_CHARS = 80  # of a refused input shown back to the caller


class DomainError(Exception):
    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def detail(self) -> Any:
        return self.message


class NotAuthenticated(DomainError):
    status = 401


class NotAllowed(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class TooLarge(DomainError):
    status = 413


class Unavailable(DomainError):
    """Something this use case needs cannot be reached now; nothing was done, try again."""

    status = 503


class Invalid(DomainError):
    """A refused input, with the field it is about (`data.hourly_wage`, `organisation_id`)."""

    status = 422

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.reason = field, message

    def detail(self) -> Any:
        return [{"loc": ["body", *self.field.split(".")], "msg": self.reason, "type": "value_error"}]


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> Any:
    """A short, JSON-safe excerpt of an input: scalars as they are, anything long cut."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _validation_errors(errors: list[dict]) -> list[dict]:
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:300], "type": e.get("type", ""),
             **({"input": excerpt(e["input"])} if "input" in e else {})} for e in errors[:50]]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
        return JSONResponse({"detail": exc.detail()}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_errors(list(exc.errors()))}, status_code=422)
