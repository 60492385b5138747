"""Failures become typed exceptions with details, never secrets; wrong arguments are
TypeError/ValueError with a clear message."""

from __future__ import annotations

import pathlib
import re
import time
from typing import Any

import pytest

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, DevServer

SECRET = "wrong-secret-4242"


def test_bad_secret_is_an_oauth_error_with_the_providers_words(dev: DevServer) -> None:
    client = authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, SECRET)
    with pytest.raises(authcore.OAuthError) as info:
        client.token()
    e = info.value
    assert isinstance(e, authcore.AuthcoreError)
    assert (e.kind, e.code, e.error, e.status, e.http_status) == ("oauth", 4, "invalid_client", 401, 401)
    assert e.description
    assert "invalid_client" in str(e)
    assert SECRET not in str(e) and SECRET not in repr(e)
    assert dev.token_requests() == 1, "an OAuth refusal is not retried"


def test_connection_refused_is_a_transport_error() -> None:
    client = authcore.Client.client_credentials(
        "http://127.0.0.1:1/token", CLIENT_ID, CLIENT_SECRET, max_retries=0
    )
    with pytest.raises(authcore.TransportError) as info:
        client.token()
    assert info.value.kind == "transport" and info.value.code == 2


def test_malformed_token_response(dev: DevServer) -> None:
    dev.control("POST", "malformed", {"count": 1})
    client = authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, max_retries=0,
        failure_backoff=(0.05, 0.1),
    )
    with pytest.raises(authcore.InvalidResponseError) as info:
        client.token()
    assert "Service temporarily unavailable" in str(info.value), "a short snippet says why"
    time.sleep(0.1)  # past the failure backoff
    assert client.token(), "the next request succeeds"


def test_slow_provider_is_a_timeout(dev: DevServer) -> None:
    dev.config(latency_ms=1500)
    client = authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, timeout=0.3, max_retries=0
    )
    with pytest.raises(authcore.TimeoutError):
        client.token()


def test_rate_limit_reports_the_delay(dev: DevServer) -> None:
    dev.control("POST", "fail", {"count": 1, "status": 429, "retry_after": 7})
    client = authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, max_retries=0
    )
    with pytest.raises(authcore.RateLimitedError) as info:
        client.token()
    assert info.value.retry_after == 7.0 and info.value.http_status == 429


def test_refused_refresh_token_requires_reauthentication(dev: DevServer) -> None:
    client = authcore.Client.refresh_token(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, "not-a-refresh-token"
    )
    with pytest.raises(authcore.ReauthenticationRequired) as info:
        client.token()
    assert info.value.error == "invalid_grant"
    assert "not-a-refresh-token" not in str(info.value)


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(authcore.ConfigError, match="https"):
        authcore.Client.client_credentials("http://auth.example.com/token", "id", "secret")
    client = authcore.Client.client_credentials(
        "http://auth.example.com/token", "id", "secret", danger_allow_insecure_http=True
    )
    assert client is not None


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"timeout": "10"}, TypeError, "timeout"),
        ({"timeout": True}, TypeError, "timeout"),
        ({"timeout": -1}, ValueError, "positive"),
        ({"max_retries": -1}, ValueError, "negative"),
        ({"max_retries": 1.5}, TypeError, "int"),
        ({"on_refresh_token": 3}, TypeError, "callable"),
        ({"danger_allow_insecure_http": 1}, TypeError, "bool"),
        ({"failure_backoff": (2, 1)}, ValueError, "below"),
        ({"token_request_headers": {"a": 1}}, TypeError, "strings"),
        ({"tiemout": 3}, TypeError, "unexpected option 'tiemout'"),
        ({"scopes": 42}, TypeError, "scopes"),
        ({"scopes": ["a", 1]}, TypeError, "scope"),
        ({"auth_method": "digest"}, ValueError, "auth_method"),
    ],
)
def test_wrong_arguments_are_clear_errors(kwargs: dict[str, Any], exc: type[Exception], words: str) -> None:
    with pytest.raises(exc, match=words):
        authcore.Client.client_credentials("https://a.example/token", "id", "secret", **kwargs)


