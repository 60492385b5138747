"""Fixtures: a real development provider process (`authcore devserver`) on loopback.

The suite runs against the *installed* wheel; it refuses to import ``authcore`` from
the source tree. The provider binary comes from ``AUTHCORE_BIN`` or the workspace's
``target/release/authcore``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest

import authcore

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "scenarios"
CLIENT_ID = "dev-client"
CLIENT_SECRET = "dev-secret"
#: The provider's public client: no secret, its id in the body (code with PKCE, device, refresh).
PUBLIC_CLIENT_ID = "dev-cli"


def pytest_sessionstart(session: pytest.Session) -> None:
    location = pathlib.Path(authcore.__file__).resolve()
    if ROOT in location.parents and "site-packages" not in location.parts:
        raise pytest.UsageError(f"authcore imported from the source tree ({location}), not the wheel")


class DevServer:
    """A running provider and its control endpoints (in TLS mode, ``ca`` is the file of
    its CA, trusted for them)."""

    def __init__(self, url: str, ca: str | None = None) -> None:
        self.url = url
        self.ca = ca
        self.context = ssl.create_default_context(cafile=ca) if ca else None

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + "/_control/" + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10, context=self.context) as resp:  # noqa: S310 (loopback only)
            return json.loads(resp.read())

    def reset(self) -> None:
        self.control("POST", "reset", {})

    def config(self, **behaviour: Any) -> None:
        self.control("POST", "config", behaviour)

    def counters(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "counters")
        return result

    def resources(self) -> list[dict[str, Any]]:
        """The journal's requests to the protected resource, oldest first (tokens as
        tags, ``None`` for a request without one)."""
        journal = self.control("GET", "journal")
        return [e for e in journal["events"] if e["event"] == "resource"]

    def token_requests(self, grant: str | None = None) -> int:
        c = self.counters()
        if grant is None:
            return int(c["token_requests"])
        return int(c["token_requests_by_grant"].get(grant, 0))

    def follow_authorize(self, url: str) -> str:
        """Plays the browser: returns the redirect the authorize endpoint answers with."""

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(url, timeout=10)
        except urllib.error.HTTPError as e:
            if e.code in (302, 303):
                return str(e.headers["Location"])
            raise
        raise AssertionError("the authorize endpoint did not redirect")


def _binary() -> pathlib.Path:
    env = os.environ.get("AUTHCORE_BIN")
    path = pathlib.Path(env) if env else ROOT / "target" / "release" / "authcore"
    if not path.exists():
        raise pytest.UsageError(f"no authcore binary at {path}; build it or set AUTHCORE_BIN")
    return path


@contextlib.contextmanager
def _devserver(*extra: str) -> Iterator[dict[str, str]]:
    """Runs a devserver process (with ``extra`` arguments) until the block ends: yields
    the ``AUTHCORE_DEVSERVER_*`` lines it printed, ``URL`` last."""
    proc = subprocess.Popen(
        [str(_binary()), "devserver", "--host", "127.0.0.1", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    told: dict[str, str] = {}
    deadline = time.monotonic() + 20
    assert proc.stdout is not None
    while time.monotonic() < deadline and "URL" not in told:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("AUTHCORE_DEVSERVER_") and "=" in line:
            name, value = line.strip().removeprefix("AUTHCORE_DEVSERVER_").split("=", 1)
            told[name] = value
    if "URL" not in told:
        proc.kill()
        proc.wait(timeout=10)
        raise RuntimeError("the devserver did not start")
    # Keep draining its output so that it can never block on a full pipe.
    drain = threading.Thread(target=proc.stdout.read, daemon=True)
    drain.start()
    try:
        yield told
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        drain.join(timeout=10)
        proc.stdout.close()


@pytest.fixture(scope="session")
def server() -> Iterator[DevServer]:
    with _devserver() as told:
        yield DevServer(told["URL"])


@pytest.fixture(scope="session")
def other_server() -> Iterator[DevServer]:
    """A second provider: another origin (another port) for redirect tests."""
    with _devserver() as told:
        yield DevServer(told["URL"])


@pytest.fixture()
def other(other_server: DevServer) -> DevServer:
    """The second provider, reset to its defaults for this test."""
    other_server.reset()
    return other_server


@pytest.fixture()
def dev(server: DevServer) -> DevServer:
    """The provider, reset to its defaults for this test."""
    server.reset()
    return server


@pytest.fixture()
def cc_client(dev: DevServer) -> authcore.Client:
    """A client-credentials client against the provider."""
    return authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, scopes="campaigns:read"
    )


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevServer, str]]:
    """A provider serving HTTPS with a throwaway CA: the server and the CA file."""
    tls_dir = tmp_path_factory.mktemp("devserver-tls")
    with _devserver("--tls-dir", str(tls_dir)) as told:
        if "CA" not in told:
            raise RuntimeError("the TLS devserver did not name its CA")
        yield DevServer(told["URL"], told["CA"]), told["CA"]
