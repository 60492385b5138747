"""TLS trust: the platform's trust store by default, a CA bundle of one's own, and
errors that say what went wrong — against a provider serving HTTPS with a throwaway CA."""

from __future__ import annotations

import pathlib

import pytest

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, DevServer


def test_a_ca_bundle_of_ones_own_is_trusted(tls_server: tuple[DevServer, str]) -> None:
    server, ca = tls_server
    assert server.url.startswith("https://127.0.0.1:")
    token_url = server.url + "/oauth2/token"
    for bundle in (ca, pathlib.Path(ca)):
        client = authcore.Client.client_credentials(token_url, CLIENT_ID, CLIENT_SECRET, ca_bundle=bundle)
        assert client.token()
    with pytest.raises(authcore.TransportError) as caught:
        authcore.Client.client_credentials(token_url, CLIENT_ID, CLIENT_SECRET).token()
    message = str(caught.value)
    assert "not trusted" in message and "127.0.0.1" in message, message


def test_a_ca_bundle_that_cannot_be_used_is_refused(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(authcore.ConfigError, match="missing.pem"):
        authcore.Client.client_credentials("https://auth.example/token", CLIENT_ID, CLIENT_SECRET, ca_bundle=missing)
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificates\n")
    with pytest.raises(authcore.ConfigError, match="no certificate"):
        authcore.Client.client_credentials("https://auth.example/token", CLIENT_ID, CLIENT_SECRET, ca_bundle=empty)
    with pytest.raises(TypeError, match="ca_bundle"):
        authcore.Client.client_credentials("https://auth.example/token", CLIENT_ID, CLIENT_SECRET, ca_bundle=42)  # type: ignore[arg-type]