def test_wrong_positional_types() -> None:
    with pytest.raises(TypeError):
        authcore.Client.personal_access_token(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        authcore.Client.client_credentials(b"https://a.example/token", "id", "secret")  # type: ignore[arg-type]
    client = authcore.Client.personal_access_token("t")
    with pytest.raises(TypeError, match="body"):
        client.request("POST", "https://a.example/", body=123)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        client.request("POST", "https://a.example/", body=b"x", json={})
    with pytest.raises(TypeError, match="headers"):
        client.request("GET", "https://a.example/", headers=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        client.get("https://a.example/", timeout=0)


def _pythonic(text: str) -> str:
    """``text`` if it is a repr in Python's manner: no Rust ``Debug`` (``Some(…)``,
    ``Name { field: … }``, strings in double quotes where Python uses single ones)."""
    assert not re.search(r"Some\(|\w \{ |\w: \"|=\"[^']*\"", text), text
    return text


def test_every_repr_is_pythonic(dev: DevServer, tmp_path: pathlib.Path) -> None:
    token_url = dev.url + "/oauth2/token"
    client = authcore.Client.client_credentials(token_url, "it's-me", CLIENT_SECRET)
    assert _pythonic(repr(client)) == (
        f"<authcore.Client grant='client_credentials' token_url={token_url!r} client_id=\"it's-me\">"
    )
    assert repr(authcore.Client.vibe("v", "s")) == "<authcore.Client grant='vibe' client_id='v'>"
    assert repr(authcore.FileStore(tmp_path)) == f"FileStore({str(tmp_path)!r})"
    store = authcore.RedisStore("rediss://:hunter2-password@[::1]:6380/1")
    assert repr(store) == "RedisStore('rediss://[::1]:6380/1')"
    info = authcore.Client.client_credentials(token_url, CLIENT_ID, CLIENT_SECRET, scopes="admin").token_info()
    assert _pythonic(repr(info)).startswith("<authcore.Token type='Bearer' scope='admin' expires_in=")
    key = authcore.DpopKey.generate("EdDSA")
    assert repr(key) == f"<authcore.DpopKey algorithm='EdDSA' thumbprint={key.thumbprint!r}>"
    assert repr(authcore.AssertionSource.command("gh", ["--token", "secret-arg"])) == (
        "<authcore.AssertionSource command='gh'>"
    )
    assert repr(authcore.AssertionSource.literal("secret-value")) == "<authcore.AssertionSource literal>"
    metadata = authcore.discover(dev.url)
    assert repr(metadata) == f"<authcore.Metadata issuer={dev.url!r}>"
    flow = authcore.AuthorizationCodeFlow.from_metadata(metadata, CLIENT_ID, CLIENT_SECRET, "http://127.0.0.1/cb")
    assert repr(flow) == f"<authcore.AuthorizationCodeFlow issuer={dev.url!r} client_id={CLIENT_ID!r}>"
    request = flow.authorization_url()
    assert repr(request) == f"<authcore.AuthorizationRequest url={request.url!r}>"
    signed_in = flow.finish(dev.follow_authorize(request.url), request.state)
    assert repr(signed_in) == (
        f"<authcore.Client grant='authorization_code' issuer={dev.url!r} client_id={CLIENT_ID!r}>"
    )
    device = authcore.DeviceFlow.from_metadata(metadata, CLIENT_ID, CLIENT_SECRET)
    assert _pythonic(repr(device)).startswith("<authcore.DeviceFlow issuer=")
    started = device.start()
    assert repr(started) == (
        f"<authcore.DeviceAuthorization user_code={started.user_code!r}"
        f" verification_uri={started.verification_uri!r}>"
    )
    rotations: list[authcore.Rotation] = []
    session = dev.control("POST", "session", {"sub": "rhea"})
    rotating = authcore.Client.refresh_token(
        token_url, CLIENT_ID, CLIENT_SECRET, session["refresh_token"], on_rotation=rotations.append
    )
    assert _pythonic(repr(rotating)) == (
        f"<authcore.Client grant='refresh_token' token_url={token_url!r} client_id={CLIENT_ID!r}>"
    )
    rotating.token()
    (rotation,) = rotations
    assert rotation.credential is not None
    assert repr(rotation) == f"<authcore.Rotation credential={rotation.credential!r}>"
    assert repr(signed_in.sign_out()) == "<authcore.SignOut outcome='revoked'>"
    auth = authcore.Client.api_video("k", sandbox=True)
    assert repr(auth) == "<authcore.Client grant='api_video' base_url='https://sandbox.api.video'>"


def test_no_repr_shows_a_secret(dev: DevServer) -> None:
    secret = "sk-live-abcdef0123456789"
    objects: list[object] = [
        authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, secret),
        authcore.Client.vibe(CLIENT_ID, secret),
        authcore.Client.api_video(secret),
        authcore.Client.personal_access_token(secret),
        authcore.Client.refresh_token(dev.url + "/oauth2/token", CLIENT_ID, secret, secret),
        authcore.AuthorizationCodeFlow.viewneo(CLIENT_ID, secret, "http://127.0.0.1/cb"),
    ]
    for obj in objects:
        assert secret not in repr(obj) and secret not in str(obj), repr(obj)
    flow = objects[-1]
    assert isinstance(flow, authcore.AuthorizationCodeFlow)
    request = flow.authorization_url()
    assert secret not in repr(request) and request.url in repr(request)
    assert secret not in repr(authcore.RequestsAuth(objects[0]))  # type: ignore[arg-type]


def test_exceptions_live_in_authcore_pickle_and_take_keyword_attributes() -> None:
    import pickle

    e = authcore.OAuthError("refused", error="invalid_client", status=401, http_status=401)
    assert type(e).__module__ == "authcore"
    assert (e.kind, e.code, e.error, e.status, e.title) == ("oauth", 4, "invalid_client", 401, None)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is authcore.OAuthError
    assert (str(back), back.error, back.status, back.kind) == ("refused", "invalid_client", 401, "oauth")
    for cls in (authcore.AuthcoreError, authcore.ConfigError, authcore.TimeoutError, authcore.StoreError,
                authcore.ReauthenticationRequired, authcore.StateMismatchError):
        assert cls.__module__ == "authcore"
        again = pickle.loads(pickle.dumps(cls("x")))
        assert type(again) is cls and str(again) == "x"
    assert issubclass(authcore.TimeoutError, TimeoutError)
    assert isinstance(authcore.TimeoutError("late"), OSError)
    with pytest.raises(TypeError, match="unexpected attribute"):
        authcore.OAuthError("x", colour="red")


def test_raised_exceptions_pickle_across_processes(dev: DevServer) -> None:
    import concurrent.futures
    import pickle

    client = authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, "wrong-secret")
    with pytest.raises(authcore.OAuthError) as caught:
        client.token()
    back = pickle.loads(pickle.dumps(caught.value))
    assert (back.error, back.status, back.http_status) == ("invalid_client", 401, 401)
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_raise_oauth_error, dev.url)
        with pytest.raises(authcore.OAuthError) as in_child:
            future.result(timeout=60)
    assert in_child.value.error == "invalid_client"


