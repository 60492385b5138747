"""DPoP (RFC 9449) in Python: ``DpopKey``, the ``dpop``/``dpop_key``/``dpop_allow_bearer``
keywords, the client's headers for other HTTP stacks, and the requests and httpx
adapters against the development provider's DPoP mode (proofs verified, nonces
demanded and rotated, replays refused, Bearer downgrades)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterator, Optional

import httpx
import pytest
import requests

import authcore
from conftest import CLIENT_ID, CLIENT_SECRET, DevServer

ALGORITHMS = ["ES256", "EdDSA", "RS256"]


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_of(text: str) -> int:
    return int.from_bytes(_b64d(text), "big")


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638, computed here independently of the library."""
    members = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
    canonical = json.dumps({m: jwk[m] for m in members[jwk["kty"]]}, separators=(",", ":"), sort_keys=True)
    return _b64e(hashlib.sha256(canonical.encode()).digest())


def _jws(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A proof's header and claims (its signature is the provider's to check)."""
    header, claims, signature = proof.split(".")
    assert signature
    return json.loads(_b64d(header)), json.loads(_b64d(claims))


# A minimal DER writer, to build PEM keys here rather than trust the library's reader
# with its own output.
def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _seq(*parts: bytes) -> bytes:
    return _der(0x30, b"".join(parts))


def _int(v: int) -> bytes:
    return _der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def _octets(b: bytes) -> bytes:
    return _der(0x04, b)


_RSA = bytes.fromhex("06092a864886f70d010101") + bytes.fromhex("0500")
_EC = bytes.fromhex("06072a8648ce3d0201")
_P256 = bytes.fromhex("06082a8648ce3d030107")
_ED25519 = bytes.fromhex("06032b6570")


def _pem(label: str, der: bytes) -> str:
    text = base64.b64encode(der).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def _pems(jwk: dict[str, Any]) -> list[str]:
    """Every PEM form of a private JWK that DPoP keys are read from."""
    if jwk["kty"] == "EC":
        d = _b64d(jwk["d"])
        point = b"\x00\x04" + _b64d(jwk["x"]) + _b64d(jwk["y"])
        sec1 = _seq(_int(1), _octets(d), _der(0xA0, _P256), _der(0xA1, _der(0x03, point)))
        inner = _seq(_int(1), _octets(d), _der(0xA1, _der(0x03, point)))
        pkcs8 = _seq(_int(0), _seq(_EC, _P256), _octets(inner))
        return [_pem("EC PRIVATE KEY", sec1), _pem("PRIVATE KEY", pkcs8)]
    if jwk["kty"] == "OKP":
        pkcs8 = _seq(_int(0), _seq(_ED25519), _octets(_octets(_b64d(jwk["d"]))))
        return [_pem("PRIVATE KEY", pkcs8)]
    n, e, exp, p, q = (_int_of(jwk[m]) for m in ("n", "e", "d", "p", "q"))
    values = (0, n, e, exp, p, q, exp % (p - 1), exp % (q - 1), pow(q, -1, p))
    pkcs1 = _seq(*(_int(v) for v in values))
    pkcs8 = _seq(_int(0), _seq(_RSA), _octets(pkcs1))
    return [_pem("RSA PRIVATE KEY", pkcs1), _pem("PRIVATE KEY", pkcs8)]


@pytest.fixture(scope="module")
def keys() -> dict[str, authcore.DpopKey]:
    """One generated key per algorithm (RSA keys take a moment: made once)."""
    return {alg: authcore.DpopKey.generate(alg) for alg in ALGORITHMS}


# --- Keys -------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_generated_key_shows_its_public_half_only(keys: dict[str, authcore.DpopKey], alg: str) -> None:
    key = keys[alg]
    assert key.algorithm == alg
    public = json.loads(key.public_jwk)
    assert public["kty"] == {"ES256": "EC", "EdDSA": "OKP", "RS256": "RSA"}[alg]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(public), "no private member"
    assert key.thumbprint == _thumbprint(public)
    private = json.loads(key.private_jwk())
    assert {k: v for k, v in private.items() if k in public} == public
    text = repr(key)
    assert text == f"<authcore.DpopKey algorithm='{alg}' thumbprint='{key.thumbprint}'>"
    for member in ("d", "p", "q"):
        if member in private:
            assert private[member] not in text and private[member] not in key.public_jwk
    assert str(key) == text


def test_keys_are_new_each_time_and_algorithm_names_are_case_insensitive() -> None:
    a, b = authcore.DpopKey.generate(), authcore.DpopKey.generate("es256")
    assert a.algorithm == b.algorithm == "ES256" and a.thumbprint != b.thumbprint
    assert authcore.DpopKey.generate("eddsa").algorithm == "EdDSA"
    with pytest.raises(authcore.ConfigError, match="unsupported DPoP algorithm"):
        authcore.DpopKey.generate("HS256")
    with pytest.raises(TypeError):
        authcore.DpopKey.generate(256)  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_key_survives_its_jwk_and_its_pem_forms(keys: dict[str, authcore.DpopKey], alg: str) -> None:
    key = keys[alg]
    jwk = key.private_jwk()
    again = authcore.DpopKey.from_jwk(jwk)
    assert (again.algorithm, again.thumbprint) == (alg, key.thumbprint)
    for pem in _pems(json.loads(jwk)):
        read = authcore.DpopKey.from_pem(pem)
        assert (read.algorithm, read.thumbprint) == (alg, key.thumbprint), pem.splitlines()[0]


def test_the_rfc_8037_ed25519_key_has_its_published_thumbprint() -> None:
    # RFC 8037 appendix A.1 (the key) and A.3 (its RFC 7638 thumbprint).
    jwk = {"kty": "OKP", "crv": "Ed25519", "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
           "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    expected = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert authcore.DpopKey.from_jwk(json.dumps(jwk)).thumbprint == expected
    (pem,) = _pems(jwk)
    assert authcore.DpopKey.from_pem(pem).thumbprint == expected


def test_unreadable_keys_are_config_errors_that_never_quote_them(keys: dict[str, authcore.DpopKey]) -> None:
    private = json.loads(keys["ES256"].private_jwk())
    mismatched = dict(private, x=json.loads(keys["EdDSA"].private_jwk())["x"])
    wrong_x = dict(json.loads(keys["EdDSA"].private_jwk()), x=private["x"])
    bad_jwks = [
        "", "x", "{}", "[]", "null", "{not json",
        json.dumps({k: v for k, v in private.items() if k != "d"}),  # public only
        json.dumps(mismatched), json.dumps(wrong_x),
        json.dumps({"kty": "oct", "k": "c2VjcmV0", "d": private["d"]}),
        json.dumps({**private, "crv": "P-384"}),
    ]
    for text in bad_jwks:
        with pytest.raises(authcore.ConfigError) as e:
            authcore.DpopKey.from_jwk(text)
        assert private["d"] not in str(e.value) and private["d"] not in repr(e.value)
    (sec1, pkcs8) = _pems(private)
    for text in ["", "x", private["d"], sec1.replace("EC PRIVATE KEY", "PUBLIC KEY"),
                 sec1[:60] + sec1[80:], pkcs8.replace("M", "N", 3), "-----BEGIN PRIVATE KEY-----\n"]:
        with pytest.raises(authcore.ConfigError) as e:
            authcore.DpopKey.from_pem(text)
        assert private["d"] not in str(e.value)
    for call in (authcore.DpopKey.from_pem, authcore.DpopKey.from_jwk):
        with pytest.raises(TypeError):
            call(sec1.encode())  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            call(None)  # type: ignore[arg-type]


def test_a_key_is_not_pickled() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(authcore.DpopKey.generate())


# --- Keywords ---------------------------------------------------------------------


def _constructors(url: str) -> dict[str, Callable[..., Any]]:
    """Every OAuth constructor, each taking only keyword options."""
    token = url + "/oauth2/token"
    return {
        "client_credentials": lambda **o: authcore.Client.client_credentials(token, CLIENT_ID, CLIENT_SECRET, **o),
        "vibe": lambda **o: authcore.Client.vibe(CLIENT_ID, CLIENT_SECRET, token_url=token, **o),
        "refresh_token": lambda **o: authcore.Client.refresh_token(token, CLIENT_ID, CLIENT_SECRET, "rt-1", **o),
        "code": lambda **o: authcore.AuthorizationCodeFlow(
            url + "/oauth2/authorize", token, CLIENT_ID, CLIENT_SECRET, "http://127.0.0.1/cb", **o),
        "viewneo": lambda **o: authcore.AuthorizationCodeFlow.viewneo(
            CLIENT_ID, CLIENT_SECRET, "http://127.0.0.1/cb", base_url=url, **o),
        "device": lambda **o: authcore.DeviceFlow(url + "/oauth2/device", token, CLIENT_ID, **o),
    }


def _metadata_constructors(m: authcore.Metadata) -> dict[str, Callable[..., Any]]:
    return {
        "client_credentials_from_metadata": lambda **o: authcore.Client.client_credentials_from_metadata(
            m, CLIENT_ID, CLIENT_SECRET, **o),
        "code_from_metadata": lambda **o: authcore.AuthorizationCodeFlow.from_metadata(
            m, CLIENT_ID, CLIENT_SECRET, "http://127.0.0.1/cb", **o),
        "device_from_metadata": lambda **o: authcore.DeviceFlow.from_metadata(m, CLIENT_ID, **o),
    }


def test_every_oauth_constructor_takes_the_dpop_keywords(
    dev: DevServer, keys: dict[str, authcore.DpopKey]
) -> None:
    key = keys["EdDSA"]
    makers = {**_constructors(dev.url), **_metadata_constructors(authcore.discover(dev.url))}
    good: list[dict[str, Any]] = [
        {"dpop": True}, {"dpop": "EdDSA"}, {"dpop": "rs256"}, {"dpop": False}, {"dpop": None},
        {"dpop_key": key}, {"dpop_key": key.private_jwk()}, {"dpop_key": _pems(json.loads(key.private_jwk()))[0]},
        {"dpop": "EdDSA", "dpop_key": key, "dpop_allow_bearer": True}, {"dpop": True, "dpop_allow_bearer": False},
        {"dpop_allow_bearer": False},
    ]
    for name, make in makers.items():
        for options in good:
            made = make(**options)
            if isinstance(made, authcore.Client):
                on = bool(options.get("dpop") or options.get("dpop_key"))
                assert (made.dpop_thumbprint is not None) == on, (name, options)
                if "dpop_key" in options:
                    assert made.dpop_thumbprint == key.thumbprint, (name, options)
    # Not on what is not an OAuth grant.
    with pytest.raises(TypeError, match="unexpected option 'dpop'"):
        authcore.Client.api_video("key", dpop=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected option 'dpop_key'"):
        authcore.Client.personal_access_token("token", dpop_key=key)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected option 'dpop'"):
        authcore.discover(dev.url, dpop=True)  # type: ignore[call-arg]


def test_wrong_dpop_keywords_raise_before_anything_is_made(
    dev: DevServer, keys: dict[str, authcore.DpopKey]
) -> None:
    private = json.loads(keys["ES256"].private_jwk())
    cases: list[tuple[dict[str, Any], type[BaseException], str]] = [
        ({"dpop": 1}, TypeError, "'dpop' must be a bool or an algorithm name"),
        ({"dpop": b"ES256"}, TypeError, "'dpop' must be"),
        ({"dpop_key": 42}, TypeError, "'dpop_key' must be a DpopKey"),
        ({"dpop_key": keys["ES256"].private_jwk().encode()}, TypeError, "'dpop_key' must be"),
        ({"dpop": True, "dpop_allow_bearer": "yes"}, TypeError, "'dpop_allow_bearer' must be a bool"),
        ({"dpop_allow_bearer": True}, TypeError, "'dpop_allow_bearer' needs 'dpop' or 'dpop_key'"),
        ({"dpop": False, "dpop_key": keys["ES256"]}, ValueError, "dpop=False contradicts 'dpop_key'"),
        ({"dpop": "HS256"}, authcore.ConfigError, "unsupported DPoP algorithm"),
        ({"dpop_key": "not a key " + private["d"]}, authcore.ConfigError, "PEM private key or a private JWK"),
        ({"dpop_key": json.dumps({**private, "x": private["y"]})}, authcore.ConfigError, "DPoP key could not be read"),
        ({"dpop": "RS256", "dpop_key": keys["ES256"]}, authcore.ConfigError, "asks for RS256 but 'dpop_key' is an ES256 key"),
        # A type error elsewhere wins over making a key.
        ({"dpop": "RS256", "timeout": "soon"}, TypeError, "timeout"),
    ]
    for name, make in _constructors(dev.url).items():
        for options, error, message in cases:
            with pytest.raises(error, match=message) as e:
                make(**options)
            assert private["d"] not in str(e.value), (name, options)
    assert dev.token_requests() == 0


def test_a_bearer_client_has_no_dpop(cc_client: authcore.Client, dev: DevServer) -> None:
    url = dev.url + "/api/resource"
    assert cc_client.dpop_thumbprint is None
    assert cc_client.dpop_proof("GET", url) is None
    headers = cc_client.request_headers("GET", url)
    assert headers == {"Authorization": cc_client.authorization_header()}
    assert cc_client.cached_request_headers("GET", url) == headers
    assert cc_client.stats().dpop_nonce_retries == 0
    assert cc_client.stats().as_dict()["dpop_nonce_retries"] == 0


# --- Against the provider's DPoP mode ----------------------------------------------


def _dpop_client(dev: DevServer, **options: Any) -> authcore.Client:
    options.setdefault("dpop", True)
    return authcore.Client.client_credentials(
        dev.url + "/oauth2/token", CLIENT_ID, CLIENT_SECRET, scopes="campaigns:read",
        failure_backoff=(0.05, 0.5), **options,
    )


def _urlopen(url: str, headers: dict[str, str], method: str = "GET") -> int:
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback only)
            return int(response.status)
    except urllib.error.HTTPError as e:
        e.close()
        return int(e.code)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_client_credentials_get_a_dpop_token_and_use_it(dev: DevServer, alg: str) -> None:
    dev.config(dpop=True, dpop_required=True)
    client = _dpop_client(dev, dpop=alg)
    thumbprint = client.dpop_thumbprint
    assert thumbprint is not None
    r = client.get(dev.url + "/api/resource?page=2")
    assert r.status == 200 and r.json()["cnf"] == {"jkt": thumbprint}
    assert client.token_info().token_type == "DPoP"
    assert client.authorization_header() == "DPoP " + client.token()
    assert r.status == client.post(dev.url + "/api/resource", json={"a": 1}).status == 200
    c = dev.counters()
    assert c["token_requests"] == 1 and c["dpop_tokens_issued"] == 1
    assert c["dpop_proofs_accepted"] == 3 and c["dpop_proofs_rejected"] == 0


def test_a_key_given_is_the_key_tokens_are_bound_to(dev: DevServer, keys: dict[str, authcore.DpopKey]) -> None:
    dev.config(dpop=True, dpop_required=True)
    for given in (keys["RS256"], keys["EdDSA"].private_jwk(), _pems(json.loads(keys["ES256"].private_jwk()))[1]):
        client = _dpop_client(dev, dpop_key=given)
        r = client.get(dev.url + "/api/resource")
        assert r.status == 200 and r.json()["cnf"]["jkt"] == client.dpop_thumbprint
    assert [client.dpop_thumbprint] == [keys["ES256"].thumbprint]


def test_headers_for_another_http_stack_carry_a_proof_for_one_request(dev: DevServer) -> None:
    dev.config(dpop=True)
    client = _dpop_client(dev)
    url = dev.url + "/api/replay?x=1#frag"
    headers = client.request_headers("get", url)
    assert set(headers) == {"Authorization", "DPoP"}
    access_token = client.token()
    assert headers["Authorization"] == "DPoP " + access_token
    header, claims = _jws(headers["DPoP"])
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    assert _thumbprint(header["jwk"]) == client.dpop_thumbprint and "d" not in header["jwk"]
    assert claims["htm"] == "GET" and claims["htu"] == dev.url + "/api/replay"
    assert claims["ath"] == _b64e(hashlib.sha256(access_token.encode()).digest())
    assert "nonce" not in claims
    # Accepted once; the same proof again is a replay.
    plain = dev.url + "/api/replay?x=1"
    assert [_urlopen(plain, headers), _urlopen(plain, headers)] == [200, 401]
    assert dev.counters()["dpop_replays_rejected"] == 1
    # The token without a proof is refused; a proof of its own makes it good again.
    assert _urlopen(plain, {"Authorization": headers["Authorization"]}) == 401
    proof = client.dpop_proof("GET", plain)
    assert proof is not None
    assert _urlopen(plain, {"Authorization": headers["Authorization"], "DPoP": proof}) == 200
    # A proof names its method: the one for POST is refused on a GET.
    post = client.request_headers("POST", plain)
    assert _urlopen(plain, post) == 401 and _urlopen(plain, client.request_headers("POST", plain), "POST") == 200
    # No two proofs share a jti; the cached variant gives the same token.
    jtis = {_jws(client.request_headers("GET", plain)["DPoP"])[1]["jti"] for _ in range(50)}
    assert len(jtis) == 50
    cached = client.cached_request_headers("GET", plain)
    assert cached is not None and cached["Authorization"] == headers["Authorization"]
    assert dev.token_requests() == 1


def test_dpop_nonce_retry_remembers_nonces_and_says_when_to_resend(dev: DevServer) -> None:
    dev.config(dpop=True, dpop_rs_nonce=True)
    client = _dpop_client(dev)
    url = dev.url + "/api/resource"
    headers = client.request_headers("GET", url)
    r = requests.get(url, headers=headers, timeout=10)
    assert r.status_code == 401 and "use_dpop_nonce" in r.headers["WWW-Authenticate"]
    nonce = r.headers["DPoP-Nonce"]
    assert client.dpop_nonce_retry(url, 401, r.headers["WWW-Authenticate"], nonce)
    assert client.stats().dpop_nonce_retries == 1
    again = client.request_headers("GET", url)
    assert _jws(again["DPoP"])[1]["nonce"] == nonce
    r = requests.get(url, headers=again, timeout=10)
    assert r.status_code == 200
    # Without a nonce there is nothing to do; other answers are only remembered.
    assert not client.dpop_nonce_retry(url, 401, r.headers.get("WWW-Authenticate"), None)
    assert not client.dpop_nonce_retry(url, 200, None, "a-new-nonce")
    assert _jws(client.request_headers("GET", url)["DPoP"])[1]["nonce"] == "a-new-nonce"
    assert not client.dpop_nonce_retry(url, 401, 'DPoP error="invalid_token"', "n")
    # Nonces are per origin: another origin's proof carries none of this one's.
    other = url.replace("127.0.0.1", "localhost")
    assert "nonce" not in _jws(client.request_headers("GET", other)["DPoP"])[1]
    assert client.stats().dpop_nonce_retries == 1


def test_client_request_answers_both_nonce_dances(dev: DevServer) -> None:
    dev.config(dpop=True, dpop_as_nonce=True, dpop_rs_nonce=True)
    client = _dpop_client(dev)
    for _ in range(3):
        assert client.get(dev.url + "/api/resource").status == 200
    stats = client.stats()
    assert stats.dpop_nonce_retries == 2, "one at the token endpoint, one at the API"
    assert stats.retries_after_401 == 0 and stats.token_requests == 2
    assert "dpop_nonce_retries=2" in repr(stats)
    c = dev.counters()
    assert c["dpop_as_nonce_challenges"] == 1 and c["dpop_rs_nonce_challenges"] == 1


def test_a_bearer_downgrade_is_refused_unless_allowed(dev: DevServer) -> None:
    dev.config(dpop=True, dpop_bearer_only=True)
    client = _dpop_client(dev)
    url = dev.url + "/api/resource"
    with pytest.raises(authcore.InvalidResponseError, match="Bearer"):
        client.get(url)
    with pytest.raises(authcore.InvalidResponseError):
        requests.get(url, auth=authcore.RequestsAuth(client), timeout=10)
    with httpx.Client(auth=authcore.HttpxAuth(client), timeout=10) as h, pytest.raises(authcore.InvalidResponseError):
        h.get(url)
    assert dev.counters()["resource_accepted"] == 0
    allowed = _dpop_client(dev, dpop_allow_bearer=True)
    assert allowed.get(url).status == 200
    assert allowed.token_info().token_type == "Bearer"
    assert allowed.request_headers("GET", url) == {"Authorization": "Bearer " + allowed.token()}
    assert allowed.dpop_proof("GET", url) is None
    assert requests.get(url, auth=authcore.RequestsAuth(allowed), timeout=10).status_code == 200


# --- The adapters -----------------------------------------------------------------

ADAPTERS = ["requests", "httpx", "httpx-async"]


def _send(
    kind: str, client: authcore.Client, url: str, method: str = "GET", body: Any = None,
) -> tuple[int, list[int], Any]:
    """One request through an adapter: the status, the statuses of its history, and the
    JSON body (None if not JSON)."""

    def parsed(r: Any) -> Any:
        try:
            return r.json()
        except ValueError:
            return None

    if kind == "requests":
        r = requests.request(method, url, data=body, auth=authcore.RequestsAuth(client), timeout=10)
        return r.status_code, [h.status_code for h in r.history], parsed(r)
    if kind == "httpx":
        with httpx.Client(auth=authcore.HttpxAuth(client), timeout=10, follow_redirects=True) as h:
            x = h.request(method, url, content=body)
            return x.status_code, [y.status_code for y in x.history], parsed(x)

    async def main() -> tuple[int, list[int], Any]:
        async with httpx.AsyncClient(auth=authcore.HttpxAuth(client), timeout=10, follow_redirects=True) as h:
            x = await h.request(method, url, content=body)
            return x.status_code, [y.status_code for y in x.history], parsed(x)

    return asyncio.run(main())


@pytest.mark.parametrize("kind", ADAPTERS)
def test_adapters_send_a_proof_per_request(dev: DevServer, kind: str) -> None:
    dev.config(dpop=True, dpop_required=True)
    client = _dpop_client(dev)
    for i in range(3):
        status, history, body = _send(kind, client, f"{dev.url}/api/resource?i={i}")
        assert (status, history) == (200, []) and body["cnf"]["jkt"] == client.dpop_thumbprint
    status, _, _ = _send(kind, client, dev.url + "/api/resource", "PUT", b'{"a": 1}')
    assert status == 200
    c = dev.counters()
    assert c["dpop_proofs_accepted"] == 5 and c["dpop_proofs_rejected"] == 0 and c["token_requests"] == 1


@pytest.mark.parametrize("kind", ADAPTERS)
def test_adapters_answer_a_resource_nonce_and_its_rotation_with_one_resend(dev: DevServer, kind: str) -> None:
    dev.config(dpop=True, dpop_as_nonce=True, dpop_rs_nonce=True)
    client = _dpop_client(dev)
    url = dev.url + "/api/resource"
    assert _send(kind, client, url)[:2] == (200, [401])
    # The nonce is remembered from every answer: no more round trips.
    for _ in range(3):
        assert _send(kind, client, url)[:2] == (200, [])
    assert _send(kind, client, url, "POST", b"payload")[:2] == (200, [])
    dev.control("POST", "dpop_rotate", {})
    assert _send(kind, client, url, "POST", b"payload")[:2] == (200, [401])
    assert _send(kind, client, url)[:2] == (200, [])
    stats = client.stats()
    assert stats.dpop_nonce_retries == 3, "the token endpoint's nonce, then the API's twice"
    assert stats.token_requests == 2 and stats.renewals_rejected == 0
    c = dev.counters()
    assert c["dpop_rs_nonce_challenges"] == 2 and c["resource_accepted"] == 7


@pytest.mark.parametrize("kind", ADAPTERS)
def test_adapters_take_nonces_from_every_answer(dev: DevServer, other: DevServer, kind: str) -> None:
    """A nonce is remembered whatever the answer that carries it: here a redirect (to
    another origin, which gets no token), after which the API costs no round trip."""
    dev.config(dpop=True, dpop_rs_nonce=True)
    client = _dpop_client(dev)
    client.token()
    assert _send(kind, client, _redirect(dev.url, other.url + "/api/resource"))[:2] == (401, [302])
    assert _send(kind, client, dev.url + "/api/resource")[:2] == (200, [])
    assert client.stats().dpop_nonce_retries == 0
    assert dev.counters()["dpop_rs_nonce_challenges"] == 0


def _chunks(n: int) -> Iterator[bytes]:
    for _ in range(n):
        yield b"x" * 1024


@pytest.mark.parametrize("kind", ["requests", "httpx"])
def test_adapters_do_not_resend_a_one_shot_body_for_a_nonce(dev: DevServer, kind: str) -> None:
    dev.config(dpop=True, dpop_rs_nonce=True)
    client = _dpop_client(dev)
    status, history, _ = _send(kind, client, dev.url + "/api/resource", "POST", _chunks(4))
    assert (status, history) == (401, []), "sent once: the stream is spent"
    assert client.stats().dpop_nonce_retries == 0
    # Its nonce was remembered all the same: the next request needs no second try.
    assert _send(kind, client, dev.url + "/api/resource", "POST", _chunks(4))[:2] == (200, [])
    assert dev.counters()["dpop_rs_nonce_challenges"] == 1 and client.stats().token_requests == 1


@pytest.mark.parametrize("kind", ADAPTERS)
def test_adapters_renew_a_revoked_dpop_token_once(dev: DevServer, kind: str) -> None:
    dev.config(dpop=True, dpop_rs_nonce=True)
    client = _dpop_client(dev)
    assert _send(kind, client, dev.url + "/api/resource")[0] == 200
    dev.control("POST", "revoke", {"refresh": False})
    status, history, body = _send(kind, client, dev.url + "/api/resource")
    assert (status, history) == (200, [401]) and body["cnf"]["jkt"] == client.dpop_thumbprint
    assert client.stats().token_requests == 2 and client.stats().dpop_nonce_retries == 1
    # A scope refusal is final.
    assert _send(kind, client, dev.url + "/api/admin")[:2] == (403, [])
    assert client.stats().token_requests == 2


def _redirect(base: str, to: str, status: int = 302) -> str:
    return f"{base}/api/redirect?status={status}&to={urllib.parse.quote(to, safe='')}"


@pytest.mark.parametrize("kind", ADAPTERS)
def test_adapters_give_a_redirect_within_the_origin_a_proof_of_its_own(dev: DevServer, kind: str) -> None:
    dev.config(dpop=True)
    client = _dpop_client(dev)
    client.token()
    status, _, body = _send(kind, client, _redirect(dev.url, dev.url + "/api/resource"))
    assert status == 200 and body["cnf"]["jkt"] == client.dpop_thumbprint
    seen = [e for e in dev.resources() if e["path"] == "/api/resource"]
    # The first went with the first request's proof (httpx) or none (requests).
    assert [e["outcome"] for e in seen] == ["proof_refused", "accepted"], seen
    assert client.stats().token_requests == 1, "a proof is not a token problem: no renewal"


@pytest.mark.parametrize("kind", ADAPTERS)
def test_adapters_send_no_dpop_token_to_another_origin(dev: DevServer, other: DevServer, kind: str) -> None:
    dev.config(dpop=True)
    other.config(dpop=True)
    client = _dpop_client(dev)
    client.token()
    status, history, _ = _send(kind, client, _redirect(dev.url, other.url + "/api/resource"))
    assert (status, history) == (401, [302])
    seen = other.resources()
    assert len(seen) == 1 and seen[0]["token"] is None, seen
    assert client.stats().token_requests == 1 and other.token_requests() == 0


class _Recorder:
    """Another origin: a plain HTTP server on loopback that records the headers of
    every request it gets and answers 200."""

    def __init__(self) -> None:
        import http.server
        import threading

        seen: list[dict[str, str]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                seen.append({k.lower(): v for k, v in self.headers.items()})
                body = b"{}"
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.seen = seen
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.mark.parametrize("kind", ADAPTERS)
def test_no_proof_goes_to_another_origin_after_a_redirect(dev: DevServer, kind: str) -> None:
    dev.config(dpop=True)
    client = _dpop_client(dev)
    client.token()
    other = _Recorder()
    try:
        url = _redirect(dev.url, other.url + "/landing")
        if kind == "requests":
            r = requests.get(url, auth=authcore.RequestsAuth(client), timeout=10)
            assert r.status_code == 200
        elif kind == "httpx":
            hooks = {"request": [authcore.adapters.drop_foreign_dpop_proof]}
            with httpx.Client(
                auth=authcore.HttpxAuth(client), timeout=10, follow_redirects=True, event_hooks=hooks
            ) as h:
                assert h.get(url).status_code == 200
        else:

            async def main() -> int:
                hooks = {"request": [authcore.adapters.adrop_foreign_dpop_proof]}
                async with httpx.AsyncClient(
                    auth=authcore.HttpxAuth(client), timeout=10, follow_redirects=True, event_hooks=hooks
                ) as h:
                    return (await h.get(url)).status_code

            assert asyncio.run(main()) == 200
        assert len(other.seen) == 1, other.seen
        assert "dpop" not in other.seen[0] and "authorization" not in other.seen[0], other.seen
    finally:
        other.close()


def test_the_httpx_hook_keeps_a_proof_for_its_own_origin() -> None:
    # The hook reads the proof's htu only.
    payload = base64.urlsafe_b64encode(json.dumps({"htu": "http://127.0.0.1:9/a"}).encode()).rstrip(b"=")
    proof = "e30." + payload.decode() + ".sig"
    same = httpx.Request("GET", "http://127.0.0.1:9/b", headers={"DPoP": proof})
    authcore.adapters.drop_foreign_dpop_proof(same)
    assert same.headers.get("DPoP") == proof
    other = httpx.Request("GET", "http://127.0.0.1:10/a", headers={"DPoP": proof})
    authcore.adapters.drop_foreign_dpop_proof(other)
    assert "DPoP" not in other.headers
    garbage = httpx.Request("GET", "http://127.0.0.1:9/a", headers={"DPoP": "not-a-jws"})
    authcore.adapters.drop_foreign_dpop_proof(garbage)
    assert "DPoP" not in garbage.headers
