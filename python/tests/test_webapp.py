"""Sign-in in a real (small) web application: two worker processes sharing a session
file, two users signing in at once, and a forged callback between them."""

from __future__ import annotations

import pathlib
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
    procs: List[subprocess.Popen[str]] = []
    urls: List[str] = []
    try:
        for _ in range(2):
            proc = subprocess.Popen(
                [sys.executable, str(HERE / "webapp.py"), "--devserver", dev.url, "--sessions", str(sessions)],
                stdout=subprocess.PIPE,
                text=True,
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
        flow.finish("http://127.0.0.1/callback?code=x&state=forged")
    assert flow.finish(callback_b).get(dev.url + "/api/resource").status == 200
    assert flow.finish(callback_a).get(dev.url + "/api/resource").status == 200
    with pytest.raises(authcore.StateMismatchError):
        flow.finish(callback_a)
    # The exported form of another sign-in does not finish this callback.
    c = flow.authorization_url()
    d = flow.authorization_url()
    with pytest.raises(authcore.StateMismatchError):
        flow.finish(dev.follow_authorize(c.url), pending=d.pending)
    with pytest.raises(authcore.ConfigError):
        flow.finish(dev.follow_authorize(d.url), pending="not-a-sign-in")
