"""authcore's exceptions: one class per error kind, all under :class:`AuthcoreError`.

Every attribute is set on every instance (``None`` when it does not apply), the classes
live in the ``authcore`` module, instances pickle (``multiprocessing``,
``concurrent.futures.ProcessPoolExecutor``, Celery) and can be made with keyword
attributes in tests: ``authcore.OAuthError("refused", error="invalid_client",
status=401)``. Messages never contain secrets.
"""

from __future__ import annotations

import builtins
from typing import Any, Dict, Optional, Tuple, Type

__all__ = [
    "AuthcoreError",
    "ConfigError",
    "TransportError",
    "TimeoutError",
    "OAuthError",
    "ApiProblemError",
    "RateLimitedError",
    "InvalidResponseError",
    "StateMismatchError",
    "ReauthenticationRequired",
    "StoreError",
    "IssuerMismatchError",
    "CancelledError",
]

#: The attributes every error carries, and their defaults.
_FIELDS: Tuple[str, ...] = (
    "kind",
    "code",
    "http_status",
    "retry_after",
    "error",
    "description",
    "uri",
    "status",
    "problem_type",
    "title",
    "detail",
)


class AuthcoreError(Exception):
    """Base class of every authcore error.

    ``kind`` (a stable name such as ``"oauth"``) and ``code`` say what happened;
    ``http_status`` is the status of the response behind it, ``retry_after`` the seconds
    the server asked to wait. OAuth errors fill ``error``, ``description``, ``uri`` and
    ``status``; API problems ``status``, ``problem_type``, ``title`` and ``detail``. A
    ``ReauthenticationRequired`` keeps every field of the refusal it wraps.
    """

    _kind = "other"
    _code = 99

    kind: str
    code: int
    http_status: Optional[int]
    retry_after: Optional[float]
    error: Optional[str]
    description: Optional[str]
    uri: Optional[str]
    status: Optional[int]
    problem_type: Optional[str]
    title: Optional[str]
    detail: Optional[str]

    def __init__(self, message: str = "", **attributes: Any) -> None:
        super().__init__(message)
        unknown = set(attributes) - set(_FIELDS)
        if unknown:
            raise builtins.TypeError(f"unexpected attribute(s) {sorted(unknown)}; the attributes are {list(_FIELDS)}")
        for name in _FIELDS:
            setattr(self, name, attributes.get(name))
        if self.kind is None:
            self.kind = self._kind
        if self.code is None:
            self.code = self._code

    def _attributes(self) -> Dict[str, Any]:
        return {name: getattr(self, name, None) for name in _FIELDS}

    def __reduce__(self) -> Tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), self._attributes()))

    def __repr__(self) -> str:
        details = ", ".join(f"{k}={v!r}" for k, v in self._attributes().items() if v is not None and k != "code")
        return f"{type(self).__name__}({str(self)!r}{', ' if details else ''}{details})"


def _rebuild(cls: Type[AuthcoreError], message: str, attributes: Dict[str, Any]) -> AuthcoreError:
    return cls(message, **attributes)


class ConfigError(AuthcoreError):
    """The client was configured wrongly (bad URL, plain HTTP to a remote host, ...)."""

    _kind, _code = "config", 1


class TransportError(AuthcoreError):
    """The connection failed: refused, reset, DNS, TLS (the message says which)."""

    _kind, _code = "transport", 2


class TimeoutError(AuthcoreError, builtins.TimeoutError):
    """A deadline passed: connect, whole request, or waiting for another thread's
    renewal. Also a builtin ``TimeoutError``."""

    _kind, _code = "timeout", 3


class OAuthError(AuthcoreError):
    """The token endpoint answered with an OAuth 2.0 error; see ``error``,
    ``description``, ``status``."""

    _kind, _code = "oauth", 4


class ApiProblemError(AuthcoreError):
    """The endpoint answered with an API problem body; see ``title``, ``detail``,
    ``problem_type``, ``status``."""

    _kind, _code = "api_problem", 5


class RateLimitedError(AuthcoreError):
    """The endpoint refused because of rate limiting (HTTP 429); see ``retry_after``."""

    _kind, _code = "rate_limited", 6


class InvalidResponseError(AuthcoreError):
    """The response could not be understood (HTML page, missing ``access_token``, ...)."""

    _kind, _code = "invalid_response", 7


class StateMismatchError(AuthcoreError):
    """The ``state`` of an authorization callback is unknown, forged, expired or used."""

    _kind, _code = "state_mismatch", 8


class ReauthenticationRequired(AuthcoreError):
    """The refresh token was refused and no other credential can obtain a new one; the
    refusal's fields (``error``, ``status``, ``title``, ...) are kept."""

    _kind, _code = "reauthentication_required", 9


class StoreError(AuthcoreError):
    """The shared token store could not be used (unreachable, refused the credentials,
    lost its lock)."""

    _kind, _code = "store", 10


class IssuerMismatchError(AuthcoreError):
    """The issuer named by metadata or an authorization response is not the one
    configured."""

    _kind, _code = "issuer_mismatch", 11


class CancelledError(AuthcoreError):
    """The wait was cancelled (a device authorization)."""

    _kind, _code = "cancelled", 12


for _cls in (AuthcoreError, ConfigError, TransportError, TimeoutError, OAuthError, ApiProblemError,
             RateLimitedError, InvalidResponseError, StateMismatchError, ReauthenticationRequired,
             StoreError, IssuerMismatchError, CancelledError):
    _cls.__module__ = "authcore"
del _cls
