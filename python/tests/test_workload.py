"""Workloads without secrets from Python: ``AssertionSource`` (a literal, a file
rewritten between renewals, a missing file, a command, a callable, another client) as a
federated client assertion (RFC 7523 §2.2) with ``client_assertion=``, and the JWT bearer
grant (§2.1) from a source or signed by a key, against the development provider's test
issuer."""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import pytest

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, DevServer

# A throwaway P-256 key made for these tests only, and its public half, which the
# provider is told to trust for the JWT bearer grant of issuer "svc@py-test".
KEY_PEM = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgMEmGMPLs9KmXwXHH
31p2cud0ji4ICZB3OerljP8LlxihRANCAAQbb+4KoxvoAF1nKm4WlyP3Di2XfSkh
lk0NDhCR8Wz+YMfmNavrdlAXzbLWeiQglD8wAHDmQpDOEXYhUfS1K5xW
-----END PRIVATE KEY-----
"""
PUBLIC_PEM = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEG2/uCqMb6ABdZypuFpcj9w4tl30p
IZZNDQ4QkfFs/mDH5jWr63ZQF82y1nokIJQ/MABw5kKQzhF2IVH0tSucVg==
-----END PUBLIC KEY-----
"""


def mint(dev: DevServer, sub: str = CLIENT_ID, ttl_s: int = 300) -> str:
    """A JWT the provider's test issuer signs about ``sub`` for the provider."""
    answer = dev.control("POST", "test_issuer/mint", {"sub": sub, "aud": dev.url, "ttl_s": ttl_s})
    return str(answer["jwt"])


def assertion_client(dev: DevServer, source: authcore.AssertionSource) -> authcore.Client:
    return authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, "", client_assertion=source,
        max_retries=0, failure_backoff=(0.01, 0.02),
    )


def sub_at_api(client: authcore.Client, dev: DevServer) -> str:
    response = client.get(dev.url + "/api/check")
    assert response.status == 200
    body = response.json()
    assert isinstance(body, dict)
    return str(body["sub"])


