"""Auth adapters that plug a :class:`authcore.Client` into ``requests`` and ``httpx``.

Both attach the client's token and, when ``Client.renewal_helps`` says a response is
worth it (a 401 other than an ``insufficient_scope`` challenge, for a renewable
token), report that token as refused and send the request once more with a renewed
one, as ``Client.request`` does. This module imports neither
library: each adapter subclasses the library's auth base class only when that library
is installed.

Tokens stay with their origin. The libraries follow redirects, and a redirect may lead
to another origin (another host, port or scheme, a downgrade to plain HTTP included),
where they drop the ``Authorization`` header. A 401 counts against the token only when
it answers a request that carried this adapter's header to the origin the header was
attached for; any other 401 is handed back as it came: no token is sent there, none is
renewed or reported as refused. ``Client.request`` never meets this case: authcore's
own HTTP layer follows no redirects.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any, Generator, Optional, Tuple

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


_DEFAULT_PORTS = {"http": 80, "https": 443}

_Origin = Tuple[str, str, Optional[int]]


def _origin(url: Any) -> Optional[_Origin]:
    """The origin of a URL (RFC 6454): scheme and host in lower case, and the port with
    the scheme's default filled in (``http://API.example`` and
    ``http://api.example:80/x`` are one origin). ``None`` when it has none (no host, a
    port that is not a number): such a URL matches no origin, not even its own."""
    try:
        parts = urllib.parse.urlsplit(str(url))
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not scheme or not host:
        return None
    return (scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme))


def _carried(request: Any, origin: Optional[_Origin], header: str) -> bool:
    """Whether ``request`` went to ``origin`` with exactly ``header``: only then may its
    401 cost the token a renewal, and only then is it sent again."""
    return (
        origin is not None
        and _origin(request.url) == origin
        and request.headers.get("Authorization") == header
    )


class RequestsAuth(_RequestsBase):
    """``requests`` auth: ``requests.get(url, auth=RequestsAuth(client))``.

    A request whose body is a one-shot stream cannot be sent again; its 401 is returned
    as it came. A 401 from another origin than the request's own (reached by a
    redirect) is returned as it came too, and the token is neither renewed nor sent
    there (see the module's documentation). One renewal and resend per request at most.
    """

    def __init__(self, client: Client) -> None:
        self.client = client

    def __call__(self, request: Any) -> Any:
        header = self.client.authorization_header()
        request.headers["Authorization"] = header
        # requests calls the hook for every hop of a redirect chain, each with that
        # hop's request: the origin and header are bound to this request here.
        origin = _origin(request.url)
        resent = [False]

        def on_response(response: Any, **kwargs: Any) -> Any:
            return self._on_response(response, origin, header, resent, **kwargs)

        request.register_hook("response", on_response)
        return request

    def _on_response(
        self,
        response: Any,
        origin: Optional[_Origin],
        header: str,
        resent: list[bool],
        **kwargs: Any,
    ) -> Any:
        request = response.request
        if (
            resent[0]
            or not _carried(request, origin, header)
            or not self.client.renewal_helps(
                response.status_code, response.headers.get("WWW-Authenticate")
            )
        ):
            return response
        if not isinstance(request.body, (bytes, str, type(None))):
            # A one-shot stream (a generator, a file) was consumed by the first send.
            return response
        resent[0] = True
        self.client.invalidate(_token_of(header))
        retry = request.copy()
        retry.headers["Authorization"] = self.client.authorization_header()
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
    generator, an iterator, a file) gets its 401 back as it came. So does a 401 from
    another origin than the request's own, reached with ``follow_redirects=True``: the
    token is neither renewed nor sent there (see the module's documentation).

    In async code a cached token is read on the event loop, with no thread hop; only a
    renewal runs on a worker thread, so it never blocks the loop.
    """

    requires_request_body = False

    def __init__(self, client: Client) -> None:
        self.client = client

    def _resend(self, request: Any, header: str, response: Any) -> bool:
        """Whether to renew and send again: the rule of ``Client.request``, for a body
        that can be sent twice, when the 401 answers this header at this request's
        origin. httpx hands the flow the last response of a redirect chain; its
        ``request`` is the last hop's."""
        return (
            isinstance(request.stream, _HttpxBytes)
            and _carried(response.request, _origin(request.url), header)
            and self.client.renewal_helps(
                response.status_code, response.headers.get("WWW-Authenticate")
            )
        )

    def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        header = self.client.authorization_header()
        request.headers["Authorization"] = header
        response = yield request
        if self._resend(request, header, response):
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
        if self._resend(request, header, response):
            # Dropping the refused token takes no I/O: done on the loop.
            self.client.invalidate(_token_of(header))
            request.headers["Authorization"] = await self._header()
            yield request

    def __repr__(self) -> str:
        return f"HttpxAuth({self.client!r})"