def _raise_oauth_error(url: str) -> None:
    authcore.Client.client_credentials(url + "/oauth2/token", CLIENT_ID, "wrong-secret").token()


def test_reauthentication_required_keeps_the_fields_of_the_refusal(dev: DevServer) -> None:
    # A refresh token api.video does not know: its problem body is kept on the error.
    client = authcore.Client.refresh_token(dev.url + "/auth/refresh", CLIENT_ID, CLIENT_SECRET,
                                           "not-a-known-refresh-token", json_body=True)
    with pytest.raises(authcore.ReauthenticationRequired) as caught:
        client.token()
    e = caught.value
    assert e.kind == "reauthentication_required"
    assert e.http_status is not None and 400 <= e.http_status < 500
    assert e.status == e.http_status
    assert e.title is not None or e.error is not None, repr(e)


def test_raise_for_status(dev: DevServer) -> None:
    client = authcore.Client.personal_access_token("dev-personal-access-token")
    ok = client.get(dev.url + "/api/resource")
    ok.raise_for_status()  # a 200 raises nothing
    refused = client.get(dev.url + "/api/reject")
    assert refused.status == 401
    with pytest.raises(authcore.AuthcoreError) as caught:
        refused.raise_for_status()
    assert caught.value.http_status == 401 and caught.value.status == 401
    assert caught.value.kind in ("api_problem", "oauth")
