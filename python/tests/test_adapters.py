"""The requests and httpx adapters: token attached, one renewal and one resend after a
401, nothing resent after a 403, and nothing sent, renewed or resent for a 401 from
another origin reached by a redirect."""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from typing import Any, AsyncIterator, Iterator

import httpx
import pytest
import requests

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, DevServer


def test_requests_adapter_recovers_from_revocation(dev: DevServer, cc_client: authcore.Client) -> None:
    auth = authcore.RequestsAuth(cc_client)
    with requests.Session() as s:
        assert s.get(dev.url + "/api/resource", auth=auth, timeout=10).status_code == 200
        dev.control("POST", "revoke", {"refresh": False})
        before = dev.token_requests()
        r = s.get(dev.url + "/api/resource", auth=auth, timeout=10)
        assert r.status_code == 200
        assert [h.status_code for h in r.history] == [401]
        assert dev.token_requests() == before + 1
        # A scope refusal is final: no renewal, no resend.
        r = s.get(dev.url + "/api/admin", auth=auth, timeout=10)
        assert r.status_code == 403 and dev.token_requests() == before + 1


def test_requests_adapter_sends_bodies_again(dev: DevServer, cc_client: authcore.Client) -> None:
    auth = authcore.RequestsAuth(cc_client)
    cc_client.token()
    dev.control("POST", "revoke", {"refresh": False})
    r = requests.post(dev.url + "/api/resource", json={"a": 1}, auth=auth, timeout=10)
    assert r.status_code == 200


def test_httpx_adapter_recovers_from_revocation(dev: DevServer, cc_client: authcore.Client) -> None:
    auth = authcore.HttpxAuth(cc_client)
    assert isinstance(auth, httpx.Auth)
    with httpx.Client(auth=auth, timeout=10) as h:
        assert h.get(dev.url + "/api/resource").status_code == 200
        dev.control("POST", "revoke", {"refresh": False})
        before = dev.token_requests()
        r = h.post(dev.url + "/api/resource", json={"a": 1})
        assert r.status_code == 200
        assert dev.token_requests() == before + 1
        assert h.get(dev.url + "/api/admin").status_code == 403
        assert dev.token_requests() == before + 1


def test_httpx_async_adapter(dev: DevServer, cc_client: authcore.Client) -> None:
    auth = authcore.HttpxAuth(cc_client)

    async def main() -> list[int]:
        async with httpx.AsyncClient(auth=auth, timeout=10) as h:
            first = (await h.get(dev.url + "/api/resource")).status_code
            dev.control("POST", "revoke", {"refresh": False})
            results = await asyncio.gather(*(h.get(dev.url + "/api/resource") for _ in range(8)))
            return [first] + [r.status_code for r in results]

    before = dev.token_requests()
    statuses = asyncio.run(main())
    assert statuses == [200] * 9
    assert dev.token_requests() - before == 2, "the first token, then one renewal for all 8"


def test_renewal_helps_parses_the_challenge(cc_client: authcore.Client) -> None:
    """The core's RFC 9110 parse decides, not a substring search of the header."""
    assert cc_client.renewal_helps(401, 'Bearer error="invalid_token"')
    assert not cc_client.renewal_helps(401, 'Basic realm="x", bearer ERROR=insufficient_scope')
    assert not cc_client.renewal_helps(401, 'DPoP algs="ES256", error="insufficient_scope"')
    assert cc_client.renewal_helps(401, 'Bearer error_description="insufficient_scope"')
    assert cc_client.renewal_helps(401, 'Newauth error="insufficient_scope"')


def test_adapters_do_not_resend_a_fixed_token(dev: DevServer) -> None:
    """A personal access token cannot be renewed: its 401 is final, as in Client.request."""
    client = authcore.Client.personal_access_token("not-a-valid-token")
    assert not client.renewal_helps(401)
    r = requests.get(dev.url + "/api/resource", auth=authcore.RequestsAuth(client), timeout=10)
    assert r.status_code == 401 and r.history == []
    with httpx.Client(auth=authcore.HttpxAuth(client), timeout=10) as h:
        assert h.get(dev.url + "/api/resource").status_code == 401
    assert dev.counters()["resource_rejected_invalid"] == 2, "one request each, no resend"


