"""The Python runner over the shared scenarios (tests/scenarios/*.json), with the same
provider set-up, client, steps and expectations as the Rust and C runners."""

from __future__ import annotations

import hashlib
import json
import pathlib
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any, Callable

import pytest

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, SCENARIOS, DevServer

FILES = sorted(SCENARIOS.glob("*.json"))


#: The client id of the `oauth2_mtls` dialect's client (also its certificate's CN).
MTLS_CLIENT_ID = "scenario-mtls"


def client_options(s: dict[str, Any], dev: DevServer, store_dir: pathlib.Path) -> dict[str, Any]:
    """The options every client of a scenario is made with (its store included; in TLS
    mode, the provider's CA trusted)."""
    override = s.get("client", {})
    options: dict[str, Any] = {"failure_backoff": (0.05, 0.5), "timeout": 10.0}
    if dev.ca is not None:
        options["ca_bundle"] = dev.ca
    store = override.get("store")
    if store is not None:
        assert store == "file", f"unknown store {store}"
        options["store"] = authcore.FileStore(store_dir)
        options["store_key"] = "scenario-user"
    return options


def grant_options(s: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The options of an OAuth grant: the client's, and DPoP with a key of its own."""
    dpop = s.get("client", {}).get("dpop")
    return options if dpop is None else {**options, "dpop": dpop}


def assertion_source(s: dict[str, Any], path: pathlib.Path) -> authcore.AssertionSource:
    """Where the assertion dialects read their assertion: the file, or `cat` of it."""
    kind = s.get("client", {}).get("assertion", "file")
    if kind == "command":
        return authcore.AssertionSource.command("cat", [str(path)])
    assert kind == "file", f"unknown assertion source {kind}"
    return authcore.AssertionSource.file(path)


def build_client(
    s: dict[str, Any], dev: DevServer, options: dict[str, Any], assertion_file: pathlib.Path
) -> authcore.Client:
    dialect = s["dialect"]
    override = s.get("client", {})
    secret = override.get("secret")
    scopes = override.get("scopes") or None
    grant = grant_options(s, options)
    if dialect == "oauth2_assertion":
        return authcore.Client.client_credentials(
            dev.url + "/oauth2/token", CLIENT_ID, "", scopes=scopes,
            client_assertion=assertion_source(s, assertion_file), **grant,
        )
    if dialect == "oauth2_jwt_bearer":
        return authcore.Client.jwt_bearer(
            dev.url + "/oauth2/token", assertion_source(s, assertion_file), scopes=scopes, **grant
        )
    if dialect == "apivideo":
        return authcore.Client.api_video(secret or "dev-api-key", base_url=dev.url, **options)
    if dialect in ("vibe", "oauth2_post"):
        return authcore.Client.client_credentials(
            dev.url + "/oauth2/token", CLIENT_ID, secret or CLIENT_SECRET, scopes=scopes,
            auth_method="basic" if dialect == "vibe" else "post", **grant,
        )
    if dialect == "viewneo_pat":
        return authcore.Client.personal_access_token("dev-personal-access-token")
    if dialect == "oauth2_mtls":
        # `options` carry the certificate `mtls_certificate` registered.
        metadata = authcore.discover(dev.url, **options)
        return authcore.Client.client_credentials_from_metadata(
            metadata, MTLS_CLIENT_ID, scopes=scopes, auth_method="tls_client_auth", **grant
        )
    if dialect == "oauth2_device":
        metadata = authcore.discover(dev.url, **options)
        device = authcore.DeviceFlow.from_metadata(
            metadata, CLIENT_ID, secret or CLIENT_SECRET, scopes=scopes, **grant
        )
        return device.start().wait(timeout=30)
    redirect = "http://127.0.0.1/callback"
    if dialect == "viewneo_code":
        flow = authcore.AuthorizationCodeFlow.viewneo(
            CLIENT_ID, secret or CLIENT_SECRET, redirect, base_url=dev.url, scopes=scopes, **grant
        )
    elif dialect == "oauth2_code":
        flow = authcore.AuthorizationCodeFlow(
            dev.url + "/oauth2/authorize", dev.url + "/oauth2/token", CLIENT_ID,
            secret or CLIENT_SECRET, redirect, scopes=scopes,
            revocation_url=dev.url + "/oauth2/revoke", **grant,
        )
    else:
        raise AssertionError(f"unknown dialect {dialect}")
    request = flow.authorization_url()
    return flow.finish(dev.follow_authorize(request.url), request.state)


def exchange_clients(
    s: dict[str, Any], dev: DevServer, options: dict[str, Any]
) -> tuple[authcore.Client, authcore.Client]:
    """Chained token exchange: the client, and its subject client (client credentials,
    body authentication, no store, no DPoP) whose token it exchanges."""
    override = s.get("client", {})
    secret = override.get("secret") or CLIENT_SECRET
    subject = authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, secret,
        scopes=override.get("subject_scopes") or None, auth_method="post",
        failure_backoff=(0.05, 0.5), timeout=10.0,
    )
    client = authcore.Client.token_exchange(
        dev.url + "/oauth2/token", CLIENT_ID, secret, subject_client=subject,
        subject_token_type="access_token", audience=override.get("audience") or None,
        scopes=override.get("scopes") or None, auth_method="post", **grant_options(s, options),
    )
    return client, subject


