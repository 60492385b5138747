"""Mutual TLS (RFC 8705) against the provider serving HTTPS: a client certificate it
issues (``client_cert=``/``client_key=``, paths or PEM bytes), ``tls_client_auth``,
the token bound to the certificate and accepted by the API from this client only, the
discovered mTLS aliases, and a key that is not the certificate's refused without being
quoted."""

from __future__ import annotations

import json
import pathlib
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest

import authcore
from conftest import DevServer


def control(server: DevServer, ca: str, path: str, body: Any) -> Any:
    """A control request to the TLS provider, trusting its CA."""
    context = ssl.create_default_context(cafile=ca)
    req = urllib.request.Request(
        server.url + "/_control/" + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10, context=context) as resp:  # noqa: S310 (loopback only)
        return json.loads(resp.read())


def status_without_certificate(url: str, ca: str, authorization: str) -> int:
    """The status of ``GET url`` sent with ``authorization`` by an HTTP client of the
    test's own, which presents no client certificate."""
    context = ssl.create_default_context(cafile=ca)
    req = urllib.request.Request(url, headers={"Authorization": authorization})
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:  # noqa: S310 (loopback only)
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_tls_client_auth_gets_a_token_bound_to_the_certificate(
    tls_server: tuple[DevServer, str], tmp_path: pathlib.Path
) -> None:
    server, ca = tls_server
    made = control(server, ca, "client_certificate", {"cn": "py-mtls"})
    control(
        server,
        ca,
        "config",
        {"mtls_clients": [{"client_id": "py-mtls", "tls_client_auth_subject_dn": made["subject"]}]},
    )
    cert_file, key_file = tmp_path / "c.pem", tmp_path / "c.key"
    cert_file.write_text(made["certificate"])
    key_file.write_text(made["key"])
    metadata = authcore.discover(server.url, ca_bundle=ca)
    assert metadata.tls_client_certificate_bound_access_tokens
    assert metadata.mtls_endpoint_aliases["token_endpoint"] == server.url + "/mtls/oauth2/token"
    api = server.url + "/api/py"
    for cert, key in (
        (cert_file, key_file),
        (str(cert_file), str(key_file)),
        (made["certificate"].encode(), made["key"].encode()),
    ):
        client = authcore.Client.client_credentials_from_metadata(
            metadata, "py-mtls", auth_method="tls_client_auth", ca_bundle=ca, client_cert=cert, client_key=key
        )
        response = client.get(api)
        assert response.status == 200, response.text
        assert response.json()["cnf"]["x5t#S256"] == made["x5t#S256"]
        assert response.json()["sub"] == "py-mtls"
        headers = client.request_headers("GET", api)
        assert status_without_certificate(api, ca, headers["Authorization"]) == 401
    # One file holding both.
    both = tmp_path / "both.pem"
    both.write_text(made["certificate"] + made["key"])
    client = authcore.Client.client_credentials(
        server.url + "/oauth2/token", "py-mtls", None, auth_method="tls_client_auth", ca_bundle=ca, client_cert=both
    )
    assert client.get(api).status == 200


def test_a_certificate_that_cannot_be_used_is_a_config_error_without_the_key(
    tls_server: tuple[DevServer, str], tmp_path: pathlib.Path
) -> None:
    server, ca = tls_server
    made = control(server, ca, "client_certificate", {"cn": "py-one"})
    other = control(server, ca, "client_certificate", {"cn": "py-two"})
    token_url = server.url + "/oauth2/token"
    with pytest.raises(authcore.ConfigError, match="not the key of the client certificate") as caught:
        authcore.Client.client_credentials(
            token_url,
            "py-one",
            "",
            auth_method="tls_client_auth",
            client_cert=made["certificate"].encode(),
            client_key=other["key"].encode(),
        )
    body = "".join(line for line in other["key"].splitlines() if not line.startswith("-----"))
    for start in range(0, len(body) - 16, 16):
        assert body[start : start + 16] not in str(caught.value)
        assert body[start : start + 16] not in repr(caught.value)
    with pytest.raises(authcore.ConfigError, match="missing.pem"):
        authcore.Client.client_credentials(token_url, "py-one", "", client_cert=tmp_path / "missing.pem")
    with pytest.raises(authcore.ConfigError, match="client certificate"):
        authcore.Client.client_credentials(token_url, "py-one", "", auth_method="tls_client_auth")
    with pytest.raises(TypeError, match="client_key"):
        authcore.Client.client_credentials(token_url, "py-one", "", client_key=b"key")
    with pytest.raises(TypeError, match="client_key"):
        authcore.Client.client_credentials(
            token_url, "py-one", "", client_cert=made["certificate"].encode(), client_key=str(tmp_path / "k")
        )
    with pytest.raises(TypeError, match="client_cert"):
        authcore.Client.client_credentials(token_url, "py-one", "", client_cert=42)  # type: ignore[arg-type]