def _chunks(n: int) -> Iterator[bytes]:
    for _ in range(n):
        yield b"x" * 1024


async def _achunks(n: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * 1024


def test_httpx_streams_bodies_and_resends_only_replayable_ones(
    dev: DevServer, cc_client: authcore.Client
) -> None:
    auth = authcore.HttpxAuth(cc_client)
    with httpx.Client(auth=auth, timeout=10) as http:
        # A streamed upload goes through as a stream.
        assert http.post(dev.url + "/api/resource", content=_chunks(48)).status_code == 200
        # After a revocation, a bytes body is sent again with a renewed token…
        dev.control("POST", "revoke", {"refresh": False})
        r = http.post(dev.url + "/api/resource", content=b"payload")
        assert r.status_code == 200 and [h.status_code for h in r.history] == [401]
        # …a one-shot stream is not: its 401 comes back as it came, sent once.
        dev.control("POST", "revoke", {"refresh": False})
        rejected = dev.counters()["resource_rejected_invalid"]
        r = http.post(dev.url + "/api/resource", content=_chunks(8))
        assert r.status_code == 401 and r.history == []
        assert dev.counters()["resource_rejected_invalid"] == rejected + 1


def test_httpx_async_reads_a_cached_token_on_the_loop(
    dev: DevServer, cc_client: authcore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anyio.to_thread

    hops = []
    real = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    auth = authcore.HttpxAuth(cc_client)

    async def main() -> list[int]:
        async with httpx.AsyncClient(auth=auth, timeout=10) as http:
            first = await http.get(dev.url + "/api/resource")
            rest = await asyncio.gather(*(http.get(dev.url + "/api/resource") for _ in range(20)))
            streamed = await http.post(dev.url + "/api/resource", content=_achunks(16))
            return [first.status_code, streamed.status_code] + [r.status_code for r in rest]

    statuses = asyncio.run(main())
    assert set(statuses) == {200}
    assert len(hops) == 1, "only the first token (a renewal) left the loop"


def _redirect(base: str, to: str, status: int = 302) -> str:
    """A URL of ``base``'s devserver that redirects to ``to``."""
    return f"{base}/api/redirect?status={status}&to={urllib.parse.quote(to, safe='')}"


def _elsewhere(dev: DevServer, other: DevServer) -> dict[str, tuple[str, DevServer]]:
    """Other origins than ``dev``'s that answer 401, and the server behind each: another
    port, and another host name (``localhost``) on the same port."""
    return {
        "another port": (other.url + "/api/resource", other),
        "another host": (dev.url.replace("127.0.0.1", "localhost") + "/api/resource", dev),
    }


def _never_saw_a_token(server: DevServer, path: str = "/api/resource") -> None:
    seen = [e for e in server.resources() if e["path"] == path]
    assert len(seen) == 1, f"one request, not sent again: {seen}"
    assert seen[0]["token"] is None and seen[0]["outcome"] == "unknown", seen


@pytest.mark.parametrize("where", ["another port", "another host"])
def test_requests_adapter_leaves_a_401_from_another_origin_alone(
    dev: DevServer, other: DevServer, cc_client: authcore.Client, where: str
) -> None:
    auth = authcore.RequestsAuth(cc_client)
    token = cc_client.token()
    target, behind = _elsewhere(dev, other)[where]
    r = requests.get(_redirect(dev.url, target), auth=auth, timeout=10)
    assert r.status_code == 401 and [h.status_code for h in r.history] == [302]
    assert r.url == target
    _never_saw_a_token(behind)
    assert dev.token_requests() == 1 and other.token_requests() == 0, "no renewal"
    assert cc_client.token() == token, "the good token is kept"
    # The redirect itself got the token: it is this client's own origin.
    (redirect,) = [e for e in dev.resources() if e["path"] == "/api/redirect"]
    assert redirect["token"] is not None


@pytest.mark.parametrize("where", ["another port", "another host"])
def test_httpx_adapter_leaves_a_401_from_another_origin_alone(
    dev: DevServer, other: DevServer, cc_client: authcore.Client, where: str
) -> None:
    token = cc_client.token()
    target, behind = _elsewhere(dev, other)[where]
    with httpx.Client(auth=authcore.HttpxAuth(cc_client), timeout=10, follow_redirects=True) as h:
        r = h.get(_redirect(dev.url, target))
    assert r.status_code == 401 and [x.status_code for x in r.history] == [302]
    assert str(r.url) == target
    _never_saw_a_token(behind)
    assert dev.token_requests() == 1 and other.token_requests() == 0, "no renewal"
    assert cc_client.token() == token, "the good token is kept"


def test_httpx_async_adapter_leaves_a_401_from_another_origin_alone(
    dev: DevServer, other: DevServer, cc_client: authcore.Client
) -> None:
    token = cc_client.token()
    target = other.url + "/api/resource"

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(
            auth=authcore.HttpxAuth(cc_client), timeout=10, follow_redirects=True
        ) as h:
            return await h.get(_redirect(dev.url, target))

    r = asyncio.run(main())
    assert r.status_code == 401 and [x.status_code for x in r.history] == [302]
    _never_saw_a_token(other)
    assert dev.token_requests() == 1 and cc_client.token() == token


def test_adapters_leave_a_401_after_a_downgrade_to_http_alone(
    tls_server: tuple[DevServer, str], dev: DevServer
) -> None:
    """https → http on another port: the plain-HTTP server never sees the token, and
    the token from the HTTPS provider is not renewed."""
    secure, ca = tls_server
    client = authcore.Client.client_credentials(
        secure.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, ca_bundle=ca
    )
    token = client.token()
    target = dev.url + "/api/resource"
    r = requests.get(
        _redirect(secure.url, target, 307), auth=authcore.RequestsAuth(client), timeout=10, verify=ca
    )
    assert r.status_code == 401 and r.url == target
    context = ssl.create_default_context(cafile=ca)
    with httpx.Client(
        auth=authcore.HttpxAuth(client), timeout=10, follow_redirects=True, verify=context
    ) as h:
        hr = h.get(_redirect(secure.url, target, 307))
    assert hr.status_code == 401 and str(hr.url) == target
    seen = dev.resources()
    assert len(seen) == 2 and all(e["token"] is None for e in seen), seen
    assert client.stats().token_requests == 1, "no renewal"
    assert client.token() == token


@pytest.mark.parametrize("adapter", ["requests", "httpx"])
def test_adapters_renew_after_a_401_from_their_own_origin_behind_a_redirect(
    dev: DevServer, cc_client: authcore.Client, adapter: str
) -> None:
    """A redirect within the origin keeps the header: its 401 is this client's, and is
    answered with one renewal and one resend."""
    target = dev.url + "/api/resource"
    cc_client.token()
    dev.control("POST", "revoke", {"refresh": False})
    if adapter == "requests":
        r = requests.get(_redirect(dev.url, target), auth=authcore.RequestsAuth(cc_client), timeout=10)
        status = r.status_code
    else:
        with httpx.Client(auth=authcore.HttpxAuth(cc_client), timeout=10, follow_redirects=True) as h:
            status = h.get(_redirect(dev.url, target)).status_code
    assert status == 200
    assert dev.token_requests() == 2, "one renewal"
    tokens = [e["token"] for e in dev.resources() if e["path"] == "/api/resource"]
    assert len(tokens) == 2 and tokens[0] != tokens[1] and None not in tokens, "resent once, renewed"
