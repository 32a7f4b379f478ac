"""Every error the API answers has one shape: {"error": {"code", "message", "field"?}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import InvalidInput, StoreUnavailable

log = logging.getLogger("nabaa.api")

RETRY_AFTER_S = "5"


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
    "string_too_long": ("text_length", None),
    "timezone_aware": ("invalid_datetime", "must be an ISO 8601 date and time with an offset, e.g. 2026-12-01T08:00:00+01:00"),
}


def _field(loc) -> str:
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
    if kind in ("greater_than_equal", "less_than_equal") and field == "ttl_s":
        detail = "must be a whole number of seconds from 60 to 2419200"
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
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))
