"""Sign-in in a real (small) web application: two worker processes sharing a session
file and a pending key, two users signing in at once, a forged callback between them,
and login CSRF (an attacker's callback link opened in a victim's browser) refused. Then
the flow itself: the binding it needs, sealed sign-ins altered, foreign, expired (all
refused before any token request, never a panic) and the bound on sign-ins in memory."""

from __future__ import annotations

import logging
import os
import pathlib
import secrets
import time
from email.message import Message
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Iterator, List, Optional, Tuple

import pytest

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, DevServer

HERE = pathlib.Path(__file__).resolve().parent


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_browser = urllib.request.build_opener(_NoRedirect)


def _get(url: str, cookie: Optional[str] = None) -> Tuple[int, str, Message]:
    """A browser's GET that does not follow redirects: status, body, headers (looked up
    without regard to case)."""
    req = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with _browser.open(req, timeout=15) as resp:
            return resp.status, resp.read().decode(), resp.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


@pytest.fixture()
def workers(dev: DevServer, tmp_path: pathlib.Path) -> Iterator[List[str]]:
    """Two worker processes of the web application, sharing one session file."""
    sessions = tmp_path / "sessions.json"
    # The workers' shared pending key, handed over in the environment.
    env = dict(os.environ, AUTHCORE_PENDING_KEY=secrets.token_hex(32))
    procs: List[subprocess.Popen[str]] = []
    urls: List[str] = []
    try:
        for _ in range(2):
            proc = subprocess.Popen(
                [sys.executable, str(HERE / "webapp.py"), "--devserver", dev.url, "--sessions", str(sessions)],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            procs.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("PORT="), f"the worker did not start: {line!r}"
            urls.append(f"http://127.0.0.1:{line.strip().split('=', 1)[1]}")
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


def _start(worker: str) -> Tuple[str, str]:
    """A user opens /login on `worker`: their cookie and the provider's redirect back."""
    status, _, headers = _get(worker + "/login")
    assert status == 302
    cookie = str(headers["Set-Cookie"])
    status, _, headers = _get(str(headers["Location"]))  # the provider signs the user in
    assert status in (302, 303)
    callback = urllib.parse.urlsplit(str(headers["Location"]))
    return cookie, f"{callback.path}?{callback.query}"


def test_two_users_sign_in_at_once_across_workers_and_a_forged_callback_changes_nothing(
    dev: DevServer, workers: List[str]
) -> None:
    first, second = workers
    cookie_a, callback_a = _start(first)
    cookie_b, callback_b = _start(first)
    # A forged callback, on a session that has a sign-in in progress: refused.
    forged_cookie, _ = _start(second)
    status, body, _ = _get(second + "/callback?code=stolen&state=forged", forged_cookie)
    assert (status, body) == (400, "state mismatch")
    # The users come back in the other order, to the other worker.
    status, body, _ = _get(second + callback_b, cookie_b)
    assert status == 200 and body.endswith("api=200"), body
    status, body, _ = _get(second + callback_a, cookie_a)
    assert status == 200 and body.endswith("api=200"), body
    # A replayed callback finds no sign-in in progress any more.
    status, _, _ = _get(first + callback_a, cookie_a)
    assert status == 400
    assert dev.token_requests("oauth2/authorization_code") == 2


def test_login_csrf_an_attackers_callback_link_in_the_victims_browser_is_refused(
    dev: DevServer, workers: List[str]
) -> None:
    first, second = workers
    # The attacker signs in at the provider and stops before the redirect back.
    _, attackers_link = _start(first)
    # The victim has a sign-in of their own in progress; their browser is lured to the
    # attacker's link.
    victim_cookie, _ = _start(second)
    status, body, _ = _get(first + attackers_link, victim_cookie)
    assert (status, body) == (400, "state mismatch")
    # A browser with no sign-in in progress (no binding at all): refused too.
    status, body, _ = _get(second + attackers_link)
    assert status == 400 and "no sign-in" in body
    assert dev.token_requests() == 0, "no code was exchanged"


def _flow(
    dev: DevServer, pending_key: Optional[bytes] = None, pending_lifetime: Optional[float] = None
) -> authcore.AuthorizationCodeFlow:
    return authcore.AuthorizationCodeFlow(
        dev.url + "/oauth2/authorize", dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET,
        "http://127.0.0.1/callback", pending_key=pending_key, pending_lifetime=pending_lifetime,
    )


def test_sign_ins_in_flight_in_one_process(dev: DevServer) -> None:
    flow = authcore.AuthorizationCodeFlow(
        dev.url + "/oauth2/authorize", dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET,
        "http://127.0.0.1/callback",
    )
    a = flow.authorization_url()
    b = flow.authorization_url()
    assert a.state != b.state and a.pending != b.pending
    assert a.pending not in repr(a)
    callback_a = dev.follow_authorize(a.url)
    callback_b = dev.follow_authorize(b.url)
    with pytest.raises(authcore.StateMismatchError):
        flow.finish("http://127.0.0.1/callback?code=x&state=forged", a.state)
    assert flow.finish(callback_b, b.state).get(dev.url + "/api/resource").status == 200
    assert flow.finish(callback_a, a.state).get(dev.url + "/api/resource").status == 200
    with pytest.raises(authcore.StateMismatchError):
        flow.finish(callback_a, a.state)
    # The exported form of another sign-in does not finish this callback.
    c = flow.authorization_url()
    d = flow.authorization_url()
    with pytest.raises(authcore.StateMismatchError):
        flow.finish(dev.follow_authorize(c.url), pending=d.pending)
    with pytest.raises(authcore.ConfigError):
        flow.finish(dev.follow_authorize(d.url), pending="not-a-sign-in")
    assert flow.finish(dev.follow_authorize(c.url), pending=c.pending).token()
    assert dev.token_requests("oauth2/authorization_code") == 3


def test_login_csrf_and_finish_without_a_binding_are_refused_before_any_token_request(
    dev: DevServer,
) -> None:
    flow = _flow(dev, pending_key=secrets.token_bytes(32))
    victim = flow.authorization_url()
    attacker = flow.authorization_url()
    attackers_link = dev.follow_authorize(attacker.url)
    with pytest.raises(authcore.StateMismatchError):
        flow.finish(attackers_link, victim.state)
    with pytest.raises(authcore.StateMismatchError):
        flow.finish(attackers_link, pending=victim.pending)
    # No binding: a clear ConfigError saying what finish needs; both at once, too.
    with pytest.raises(authcore.ConfigError, match="state") as info:
        flow.finish(attackers_link)  # type: ignore[call-overload]
    assert "pending" in str(info.value)
    with pytest.raises(authcore.ConfigError):
        flow.finish(attackers_link, "")
    with pytest.raises(authcore.ConfigError, match="not both"):
        flow.finish(attackers_link, victim.state, pending=victim.pending)  # type: ignore[call-overload]
    assert dev.token_requests() == 0
    # The victim's own sign-in is untouched.
    victims_link = dev.follow_authorize(victim.url)
    assert flow.finish(victims_link, victim.state).get(dev.url + "/api/resource").status == 200
    assert dev.token_requests("oauth2/authorization_code") == 1


def test_sealed_sign_ins_finish_across_flows_sharing_a_key_and_altered_ones_never_panic(
    dev: DevServer,
) -> None:
    key = secrets.token_bytes(32)
    started_here, elsewhere = _flow(dev, pending_key=key), _flow(dev, pending_key=key)
    other_key = _flow(dev, pending_key=secrets.token_bytes(32))
    unkeyed = _flow(dev)
    a = started_here.authorization_url()
    callback = dev.follow_authorize(a.url)
    pending = a.pending
    assert a.state not in pending and pending not in repr(a)

    altered = [pending[:i] + ("A" if pending[i] != "A" else "B") + pending[i + 1 :] for i in range(len(pending))]
    altered += [pending[:n] for n in range(0, len(pending), 7)]
    altered += [pending + "AA", "not-a-sign-in", "\x00\u00e9\U0001d11e", "A" * (1 << 20)]
    for bad in altered:
        with pytest.raises(authcore.ConfigError) as info:  # never PanicException
            elsewhere.finish(callback, pending=bad)
        assert a.state not in str(info.value)
    for foreign in (other_key, unkeyed):
        with pytest.raises(authcore.ConfigError, match="pending key|pending_key"):
            foreign.finish(callback, pending=pending)
    assert dev.token_requests() == 0, "no token request for a refused sign-in"

    client = elsewhere.finish(callback, pending=pending)
    assert client.get(dev.url + "/api/resource").status == 200
    with pytest.raises(authcore.StateMismatchError):  # used once
        elsewhere.finish(callback, pending=pending)
    assert dev.token_requests("oauth2/authorization_code") == 1
    assert elsewhere.stats().token_requests_succeeded == 1


def test_pending_key_and_lifetime_are_checked_and_expired_sign_ins_refused(dev: DevServer) -> None:
    for bad in (b"", b"x" * 31, b"x" * 33, secrets.token_hex(32).encode()):
        with pytest.raises(authcore.ConfigError, match="32"):
            _flow(dev, pending_key=bad)
    with pytest.raises(TypeError):
        _flow(dev, pending_key="0" * 32)  # type: ignore[arg-type]
    for bad_lifetime in (-1, 0):
        with pytest.raises(ValueError):
            _flow(dev, pending_lifetime=bad_lifetime)
    key = b"k" * 32
    flow = _flow(dev, pending_key=key, pending_lifetime=0.1)
    assert "kkkk" not in repr(flow) and "107, 107" not in repr(flow)
    a, b = flow.authorization_url(), flow.authorization_url()
    callback_a, callback_b = dev.follow_authorize(a.url), dev.follow_authorize(b.url)
    time.sleep(0.5)  # expiry only becomes more true with time
    with pytest.raises(authcore.StateMismatchError):
        flow.finish(callback_a, a.state)
    with pytest.raises(authcore.StateMismatchError):
        _flow(dev, pending_key=key, pending_lifetime=0.1).finish(callback_b, pending=b.pending)
    assert dev.token_requests() == 0


def test_a_burst_of_sign_ins_evicts_the_oldest_with_a_warning_and_counts_it(
    dev: DevServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="authcore")
    flow = _flow(dev)
    first = flow.authorization_url()
    for _ in range(1024):
        flow.authorization_url()
    assert flow.stats().signins_evicted == 1
    assert flow.stats().as_dict()["signins_evicted"] == 1
    evicted = [r for r in caplog.records if getattr(r, "event", "") == "signin.evicted"]
    assert len(evicted) == 1 and evicted[0].levelno == logging.WARNING
    assert first.state not in evicted[0].getMessage()
    with pytest.raises(authcore.StateMismatchError):
        flow.finish(dev.follow_authorize(first.url), first.state)
    # Its sealed form needs no room in memory, and still finishes.
    assert flow.finish(dev.follow_authorize(first.url), pending=first.pending).token()
