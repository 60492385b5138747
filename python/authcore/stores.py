"""The token store protocol: what an object passed as ``store=`` must offer.

A store shares one token (and one rotating refresh token) between every process that
uses the same credential. ``authcore.FileStore(directory)`` is the one for a machine,
``authcore.RedisStore(url)`` the one for a fleet; any object with these methods works
too (a database, a secrets service):

- ``load(key) -> bytes | None``: the value last saved for ``key``, or ``None``.
- ``save(key, value) -> None``: keep ``value`` for ``key`` durably, replacing what was
  there. It holds secrets.
- ``lock(key, timeout) -> bool``: take the lock for ``key``, shared with every other
  process, waiting at most ``timeout`` seconds; ``False`` when the time ran out. A
  ``timeout`` of 0 means try once and answer at once (a renewal ahead of expiry does
  that, and keeps its still-valid token if another process holds the lock).
  ``load`` and ``save`` are called only while it is held.
- ``unlock(key) -> None``: release it; called once for every successful ``lock``.
- ``remove(key) -> None`` (optional): forget the value for ``key``. ``Client.revoke()``
  does not call it: it saves a revoked record (a tombstone) through ``save``, so that
  no process sharing the store renews the session from a refresh token it still holds.

The value is a versioned record (authcore's JSON, format 2: the token, its refresh
token, the record's version, the lineage of refresh tokens it replaced, and whether the
session was revoked). Store exactly the bytes given and return exactly the bytes last
saved: never merge, edit or rebuild a record, and keep a revoked record like any other.
That is how clients sharing the store learn which refresh token is the newest (a stale
one is never sent again) and that a session was signed out.

``key`` names the grant, endpoint, client id, whose tokens they are (``user=NAME``, from
``store_key=`` or the ID token's ``sub``) and scopes, never a secret. The methods are
called from whichever thread renews, never concurrently for the same key within one
client. An exception in ``load`` or ``lock`` fails that renewal with a ``StoreError``
for a refresh token that may rotate (client credentials and API keys renew without the
store, which is logged); a failed ``save`` is logged instead, the new token still used,
and the record saved first under the next lock. ``Client.revoke()`` revokes at the
provider even when the store fails, then raises ``StoreError``: call it again once the
store works.
"""

from __future__ import annotations

from typing import Optional, Protocol


class TokenStore(Protocol):
    """An object that can serve as ``store=``."""

    def load(self, key: str) -> Optional[bytes]:
        """The bytes last saved for ``key``, unchanged, or ``None``."""
        ...

    def save(self, key: str, value: bytes) -> None:
        """Keep ``value`` (a versioned record holding secrets) for ``key``, durably and byte for byte."""
        ...

    def lock(self, key: str, timeout: float) -> bool:
        """Take the lock for ``key`` within ``timeout`` seconds; ``False`` when the time ran out."""
        ...

    def unlock(self, key: str) -> None:
        """Release the lock ``lock`` took."""
        ...