def restarted_client(
    s: dict[str, Any], dev: DevServer, options: dict[str, Any], refresh_token: str | None
) -> authcore.Client:
    """The client a restarted process makes: the same options and store, a new DPoP key
    of its own, and a refresh-token grant from the last refresh token the old one held."""
    dialect = s["dialect"]
    assert dialect in ("oauth2_code", "oauth2_device"), f"no restart for {dialect}"
    assert refresh_token is not None, "the client to restart held no refresh token"
    secret = s.get("client", {}).get("secret")
    return authcore.Client.refresh_token(
        dev.url + "/oauth2/token", CLIENT_ID, secret or CLIENT_SECRET, refresh_token,
        revocation_url=dev.url + "/oauth2/revoke", **grant_options(s, options),
    )


def mtls_certificate(s: dict[str, Any], dev: DevServer) -> dict[str, Any]:
    """The `oauth2_mtls` client's certificate, issued by the provider for
    ``MTLS_CLIENT_ID`` and registered for ``tls_client_auth`` with its subject (beside the
    scenario's provider settings)."""
    made: dict[str, Any] = dev.control("POST", "client_certificate", {"cn": MTLS_CLIENT_ID})
    registration = {"client_id": MTLS_CLIENT_ID, "tls_client_auth_subject_dn": made["subject"]}
    dev.config(**{**s.get("provider", {}), "mtls_clients": [registration]})
    return made


def replay(client: authcore.Client, dev: DevServer, url: str) -> list[int]:
    """Sends one request with the client's headers twice, with urllib (trusting the
    provider's CA in TLS mode, presenting no client certificate): the statuses."""
    headers = client.request_headers("GET", url)
    statuses = []
    for _ in range(2):
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10, context=dev.context) as response:  # noqa: S310 (loopback only)
                statuses.append(int(response.status))
        except urllib.error.HTTPError as e:
            statuses.append(int(e.code))
            e.close()
    return statuses


class Outcome:
    """What a run observed on the client's side."""

    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.oauth: list[str] = []
        # The stats of every client of the run (a restart adds one), added up.
        self.stats: list[authcore.Stats] = []
        self.token_type: str | None = None
        self.replay_statuses: list[int] | None = None
        # Whether the client's token at the end is bound to its client certificate.
        self.certificate_bound = False
        self.issued_token_type: str | None = None

    def total(self, counter: str) -> int:
        return sum(int(getattr(s, counter)) for s in self.stats)


