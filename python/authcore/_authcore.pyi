"""Type stubs for the compiled module ``authcore._authcore``."""

# Lets tools that execute stubs (pdoc) read names defined further down.
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Literal, Mapping, Optional, Sequence, Tuple, Union, final, overload

from typing_extensions import TypedDict, Unpack

from .errors import AuthcoreError
from .stores import TokenStore

__version__: str
__all__ = [
    "__version__",
    "Client",
    "AssertionSource",
    "Response",
    "SignOut",
    "Token",
    "Stats",
    "Rotation",
    "AuthorizationCodeFlow",
    "AuthorizationRequest",
    "FileStore",
    "RedisStore",
    "Metadata",
    "discover",
    "DeviceFlow",
    "DeviceAuthorization",
    "DpopKey",
    "_after_fork_in_child",
]

_Scopes = Union[str, Iterable[str], None]
#: How the client authenticates at the token endpoint (RFC 6749 §2.3, RFC 7523): HTTP
#: Basic with form-encoded credentials (the standard), Basic with raw credentials, the
#: credentials in the body, none (a public client: PKCE, `client_id` in the body), or a
#: signed JWT (`private_key=`), a JWT someone else issues (`client_assertion=`), or the
#: client certificate (`tls_client_auth`, `self_signed_tls_client_auth`, RFC 8705:
#: `client_cert=`). The RFC 8414 names (`client_secret_basic`, ...) work too.
_AuthMethod = Literal[
    "basic",
    "basic_raw",
    "post",
    "none",
    "private_key_jwt",
    "client_assertion",
    "tls_client_auth",
    "self_signed_tls_client_auth",
    "client_secret_basic",
    "client_secret_basic_raw",
    "client_secret_post",
]

class _ClientOptions(TypedDict, total=False):
    """Keyword options accepted by every client and flow constructor (defaults in brackets).

    - ``connect_timeout``: seconds to open a connection, TCP and TLS [5].
    - ``timeout``: seconds for a whole call — every attempt of a token request, every
      pause between attempts (a ``Retry-After`` the server asks for is waited out only if
      it ends within this), the body read; for ``request`` the send, the renewal and the
      resend [30].
    - ``wait_timeout``: an extra bound on waiting for another thread's renewal [none:
      the leader's own deadline bounds it].
    - ``max_retries``: extra attempts of a token request after a transient failure
      (5xx, connection failure, 429 with a short ``Retry-After``) [2]; a rotating
      refresh token is never sent twice.
    - ``max_body_bytes``: the largest response body read [4 MiB].
    - ``default_lifetime``: seconds assumed when a token response has no ``expires_in``
      and the token is not a JWT with ``exp`` [none: the token never expires].
      ``expires_in`` is the lifetime in seconds counted from when the request was sent.
    - ``expiry_margin``: the least margin, in seconds, before expiry from which a token is
      no longer sent, for APIs whose clocks run ahead. It only widens the default margin
      (L/20 of a lifetime L, at most 30 s): a token is not sent from ``max(default,
      expiry_margin)`` before expiry (at most 90 % of L), so a value below the default
      changes nothing. Renewal starts earlier still (L/5, at most 5 min).
    - ``failure_backoff``: (first, max) seconds of the pause between renewals after
      consecutive failures, from the second failure, doubling [(1, 30)].
    - ``danger_allow_insecure_http``: plain HTTP to non-loopback hosts [False].
    - ``on_refresh_token``: called with each new refresh token before it is used.
    - ``on_rotation``: the same with an ``authcore.Rotation`` (the refresh token, the
      token it came with, and whose credential it is), for a hook serving many clients.
    - ``token_request_headers``: extra headers on token requests.
    - ``proxy``: a proxy URL, "" for none [from the environment].
    - ``ca_bundle``: trust exactly the CAs in this PEM file, for HTTPS and for a
      ``rediss://`` ``RedisStore`` made without ``ca_file`` [the system's trust store, or
      what ``SSL_CERT_FILE``/``SSL_CERT_DIR`` name; set to something unusable they are a
      ``ConfigError``].
    - ``client_cert``: mutual TLS (RFC 8705): a client certificate presented on every
      HTTPS connection, to the token endpoint (``auth_method="tls_client_auth"`` or
      ``"self_signed_tls_client_auth"``: the client id in the body, no secret) and to the
      APIs alike, so that tokens bound to it (``cnf.x5t#S256``) are accepted; discovered
      ``mtls_endpoint_aliases`` are then used. A path (``str`` or ``os.PathLike``) or PEM
      ``bytes``: the certificate, then any intermediates [none].
    - ``client_key``: its private key (PKCS#8, PKCS#1 or SEC1, unencrypted), of the same
      kind as ``client_cert`` [in ``client_cert`` too]. A certificate or key that cannot
      be read or used, or a key that is not the certificate's, is a ``ConfigError`` that
      never quotes the key.
    - ``store``: share tokens with other processes (``FileStore``, ``RedisStore``, or
      an object following ``authcore.TokenStore``; it saves versioned records, to be
      kept byte for byte).
    - ``store_key``: whose tokens these are in the shared store (a user, tenant or
      profile name, written into the key as ``user=NAME``; never a secret). A
      ``refresh_token`` client given a ``store`` needs it (unless its first token came
      with an ID token, whose ``sub`` names the user): without it the constructor raises
      ``ConfigError``, so that two users never share one stored token. It wins over the
      ID token's ``sub``; leave it unset on a sign-in flow that serves many users (each
      sign-in is filed under its ``sub``). Empty, longer than 255 bytes or with a control
      character: ``ConfigError`` [none].
    """

    connect_timeout: Optional[float]
    timeout: Optional[float]
    wait_timeout: Optional[float]
    max_retries: Optional[int]
    max_body_bytes: Optional[int]
    default_lifetime: Optional[float]
    expiry_margin: Optional[float]
    failure_backoff: Tuple[float, float]
    danger_allow_insecure_http: bool
    on_refresh_token: Optional[Callable[[str], object]]
    on_rotation: Optional[Callable[[Rotation], object]]
    token_request_headers: Mapping[str, str]
    proxy: Optional[str]
    ca_bundle: Union[str, "os.PathLike[str]", None]
    client_cert: Union[str, "os.PathLike[str]", bytes, None]
    client_key: Union[str, "os.PathLike[str]", bytes, None]
    store: Optional[Union[FileStore, RedisStore, TokenStore]]
    store_key: Optional[str]

