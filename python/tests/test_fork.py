"""A client used in a child after fork (gunicorn --preload, multiprocessing): no renewal
"in flight" inherited from the parent, no lock held across the fork, no pooled
connection shared with the parent."""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Optional, Union

import pytest

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, DevServer

_CLIENT: Optional[authcore.Client] = None
_URL = ""


def _child_request(_: int) -> tuple[int, float]:
    """Runs in a forked child: one request through the inherited client."""
    assert _CLIENT is not None
    start = time.monotonic()
    status = _CLIENT.get(_URL).status
    return status, time.monotonic() - start


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_forked_children_renew_on_their_own_while_the_parent_renews_and_contends(
    dev: DevServer,
) -> None:
    global _CLIENT, _URL
    _URL = dev.url + "/api/resource"
    _CLIENT = authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, timeout=10.0
    )
    client = _CLIENT
    # Token requests take 1.5 s: the parent's first renewal is in flight at the fork.
    dev.config(lifetime_secs=3600, latency_ms=1500)
    leader = threading.Thread(target=client.token)
    leader.start()
    # The signal that the renewal is in flight: the provider counts the request on arrival.
    for _ in range(1000):
        if dev.token_requests() >= 1:
            break
        time.sleep(0.005)
    assert dev.token_requests() >= 1, "the parent's renewal reached the provider"
    # Another thread takes the cache again and again while the pool forks.
    stop = threading.Event()

    def contend() -> None:
        for _ in range(1_000_000):
            if stop.is_set():
                return
            client.invalidate("not-the-token")

    hammer = threading.Thread(target=contend)
    hammer.start()
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(4) as pool:
            results = pool.map_async(_child_request, range(8)).get(timeout=60)
    finally:
        stop.set()
        hammer.join(timeout=30)
        leader.join(timeout=30)
    assert [status for status, _ in results] == [200] * 8
    # Each child renewed by itself (1.5 s) instead of waiting for the parent's leader,
    # which does not exist in the child.
    assert max(took for _, took in results) < 6.0, results
    assert client.get(_URL).status == 200, "the parent still works"
    dev.config(lifetime_secs=3600, latency_ms=0)


def _child_stats(_: int) -> tuple[dict[str, Union[int, float]], dict[str, Union[int, float]]]:
    """Runs in a forked child: the inherited client's counters, then after one call."""
    assert _CLIENT is not None
    before = _CLIENT.stats().as_dict()
    _CLIENT.token()
    return before, _CLIENT.stats().as_dict()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_forked_child_counts_only_what_it_did(dev: DevServer) -> None:
    # A preloaded worker: the parent's token request and cache hits are the parent's.
    global _CLIENT
    _CLIENT = authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET)
    for _ in range(3):
        _CLIENT.token()
    parent = _CLIENT.stats().as_dict()
    assert parent["token_requests_succeeded"] == 1 and parent["cache_hits"] == 2
    ctx = multiprocessing.get_context("fork")
    # One task per child (a worker that took both would see its own first call counted).
    with ctx.Pool(2, maxtasksperchild=1) as pool:
        results = pool.map_async(_child_stats, range(2)).get(timeout=60)
    for before, after in results:
        assert all(v == 0 for v in before.values()), before
        assert after["cache_hits"] == 1 and after["token_requests_succeeded"] == 0, after
    assert _CLIENT.stats().as_dict() == parent, "the parent's counts are its own"
