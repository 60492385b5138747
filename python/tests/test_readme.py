"""The README's Python blocks, run: every python block of README.md and python/README.md
runs against the development provider, so a line that is no longer true fails here.

Blocks are found as CommonMark finds fenced code (three or more backticks or tildes,
indented or not); a block's kind is its info string's first word. A block that needs
what a test cannot have is marked on the line before it with
``<!-- readme-test: skip: WHY -->``. The example names in the blocks stand for the
provider's: its URLs (``https://auth.example.com/oauth2/token``, ``https://api.example.com``,
``https://id.example.com``), its clients (``my-client-id``/``my-client-secret`` are
``dev-client``/``dev-secret``, ``my-cli`` is the public ``dev-cli``) and a store
directory of the test's own.

A block may use a name it does not define only if its README defines it: in its
preamble (the block marked ``<!-- readme-test: preamble -->``, which says what the
shorter examples take as given) or in an earlier block. The test gives such names values
of the same kind (the provider's URLs, a client of its, a live refresh token), and
nothing else: a block that uses a name its README never defined fails, before it runs.
"""

from __future__ import annotations

import builtins
import logging
import pathlib
import re
import symtable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, ROOT, DevServer

_MARKER = re.compile(r"<!-- readme-test: (.*) -->")
_FENCE = re.compile(r"^([ \t]*)(`{3,}|~{3,})(.*)$")
_BUILTINS = frozenset(dir(builtins))


@dataclass(frozen=True)
class Block:
    """A python block: where it is, its marker, its code, and the names it may use
    without defining them (its README's preamble's and its earlier blocks')."""

    where: str
    marker: str | None
    code: str
    given: frozenset[str]


def _fenced(text: str) -> list[tuple[int, str, str | None, str]]:
    """(line, kind, marker, code) for every fenced block of a Markdown text."""
    found: list[tuple[int, str, str | None, str]] = []
    lines = text.splitlines()
    previous = ""
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening and not (opening[2][0] == "`" and "`" in opening[3]):
            indent, fence, info = len(opening[1]), opening[2], opening[3].strip()
            end = i + 1
            while end < len(lines) and not (
                lines[end].strip().startswith(fence) and set(lines[end].strip()) == {fence[0]}
            ):
                end += 1
            assert end < len(lines), f"the fence on line {i + 1} is never closed"
            body = [line[min(indent, len(line) - len(line.lstrip(" "))) :] for line in lines[i + 1 : end]]
            marker = _MARKER.fullmatch(previous.strip())
            kind = info.split()[0] if info else ""
            found.append((i + 1, kind, marker[1] if marker else None, "\n".join(body)))
            previous = lines[end]
            i = end + 1
            continue
        if lines[i].strip():
            previous = lines[i]
        i += 1
    return found


def names(code: str, where: str) -> tuple[set[str], set[str]]:
    """(free, defined): the names ``code`` reads that neither it nor Python's builtins
    define, and the names it defines at its top level (for the blocks after it)."""
    top = symtable.symtable(code, where, "exec")
    defined = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    free: set[str] = set()

    def walk(table: symtable.SymbolTable) -> None:
        for symbol in table.get_symbols():
            reads_global = symbol.is_referenced() and (table is top or symbol.is_global())
            if reads_global and symbol.get_name() not in defined:
                free.add(symbol.get_name())
        for child in table.get_children():
            walk(child)

    walk(top)
    return free - _BUILTINS, defined


def _blocks() -> list[Block]:
    """Every python block of the two READMEs, in order."""
    found: list[Block] = []
    for readme in (ROOT / "README.md", ROOT / "python" / "README.md"):
        fenced = [f for f in _fenced(readme.read_text(encoding="utf-8")) if f[1] == "python"]
        where = str(readme.relative_to(ROOT))
        preambles = [code for _, _, marker, code in fenced if marker == "preamble"]
        assert len(preambles) <= 1, f"{where}: one preamble at most"
        given: set[str] = set()
        for code in preambles:
            given |= names(code, where)[1]
        for line, _, marker, code in fenced:
            found.append(Block(f"{where}:{line}", marker, code, frozenset(given)))
            given |= names(code, where)[1]
    return found


BLOCKS = _blocks()


def test_the_readmes_have_python_blocks_and_few_are_skipped() -> None:
    skipped = [(b.where, b.marker) for b in BLOCKS if b.marker is not None and b.marker.startswith("skip: ")]
    assert len(BLOCKS) >= 10, BLOCKS
    assert len(skipped) <= 2, skipped
    for where, why in skipped:
        assert len(why) > 16, (where, why)
    for block in BLOCKS:
        assert block.marker is None or block.marker == "preamble" or block.marker.startswith("skip: "), block
    assert sum(b.marker == "preamble" for b in BLOCKS) == 2, "a preamble in each README"


def test_blocks_are_found_as_commonmark_finds_them() -> None:
    text = "\n".join(
        [
            "```python",
            "a = 1",
            "```",
            "   ~~~~python",
            "   b = 2",
            "   ~~~",
            "   ```",
            "   ~~~~",
            "<!-- readme-test: preamble -->",
            "```py",
            "c = 3",
            "```",
            "``` text with `backticks` is no fence",
        ]
    )
    assert _fenced(text) == [
        (1, "python", None, "a = 1"),
        (4, "python", None, "b = 2\n~~~\n```"),
        (10, "py", "preamble", "c = 3"),
    ]
    with pytest.raises(AssertionError, match="never closed"):
        _fenced("```python\nx = 1\n")


def test_a_block_that_uses_a_name_its_readme_never_defined_is_caught() -> None:
    free, defined = names("import os\nclient = make(token_url)\nprint([x for x in items])\ndef f():\n    return y\n", "t")
    assert free == {"make", "token_url", "items", "y"}
    assert defined == {"os", "client", "f"}


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


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_the_block_runs(block: Block, dev: DevServer, tmp_path: pathlib.Path) -> None:
    if block.marker is not None and block.marker.startswith("skip: "):
        pytest.skip(block.marker)
    free, _ = names(block.code, block.where)
    undefined = free - block.given
    assert not undefined, f"{block.where} uses {sorted(undefined)}, which its README never defines"
    if "dpop=True" in block.code:
        dev.config(dpop=True)
    token_url = f"{dev.url}/oauth2/token"
    session = dev.control("POST", "session", {"sub": "alice"})
    other = dev.control("POST", "session", {"sub": "bob"})
    # Values for the names the README defines in its preamble and earlier blocks.
    stand_ins: dict[str, Any] = {
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
    }
    missing = free - stand_ins.keys()
    assert not missing, f"{block.where}: the test has no value for {sorted(missing)}"
    namespace = {name: value for name, value in stand_ins.items() if name in block.given}
    exec(compile(_as_the_provider(block.code, dev, tmp_path / "tokens"), block.where, "exec"), namespace)  # noqa: S102
    # What the block did at the provider is checked, not only that it raised nothing:
    # a response it kept is a success, and the API refused none of its requests.
    response = namespace.get("response")
    if isinstance(response, authcore.Response):
        assert response.status == 200, (block.where, response.status)
    refused = [e for e in dev.resources() if str(e.get("outcome", "")).lower() != "accepted"]
    assert not refused, (block.where, refused)
