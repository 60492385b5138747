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

With a DPoP-bound token (RFC 9449) every request the adapter sends gets its own proof,
made from that request's method and URL (``Client.request_headers``), and every answer
is shown to ``Client.dpop_nonce_retry``, which remembers the server's ``DPoP-Nonce``
(from every answer, success included) and says when the server asked for one: then the
request is sent once more with a new proof, if its body can be sent again. A proof
names one request: after a redirect within the origin, a 401 to the next request
(which went with the first request's proof, or, with ``requests``, with none) is
answered by sending that request once more with a proof of its own. The bearer path is
unchanged: a client without DPoP never makes a proof or reads a nonce.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import TYPE_CHECKING, Any, Dict, Generator, Optional, Tuple

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


def _replayable_body(request: Any) -> bool:
    """Whether a ``requests`` request's body can be sent again: bytes, text or none, not
    a one-shot stream (a generator, a file) that the first send consumed."""
    return isinstance(request.body, (bytes, str, type(None)))


def _apply(request: Any, headers: Dict[str, str], had_proof: bool) -> None:
    """Puts ``request_headers``' answer on a request; a proof left from an earlier send
    goes (it named that send)."""
    request.headers["Authorization"] = headers["Authorization"]
    proof = headers.get("DPoP")
    if proof is not None:
        request.headers["DPoP"] = proof
    elif had_proof:
        request.headers.pop("DPoP", None)


class _Sent:
    """What one request (and the requests a redirect or a resend makes of it) was sent
    with, and which resends it has had: each kind at most once (a nonce once more after
    a renewal, as ``Client.request`` does), so at most four sends in all."""

    __slots__ = ("origin", "header", "dpop", "signed", "nonce_retried", "proof_resent", "renewed", "read")

    def __init__(self, request: Any, headers: Dict[str, str]) -> None:
        # The origin the headers were attached for; a 401 from elsewhere is not ours.
        self.origin = _origin(request.url)
        self.header = headers["Authorization"]
        self.dpop = "DPoP" in headers
        # The request the last proof was made for (a redirect's next request is another).
        self.signed: Any = request
        self.nonce_retried = False
        self.proof_resent = False
        self.renewed = False
        # The answers whose nonce was read (httpx hands over a redirect's answers only
        # as the history of the last one).
        self.read: set[int] = set()

    def remember_nonces(self, client: Client, responses: Any) -> None:
        """Remembers the DPoP nonce of each answer not read yet (the redirects httpx
        followed on the way to the answer the flow is given), oldest first."""
        if not self.dpop:
            return
        for response in responses:
            if id(response) in self.read:
                continue
            self.read.add(id(response))
            nonce = response.headers.get("DPoP-Nonce")
            if nonce is not None:
                client.dpop_nonce_retry(str(response.request.url), response.status_code, None, nonce)

    def signed_again(self, request: Any, headers: Dict[str, str]) -> None:
        """``request`` is sent once more with these new headers."""
        self.header = headers["Authorization"]
        self.dpop = "DPoP" in headers
        self.signed = request

    def resend(self, client: Client, request: Any, response: Any, replayable: bool) -> bool:
        """Whether to send ``request`` (the one ``response`` answers) once more, with new
        headers: the server asked for a DPoP nonce; or it refused a request that went
        without a proof of its own (the next request of a redirect); or, as
        ``Client.request`` does, the token (then it is reported refused, and renewed
        for the resend). Only for a request that carried this client's token to its
        origin, with a body that can be sent again. Remembers a DPoP nonce the response
        carries, whatever it answers."""
        carried = _carried(request, self.origin, self.header)
        status = response.status_code
        challenge = response.headers.get("WWW-Authenticate")
        if self.dpop:
            nonce = response.headers.get("DPoP-Nonce")
            if nonce is not None:
                # Without the challenge, the client only remembers the nonce.
                asked = carried and replayable and not self.nonce_retried
                if client.dpop_nonce_retry(str(request.url), status, challenge if asked else None, nonce):
                    self.nonce_retried = True
                    return True
        if not (carried and replayable):
            return False
        if self.dpop and status == 401 and request is not self.signed and not self.proof_resent:
            self.proof_resent = True
            return True
        if not self.renewed and client.renewal_helps(status, challenge):
            self.renewed = True
            self.nonce_retried = False
            client.invalidate(_token_of(self.header))
            return True
        return False


class RequestsAuth(_RequestsBase):
    """``requests`` auth: ``requests.get(url, auth=RequestsAuth(client))``.

    A request whose body is a one-shot stream cannot be sent again; its 401 is returned
    as it came. A 401 from another origin than the request's own (reached by a
    redirect) is returned as it came too, and the token is neither renewed nor sent
    there (see the module's documentation). One renewal and resend per request at most.

    With a DPoP-bound token each request carries a proof for its own method and URL;
    a server's nonce request is answered with one resend more (replayable bodies only);
    a redirect's next request goes without the proof, which named the first, and is
    sent once more with its own if the server refuses it.
    """

    def __init__(self, client: Client) -> None:
        self.client = client

    def _headers(self, method: str, url: str) -> Dict[str, str]:
        """The headers for one request: the bearer header as it always was, or for a
        DPoP token the header and a proof, both from one token."""
        header = self.client.authorization_header()
        if not header.startswith("DPoP "):
            return {"Authorization": header}
        return self.client.request_headers(method, url)

    def __call__(self, request: Any) -> Any:
        headers = self._headers(request.method, request.url)
        _apply(request, headers, False)
        # requests calls the hook for every hop of a redirect chain, each with that
        # hop's request: the origin and header are bound to this request here.
        sent = _Sent(request, headers)

        def on_response(response: Any, **kwargs: Any) -> Any:
            return self._on_response(response, sent, **kwargs)

        request.register_hook("response", on_response)
        return request

    def _on_response(self, response: Any, sent: _Sent, **kwargs: Any) -> Any:
        request = response.request
        # The request requests sent for this hop: it makes a redirect's next request
        # from a copy of this very object, whatever was resent meanwhile.
        hop = request
        resends = 0
        while resends < 4 and sent.resend(self.client, request, response, _replayable_body(request)):
            resends += 1
            retry = request.copy()
            headers = self._headers(retry.method, retry.url)
            _apply(retry, headers, sent.dpop)
            sent.signed_again(retry, headers)
            # Release the first connection before sending again, as requests' own
            # digest auth does.
            _ = response.content
            response.close()
            new = response.connection.send(retry, **kwargs)
            new.history = [*response.history, response]
            new.request = retry
            response, request = new, retry
        if response.is_redirect:
            # The redirect's next request goes with the header last sent (not a token
            # the server refused; requests drops it at another origin), and without a
            # proof, which names one request (and goes nowhere else).
            if request is not hop and "Authorization" in request.headers:
                hop.headers["Authorization"] = request.headers["Authorization"]
            hop.headers.pop("DPoP", None)
        return response

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

    With a DPoP-bound token each request carries a proof for its own method and URL,
    and a server's nonce request is answered with one resend (same rule for bodies).
    httpx copies a request's headers, the proof included, to the requests of a
    redirect; within the origin, a 401 to such a request is answered by sending that
    request once more with a proof of its own. A proof carries no token and names one
    request, so a server it reaches by a redirect to another origin cannot use it, but
    it does learn the client's public key and the URL it came from: with redirects on,
    add :func:`drop_foreign_dpop_proof` (:func:`adrop_foreign_dpop_proof` for
    ``AsyncClient``) to the client's request event hooks, and it goes nowhere else.

    In async code a cached token is read (and a proof signed) on the event loop, with
    no thread hop; only a renewal runs on a worker thread, so it never blocks the loop.
    """

    requires_request_body = False

    def __init__(self, client: Client) -> None:
        self.client = client

    def _headers(self, method: str, url: str) -> Dict[str, str]:
        """The headers for one request: the bearer header as it always was, or for a
        DPoP token the header and a proof, both from one token."""
        header = self.client.authorization_header()
        if not header.startswith("DPoP "):
            return {"Authorization": header}
        return self.client.request_headers(method, url)

    def _next(self, request: Any, response: Any, sent: _Sent) -> Optional[Any]:
        """The request to send once more after ``response``, or None. A bearer request
        is sent again as it was first sent (through its redirects again); a DPoP
        request is the one the response answers, the last of a redirect chain, which a
        new proof must name. httpx hands the flow the last response of a chain; its
        ``request`` is the last hop's."""
        sent.remember_nonces(self.client, response.history)
        sent.read.add(id(response))
        target = response.request if sent.dpop else request
        if sent.resend(self.client, response.request, response, isinstance(target.stream, _HttpxBytes)):
            return target
        return None

    def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        headers = self._headers(request.method, str(request.url))
        _apply(request, headers, False)
        sent = _Sent(request, headers)
        response = yield request
        for _ in range(4):
            target = self._next(request, response, sent)
            if target is None:
                return
            headers = self._headers(target.method, str(target.url))
            _apply(target, headers, sent.dpop)
            sent.signed_again(target, headers)
            response = yield target

    async def _header(self) -> str:
        header = self.client.cached_authorization_header()
        if header is None:
            import anyio.to_thread

            header = await anyio.to_thread.run_sync(self.client.authorization_header)
        return header

    async def _aheaders(self, method: str, url: str) -> Dict[str, str]:
        """``_headers`` for the event loop: from the cached token on the loop, from a
        renewal on a worker thread."""
        header = await self._header()
        if not header.startswith("DPoP "):
            return {"Authorization": header}
        headers = self.client.cached_request_headers(method, url)
        if headers is None:
            import anyio.to_thread

            headers = await anyio.to_thread.run_sync(self.client.request_headers, method, url)
        return headers

    async def async_auth_flow(self, request: Any) -> Any:
        headers = await self._aheaders(request.method, str(request.url))
        _apply(request, headers, False)
        sent = _Sent(request, headers)
        response = yield request
        for _ in range(4):
            # Dropping a refused token and remembering a nonce take no I/O: on the loop.
            target = self._next(request, response, sent)
            if target is None:
                return
            headers = await self._aheaders(target.method, str(target.url))
            _apply(target, headers, sent.dpop)
            sent.signed_again(target, headers)
            response = yield target

    def __repr__(self) -> str:
        return f"HttpxAuth({self.client!r})"


def _proof_origin(proof: str) -> Optional[_Origin]:
    """The origin of the URL a DPoP proof names (its ``htu``), or None if unreadable."""
    try:
        payload = proof.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return _origin(str(claims["htu"]))
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def drop_foreign_dpop_proof(request: Any) -> None:
    """An httpx request event hook: removes a DPoP proof that names another origin than
    the request's (httpx copies a request's headers, the proof included, to the
    requests of a redirect, and drops only ``Authorization`` at another origin).
    ``httpx.Client(auth=HttpxAuth(client), event_hooks={"request": [drop_foreign_dpop_proof]})``.
    """
    proof = request.headers.get("DPoP")
    if proof is not None and _proof_origin(proof) != _origin(str(request.url)):
        del request.headers["DPoP"]


async def adrop_foreign_dpop_proof(request: Any) -> None:
    """:func:`drop_foreign_dpop_proof` for ``httpx.AsyncClient``'s event hooks."""
    drop_foreign_dpop_proof(request)
