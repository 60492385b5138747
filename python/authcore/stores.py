"""The token store protocol: what an object passed as ``store=`` must offer.

A store shares one token (and one rotating refresh token) between every process that
uses the same credential. ``authcore.FileStore(directory)`` is the one for a machine;
any object with these four methods works too (a database, a secrets service):

- ``load(key) -> bytes | None``: the value saved for ``key``, or ``None``.
- ``save(key, value) -> None``: keep ``value`` for ``key`` durably. It holds secrets.
- ``lock(key, timeout) -> bool``: take the lock for ``key``, shared with every other
  process, waiting at most ``timeout`` seconds; ``False`` when the time ran out.
- ``unlock(key) -> None``: release it; called once for every successful ``lock``.
- ``remove(key) -> None`` (optional): forget the value for ``key``; called by
  ``Client.revoke()``, which fails with ``StoreError`` when the store has no ``remove``.

``key`` names the grant, endpoint, client id and scopes, never a secret. The methods are
called from whichever thread renews, never concurrently for the same key within one
client; an exception in ``load``, ``save`` or ``lock`` fails that renewal with a
``StoreError`` (a failed ``save`` is logged instead, and the new token still used).
"""

from __future__ import annotations

from typing import Optional, Protocol


class TokenStore(Protocol):
    """An object that can serve as ``store=``."""

    def load(self, key: str) -> Optional[bytes]: ...

    def save(self, key: str, value: bytes) -> None: ...

    def lock(self, key: str, timeout: float) -> bool: ...

    def unlock(self, key: str) -> None: ...
