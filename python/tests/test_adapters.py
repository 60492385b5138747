"""The requests and httpx adapters: token attached, one renewal and one resend after a
401, nothing resent after a 403."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterator

import httpx
import pytest
import requests

import authcore
from conftest import DevServer


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
