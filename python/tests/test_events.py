"""Events through the standard ``logging`` module (logger ``authcore``) and counters
(``Client.stats()``), against the development provider."""

from __future__ import annotations

import logging
import threading

import pytest

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, DevServer


def _events(records: list[logging.LogRecord]) -> list[str]:
    return [getattr(r, "event", "") for r in records if r.name == "authcore"]


def test_renewals_are_logged_with_their_facts_and_counted(
    dev: DevServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="authcore")
    client = authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, scopes="campaigns:read"
    )
    tokens = {client.token() for _ in range(10)}
    assert len(tokens) == 1
    assert _events(caplog.records) == ["token.requested", "token.obtained", "token.renewed"]
    renewed = next(r for r in caplog.records if getattr(r, "event", "") == "token.renewed")
    assert renewed.levelno == logging.INFO
    assert getattr(renewed, "reason") == "initial"
    requested = next(r for r in caplog.records if getattr(r, "event", "") == "token.requested")
    assert requested.levelno == logging.DEBUG
    assert getattr(requested, "grant") == "client_credentials"
    assert getattr(requested, "host") == dev.url.removeprefix("http://")

    forced = client.refresh()
    assert forced != tokens.pop()
    assert client.token() == forced

    stats = client.stats()
    assert isinstance(stats, authcore.Stats)
    assert stats.cache_hits == 10  # nine tokens before the refresh, one after
    assert stats.renewals_initial == 1 and stats.renewals_forced == 1
    assert stats.token_requests_succeeded == 2 == stats.token_requests == dev.token_requests()
    assert stats.renewals == 2
    d = stats.as_dict()
    assert d["cache_hits"] == 10 and d["wait_time"] == 0.0 and len(d) == 16
    assert "cache_hits=10" in repr(stats) and stats == client.stats()

    # Never a secret, in any record of any logger.
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert CLIENT_SECRET not in text
        assert forced not in text


def test_failures_warn_and_the_backoff_is_counted(
    dev: DevServer, caplog: pytest.LogCaptureFixture
) -> None:
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
    for record in caplog.records:
        assert "wrong-secret-value" not in record.getMessage() + repr(record.__dict__)


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
