"""Interoperability with a real, certified authorization server (panva's oidc-provider
from the npm registry, installed by tests/provision.sh): discovery, client credentials,
the code flow with PKCE and ``iss``, the device flow, and revocation; and each grant
with DPoP (nonces demanded at the token endpoint and at userinfo), the tokens' binding
checked by introspection (``cnf.jkt``). Workloads without secrets: the ``federated``
client authenticated with assertions of the server's test issuer read from a file, and
token exchange (the grant the server registers) with a chained subject client; mutual
TLS (RFC 8705) against the server in TLS mode: ``tls_client_auth`` and
``self_signed_tls_client_auth`` through its ``mtls_endpoint_aliases``, the tokens bound
to the certificate."""

from __future__ import annotations

import base64
import hashlib
import http.cookiejar
import json
import os
import pathlib
import re
import select
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterator, Literal, Optional

import pytest

import authcore
from conftest import ROOT

OIDC = ROOT / "tests" / "oidc"
REDIRECT = "http://127.0.0.1/callback"
API = "https://api.example.test/"


def _spawn(env: Optional[dict[str, str]]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["node", "server.mjs"], cwd=OIDC, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=None if env is None else {**os.environ, **env},
    )


def _start(env: Optional[dict[str, str]] = None) -> subprocess.Popen[str]:
    """The server, once it has said where it listens (within 20 s). A start that says
    nothing in time is stopped and tried once more: Node has been seen to stall at
    start-up on a loaded machine."""
    if not (OIDC / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("oidc-provider is not installed: run `npm ci --prefix tests/oidc` (tests/provision.sh does)")
    for _ in range(2):
        proc = _spawn(env)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20.0)
        if ready:
            return proc
        _stop(proc)
    pytest.fail("oidc-provider did not start within 20 s, twice")