class _GrantOptions(_ClientOptions, total=False):
    """Keyword options of OAuth grants (client credentials, refresh token, code, device).

    - ``dpop``: sender-constrained tokens (DPoP, RFC 9449): ``True`` for a new ES256
      key from the OS random source, or the algorithm of the new key (``"ES256"``,
      ``"EdDSA"``, ``"RS256"``; another name is a ``ConfigError``). Every token request
      carries a proof; a ``DPoP`` token is sent as ``DPoP <token>`` with a fresh proof per
      request; a server nonce is answered with one resend [False].
    - ``dpop_key``: the key to use instead: a ``DpopKey``, or PEM or a private JWK as
      ``str`` (unreadable: ``ConfigError``, which never quotes it); turns DPoP on. With a
      ``dpop`` algorithm too, they must agree [none].
    - ``dpop_allow_bearer``: accept a ``Bearer`` token answered to a DPoP token request;
      otherwise that answer is an ``InvalidResponseError``, so that a server ignoring
      DPoP never silently hands out bearer tokens [False].
    - ``client_assertion``: the client authenticates with a JWT someone else issues (a
      federated identity, RFC 7523 §2.2: a Kubernetes projected token, a CI system's
      OIDC token) from an ``AssertionSource``, read for every token request, once more
      when the server refuses it, never sent once expired (``ConfigError``); no client
      secret [none].
    """

    resource: Union[str, Iterable[str], None]
    private_key: Union[str, bytes, None]
    key_id: Optional[str]
    algorithm: Optional[str]
    revocation_url: Optional[str]
    dpop: Union[bool, str, None]
    dpop_key: Union[str, DpopKey, None]
    dpop_allow_bearer: Optional[bool]
    client_assertion: Optional[AssertionSource]