def run(s: dict[str, Any], dev: DevServer, store_dir: pathlib.Path, assertion_file: pathlib.Path) -> Outcome:
    out = Outcome()
    lock = threading.Lock()

    def record(call: Callable[[], object]) -> None:
        try:
            call()
        except authcore.AuthcoreError as e:
            with lock:
                out.errors[e.kind] += 1
                if e.error is not None:
                    out.oauth.append(e.error)

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
    # The last refresh token a client of the run was given, for a restart.
    last_refresh_token: list[str] = []
    options = client_options(s, dev, store_dir)
    options["on_refresh_token"] = last_refresh_token.append
    certificate: dict[str, Any] | None = None
    if s["dialect"] == "oauth2_mtls":
        certificate = mtls_certificate(s, dev)
        options["client_cert"] = certificate["certificate"].encode()
        options["client_key"] = certificate["key"].encode()

    # A token exchange's subject client, whose token requests count with the client's.
    subject: authcore.Client | None = None

    def build() -> None:
        nonlocal client, subject
        if s["dialect"] == "oauth2_token_exchange":
            client, subject = exchange_clients(s, dev, options)
        else:
            client = build_client(s, dev, options, assertion_file)

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
        elif kind == "restart" and subject is not None:
            out.stats.extend([c.stats(), subject.stats()])
            client, subject = exchange_clients(s, dev, options)
        elif kind == "restart":
            out.stats.append(c.stats())
            rt = last_refresh_token[-1] if last_refresh_token else None
            client = restarted_client(s, dev, options, rt)
        elif kind == "write_assertion":
            sub = arg.get("sub", CLIENT_ID)
            minted = dev.control("POST", "test_issuer/mint", {"sub": sub, "aud": dev.url, "ttl_s": arg["ttl_s"]})
            assertion_file.write_text(minted["jwt"])
        elif kind == "remove_assertion":
            assertion_file.unlink(missing_ok=True)
        elif kind == "revoke_subject":
            def revoke_subject() -> None:
                header = subject.cached_authorization_header() if subject is not None else None
                if header is None:
                    raise authcore.ConfigError("revoke_subject: no subject token to revoke")
                token = header.split(" ", 1)[1]
                tag = hashlib.sha256(token.encode()).hexdigest()[:24]
                dev.control("POST", "revoke_token", {"tag": tag})

            record(revoke_subject)
        elif kind == "dpop_rotate":
            dev.control("POST", "dpop_rotate", {})
        elif kind == "replay":
            def replay_() -> None:
                out.replay_statuses = replay(c, dev, dev.url + "/api/replay")

            record(replay_)
        else:
            raise AssertionError(f"unknown step {kind}")
    if subject is not None:
        out.stats.append(subject.stats())
    if client is not None:
        out.stats.append(client.stats())
        if "issued_token_type" in s["expect"]:
            out.issued_token_type = client.token_info().issued_token_type
        # The type of the token the client holds, read without a token request.
        header = client.cached_authorization_header()
        out.token_type = header.split(" ", 1)[0] if header else None
        if certificate is not None and header:
            tag = hashlib.sha256(header.split(" ", 1)[1].encode()).hexdigest()[:24]
            info = dev.control("GET", "token?tag=" + tag)
            out.certificate_bound = info.get("cnf", {}).get("x5t#S256") == certificate["x5t#S256"]
    return out


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Any, dev: DevServer, tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> None:
    s = json.loads(path.read_text())
    if s["dialect"] == "oauth2_mtls":
        # Mutual TLS: against the provider in TLS mode.
        dev, _ = request.getfixturevalue("tls_server")
    out = run(s, dev, tmp_path / "store", tmp_path / "assertion")
    c = dev.counters()
    e = s["expect"]
    problems = []
    # What the client counted matches what the provider counted.
    if out.stats and out.total("token_requests") != c["token_requests"]:
        problems.append(f"the client counted {out.total('token_requests')} token requests, the provider {c['token_requests']}")
    for key, counter in [("token_requests", "token_requests"), ("expired_sent", "resource_rejected_expired"),
                         ("resource_rejected_invalid", "resource_rejected_invalid"),
                         ("revocations", "revocations"), ("assertions_resent", "assertions_resent"),
                         ("assertions_expired", "assertions_expired")]:
        if key in e and e[key] != c[counter]:
            problems.append(f"{key}: expected {e[key]}, observed {c[counter]}")
    for reason, want in e.get("renewals", {}).items():
        got = out.total(f"renewals_{reason}") if out.stats else None
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
    if dict(out.errors) != e.get("errors", {}):
        problems.append(f"errors by kind: expected {e.get('errors', {})}, observed {dict(out.errors)}")
    if "oauth_error" in e and (not out.oauth or any(x != e["oauth_error"] for x in out.oauth)):
        problems.append(f"OAuth errors: expected all {e['oauth_error']}, observed {out.oauth}")
    if "token_type" in e and out.token_type != e["token_type"]:
        problems.append(f"token type: expected {e['token_type']}, observed {out.token_type}")
    if "dpop_nonce_retries" in e and out.total("dpop_nonce_retries") != e["dpop_nonce_retries"]:
        problems.append(f"DPoP nonce retries: expected {e['dpop_nonce_retries']}, observed {out.total('dpop_nonce_retries')}")
    if "issued_token_type" in e and out.issued_token_type != e["issued_token_type"]:
        problems.append(f"issued token type: expected {e['issued_token_type']}, observed {out.issued_token_type}")
    if "replay_statuses" in e and out.replay_statuses != e["replay_statuses"]:
        problems.append(f"replay statuses: expected {e['replay_statuses']}, observed {out.replay_statuses}")
    if "certificate_bound" in e and out.certificate_bound != e["certificate_bound"]:
        problems.append(f"certificate bound: expected {e['certificate_bound']}, observed {out.certificate_bound}")
    assert not problems, "\n".join(problems)


def test_every_scenario_file_is_collected() -> None:
    assert len(FILES) >= 15
