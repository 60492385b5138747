"""The README's Python blocks, run: every ```python block of README.md and python/README.md
runs against the development provider, so a line that is no longer true fails here.

A block that needs what a test cannot have is marked on the line before it with
``<!-- readme-test: skip: WHY -->``. The example names in the blocks stand for the
provider's: its URLs (``https://auth.example.com/oauth2/token``, ``https://api.example.com``,
``https://id.example.com``), its clients (``my-client-id``/``my-client-secret`` are
``dev-client``/``dev-secret``, ``my-cli`` is the public ``dev-cli``) and a store
directory of the test's own; names a block uses without defining them (``client``,
``token_url``, ``url``, ...) are given values of the same kind.
"""

from __future__ import annotations

import logging
import pathlib
import re
from typing import Any

import httpx
import pytest
import requests

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, ROOT, DevServer

_MARKER = re.compile(r"<!-- readme-test: (.*) -->")


def _blocks() -> list[tuple[str, str | None, str]]:
    """(where, marker, code) for every python block of the two READMEs."""
    found = []
    for readme in (ROOT / "README.md", ROOT / "python" / "README.md"):
        lines = readme.read_text(encoding="utf-8").splitlines()
        previous = ""
        i = 0
        while i < len(lines):
            if lines[i] == "```python":
                end = lines.index("```", i + 1)
                marker = _MARKER.fullmatch(previous)
                where = f"{readme.relative_to(ROOT)}:{i + 1}"
                found.append((where, marker.group(1) if marker else None, "\n".join(lines[i + 1 : end])))
                i = end
            if lines[i].strip():
                previous = lines[i]
            i += 1
    return found


BLOCKS = _blocks()


def test_the_readmes_have_python_blocks_and_few_are_skipped() -> None:
    skipped = [(where, marker) for where, marker, _ in BLOCKS if marker is not None]
    assert len(BLOCKS) >= 10, BLOCKS
    assert len(skipped) <= 2, skipped
    for where, why in skipped:
        assert why.startswith("skip: ") and len(why) > 16, (where, why)


def _as_the_provider(code: str, dev: DevServer, store_dir: pathlib.Path) -> str:
    for example, ours in [
        ("https://auth.example.com/oauth2/token", f"{dev.url}/oauth2/token"),
        ("https://api.example.com", f"{dev.url}/api"),
        ("https://id.example.com", dev.url),
        ('"my-client-id"', repr(CLIENT_ID)),
        ('"my-client-secret"', repr(CLIENT_SECRET)),
        ('"my-cli"', repr("dev-cli")),
        ('"/var/lib/myapp/tokens"', repr(str(store_dir))),
    ]:
        code = code.replace(example, ours)
    return code


@pytest.mark.parametrize("where,marker,code", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_the_block_runs(where: str, marker: str | None, code: str, dev: DevServer, tmp_path: pathlib.Path) -> None:
    if marker is not None:
        pytest.skip(marker)
    if "dpop=True" in code:
        dev.config(dpop=True)
    token_url = f"{dev.url}/oauth2/token"
    session = dev.control("POST", "session", {"sub": "alice"})
    other = dev.control("POST", "session", {"sub": "bob"})
    namespace: dict[str, Any] = {
        "authcore": authcore,
        "requests": requests,
        "httpx": httpx,
        "logging": logging,
        "token_url": token_url,
        "sts_url": token_url,
        "url": f"{dev.url}/api/items",
        "api_url": f"{dev.url}/api/items",
        "client_id": CLIENT_ID,
        "secret": CLIENT_SECRET,
        "key": "dev-api-key",
        "client": authcore.Client.client_credentials(token_url, CLIENT_ID, CLIENT_SECRET),
        "refresh_token": session["refresh_token"],
        "alices_refresh_token": session["refresh_token"],
        "bobs_refresh_token": other["refresh_token"],
        "metrics": {},
        "status": 401,
        "www_authenticate": 'DPoP error="use_dpop_nonce"',
        "dpop_nonce": "a-nonce-1",
    }
    exec(compile(_as_the_provider(code, dev, tmp_path / "tokens"), where, "exec"), namespace)  # noqa: S102
    # What the block did at the provider is checked, not only that it raised nothing:
    # a response it kept is a success, and the API refused none of its requests.
    response = namespace.get("response")
    if isinstance(response, authcore.Response):
        assert response.status == 200, (where, response.status)
    refused = [e for e in dev.resources() if str(e.get("outcome", "")).lower() != "accepted"]
    assert not refused, (where, refused)