@final
class AssertionSource:
    """Where an assertion comes from (a federated client assertion, a JWT bearer
    grant's assertion): read again for every token request, once more when the server
    refuses the one it was sent; a JWT whose ``exp`` has passed is never sent
    (``ConfigError``). Its ``repr`` names the source, never what it yields."""

    @staticmethod
    def literal(value: str) -> AssertionSource:
        """A fixed value (when it expires, every request fails)."""
    @staticmethod
    def file(path: Union[str, "os.PathLike[str]"]) -> AssertionSource:
        """A file read for every token request (a Kubernetes projected token,
        ``AZURE_FEDERATED_TOKEN_FILE``); missing or empty: ``ConfigError`` naming it."""
    @staticmethod
    def command(program: str, args: Sequence[str] = ..., *, timeout: Optional[float] = None) -> AssertionSource:
        """A program run without a shell for every token request, its output the
        assertion; ``timeout`` seconds per run [10]."""
    @staticmethod
    def callback(function: Callable[[], str]) -> AssertionSource:
        """A callable returning the assertion, called for every token request on the
        renewing thread; an exception fails the request with ``ConfigError``."""
    @staticmethod
    def client(client: Client) -> AssertionSource:
        """Another client's access token, renewed there as usual (chained exchange)."""

@final
class DpopKey:
    """A DPoP key pair (RFC 9449): ES256 (P-256), EdDSA (Ed25519) or RS256 (RSA 2048).
    Its ``repr`` shows the algorithm and the thumbprint, never the private key, which is
    wiped from memory when the key is dropped."""

    @staticmethod
    def generate(algorithm: str = "ES256") -> DpopKey:
        """A new key from the OS random source: "ES256", "EdDSA" or "RS256" (case-insensitive; another name is a ConfigError)."""
    @staticmethod
    def from_pem(pem: str) -> DpopKey:
        """A key from PEM: PKCS#8 (P-256, Ed25519 or RSA), SEC1 or PKCS#1; anything else is a ConfigError that never quotes the text."""
    @staticmethod
    def from_jwk(jwk: str) -> DpopKey:
        """A key from a private JWK (JSON text: EC P-256, OKP Ed25519 or RSA with its primes), as ``private_jwk()`` gives it; anything else is a ConfigError that never quotes the text."""
    @property
    def algorithm(self) -> Literal["ES256", "EdDSA", "RS256"]:
        """The JWS algorithm it signs proofs with."""
    @property
    def thumbprint(self) -> str:
        """The RFC 7638 thumbprint of the public key: the ``jkt`` a server binds tokens to."""
    @property
    def public_jwk(self) -> str:
        """The public key as a JWK (JSON text), as every proof's header carries it."""
    def private_jwk(self) -> str:
        """The private key as a JWK (JSON text) — a secret: whoever holds it can use the tokens bound to this key. For keeping a key you generated; ``from_jwk`` reads it back. A client with a ``store`` needs none of this: the store keeps the session's key."""


@final
class Response:
    @property
    def status(self) -> int:
        """The HTTP status code."""
    @property
    def headers(self) -> dict[str, str]:
        """Response headers, names in lower case; repeated headers joined by ", "."""
    @property
    def body(self) -> bytes:
        """The body as bytes (capped at ``max_body_bytes``)."""
    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes replaced)."""
    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
    def json(self) -> Any:
        """The body parsed as JSON (raises ``json.JSONDecodeError``)."""
    def raise_for_status(self) -> None:
        """Raise for a status of 400 or more: RateLimitedError (429), OAuthError (an OAuth
        error body), else ApiProblemError with the problem's fields or the status as title."""

@final
class FileStore:
    def __new__(cls, directory: Union[str, "os.PathLike[str]"]) -> FileStore:
        """A store of one 0600 file per credential in ``directory`` (made 0700); ConfigError if it cannot be written."""
    @property
    def directory(self) -> str:
        """The store's directory."""

@final
class RedisStore:
    def __new__(
        cls, url: str, *, ca_file: Union[str, "os.PathLike[str]", None] = None
    ) -> RedisStore:
        """A store in Redis at ``url``: ``redis://`` or ``rediss://`` (one server), ``redis+sentinel://[user:password@]host:port,…/master_name[/db]`` (Redis Sentinel) or ``redis+cluster://[user:password@]host:port,…`` (Redis Cluster), also ``rediss+…``; ``ca_file`` for a CA of your own; credentials in the URL are never shown."""
    @staticmethod
    def sentinel(sentinels: Sequence[str], master: str) -> RedisStore:
        """A store on the master the Redis Sentinels ``sentinels`` (``host:port`` or ``redis[s]://[user:password@]host:port``) name ``master`` (the master set's name, or ``redis[s]://[user:password@]master_name[/db]`` with the master's credentials); a failover is followed through the sentinels."""
    @staticmethod
    def cluster(nodes: Sequence[str]) -> RedisStore:
        """A store on the Redis Cluster that ``nodes`` (``host:port`` or ``redis[s]://[user:password@]host:port``, same credentials) belong to."""

