"""Token stores from Python: FileStore shared by processes, RedisStore, and an object store."""

from __future__ import annotations

import json
import multiprocessing
import pathlib
import socket
import subprocess
import threading
import time
from typing import Any, Iterator, Optional

import pytest

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, DevServer


def _cc(dev: DevServer, store: object) -> authcore.Client:
    return authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, scopes="campaigns:read",
        store=store,  # type: ignore[arg-type]
    )


def test_clients_sharing_a_file_store_share_one_token(dev: DevServer, tmp_path: pathlib.Path) -> None:
    store = authcore.FileStore(tmp_path / "tokens")
    assert store.directory.endswith("tokens")
    assert "FileStore(" in repr(store)
    a, b = _cc(dev, store), _cc(dev, store)
    assert a.token() == b.token()
    assert dev.token_requests() == 1


def test_an_unusable_directory_is_a_config_error(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(authcore.ConfigError, match="cannot be used"):
        authcore.FileStore(blocker / "sub")


def test_a_store_of_the_wrong_type_is_a_type_error(dev: DevServer) -> None:
    with pytest.raises(TypeError, match="option 'store'"):
        _cc(dev, "not a store")


class DictStore:
    """The store protocol over a dict and a lock, as a user would write it; with failures
    on demand (a full disk: ``fail_save`` or the next ``saves_to_fail`` saves; a store
    that is down: ``unreachable``)."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.mutex = threading.Lock()
        self.calls: list[str] = []
        self.fail_save = False
        self.saves_to_fail = 0
        self.unreachable = False

    def load(self, key: str) -> Optional[bytes]:
        self.calls.append("load")
        return self.values.get(key)

    def save(self, key: str, value: bytes) -> None:
        self.calls.append("save")
        if self.saves_to_fail > 0:
            self.saves_to_fail -= 1
            raise OSError("disk full")
        if self.fail_save:
            raise OSError("disk full")
        self.values[key] = value

    def lock(self, key: str, timeout: float) -> bool:
        self.calls.append("lock")
        if self.unreachable:
            raise ConnectionError("the store is down")
        return self.mutex.acquire(timeout=timeout)

    def unlock(self, key: str) -> None:
        self.calls.append("unlock")
        self.mutex.release()

    def remove(self, key: str) -> None:
        self.calls.append("remove")
        self.values.pop(key, None)

    def record(self) -> dict[str, Any]:
        """The one record stored, as JSON."""
        (value,) = self.values.values()
        result: dict[str, Any] = json.loads(value)
        return result


def test_an_object_following_the_store_protocol(dev: DevServer) -> None:
    store: authcore.TokenStore = DictStore()
    assert isinstance(store, DictStore)
    a, b = _cc(dev, store), _cc(dev, store)
    assert a.token() == b.token()
    assert dev.token_requests() == 1
    assert store.calls == ["lock", "load", "save", "unlock", "lock", "load", "unlock"]
    (key,) = store.values
    assert "client_credentials" in key and CLIENT_SECRET not in key
    assert CLIENT_SECRET not in repr(store.values)


def test_a_failing_save_is_logged_and_the_token_still_used(dev: DevServer) -> None:
    store = DictStore()
    store.fail_save = True
    client = _cc(dev, store)
    token = client.token()
    assert token
    assert client.get(dev.url + "/api/resource").status == 200
    assert store.mutex.acquire(timeout=1), "the lock was released"


def test_a_lock_that_times_out_is_a_timeout_error(dev: DevServer) -> None:
    store = DictStore()
    store.mutex.acquire()
    client = authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, store=store, timeout=0.3
    )
    start = time.monotonic()
    with pytest.raises(authcore.TimeoutError):
        client.token()
    assert time.monotonic() - start < 2.0


def _process_loop(directory: str, base: str, seconds: float) -> int:
    """A separate process: its own client on the shared store, token calls for a while."""
    client = authcore.Client.api_video("dev-api-key", base_url=base, store=authcore.FileStore(directory))
    end = time.monotonic() + seconds
    failures = 0
    for _ in range(100_000):
        if time.monotonic() >= end:
            break
        try:
            client.token()
        except authcore.AuthcoreError:
            failures += 1
        time.sleep(0.005)
    return failures


def test_eight_processes_share_one_rotating_refresh_token(dev: DevServer, tmp_path: pathlib.Path) -> None:
    dev.config(lifetime_secs=2)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(8) as pool:
        failures = pool.starmap_async(
            _process_loop, [(str(tmp_path / "tokens"), dev.url, 6.0)] * 8
        ).get(timeout=120)
    assert failures == [0] * 8
    key = dev.token_requests("apivideo/api_key")
    refresh = dev.token_requests("apivideo/refresh")
    # One key exchange in all: a reused refresh token would be refused (its family
    # revoked) and send a process back to the API key.
    assert key == 1, (key, refresh)
    assert 2 <= refresh <= 6, (key, refresh)
    dev.config(lifetime_secs=3600)


@pytest.fixture()
def redis_url(tmp_path: pathlib.Path) -> Iterator[str]:
    """A redis-server of this test's own on a free loopback port, stopped at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_clients_sharing_redis_share_one_token(dev: DevServer, redis_url: str) -> None:
    a = _cc(dev, authcore.RedisStore(redis_url))
    b = _cc(dev, authcore.RedisStore(redis_url))
    assert a.token() == b.token()
    assert dev.token_requests() == 1


def test_redis_store_urls(redis_url: str, tmp_path: pathlib.Path) -> None:
    with pytest.raises(authcore.ConfigError):
        authcore.RedisStore("not a url")
    authcore.RedisStore("rediss://127.0.0.1:6379")
    with pytest.raises(authcore.ConfigError, match="CA file"):
        authcore.RedisStore("rediss://127.0.0.1:6379", ca_file=tmp_path / "missing.pem")
    with pytest.raises(authcore.ConfigError, match="rediss"):
        authcore.RedisStore(redis_url, ca_file=tmp_path / "missing.pem")
    store = authcore.RedisStore("redis://user:hunter2-password@127.0.0.1:6379/0")
    assert repr(store) == "RedisStore('redis://127.0.0.1:6379/0')", "no user, no password"


def test_redis_sentinel_and_cluster_stores(dev: DevServer) -> None:
    with pytest.raises(authcore.ConfigError):
        authcore.RedisStore.sentinel([], "mymaster")
    with pytest.raises(authcore.ConfigError):
        authcore.RedisStore.cluster([])
    with pytest.raises(authcore.ConfigError):
        authcore.RedisStore("redis+sentinel://127.0.0.1:26379")
    authcore.RedisStore("redis+cluster://127.0.0.1:1,127.0.0.1:2")
    authcore.RedisStore.cluster(["127.0.0.1:1", "redis://127.0.0.1:2"])
    store = authcore.RedisStore.sentinel(
        ["127.0.0.1:1", "redis://127.0.0.1:2"], "redis://:hunter2-password@mymaster/0"
    )
    assert repr(store) == "RedisStore('redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster')"
    cluster = authcore.RedisStore.cluster(["redis://:hunter2-password@127.0.0.1:1", "redis://:hunter2-password@127.0.0.1:2"])
    assert repr(cluster) == "RedisStore('redis+cluster://127.0.0.1:1,127.0.0.1:2')"
    # No sentinel answers: client credentials renew without the store.
    assert _cc(dev, store).token()
    assert dev.token_requests() == 1


def test_an_unreachable_redis_serves_client_credentials_and_refuses_rotation(dev: DevServer) -> None:
    store = authcore.RedisStore("redis://127.0.0.1:1")
    assert _cc(dev, store).token()
    rotating = authcore.Client.refresh_token(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, "rt-never-sent-0123456789", store=store,
        store_key="erin",
    )
    with pytest.raises(authcore.StoreError, match="Redis at 127.0.0.1:1") as info:
        rotating.token()
    assert info.value.kind == "store" and info.value.code == 10
    assert dev.token_requests() == 1


# ---- Refresh-token clients sharing a store: one session per user ----


def _sign_in(dev: DevServer) -> str:
    """One user's sign-in at the provider (authorization code + PKCE; the browser played
    by ``follow_authorize``): its refresh token."""
    rotated: list[str] = []
    flow = authcore.AuthorizationCodeFlow(
        dev.url + "/oauth2/authorize", dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET,
        "http://127.0.0.1/callback", scopes="campaigns:read", on_refresh_token=rotated.append,
    )
    request = flow.authorization_url()
    flow.finish(dev.follow_authorize(request.url), request.state)
    (refresh_token,) = rotated
    return refresh_token


def _rt(dev: DevServer, refresh_token: str, **options: Any) -> authcore.Client:
    return authcore.Client.refresh_token(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, refresh_token,
        revocation_url=dev.url + "/oauth2/revoke", max_retries=0, timeout=5.0, **options,
    )


def test_two_users_sharing_a_file_store_never_see_each_others_tokens(
    dev: DevServer, tmp_path: pathlib.Path
) -> None:
    rt_alice, rt_bob = _sign_in(dev), _sign_in(dev)
    assert rt_alice != rt_bob
    store = authcore.FileStore(tmp_path / "users")
    alice = _rt(dev, rt_alice, store=store, store_key="alice")
    bob = _rt(dev, rt_bob, store=store, store_key="bob")
    assert alice.token() != bob.token()
    assert alice.get(dev.url + "/api/resource").status == 200
    assert bob.get(dev.url + "/api/resource").status == 200
    # Another process of each user (whose refresh token has rotated since) finds that
    # user's session in the store, and only that one.
    assert _rt(dev, rt_alice, store=store, store_key="alice").token() == alice.token()
    assert _rt(dev, rt_bob, store=store, store_key="bob").token() == bob.token()
    assert dev.token_requests("oauth2/refresh_token") == 2


def test_a_refresh_token_client_with_a_store_needs_a_store_key(
    dev: DevServer, tmp_path: pathlib.Path
) -> None:
    store = authcore.FileStore(tmp_path / "users")
    with pytest.raises(authcore.ConfigError, match="store key"):
        _rt(dev, "rt-never-sent-0123456789", store=store)
    with pytest.raises(authcore.ConfigError, match="store key"):
        _rt(dev, "rt-never-sent-0123456789", store=store, store_key=None)
    for bad in ("", "line\nbreak", "x" * 256):
        with pytest.raises(authcore.ConfigError, match="store key"):
            _rt(dev, "rt-never-sent-0123456789", store=store, store_key=bad)
    with pytest.raises(TypeError, match="option 'store_key' must be a str"):
        _rt(dev, "rt-never-sent-0123456789", store=store, store_key=b"alice")
    # Client credentials need none: the credential is the client's own.
    assert _cc(dev, store).token()
    assert dev.token_requests() == 1


def test_a_failed_save_after_a_rotation_does_not_bring_back_a_stale_refresh_token(
    dev: DevServer,
) -> None:
    # The provider revokes a whole token family when a used refresh token comes again:
    # sending the stale one would end in ReauthenticationRequired.
    refresh_token = _sign_in(dev)
    store = DictStore()
    client = _rt(dev, refresh_token, store=store, store_key="carol")
    first = client.token()
    assert store.calls.count("save") == 1
    store.saves_to_fail = 1
    second = client.refresh()  # rotates; its save raises
    assert store.saves_to_fail == 0 and store.calls.count("save") == 2
    assert client.get(dev.url + "/api/resource").status == 200
    third = client.refresh()  # renews with the newest refresh token, not the stored one
    assert len({first, second, third}) == 3
    assert client.get(dev.url + "/api/resource").status == 200
    # Another process on the same store and user adopts the newest token and renews on.
    other = _rt(dev, refresh_token, store=store, store_key="carol")
    assert other.token() == third
    other.refresh()
    assert other.get(dev.url + "/api/resource").status == 200
    assert client.get(dev.url + "/api/resource").status == 200
    assert dev.token_requests("oauth2/refresh_token") == 4
    assert store.record()["revoked"] is False


def test_revoke_with_the_store_unreachable_still_revokes_at_the_provider(dev: DevServer) -> None:
    refresh_token = _sign_in(dev)
    store = DictStore()
    client = _rt(dev, refresh_token, store=store, store_key="dave")
    access_token = client.token()
    before = dev.counters()["revocations"]
    store.unreachable = True
    with pytest.raises(authcore.StoreError):
        client.revoke()
    assert dev.counters()["revocations"] > before
    fixed = authcore.Client.personal_access_token(access_token)
    assert fixed.get(dev.url + "/api/resource").status == 401, "the access token is revoked"
    assert store.record()["revoked"] is False, "the store was not reached"
    store.unreachable = False
    client.revoke()
    assert store.record()["revoked"] is True, "the second call left a tombstone"
    assert "remove" not in store.calls
    # Nobody sharing the store renews the session, and no token request is sent for it.
    requests = dev.token_requests()
    with pytest.raises(authcore.ReauthenticationRequired):
        client.token()
    with pytest.raises(authcore.ReauthenticationRequired):
        _rt(dev, refresh_token, store=store, store_key="dave").token()
    assert dev.token_requests() == requests


def test_a_sign_in_flow_files_its_session_under_the_store_key(
    dev: DevServer, tmp_path: pathlib.Path
) -> None:
    store = authcore.FileStore(tmp_path / "users")
    rotated: list[str] = []
    flow = authcore.AuthorizationCodeFlow(
        dev.url + "/oauth2/authorize", dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET,
        "http://127.0.0.1/callback", scopes="campaigns:read", on_refresh_token=rotated.append,
        store=store, store_key="erin",
    )
    request = flow.authorization_url()
    client = flow.finish(dev.follow_authorize(request.url), request.state)
    token = client.token()
    requests = dev.token_requests()
    (refresh_token,) = rotated
    # Another process of erin's, resuming from that refresh token, finds the session.
    assert _rt(dev, refresh_token, store=store, store_key="erin").token() == token
    assert dev.token_requests() == requests


def test_sign_out_revokes_and_ends_the_session_in_the_store(dev: DevServer) -> None:
    refresh_token = _sign_in(dev)
    store = DictStore()
    client = _rt(dev, refresh_token, store=store, store_key="grace")
    access_token = client.token()
    assert store.record()["revoked"] is False
    revocations = dev.counters()["revocations"]
    signed_out = client.sign_out()
    assert isinstance(signed_out, authcore.SignOut)
    assert signed_out.outcome == "revoked" and signed_out.revoked and signed_out.error is None
    assert repr(signed_out) == "<authcore.SignOut outcome='revoked'>"
    assert dev.counters()["revocations"] > revocations
    fixed = authcore.Client.personal_access_token(access_token)
    assert fixed.get(dev.url + "/api/resource").status == 401, "the access token is revoked"
    assert store.record()["revoked"] is True and "remove" not in store.calls
    # Nobody sharing the store renews the session, and no token request is sent for it.
    requests = dev.token_requests()
    with pytest.raises(authcore.ReauthenticationRequired):
        client.token()
    other = _rt(dev, refresh_token, store=store, store_key="grace")
    with pytest.raises(authcore.ReauthenticationRequired):
        other.token()
    # Nothing left to sign out, in this client or another of the store: nothing is sent.
    revocations = dev.counters()["revocations"]
    assert client.sign_out().outcome == "not_signed_in"
    assert other.sign_out().outcome == "not_signed_in"
    assert dev.counters()["revocations"] == revocations
    assert dev.token_requests() == requests


@pytest.mark.parametrize("revocation_endpoint", [True, False])
def test_sign_out_with_and_without_a_revocation_endpoint(
    dev: DevServer, revocation_endpoint: bool
) -> None:
    dev.config(revocation_endpoint=revocation_endpoint)
    metadata = authcore.discover(dev.url)
    assert (metadata.revocation_endpoint is not None) == revocation_endpoint
    flow = authcore.AuthorizationCodeFlow.from_metadata(
        metadata, CLIENT_ID, CLIENT_SECRET, "http://127.0.0.1/callback", scopes="campaigns:read"
    )
    request = flow.authorization_url()
    client = flow.finish(dev.follow_authorize(request.url), request.state)
    access_token = client.token()
    revocations = dev.counters()["revocations"]
    signed_out = client.sign_out()
    want = "revoked" if revocation_endpoint else "no_revocation_endpoint"
    assert signed_out.outcome == want and signed_out.error is None
    assert signed_out.revoked == revocation_endpoint
    assert (dev.counters()["revocations"] > revocations) == revocation_endpoint
    fixed = authcore.Client.personal_access_token(access_token)
    status = fixed.get(dev.url + "/api/resource").status
    assert status == (401 if revocation_endpoint else 200), "valid at the provider only without revocation"
    requests = dev.token_requests()
    with pytest.raises(authcore.ReauthenticationRequired):
        client.token()
    assert dev.token_requests() == requests, "signed out here: no token request"
    if not revocation_endpoint:
        with pytest.raises(authcore.ConfigError):
            client.revoke()


def test_sign_out_when_the_provider_refuses_returns_its_error(dev: DevServer) -> None:
    refresh_token = _sign_in(dev)
    store = DictStore()
    # Not a revocation endpoint: the token endpoint answers an RFC 7009 request with an
    # OAuth error.
    client = authcore.Client.refresh_token(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, refresh_token,
        revocation_url=dev.url + "/oauth2/token", max_retries=0, timeout=5.0,
        store=store, store_key="heidi",
    )
    access_token = client.token()
    signed_out = client.sign_out()  # not raised: the session is over here all the same
    assert signed_out.outcome == "revocation_failed" and not signed_out.revoked
    assert isinstance(signed_out.error, authcore.AuthcoreError)
    assert access_token not in str(signed_out.error)
    assert type(signed_out.error).__name__ in repr(signed_out)
    assert store.record()["revoked"] is True
    fixed = authcore.Client.personal_access_token(access_token)
    assert fixed.get(dev.url + "/api/resource").status == 200, "not revoked at the provider"
    with pytest.raises(authcore.ReauthenticationRequired):
        client.token()


def test_sign_out_from_inside_a_renewal_raises_at_once(dev: DevServer) -> None:
    refresh_token = _sign_in(dev)
    seen: list[BaseException] = []
    holder: list[authcore.Client] = []

    def on_refresh_token(_: str) -> None:
        try:
            holder[0].sign_out()
        except authcore.AuthcoreError as e:
            seen.append(e)

    client = _rt(dev, refresh_token, on_refresh_token=on_refresh_token)
    holder.append(client)
    token = client.token()
    # A wait for the renewal it runs in would end in a timeout, not a ConfigError.
    assert len(seen) == 1 and isinstance(seen[0], authcore.ConfigError), seen
    assert authcore.Client.personal_access_token(token).get(dev.url + "/api/resource").status == 200
    holder.clear()
    assert client.sign_out().outcome == "revoked"


def test_an_unsaved_refresh_token_is_reported_until_a_renewal_saves_it(dev: DevServer) -> None:
    refresh_token = _sign_in(dev)
    store = DictStore()
    client = _rt(dev, refresh_token, store=store, store_key="ivan")
    client.token()
    assert client.has_unsaved_refresh_token() is False
    store.saves_to_fail = 1
    client.refresh()  # rotates; its save raises
    assert store.saves_to_fail == 0
    assert client.has_unsaved_refresh_token() is True
    client.refresh()  # written first under the lock, then rotated and saved
    assert client.has_unsaved_refresh_token() is False
    cc = authcore.Client.client_credentials(dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET)
    cc.token()
    assert cc.has_unsaved_refresh_token() is False
