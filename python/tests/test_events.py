"""Events through the standard ``logging`` module (logger ``authcore``) and counters
(``Client.stats()``), against the development provider."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import pytest

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, DevServer


def _events(records: list[logging.LogRecord]) -> list[str]:
    return [getattr(r, "event", "") for r in records if r.name == "authcore"]


def _assert_in_no_record(records: list[logging.LogRecord], secrets: list[str]) -> None:
    """Every record of every logger, message and attributes, against every secret."""
    assert records, "records were captured"
    for record in records:
        text = record.getMessage() + repr(record.__dict__)
        for secret in secrets:
            assert len(secret) >= 8 and secret not in text, f"a secret in {record.name}: {text}"


def test_only_authcore_events_reach_python_logging(
    dev: DevServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Every logger at DEBUG: the libraries below authcore (ureq logs each request at
    # debug level) reach none of them; authcore's own events do.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="authcore")
    client = authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET)
    for _ in range(3):
        assert client.get(dev.url + "/api/campaigns").status == 200
    names = {r.name for r in caplog.records}
    assert "authcore" in names
    assert not any(n.split(".")[0] in ("ureq", "ureq_proto", "rustls") for n in names), names


def test_renewals_are_logged_with_their_facts_and_counted(
    dev: DevServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Every record of every logger, from before the first token on.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="authcore")
    client = authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, scopes="campaigns:read"
    )
    tokens = {client.token() for _ in range(10)}
    assert len(tokens) == 1
    (first,) = tokens
    assert _events(caplog.records) == ["token.requested", "token.obtained", "token.renewed"]
    renewed = next(r for r in caplog.records if getattr(r, "event", "") == "token.renewed")
    assert renewed.levelno == logging.INFO
    assert getattr(renewed, "reason") == "initial"
    requested = next(r for r in caplog.records if getattr(r, "event", "") == "token.requested")
    assert requested.levelno == logging.DEBUG
    assert getattr(requested, "grant") == "client_credentials"
    assert getattr(requested, "host") == dev.url.removeprefix("http://")

    forced = client.refresh()
    assert forced != first
    assert client.token() == forced

    stats = client.stats()
    assert isinstance(stats, authcore.Stats)
    assert stats.cache_hits == 10  # nine tokens before the refresh, one after
    assert stats.renewals_initial == 1 and stats.renewals_forced == 1
    assert stats.token_requests_succeeded == 2 == stats.token_requests == dev.token_requests()
    assert stats.renewals == 2
    d = stats.as_dict()
    assert d["cache_hits"] == 10 and d["wait_time"] == 0.0 and len(d) == 17
    assert d["dpop_nonce_retries"] == 0 and "dpop" not in repr(stats), "counters at 0 are left out"
    assert "cache_hits=10" in repr(stats) and stats == client.stats()

    # Never a secret, in any record of any logger: the first token included.
    _assert_in_no_record(caplog.records, [CLIENT_SECRET, first, forced])


def test_failures_warn_and_the_backoff_is_counted(
    dev: DevServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="authcore")
    client = authcore.Client.client_credentials(
        dev.url + "/oauth2/token",
        CLIENT_ID,
        "wrong-secret-value",
        failure_backoff=(30.0, 60.0),
    )
    for _ in range(4):
        with pytest.raises(authcore.OAuthError):
            client.token()
    events = _events(caplog.records)
    assert events.count("token.request_failed") == 2
    assert events.count("backoff.entered") == 1
    assert events.count("backoff.refused") == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert {getattr(r, "event") for r in warnings} == {
        "token.request_failed",
        "token.renewal_failed",
        "backoff.entered",
    }
    stats = client.stats()
    assert stats.token_requests_refused == 2 and stats.backoff_refusals == 2
    assert stats.token_requests == dev.token_requests()
    _assert_in_no_record(caplog.records, ["wrong-secret-value"])


def test_record_attributes_have_their_types(dev: DevServer, caplog: pytest.LogCaptureFixture) -> None:
    """Integers, floats and booleans reach Python as such, not as their text."""
    caplog.set_level(logging.DEBUG, logger="authcore")
    client = authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, max_retries=1, failure_backoff=(0.001, 0.001)
    )
    client.token()
    dev.control("POST", "revoke", {})
    assert client.get(dev.url + "/api/resource").status == 200, "renewed after the 401"
    # Only this client's grant fails: a token request another test left running (a device
    # flow's poll) does not use up a fault.
    dev.control("POST", "fail", {"count": 2, "status": 503, "retry_after": 1, "grant": "client_credentials"})
    with pytest.raises(authcore.AuthcoreError):
        client.refresh()

    def the(event: str) -> logging.LogRecord:
        return next(r for r in caplog.records if getattr(r, "event", "") == event)

    def types(record: logging.LogRecord, *names: str) -> dict[str, object]:
        return {name: type(getattr(record, name)) for name in names}

    assert types(the("token.requested"), "event", "grant", "host", "attempt") == {
        "event": str, "grant": str, "host": str, "attempt": int,
    }
    assert getattr(the("token.requested"), "attempt") == 1
    assert types(the("token.obtained"), "attempt", "lifetime_s", "scope") == {
        "attempt": int, "lifetime_s": float, "scope": str,
    }
    assert 3500 < getattr(the("token.obtained"), "lifetime_s") <= 3600
    rejected = the("token.rejected")
    assert (getattr(rejected, "status"), getattr(rejected, "dropped")) == (401, True)
    assert types(rejected, "status", "dropped") == {"status": int, "dropped": bool}
    failed = [r for r in caplog.records if getattr(r, "event", "") == "token.request_failed"]
    assert [(getattr(r, "attempt"), getattr(r, "status"), getattr(r, "retrying")) for r in failed] == [
        (1, 503, True),
        (2, 503, False),
    ]
    assert types(failed[0], "attempt", "status", "retry_after_s", "retrying", "kind") == {
        "attempt": int, "status": int, "retry_after_s": float, "retrying": bool, "kind": str,
    }
    assert getattr(failed[0], "retry_after_s") == 1.0
    renewal_failed = the("token.renewal_failed")
    assert (getattr(renewal_failed, "reason"), getattr(renewal_failed, "status")) == ("forced", 503)


def test_a_raising_filter_is_reported_and_the_call_goes_on(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[BaseException | None] = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: reported.append(u.exc_value))

    def boom(record: logging.LogRecord) -> bool:
        raise RuntimeError("a broken filter")

    logger = logging.getLogger("authcore")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addFilter(boom)
    try:
        client = authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET)
        assert client.token()
    finally:
        logger.removeFilter(boom)
        logger.setLevel(level)
    assert len(reported) == 1 and isinstance(reported[0], RuntimeError), "token.renewed, reported once"


# A program that configures no logging, and makes one call that fails: a connection
# refused at a port nothing listens on (found free, then closed).
_FAILING_PROGRAM = """
import sys
{configure}
import authcore
client = authcore.Client.client_credentials("http://127.0.0.1:{port}/token", "id", "secret")
try:
    client.token()
