"""Authenticated requests: the response object, bodies, timeouts, and 401 recovery."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

import authcore
from conftest import DevServer


def test_response_fields(dev: DevServer, cc_client: authcore.Client) -> None:
    r = cc_client.post(
        dev.url + "/api/resource",
        json={"hello": 1},
        headers={"Accept": "application/json", "Authorization": "Bearer replaced"},
    )
    assert r.status == 200 and r.ok
    assert r.headers["content-type"].startswith("application/json")
    assert isinstance(r.body, bytes) and r.text == r.body.decode()
    assert isinstance(r.json(), dict)
    assert repr(r) == "<authcore.Response [200]>"
    missing = cc_client.get(dev.url + "/nope")
    assert missing.status == 404 and not missing.ok


def test_body_as_bytes_or_text(dev: DevServer, cc_client: authcore.Client) -> None:
    assert cc_client.request("PUT", dev.url + "/api/resource", body=b"\x00\x01").status == 200
    assert cc_client.request("PUT", dev.url + "/api/resource", body="text").status == 200


def test_revoked_token_is_renewed_once_and_the_request_retried(dev: DevServer, cc_client: authcore.Client) -> None:
    assert cc_client.get(dev.url + "/api/resource").status == 200
    dev.control("POST", "revoke", {"refresh": False})
    before = dev.token_requests()
    assert cc_client.get(dev.url + "/api/resource").status == 200
    assert dev.token_requests() == before + 1
    assert dev.counters()["resource_rejected_invalid"] == 1


def test_per_request_timeout() -> None:
    """A slow API endpoint: the per-request deadline applies, not the client's 30 s."""

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(1.0)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/slow"
        client = authcore.Client.personal_access_token("t")
        started = time.monotonic()
        with pytest.raises(authcore.TimeoutError):
            client.get(url, timeout=0.2)
        assert time.monotonic() - started < 0.9
        assert client.get(url, timeout=5).status == 200
    finally:
        server.shutdown()
        server.server_close()