def _line(proc: subprocess.Popen[str], name: str) -> str:
    """The value of the next line the server prints, which must be ``name=...`` (it
    prints its lines together, once it listens: see ``_start``)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith(name + "="), line
    return line.strip().split("=", 1)[1]


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    """oidc-provider on a free loopback port, stopped at the end."""
    proc = _start()
    try:
        yield _line(proc, "OIDC_ISSUER")
    finally:
        _stop(proc)


class _Stop(urllib.request.HTTPRedirectHandler):
    """Follows redirects, except to the redirect URI: that one is recorded."""

    def __init__(self) -> None:
        self.landed: Optional[str] = None

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if newurl.startswith(REDIRECT):
            self.landed = newurl
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _browser() -> tuple[urllib.request.OpenerDirector, _Stop]:
    stop = _Stop()
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), stop
    )
    return opener, stop


def _sign_in(url: str) -> str:
    """Signs in (the provider approves at once) and returns the callback URL."""
    opener, stop = _browser()
    try:
        opener.open(url, timeout=10)
    except urllib.error.HTTPError:
        pass  # the unfollowed redirect surfaces as an HTTPError
    assert stop.landed, "no redirect to the callback"
    return stop.landed


def _approve_device(url: str) -> None:
    """Opens the verification URL and submits the code and confirmation forms."""
    opener, _ = _browser()
    page = opener.open(url, timeout=10)
    body, at = page.read().decode(), page.geturl()
    for _ in range(4):
        if "<title>Sign-in Success</title>" in body:
            return
        form = body[body.index("<form"):body.index("</form>")]
        action = re.search(r'action="([^"]+)"', form)
        fields = dict(re.findall(r'name="([^"]+)"[^>]*?value="([^"]*)"', form))
        target = urllib.parse.urljoin(at, action.group(1) if action else at)
        page = opener.open(target, data=urllib.parse.urlencode(fields).encode(), timeout=10)
        body, at = page.read().decode(), page.geturl()
    raise AssertionError("device not approved: " + body[:300])


def _userinfo(metadata: authcore.Metadata, access_token: str) -> int:
    assert metadata.userinfo_endpoint
    req = urllib.request.Request(metadata.userinfo_endpoint, headers={"Authorization": "Bearer " + access_token})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback only)
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_discovery(issuer: str) -> None:
    m = authcore.discover(issuer)
    assert m.issuer == issuer
    assert m.token_endpoint == issuer + "/token"
    assert m.device_authorization_endpoint and m.revocation_endpoint
    assert m.authorization_response_iss_parameter_supported
    assert "S256" in m.code_challenge_methods_supported
    with pytest.raises(authcore.IssuerMismatchError):
        authcore.discover(issuer + "/")


def test_client_credentials_with_a_resource(issuer: str) -> None:
    m = authcore.discover(issuer)
    client = authcore.Client.client_credentials_from_metadata(
        m, "cc-basic", "cc-basic-secret-0123456789", scopes="api:read", resource=API,
    )
    payload = client.token().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["aud"] == API
    with pytest.raises(TypeError, match="resource"):
        authcore.Client.client_credentials(m.token_endpoint or "", "cc-basic", "x", resource=42)  # type: ignore[arg-type]


def test_code_flow_with_iss_then_revocation(issuer: str) -> None:
    m = authcore.discover(issuer)
    flow = authcore.AuthorizationCodeFlow.from_metadata(
        m, "app", "app-secret-0123456789", REDIRECT, scopes="openid",
    )
    request = flow.authorization_url()
    forged = _sign_in(request.url).replace("iss=http", "iss=https")
    with pytest.raises(authcore.IssuerMismatchError):
        flow.finish(forged, request.state)
    request = flow.authorization_url()
    client = flow.finish(_sign_in(request.url), request.state)
    access_token = client.token()
    assert _userinfo(m, access_token) == 200
    # The exchange's ID token and other fields come with the token's details.
    info = client.token_info()
    assert info.id_token is not None and info.id_token.count(".") == 2
    assert info.id_token not in repr(info)
    assert info.expires_at is not None and info.expires_at > time.time()
    assert "access_token" not in info.fields and "id_token" not in info.fields
    client.revoke()
    assert _userinfo(m, access_token) == 401
    with pytest.raises(authcore.ReauthenticationRequired):
        client.token()


def test_device_flow_and_cancel(issuer: str) -> None:
    m = authcore.discover(issuer)
    flow = authcore.DeviceFlow.from_metadata(m, "cli", scopes="openid")
    other = flow.start()
    threading.Timer(0.2, other.cancel).start()
    with pytest.raises(authcore.CancelledError):
        other.wait()
    auth = flow.start()
    assert auth.user_code and auth.verification_uri.startswith(issuer)
    assert auth.expires_in > 0 and auth.interval > 0
    assert auth.verification_uri_complete
    approver = threading.Thread(target=_approve_device, args=(auth.verification_uri_complete,))
    approver.start()
    client = auth.wait(timeout=60)
    approver.join()
    assert _userinfo(m, client.token()) == 200
    client.revoke()


def test_grant_keywords_are_checked(issuer: str) -> None:
    m = authcore.discover(issuer)
    with pytest.raises(authcore.ConfigError):
        authcore.Client.client_credentials_from_metadata(m, "jwt-client", private_key="not a key")
    with pytest.raises(TypeError, match="need 'private_key'"):
        authcore.Client.client_credentials_from_metadata(m, "cc-basic", "x", key_id="k1")
    with pytest.raises(TypeError, match="private_key"):
        authcore.Client.client_credentials_from_metadata(m, "cc-basic", "x", private_key=42)  # type: ignore[arg-type]
    with pytest.raises(authcore.ConfigError, match="private_key_jwt needs a private key"):
        authcore.Client.client_credentials_from_metadata(m, "jwt-client", auth_method="private_key_jwt")
    with pytest.raises(ValueError, match="auth_method"):
        authcore.Client.client_credentials_from_metadata(m, "cc-basic", "x", auth_method="magic")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected option 'resource'"):
        authcore.Client.api_video("key", resource=API)  # type: ignore[call-arg]
    no_revocation = authcore.Client.client_credentials(m.token_endpoint or "", "cc-basic", "cc-basic-secret-0123456789")
    with pytest.raises(authcore.ConfigError, match="revocation endpoint"):
        no_revocation.revoke()


# --- DPoP (RFC 9449): oidc-provider demands a nonce at the token endpoint and at userinfo.


def _introspect(metadata: authcore.Metadata, token: str) -> dict[str, Any]:
    """The provider's word on ``token`` (RFC 7662, as the confidential ``app`` client)."""
    assert metadata.introspection_endpoint
    basic = base64.b64encode(b"app:app-secret-0123456789").decode()
    req = urllib.request.Request(
        metadata.introspection_endpoint,
        data=urllib.parse.urlencode({"token": token}).encode(),
        headers={"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback only)
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def _call(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """GET ``url`` with ``headers``: the status and the response's headers (names in
    lower case)."""
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback only)
            return int(resp.status), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as e:
        e.close()
        return int(e.code), {k.lower(): v for k, v in e.headers.items()}


def _assert_bound(metadata: authcore.Metadata, client: authcore.Client) -> None:
    """The client's token is a DPoP token bound to the client's key, by the provider's word."""
    info = client.token_info()
    assert info.token_type == "DPoP"
    answer = _introspect(metadata, info.access_token)
    assert answer["active"] is True and answer["token_type"] == "DPoP", answer
    assert client.dpop_thumbprint is not None
    assert answer["cnf"] == {"jkt": client.dpop_thumbprint}, answer


def _assert_userinfo_wants_the_proof(metadata: authcore.Metadata, client: authcore.Client) -> None:
    """Userinfo, a resource server: the token alone is refused; with the client's headers
    it is accepted, after the nonce dance (the URL names another origin of the same
    server, for which the client holds no nonce yet)."""
    assert metadata.userinfo_endpoint
    url = metadata.userinfo_endpoint.replace("127.0.0.1", "localhost")
    token = client.token()
    status, headers = _call(url, {"Authorization": "DPoP " + token})
    assert status == 400 and "`DPoP` header not provided" in headers["www-authenticate"], "no proof"
    status, headers = _call(url, {"Authorization": "Bearer " + token})
    assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"], "a bound token as Bearer"
    before = client.stats().dpop_nonce_retries
    status, headers = _call(url, client.request_headers("GET", url))
    assert status == 401 and "use_dpop_nonce" in headers["www-authenticate"], headers
    assert client.dpop_nonce_retry(url, status, headers["www-authenticate"], headers["dpop-nonce"])
    status, headers = _call(url, client.request_headers("GET", url))
    assert status == 200
    client.dpop_nonce_retry(url, status, headers.get("www-authenticate"), headers.get("dpop-nonce"))
    assert client.stats().dpop_nonce_retries == before + 1
    # Then Client.get, and the adapter, with the nonce now known: one request each.
    assert client.get(url).json()["sub"] == "test-user"
    import requests

    r = requests.get(url, auth=authcore.RequestsAuth(client), timeout=10)
    assert r.status_code == 200 and r.history == []
    assert client.stats().dpop_nonce_retries == before + 1


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_dpop_client_credentials(issuer: str, alg: str) -> None:
    m = authcore.discover(issuer)
    client = authcore.Client.client_credentials_from_metadata(
        m, "cc-basic", "cc-basic-secret-0123456789", scopes="api:read", dpop=alg,
    )
    _assert_bound(m, client)
    stats = client.stats()
    assert stats.dpop_nonce_retries == 1, "the token endpoint's nonce, once"
    assert stats.token_requests == 2 and stats.token_requests_succeeded == 1
    # The next token asks with the nonce already.
    client.refresh()
    _assert_bound(m, client)
    assert client.stats().dpop_nonce_retries == 1 and client.stats().token_requests == 3


def test_dpop_code_flow_with_pkce_and_refresh(issuer: str) -> None:
    m = authcore.discover(issuer)
    key = authcore.DpopKey.generate("EdDSA")
    flow = authcore.AuthorizationCodeFlow.from_metadata(
        m, "app", "app-secret-0123456789", REDIRECT, scopes="openid", dpop_key=key,
    )
    request = flow.authorization_url()
    client = flow.finish(_sign_in(request.url), request.state)
    assert client.dpop_thumbprint == key.thumbprint
    _assert_bound(m, client)
    first = client.token()
    assert client.refresh() != first
    _assert_bound(m, client)
    stats = client.stats()
    assert stats.dpop_nonce_retries == 1 and stats.token_requests == 3, "exchange (twice), refresh"
    _assert_userinfo_wants_the_proof(m, client)


def test_dpop_device_flow(issuer: str) -> None:
    m = authcore.discover(issuer)
    assert m.token_endpoint
    key = authcore.DpopKey.generate()
    refresh_tokens: list[str] = []
    flow = authcore.DeviceFlow.from_metadata(
        m, "cli", scopes="openid", dpop_key=key, on_refresh_token=refresh_tokens.append
    )
    auth = flow.start()
    assert auth.verification_uri_complete
    approver = threading.Thread(target=_approve_device, args=(auth.verification_uri_complete,))
    approver.start()
    client = auth.wait(timeout=60)
    approver.join()
    _assert_bound(m, client)
    client.refresh()
    _assert_bound(m, client)
    _assert_userinfo_wants_the_proof(m, client)
    # A public client's refresh token is bound to the key: another key cannot use it…
    stranger = authcore.Client.refresh_token(
        m.token_endpoint, "cli", "", refresh_tokens[-1], auth_method="none", dpop=True
    )
    with pytest.raises(authcore.ReauthenticationRequired) as refused:
        stranger.token()
    assert refused.value.error == "invalid_grant"
    # …while the key, kept as its private JWK, resumes the session after a "restart".
    resumed = authcore.Client.refresh_token(
        m.token_endpoint, "cli", "", refresh_tokens[-1], auth_method="none",
        dpop_key=authcore.DpopKey.from_jwk(key.private_jwk()), revocation_url=m.revocation_endpoint,
    )
    _assert_bound(m, resumed)
    assert resumed.dpop_thumbprint == key.thumbprint
    resumed.revoke()


# --- Workloads without secrets: federated client assertions (RFC 7523 §2.2) and token
# exchange (RFC 8693) through the grant the server registers.

ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


def _mint(issuer: str, ttl_s: int = 300) -> str:
    """An assertion of the server's test issuer about the ``federated`` client."""
    req = urllib.request.Request(
        issuer + "/test-issuer/mint", data=json.dumps({"ttl_s": ttl_s}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback only)
        return str(json.loads(resp.read())["jwt"])


def test_federated_client_assertion_from_a_rewritten_file(issuer: str, tmp_path: pathlib.Path) -> None:
    m = authcore.discover(issuer)
    path = tmp_path / "projected-token"
    path.write_text(_mint(issuer))
    client = authcore.Client.client_credentials_from_metadata(
        m, "federated", scopes="api:read", client_assertion=authcore.AssertionSource.file(path),
        max_retries=0, failure_backoff=(0.01, 0.05),
    )
    first = client.token()
    assert _introspect(m, first)["client_id"] == "federated"
    # Rewritten (as the kubelet does): the next token request uses the new one.
    path.write_text(_mint(issuer))
    assert client.refresh() != first
    # Not rewritten: the provider refuses the used assertion (its jti), sent once, and
    # the error names no assertion.
    used = path.read_text()
    time.sleep(0.1)
    before = client.stats().token_requests
    with pytest.raises(authcore.OAuthError) as refused:
        client.refresh()
    assert refused.value.error == "invalid_client"
    assert used not in str(refused.value) and used not in repr(client)
    assert client.stats().token_requests - before == 1
    # Expired: refused here, never sent.
    path.write_text(_mint(issuer, ttl_s=-30))
    time.sleep(0.1)
    before = client.stats().token_requests
    with pytest.raises(authcore.ConfigError, match="expired"):
        client.refresh()
    assert client.stats().token_requests == before
    # A callable that first gives the used assertion and then a fresh one: refused, read
    # again, and the call succeeds with one more request.
    values = [_mint(issuer), used]
    rereading = authcore.Client.client_credentials_from_metadata(
        m, "federated", scopes="api:read", client_assertion=authcore.AssertionSource.callback(values.pop),
    )
    rereading.token()
    assert rereading.stats().token_requests == 2 and values == []


def _revoke(metadata: authcore.Metadata, basic: bytes, token: str) -> None:
    assert metadata.revocation_endpoint
    req = urllib.request.Request(
        metadata.revocation_endpoint,
        data=urllib.parse.urlencode({"token": token}).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(basic).decode(),
                 "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback only)
        assert resp.status == 200


def test_token_exchange_with_a_chained_subject_client(issuer: str) -> None:
    m = authcore.discover(issuer)
    assert m.token_endpoint
    subject = authcore.Client.client_credentials_from_metadata(
        m, "cc-basic", "cc-basic-secret-0123456789", scopes="api:read", failure_backoff=(0.01, 0.05),
    )
    exchanger = authcore.Client.token_exchange(
        m.token_endpoint, "exchanger", "exchanger-secret-0123456789",
        subject_client=subject, audience=API, scopes="api:read", failure_backoff=(0.01, 0.05),
    )
    first = exchanger.token_info()
    assert first.issued_token_type == ACCESS_TOKEN
    subject_token = subject.token()
    assert first.access_token != subject_token
    seen = _introspect(m, first.access_token)
    assert seen["active"] is True and seen["client_id"] == "exchanger", seen
    # The subject token revoked at the provider by its client: the exchange is refused
    # once, the subject renewed, and the exchange sent again in the same call.
    _revoke(m, b"cc-basic:cc-basic-secret-0123456789", subject_token)
    assert _introspect(m, subject_token)["active"] is False
    time.sleep(0.1)
    before = exchanger.stats().token_requests
    assert exchanger.refresh() != first.access_token
    assert exchanger.stats().token_requests - before == 2
    assert subject.token() != subject_token


# --- Mutual TLS (RFC 8705): the server in TLS mode, its mTLS endpoints on a listener that
# asks for client certificates (named in mtls_endpoint_aliases).


class TlsProvider:
    def __init__(self, issuer: str, mtls_base: str, files: pathlib.Path) -> None:
        self.issuer, self.mtls_base, self.files = issuer, mtls_base, files
        self.ca = str(files / "ca.pem")


@pytest.fixture(scope="module")
def tls_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsProvider]:
    """oidc-provider in TLS mode with certificates from tests/oidc/make-certs.sh."""
    files = tmp_path_factory.mktemp("oidc-tls")
    subprocess.run(["bash", str(OIDC / "make-certs.sh"), str(files)], check=True, timeout=60)
    proc = _start({"AUTHCORE_OIDC_TLS_DIR": str(files)})
    try:
        issuer = _line(proc, "OIDC_ISSUER")
        yield TlsProvider(issuer, _line(proc, "OIDC_MTLS_BASE"), files)
    finally:
        _stop(proc)


def _thumbprint(pem_path: pathlib.Path) -> str:
    """RFC 8705's ``x5t#S256`` of a PEM certificate."""
    der = ssl.PEM_cert_to_DER_cert(pem_path.read_text())
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("client_id", "auth_method", "cert", "other"),
    [
        ("mtls", "tls_client_auth", "client", "self-signed"),
        ("mtls-self", "self_signed_tls_client_auth", "self-signed", "client"),
    ],
)
def test_mtls_client_credentials_with_a_bound_token(
    tls_provider: TlsProvider, client_id: str, auth_method: Literal["tls_client_auth", "self_signed_tls_client_auth"],
    cert: str, other: str,
) -> None:
    p = tls_provider
    m = authcore.discover(p.issuer, ca_bundle=p.ca)
    assert m.tls_client_certificate_bound_access_tokens
    assert m.mtls_endpoint_aliases["token_endpoint"] == p.mtls_base + "/token" != m.token_endpoint
    client = authcore.Client.client_credentials_from_metadata(
        m, client_id, scopes="api:read", auth_method=auth_method, ca_bundle=p.ca,
        client_cert=p.files / f"{cert}.pem", client_key=p.files / f"{cert}.key",
    )
    token = client.token()
    x5t = _thumbprint(p.files / f"{cert}.pem")
    assert x5t == (p.files / f"{cert}.x5t").read_text().strip()
    # The provider's introspection: the token is bound to the certificate.
    assert m.introspection_endpoint
    req = urllib.request.Request(
        m.introspection_endpoint,
        data=urllib.parse.urlencode({"token": token}).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(b"app:app-secret-0123456789").decode()},
    )
    context = ssl.create_default_context(cafile=p.ca)
    with urllib.request.urlopen(req, timeout=10, context=context) as resp:  # noqa: S310 (loopback only)
        seen = json.loads(resp.read())
    assert seen["active"] is True and seen["client_id"] == client_id, seen
    assert seen["cnf"] == {"x5t#S256": x5t}, seen
    # A resource server on the mTLS listener takes it with the certificate...
    resource = p.mtls_base + "/test-api"
    answer = client.get(resource)
    assert answer.status == 200
    assert answer.json() == {"client_id": client_id, "cnf": {"x5t#S256": x5t}}
    # ...and not on a connection without it, nor with another one.
    thieves = [
        authcore.Client.personal_access_token(token, ca_bundle=p.ca),
        authcore.Client.personal_access_token(
            token, ca_bundle=p.ca, client_cert=p.files / f"{other}.pem", client_key=p.files / f"{other}.key",
        ),
    ]
    for thief in thieves:
        refused = thief.get(resource)
        assert refused.status == 401, refused.text


def test_mtls_a_certificate_the_ca_did_not_issue_is_refused(tls_provider: TlsProvider) -> None:
    p = tls_provider
    m = authcore.discover(p.issuer, ca_bundle=p.ca)
    stranger = authcore.Client.client_credentials_from_metadata(
        m, "mtls", auth_method="tls_client_auth", ca_bundle=p.ca, max_retries=0,
        client_cert=p.files / "self-signed.pem", client_key=p.files / "self-signed.key",
    )
    with pytest.raises(authcore.OAuthError) as refused:
        stranger.token()
    assert refused.value.error == "invalid_client"