@final
class Token:
    @property
    def access_token(self) -> str:
        """The access token."""
    @property
    def token_type(self) -> str:
        """The token type, e.g. "Bearer"."""
    @property
    def scope(self) -> Optional[str]:
        """The scope the provider granted, if it said."""
    @property
    def expires_in(self) -> Optional[float]:
        """Seconds until expiry (0.0 once expired), or None if the token never expires."""
    @property
    def expires_at(self) -> Optional[float]:
        """Expiry by the server's word as Unix time (seconds), or None if it never expires."""
    @property
    def issued_token_type(self) -> Optional[str]:
        """What the server says it issued (a token exchange's ``issued_token_type``, RFC 8693), e.g. ``urn:ietf:params:oauth:token-type:access_token``; None if it did not say."""
    @property
    def id_token(self) -> Optional[str]:
        """The OpenID Connect ID token that came with the token, if any."""
    @property
    def fields(self) -> dict[str, Any]:
        """The token response's other fields; never a credential (a name ending in token, key or jwt, or naming a secret, password, assertion, verifier, code…, in any case style, at any depth)."""

@final
class Rotation:
    """What ``on_rotation`` is told about a new refresh token."""

    @property
    def refresh_token(self) -> str:
        """The new refresh token: persist it."""
    @property
    def token(self) -> Token:
        """The access token it came with, and its details."""
    @property
    def credential(self) -> Optional[str]:
        """Whose token rotated: grant, endpoint, client id, the store key's ``user=``, scopes (never a secret)."""

@final
class Stats:
    """What a client (``Client.stats()``) or flow (``AuthorizationCodeFlow.stats()``) did so far: a snapshot; counting is always on."""
    @property
    def cache_hits(self) -> int:
        """Calls answered from the cache, without a renewal or a wait."""
    @property
    def token_requests_succeeded(self) -> int:
        """Token endpoint requests that returned a token (every attempt counts)."""
    @property
    def token_requests_refused(self) -> int:
        """Token endpoint requests the server refused with a 4xx answer."""
    @property
    def token_requests_failed(self) -> int:
        """Token endpoint requests that failed otherwise (5xx, transport, timeout, bad body)."""
    @property
    def token_requests(self) -> int:
        """Token endpoint requests, whatever their outcome."""
    @property
    def renewals_initial(self) -> int:
        """Renewals for a client that had no token yet."""
    @property
    def renewals_ahead(self) -> int:
        """Renewals of a still-valid token in its renew-ahead window."""
    @property
    def renewals_expired(self) -> int:
        """Renewals because the token had expired (or was revoked by the client)."""
    @property
    def renewals_rejected(self) -> int:
        """Renewals because an API rejected the token (a 401)."""
    @property
    def renewals_forced(self) -> int:
        """Renewals asked for by ``Client.refresh()``."""
    @property
    def renewals(self) -> int:
        """Renewals, whatever their reason."""
    @property
    def store_adoptions(self) -> int:
        """Renewals that adopted a token another process put in the shared store."""
    @property
    def waits(self) -> int:
        """Calls that waited for another caller's renewal."""
    @property
    def wait_time(self) -> float:
        """Seconds spent in those waits, summed over callers."""
    @property
    def wait_timeouts(self) -> int:
        """Waits that ended at the caller's deadline before the renewal did."""
    @property
    def backoff_refusals(self) -> int:
        """Calls answered with the last failure because the failure backoff held."""
    @property
    def retries_after_401(self) -> int:
        """Requests sent again by ``request`` after a 401 and a renewal."""
    @property
    def signins_evicted(self) -> int:
        """Pending sign-ins a flow dropped beyond its bound (each logged as ``signin.evicted``); 0 for a client."""
    @property
    def dpop_nonce_retries(self) -> int:
        """Requests sent once more with a server's DPoP nonce: token requests refused ``use_dpop_nonce``, and API requests answered 401 ``use_dpop_nonce`` (by ``request``, or as ``dpop_nonce_retry`` advised)."""
    def as_dict(self) -> dict[str, Union[int, float]]:
        """Every counter by name (``wait_time`` in seconds), for metrics."""

