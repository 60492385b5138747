"""One client shared by many Python threads; blocking calls release the GIL."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, DevServer


def _herd(client: authcore.Client, url: str, n: int = 32) -> list[tuple[str, int]]:
    barrier = threading.Barrier(n, timeout=30)

    def work(_: int) -> tuple[str, int]:
        barrier.wait()
        return client.token(), client.get(url).status

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(work, range(n)))


def test_32_threads_cold_and_across_expiry_make_one_token_request_each(dev: DevServer) -> None:
    dev.config(lifetime_secs=2, latency_ms=200)
    client = authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET)
    url = dev.url + "/api/resource"

    results = _herd(client, url)
    assert {s for _, s in results} == {200}
    assert len({t for t, _ in results}) == 1
    assert dev.token_requests() == 1

    time.sleep(2.2)  # past the point where the token may no longer be sent
    results = _herd(client, url)
    assert {s for _, s in results} == {200}
    assert len({t for t, _ in results}) == 1
    assert dev.token_requests() == 2
    assert dev.counters()["resource_rejected_expired"] == 0


def test_a_blocked_token_request_does_not_hold_the_gil(dev: DevServer) -> None:
    dev.config(latency_ms=800)
    client = authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET)
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        client.token()
    finally:
        done.set()
        counter.join()
    # 800 ms of waiting: a thread sleeping 1 ms per tick ran many times meanwhile.
    assert ticks > 100, ticks
