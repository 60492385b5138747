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
    from requests.auth import AuthBase as _RequestsBase

    from ._authcore import Client
else:
    try:  # subclass the library's base only when the library is installed
        from requests.auth import AuthBase as _RequestsBase
    except ImportError:  # pragma: no cover
        _RequestsBase = object
    try:
        from httpx import Auth as _HttpxBase
    except ImportError:  # pragma: no cover
        _HttpxBase = object

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

    In async code the token is fetched on a worker thread, so a renewal never blocks the
    event loop.
    """

    requires_request_body = True

    def __init__(self, client: Client) -> None:
        self.client = client

    def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        header = self.client.authorization_header()
        request.headers["Authorization"] = header
        response = yield request
        if self.client.renewal_helps(response.status_code, response.headers.get("WWW-Authenticate")):
            self.client.invalidate(_token_of(header))
            request.headers["Authorization"] = self.client.authorization_header()
            yield request

    async def async_auth_flow(self, request: Any) -> Any:
        import anyio.to_thread

        await request.aread()
        header = await anyio.to_thread.run_sync(self.client.authorization_header)
        request.headers["Authorization"] = header
        response = yield request
        if self.client.renewal_helps(response.status_code, response.headers.get("WWW-Authenticate")):
            await anyio.to_thread.run_sync(self.client.invalidate, _token_of(header))
            header = await anyio.to_thread.run_sync(self.client.authorization_header)
            request.headers["Authorization"] = header
            yield request

    def __repr__(self) -> str:
        return f"HttpxAuth({self.client!r})"
