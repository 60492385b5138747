"""What `pip install` gives: the compiled module is private, the package is typed, and
the adapters import without requests or httpx installed."""

from __future__ import annotations

import importlib.metadata
import pathlib
import re
import subprocess
import sys

import authcore


def test_the_package_is_typed_and_re_exports_the_module() -> None:
    package = pathlib.Path(authcore.__file__).parent
    assert (package / "py.typed").exists()
    assert (package / "_authcore.pyi").exists()
    assert authcore.Client.__module__ == "authcore._authcore"
    assert set(authcore.__all__) >= {"Client", "AuthorizationCodeFlow", "RequestsAuth", "HttpxAuth"}
    # One version: the compiled module's (the Cargo workspace's) is the distribution's.
    assert authcore.__version__ == importlib.metadata.version("authcore-client")


def test_the_distribution_is_named_and_carries_its_licences() -> None:
    # `authcore` on PyPI is another project's; this distribution installs the module.
    dist = importlib.metadata.distribution("authcore-client")
    assert dist.metadata["Name"] == "authcore-client"
    names = {pathlib.PurePath(str(f)).name for f in dist.files or []}
    assert {"LICENSE-MIT", "LICENSE-APACHE", "THIRD-PARTY-LICENSES"} <= names
    notices = next(f for f in dist.files or [] if pathlib.PurePath(str(f)).name == "THIRD-PARTY-LICENSES")
    text = pathlib.Path(str(dist.locate_file(notices))).read_text(encoding="utf-8")
    assert "\n    ureq " in text and "\n    pyo3 " in text


def test_exception_hierarchy() -> None:
    kinds = [
        authcore.ConfigError, authcore.TransportError, authcore.TimeoutError, authcore.OAuthError,
        authcore.ApiProblemError, authcore.RateLimitedError, authcore.InvalidResponseError,
        authcore.StateMismatchError, authcore.ReauthenticationRequired,
        authcore.StoreError, authcore.IssuerMismatchError, authcore.CancelledError,
    ]
    assert len(set(kinds)) == 12
    for k in kinds:
        assert issubclass(k, authcore.AuthcoreError) and issubclass(k, Exception)


def test_the_readme_lists_every_exception_class() -> None:
    """python/README.md's "Errors:" paragraph names exactly the exception classes the
    package exports."""
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    paragraph = readme[readme.index("\nErrors: ") :]
    paragraph = paragraph[: paragraph.index("\n\n")]
    named = {n for n in re.findall(r"`(\w+)`", paragraph) if isinstance(getattr(authcore, n, None), type)}
    exported = {
        n for n in authcore.__all__
        if isinstance(getattr(authcore, n), type) and issubclass(getattr(authcore, n), BaseException)
    }
    assert named == exported, f"documented only: {named - exported}; undocumented: {exported - named}"
    assert len(exported) == 13


def test_adapters_import_without_requests_or_httpx() -> None:
    code = (
        "import sys\n"
        "sys.modules['requests'] = None\n"
        "sys.modules['httpx'] = None\n"
        "import authcore\n"
        "c = authcore.Client.personal_access_token('t')\n"
        "print(type(authcore.RequestsAuth(c)).__mro__[1].__name__, "
        "type(authcore.HttpxAuth(c)).__mro__[1].__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["object", "object"]
