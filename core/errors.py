"""Exceptions of the core, and the stable error codes the API shows.

    NabaaError
     ├── ConfigError            a setting is wrong or missing (start-up stops with its message)
     ├── InvalidInput           the caller's input is refused: code, message, field → HTTP 4xx
     │    └── PayloadTooLarge   the encoded push payload is over the byte budget
     └── StoreUnavailable       Redis does not answer (HTTP 503 with Retry-After)
"""

from __future__ import annotations


class NabaaError(Exception):
    """The root of every error the core raises on purpose."""


class ConfigError(NabaaError):
    """A setting is wrong or missing; the message says which and how to fix it."""


class InvalidInput(NabaaError):
    """Input refused with a stable `code`, a `message` saying how to fix it, and the JSON path at fault."""

    status = 422

    def __init__(self, code: str, message: str, field: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        if status is not None:
            self.status = status


class PayloadTooLarge(InvalidInput):
    """The notification, encoded, would not fit the push services' byte budget."""


class StoreUnavailable(NabaaError):
    """Redis cannot be reached or refused the write; nothing was stored."""
