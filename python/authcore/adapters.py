"""Auth adapters that plug a :class:`authcore.Client` into ``requests`` and ``httpx``.

Both attach the client's token and, when ``Client.renewal_helps`` says a response is
worth it (a 401 other than an ``insufficient_scope`` challenge, for a renewable
token), report that token as refused and send the request once more with a renewed
one, as ``Client.request`` does. This module imports neither
library: each adapter subclasses the library's auth base class only when that library
is installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator

if TYPE_CHECKING:  # pragma: no cover
    from httpx import Auth as _HttpxBase
    from httpx import ByteStream as _HttpxBytes
    from requests.auth import AuthBase as _RequestsBase

    from ._authcore import Client
else:
    try:  # subclass the library's base only when the library is installed
        from requests.auth import AuthBase as _RequestsBase
    except ImportError:  # pragma: no cover
        _RequestsBase = object
    try:
        from httpx import Auth as _HttpxBase
        from httpx import ByteStream as _HttpxBytes
    except ImportError:  # pragma: no cover
        _HttpxBase = object
        _HttpxBytes = bytes

__all__ = ["HttpxAuth", "RequestsAuth"]


def _token_of(header: str) -> str:
    """The access token inside an ``Authorization`` value such as ``Bearer abc``."""
    return header.split(" ", 1)[1] if " " in header else header


class RequestsAuth(_RequestsBase):
    """``requests`` auth: ``requests.get(url, auth=RequestsAuth(client))``.

    A request whose body is a one-shot stream cannot be sent again; its 401 is returned
    as it came.
    """

    def __init__(self, client: Client) -> None:
        self.client = client

    def __call__(self, request: Any) -> Any:
        header = self.client.authorization_header()
        request.headers["Authorization"] = header
        request.register_hook("response", self._on_response)
        return request

    def _on_response(self, response: Any, **kwargs: Any) -> Any:
        request = response.request
        if getattr(request, "_authcore_retried", False) or not self.client.renewal_helps(
            response.status_code, response.headers.get("WWW-Authenticate")
        ):
            return response
        if not isinstance(request.body, (bytes, str, type(None))):
            # A one-shot stream (a generator, a file) was consumed by the first send.
            return response
        sent = request.headers.get("Authorization", "")
        self.client.invalidate(_token_of(sent))
        retry = request.copy()
        retry.headers["Authorization"] = self.client.authorization_header()
        retry._authcore_retried = True
        # Release the first connection before sending again, as requests' own
        # digest auth does.
        _ = response.content
        response.close()
        new = response.connection.send(retry, **kwargs)
        new.history.append(response)
        new.request = retry
        return new

    def __repr__(self) -> str:
        return f"RequestsAuth({self.client!r})"


class HttpxAuth(_HttpxBase):
    """``httpx`` auth for ``httpx.Client`` and ``httpx.AsyncClient``:
    ``httpx.Client(auth=HttpxAuth(client))``.

    Request bodies are streamed as they are: the adapter never reads a body into
    memory, so a large upload costs what it costs without the adapter. A 401 is
    answered with a renewal and one resend only when the body can be sent again (no
    body, bytes, text, JSON or form data); a request with a one-shot stream body (a
    generator, an iterator, a file) gets its 401 back as it came.

    In async code a cached token is read on the event loop, with no thread hop; only a
    renewal runs on a worker thread, so it never blocks the loop.
    """

    requires_request_body = False

    def __init__(self, client: Client) -> None:
        self.client = client

    def _resend(self, request: Any, response: Any) -> bool:
        """Whether to renew and send again: the rule of ``Client.request``, for a body
        that can be sent twice."""
        return isinstance(request.stream, _HttpxBytes) and self.client.renewal_helps(
            response.status_code, response.headers.get("WWW-Authenticate")
        )

    def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        header = self.client.authorization_header()
        request.headers["Authorization"] = header
        response = yield request
        if self._resend(request, response):
            self.client.invalidate(_token_of(header))
            request.headers["Authorization"] = self.client.authorization_header()
            yield request

    async def _header(self) -> str:
        header = self.client.cached_authorization_header()
        if header is None:
            import anyio.to_thread

            header = await anyio.to_thread.run_sync(self.client.authorization_header)
        return header

    async def async_auth_flow(self, request: Any) -> Any:
        header = await self._header()
        request.headers["Authorization"] = header
        response = yield request
        if self._resend(request, response):
            # Dropping the refused token takes no I/O: done on the loop.
            self.client.invalidate(_token_of(header))
            request.headers["Authorization"] = await self._header()
            yield request

    def __repr__(self) -> str:
        return f"HttpxAuth({self.client!r})"
