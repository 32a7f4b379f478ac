"""Every error the API answers has one shape: {"error": {"code", "message", "field"?}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import InvalidInput, StoreUnavailable

log = logging.getLogger("nabaa.api")

RETRY_AFTER_S = "5"


class ErrorDetail(BaseModel):
    code: str = Field(description="stable snake_case code")
    message: str = Field(description="what is wrong and how to fix it")
    field: str | None = Field(None, description="JSON path of the field at fault, when one is")


class ErrorOut(BaseModel):
    """The one shape of every error answer."""

    error: ErrorDetail


_WHAT = {
    400: "malformed request (not JSON, JSON nested too deep, a bad Content-Length)",
    401: "no editor token, or a wrong one (`Authorization: Bearer <EDITOR_TOKEN>`)",
    403: "a write from another site's page",
    404: "not found",
    409: "conflict",
    413: "the body is larger than 16 KiB",
    415: "the body is not `application/json`",
    422: "invalid input: the error names the field and what it accepts",
    429: "rate limited: wait `Retry-After` seconds",
    503: "the store is not answering, or a capacity limit was reached: try again after `Retry-After`",
}


def responses(*statuses: int, **described: str) -> dict:
    """OpenAPI `responses` for these error statuses, all in the one error shape."""
    out = {}
    for status in statuses:
        out[status] = {"model": ErrorOut, "description": described.get(f"e{status}", _WHAT[status])}
    return out


# Errors the guard in front of every write can answer, before a route sees the request.
WRITE_ERRORS = (400, 403, 413, 415, 422, 503)

# What each field accepts, for the messages of errors that name it (api-v1.md: the field and its range).
_ACCEPTS = {
    "ttl_s": "a whole number of seconds from 60 to 2419200",
    "urgency": "one of very-low, low, normal, high",
    "limit": "a whole number from 1 to 500",
    "send_at": "an ISO 8601 date and time with an offset, e.g. 2026-12-01T08:00:00+01:00",
    "lang": "a language tag such as ar or en-GB",
    "type": "one of delivered, clicked, dismissed",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None):
        self.status, self.code, self.message, self.field, self.headers = status, code, message, field, headers


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    return JSONResponse({"error": error}, status_code=status, headers=headers)


_CODES = {
    "missing": ("missing_field", "is required"),
    "extra_forbidden": ("unknown_field", "is not a field of this request"),
    "literal_error": ("invalid_choice", None),
    "string_pattern_mismatch": ("invalid_format", None),
    "greater_than_equal": ("out_of_range", None),
    "less_than_equal": ("out_of_range", None),
    "greater_than": ("out_of_range", None),
    "less_than": ("out_of_range", None),
    "too_long": ("too_many_items", None),
    "too_short": ("too_few_items", None),
    "string_too_long": ("text_length", None),
    "string_too_short": ("text_length", None),
    "string_unicode": ("invalid_text", "must be valid Unicode text (no lone surrogates)"),
    "timezone_aware": ("invalid_datetime", "must be an ISO 8601 date and time with an offset, e.g. 2026-12-01T08:00:00+01:00"),
}


def _field(loc) -> str:
    """The JSON path of a body field (`keys.p256dh`, `topics[3]`), a parameter's name, a header's name."""
    loc = list(loc)
    if len(loc) == 2 and loc[0] in ("query", "path"):
        return str(loc[1])
    if len(loc) == 2 and loc[0] == "header":
        return "-".join(part.capitalize() for part in str(loc[1]).replace("_", "-").split("-"))
    parts = [str(p) for p in loc if p != "body"]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "body"


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    error = exc.errors()[0]
    kind = error.get("type", "")
    field = _field(error.get("loc", ()))
    if kind == "json_invalid":
        return error_response(400, "malformed_json", "the body is not valid JSON: send a JSON object")
    if kind in ("model_attributes_type", "dict_type", "model_type") and field == "body":
        return error_response(422, "wrong_type", "the body must be a JSON object")
    code, fixed = _CODES.get(kind, ("wrong_type" if kind.endswith("_type") or "parsing" in kind else "invalid_field", None))
    detail = fixed or error.get("msg", "is invalid")
    ctx = error.get("ctx") or {}
    name = field.rsplit(".", 1)[-1]
    if name in _ACCEPTS and kind != "missing":
        detail = f"must be {_ACCEPTS[name]}"
    elif kind == "string_too_long":
        detail = f"must be at most {ctx.get('max_length')} characters"
    elif kind == "string_too_short":
        detail = f"must be at least {ctx.get('min_length')} character{'s' if ctx.get('min_length') != 1 else ''}"
    elif kind == "too_long":
        detail = f"must have at most {ctx.get('max_length')} items"
    elif "ge" in ctx or "le" in ctx:
        detail = f"{detail} (range {ctx.get('ge', '…')}–{ctx.get('le', '…')})"
    return error_response(422, code, f"{field}: {detail}", field)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)

    @app.exception_handler(InvalidInput)
    async def _invalid(_: Request, exc: InvalidInput):
        return error_response(exc.status, exc.code, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        return _validation_response(exc)

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_: Request, exc: StoreUnavailable):
        return error_response(503, "store_unavailable", str(exc), headers={"Retry-After": RETRY_AFTER_S})

    @app.exception_handler(RedisError)
    async def _redis(_: Request, exc: RedisError):
        log.warning("Redis error: %s", exc)
        return error_response(503, "store_unavailable", "the store is not answering; nothing was changed, "
                              "try again shortly", headers={"Retry-After": RETRY_AFTER_S})

    @app.exception_handler(ConnectionError)
    async def _conn(_: Request, exc: ConnectionError):
        log.warning("store connection: %s", exc)
        return error_response(503, "store_unavailable", "the store is not answering; nothing was changed, "
                              "try again shortly", headers={"Retry-After": RETRY_AFTER_S})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:  # FastAPI could not read the body (e.g. not UTF-8)
            return error_response(400, "malformed_json", "the body is not valid JSON in UTF-8: send a JSON object")
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail),
                              headers=getattr(exc, "headers", None))
