"""Every grant and preset against the development provider."""

from __future__ import annotations

from typing import Literal

import pytest

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, PUBLIC_CLIENT_ID, DevServer


def test_personal_access_token(dev: DevServer) -> None:
    client = authcore.Client.personal_access_token("dev-personal-access-token")
    assert client.token() == "dev-personal-access-token"
    assert client.authorization_header() == "Bearer dev-personal-access-token"
    assert client.get(dev.url + "/api/resource").status == 200
    assert dev.token_requests() == 0
    info = client.token_info()
    assert info.expires_in is None and info.scope is None


def test_api_video_exchanges_the_key_and_rotates_the_refresh_token(dev: DevServer) -> None:
    seen: list[str] = []
    client = authcore.Client.api_video(
        "dev-api-key",
        base_url=dev.url,
        on_refresh_token=seen.append,
        token_request_headers={"AV-Origin-App": "authcore-tests:1.0"},
    )
    first = client.token()
    assert client.get(dev.url + "/api/resource").status == 200
    assert dev.token_requests("apivideo/api_key") == 1
    assert len(seen) == 1

    assert client.invalidate(first) is True
    assert client.invalidate(first) is False, "a second report drops nothing"
    second = client.token()
    assert second != first
    assert dev.token_requests("apivideo/refresh") == 1
    assert len(seen) == 2 and seen[0] != seen[1], "the rotated refresh token was announced"


def test_api_video_presets_construct_without_network() -> None:
    assert "ws.api.video" in repr(authcore.Client.api_video("key"))
    assert "sandbox.api.video" in repr(authcore.Client.api_video("key", sandbox=True))
    with pytest.raises(ValueError):
        authcore.Client.api_video("key", sandbox=True, base_url="https://x.example")


@pytest.mark.parametrize("method", ["basic", "basic_raw", "post"])
@pytest.mark.parametrize("scopes", ["campaigns:read reporting:read", ["campaigns:read", "reporting:read"]])
def test_client_credentials(
    dev: DevServer, method: Literal["basic", "basic_raw", "post"], scopes: str | list[str]
) -> None:
    client = authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, scopes=scopes, auth_method=method
    )
    assert client.get(dev.url + "/api/resource").status == 200
    assert client.get(dev.url + "/api/admin").status == 403, "admin needs the admin scope"
    info = client.token_info()
    assert info.token_type == "Bearer" and info.access_token == client.token()
    assert info.scope is not None and set(info.scope.split()) == {"campaigns:read", "reporting:read"}
    assert info.expires_in is not None and 3500 < info.expires_in <= 3600
    assert info.access_token not in repr(info)
    assert dev.token_requests("oauth2/client_credentials") == 1, "a 403 is not a reason to renew"


def test_vibe_preset() -> None:
    client = authcore.Client.vibe("id", "vibe-secret-value", scopes=["campaigns:read"])
    assert "vibe" in repr(client)
    assert "vibe-secret-value" not in repr(client)


def _code_flow(dev: DevServer, viewneo: bool, seen: list[str]) -> authcore.Client:
    if viewneo:
        flow = authcore.AuthorizationCodeFlow.viewneo(
            CLIENT_ID, CLIENT_SECRET, "http://127.0.0.1/callback", base_url=dev.url,
            on_refresh_token=seen.append,
        )
    else:
        flow = authcore.AuthorizationCodeFlow(
            dev.url + "/oauth2/authorize", dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET,
            "http://127.0.0.1/callback", scopes="campaigns:read", on_refresh_token=seen.append,
        )
    request = flow.authorization_url()
    assert request.state in request.url
    assert viewneo or "code_challenge_method=S256" in request.url
    callback = dev.follow_authorize(request.url)
    client = flow.finish(callback, request.state)
    with pytest.raises(authcore.StateMismatchError):
        flow.finish(callback, request.state)  # each state is accepted once
    return client


@pytest.mark.parametrize("viewneo", [False, True], ids=["oauth2", "viewneo"])
def test_authorization_code_then_refresh_token(dev: DevServer, viewneo: bool) -> None:
    seen: list[str] = []
    client = _code_flow(dev, viewneo, seen)
    assert client.get(dev.url + "/api/resource").status == 200
    assert len(seen) == 1

    # A restarted program continues from the saved refresh token.
    restarted = authcore.Client.refresh_token(
        dev.url + ("/oauth/token" if viewneo else "/oauth2/token"),
        CLIENT_ID, CLIENT_SECRET, seen[0], json_body=viewneo,
    )
    assert restarted.get(dev.url + "/api/resource").status == 200
    grant = "viewneo/refresh_token" if viewneo else "oauth2/refresh_token"
    assert dev.token_requests(grant) == 1