@final
class SignOut:
    """How ``Client.sign_out()`` went: the session is forgotten here and in the store in every case."""

    @property
    def outcome(self) -> Literal["not_signed_in", "revoked", "no_revocation_endpoint", "revocation_failed"]:
        """``"not_signed_in"`` (there was no session; nothing was sent), ``"revoked"``, ``"no_revocation_endpoint"`` (the tokens stay valid at the provider until they expire) or ``"revocation_failed"`` (see ``error``)."""
    @property
    def error(self) -> Optional[AuthcoreError]:
        """Why the provider did not revoke the tokens (an exception of its kind, not raised), with ``"revocation_failed"``; otherwise None."""
    @property
    def revoked(self) -> bool:
        """Whether the provider revoked the tokens."""

@final
class Client:
    """A token client: caches its token, renews it ahead of expiry with one request
    however many threads ask, and recovers once from a 401. Share one per process.

    A renewal runs on the calling thread, and so do its ``logging`` records (logger
    ``authcore``), its hooks and a store's methods. From there, a call to the same
    client that would wait for that renewal (``token``, ``authorization_header``,
    ``refresh`` without a fresh token cached, ``revoke``, ``sign_out``) raises :class:`ConfigError`
    at once instead of waiting for itself; a handler that needs the client should hand
    the work to another thread.
    """

    @staticmethod
    def personal_access_token(token: str, **options: Unpack[_ClientOptions]) -> Client:
        """A client that always sends one fixed token; options apply to its requests."""
    @staticmethod
    def api_video(
        api_key: str,
        *,
        sandbox: bool = False,
        base_url: Optional[str] = None,
        refresh_token: Optional[str] = None,
        **options: Unpack[_ClientOptions],
    ) -> Client:
        """api.video; ``refresh_token`` resumes from one saved by ``on_refresh_token``."""
    @staticmethod
    def client_credentials(
        token_url: str,
        client_id: str,
        client_secret: Optional[str],
        *,
        scopes: _Scopes = None,
        auth_method: _AuthMethod = "basic",
        **options: Unpack[_GrantOptions],
    ) -> Client:
        """OAuth 2.0 client credentials at ``token_url`` (RFC 6749 §4.4); ``auth_method`` says how the client authenticates. ``client_secret`` None: none (a client that authenticates with ``private_key=``, ``client_assertion=`` or a client certificate)."""
    @staticmethod
    def vibe(
        client_id: str,
        client_secret: Optional[str],
        *,
        scopes: _Scopes = None,
        token_url: Optional[str] = None,
        **options: Unpack[_GrantOptions],
    ) -> Client:
        """Vibe's client credentials (HTTP Basic, scopes); ``token_url`` for another
        environment."""
    @staticmethod
    def refresh_token(
        token_url: str,
        client_id: str,
        client_secret: Optional[str],
        refresh_token: str,
        *,
        json_body: bool = False,
        auth_method: _AuthMethod = "basic",
        **options: Unpack[_GrantOptions],
    ) -> Client:
        """A client that renews with ``refresh_token`` at ``token_url`` (a rotated one is announced to ``on_refresh_token``); ``json_body=True`` sends JSON with the credentials in the body. ``client_secret`` None: a public client (``client_id`` in the body)."""
    @staticmethod
    def jwt_bearer(
        token_url: str,
        assertion: AssertionSource,
        *,
        scopes: _Scopes = None,
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        auth_method: _AuthMethod = "basic",
        **options: Unpack[_GrantOptions],
    ) -> Client:
        """The JWT bearer grant (RFC 7523 §2.1): the assertion from ``assertion`` is the grant; with ``client_id`` the client authenticates too (``client_secret``, ``private_key=`` or ``client_assertion=``)."""
    @staticmethod
    def jwt_bearer_signed(
        token_url: str,
        signing_key: Union[str, bytes],
        issuer: str,
        subject: str,
        *,
        audience: Optional[str] = None,
        signing_key_id: Optional[str] = None,
        scopes: _Scopes = None,
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        auth_method: _AuthMethod = "basic",
        **options: Unpack[_GrantOptions],
    ) -> Client:
        """The JWT bearer grant with assertions signed for every request by ``signing_key`` (PEM): ``iss``, ``sub``, ``aud`` [the token endpoint], ``exp`` 60 s on, a random ``jti``."""
    @staticmethod
    def client_credentials_from_metadata(
        metadata: Metadata,
        client_id: str,
        client_secret: Optional[str] = None,
        *,
        scopes: _Scopes = None,
        auth_method: _AuthMethod = "basic",
        **options: Unpack[_GrantOptions],
    ) -> Client:
        """Client credentials at the token endpoint a discovered ``Metadata`` names."""
    @staticmethod
    def token_exchange(
        token_url: str,
        client_id: str,
        client_secret: Optional[str] = None,
        *,
        subject: Optional[AssertionSource] = None,
        subject_token: Optional[str] = None,
        subject_token_file: Union[str, os.PathLike[str], None] = None,
        subject_client: Optional[Client] = None,
        subject_token_type: str = "access_token",
        actor: Optional[AssertionSource] = None,
        actor_token: Optional[str] = None,
        actor_token_file: Union[str, os.PathLike[str], None] = None,
        actor_token_type: str = "access_token",
        audience: _Scopes = None,
        scopes: _Scopes = None,
        requested_token_type: Optional[str] = None,
        auth_method: _AuthMethod = "basic",
        **options: Unpack[_GrantOptions],
    ) -> Client:
        """Token exchange (RFC 8693) at ``token_url``: exactly one subject — ``subject`` (any ``AssertionSource``: a command such as a CI system's token helper, a callback, a file, another client), ``subject_token`` (the token), ``subject_token_file`` (read again for every exchange) or ``subject_client`` (another client's access token: chained; when the exchange refuses it, that client renews once and its next token is sent) — of ``subject_token_type`` (``access_token``, ``refresh_token``, ``id_token``, ``jwt``, ``saml1``, ``saml2`` or a URI); an optional actor token likewise (``actor=`` or ``actor_token``/``actor_token_file``); ``audience``, ``scopes``, ``requested_token_type``. ``client_secret`` None: a public client. TypeError for none or two subjects."""
    def token(self) -> str:
        """A valid access token: the cached one, or one renewal shared by every thread that needs it. Blocks (without the GIL) only to renew."""
    def refresh(self) -> str:
        """A new token now (one renewal, or the one in flight); returns the access token."""
    def stats(self) -> Stats:
        """What this client and its copies did so far in this process: in a child forked
        after the client was made (a preloaded worker) the counts start at zero."""
    def token_info(self) -> Token:
        """A valid token with its details (``authcore.Token``)."""
    def revoke(self) -> None:
        """Revokes the refresh and access tokens (RFC 7009) and forgets them here and in the store (a revoked record stays there, so that no process renews the session); ConfigError without a revocation endpoint. With the store unreachable it still revokes at the provider, then raises StoreError: call it again once the store works."""
    def sign_out(self) -> SignOut:
        """Signs the session out: forgets its tokens here and in the store (a revoked record stays there, so that no process renews it) whatever the provider can do, then asks the provider to revoke them if there is a revocation endpoint. A provider that cannot revoke is not raised but returned as ``SignOut.error``; StoreError only when the store could not be updated (the provider was still asked; call it again once the store works)."""
    def has_unsaved_refresh_token(self) -> bool:
        """Whether this client holds a refresh token its store could not save (a rotation or a sign-in's first; logged as ``store.save_failed``): written first under the next renewal's lock, lost if the process ends before. Always False without a store and for grants that renew with a credential of their own."""
    def authorization_header(self) -> str:
        """The ``Authorization`` value for a valid token, e.g. "Bearer abc"."""
    def cached_authorization_header(self) -> Optional[str]:
        """The header if a token needing no renewal is cached, else None; never blocks."""
    def request_headers(self, method: str, url: str) -> dict[str, str]:
        """The headers a request needs, from one valid token (renewed first if needed): ``Authorization`` (``Bearer …`` or ``DPoP …``) and, for a DPoP-bound token, ``DPoP``: a fresh proof for this method and URL, with the token's hash and the nonce the URL's origin last gave. A proof is good for one request."""
    def cached_request_headers(self, method: str, url: str) -> Optional[dict[str, str]]:
        """``request_headers`` if a token needing no renewal is cached, else None; never blocks (signing the proof is its only work)."""
    def dpop_proof(self, method: str, url: str) -> Optional[str]:
        """The ``DPoP`` header value for one request with a valid token (``request_headers`` gives the matching ``Authorization`` too), or None for a bearer token."""
    def dpop_nonce_retry(
        self,
        url: str,
        status: int,
        www_authenticate: Optional[str] = None,
        dpop_nonce: Optional[str] = None,
    ) -> bool:
        """On every response to a request that carried this client's headers to ``url``: remembers its ``DPoP-Nonce`` for the next proofs to that origin, and says whether the server asked for one (401, a DPoP ``use_dpop_nonce`` challenge and a nonce). True: send the request once more with new ``request_headers``; a second such answer is final."""
    @property
    def dpop_thumbprint(self) -> Optional[str]:
        """The RFC 7638 thumbprint of the DPoP key the tokens are bound to (a stored session's once adopted, else the configured one); None without DPoP."""
    def renewal_helps(self, status: int, www_authenticate: Optional[str] = None) -> bool:
        """Whether a response is worth ``invalidate`` and one resend: a 401 for a renewable token, unless a Bearer or DPoP challenge in ``www_authenticate`` (parsed per RFC 9110) says ``error="insufficient_scope"``."""
    def invalidate(self, token: str) -> bool:
        """Reports that ``token`` was refused: the next call renews if it is still the cached one. Returns whether it was dropped."""
    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        body: Union[bytes, str, None] = None,
        json: Any = None,
        timeout: Optional[float] = None,
    ) -> Response:
        """Sends a request with the token; after a 401 (not ``insufficient_scope``) renews and sends once more. Any status comes back as a Response; ``timeout`` bounds the whole call."""
    def get(
        self,
        url: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> Response:
        """``request("GET", url, ...)``."""
    def post(
        self,
        url: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        body: Union[bytes, str, None] = None,
        json: Any = None,
        timeout: Optional[float] = None,
    ) -> Response:
        """``request("POST", url, ...)``."""

@final
class Metadata:
    @property
    def issuer(self) -> str:
        """The issuer, as checked against the one asked for."""
    @property
    def authorization_endpoint(self) -> Optional[str]:
        """Where users sign in (authorization code flow)."""
    @property
    def token_endpoint(self) -> Optional[str]:
        """Where tokens are requested."""
    @property
    def device_authorization_endpoint(self) -> Optional[str]:
        """Where a device flow starts (RFC 8628)."""
    @property
    def revocation_endpoint(self) -> Optional[str]:
        """Where tokens are revoked (RFC 7009)."""
    @property
    def introspection_endpoint(self) -> Optional[str]:
        """Where tokens are introspected (RFC 7662)."""
    @property
    def userinfo_endpoint(self) -> Optional[str]:
        """OpenID Connect's userinfo endpoint."""
    @property
    def jwks_uri(self) -> Optional[str]:
        """Where the server's signing keys are published."""
    @property
    def scopes_supported(self) -> list[str]:
        """Scopes the server lists."""
    @property
    def grant_types_supported(self) -> list[str]:
        """Grant types the server lists."""
    @property
    def token_endpoint_auth_methods_supported(self) -> list[str]:
        """Client authentication methods the server lists."""
    @property
    def code_challenge_methods_supported(self) -> list[str]:
        """PKCE methods the server lists."""
    @property
    def authorization_response_iss_parameter_supported(self) -> bool:
        """Whether authorization responses carry ``iss`` (RFC 9207)."""
    @property
    def mtls_endpoint_aliases(self) -> dict[str, str]:
        """Endpoints used instead when a client certificate is presented (RFC 8705 §5), by the name of the endpoint they stand for (``token_endpoint``, ...)."""
    @property
    def tls_client_certificate_bound_access_tokens(self) -> bool:
        """Whether the server binds access tokens to client certificates (RFC 8705 §3)."""

def discover(issuer: str, **options: Unpack[_ClientOptions]) -> Metadata:
    """The server's metadata from ``issuer`` (RFC 8414, then OpenID Connect discovery); IssuerMismatchError if it names another issuer."""

@final
class DeviceAuthorization:
    @property
    def user_code(self) -> str:
        """The code the user enters."""
    @property
    def verification_uri(self) -> str:
        """Where the user enters it."""
    @property
    def verification_uri_complete(self) -> Optional[str]:
        """The same URL with the code filled in, if the server gave one."""
    @property
    def expires_in(self) -> float:
        """Seconds the codes were valid for when issued."""
    @property
    def interval(self) -> float:
        """Seconds between polls the server asked for."""
    def wait(self, timeout: Optional[float] = None) -> Client:
        """Polls until the user approves and returns a Client; raises the server's refusal, TimeoutError, or CancelledError."""
    def cancel(self) -> None:
        """Makes a ``wait()`` in another thread raise CancelledError within 100 ms."""

@final
class DeviceFlow:
    def __new__(
        cls,
        device_authorization_url: str,
        token_url: str,
        client_id: str,
        client_secret: Optional[str] = None,
        *,
        scopes: _Scopes = None,
        auth_method: _AuthMethod = "basic",
        **options: Unpack[_GrantOptions],
    ) -> DeviceFlow:
        """The device authorization grant (RFC 8628) at these endpoints."""
    @staticmethod
    def from_metadata(
        metadata: Metadata,
        client_id: str,
        client_secret: Optional[str] = None,
        *,
        scopes: _Scopes = None,
        auth_method: _AuthMethod = "basic",
        **options: Unpack[_GrantOptions],
    ) -> DeviceFlow:
        """The device flow at the endpoints a discovered ``Metadata`` names."""
    def start(self) -> DeviceAuthorization:
        """Asks for a user code and a device code."""

@final
class AuthorizationRequest:
    @property
    def url(self) -> str:
        """The URL to send the user's browser to."""
    @property
    def state(self) -> str:
        """The one-time ``state`` the callback must carry back: keep it in the user's session for ``finish(callback_url, state)``."""
    @property
    def pending(self) -> str:
        """This sign-in, sealed under the flow's pending key, for ``finish(callback_url, pending=...)`` in
        another worker process. It holds the PKCE verifier (encrypted): keep it server-side only."""

@final
class AuthorizationCodeFlow:
    def __new__(
        cls,
        authorize_url: str,
        token_url: str,
        client_id: str,
        client_secret: Optional[str],
        redirect_uri: str,
        *,
        scopes: _Scopes = None,
        json_body: bool = False,
        auth_method: _AuthMethod = "basic",
        pkce: bool = True,
        pending_key: Optional[bytes] = None,
        pending_lifetime: Optional[float] = None,
        **options: Unpack[_GrantOptions],
    ) -> AuthorizationCodeFlow:
        """The authorization code flow (with PKCE) at these endpoints; serves any number of sign-ins at once.
        ``client_secret`` None: a public client (PKCE authenticates the exchange, ``client_id`` in the body).

        ``pending_key`` (32 random bytes, shared by every worker) seals ``AuthorizationRequest.pending``
        so that a sign-in finishes in any worker; without it, only in this flow object.
        ``pending_lifetime``: seconds a sign-in may take (default 600; more than 0, a
        ``ValueError`` otherwise; at most a day)."""
    @staticmethod
    def viewneo(
        client_id: str,
        client_secret: Optional[str],
        redirect_uri: str,
        *,
        base_url: Optional[str] = None,
        scopes: _Scopes = None,
        pending_key: Optional[bytes] = None,
        pending_lifetime: Optional[float] = None,
        **options: Unpack[_GrantOptions],
    ) -> AuthorizationCodeFlow:
        """viewneo's authorization code flow (JSON token requests)."""
    @staticmethod
    def from_metadata(
        metadata: Metadata,
        client_id: str,
        client_secret: Optional[str],
        redirect_uri: str,
        *,
        scopes: _Scopes = None,
        auth_method: _AuthMethod = "basic",
        pending_key: Optional[bytes] = None,
        pending_lifetime: Optional[float] = None,
        **options: Unpack[_GrantOptions],
    ) -> AuthorizationCodeFlow:
        """The authorization code flow at the endpoints a discovered ``Metadata`` names."""
    def authorization_url(self) -> AuthorizationRequest:
        """A URL for one sign-in, with a fresh ``state`` (keep it in the user's session) and PKCE challenge."""
    @overload
    def finish(self, callback_url: str, state: str, *, pending: None = None) -> Client:
        """Finish this session's sign-in: ``state`` is the ``AuthorizationRequest.state`` the user's session kept."""
    @overload
    def finish(self, callback_url: str, state: None = None, *, pending: str) -> Client:
        """Finish this session's sign-in, started in any worker: ``pending`` is the sealed ``AuthorizationRequest.pending``."""
    def stats(self) -> Stats:
        """The flow's counters: code exchanges and ``signins_evicted``."""

def _after_fork_in_child() -> None: ...
