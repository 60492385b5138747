"""authcore: access tokens done once, correctly.

A :class:`Client` obtains a token through one grant, caches it, renews it ahead of
expiry with exactly one request however many threads ask, recovers once from a 401,
and never prints a secret. The engine is the Rust crate ``authcore``; this package is
its Python face.

>>> client = Client.vibe("my-client-id", "my-client-secret", scopes="campaigns:read")
>>> response = client.get("https://api.vibe.co/rest/advertisers")  # doctest: +SKIP
"""

import logging as _logging
import os as _os

from ._authcore import (
    AssertionSource,
    AuthorizationCodeFlow,
    AuthorizationRequest,
    Client,
    DeviceAuthorization,
    DeviceFlow,
    DpopKey,
    FileStore,
    Metadata,
    RedisStore,
    Response,
    Rotation,
    SignOut,
    Stats,
    Token,
    __version__,
    discover,
)
from ._authcore import _after_fork_in_child
from .errors import (
    ApiProblemError,
    AuthcoreError,
    CancelledError,
    ConfigError,
    InvalidResponseError,
    IssuerMismatchError,
    OAuthError,
    RateLimitedError,
    ReauthenticationRequired,
    StateMismatchError,
    StoreError,
    TimeoutError,
    TransportError,
)
from .adapters import HttpxAuth, RequestsAuth
from .stores import TokenStore

# A library's logger with a handler of its own that drops everything (the logging HOWTO,
# "Configuring Logging for a Library"): without one, a program that configured no
# logging would get every warning printed by ``logging.lastResort`` besides the
# exception it catches. A program that configures logging (``basicConfig``, a handler
# on "authcore" or the root) gets the records as before: they still propagate.
_logging.getLogger("authcore").addHandler(_logging.NullHandler())

# The core notices a child's new process id by itself; this also covers a grandchild
# that happens to get its grandparent's old process id.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = [
    "ApiProblemError",
    "AssertionSource",
    "AuthcoreError",
    "AuthorizationCodeFlow",
    "AuthorizationRequest",
    "Client",
    "ConfigError",
    "DeviceAuthorization",
    "DeviceFlow",
    "DpopKey",
    "FileStore",
    "HttpxAuth",
    "InvalidResponseError",
    "Metadata",
    "OAuthError",
    "RateLimitedError",
    "ReauthenticationRequired",
    "StoreError",
    "IssuerMismatchError",
    "CancelledError",
    "RedisStore",
    "RequestsAuth",
    "Response",
    "StateMismatchError",
    "Rotation",
    "SignOut",
    "Stats",
    "TimeoutError",
    "Token",
    "TokenStore",
    "TransportError",
    "__version__",
    "discover",
]
