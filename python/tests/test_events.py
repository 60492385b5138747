"""Events through the standard ``logging`` module (logger ``authcore``) and counters
(``Client.stats()``), against the development provider."""

from __future__ import annotations

import logging
import threading
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
