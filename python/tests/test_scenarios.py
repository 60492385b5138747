"""The Python runner over the shared scenarios (tests/scenarios/*.json), with the same
provider set-up, client, steps and expectations as the Rust and C runners."""

from __future__ import annotations

import json
import pathlib
import threading
import time
from collections import Counter
from typing import Any, Callable

import pytest

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, SCENARIOS, DevServer

FILES = sorted(SCENARIOS.glob("*.json"))


def build_client(s: dict[str, Any], dev: DevServer, store_dir: pathlib.Path) -> authcore.Client:
    dialect = s["dialect"]
    override = s.get("client", {})
    secret = override.get("secret")
    scopes = override.get("scopes") or None
    options: dict[str, Any] = {"failure_backoff": (0.05, 0.5), "timeout": 10.0}
    store = override.get("store")
    if store is not None:
        assert store == "file", f"unknown store {store}"
        options["store"] = authcore.FileStore(store_dir)
    if dialect == "apivideo":
        return authcore.Client.api_video(secret or "dev-api-key", base_url=dev.url, **options)
    if dialect in ("vibe", "oauth2_post"):
        return authcore.Client.client_credentials(
            dev.url + "/oauth2/token", CLIENT_ID, secret or CLIENT_SECRET, scopes=scopes,
            auth_method="basic" if dialect == "vibe" else "post", **options,
        )
    if dialect == "viewneo_pat":
        return authcore.Client.personal_access_token("dev-personal-access-token")
    if dialect == "oauth2_device":
        metadata = authcore.discover(dev.url, **options)
        device = authcore.DeviceFlow.from_metadata(
            metadata, CLIENT_ID, secret or CLIENT_SECRET, scopes=scopes, **options
        )
        return device.start().wait(timeout=30)
    redirect = "http://127.0.0.1/callback"
    if dialect == "viewneo_code":
        flow = authcore.AuthorizationCodeFlow.viewneo(
            CLIENT_ID, secret or CLIENT_SECRET, redirect, base_url=dev.url, scopes=scopes, **options
        )
    elif dialect == "oauth2_code":
        flow = authcore.AuthorizationCodeFlow(
            dev.url + "/oauth2/authorize", dev.url + "/oauth2/token", CLIENT_ID,
            secret or CLIENT_SECRET, redirect, scopes=scopes,
            revocation_url=dev.url + "/oauth2/revoke", **options,
        )
    else:
        raise AssertionError(f"unknown dialect {dialect}")
    request = flow.authorization_url()
    return flow.finish(dev.follow_authorize(request.url), request.state)


def run(
    s: dict[str, Any], dev: DevServer, store_dir: pathlib.Path
) -> tuple[Counter[str], list[str], authcore.Stats | None]:
    errors: Counter[str] = Counter()
    oauth: list[str] = []
    lock = threading.Lock()

    def record(call: Callable[[], object]) -> None:
        try:
            call()
        except authcore.AuthcoreError as e:
            with lock:
                errors[e.kind] += 1
                if e.error is not None:
                    oauth.append(e.error)

    def in_threads(n: int, work: Callable[[], None]) -> None:
        n = max(1, min(n, 64))
        barrier = threading.Barrier(n, timeout=60)

        def body() -> None:
            barrier.wait()
            work()

        threads = [threading.Thread(target=body) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)

    dev.reset()
    if s.get("provider"):
        dev.config(**s["provider"])
    client: authcore.Client | None = None

    def build() -> None:
        nonlocal client
        client = build_client(s, dev, store_dir)

    record(build)
    for step in s["steps"] if client is not None else []:
        (kind, arg), = step.items()
        c: authcore.Client = client  # type: ignore[assignment]
        if kind == "token":
            in_threads(arg["threads"], lambda: record(c.token))
        elif kind == "request":
            url = dev.url + arg.get("path", "/api/resource")
            count = min(arg["count"], 100_000)
            def requests_() -> None:
                for _ in range(count):
                    record(lambda: c.get(url))

            in_threads(arg["threads"], requests_)
        elif kind == "churn":
            url = dev.url + "/api/resource"
            until = time.monotonic() + min(arg["seconds"], 60)

            def churn() -> None:
                while time.monotonic() < until:
                    record(lambda: c.get(url))

            in_threads(arg["threads"], churn)
        elif kind == "revoke":
            dev.control("POST", "revoke", {"refresh": bool(arg.get("refresh", False))})
        elif kind == "fail":
            dev.control("POST", "fail", arg)
        elif kind == "malformed":
            dev.control("POST", "malformed", arg)
        elif kind == "revoke_client":
            record(c.revoke)
        elif kind == "refresh":
            record(c.refresh)
        elif kind == "sign_out":
            record(c.sign_out)
        elif kind == "sleep_ms":
            time.sleep(min(arg, 60_000) / 1000)
        else:
            raise AssertionError(f"unknown step {kind}")
    return errors, oauth, client.stats() if client is not None else None


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Any, dev: DevServer, tmp_path: pathlib.Path) -> None:
    s = json.loads(path.read_text())
    errors, oauth, stats = run(s, dev, tmp_path / "store")
    c = dev.counters()
    e = s["expect"]
    problems = []
    # What the client counted matches what the provider counted.
    if stats is not None and stats.token_requests != c["token_requests"]:
        problems.append(f"the client counted {stats.token_requests} token requests, the provider {c['token_requests']}")
    for key, counter in [("token_requests", "token_requests"), ("expired_sent", "resource_rejected_expired"),
                         ("resource_rejected_invalid", "resource_rejected_invalid"),
                         ("revocations", "revocations")]:
        if key in e and e[key] != c[counter]:
            problems.append(f"{key}: expected {e[key]}, observed {c[counter]}")
    for reason, want in e.get("renewals", {}).items():
        got = getattr(stats, f"renewals_{reason}", None) if stats is not None else None
        if got != want:
            problems.append(f"renewals {reason}: expected {want}, observed {got}")
    if "token_requests_max" in e and c["token_requests"] > e["token_requests_max"]:
        problems.append(f"token requests: expected at most {e['token_requests_max']}, observed {c['token_requests']}")
    if "resource_accepted_min" in e and c["resource_accepted"] < e["resource_accepted_min"]:
        problems.append(f"accepted: expected at least {e['resource_accepted_min']}, observed {c['resource_accepted']}")
    for grant, want in e.get("token_requests_by_grant", {}).items():
        got = c["token_requests_by_grant"].get(grant, 0)
        if got != want:
            problems.append(f"token requests for {grant}: expected {want}, observed {got}")
    if dict(errors) != e.get("errors", {}):
        problems.append(f"errors by kind: expected {e.get('errors', {})}, observed {dict(errors)}")
    if "oauth_error" in e and (not oauth or any(x != e["oauth_error"] for x in oauth)):
        problems.append(f"OAuth errors: expected all {e['oauth_error']}, observed {oauth}")
    assert not problems, "\n".join(problems)


def test_every_scenario_file_is_collected() -> None:
    assert len(FILES) >= 15
