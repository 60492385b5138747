"""authcore against the Python token libraries people use today, in one process and
one run, against the same local provider (`authcore devserver`):

* cached token cost: getting the Authorization value for the next request when a
  valid token is cached (median of 7 rounds, ns per call);
* herd: 32 threads with a cold cache and a 200 ms token endpoint (token requests);
* churn: 1 s token lifetimes, 8 threads for 3 s of GET requests (requests sent with
  an expired token, token requests, errors);
* authenticated GET throughput with 1 and 4 threads (requests per second, 2 s each).

Each library is used the way its documentation shows for OAuth 2.0 client
credentials, with its default settings: authlib's OAuth2Session (re-fetches itself
when `grant_type` is client_credentials), requests-oauthlib's OAuth2Session with a
BackendApplicationClient (the caller fetches again on TokenExpiredError), and
httpx-auth's OAuth2ClientCredentials (a process-wide token cache).

Usage: AUTHCORE_BIN=target/release/authcore python compare.py  (prints Markdown)
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any, Callable, Dict, List, Tuple

import httpx
import httpx_auth
import requests
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from oauthlib.oauth2 import BackendApplicationClient, TokenExpiredError
from requests_oauthlib import OAuth2Session as RoSession

import authcore

CLIENT_ID, CLIENT_SECRET = "dev-client", "dev-secret"
# oauthlib refuses http:// unless told; the provider is on loopback.
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")


class Provider:
    def __init__(self) -> None:
        binary = os.environ.get("AUTHCORE_BIN", "target/release/authcore")
        self.proc = subprocess.Popen(
            [binary, "devserver", "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert self.proc.stdout is not None
        for _ in range(50):
            line = self.proc.stdout.readline()
            if line.startswith("AUTHCORE_DEVSERVER_URL="):
                self.url = line.strip().split("=", 1)[1]
                break
        else:
            raise RuntimeError("devserver did not start")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.token_url = self.url + "/oauth2/token"
        self.api = self.url + "/api/resource"

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + "/_control/" + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (loopback)
            return json.loads(r.read())

    def reset(self, **behaviour: Any) -> None:
        self.control("POST", "reset", {})
        if behaviour:
            self.control("POST", "config", behaviour)

    def counters(self) -> Dict[str, Any]:
        return dict(self.control("GET", "counters"))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# Each library: a factory returning (header(), get(url)) bound to a fresh client.
Lib = Tuple[Callable[[], str], Callable[[str], int]]


def make_authcore(p: Provider) -> Lib:
    c = authcore.Client.client_credentials(p.token_url, CLIENT_ID, CLIENT_SECRET)
    return c.authorization_header, lambda url: c.get(url).status


def make_authlib(p: Provider) -> Lib:
    s = AuthlibSession(CLIENT_ID, CLIENT_SECRET, token_endpoint=p.token_url,
                       grant_type="client_credentials")

    def header() -> str:
        if not s.token:
            s.fetch_token()
        s.ensure_active_token(s.token)
        return "Bearer " + s.token["access_token"]

    def get(url: str) -> int:
        if not s.token:
            s.fetch_token()
        return int(s.get(url, timeout=30).status_code)

    return header, get


def make_requests_oauthlib(p: Provider) -> Lib:
    s = RoSession(client=BackendApplicationClient(client_id=CLIENT_ID))

    def fetch() -> None:
        s.fetch_token(token_url=p.token_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)

    def header() -> str:
        if not s.token:
            fetch()
        try:
            _, headers, _ = s._client.add_token("https://api.example/", headers={})
        except TokenExpiredError:
            fetch()
            _, headers, _ = s._client.add_token("https://api.example/", headers={})
        return str(headers["Authorization"])

    def get(url: str) -> int:
        if not s.token:
            fetch()
        try:
            return int(s.get(url, timeout=30).status_code)
        except TokenExpiredError:
            fetch()
            return int(s.get(url, timeout=30).status_code)

    return header, get


def make_httpx_auth(p: Provider) -> Lib:
    httpx_auth.OAuth2.token_cache.clear()
    auth = httpx_auth.OAuth2ClientCredentials(p.token_url, CLIENT_ID, CLIENT_SECRET)
    client = httpx.Client(auth=auth, timeout=30)
    req = httpx.Request("GET", p.api)

    def header() -> str:
        flow = auth.auth_flow(req)
        return str(next(flow).headers["Authorization"])

    return header, lambda url: client.get(url).status_code


LIBS: Dict[str, Callable[[Provider], Lib]] = {
    "authcore": make_authcore,
    "authlib": make_authlib,
    "requests-oauthlib": make_requests_oauthlib,
    "httpx-auth": make_httpx_auth,
}


def run_threads(n: int, work: Callable[[], None]) -> None:
    barrier = threading.Barrier(n, timeout=60)

    def body() -> None:
        barrier.wait()
        work()

    threads = [threading.Thread(target=body) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)


def cached_cost(p: Provider, make: Callable[[Provider], Lib]) -> float:
    p.reset()
    header, _ = make(p)
    header()  # warm: one token fetched and cached
    calls, rounds = 20_000, []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(calls):
            header()
        rounds.append((time.perf_counter() - start) / calls * 1e9)
    return statistics.median(rounds)


def herd(p: Provider, make: Callable[[Provider], Lib]) -> Tuple[int, int]:
    p.reset(latency_ms=200)
    header, _ = make(p)
    errors = [0]
    lock = threading.Lock()

    def work() -> None:
        try:
            header()
        except Exception:
            with lock:
                errors[0] += 1

    run_threads(32, work)
    return int(p.counters()["token_requests"]), errors[0]


def churn(p: Provider, make: Callable[[Provider], Lib]) -> Dict[str, int]:
    p.reset(lifetime_secs=1)
    _, get = make(p)
    until = time.monotonic() + 3.0
    stats = {"requests": 0, "errors": 0}
    lock = threading.Lock()

    def work() -> None:
        n = e = 0
        while time.monotonic() < until:
            try:
                if get(p.api) != 200:
                    e += 1
            except Exception:
                e += 1
            n += 1
        with lock:
            stats["requests"] += n
            stats["errors"] += e

    run_threads(8, work)
    c = p.counters()
    stats["expired_sent"] = int(c["resource_rejected_expired"])
    stats["token_requests"] = int(c["token_requests"])
    return stats


def throughput(p: Provider, make: Callable[[Provider], Lib], threads: int) -> float:
    p.reset()
    _, get = make(p)
    get(p.api)
    until = time.monotonic() + 2.0
    counts: List[int] = []
    lock = threading.Lock()

    def work() -> None:
        n = 0
        while time.monotonic() < until:
            get(p.api)
            n += 1
        with lock:
            counts.append(n)

    start = time.monotonic()
    run_threads(threads, work)
    return sum(counts) / (time.monotonic() - start)


def async_figures(p: Provider) -> Dict[str, float]:
    """httpx.AsyncClient GETs, 500 at once, 5 rounds: with HttpxAuth, and with the same
    header set by hand (no auth object) — requests/s, medians."""
    import asyncio

    p.reset()
    client = authcore.Client.client_credentials(p.token_url, CLIENT_ID, CLIENT_SECRET)
    header = client.authorization_header()
    url = p.url + "/api/resource"

    async def run(auth: Any, headers: Dict[str, str]) -> float:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(auth=auth, headers=headers, limits=limits, timeout=60) as http:
            await http.get(url)
            start = time.perf_counter()
            rs = await asyncio.gather(*(http.get(url) for _ in range(500)))
            elapsed = time.perf_counter() - start
            assert all(r.status_code == 200 for r in rs)
            return 500 / elapsed

    with_auth, by_hand = [], []
    for _ in range(5):
        with_auth.append(asyncio.run(run(authcore.HttpxAuth(client), {})))
        by_hand.append(asyncio.run(run(None, {"Authorization": header})))
    return {"auth": statistics.median(with_auth), "by_hand": statistics.median(by_hand)}


def main() -> None:
    p = Provider()
    try:
        asynchronous = async_figures(p)
    except Exception as e:  # the figures are reported, never fatal to the comparison
        print(f"async figures failed: {e!r}", file=sys.stderr)
        asynchronous = {}
    try:
        results: Dict[str, Dict[str, Any]] = {}
        for name, make in LIBS.items():
            r: Dict[str, Any] = {}
            r["cached_ns"] = cached_cost(p, make)
            r["herd"] = herd(p, make)
            r["churn"] = churn(p, make)
            r["rps1"] = throughput(p, make, 1)
            r["rps4"] = throughput(p, make, 4)
            results[name] = r
            print(f"measured {name}", file=sys.stderr)
    finally:
        p.close()

    with tempfile.TemporaryDirectory() as d:
        store = authcore.FileStore(d)

        def make_stored(p: Provider) -> Lib:
            c = authcore.Client.client_credentials(p.token_url, CLIENT_ID, CLIENT_SECRET, store=store)
            return c.authorization_header, lambda url: c.get(url).status

        p = Provider()
        try:
            p.reset()
            direct = authcore.Client.client_credentials(p.token_url, CLIENT_ID, CLIENT_SECRET)
            direct.token()
            token_rounds: list[float] = []
            # The floor, in the same loop: nothing; a call to a C builtin method; a call
            # into this extension that does no work (`renewal_helps` on a 200).
            floors: dict[str, list[float]] = {"loop": [], "builtin": [], "extension": []}
            n = 12345
            for _ in range(21):
                start = time.perf_counter()
                for _ in range(20_000):
                    direct.token()
                token_rounds.append((time.perf_counter() - start) / 20_000 * 1e9)
                start = time.perf_counter()
                for _ in range(20_000):
                    pass
                floors["loop"].append((time.perf_counter() - start) / 20_000 * 1e9)
                start = time.perf_counter()
                for _ in range(20_000):
                    n.bit_length()
                floors["builtin"].append((time.perf_counter() - start) / 20_000 * 1e9)
                start = time.perf_counter()
                for _ in range(20_000):
                    direct.renewal_helps(200)
                floors["extension"].append((time.perf_counter() - start) / 20_000 * 1e9)
            # Events: a renewal raises three (debug and info). With the `authcore` logger
            # disabled each costs a level check; enabled, a LogRecord goes to a handler.
            events_logger = logging.getLogger("authcore")
            events_logger.propagate = False
            events_logger.addHandler(logging.NullHandler())
            renewal_us: dict[str, list[float]] = {"disabled": [], "debug": []}
            cached_ns: dict[str, list[float]] = {"disabled": [], "debug": []}
            for _ in range(5):
                for level, name in ((logging.CRITICAL, "disabled"), (logging.DEBUG, "debug")):
                    events_logger.setLevel(level)
                    for _ in range(40):
                        start = time.perf_counter()
                        direct.refresh()
                        renewal_us[name].append((time.perf_counter() - start) * 1e6)
                    start = time.perf_counter()
                    for _ in range(20_000):
                        direct.token()
                    cached_ns[name].append((time.perf_counter() - start) / 20_000 * 1e9)
            events_logger.setLevel(logging.CRITICAL)
            start = time.perf_counter()
            for _ in range(20_000):
                events_logger.isEnabledFor(logging.DEBUG)
            level_check_ns = (time.perf_counter() - start) / 20_000 * 1e9
            plain, stored = [], []
            for _ in range(21):  # interleaved: both see the same machine
                plain.append(cached_cost(p, make_authcore))
                stored.append(cached_cost(p, make_stored))
        finally:
            p.close()

    best_other = min(r["cached_ns"] for n, r in results.items() if n != "authcore")
    print(f"Python {sys.version.split()[0]}, authcore {authcore.__version__}; "
          f"{os.cpu_count()} CPUs\n")
    print("| library | cached token (ns/call) | herd: token requests (errors) | "
          "churn 1 s tokens: expired sent / token requests / errors / requests | "
          "GET/s, 1 thread | GET/s, 4 threads |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        c = r["churn"]
        print(f"| {name} | {r['cached_ns']:.0f} | {r['herd'][0]} ({r['herd'][1]}) | "
              f"{c['expired_sent']} / {c['token_requests']} / {c['errors']} / {c['requests']} | "
              f"{r['rps1']:.0f} | {r['rps4']:.0f} |")
    print(f"\nauthcore Client.token() (a valid token cached): {statistics.median(token_rounds):.0f} ns/call "
          "(median of 21 rounds of 20 000, the loop included); in the same rounds: the empty loop "
          f"{statistics.median(floors['loop']):.0f} ns, a C builtin method call (int.bit_length) "
          f"{statistics.median(floors['builtin']):.0f} ns, a call into authcore that does no work "
          f"(renewal_helps) {statistics.median(floors['extension']):.0f} ns")
    print(f"\nevents: a forced renewal with the authcore logger disabled / at DEBUG (records to a "
          f"NullHandler): {statistics.median(renewal_us['disabled']):.0f} / "
          f"{statistics.median(renewal_us['debug']):.0f} µs (median of 200 each, interleaved); "
          f"token() with a cached token: {statistics.median(cached_ns['disabled']):.0f} / "
          f"{statistics.median(cached_ns['debug']):.0f} ns (no event on that path); "
          f"one level check (Logger.isEnabledFor) {level_check_ns:.0f} ns")
    print(f"\nauthcore cached token, no store / FileStore configured: "
          f"{statistics.median(plain):.0f} / {statistics.median(stored):.0f} ns/call (median of 21 interleaved)")
    if asynchronous:
        print(f"\nasync (httpx.AsyncClient, 500 concurrent GETs, median of 5): with authcore.HttpxAuth "
              f"{asynchronous['auth']:.0f} req/s, the same header set by hand {asynchronous['by_hand']:.0f} req/s "
              f"(ratio {asynchronous['auth'] / asynchronous['by_hand']:.2f})")
    print(f"\nauthcore cached token: {best_other / results['authcore']['cached_ns']:.1f}x cheaper "
          "than the best of the others")


if __name__ == "__main__":
    main()