def test_a_public_client_passes_none_as_its_secret(dev: DevServer) -> None:
    """The README's "pass no client secret": None, in every constructor that takes one."""
    seen: list[str] = []
    flow = authcore.AuthorizationCodeFlow(
        dev.url + "/oauth2/authorize", dev.url + "/oauth2/token", PUBLIC_CLIENT_ID, None,
        "http://127.0.0.1/callback", scopes="openid", on_refresh_token=seen.append,
    )
    request = flow.authorization_url()
    client = flow.finish(dev.follow_authorize(request.url), request.state)
    assert client.get(dev.url + "/api/resource").status == 200
    restarted = authcore.Client.refresh_token(dev.url + "/oauth2/token", PUBLIC_CLIENT_ID, None, seen[0])
    assert restarted.get(dev.url + "/api/resource").status == 200
    device = authcore.DeviceFlow(dev.url + "/oauth2/device", dev.url + "/oauth2/token", PUBLIC_CLIENT_ID, None)
    assert device.start().wait(timeout=30).get(dev.url + "/api/resource").status == 200
    assert dev.token_requests() == 4, "one code exchange, one refresh, two device polls"

    # Client credentials without a secret is a client that authenticates otherwise (a
    # key, an assertion, a certificate); the provider refuses one that does not.
    nothing = authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, None)
    with pytest.raises(authcore.OAuthError) as refused:
        nothing.token()
    assert refused.value.error == "invalid_client"
    authcore.Client.vibe(CLIENT_ID, None)
    authcore.AuthorizationCodeFlow.viewneo(CLIENT_ID, None, "http://127.0.0.1/callback", base_url=dev.url)


def test_authorization_callback_errors(dev: DevServer) -> None:
    flow = authcore.AuthorizationCodeFlow.viewneo(
        CLIENT_ID, CLIENT_SECRET, "http://127.0.0.1/callback", base_url=dev.url
    )
    issued = flow.authorization_url()
    with pytest.raises(authcore.StateMismatchError):
        flow.finish("http://127.0.0.1/callback?code=x&state=forged", issued.state)
    state = flow.authorization_url().state
    with pytest.raises(authcore.OAuthError) as info:
        flow.finish(f"http://127.0.0.1/callback?error=access_denied&error_description=no&state={state}", state)
    assert info.value.error == "access_denied"
    assert info.value.kind == "oauth"


def test_a_failing_rotation_callback_is_reported_not_fatal(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[BaseException | None] = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: reported.append(u.exc_value))

    def boom(refresh_token: str) -> None:
        raise RuntimeError("storage is down")

    client = authcore.Client.api_video("dev-api-key", base_url=dev.url, on_refresh_token=boom)
    assert client.get(dev.url + "/api/resource").status == 200
    assert len(reported) == 1 and isinstance(reported[0], RuntimeError)


def test_expiry_margin_moves_expiry_earlier(dev: DevServer) -> None:
    plain = authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET)
    early = authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, expiry_margin=600
    )
    plain_left = plain.token_info().expires_in
    early_left = early.token_info().expires_in
    assert plain_left is not None and 3500 < plain_left <= 3570
    assert early_left is not None and 2900 < early_left <= 3000
    with pytest.raises(ValueError, match="expiry_margin"):
        authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, expiry_margin=-1)


def test_every_constructor_takes_the_client_options(dev: DevServer) -> None:
    pat = authcore.Client.personal_access_token("dev-personal-access-token", timeout=5.0, max_body_bytes=1024)
    assert pat.get(dev.url + "/api/resource").status == 200
    with pytest.raises(authcore.InvalidResponseError, match="limit"):
        authcore.Client.personal_access_token("dev-personal-access-token", max_body_bytes=1).get(
            dev.url + "/api/resource"
        )
    with pytest.raises(TypeError, match="unexpected option"):
        authcore.Client.personal_access_token("x", colour="red")  # type: ignore[call-arg]


def test_vibe_at_another_token_url(dev: DevServer) -> None:
    client = authcore.Client.vibe(CLIENT_ID, CLIENT_SECRET, scopes="campaigns:read", token_url=dev.url + "/oauth2/token")
    assert client.get(dev.url + "/api/resource").status == 200
    assert dev.token_requests("oauth2/client_credentials") == 1


def test_api_video_resumes_from_a_saved_refresh_token(dev: DevServer) -> None:
    saved: list[str] = []
    first = authcore.Client.api_video("dev-api-key", base_url=dev.url, on_refresh_token=saved.append)
    first.token()
    assert len(saved) == 1
    resumed = authcore.Client.api_video("dev-api-key", base_url=dev.url, refresh_token=saved[0])
    assert resumed.get(dev.url + "/api/resource").status == 200
    assert dev.token_requests("apivideo/refresh") == 1, "resumed through /auth/refresh"
    assert dev.token_requests("apivideo/api_key") == 1, "the key was not exchanged again"


def test_token_details(dev: DevServer, cc_client: authcore.Client) -> None:
    import time

    info = cc_client.token_info()
    assert info.expires_at is not None and abs(info.expires_at - (time.time() + 3600)) < 5
    assert info.id_token is None
    assert info.fields.get("token_type", "").lower() == "bearer"
    assert "access_token" not in info.fields and info.access_token not in repr(info.fields)
    assert authcore.Client.personal_access_token("t").token_info().expires_at is None


def test_the_rotation_hook_is_told_whose_token_rotated(dev: DevServer) -> None:
    seen: list[authcore.Rotation] = []
    client = authcore.Client.api_video("dev-api-key", base_url=dev.url, on_rotation=seen.append)
    client.token()
    assert len(seen) == 1
    rotation = seen[0]
    assert rotation.refresh_token and rotation.refresh_token not in repr(rotation)
    assert rotation.token.access_token == client.token()
    assert rotation.credential is not None and "api_key" in rotation.credential
    assert "dev-api-key" not in rotation.credential