except authcore.TransportError as e:
    print("caught", type(e).__name__)
"""


def _run_failing_program(tmp_path: Path, configure: str) -> subprocess.CompletedProcess[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return subprocess.run(
        [sys.executable, "-c", _FAILING_PROGRAM.format(configure=configure, port=port)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_program_without_logging_configured_prints_only_what_it_prints(tmp_path: Path) -> None:
    """The library's logger has a NullHandler: nothing reaches ``logging.lastResort``
    (which printed two warnings per failure besides the exception)."""
    run = _run_failing_program(tmp_path, configure="")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "caught TransportError\n"
    assert run.stderr == ""


def test_a_program_that_configures_logging_gets_the_records(tmp_path: Path) -> None:
    run = _run_failing_program(tmp_path, configure="import logging; logging.basicConfig(level=logging.DEBUG)")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "caught TransportError\n"
    ours = [line for line in run.stderr.splitlines() if line.split(":")[1:2] == ["authcore"]]
    assert any(line.startswith("WARNING:authcore:") for line in ours), run.stderr
    assert any(line.startswith("DEBUG:authcore:token request") for line in ours), run.stderr


def test_a_level_set_later_is_honoured(dev: DevServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="authcore")
    client = authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET)
    client.token()
    assert _events(caplog.records) == [], "nothing below warning"
    caplog.set_level(logging.INFO, logger="authcore")
    client.refresh()
    assert _events(caplog.records) == ["token.renewed"], "info now, debug still not"


def test_waiters_are_counted(dev: DevServer) -> None:
    dev.config(latency_ms=300)
    client = authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET)
    barrier = threading.Barrier(8, timeout=30)

    def work() -> None:
        barrier.wait()
        client.token()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    stats = client.stats()
    assert stats.token_requests == 1 == dev.token_requests()
    assert stats.waits + stats.cache_hits == 7
    assert stats.waits >= 1 and stats.wait_time > 0.05


class _CallingHandler(logging.Handler):
    """Calls the client on its first ``token.requested`` record: from inside the
    client's own renewal, on the renewing thread."""

    def __init__(self, client: authcore.Client) -> None:
        super().__init__(logging.DEBUG)
        self.client = client
        self.answers: list[tuple[str, BaseException | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", "") != "token.requested" or self.answers:
            return
        calls: dict[str, Callable[[], object]] = {
            "token": self.client.token,
            "authorization_header": self.client.authorization_header,
            "refresh": self.client.refresh,
        }
        for name, call in calls.items():
            try:
                call()
                self.answers.append((name, None))
            except BaseException as e:  # noqa: BLE001 (recorded, checked by the test)
                self.answers.append((name, e))


def test_a_handler_calling_the_client_during_its_renewal_gets_an_error_at_once(
    dev: DevServer,
) -> None:
    """It used to wait for the renewal it was part of: 30 s, the renewal's budget."""
    client = authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, timeout=120.0
    )
    handler = _CallingHandler(client)
    logger = logging.getLogger("authcore")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(client.token()), daemon=True)
    try:
        worker.start()
        worker.join(timeout=20)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert not worker.is_alive(), "the call stalled, waiting for the renewal it was made from"
    assert len(outcome) == 1 and dev.token_requests() == 1, "the renewal itself went on"
    assert [name for name, _ in handler.answers] == ["token", "authorization_header", "refresh"]
    for name, error in handler.answers:
        assert isinstance(error, authcore.ConfigError), (name, error)
        assert "own token renewal" in str(error), (name, error)
    assert client.token() == outcome[0], "outside the renewal the client serves its token"


_INTERRUPTED_PROGRAM = """
import os, signal, sys, threading, time
import authcore

client = authcore.Client.client_credentials({url!r} + "/oauth2/token", {client_id!r}, {secret!r})
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
started = time.monotonic()
try:
    client.token()
except KeyboardInterrupt:
    print("interrupted", round(time.monotonic() - started, 1))
else:
    print("returned normally")
"""


def test_ctrl_c_during_a_renewal_reaches_the_caller(dev: DevServer, tmp_path: Path) -> None:
    """Ctrl-C arrives while the token request waits (the interpreter released); Python
    runs its handler in the logging code of the next event, and the KeyboardInterrupt
    raised there is the call's, not swallowed as unraisable."""
    dev.config(latency_ms=2000)
    program = _INTERRUPTED_PROGRAM.format(url=dev.url, client_id=CLIENT_ID, secret=CLIENT_SECRET)
    run = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("interrupted"), (run.stdout, run.stderr)
    assert "Exception ignored" not in run.stderr, run.stderr