def test_a_rewritten_file_is_read_for_each_renewal(dev: DevServer, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "token"
    path.write_text(mint(dev))
    source = authcore.AssertionSource.file(path)
    assert repr(source) == f"<authcore.AssertionSource file={str(path)!r}>"
    client = assertion_client(dev, source)
    assert sub_at_api(client, dev) == CLIENT_ID
    path.write_text(mint(dev))
    client.refresh()
    # An expired one is never sent: a ConfigError that says so, naming the file.
    expired = mint(dev, ttl_s=-30)
    path.write_text(expired)
    with pytest.raises(authcore.ConfigError) as caught:
        client.refresh()
    assert "expired" in str(caught.value) and str(path) in str(caught.value)
    assert expired not in str(caught.value) and expired not in repr(client)
    counters = dev.counters()
    assert counters["token_requests"] == 2
    assert counters["assertions_resent"] == 0
    assert counters["assertions_expired"] == 0


def test_a_missing_file_is_a_clear_error(dev: DevServer, tmp_path: pathlib.Path) -> None:
    client = assertion_client(dev, authcore.AssertionSource.file(tmp_path / "not-there"))
    with pytest.raises(authcore.ConfigError, match="not-there"):
        client.token()
    assert dev.token_requests() == 0


def test_a_command_source(dev: DevServer, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "token"
    path.write_text(mint(dev))
    source = authcore.AssertionSource.command("cat", [str(path)], timeout=5)
    assert sub_at_api(assertion_client(dev, source), dev) == CLIENT_ID
    failing = authcore.AssertionSource.command(sys.executable, ["-c", "raise SystemExit(3)"])
    with pytest.raises(authcore.ConfigError, match="command"):
        assertion_client(dev, failing).token()


def test_a_callable_source(dev: DevServer) -> None:
    calls: list[int] = []

    def fresh() -> str:
        calls.append(1)
        return mint(dev)

    client = assertion_client(dev, authcore.AssertionSource.callback(fresh))
    assert sub_at_api(client, dev) == CLIENT_ID
    client.refresh()
    assert len(calls) == 2

    def broken() -> str:
        raise RuntimeError("no identity yet")

    with pytest.raises(authcore.ConfigError, match="no identity yet"):
        assertion_client(dev, authcore.AssertionSource.callback(broken)).token()
    with pytest.raises(TypeError):
        authcore.AssertionSource.callback("not callable")  # type: ignore[arg-type]


def test_another_clients_refused_token_is_renewed_there_once(dev: DevServer) -> None:
    inner = authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, auth_method="post"
    )
    client = assertion_client(dev, authcore.AssertionSource.client(inner))
    # An access token is no client assertion: refused, the next one tried once.
    with pytest.raises(authcore.OAuthError) as caught:
        client.token()
    assert caught.value.error == "invalid_client"
    assert inner.stats().token_requests == 2


def test_client_assertion_must_be_a_source(dev: DevServer) -> None:
    with pytest.raises(TypeError, match="AssertionSource"):
        authcore.Client.client_credentials(
            dev.url + "/oauth2/token", CLIENT_ID, "", client_assertion="/var/run/token"  # type: ignore[arg-type]
        )


def test_jwt_bearer_from_a_source(dev: DevServer, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "grant"
    path.write_text(mint(dev, sub="workload-py"))
    client = authcore.Client.jwt_bearer(
        dev.url + "/oauth2/token", authcore.AssertionSource.file(path), scopes="campaigns:read"
    )
    assert sub_at_api(client, dev) == "workload-py"
    assert dev.token_requests("oauth2/urn:ietf:params:oauth:grant-type:jwt-bearer") == 1
    # With the client's own federated assertion too.
    client_file = tmp_path / "client"
    client_file.write_text(mint(dev))
    path.write_text(mint(dev, sub="workload-py"))
    both = authcore.Client.jwt_bearer(
        dev.url + "/oauth2/token", authcore.AssertionSource.file(path), client_id=CLIENT_ID,
        client_assertion=authcore.AssertionSource.file(client_file),
    )
    assert sub_at_api(both, dev) == "workload-py"
    with pytest.raises(authcore.ConfigError, match="client id"):
        authcore.Client.jwt_bearer(
            dev.url + "/oauth2/token", authcore.AssertionSource.literal("x"),
            client_assertion=authcore.AssertionSource.literal("y"),
        )


def test_both_jwt_bearer_constructors_take_their_shared_keywords_alike(dev: DevServer) -> None:
    dev.config(jwt_bearer_keys={"svc@py-test": PUBLIC_PEM})
    url = dev.url + "/oauth2/token"

    def from_source(**keywords: Any) -> authcore.Client:
        source = authcore.AssertionSource.literal(mint(dev, sub="carol"))
        return authcore.Client.jwt_bearer(url, source, **keywords)

    def signed(**keywords: Any) -> authcore.Client:
        return authcore.Client.jwt_bearer_signed(url, KEY_PEM, "svc@py-test", "carol", **keywords)

    for make, described in ((from_source, "assertion='literal'"), (signed, "issuer='svc@py-test'")):
        with pytest.raises(TypeError, match="'client_secret' needs 'client_id'"):
            make(client_secret=CLIENT_SECRET)
        with pytest.raises(ValueError, match="auth_method"):
            make(client_id=CLIENT_ID, auth_method="no-such-method")
        with pytest.raises(TypeError, match="scopes"):
            make(scopes=42)
        # The client's own authentication is sent: a wrong secret is refused.
        with pytest.raises(authcore.OAuthError) as caught:
            make(client_id=CLIENT_ID, client_secret="wrong", max_retries=0).token()
        assert caught.value.error == "invalid_client"
        client = make(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, auth_method="post",
            scopes=["campaigns:read"], timeout=5,
        )
        assert sub_at_api(client, dev) == "carol"
        assert client.token_info().scope == "campaigns:read"
        assert repr(client).startswith(
            f"<authcore.Client grant='jwt_bearer' token_url={url!r} {described}"
        ), repr(client)


def test_jwt_bearer_signed_by_a_key(dev: DevServer) -> None:
    dev.config(jwt_bearer_keys={"svc@py-test": PUBLIC_PEM})
    client = authcore.Client.jwt_bearer_signed(
        dev.url + "/oauth2/token", KEY_PEM, "svc@py-test", "carol", signing_key_id="k1"
    )
    assert sub_at_api(client, dev) == "carol"
    client.refresh()
    assert dev.counters()["assertions_resent"] == 0, "each renewal signs its own"
    stranger = authcore.Client.jwt_bearer_signed(
        dev.url + "/oauth2/token", KEY_PEM.encode(), "stranger", "carol"
    )
    with pytest.raises(authcore.OAuthError) as caught:
        stranger.token()
    assert caught.value.error == "invalid_grant"
    with pytest.raises(authcore.ConfigError):
        authcore.Client.jwt_bearer_signed(dev.url + "/oauth2/token", "not a key", "i", "s")
