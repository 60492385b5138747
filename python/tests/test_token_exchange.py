"""Token exchange (RFC 8693) against the development provider: a subject token given as
a string, a file read again for every exchange, or another client's token (chained)."""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import pytest

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, DevServer

ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
EXCHANGE = "oauth2/urn:ietf:params:oauth:grant-type:token-exchange"


def tag(token: str) -> str:
    """The provider's name for a token in its journal and control surface."""
    return hashlib.sha256(token.encode()).hexdigest()[:24]


def info(dev: DevServer, token: str) -> Any:
    return dev.control("GET", "token?tag=" + tag(token))


def exchanges(dev: DevServer) -> list[tuple[str, str]]:
    """(outcome, subject tag) of every exchange the provider answered."""
    journal = dev.control("GET", "journal")
    return [
        (e["outcome"], e.get("subject", ""))
        for e in journal["events"]
        if e["event"] == "token" and e["grant"] == EXCHANGE
    ]


def subject_client(dev: DevServer) -> authcore.Client:
    return authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, scopes="campaigns:read reporting:read"
    )


def test_a_subject_token_is_exchanged_with_what_is_asked(dev: DevServer) -> None:
    subject = subject_client(dev).token()
    client = authcore.Client.token_exchange(
        dev.url + "/oauth2/token",
        CLIENT_ID,
        CLIENT_SECRET,
        subject_token=subject,
        audience=["orders", "billing"],
        scopes="campaigns:read",
        requested_token_type="access_token",
        auth_method="post",
        resource="https://api.example/orders",
    )
    token = client.token_info()
    assert token.issued_token_type == ACCESS_TOKEN
    assert token.scope == "campaigns:read"
    assert token.access_token != subject
    described = info(dev, token.access_token)
    assert described["aud"] == ["orders", "billing", "https://api.example/orders"]
    assert client.get(dev.url + "/api/resource").status == 200
    assert exchanges(dev) == [("issued", tag(subject))]
    assert subject not in repr(client) and subject not in repr(token)


def test_a_chained_subject_client_renews_when_its_token_is_refused(dev: DevServer) -> None:
    front = subject_client(dev)
    client = authcore.Client.token_exchange(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, subject_client=front, audience="orders"
    )
    first = client.token()
    s1 = front.token()
    dev.control("POST", "revoke_token", {"tag": tag(s1)})
    second = client.refresh()
    s2 = front.token()
    assert s2 != s1, "the subject client renewed"
    assert second != first
    assert exchanges(dev) == [("issued", tag(s1)), ("refused", tag(s1)), ("issued", tag(s2))]
    assert dev.token_requests("oauth2/client_credentials") == 2
    assert client.get(dev.url + "/api/resource").status == 200


def test_a_subject_file_is_read_for_every_exchange(dev: DevServer, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "subject-token"
    first, second = subject_client(dev).token(), subject_client(dev).token()
    path.write_text(first + "\n")
    client = authcore.Client.token_exchange(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, subject_token_file=path
    )
    client.token()
    path.write_text(second)
    client.refresh()
    assert exchanges(dev) == [("issued", tag(first)), ("issued", tag(second))]
    path.unlink()
    with pytest.raises(authcore.ConfigError) as e:
        client.refresh()
    assert "subject-token" in str(e.value)


def test_a_refused_subject_is_an_oauth_error_without_the_token(dev: DevServer) -> None:
    subject = subject_client(dev).token()
    dev.control("POST", "revoke_token", {"tag": tag(subject)})
    client = authcore.Client.token_exchange(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, subject_token=subject
    )
    with pytest.raises(authcore.OAuthError) as e:
        client.token()
    assert e.value.error == "invalid_grant"
    assert subject not in str(e.value) and subject not in repr(e.value)


def test_exactly_one_subject_is_taken(dev: DevServer) -> None:
    url = dev.url + "/oauth2/token"
    with pytest.raises(TypeError):
        authcore.Client.token_exchange(url, CLIENT_ID, CLIENT_SECRET)
    with pytest.raises(TypeError):
        authcore.Client.token_exchange(
            url, CLIENT_ID, CLIENT_SECRET, subject_token="a", subject_token_file="/tmp/b"
        )
    with pytest.raises(TypeError):
        authcore.Client.token_exchange(
            url, CLIENT_ID, CLIENT_SECRET, subject_token="a", actor_token="b", actor_token_file="c"
        )
    with pytest.raises(TypeError):
        authcore.Client.token_exchange(url, CLIENT_ID, CLIENT_SECRET, subject_token_file=42)  # type: ignore[arg-type]
    with pytest.raises(authcore.ConfigError):
        authcore.Client.token_exchange(url, CLIENT_ID, subject_token="a", subject_token_type="")
    assert dev.token_requests() == 0


def test_any_assertion_source_can_be_the_subject_and_the_actor(
    dev: DevServer, tmp_path: pathlib.Path
) -> None:
    # A command (a CI system's token helper) prints the subject token for every exchange;
    # a callback gives the actor token.
    holder = tmp_path / "subject"
    holder.write_text(subject_client(dev).token())
    actor = subject_client(dev).token()
    client = authcore.Client.token_exchange(
        dev.url + "/oauth2/token",
        CLIENT_ID,
        CLIENT_SECRET,
        subject=authcore.AssertionSource.command("cat", [str(holder)]),
        actor=authcore.AssertionSource.callback(lambda: actor),
        auth_method="post",
    )
    first = client.token()
    assert info(dev, first)["act"]["sub"] == CLIENT_ID
    # The command is run again at the next exchange: a new subject token is used.
    holder.write_text(subject_client(dev).token())
    assert client.refresh() != first
    subjects = [subject for outcome, subject in exchanges(dev)]
    assert len(set(subjects)) == 2, subjects
    # Exactly one subject.
    with pytest.raises(TypeError):
        authcore.Client.token_exchange(
            dev.url + "/oauth2/token",
            CLIENT_ID,
            CLIENT_SECRET,
            subject=authcore.AssertionSource.literal("x"),
            subject_token="y",
        )
