//! A local token provider that speaks every dialect authcore supports, with
//! in-memory state, a protected resource, and a control surface for tests.
//!
//! Dialects: api.video (`/auth/api-key`, `/auth/refresh`), viewneo (`/oauth/authorize`,
//! `/oauth/token` with JSON bodies), standard OAuth 2.0 / Vibe (`/oauth2/authorize`,
//! `/oauth2/token` with form bodies; metadata at `/.well-known/oauth-authorization-server`
//! and `/.well-known/openid-configuration`, `iss` in authorization responses, device
//! authorization at `/oauth2/device` with `authorization_pending`/`slow_down`/
//! `access_denied` on demand — no one approves: the provider decides each device code by
//! itself, and its `verification_uri` (`/device`) is a page that says so —, revocation at
//! `/oauth2/revoke`, left out of the metadata with `{"revocation_endpoint": false}` in the
//! config). Clients: the confidential `dev-client` (secret `dev-secret`; also public in
//! DPoP mode, below) and the public `dev-cli` (no secret, its id in the body: the code
//! grant with PKCE, the device grant, refresh and revocation; a code, device code or
//! refresh token is redeemed only by the client it was issued to, and an access or
//! refresh token revoked only by it: `400 unauthorized_client` for another client's, RFC
//! 7009 §2.1). Protected resource: `/api/...`
//! (`/api/admin` needs the `admin` scope; `/api/reject` refuses every token;
//! `/api/redirect?to=URL` answers `302 Found` (or `?status=` 301, 303, 307, 308) to `URL`,
//! a loopback `http` or `https` URL, whatever the token; every answer to a known token
//! names its subject in `X-Sub` and in the body's `sub`). Control: `/_control/...`
//! (loopback peers only, and only with a loopback `Host` and `Origin`, so that a web
//! page in a browser cannot drive it). `POST /_control/config` takes the whole
//! [`Behaviour`] and refuses a field it does not know (`400`, naming it).
//!
//! Users: every refresh-token family belongs to a subject (`sub`). A sign-in by code or
//! device belongs to `login_hint` of the authorization request (default `dev-user`);
//! `POST /_control/session {"sub": "alice"}` starts a family for a named user without a
//! browser; client credentials tokens belong to the client id. A user family whose
//! scope includes `openid` gets an `id_token` (an HS256 JWT keyed by the client secret,
//! with `iss`, `sub`, `aud`, `iat`, `exp`) with every token response, as OpenID Connect
//! providers do. `POST /_control/revoke_grant {"sub": "alice"}` ends every family of a
//! user (the user pressed "revoke access" at the provider); `POST /_control/revoke_token
//! {"tag": "…"}` revokes one access or refresh token by its tag (or by its value:
//! `{"token": "…"}`, for test programs that cannot compute a tag).
//!
//! Journal: every token request (grant, the refresh token presented, outcome, the
//! tokens issued, family, subject, times), resource request (token, subject, verdict),
//! revocation, grant revocation, session and injected fault is recorded in order and
//! served by `GET /_control/journal` (`?since=SEQ` for the newer ones), cleared by
//! reset. Tokens appear only as [`tag`]s (a SHA-256 prefix), never in clear. A request's
//! `X-Journal-Label` header (a short name of the caller's choosing) is recorded with its
//! events, so that a test can tell which of its clients did what.
//!
//! As strict as the real providers: JSON bodies where api.video and viewneo want JSON,
//! form bodies where RFC 6749 wants them (415 otherwise); api.video problems carry
//! `name`; reusing a rotated refresh token revokes its whole token family (RFC 9700
//! §4.14); in Vibe mode (`{"vibe": true}` in the config) client credentials are
//! accepted only through Basic auth, and the API wants `X-Vibe-Revision` and answers
//! errors in Vibe's `{"error": {…}}` envelope.
//!
//! DPoP (RFC 9449), with `{"dpop": true}` in the config: a token request (any grant, any
//! dialect) with a valid `DPoP` proof gets `token_type: DPoP` and an access token bound
//! to the proof key's thumbprint (`cnf.jkt`); a refresh token is bound too when it is
//! refreshed without a secret (a public client — accepted in DPoP mode only, `client_id`
//! in the body, for the code grant with PKCE, the device grant and refresh — or
//! api.video's `/auth/refresh`), and is then taken only with a proof by that key (none:
//! `invalid_dpop_proof`; another key: `invalid_grant`; neither uses it). Proofs are
//! verified here, on their own (`dpop` submodule, with `jsonwebtoken`): one `DPoP`
//! header, `typ` `dpop+jwt`, `alg` ES256, EdDSA or RS256, a public `jwk` (no private
//! members) that verifies the signature, a string `jti` not seen before, `htm` the
//! method, `htu` the URL as the provider sees it (scheme, `Host`, path; compared after
//! RFC 3986 normalisation; a query or fragment in `htu` is refused), `iat` within 60 s;
//! on `/api/...` (`Authorization: DPoP <token>`) also `ath` and the token's key. A bad
//! proof: `400 invalid_dpop_proof` at the token endpoints, `401` with
//! `WWW-Authenticate: DPoP error="invalid_dpop_proof"` at the API; a bound token as
//! `Bearer`, or an unbound one as `DPoP`: `401 DPoP error="invalid_token"`. Without
//! `dpop`, a `DPoP` header at a token endpoint is ignored. More switches: `dpop_required`
//! (token requests without a proof refused), `dpop_bearer_only` (proofs verified,
//! tokens Bearer: a downgrade), `dpop_as_nonce` / `dpop_rs_nonce` (the token endpoints
//! / the API demand their own nonce: `use_dpop_nonce` with a `DPoP-Nonce` header, at
//! the token endpoints before anything else of the request is used; every answer
//! carries the current nonce), `dpop_nonce_rotate_every` (a nonce is replaced after
//! that many proofs accepted with it). `POST /_control/dpop_rotate` replaces both nonces
//! now (answering them); `GET /_control/token?tag=TAG` describes a token as
//! introspection would (`active`, `token_type`, `cnf.jkt`, `scope`, `sub`, `family`);
//! the API's answers name the key of a bound token in `cnf.jkt`, and the journal's
//! token events the key the tokens issued are bound to (`jkt`).
//!
//! Workload identities: a **test issuer** (a P-256 key pair made when the provider
//! starts, `iss` = `<base>/test-issuer`) stands in for a Kubernetes cluster or a CI
//! system. `GET /_control/test_issuer/jwks` serves its public key (a JWK set);
//! `POST /_control/test_issuer/mint {"sub", "aud", "ttl_s"}` answers `{"jwt", "iss"}`, an
//! ES256 JWT it signs now (`ttl_s` default 300, negative for one already expired; `iss`,
//! `jti` and more `claims` may be given), for tests to write to a file or print from a
//! command. Its JWTs are accepted at the OAuth token endpoints (and revocation, device
//! authorization) as **client assertions** (RFC 7523 §2.2) of the registered client:
//! `client_assertion_type` jwt-bearer, signature, `iss` the test issuer, `sub` the client
//! id, `aud` the provider's issuer or one of its OAuth endpoints, `exp` in the future (no
//! leeway) and a `jti` not seen before are checked; anything else is `401
//! invalid_client` with the reason ("the assertion has expired"). The **JWT bearer grant**
//! (RFC 7523 §2.1, `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`) takes an
//! `assertion` from the test issuer, or one signed by a key the config trusts for its
//! issuer (`{"jwt_bearer_keys": {"<iss>": "<public key PEM>"}}`, P-256, Ed25519 or
//! RSA), with the same checks (`400 invalid_grant` otherwise); the token (no refresh
//! token) belongs to the assertion's `sub`, client authentication is optional (but
//! checked when presented). The journal's token events name the assertion presented by
//! its tag (`assertion`: the grant's, else the client assertion), so that a test can
//! tell whether one was sent twice; the counters count assertions presented again
//! (`assertions_resent`) and after their `exp` (`assertions_expired`).
//! Mutual TLS (RFC 8705), in TLS mode (`--tls-dir`): every connection is asked for a
//! client certificate and may leave it out (clients without one are served as before).
//! Clients registered in the config's `mtls_clients` authenticate with `client_id` in
//! the body and no secret: `{"client_id": "billing", "tls_client_auth_subject_dn":
//! "CN=billing, O=authcore devserver"}` (`tls_client_auth`: a certificate issued by the
//! provider's CA with that subject) or `{"client_id": "edge", "x5t#S256": "…"}`
//! (`self_signed_tls_client_auth`: the certificate with that SHA-256 thumbprint,
//! whoever issued it); a wrong or missing certificate is `401 invalid_client`.
//! `POST /_control/client_certificate {"cn": "billing", "self_signed": false}` makes
//! one (answering `certificate`, `key`, `subject` and `x5t#S256`). Every access token
//! issued over a connection that presented a certificate is bound to it: `cnf.x5t#S256`
//! in `/_control/token` and in the API's answers, `x5t#S256` in the journal's token
//! events; at `/api/...` it is refused (`401 invalid_token`, verdict
//! `certificate_mismatch`) on a connection without that certificate. The metadata
//! adds `tls_client_auth` and `self_signed_tls_client_auth` to the methods,
//! `tls_client_certificate_bound_access_tokens: true`, and `mtls_endpoint_aliases`:
//! the token, device and revocation endpoints under `/mtls/oauth2/…`, which answer
//! `401 invalid_client` to a connection without a certificate.
//! Token exchange (RFC 8693) at `/oauth2/token` (`grant_type=urn:ietf:params:oauth:
//! grant-type:token-exchange`, the client authenticated as for client credentials): the
//! subject token is one of the provider's own live access tokens (`subject_token_type`
//! `urn:ietf:params:oauth:token-type:access_token`; another type is `invalid_request`), and
//! so is the optional actor token (`actor_token` with `actor_token_type`, both or
//! neither). A subject or actor token that is unknown, revoked (`POST
//! /_control/revoke_token`) or expired: `400 invalid_grant`. The token issued belongs to
//! the subject token's `sub`, in a new family, without a refresh token, with the scope
//! asked for (at most the subject token's: `invalid_scope` otherwise; by default all of
//! it); `audience` and `resource` (each may repeat; a resource must be an absolute URI
//! without a fragment, else `invalid_target`) are kept as its `aud`, and the actor's
//! `sub` as `act.sub`, both shown by `GET /_control/token?tag=TAG`;
//! `requested_token_type`, if any, must be the access-token type. The answer says
//! `issued_token_type: urn:ietf:params:oauth:token-type:access_token`. The journal's
//! token events name the subject and actor tokens presented (`subject`, `actor`, as
//! tags), accepted or not.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

mod dpop;
mod test_issuer;

use dpop::{Dpop, Origin, Proof, Refusal};
use test_issuer::TestIssuer;

const MAX_REQUEST_BODY: usize = 64 * 1024;
/// Longest token lifetime the provider issues (ten years).
pub const MAX_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;
/// Longest added latency it accepts (ten minutes).
pub const MAX_LATENCY_MS: u64 = 600_000;

/// The credentials the provider accepts.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// api.video API key.
    pub api_key: String,
    /// OAuth client id (viewneo, Vibe, standard OAuth 2.0).
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// A public client's id (RFC 6749 §2.1: a command-line or native app, no secret):
    /// accepted with its id in the body for the authorization code grant (with PKCE
    /// only), the device grant, refresh and revocation.
    pub public_client_id: String,
    /// Scopes a client may be granted.
    pub scopes: Vec<String>,
    /// A personal access token (viewneo style) that never expires.
    pub personal_access_token: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            api_key: "dev-api-key".into(),
            client_id: "dev-client".into(),
            client_secret: "dev-secret".into(),
            public_client_id: "dev-cli".into(),
            scopes: [
                "campaigns:read",
                "reporting:read",
                "campaigns:write",
                "admin",
            ]
            .map(String::from)
            .to_vec(),
            personal_access_token: "dev-personal-access-token".into(),
        }
    }
}

/// What the provider has seen, as served by `GET /_control/counters`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    /// Assertions (client assertions, JWT bearer grants) presented that had been
    /// presented before (the same JWT, accepted or not).
    #[serde(default)]
    pub assertions_resent: u64,
    /// Assertions presented after their `exp`.
    #[serde(default)]
    pub assertions_expired: u64,
    /// Token requests received, all endpoints.
    pub token_requests: u64,
    /// Token requests by `dialect/grant`, e.g. `apivideo/refresh`.
    pub token_requests_by_grant: BTreeMap<String, u64>,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Resource requests accepted.
    pub resource_accepted: u64,
    /// Resource requests refused because the token had expired.
    pub resource_rejected_expired: u64,
    /// Resource requests refused because the token was unknown, revoked or missing.
    pub resource_rejected_invalid: u64,
    /// Tokens revoked through the revocation endpoint (RFC 7009).
    pub revocations: u64,
    /// Device authorizations started (RFC 8628).
    pub device_authorizations: u64,
    /// Token requests answered with an injected fault (status or malformed body).
    pub faults_injected: u64,
    /// DPoP proofs accepted (token and resource requests).
    #[serde(default)]
    pub dpop_proofs_accepted: u64,
    /// DPoP proofs refused as invalid: header, key, signature, claims, `ath`, or a key
    /// other than the one the access token is bound to (replays and nonce challenges
    /// are counted apart).
    #[serde(default)]
    pub dpop_proofs_rejected: u64,
    /// DPoP proofs refused because their `jti` was seen before.
    #[serde(default)]
    pub dpop_replays_rejected: u64,
    /// Requests refused for want of a DPoP proof: a token request with `dpop_required`,
    /// a resource request with the `DPoP` scheme and no proof.
    #[serde(default)]
    pub dpop_proofs_missing: u64,
    /// Token requests answered `use_dpop_nonce` (authorization-server nonce).
    #[serde(default)]
    pub dpop_as_nonce_challenges: u64,
    /// Resource requests answered `use_dpop_nonce` (resource-server nonce).
    #[serde(default)]
    pub dpop_rs_nonce_challenges: u64,
    /// Refresh requests refused because the refresh token is bound to a DPoP key and
    /// the request had no proof by that key.
    #[serde(default)]
    pub dpop_refresh_binding_refused: u64,
    /// Access tokens issued bound to a DPoP key (`token_type: DPoP`); also counted in
    /// `tokens_issued`.
    #[serde(default)]
    pub dpop_tokens_issued: u64,
}

/// Switches that change how the provider behaves (`POST /_control/config`). A field
/// it does not know is refused (a misspelt switch would otherwise leave its default in
/// place without a word).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// Lifetime of issued access tokens, in seconds.
    pub lifetime_secs: u64,
    /// Added latency on every token request, in milliseconds.
    pub latency_ms: u64,
    /// Vibe mode: Basic client auth only; the API wants `X-Vibe-Revision` and answers
    /// errors in Vibe's envelope.
    pub vibe: bool,
    /// Device flow: polls answered `authorization_pending` before the device is approved.
    pub device_pending_polls: u32,
    /// Device flow: of those, how many (the first ones) are answered `slow_down`.
    pub device_slow_down_polls: u32,
    /// Device flow: the device is denied (`access_denied`) instead of approved.
    pub device_deny: bool,
    /// Whether the metadata advertises the revocation endpoint (false: a provider
    /// without one, as many are).
    pub revocation_endpoint: bool,
    /// DPoP mode (RFC 9449): a token request with a valid `DPoP` proof gets a
    /// `token_type: DPoP` access token bound to the proof's key (and, for a client that
    /// refreshes without a secret, a refresh token bound to it too); one without a proof
    /// gets a Bearer token. Public clients (`client_id` in the body, no secret) are
    /// accepted for the code (with PKCE), device and refresh grants.
    pub dpop: bool,
    /// With `dpop`: token requests without a proof are refused (`invalid_dpop_proof`).
    pub dpop_required: bool,
    /// With `dpop`: proofs are verified but the tokens are Bearer and unbound (a server
    /// that ignores DPoP, for clients' downgrade checks).
    pub dpop_bearer_only: bool,
    /// With `dpop`: token requests need the authorization server's current nonce
    /// (`400 use_dpop_nonce` with a `DPoP-Nonce` header otherwise, before anything else
    /// of the request is used); every token answer carries the current nonce.
    pub dpop_as_nonce: bool,
    /// With `dpop`: DPoP resource requests need the resource server's current nonce (a
    /// different one; `401 use_dpop_nonce` otherwise); every resource answer carries it.
    pub dpop_rs_nonce: bool,
    /// With `dpop`: each demanded nonce is replaced by a fresh one after this many proofs
    /// accepted with it (0: never). The answer to the last of them still carries the old
    /// one; the next request with it is challenged.
    pub dpop_nonce_rotate_every: u32,
    /// Keys trusted for JWT bearer grants (RFC 7523 §2.1) besides the test issuer's: the
    /// assertion's `iss` → its public key in PEM (P-256, Ed25519 or RSA).
    pub jwt_bearer_keys: BTreeMap<String, String>,
    /// Clients that authenticate with their TLS certificate (RFC 8705), in TLS mode.
    pub mtls_clients: Vec<MtlsClient>,
}

/// A client registered for mutual-TLS authentication (RFC 8705 §2): `client_id` in
/// the body, no secret, and a certificate on the connection that matches one of these.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MtlsClient {
    /// The client id.
    pub client_id: String,
    /// `tls_client_auth`: the subject distinguished name a certificate issued by the
    /// provider's CA must have (as `CN=billing, O=Example`, the form
    /// `/_control/client_certificate` answers).
    pub tls_client_auth_subject_dn: Option<String>,
    /// `self_signed_tls_client_auth`: the SHA-256 thumbprint (`x5t#S256`, base64url) of
    /// the certificate registered, whoever issued it.
    #[serde(rename = "x5t#S256")]
    pub thumbprint: Option<String>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            lifetime_secs: 3600,
            latency_ms: 0,
            vibe: false,
            device_pending_polls: 1,
            device_slow_down_polls: 0,
            device_deny: false,
            revocation_endpoint: true,
            dpop: false,
            dpop_required: false,
            dpop_bearer_only: false,
            dpop_as_nonce: false,
            dpop_rs_nonce: false,
            dpop_nonce_rotate_every: 0,
            jwt_bearer_keys: BTreeMap::new(),
            mtls_clients: Vec::new(),
        }
    }
}

impl Behaviour {
    /// Refuses settings the provider cannot honour (instead of overflowing on them).
    pub fn validate(&self) -> Result<(), String> {
        if self.lifetime_secs == 0 || self.lifetime_secs > MAX_LIFETIME_SECS {
            return Err(format!(
                "lifetime_secs must be between 1 and {MAX_LIFETIME_SECS}"
            ));
        }
        if self.latency_ms > MAX_LATENCY_MS {
            return Err(format!("latency_ms must be at most {MAX_LATENCY_MS}"));
        }
        if self.device_pending_polls > 100
            || self.device_slow_down_polls > self.device_pending_polls
        {
            return Err(
                "device_pending_polls must be at most 100, device_slow_down_polls at most that"
                    .into(),
            );
        }
        let dpop_options = self.dpop_required
            || self.dpop_bearer_only
            || self.dpop_as_nonce
            || self.dpop_rs_nonce
            || self.dpop_nonce_rotate_every > 0;
        if dpop_options && !self.dpop {
            return Err("dpop_required, dpop_bearer_only, dpop_as_nonce, dpop_rs_nonce and dpop_nonce_rotate_every need dpop: true".into());
        }
        for (iss, pem) in &self.jwt_bearer_keys {
            let readable = jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes()).is_ok()
                || jsonwebtoken::DecodingKey::from_ed_pem(pem.as_bytes()).is_ok()
                || jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).is_ok();
            if iss.is_empty() || !readable {
                return Err(format!(
                    "jwt_bearer_keys: {iss:?} needs a public key in PEM (P-256, Ed25519 or RSA)"
                ));
            }
        }
        for c in &self.mtls_clients {
            let ways = c.tls_client_auth_subject_dn.is_some() as u8 + c.thumbprint.is_some() as u8;
            if c.client_id.is_empty() || ways != 1 {
                return Err("each of mtls_clients needs a client_id and exactly one of \
                            tls_client_auth_subject_dn and x5t#S256"
                    .into());
            }
        }
        Ok(())
    }
}

/// What a malformed token response looks like (`POST /_control/malformed`, `kind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Malformed {
    /// An HTML error page labelled JSON, status 200.
    #[default]
    Html,
    /// A JSON token response whose access token would inject a header (CR LF).
    HeaderInjection,
}

/// Fail the next `count` token requests with `status` (`POST /_control/fail`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fault {
    /// How many token requests fail.
    pub count: u32,
    /// The HTTP status they get.
    pub status: u16,
    /// A `Retry-After` header value in seconds, if any.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// The OAuth `error` they carry (default `temporarily_unavailable`). With
    /// `invalid_grant`, a refresh token presented to a failed request is refused for
    /// good: its whole family is revoked, as a provider that ended the session would.
    #[serde(default)]
    pub error: Option<String>,
    /// Only token requests of this grant type fail (e.g. `refresh_token`); others pass.
    #[serde(default)]
    pub grant: Option<String>,
    /// The body is an HTML page, as a load balancer or proxy in front of the provider
    /// answers, instead of the dialect's error body.
    #[serde(default)]
    pub html: bool,
}

impl Fault {
    /// The next `count` token requests fail with `status`.
    pub fn status(count: u32, status: u16) -> Fault {
        Fault {
            count,
            status,
            retry_after: None,
            error: None,
            grant: None,
            html: false,
        }
    }
}

struct Issued {
    expires: Instant,
    revoked: bool,
    scope: String,
    family: u64,
    /// Whose token it is (a user, or the client itself), if anyone's.
    sub: Option<String>,
    /// The thumbprint of the DPoP key it is bound to, if it is a DPoP token.
    jkt: Option<String>,
    /// The `x5t#S256` of the client certificate it is bound to (RFC 8705 §3).
    x5t: Option<String>,
    /// The audiences and resources it is for (a token exchange's `audience` and
    /// `resource`), if it was asked for any.
    aud: Vec<String>,
    /// Who acts for the subject (the actor token's `sub`), for a delegated exchange.
    act: Option<String>,
    /// The client it was issued to: only that client may revoke it (RFC 7009 §2.1).
    client: String,
}

struct Refresh {
    used: bool,
    revoked: bool,
    scope: String,
    /// Every token descended from one grant shares its family (RFC 9700 §4.14).
    family: u64,
    sub: Option<String>,
    /// The thumbprint of the DPoP key it is bound to: only a request with a proof by
    /// that key may use it (RFC 9449 §5).
    jkt: Option<String>,
    /// The client it was issued to: only that client may use or revoke it (RFC 6749 §6,
    /// RFC 7009 §2.1).
    client: String,
}

struct Code {
    /// The client the code was issued to.
    client_id: String,
    redirect_uri: String,
    challenge: Option<String>,
    scope: String,
    sub: String,
}

/// A device authorization in progress: polls so far, and the last poll's time.
struct Device {
    /// The client that started it: only that client redeems it (RFC 8628 §3.4).
    client: String,
    scope: String,
    polls: u32,
    last_poll: Option<Instant>,
    sub: String,
}

/// Whom a sign-in belongs to when the authorization request names nobody.
pub const DEFAULT_SUBJECT: &str = "dev-user";
/// Most events the journal keeps; later ones are counted in [`Journal::dropped`].
pub const MAX_JOURNAL_EVENTS: usize = 200_000;

/// A short, stable, non-reversible name for a token: the first 12 bytes of its SHA-256,
/// in hex. The journal names tokens only this way; a test computes the same tag from a
/// token it holds.
pub fn tag(token: &str) -> String {
    Sha256::digest(token.as_bytes())[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The journal: every event the provider saw or caused, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Journal {
    /// The events, oldest first (those with `seq` greater than the one asked for).
    pub events: Vec<JournalEvent>,
    /// Events not kept because the journal was full.
    pub dropped: u64,
}

/// One journal entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JournalEvent {
    /// Its place in the journal (from 1, increasing by one).
    pub seq: u64,
    /// When it happened (for a token request: when it was answered), in microseconds
    /// since the Unix epoch.
    pub at_us: u64,
    /// The request's `X-Journal-Label`, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// What a token request came to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TokenOutcome {
    /// Tokens were issued.
    Issued,
    /// The grant was refused (`invalid_grant` and the like, `invalid_client`).
    Refused,
    /// A refresh token that had already been used was presented again: refused, and
    /// its whole family revoked.
    ReuseDetected,
    /// An injected failure status (`POST /_control/fail`).
    Fault,
    /// An injected malformed 200 (`POST /_control/malformed`).
    Malformed,
    /// Any other error answer (a bad request, a pending device, a bad scope).
    Error,
}

/// The verdict on a resource request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResourceOutcome {
    /// Served.
    Accepted,
    /// 401: the token had expired.
    Expired,
    /// 401: the token was revoked.
    Revoked,
    /// 401: no token, or one the provider never issued.
    Unknown,
    /// 401 from `/api/reject`, which refuses every token.
    Rejected,
    /// A redirect from `/api/redirect`, whatever the token.
    Redirected,
    /// 403: the token lacks a scope.
    Forbidden,
    /// 400: something else was wrong with the request (Vibe's revision header).
    BadRequest,
    /// 401 `invalid_dpop_proof`: no DPoP proof, an invalid or replayed one, or one by a
    /// key other than the token's.
    ProofRefused,
    /// 401 `use_dpop_nonce`: the proof lacked the resource server's current nonce.
    NonceRequired,
    /// 401 `invalid_token`: a DPoP-bound token presented as `Bearer`, or an unbound one
    /// as `DPoP`.
    SchemeMismatch,
    /// 401 `invalid_token`: a certificate-bound token on a connection that did not
    /// present that certificate.
    CertificateMismatch,
}

/// The journal's events. Tokens appear as [`tag`]s only.
// A token event names everything a request presented; events are made once per request
// and read by tests, so their size is no concern.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A token request arrived (before any added latency).
    TokenReceived {
        /// Numbers the request; its `token` event has the same.
        request: u64,
        /// `dialect/grant`, as in the counters.
        grant: String,
        /// The refresh token presented, if any.
        presented: Option<String>,
    },
    /// A token request was answered.
    Token {
        /// The number of its `token_received` event.
        request: u64,
        /// `dialect/grant`.
        grant: String,
        /// When it arrived (µs since the epoch).
        received_us: u64,
        /// The refresh token presented, if any.
        presented: Option<String>,
        /// What came of it.
        outcome: TokenOutcome,
        /// The HTTP status of the answer.
        status: u16,
        /// The OAuth error or problem slug of an error answer.
        error: Option<String>,
        /// The access token issued.
        access: Option<String>,
        /// The refresh token issued.
        refresh: Option<String>,
        /// The family of the tokens issued, or of the refresh token presented.
        family: Option<u64>,
        /// Whose tokens they are.
        sub: Option<String>,
        /// Whether the outcome was injected (a fault, a malformed body, a refusal).
        injected: bool,
        /// The thumbprint of the DPoP key the access token issued is bound to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jkt: Option<String>,
        /// The assertion presented (a JWT bearer grant's, else a client assertion), as
        /// a tag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assertion: Option<String>,
        /// The `x5t#S256` of the client certificate the access token issued is bound
        /// to.
        #[serde(default, rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
        x5t: Option<String>,
        /// A token exchange's subject token (RFC 8693), whether or not it was accepted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        /// A token exchange's actor token, if it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        actor: Option<String>,
    },
    /// A request to the protected resource.
    Resource {
        /// The path.
        path: String,
        /// The bearer token sent, if any.
        token: Option<String>,
        /// Whose token it was, if the provider issued it.
        sub: Option<String>,
        /// Its family, if the provider issued it.
        family: Option<u64>,
        /// The verdict.
        outcome: ResourceOutcome,
    },
    /// A token revoked through the revocation endpoint (RFC 7009), or by
    /// `POST /_control/revoke_token`.
    Revocation {
        /// The token.
        token: String,
        /// `refresh_token`, `access_token` or `unknown`.
        kind: String,
        /// Its family (every token of which is revoked for a refresh token).
        family: Option<u64>,
        /// Whose it was.
        sub: Option<String>,
        /// Through the control surface rather than by a client.
        control: bool,
    },
    /// Every family of a user was revoked (`POST /_control/revoke_grant`).
    GrantRevoked {
        /// The user.
        sub: String,
        /// The families that ended.
        families: Vec<u64>,
    },
    /// A family was started for a user by `POST /_control/session`.
    Session {
        /// The user.
        sub: String,
        /// The new family.
        family: u64,
        /// The access token issued.
        access: String,
        /// The refresh token issued.
        refresh: String,
    },
    /// Every access token (and refresh token, if `refresh`) was revoked
    /// (`POST /_control/revoke`).
    RevokedAll {
        /// Refresh tokens too.
        refresh: bool,
    },
    /// Faults were armed: the next `count` token requests fail (`POST /_control/fail`)
    /// or are answered with a malformed body (`POST /_control/malformed`).
    FaultArmed {
        /// `fail` or `malformed`.
        kind: String,
        /// How many requests.
        count: u32,
        /// The status of a `fail`.
        status: Option<u16>,
        /// The OAuth error of a `fail`, or the malformed kind.
        error: Option<String>,
    },
    /// The behaviour changed (`POST /_control/config`).
    Config {
        /// Lifetime of new access tokens.
        lifetime_secs: u64,
        /// Added latency of token requests.
        latency_ms: u64,
    },
}

/// What a token handler reports about the request it answered, for the journal.
#[derive(Default)]
struct TokenNote {
    access: Option<String>,
    refresh: Option<String>,
    family: Option<u64>,
    sub: Option<String>,
    reuse: bool,
    /// An injected refusal.
    injected: bool,
    /// The thumbprint of the key of the request's accepted DPoP proof.
    proof_jkt: Option<String>,
    /// Whether the tokens issued are bound to that key (DPoP mode, not Bearer-only).
    bind: bool,
    /// Whether the client refreshes without a secret (a public client, api.video): its
    /// refresh tokens are bound too.
    public_client: bool,
    /// The refresh token taken was bound: so is its successor.
    bound_refresh: bool,
    /// The public client the request came from, if it did (an ID token's audience).
    client: Option<String>,
    /// The client the request authenticated as, when not the confidential client (a
    /// mutual-TLS client, or the public client): what is issued is bound to it.
    requester: Option<String>,
    /// The key the access token issued is bound to.
    bound_jkt: Option<String>,
    /// The tag of the assertion presented (a JWT bearer grant's, else a client
    /// assertion).
    assertion: Option<String>,
    /// The `x5t#S256` of the certificate the request's connection presented.
    cert_x5t: Option<String>,
    /// The certificate the access token issued is bound to.
    bound_x5t: Option<String>,
    /// A token exchange's subject and actor tokens, as tags.
    subject: Option<String>,
    actor: Option<String>,
    /// What the exchanged token is for, and who acts (set before it is issued).
    aud: Vec<String>,
    act: Option<String>,
}

/// Microseconds since the Unix epoch, now.
fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[derive(Default)]
struct State {
    behaviour: Behaviour,
    fault: Option<Fault>,
    malformed: (u32, Malformed),
    access: HashMap<String, Issued>,
    refresh: HashMap<String, Refresh>,
    codes: HashMap<String, Code>,
    devices: HashMap<String, Device>,
    counters: Counters,
    serial: u64,
    journal: Vec<JournalEvent>,
    journal_dropped: u64,
    requests: u64,
    note: TokenNote,
    dpop: Dpop,
    /// The `jti`s of the assertions accepted (client assertions and JWT bearer grants).
    assertions_seen: test_issuer::Seen,
    /// The tags of every assertion presented, to count those presented again.
    assertions_presented: std::collections::HashSet<String>,
}

impl State {
    /// Notes an assertion presented (for the journal and the counters); its tag.
    fn assertion_presented(&mut self, assertion: &str) -> String {
        let tag = tag(assertion);
        if !self.assertions_presented.insert(tag.clone()) {
            self.counters.assertions_resent += 1;
        }
        tag
    }

    /// Counts an assertion refused for having expired.
    fn assertion_verdict<T>(&mut self, verdict: &Result<T, String>) {
        if verdict.as_ref().is_err_and(|why| why.contains("expired")) {
            self.counters.assertions_expired += 1;
        }
    }
}

impl State {
    /// Appends an event to the journal (or counts it as dropped when the journal is full).
    fn record(&mut self, label: Option<&str>, at_us: u64, event: Event) {
        if self.journal.len() >= MAX_JOURNAL_EVENTS {
            self.journal_dropped += 1;
            return;
        }
        let seq = self.journal.len() as u64 + self.journal_dropped + 1;
        self.journal.push(JournalEvent {
            seq,
            at_us,
            label: label.map(str::to_owned),
            event,
        });
    }

    fn journal_since(&self, since: u64) -> Journal {
        Journal {
            events: self
                .journal
                .iter()
                .filter(|e| e.seq > since)
                .cloned()
                .collect(),
            dropped: self.journal_dropped,
        }
    }
}

struct Shared {
    creds: Credentials,
    /// The base URL, which is also the issuer of the standard OAuth dialect.
    issuer: String,
    /// The issuer of workload identities the provider trusts (made at start).
    test_issuer: TestIssuer,
    state: Mutex<State>,
    /// In TLS mode: the throwaway CA, which issues client certificates too.
    ca: Option<TlsCa>,
}

/// The throwaway CA of TLS mode.
struct TlsCa {
    params: rcgen::CertificateParams,
    /// Its key, as PEM (rcgen's key pairs are not `Sync`).
    key_pem: String,
    /// Checks that a client certificate was issued by it (for `tls_client_auth`).
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    /// Where its certificate was written.
    file: std::path::PathBuf,
}

/// The client certificate a TLS connection presented.
#[derive(Debug, Clone)]
struct PeerCert {
    /// `x5t#S256`: base64url SHA-256 of the certificate.
    x5t: String,
    /// Its subject, as `CN=billing, O=Example`.
    subject: String,
    /// Issued by the provider's CA (with the chain the connection sent).
    ca_issued: bool,
}

impl PeerCert {
    /// The certificate a finished handshake presented, if any.
    fn of(conn: &rustls::ServerConnection, ca: Option<&TlsCa>) -> Option<PeerCert> {
        let chain = conn.peer_certificates()?;
        let (leaf, intermediates) = chain.split_first()?;
        let subject = x509_parser::parse_x509_certificate(leaf)
            .map(|(_, c)| c.subject().to_string())
            .unwrap_or_default();
        let ca_issued = ca.is_some_and(|ca| {
            ca.verifier
                .verify_client_cert(leaf, intermediates, rustls::pki_types::UnixTime::now())
                .is_ok()
        });
        Some(PeerCert {
            x5t: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(leaf)),
            subject,
            ca_issued,
        })
    }
}

/// A running provider. Dropping it stops the server.
///
/// HTTP/1.1 with keep-alive, served by hyper on a small tokio runtime of its own; each
/// request's handler runs on a blocking thread (it may sleep to simulate latency).
pub struct DevServer {
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DevServer {
    /// Starts on `addr` (port 0 picks a free port). Only loopback addresses are accepted.
    pub fn start(addr: SocketAddr, creds: Credentials) -> io::Result<DevServer> {
        Self::start_with(addr, creds, None)
    }

    /// Starts serving HTTPS on `addr`, with a certificate for 127.0.0.1, ::1 and
    /// `localhost` signed by a throwaway CA made now, whose certificate is written to
    /// `dir/ca.pem` (for clients' CA bundle option). Only loopback addresses are accepted.
    ///
    /// Connections are asked for a client certificate, which they may leave out: one
    /// presented authenticates the `mtls_clients` of the config, and binds the access
    /// tokens issued over it (`cnf.x5t#S256`).
    pub fn start_tls(addr: SocketAddr, creds: Credentials, dir: &Path) -> io::Result<DevServer> {
        let (config, ca) = throwaway_tls(dir)?;
        Self::start_with(addr, creds, Some((config, ca)))
    }

    fn start_with(
        addr: SocketAddr,
        creds: Credentials,
        tls: Option<(Arc<rustls::ServerConfig>, TlsCa)>,
    ) -> io::Result<DevServer> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the development provider listens on loopback addresses only",
            ));
        }
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("authcore-devserver")
            .enable_all()
            .build()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let issuer = format!("{scheme}://{addr}");
        let test_issuer =
            TestIssuer::new(format!("{issuer}/test-issuer")).map_err(io::Error::other)?;
        let (tls, ca) = match tls {
            Some((config, ca)) => (Some(config), Some(ca)),
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            creds,
            issuer,
            test_issuer,
            state: Mutex::new(State::default()),
            ca,
        });
        let (shutdown, stop) = tokio::sync::oneshot::channel();
        let serving = shared.clone();
        let thread = thread::Builder::new()
            .name("authcore-devserver".into())
            .spawn(move || {
                runtime.block_on(accept_loop(listener, serving, tls, stop));
                runtime.shutdown_timeout(Duration::from_secs(2));
            })?;
        Ok(DevServer {
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// A JWT from the test issuer about `sub` for the provider itself (`aud` its
    /// issuer), expiring `ttl_s` seconds from now (negative: already expired), as
    /// `POST /_control/test_issuer/mint` makes it.
    pub fn mint(&self, sub: &str, ttl_s: i64) -> Result<String, String> {
        let mint =
            serde_json::from_value(json!({"sub": sub, "aud": self.shared.issuer, "ttl_s": ttl_s}))
                .map_err(|e| e.to_string())?;
        self.shared.test_issuer.mint(mint)
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        self.shared.issuer.clone()
    }

    /// The credentials it accepts.
    pub fn credentials(&self) -> &Credentials {
        &self.shared.creds
    }

    /// In TLS mode, the file of its CA's certificate (for clients' CA bundle).
    pub fn ca_file(&self) -> Option<&Path> {
        self.shared.ca.as_ref().map(|ca| ca.file.as_path())
    }

    /// In TLS mode, a client certificate for `cn` issued by its CA (or self-signed), as
    /// `POST /_control/client_certificate` answers it: `certificate`, `key` (PEM),
    /// `subject`, `x5t#S256`.
    pub fn client_certificate(&self, cn: &str, self_signed: bool) -> Result<Value, String> {
        let ca = self
            .shared
            .ca
            .as_ref()
            .ok_or("client certificates need TLS mode")?;
        client_certificate(ca, cn, self_signed)
    }

    /// What `GET /_control/token?tag=TAG` answers about a token, if it issued it.
    pub fn token_info(&self, tag: &str) -> Option<Value> {
        token_info(&self.shared.state.lock(), tag)
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.state.lock().counters.clone()
    }

    /// Changes lifetime, latency and mode; refuses values it cannot honour.
    pub fn set_behaviour(&self, behaviour: Behaviour) -> Result<(), String> {
        behaviour.validate()?;
        self.shared.state.lock().behaviour = behaviour;
        Ok(())
    }

    /// Fails the next token requests.
    pub fn fail_next(&self, fault: Fault) {
        self.shared.state.lock().fault = Some(fault);
    }

    /// Answers the next `count` token requests with a malformed body of this kind.
    pub fn malformed_next(&self, count: u32, kind: Malformed) {
        self.shared.state.lock().malformed = (count, kind);
    }

    /// Revokes every access token, and every refresh token too if `refresh`.
    pub fn revoke_all(&self, refresh: bool) {
        revoke(&mut self.shared.state.lock(), refresh);
    }

    /// The journal's events after `since` (0: all of them).
    pub fn journal(&self, since: u64) -> Journal {
        self.shared.state.lock().journal_since(since)
    }

    /// Starts a family for user `sub` (as a sign-in would) with `scope` (default
    /// `openid`, which brings an ID token): the token response, as JSON.
    pub fn session(&self, sub: &str, scope: Option<&str>, label: Option<&str>) -> Value {
        session(
            &self.shared,
            &mut self.shared.state.lock(),
            sub,
            scope,
            label,
        )
    }

    /// Revokes every family of user `sub` (every access and refresh token of theirs),
    /// as a user ending an application's access at the provider does. Returns the
    /// families.
    pub fn revoke_grant(&self, sub: &str) -> Vec<u64> {
        revoke_grant(&mut self.shared.state.lock(), sub)
    }

    /// Revokes the access or refresh token with this [`tag`] (a refresh token takes
    /// its family along). Returns what it was (`access_token`, `refresh_token`) and
    /// its family, or `None` for a tag the provider never issued.
    pub fn revoke_token_tag(&self, tag: &str) -> Option<(&'static str, u64)> {
        revoke_tag(&mut self.shared.state.lock(), tag)
    }

    /// Replaces both DPoP nonces (the authorization server's and the resource server's)
    /// by fresh ones now, as `POST /_control/dpop_rotate` does.
    pub fn rotate_dpop_nonces(&self) {
        let mut st = self.shared.state.lock();
        st.dpop.rotate(Origin::As);
        st.dpop.rotate(Origin::Rs);
    }

    /// Forgets all tokens, counters, faults, behaviour changes and the journal.
    pub fn reset(&self) {
        *self.shared.state.lock() = State::default();
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections until told to stop; each connection is served by hyper with
/// keep-alive, concurrently with all others.
async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    // Out of descriptors or similar: back off briefly, keep serving.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let http = hyper::server::conn::http1::Builder::new();
            match acceptor {
                None => {
                    let service = hyper::service::service_fn(move |req| {
                        serve(shared.clone(), peer, None, req)
                    });
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
                Some(acceptor) => {
                    // A client that refuses the certificate ends the connection here.
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    if let Ok(Ok(tls)) = handshake.await {
                        let cert = PeerCert::of(tls.get_ref().1, shared.ca.as_ref()).map(Arc::new);
                        let service = hyper::service::service_fn(move |req| {
                            serve(shared.clone(), peer, cert.clone(), req)
                        });
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    }
                }
            }
        });
    }
}

/// One request: read the body (capped), route it on a blocking thread, answer.
async fn serve(
    shared: Arc<Shared>,
    peer: SocketAddr,
    cert: Option<Arc<PeerCert>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, Infallible> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let reply = match http_body_util::Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(collected) => {
            let body = collected.to_bytes();
            let method = parts.method.as_str().to_owned();
            let url = parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let head = Head {
                host: header("host"),
                dpop: parts
                    .headers
                    .get_all("dpop")
                    .iter()
                    .map(|v| v.to_str().unwrap_or_default().to_owned())
                    .collect(),
                authorization: header("authorization"),
                content_type: header("content-type"),
                vibe_revision: header("x-vibe-revision"),
                label: header("x-journal-label").map(|l| l.chars().take(64).collect()),
                cert,
                loopback: peer.ip().is_loopback()
                    && header("host").is_some_and(|h| is_loopback_authority(&h))
                    && header("origin").is_none_or(|o| {
                        url::Url::parse(&o)
                            .ok()
                            .and_then(|u| u.host_str().map(str::to_owned))
                            .is_some_and(|h| is_loopback_authority(&h))
                    }),
            };
            tokio::task::spawn_blocking(move || route(&shared, &method, &url, &head, &body))
                .await
                .unwrap_or_else(|_| {
                    Reply::json(500, json!({"title": "handler failed", "status": 500}))
                })
        }
        Err(_) => Reply::json(
            413,
            json!({"title": "request body too large", "status": 413}),
        ),
    };
    let mut response =
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(reply.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(reply.content_type),
    );
    for (k, v) in reply.headers {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&v) {
            headers.append(k, v);
        }
    }
    Ok(response)
}

/// What the router needs from a request's head.
struct Head {
    /// The `Host` header: with the scheme and path, the URL a DPoP proof must name.
    host: Option<String>,
    /// Every `DPoP` header value (one is allowed).
    dpop: Vec<String>,
    authorization: Option<String>,
    content_type: Option<String>,
    vibe_revision: Option<String>,
    /// `X-Journal-Label`: recorded with the request's events.
    label: Option<String>,
    /// The client certificate the connection presented (TLS mode).
    cert: Option<Arc<PeerCert>>,
    /// Loopback peer, loopback `Host`, and no `Origin` or a loopback one.
    loopback: bool,
}

impl Head {
    fn content_type_is(&self, wanted: &str) -> bool {
        self.content_type
            .as_deref()
            .and_then(|c| c.split(';').next())
            .is_some_and(|c| c.trim().eq_ignore_ascii_case(wanted))
    }
}

/// `127.0.0.1:8080`, `[::1]:80`, `localhost` and the like.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn revoke(st: &mut State, refresh: bool) {
    st.record(None, unix_us(), Event::RevokedAll { refresh });
    for t in st.access.values_mut() {
        t.revoked = true;
    }
    if refresh {
        for r in st.refresh.values_mut() {
            r.used = true;
        }
    }
}

/// Revokes every family of `sub`; returns them, and journals it.
fn revoke_grant(st: &mut State, sub: &str) -> Vec<u64> {
    let mut families: Vec<u64> = st
        .access
        .values()
        .filter(|t| t.sub.as_deref() == Some(sub))
        .map(|t| t.family)
        .chain(
            st.refresh
                .values()
                .filter(|r| r.sub.as_deref() == Some(sub))
                .map(|r| r.family),
        )
        .collect();
    families.sort_unstable();
    families.dedup();
    for &family in &families {
        revoke_family(st, family);
    }
    st.record(
        None,
        unix_us(),
        Event::GrantRevoked {
            sub: sub.to_owned(),
            families: families.clone(),
        },
    );
    families
}

/// Revokes the token with this tag (a refresh token with its family), and journals it.
fn revoke_tag(st: &mut State, wanted: &str) -> Option<(&'static str, u64)> {
    let refresh = st
        .refresh
        .iter()
        .find(|(t, _)| tag(t) == wanted)
        .map(|(_, r)| (r.family, r.sub.clone()));
    let (kind, family, sub) = if let Some((family, sub)) = refresh {
        revoke_family(st, family);
        ("refresh_token", family, sub)
    } else {
        let issued = st.access.iter_mut().find(|(t, _)| tag(t) == wanted)?.1;
        issued.revoked = true;
        ("access_token", issued.family, issued.sub.clone())
    };
    st.record(
        None,
        unix_us(),
        Event::Revocation {
            token: wanted.to_owned(),
            kind: kind.to_owned(),
            family: Some(family),
            sub,
            control: true,
        },
    );
    Some((kind, family))
}

/// What the provider knows of the access or refresh token with this [`tag`], in the
/// manner of token introspection (RFC 7662, with RFC 9449 §6.2's `cnf.jkt` for a
/// DPoP-bound token); tokens themselves never appear.
fn token_info(st: &State, wanted: &str) -> Option<Value> {
    let mut x5t = None;
    let (mut info, jkt) = if let Some(t) = st.access.iter().find(|(t, _)| tag(t) == wanted) {
        let t = t.1;
        let active = !t.revoked && t.expires > Instant::now();
        let info = json!({
            "kind": "access_token",
            "active": active,
            "token_type": if t.jkt.is_some() { "DPoP" } else { "Bearer" },
            "scope": t.scope,
            "sub": t.sub,
            "family": t.family,
        });
        x5t.clone_from(&t.x5t);
        let mut info = info;
        if !t.aud.is_empty() {
            info["aud"] = json!(t.aud);
        }
        if let Some(act) = &t.act {
            info["act"] = json!({ "sub": act });
        }
        (info, t.jkt.clone())
    } else {
        let r = st.refresh.iter().find(|(t, _)| tag(t) == wanted)?.1;
        let info = json!({
            "kind": "refresh_token",
            "active": !r.revoked && !r.used,
            "scope": r.scope,
            "sub": r.sub,
            "family": r.family,
        });
        (info, r.jkt.clone())
    };
    if let Some(jkt) = jkt {
        info["cnf"] = json!({ "jkt": jkt });
    }
    if let Some(x5t) = x5t {
        info["cnf"]["x5t#S256"] = json!(x5t);
    }
    Some(info)
}

/// Starts a new family for `sub`, journals it, and returns the token response.
fn session(
    shared: &Shared,
    st: &mut State,
    sub: &str,
    scope: Option<&str>,
    label: Option<&str>,
) -> Value {
    st.note = TokenNote::default();
    let body = issue(
        st,
        &IssueFor {
            scope: scope.unwrap_or("openid"),
            with_refresh: true,
            family: None,
            sub: Some(sub),
            shared,
        },
    );
    let note = std::mem::take(&mut st.note);
    let event = Event::Session {
        sub: sub.to_owned(),
        family: note.family.unwrap_or_default(),
        access: note.access.unwrap_or_default(),
        refresh: note.refresh.unwrap_or_default(),
    };
    st.record(label, unix_us(), event);
    let mut body = body;
    body["family"] = json!(note.family);
    body
}

/// Revokes every access and refresh token of a family: a rotated refresh token was
/// presented again, so one of its holders is not who it should be.
fn revoke_family(st: &mut State, family: u64) {
    for t in st.access.values_mut().filter(|t| t.family == family) {
        t.revoked = true;
    }
    for r in st.refresh.values_mut().filter(|r| r.family == family) {
        r.revoked = true;
    }
}

/// A reply under construction.
struct Reply {
    status: u16,
    body: String,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": error, "error_description": description}),
    )
}

/// An api.video problem body, with the `name` its API adds.
fn problem(status: u16, slug: &str, title: &str) -> Reply {
    Reply::json(
        status,
        json!({"type": format!("https://docs.api.video/reference/{slug}"), "title": title, "name": slug, "status": status}),
    )
}

fn unsupported_media(dialect: Dialect, wanted: &str) -> Reply {
    let title = format!("the request body must be {wanted}");
    match dialect {
        Dialect::ApiVideo => problem(415, "unsupported-media-type", &title),
        Dialect::OAuth => oauth_error(415, "invalid_request", &title),
    }
}

/// Routes one request to its dialect's handler.
fn route(shared: &Shared, method: &str, url: &str, head: &Head, body: &[u8]) -> Reply {
    let (full_path, query) = url.split_once('?').unwrap_or((url, ""));
    // The mTLS aliases (RFC 8705 §5) of the OAuth endpoints: the same endpoints, for
    // connections that present a client certificate.
    let path = match full_path.strip_prefix("/mtls") {
        Some(rest) if rest.starts_with("/oauth2/") && shared.ca.is_some() => {
            if head.cert.is_none() {
                return oauth_error(
                    401,
                    "invalid_client",
                    "The mTLS endpoints need a client certificate.",
                );
            }
            rest
        }
        _ => full_path,
    };
    let cert = head.cert.as_deref();
    let authorization = head.authorization.as_deref();
    let label = head.label.as_deref();
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    // Checked on its own here, before the state is locked (a signature costs time).
    let proof = match path {
        "/auth/api-key" | "/auth/refresh" | "/oauth/token" | "/oauth2/token" => {
            proof_of(shared, method, full_path, head)
        }
        p if p == "/api" || p.starts_with("/api/") => proof_of(shared, method, path, head),
        _ => None,
    };
    let proof = proof.as_ref();
    match (method, path) {
        ("POST", "/auth/api-key" | "/auth/refresh") if !head.content_type_is(json) => {
            unsupported_media(Dialect::ApiVideo, json)
        }
        ("POST", "/oauth/token") if !head.content_type_is(json) => {
            unsupported_media(Dialect::OAuth, json)
        }
        ("POST", "/oauth2/token") if !head.content_type_is(form) => {
            unsupported_media(Dialect::OAuth, form)
        }
        ("POST", "/auth/api-key") => {
            let call = TokenCall {
                key: "apivideo/api_key",
                dialect: Dialect::ApiVideo,
                label,
                presented: None,
                proof,
                cert,
            };
            token_endpoint(shared, &call, |st| api_video_key(shared, st, body))
        }
        ("POST", "/auth/refresh") => {
            let params = json_params(body);
            let call = TokenCall {
                key: "apivideo/refresh",
                dialect: Dialect::ApiVideo,
                label,
                presented: params.get("refreshToken").map(String::as_str),
                proof,
                cert,
            };
            token_endpoint(shared, &call, |st| api_video_refresh(shared, st, body))
        }
        ("GET", "/oauth/authorize") | ("GET", "/oauth2/authorize") => authorize(shared, query),
        ("GET", "/device") => device_page(&shared.state.lock().behaviour),
        (
            "GET",
            "/.well-known/oauth-authorization-server" | "/.well-known/openid-configuration",
        ) => metadata(shared),
        ("POST", "/oauth2/device" | "/oauth2/revoke") if !head.content_type_is(form) => {
            unsupported_media(Dialect::OAuth, form)
        }
        ("POST", "/oauth2/device") => {
            let params: HashMap<String, String> =
                url::form_urlencoded::parse(body).into_owned().collect();
            device_authorization(shared, &params, authorization, cert)
        }
        ("POST", "/oauth2/revoke") => {
            let params: HashMap<String, String> =
                url::form_urlencoded::parse(body).into_owned().collect();
            revocation(shared, &params, authorization, label, cert)
        }
        ("POST", "/oauth/token") => {
            let params = json_params(body);
            let grant = params.get("grant_type").cloned().unwrap_or_default();
            let call = TokenCall {
                key: &format!("viewneo/{grant}"),
                dialect: Dialect::OAuth,
                label,
                presented: presented_refresh_token(&params),
                proof,
                cert,
            };
            token_endpoint(shared, &call, |st| {
                oauth_token(shared, st, &params, &[], None, cert)
            })
        }
        ("POST", "/oauth2/token") => {
            let repeated: Vec<(String, String)> =
                url::form_urlencoded::parse(body).into_owned().collect();
            let params: HashMap<String, String> = repeated.iter().cloned().collect();
            let grant = params.get("grant_type").cloned().unwrap_or_default();
            let call = TokenCall {
                key: &format!("oauth2/{grant}"),
                dialect: Dialect::OAuth,
                label,
                presented: presented_refresh_token(&params),
                proof,
                cert,
            };
            token_endpoint(shared, &call, |st| {
                if st.behaviour.vibe && authorization.is_none() {
                    return oauth_error(
                        401,
                        "invalid_client",
                        "Client authentication is only accepted through HTTP Basic.",
                    )
                    .header("www-authenticate", r#"Basic realm="authcore-devserver""#);
                }
                oauth_token(shared, st, &params, &repeated, authorization, cert)
            })
        }
        (_, p) if p.starts_with("/_control/") => {
            if head.loopback {
                control(shared, method, p, query, body, label)
            } else {
                oauth_error(403, "forbidden", "control is for loopback callers only")
            }
        }
        (_, p) if p == "/api" || p.starts_with("/api/") => resource(shared, p, query, head, proof),
        _ => Reply::json(404, json!({"title": "Not Found", "status": 404})),
    }
}

/// The request's DPoP proof checked on its own (`None`: it has no `DPoP` header), for
/// the URL as the provider sees it: its scheme, the `Host` header, the path.
fn proof_of(
    shared: &Shared,
    method: &str,
    path: &str,
    head: &Head,
) -> Option<Result<Proof, String>> {
    if head.dpop.is_empty() {
        return None;
    }
    let (scheme, authority) = shared
        .issuer
        .split_once("://")
        .unwrap_or(("http", shared.issuer.as_str()));
    let host = head.host.as_deref().unwrap_or(authority);
    let now = i64::try_from(unix_us() / 1_000_000).unwrap_or(i64::MAX);
    Some(dpop::check(
        &head.dpop,
        method,
        &format!("{scheme}://{host}{path}"),
        now,
    ))
}

/// Why a proof was not accepted.
enum ProofVerdict {
    /// Invalid, replayed, or not for this token: `invalid_dpop_proof`, with why.
    Invalid(String),
    /// Without the nonce demanded: `use_dpop_nonce`.
    Nonce,
}

/// A proof checked against the provider's state, and counted: good on its own; with
/// `expect` (resource requests), its `ath` that of the token and its key the one the
/// token is bound to (if it is); the current nonce, if one is demanded; no replay.
/// Returns the thumbprint of its key.
fn admit(
    st: &mut State,
    proof: &Result<Proof, String>,
    origin: Origin,
    expect: Option<(&str, Option<&str>)>,
) -> Result<String, ProofVerdict> {
    let invalid = |st: &mut State, why: &str| {
        st.counters.dpop_proofs_rejected += 1;
        Err(ProofVerdict::Invalid(why.to_owned()))
    };
    let proof = match proof {
        Ok(proof) => proof,
        Err(why) => return invalid(st, why),
    };
    if let Some((ath, bound)) = expect {
        match proof.ath.as_deref() {
            None => return invalid(st, "the proof has no ath"),
            Some(a) if a != ath => {
                return invalid(st, "the proof's ath is not the hash of this access token")
            }
            Some(_) => {}
        }
        if bound.is_some_and(|jkt| jkt != proof.jkt) {
            return invalid(
                st,
                "the proof's key is not the one the access token is bound to",
            );
        }
    }
    let b = &st.behaviour;
    let demand = b.dpop
        && match origin {
            Origin::As => b.dpop_as_nonce,
            Origin::Rs => b.dpop_rs_nonce,
        };
    let every = b.dpop_nonce_rotate_every;
    match st.dpop.admit(proof, origin, demand, every, Instant::now()) {
        Ok(()) => {
            st.counters.dpop_proofs_accepted += 1;
            Ok(proof.jkt.clone())
        }
        Err(Refusal::Nonce) => {
            match origin {
                Origin::As => st.counters.dpop_as_nonce_challenges += 1,
                Origin::Rs => st.counters.dpop_rs_nonce_challenges += 1,
            }
            Err(ProofVerdict::Nonce)
        }
        Err(Refusal::Replay) => {
            st.counters.dpop_replays_rejected += 1;
            Err(ProofVerdict::Invalid(
                "the proof was used before (its jti is not new)".into(),
            ))
        }
        Err(Refusal::Full) => invalid(st, "too many recent proofs to remember: try again shortly"),
    }
}

/// DPoP at a token endpoint (RFC 9449 §5), before anything else of the request is
/// used: with `dpop`, a proof is checked (its nonce too, if demanded) and its key noted
/// for the tokens to be issued; a request without one gets Bearer tokens, or a refusal
/// with `dpop_required`. Without `dpop`, a `DPoP` header is ignored, as a provider
/// without DPoP would.
fn token_dpop(st: &mut State, call: &TokenCall<'_>) -> Result<(), Reply> {
    let b = &st.behaviour;
    if !b.dpop {
        return Ok(());
    }
    let (required, bearer_only) = (b.dpop_required, b.dpop_bearer_only);
    let Some(proof) = call.proof else {
        if required {
            st.counters.dpop_proofs_missing += 1;
            return Err(oauth_error(
                400,
                "invalid_dpop_proof",
                "a DPoP proof is required",
            ));
        }
        return Ok(());
    };
    match admit(st, proof, Origin::As, None) {
        Ok(jkt) => {
            st.note.proof_jkt = Some(jkt);
            st.note.bind = !bearer_only;
            Ok(())
        }
        Err(ProofVerdict::Nonce) => Err(oauth_error(
            400,
            "use_dpop_nonce",
            "Authorization server requires nonce in DPoP proof (see the DPoP-Nonce header)",
        )),
        Err(ProofVerdict::Invalid(why)) => Err(oauth_error(400, "invalid_dpop_proof", &why)),
    }
}

/// DPoP at the resource (RFC 9449 §7), for a request with the `DPoP` scheme: one proof,
/// for this method and URL, with the token's `ath`, by the key the token is bound to,
/// with the resource server's current nonce if one is demanded.
fn resource_dpop(
    st: &mut State,
    token: &str,
    proof: Option<&Result<Proof, String>>,
    dpop_challenge: &dyn Fn(&str, &str) -> Reply,
) -> Result<(), (Reply, ResourceOutcome)> {
    let Some(proof) = proof else {
        st.counters.dpop_proofs_missing += 1;
        let reply = dpop_challenge("invalid_dpop_proof", "a DPoP proof is required");
        return Err((reply, ResourceOutcome::ProofRefused));
    };
    let bound = st.access.get(token).and_then(|t| t.jkt.clone());
    let ath = dpop::ath(token);
    match admit(st, proof, Origin::Rs, Some((&ath, bound.as_deref()))) {
        Ok(_) => Ok(()),
        Err(ProofVerdict::Nonce) => {
            let reply = dpop_challenge(
                "use_dpop_nonce",
                "Resource server requires nonce in DPoP proof (see the DPoP-Nonce header)",
            );
            Err((reply, ResourceOutcome::NonceRequired))
        }
        Err(ProofVerdict::Invalid(why)) => Err((
            dpop_challenge("invalid_dpop_proof", &why),
            ResourceOutcome::ProofRefused,
        )),
    }
}

/// The refresh token of a `refresh_token` grant request.
fn presented_refresh_token(params: &HashMap<String, String>) -> Option<&str> {
    (params.get("grant_type").map(String::as_str) == Some("refresh_token"))
        .then(|| params.get("refresh_token").map(String::as_str))
        .flatten()
}

#[derive(Clone, Copy)]
enum Dialect {
    ApiVideo,
    OAuth,
}

/// A token request as the shared endpoint code sees it: where it came in, and what
/// the journal records of it.
struct TokenCall<'a> {
    /// `dialect/grant`, as counted.
    key: &'a str,
    dialect: Dialect,
    /// The request's `X-Journal-Label`.
    label: Option<&'a str>,
    /// The refresh token presented, if any.
    presented: Option<&'a str>,
    /// The request's DPoP proof, checked on its own, if it has one.
    proof: Option<&'a Result<Proof, String>>,
    /// The client certificate the connection presented.
    cert: Option<&'a PeerCert>,
}

/// Counting, latency, fault injection and the journal, shared by every token endpoint.
fn token_endpoint(
    shared: &Shared,
    call: &TokenCall<'_>,
    grant: impl FnOnce(&mut State) -> Reply,
) -> Reply {
    let presented = call.presented.map(tag);
    let received_us = unix_us();
    let (latency, request) = {
        let mut st = shared.state.lock();
        st.counters.token_requests += 1;
        *st.counters
            .token_requests_by_grant
            .entry(call.key.to_owned())
            .or_default() += 1;
        st.requests += 1;
        let request = st.requests;
        st.record(
            call.label,
            received_us,
            Event::TokenReceived {
                request,
                grant: call.key.to_owned(),
                presented: presented.clone(),
            },
        );
        (Duration::from_millis(st.behaviour.latency_ms), request)
    };
    if !latency.is_zero() {
        thread::sleep(latency);
    }
    let mut st = shared.state.lock();
    st.note = TokenNote::default();
    st.note.cert_x5t = call.cert.map(|c| c.x5t.clone());
    let (mut reply, outcome) = answer(&mut st, call, grant);
    if st.behaviour.dpop && st.behaviour.dpop_as_nonce && outcome.is_none() {
        reply = reply.header("dpop-nonce", st.dpop.nonce(Origin::As).to_owned());
    }
    let note = std::mem::take(&mut st.note);
    let error = serde_json::from_str::<Value>(&reply.body)
        .ok()
        .and_then(|b| {
            b.get("error")
                .or_else(|| b.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let outcome = match outcome {
        Some(injected) => injected,
        None if reply.status == 200 => TokenOutcome::Issued,
        None if note.reuse => TokenOutcome::ReuseDetected,
        None if is_refusal(reply.status, error.as_deref()) => TokenOutcome::Refused,
        None => TokenOutcome::Error,
    };
    let event = Event::Token {
        request,
        grant: call.key.to_owned(),
        received_us,
        presented,
        outcome,
        status: reply.status,
        error: error.filter(|_| reply.status != 200),
        access: note.access,
        refresh: note.refresh,
        family: note.family,
        sub: note.sub,
        injected: note.injected || matches!(outcome, TokenOutcome::Fault | TokenOutcome::Malformed),
        jkt: note.bound_jkt,
        assertion: note.assertion,
        x5t: note.bound_x5t,
        subject: note.subject,
        actor: note.actor,
    };
    st.record(call.label, unix_us(), event);
    reply
}

/// Whether an error answer refuses the grant for good (RFC 6749 §5.2 and api.video).
fn is_refusal(status: u16, error: Option<&str>) -> bool {
    matches!(status, 400 | 401)
        && matches!(
            error,
            Some(
                "invalid_grant"
                    | "invalid_client"
                    | "unauthorized_client"
                    | "authentication-invalid-refresh-token"
                    | "authentication-invalid-api-key"
            )
        )
}

/// The answer to a token request: an injected fault or malformed body if one is armed
/// (with its outcome), else the grant's own.
fn answer(
    st: &mut State,
    call: &TokenCall<'_>,
    grant: impl FnOnce(&mut State) -> Reply,
) -> (Reply, Option<TokenOutcome>) {
    let grant_type = call.key.rsplit('/').next().unwrap_or("");
    if let Some(fault) = st.fault.as_mut() {
        let applies = fault.grant.as_deref().is_none_or(|g| g == grant_type);
        if fault.count > 0 && applies {
            fault.count -= 1;
            let (status, retry_after, html) = (fault.status, fault.retry_after, fault.html);
            let error = fault.error.clone();
            st.counters.faults_injected += 1;
            if error.as_deref() == Some("invalid_grant") {
                // A refusal: the refresh token presented is dead from now on.
                let family = call
                    .presented
                    .and_then(|p| st.refresh.get(p))
                    .map(|r| (r.family, r.sub.clone()));
                if let Some((family, sub)) = family {
                    revoke_family(st, family);
                    st.note.family = Some(family);
                    st.note.sub = sub;
                }
                st.note.injected = true;
                let reply = match call.dialect {
                    Dialect::ApiVideo => problem(
                        status,
                        "authentication-invalid-refresh-token",
                        "The refresh token is invalid.",
                    ),
                    Dialect::OAuth => oauth_error(status, "invalid_grant", "Injected refusal."),
                };
                return (reply, Some(TokenOutcome::Refused));
            }
            let mut reply = match call.dialect {
                _ if html => Reply {
                    status,
                    body: format!(
                        "<html><body><h1>{status}</h1>The service is unavailable.</body></html>"
                    ),
                    content_type: "text/html; charset=utf-8",
                    headers: Vec::new(),
                },
                Dialect::ApiVideo if status == 429 => {
                    problem(429, "too-many-requests", "Too many requests.")
                }
                Dialect::ApiVideo => problem(status, "server-error", "The server is unavailable."),
                Dialect::OAuth => oauth_error(
                    status,
                    error.as_deref().unwrap_or("temporarily_unavailable"),
                    "Injected fault.",
                ),
            };
            if let Some(secs) = retry_after {
                let name = match call.dialect {
                    Dialect::ApiVideo => "x-ratelimit-retry-after",
                    Dialect::OAuth => "retry-after",
                };
                reply = reply.header(name, secs.to_string());
            }
            return (reply, Some(TokenOutcome::Fault));
        }
    }
    if st.malformed.0 > 0 {
        st.malformed.0 -= 1;
        st.counters.faults_injected += 1;
        let body = match st.malformed.1 {
            Malformed::Html => "<html><body>Service temporarily unavailable</body></html>".into(),
            Malformed::HeaderInjection => json!({
                "access_token": "dev-at-injected\r\nX-Injected: yes",
                "token_type": "Bearer",
                "expires_in": 3600
            })
            .to_string(),
        };
        let reply = Reply {
            status: 200,
            body,
            content_type: "application/json",
            headers: Vec::new(),
        };
        return (reply, Some(TokenOutcome::Malformed));
    }
    if let Err(reply) = token_dpop(st, call) {
        return (reply, None);
    }
    (grant(st), None)
}

fn random_token(prefix: &str, serial: u64) -> String {
    let mut buf = [0u8; 18];
    getrandom::fill(&mut buf).expect("OS random source");
    format!(
        "{prefix}{serial}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
    )
}

/// What to issue: scope, whether with a refresh token, the family (a new one when
/// `None`) and whose tokens they are.
struct IssueFor<'a> {
    scope: &'a str,
    with_refresh: bool,
    family: Option<u64>,
    sub: Option<&'a str>,
    shared: &'a Shared,
}

/// Issues an access token, and a refresh token when asked, in the family asked for;
/// an ID token too for a user whose scope includes `openid`. Notes what it issued for
/// the journal.
fn issue(st: &mut State, what: &IssueFor<'_>) -> Value {
    st.serial += 1;
    let serial = st.serial;
    let family = what.family.unwrap_or(serial);
    let access = random_token("dev-at-", serial);
    let lifetime = st.behaviour.lifetime_secs;
    let scope = what.scope;
    let sub = what.sub.map(str::to_owned);
    // DPoP: the access token bound to the proof's key; the refresh token too when it
    // will be refreshed without a secret, or its predecessor was bound (RFC 9449 §5).
    let jkt = st.note.proof_jkt.clone().filter(|_| st.note.bind);
    let refresh_jkt = jkt
        .clone()
        .filter(|_| st.note.public_client || st.note.bound_refresh);
    // Mutual TLS: the access token bound to the certificate the connection presented
    // (RFC 8705 §3).
    let x5t = st.note.cert_x5t.clone();
    let client = client_of(what.shared, st.note.requester.as_deref());
    st.access.insert(
        access.clone(),
        Issued {
            expires: Instant::now() + Duration::from_secs(lifetime.min(MAX_LIFETIME_SECS)),
            revoked: false,
            scope: scope.to_owned(),
            family,
            sub: sub.clone(),
            jkt: jkt.clone(),
            x5t: x5t.clone(),
            aud: std::mem::take(&mut st.note.aud),
            act: st.note.act.take(),
            client: client.clone(),
        },
    );
    st.counters.tokens_issued += 1;
    st.note.bound_x5t = x5t;
    if jkt.is_some() {
        st.counters.dpop_tokens_issued += 1;
    }
    st.note.access = Some(tag(&access));
    st.note.family = Some(family);
    st.note.sub.clone_from(&sub);
    let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
    st.note.bound_jkt = jkt;
    let mut body =
        json!({"token_type": token_type, "expires_in": lifetime, "access_token": access});
    if what.with_refresh {
        let refresh = random_token("dev-rt-", serial);
        st.refresh.insert(
            refresh.clone(),
            Refresh {
                used: false,
                revoked: false,
                scope: scope.to_owned(),
                family,
                sub: sub.clone(),
                jkt: refresh_jkt,
                client,
            },
        );
        st.note.refresh = Some(tag(&refresh));
        body["refresh_token"] = Value::String(refresh);
    }
    if !scope.is_empty() {
        body["scope"] = Value::String(scope.to_owned());
    }
    if let Some(sub) = &sub {
        if scope.split_whitespace().any(|s| s == "openid") {
            let aud = st.note.client.as_deref();
            let aud = aud.unwrap_or(&what.shared.creds.client_id);
            body["id_token"] = Value::String(id_token(what.shared, sub, aud, lifetime));
        }
    }
    body
}

/// An OpenID Connect ID token for `sub`: a JWT signed with HS256 keyed by the client
/// secret (OIDC Core §10.1; the confidential client's also for the public client, which
/// has none: nothing checks it), audience the client id `aud`.
fn id_token(shared: &Shared, sub: &str, aud: &str, lifetime: u64) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = unix_us() / 1_000_000;
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let claims = json!({
        "iss": shared.issuer,
        "sub": sub,
        "aud": aud,
        "iat": now,
        "exp": now.saturating_add(lifetime),
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mac = hmac_sha256(
        shared.creds.client_secret.as_bytes(),
        signing_input.as_bytes(),
    );
    format!("{signing_input}.{}", b64(&mac))
}

/// HMAC-SHA-256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn json_params(body: &[u8]) -> HashMap<String, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect(),
        _ => HashMap::new(),
    }
}

fn api_video_key(shared: &Shared, st: &mut State, body: &[u8]) -> Reply {
    let params = json_params(body);
    // Its refresh endpoint takes no client authentication: a DPoP refresh token is bound.
    st.note.public_client = true;
    match params.get("apiKey") {
        Some(k) if *k == shared.creds.api_key => Reply::json(
            200,
            issue(
                st,
                &IssueFor {
                    scope: "",
                    with_refresh: true,
                    family: None,
                    sub: None,
                    shared,
                },
            ),
        ),
        _ => problem(
            401,
            "authentication-invalid-api-key",
            "The API key is invalid.",
        ),
    }
}

/// A refresh token taken: the scope, family and subject its successors get.
struct Taken {
    scope: String,
    family: u64,
    sub: Option<String>,
}

/// Why a refresh token was not taken.
enum NotTaken {
    /// Unknown, revoked or used: the dialect's own refusal.
    Invalid,
    /// Bound to a DPoP key, and the request had no proof by it: this answer.
    Dpop(Reply),
}

/// Takes a refresh token: valid once, then rotated away. Presenting a used one again
/// revokes its whole family. A DPoP-bound one is taken only with a proof by its key;
/// without one it is refused and left as it was (neither used nor its family revoked:
/// whoever presented it may not hold it).
fn take_refresh(
    shared: &Shared,
    st: &mut State,
    token: Option<&String>,
) -> Result<Taken, NotTaken> {
    let Some(entry) = token.and_then(|t| st.refresh.get_mut(t)) else {
        return Err(NotTaken::Invalid);
    };
    st.note.family = Some(entry.family);
    st.note.sub.clone_from(&entry.sub);
    if entry.revoked {
        return Err(NotTaken::Invalid);
    }
    // Another client's refresh token: refused and left as it was.
    if entry.client != client_of(shared, st.note.requester.as_deref()) {
        return Err(NotTaken::Invalid);
    }
    if let Some(bound) = &entry.jkt {
        let refusal = match st.note.proof_jkt.as_deref() {
            None => Some(oauth_error(
                400,
                "invalid_dpop_proof",
                "the refresh token is bound to a DPoP key: a proof by that key is required",
            )),
            Some(jkt) if jkt != bound => Some(oauth_error(
                400,
                "invalid_grant",
                "the refresh token is bound to another DPoP key",
            )),
            Some(_) => None,
        };
        if let Some(reply) = refusal {
            st.counters.dpop_refresh_binding_refused += 1;
            return Err(NotTaken::Dpop(reply));
        }
    }
    if entry.used {
        let family = entry.family;
        st.note.reuse = true;
        revoke_family(st, family);
        return Err(NotTaken::Invalid);
    }
    entry.used = true;
    st.note.bound_refresh = entry.jkt.is_some();
    Ok(Taken {
        scope: entry.scope.clone(),
        family: entry.family,
        sub: entry.sub.clone(),
    })
}

/// Issues the successors of a refresh token taken.
fn issue_after(shared: &Shared, st: &mut State, taken: &Taken) -> Value {
    issue(
        st,
        &IssueFor {
            scope: &taken.scope,
            with_refresh: true,
            family: Some(taken.family),
            sub: taken.sub.as_deref(),
            shared,
        },
    )
}

fn api_video_refresh(shared: &Shared, st: &mut State, body: &[u8]) -> Reply {
    let params = json_params(body);
    st.note.public_client = true;
    match take_refresh(shared, st, params.get("refreshToken")) {
        Ok(taken) => Reply::json(200, issue_after(shared, st, &taken)),
        Err(NotTaken::Dpop(reply)) => reply,
        Err(NotTaken::Invalid) => problem(
            400,
            "authentication-invalid-refresh-token",
            "The refresh token is invalid.",
        ),
    }
}

/// RFC 8414 metadata of the standard OAuth dialect (also served as OpenID Connect
/// Discovery).
fn metadata(shared: &Shared) -> Reply {
    let base = &shared.issuer;
    let mut metadata = json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/oauth2/authorize"),
            "token_endpoint": format!("{base}/oauth2/token"),
            "device_authorization_endpoint": format!("{base}/oauth2/device"),
            "revocation_endpoint": format!("{base}/oauth2/revoke"),
            "scopes_supported": shared.creds.scopes,
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
                                      "urn:ietf:params:oauth:grant-type:device_code", JWT_BEARER,
                                      TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
    });
    let revocation = shared.state.lock().behaviour.revocation_endpoint;
    if shared.ca.is_some() {
        // Mutual TLS (RFC 8705): every connection is asked for a certificate, and the
        // aliases are the same endpoints under /mtls (which insist on one).
        metadata["token_endpoint_auth_methods_supported"] = json!([
            "client_secret_basic",
            "client_secret_post",
            "none",
            "tls_client_auth",
            "self_signed_tls_client_auth"
        ]);
        metadata["tls_client_certificate_bound_access_tokens"] = json!(true);
        let mut aliases = json!({
            "token_endpoint": format!("{base}/mtls/oauth2/token"),
            "device_authorization_endpoint": format!("{base}/mtls/oauth2/device"),
        });
        if revocation {
            aliases["revocation_endpoint"] = json!(format!("{base}/mtls/oauth2/revoke"));
        }
        metadata["mtls_endpoint_aliases"] = aliases;
    }
    if !revocation {
        if let Some(m) = metadata.as_object_mut() {
            m.remove("revocation_endpoint");
        }
    }
    Reply::json(200, metadata)
}

/// Device authorization (RFC 8628 §3.1–3.2): codes for a device, polled every second.
fn device_authorization(
    shared: &Shared,
    params: &HashMap<String, String>,
    authorization: Option<&str>,
    cert: Option<&PeerCert>,
) -> Reply {
    let mut st = shared.state.lock();
    let dpop = st.behaviour.dpop;
    let mtls = mtls_client(&st, params, authorization, cert);
    if !client_authenticated(shared, &mut st, params, authorization)
        && !public_client(shared, dpop, params, authorization)
        && mtls.is_none()
    {
        return oauth_error(401, "invalid_client", "Client authentication failed.");
    }
    let client = caller(shared, mtls, params, authorization);
    st.serial += 1;
    let serial = st.serial;
    let device_code = random_token("dev-device-", serial);
    let user_code = format!("DEV-{:04}", serial % 10_000);
    st.devices.insert(
        device_code.clone(),
        Device {
            client,
            scope: params.get("scope").cloned().unwrap_or_default(),
            polls: 0,
            last_poll: None,
            sub: params
                .get("login_hint")
                .cloned()
                .unwrap_or_else(|| DEFAULT_SUBJECT.to_owned()),
        },
    );
    st.counters.device_authorizations += 1;
    let base = &shared.issuer;
    Reply::json(
        200,
        json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": format!("{base}/device"),
            "verification_uri_complete": format!("{base}/device?user_code={user_code}"),
            "expires_in": 600,
            "interval": 1,
        }),
    )
}

/// The page at the device authorizations' `verification_uri`: there is nothing to enter,
/// since the provider decides by itself (its behaviour's device switches); it says so.
/// The query (`user_code`) is not echoed.
fn device_page(behaviour: &Behaviour) -> Reply {
    let polls = behaviour.device_pending_polls;
    let outcome = if behaviour.device_deny {
        "denies it (<code>access_denied</code>), as <code>device_deny</code> asks"
    } else {
        "approves it"
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>authcore devserver: device sign-in</title></head><body>\n\
         <h1>Nothing to do here</h1>\n\
         <p>The authcore development provider needs no one at this page: it decides every \
         device code by itself. It answers the device's first {polls} poll(s) with \
         <code>authorization_pending</code>, then {outcome}, for the user named by the \
         request's <code>login_hint</code> (default <code>{DEFAULT_SUBJECT}</code>). \
         The waiting program gets its answer within seconds; you can close this page.</p>\n\
         <p><code>POST /_control/config</code> changes this: <code>device_pending_polls</code>, \
         <code>device_slow_down_polls</code>, <code>device_deny</code>.</p>\n</body></html>\n"
    );
    Reply {
        status: 200,
        body,
        content_type: "text/html; charset=utf-8",
        headers: Vec::new(),
    }
}

/// A device access token request (RFC 8628 §3.4–3.5): pending (or `slow_down`) for as
/// many polls as the behaviour says, then approved (or denied). A poll sooner than the
/// interval is answered `slow_down` as the RFC asks.
fn device_poll(shared: &Shared, st: &mut State, params: &HashMap<String, String>) -> Reply {
    let (pending, slow_down, deny) = (
        st.behaviour.device_pending_polls,
        st.behaviour.device_slow_down_polls,
        st.behaviour.device_deny,
    );
    let client = client_of(shared, st.note.requester.as_deref());
    let Some(device) = params
        .get("device_code")
        .and_then(|c| st.devices.get_mut(c))
    else {
        return oauth_error(
            400,
            "invalid_grant",
            "The device code is unknown or was used.",
        );
    };
    if device.client != client {
        return oauth_error(
            400,
            "invalid_grant",
            "The device code was issued to another client.",
        );
    }
    let now = Instant::now();
    let too_soon = device
        .last_poll
        .is_some_and(|t| now.duration_since(t) < Duration::from_millis(900));
    device.last_poll = Some(now);
    if too_soon {
        return oauth_error(400, "slow_down", "Polling too often.");
    }
    device.polls += 1;
    if device.polls <= slow_down {
        return oauth_error(400, "slow_down", "Polling too often.");
    }
    if device.polls <= pending {
        return oauth_error(
            400,
            "authorization_pending",
            "The user has not approved yet.",
        );
    }
    let (scope, sub) = (device.scope.clone(), device.sub.clone());
    if let Some(code) = params.get("device_code") {
        st.devices.remove(code);
    }
    if deny {
        return oauth_error(400, "access_denied", "The user denied the device.");
    }
    let body = issue(
        st,
        &IssueFor {
            scope: &scope,
            with_refresh: true,
            family: None,
            sub: Some(&sub),
            shared,
        },
    );
    Reply::json(200, body)
}

/// Token revocation (RFC 7009): an access or refresh token (and, for a refresh token,
/// every token of its family) stops working; an unknown token is success too.
fn revocation(
    shared: &Shared,
    params: &HashMap<String, String>,
    authorization: Option<&str>,
    label: Option<&str>,
    cert: Option<&PeerCert>,
) -> Reply {
    let mut st = shared.state.lock();
    let dpop = st.behaviour.dpop;
    let mtls = mtls_client(&st, params, authorization, cert);
    if !client_authenticated(shared, &mut st, params, authorization)
        && !public_client(shared, dpop, params, authorization)
        && mtls.is_none()
    {
        return oauth_error(401, "invalid_client", "Client authentication failed.");
    }
    let Some(token) = params.get("token") else {
        return oauth_error(400, "invalid_request", "token is required");
    };
    // A token is revoked only by the client it was issued to (RFC 7009 §2.1).
    let client = caller(shared, mtls, params, authorization);
    let issued_to = st
        .refresh
        .get(token)
        .map(|r| &r.client)
        .or_else(|| st.access.get(token).map(|t| &t.client));
    if issued_to.is_some_and(|c| *c != client) {
        return oauth_error(
            400,
            "unauthorized_client",
            "The token was issued to another client.",
        );
    }
    st.counters.revocations += 1;
    let (kind, family, sub) =
        if let Some((family, sub)) = st.refresh.get(token).map(|r| (r.family, r.sub.clone())) {
            revoke_family(&mut st, family);
            ("refresh_token", Some(family), sub)
        } else if let Some(issued) = st.access.get_mut(token) {
            issued.revoked = true;
            ("access_token", Some(issued.family), issued.sub.clone())
        } else {
            ("unknown", None, None)
        };
    st.record(
        label,
        unix_us(),
        Event::Revocation {
            token: tag(token),
            kind: kind.to_owned(),
            family,
            sub,
            control: false,
        },
    );
    Reply {
        status: 200,
        body: String::new(),
        content_type: "text/plain",
        headers: Vec::new(),
    }
}

fn authorize(shared: &Shared, query: &str) -> Reply {
    let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let client_id = match q.get("client_id") {
        Some(id) if *id == shared.creds.client_id || *id == shared.creds.public_client_id => {
            id.clone()
        }
        _ => return oauth_error(400, "invalid_request", "unknown client_id or response_type"),
    };
    if q.get("response_type").map(String::as_str) != Some("code") {
        return oauth_error(400, "invalid_request", "unknown client_id or response_type");
    }
    let Some(redirect) = q.get("redirect_uri").and_then(|r| url::Url::parse(r).ok()) else {
        return oauth_error(400, "invalid_request", "redirect_uri is required");
    };
    let mut st = shared.state.lock();
    st.serial += 1;
    let code = random_token("dev-code-", st.serial);
    if q.contains_key("code_challenge")
        && q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return oauth_error(
            400,
            "invalid_request",
            "only S256 code challenges are supported",
        );
    }
    st.codes.insert(
        code.clone(),
        Code {
            client_id,
            redirect_uri: redirect.to_string(),
            challenge: q.get("code_challenge").cloned(),
            scope: q.get("scope").cloned().unwrap_or_default(),
            sub: q
                .get("login_hint")
                .cloned()
                .unwrap_or_else(|| DEFAULT_SUBJECT.to_owned()),
        },
    );
    let mut location = redirect;
    {
        let mut pairs = location.query_pairs_mut();
        pairs.append_pair("code", &code);
        if let Some(state) = q.get("state") {
            pairs.append_pair("state", state);
        }
        pairs.append_pair("iss", &shared.issuer);
    }
    Reply {
        status: 302,
        body: String::new(),
        content_type: "text/plain",
        headers: vec![("location", location.to_string())],
    }
}

/// The request is the public client `dev-cli`'s: its id, and no credential of any kind.
fn is_public_client_id(
    shared: &Shared,
    params: &HashMap<String, String>,
    authorization: Option<&str>,
) -> bool {
    params.get("client_id") == Some(&shared.creds.public_client_id)
        && authorization.is_none()
        && !params.contains_key("client_secret")
        && !params.contains_key("client_assertion")
}

/// The client of a token request whose `requester` (see [`TokenNote`]) is a mutual-TLS
/// client or the public client (`None`: the confidential client): what it is issued
/// belongs to that client.
fn client_of(shared: &Shared, requester: Option<&str>) -> String {
    requester.map_or_else(|| shared.creds.client_id.clone(), str::to_owned)
}

/// The client a revocation or device authorization request comes from (authenticated
/// by the caller): the mutual-TLS client `mtls`, the public client by its id, else the
/// confidential client.
fn caller(
    shared: &Shared,
    mtls: Option<String>,
    params: &HashMap<String, String>,
    authorization: Option<&str>,
) -> String {
    mtls.unwrap_or_else(|| {
        let public = is_public_client_id(shared, params, authorization);
        let id = if public {
            &shared.creds.public_client_id
        } else {
            &shared.creds.client_id
        };
        id.clone()
    })
}

/// A public client (RFC 6749 §2.1): its id in the body, and no secret anywhere. The
/// registered public client always; the confidential client's id too in DPoP mode.
fn public_client(
    shared: &Shared,
    dpop: bool,
    params: &HashMap<String, String>,
    authorization: Option<&str>,
) -> bool {
    let known = match params.get("client_id") {
        Some(id) if *id == shared.creds.public_client_id => true,
        Some(id) if *id == shared.creds.client_id => dpop,
        _ => false,
    };
    // No credential of any kind: a request with an assertion that failed is not the
    // public client (else `caller` would take it for the confidential one).
    known
        && authorization.is_none()
        && !params.contains_key("client_secret")
        && !params.contains_key("client_assertion")
}

/// The mTLS client (RFC 8705 §2) a request authenticates as: its `client_id` (in the
/// body, with no secret and no Basic credentials) is one of `mtls_clients`, and the
/// connection presented a certificate that matches its registration — for
/// `tls_client_auth` issued by the provider's CA with that subject, for
/// `self_signed_tls_client_auth` with that thumbprint.
fn mtls_client(
    st: &State,
    params: &HashMap<String, String>,
    authorization: Option<&str>,
    cert: Option<&PeerCert>,
) -> Option<String> {
    if authorization.is_some() || params.contains_key("client_secret") {
        return None;
    }
    let (id, cert) = (params.get("client_id")?, cert?);
    st.behaviour
        .mtls_clients
        .iter()
        .filter(|c| c.client_id == *id)
        .find(|c| match (&c.tls_client_auth_subject_dn, &c.thumbprint) {
            (Some(dn), _) => cert.ca_issued && cert.subject == *dn,
            (None, Some(x5t)) => cert.x5t == *x5t,
            (None, None) => false,
        })
        .map(|c| c.client_id.clone())
}

/// The audiences the provider accepts in assertions: its issuer and its endpoints.
fn audiences(shared: &Shared) -> Vec<String> {
    [
        "",
        "/oauth2/token",
        "/oauth/token",
        "/oauth2/revoke",
        "/oauth2/device",
    ]
    .iter()
    .map(|path| format!("{}{path}", shared.issuer))
    .collect()
}

/// The client's credentials in a request, if it presents any: Basic, a secret or an
/// assertion in the body.
fn presents_client_credentials(
    params: &HashMap<String, String>,
    authorization: Option<&str>,
) -> bool {
    authorization.is_some_and(|h| h.starts_with("Basic "))
        || params.contains_key("client_secret")
        || params.contains_key("client_assertion")
}

/// Client authentication by an assertion (RFC 7523 §2.2) from the test issuer, about the
/// registered client: `None` when the request carries none, else why it is refused.
fn client_assertion(
    shared: &Shared,
    st: &mut State,
    params: &HashMap<String, String>,
) -> Option<Result<(), String>> {
    let assertion = params.get("client_assertion")?;
    let tag = st.assertion_presented(assertion);
    st.note.assertion.get_or_insert(tag);
    let checked = (|| {
        if params.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return Err("client_assertion_type must be jwt-bearer".to_owned());
        }
        if params
            .get("client_id")
            .is_some_and(|id| *id != shared.creds.client_id)
        {
            return Err("unknown client".to_owned());
        }
        let verified = shared.test_issuer.verify(
            assertion,
            &audiences(shared),
            Some(&shared.creds.client_id),
        )?;
        st.assertions_seen.take(&verified)
    })();
    st.assertion_verdict(&checked);
    Some(checked)
}

/// Client authentication: Basic (form-encoded per RFC 6749 §2.3.1, or raw), body, or
/// an assertion from the test issuer.
fn client_authenticated(
    shared: &Shared,
    st: &mut State,
    params: &HashMap<String, String>,
    authorization: Option<&str>,
) -> bool {
    if let Some(verdict) = client_assertion(shared, st, params) {
        return verdict.is_ok();
    }
    let (id, secret) = (&shared.creds.client_id, &shared.creds.client_secret);
    if let Some(b64) = authorization.and_then(|h| h.strip_prefix("Basic ")) {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let decode = |s: &str| -> String {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let encoded_ok = raw
            .split_once(':')
            .is_some_and(|(u, p)| decode(u) == *id && decode(p) == *secret);
        return encoded_ok || raw == format!("{id}:{secret}");
    }
    params.get("client_id") == Some(id) && params.get("client_secret") == Some(secret)
}

fn oauth_token(
    shared: &Shared,
    st: &mut State,
    params: &HashMap<String, String>,
    repeated: &[(String, String)],
    authorization: Option<&str>,
    cert: Option<&PeerCert>,
) -> Reply {
    let grant = params.get("grant_type").map(String::as_str);
    let by_assertion = client_assertion(shared, st, params);
    if let Some(Err(why)) = &by_assertion {
        return oauth_error(
            401,
            "invalid_client",
            &format!("Client authentication failed: {why}."),
        );
    }
    let mtls = mtls_client(st, params, authorization, cert);
    let public = by_assertion.is_none()
        && !client_authenticated(shared, st, params, authorization)
        && mtls.is_none();
    let public_allowed = matches!(
        grant,
        Some(
            "authorization_code" | "refresh_token" | "urn:ietf:params:oauth:grant-type:device_code"
        )
    ) && public_client(shared, st.behaviour.dpop, params, authorization);
    // A JWT bearer grant may come without client authentication (RFC 7523 §3.1), but
    // credentials that are presented must be right.
    let unauthenticated_bearer =
        grant == Some(JWT_BEARER) && !presents_client_credentials(params, authorization);
    if public && !public_allowed && !unauthenticated_bearer {
        return oauth_error(401, "invalid_client", "Client authentication failed.")
            .header("www-authenticate", r#"Basic realm="authcore-devserver""#);
    }
    st.note.public_client = public;
    st.note.client = params
        .get("client_id")
        .filter(|id| public && **id == shared.creds.public_client_id)
        .cloned();
    st.note.requester = mtls.clone().or_else(|| st.note.client.clone());
    match grant {
        Some("client_credentials") => {
            let requested = params.get("scope").cloned().unwrap_or_default();
            let unknown = requested
                .split_whitespace()
                .find(|s| !shared.creds.scopes.iter().any(|a| a == s));
            if let Some(s) = unknown {
                return oauth_error(
                    400,
                    "invalid_scope",
                    &format!("scope {s} is not permitted for this client"),
                );
            }
            let scope = if requested.is_empty() {
                shared.creds.scopes.join(" ")
            } else {
                requested
            };
            let client = mtls.unwrap_or_else(|| shared.creds.client_id.clone());
            let body = issue(
                st,
                &IssueFor {
                    scope: &scope,
                    with_refresh: false,
                    family: None,
                    sub: Some(&client),
                    shared,
                },
            );
            Reply::json(200, body)
        }
        Some("authorization_code") => {
            let Some(code) = params.get("code").and_then(|c| st.codes.remove(c)) else {
                return oauth_error(
                    400,
                    "invalid_grant",
                    "The authorization code is invalid or was already used.",
                );
            };
            if params.get("redirect_uri") != Some(&code.redirect_uri) {
                return oauth_error(
                    400,
                    "invalid_grant",
                    "redirect_uri does not match the authorization request.",
                );
            }
            // A code is redeemed by the client it was issued to (a mutual-TLS client
            // redeems no code: none is issued to one).
            if code.client_id != client_of(shared, st.note.requester.as_deref()) {
                return oauth_error(
                    400,
                    "invalid_grant",
                    "The authorization code was issued to another client.",
                );
            }
            if public && code.challenge.is_none() {
                return oauth_error(400, "invalid_grant", "A public client must use PKCE.");
            }
            if let Some(challenge) = &code.challenge {
                let verifier = params.get("code_verifier").cloned().unwrap_or_default();
                let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(Sha256::digest(verifier.as_bytes()));
                if computed != *challenge {
                    return oauth_error(400, "invalid_grant", "PKCE verification failed.");
                }
            }
            let body = issue(
                st,
                &IssueFor {
                    scope: &code.scope,
                    with_refresh: true,
                    family: None,
                    sub: Some(&code.sub),
                    shared,
                },
            );
            Reply::json(200, body)
        }
        Some("urn:ietf:params:oauth:grant-type:device_code") => device_poll(shared, st, params),
        Some(JWT_BEARER) => jwt_bearer(shared, st, params),
        Some(TOKEN_EXCHANGE) => token_exchange(shared, st, params, repeated),
        Some("refresh_token") => match take_refresh(shared, st, params.get("refresh_token")) {
            Ok(taken) => Reply::json(200, issue_after(shared, st, &taken)),
            Err(NotTaken::Dpop(reply)) => reply,
            Err(NotTaken::Invalid) => oauth_error(
                400,
                "invalid_grant",
                "The refresh token is invalid, expired or was already used.",
            ),
        },
        _ => oauth_error(
            400,
            "unsupported_grant_type",
            "The grant type is not supported.",
        ),
    }
}

/// The `grant_type` of the JWT bearer grant (RFC 7523 §2.1).
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The JWT bearer grant: an assertion from the test issuer or signed by a key in
/// `jwt_bearer_keys`, for this provider, not expired, its `jti` not seen before. The
/// token belongs to the assertion's `sub`; no refresh token.
fn jwt_bearer(shared: &Shared, st: &mut State, params: &HashMap<String, String>) -> Reply {
    let Some(assertion) = params.get("assertion") else {
        return oauth_error(400, "invalid_request", "assertion is required");
    };
    // The grant's assertion is the one the journal names.
    st.note.assertion = Some(st.assertion_presented(assertion));
    let verified = test_issuer::verify_grant(
        &shared.test_issuer,
        &st.behaviour.jwt_bearer_keys,
        assertion,
        &audiences(shared),
    )
    .and_then(|v| st.assertions_seen.take(&v).map(|()| v));
    st.assertion_verdict(&verified);
    let verified = match verified {
        Ok(v) => v,
        Err(why) => return oauth_error(400, "invalid_grant", &format!("{why}.")),
    };
    let requested = params.get("scope").cloned().unwrap_or_default();
    if let Some(s) = requested
        .split_whitespace()
        .find(|s| !shared.creds.scopes.iter().any(|a| a == s))
    {
        return oauth_error(400, "invalid_scope", &format!("scope {s} is not permitted"));
    }
    let scope = if requested.is_empty() {
        shared.creds.scopes.join(" ")
    } else {
        requested
    };
    let body = issue(
        st,
        &IssueFor {
            scope: &scope,
            with_refresh: false,
            family: None,
            sub: Some(&verified.sub),
            shared,
        },
    );
    Reply::json(200, body)
}

/// The token-exchange grant type (RFC 8693 §2.1).
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The one token type the provider takes and issues in an exchange: its own access tokens.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Token exchange (RFC 8693): a live access token of this provider (the subject,
/// optionally with an actor token) exchanged for a new one of the subject's, for the
/// audiences and resources asked for, with at most the subject token's scope.
fn token_exchange(
    shared: &Shared,
    st: &mut State,
    params: &HashMap<String, String>,
    repeated: &[(String, String)],
) -> Reply {
    let all = |name: &str| -> Vec<String> {
        let many: Vec<String> = repeated
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect();
        if many.is_empty() {
            params.get(name).cloned().into_iter().collect()
        } else {
            many
        }
    };
    let Some(subject) = params.get("subject_token").filter(|t| !t.is_empty()) else {
        return oauth_error(400, "invalid_request", "subject_token is required.");
    };
    st.note.subject = Some(tag(subject));
    let actor = params.get("actor_token").filter(|t| !t.is_empty());
    st.note.actor = actor.map(|a| tag(a));
    match params.get("subject_token_type").map(String::as_str) {
        None => return oauth_error(400, "invalid_request", "subject_token_type is required."),
        Some(ACCESS_TOKEN_TYPE) => {}
        Some(_) => {
            return oauth_error(
                400,
                "invalid_request",
                "This provider exchanges its own access tokens only (subject_token_type urn:ietf:params:oauth:token-type:access_token).",
            )
        }
    }
    if actor.is_some() != params.contains_key("actor_token_type") {
        return oauth_error(
            400,
            "invalid_request",
            "actor_token and actor_token_type go together.",
        );
    }
    if actor.is_some()
        && params.get("actor_token_type").map(String::as_str) != Some(ACCESS_TOKEN_TYPE)
    {
        return oauth_error(
            400,
            "invalid_request",
            "This provider takes its own access tokens only as actor tokens.",
        );
    }
    if params
        .get("requested_token_type")
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return oauth_error(
            400,
            "invalid_request",
            "This provider issues access tokens only (requested_token_type).",
        );
    }
    let live = |st: &State, token: &str| {
        st.access
            .get(token)
            .filter(|t| !t.revoked && t.expires > Instant::now())
            .map(|t| (t.scope.clone(), t.sub.clone()))
    };
    let Some((subject_scope, sub)) = live(st, subject) else {
        return oauth_error(400, "invalid_grant", "The subject token is not active.");
    };
    let act = match actor {
        Some(actor) => match live(st, actor) {
            Some((_, actor_sub)) => actor_sub,
            None => return oauth_error(400, "invalid_grant", "The actor token is not active."),
        },
        None => None,
    };
    let mut targets = all("audience");
    let resources = all("resource");
    if let Some(bad) = resources
        .iter()
        .find(|r| url::Url::parse(r).map_or(true, |u| u.fragment().is_some()))
    {
        return oauth_error(
            400,
            "invalid_target",
            &format!("resource {bad:?} is not an absolute URI without a fragment"),
        );
    }
    targets.extend(resources);
    if targets
        .iter()
        .any(|t| t.is_empty() || t.len() > 512 || t.chars().any(char::is_control))
    {
        return oauth_error(
            400,
            "invalid_target",
            "An audience is empty or not printable.",
        );
    }
    let requested = params.get("scope").cloned().unwrap_or_default();
    if let Some(s) = requested
        .split_whitespace()
        .find(|s| !subject_scope.split_whitespace().any(|have| have == *s))
    {
        return oauth_error(
            400,
            "invalid_scope",
            &format!("scope {s} is not in the subject token's scope"),
        );
    }
    let scope = if requested.is_empty() {
        subject_scope
    } else {
        requested.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    st.note.aud = targets;
    st.note.act = act;
    let mut body = issue(
        st,
        &IssueFor {
            scope: &scope,
            with_refresh: false,
            family: None,
            sub: sub.as_deref(),
            shared,
        },
    );
    body["issued_token_type"] = Value::String(ACCESS_TOKEN_TYPE.to_owned());
    Reply::json(200, body)
}

fn resource(
    shared: &Shared,
    path: &str,
    query: &str,
    head: &Head,
    proof: Option<&Result<Proof, String>>,
) -> Reply {
    let vibe = shared.state.lock().behaviour.vibe;
    // Vibe's API answers errors in its own envelope.
    let error = |status: u16, kind: &str, title: &str| {
        if vibe {
            Reply::json(
                status,
                json!({"error": {"type": kind, "title": title, "status": status}}),
            )
        } else {
            Reply::json(status, json!({"error": kind, "error_description": title}))
        }
    };
    let challenge = |error_code: &str, description: &str| {
        error(401, error_code, description).header(
            "www-authenticate",
            format!(r#"Bearer realm="authcore-devserver", error="{error_code}", error_description="{description}""#),
        )
    };
    let dpop_challenge = |error_code: &str, description: &str| {
        let description = description.replace(['"', '\\'], "'");
        error(401, error_code, &description).header(
            "www-authenticate",
            format!(
                r#"DPoP error="{error_code}", error_description="{description}", algs="{}""#,
                dpop::ALGS
            ),
        )
    };
    let authorization = head.authorization.as_deref().unwrap_or("");
    let (dpop_scheme, token) = match authorization.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("DPoP") => (true, token),
        _ => (false, authorization.strip_prefix("Bearer ").unwrap_or("")),
    };
    let presented = Presented {
        token,
        dpop_scheme,
        proof,
    };
    let mut st = shared.state.lock();
    let (sub, family) = st
        .access
        .get(token)
        .map_or((None, None), |t| (t.sub.clone(), Some(t.family)));
    let (reply, outcome) = match path {
        "/api/redirect" => redirect(query),
        _ => resource_verdict(
            shared,
            &mut st,
            path,
            head,
            &presented,
            vibe,
            &error,
            &challenge,
            &dpop_challenge,
        ),
    };
    let reply = match &sub {
        Some(sub) => reply.header("x-sub", sub.clone()),
        None => reply,
    };
    let reply = if st.behaviour.dpop && st.behaviour.dpop_rs_nonce {
        reply.header("dpop-nonce", st.dpop.nonce(Origin::Rs).to_owned())
    } else {
        reply
    };
    let event = Event::Resource {
        path: path.to_owned(),
        token: (!token.is_empty()).then(|| tag(token)),
        sub,
        family,
        outcome,
    };
    st.record(head.label.as_deref(), unix_us(), event);
    reply
}

/// `/api/redirect?to=URL[&status=302]`: a redirect to a loopback URL (another
/// devserver, another port or scheme), for tests of what clients send after one.
fn redirect(query: &str) -> (Reply, ResourceOutcome) {
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let bad = |title: &str| {
        let reply = Reply::json(400, json!({"title": title, "status": 400}));
        (reply, ResourceOutcome::BadRequest)
    };
    let status = match params.get("status").map(String::as_str) {
        None => 302,
        Some(s) => match s.parse::<u16>() {
            Ok(s @ (301 | 302 | 303 | 307 | 308)) => s,
            _ => return bad("status must be 301, 302, 303, 307 or 308"),
        },
    };
    let target = params.get("to").and_then(|to| url::Url::parse(to).ok());
    let Some(target) = target.filter(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(is_loopback_authority)
    }) else {
        return bad("to must be an http or https URL on a loopback host");
    };
    let reply = Reply::json(status, json!({"location": target.as_str()}))
        .header("location", target.as_str());
    (reply, ResourceOutcome::Redirected)
}

/// The token of a resource request, as presented.
struct Presented<'a> {
    /// The token (empty: none).
    token: &'a str,
    /// Presented with the `DPoP` scheme rather than `Bearer`.
    dpop_scheme: bool,
    /// The request's DPoP proof, checked on its own, if it has one.
    proof: Option<&'a Result<Proof, String>>,
}

/// The answer to a resource request, and its verdict for the journal.
#[allow(clippy::too_many_arguments)]
fn resource_verdict(
    shared: &Shared,
    st: &mut State,
    path: &str,
    head: &Head,
    presented: &Presented<'_>,
    vibe: bool,
    error: &dyn Fn(u16, &str, &str) -> Reply,
    challenge: &dyn Fn(&str, &str) -> Reply,
    dpop_challenge: &dyn Fn(&str, &str) -> Reply,
) -> (Reply, ResourceOutcome) {
    let (token, dpop_scheme) = (presented.token, presented.dpop_scheme);
    if vibe && head.vibe_revision.is_none() {
        let reply = error(
            400,
            "invalid_request",
            "the X-Vibe-Revision header is required",
        );
        return (reply, ResourceOutcome::BadRequest);
    }
    if path == "/api/reject" {
        st.counters.resource_rejected_invalid += 1;
        let reply = challenge("invalid_token", "This API refuses every token");
        return (reply, ResourceOutcome::Rejected);
    }
    if dpop_scheme {
        if let Err(refused) = resource_dpop(st, token, presented.proof, dpop_challenge) {
            return refused;
        }
    }
    let invalid_token = |description: &str| {
        if dpop_scheme {
            dpop_challenge("invalid_token", description)
        } else {
            challenge("invalid_token", description)
        }
    };
    let not_bound = "The access token is not DPoP-bound: present it as Bearer";
    if token == shared.creds.personal_access_token {
        if dpop_scheme {
            st.counters.resource_rejected_invalid += 1;
            let reply = dpop_challenge("invalid_token", not_bound);
            return (reply, ResourceOutcome::SchemeMismatch);
        }
        st.counters.resource_accepted += 1;
        let reply = Reply::json(200, json!({"ok": true, "path": path, "scope": "personal"}));
        return (reply, ResourceOutcome::Accepted);
    }
    let verdict = st.access.get(token).map(|t| {
        (
            t.revoked,
            t.expires <= Instant::now(),
            t.scope.clone(),
            t.sub.clone(),
            t.jkt.clone(),
            t.x5t.clone(),
        )
    });
    match verdict {
        None => {
            st.counters.resource_rejected_invalid += 1;
            let reply = invalid_token("The access token is unknown or revoked");
            (reply, ResourceOutcome::Unknown)
        }
        Some((true, ..)) => {
            st.counters.resource_rejected_invalid += 1;
            let reply = invalid_token("The access token is unknown or revoked");
            (reply, ResourceOutcome::Revoked)
        }
        Some((false, true, ..)) => {
            st.counters.resource_rejected_expired += 1;
            let reply = invalid_token("The access token expired");
            (reply, ResourceOutcome::Expired)
        }
        Some((false, false, _, _, jkt, _)) if jkt.is_some() != dpop_scheme => {
            st.counters.resource_rejected_invalid += 1;
            let reply = if dpop_scheme {
                dpop_challenge("invalid_token", not_bound)
            } else {
                dpop_challenge(
                    "invalid_token",
                    "The access token is DPoP-bound: present it with the DPoP scheme and a proof",
                )
            };
            (reply, ResourceOutcome::SchemeMismatch)
        }
        Some((false, false, _, _, _, Some(x5t)))
            if head.cert.as_ref().map(|c| c.x5t.as_str()) != Some(x5t.as_str()) =>
        {
            st.counters.resource_rejected_invalid += 1;
            let reply = invalid_token(
                "The access token is bound to a client certificate this connection did not present",
            );
            (reply, ResourceOutcome::CertificateMismatch)
        }
        Some((false, false, scope, sub, jkt, x5t)) => {
            if path.starts_with("/api/admin") && !scope.split_whitespace().any(|s| s == "admin") {
                let reply = Reply::json(
                    403,
                    json!({"error": {"type": "insufficient_scope", "title": "Forbidden", "status": 403, "detail": {"required": "admin"}}}),
                )
                .header(
                    "www-authenticate",
                    format!(
                        r#"{} error="insufficient_scope", scope="admin""#,
                        if dpop_scheme { "DPoP" } else { "Bearer" }
                    ),
                );
                return (reply, ResourceOutcome::Forbidden);
            }
            st.counters.resource_accepted += 1;
            let mut body = json!({"ok": true, "path": path, "scope": scope, "sub": sub});
            if let Some(jkt) = jkt {
                body["cnf"] = json!({ "jkt": jkt });
            }
            if let Some(x5t) = x5t {
                body["cnf"]["x5t#S256"] = json!(x5t);
            }
            (Reply::json(200, body), ResourceOutcome::Accepted)
        }
    }
}

fn control(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    label: Option<&str>,
) -> Reply {
    let mut st = shared.state.lock();
    let parsed = || serde_json::from_slice::<Value>(if body.is_empty() { b"{}" } else { body });
    let bad = |e: serde_json::Error| {
        Reply::json(
            400,
            json!({"title": format!("bad control body: {e}"), "status": 400}),
        )
    };
    match (method, path) {
        ("GET", "/_control/counters") => {
            Reply::json(200, serde_json::to_value(&st.counters).unwrap_or_default())
        }
        ("GET", "/_control/journal") => {
            let since = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "since")
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or(0);
            Reply::json(
                200,
                serde_json::to_value(st.journal_since(since)).unwrap_or_default(),
            )
        }
        ("POST", "/_control/session") => match parsed() {
            Ok(v) => match v.get("sub").and_then(Value::as_str) {
                Some(sub) if !sub.is_empty() => {
                    let scope = v.get("scope").and_then(Value::as_str);
                    Reply::json(200, session(shared, &mut st, sub, scope, label))
                }
                _ => Reply::json(400, json!({"title": "sub is required", "status": 400})),
            },
            Err(e) => bad(e),
        },
        ("POST", "/_control/revoke_grant") => match parsed() {
            Ok(v) => match v.get("sub").and_then(Value::as_str) {
                Some(sub) => {
                    let families = revoke_grant(&mut st, sub);
                    Reply::json(200, json!({"families": families}))
                }
                None => Reply::json(400, json!({"title": "sub is required", "status": 400})),
            },
            Err(e) => bad(e),
        },
        ("POST", "/_control/revoke_token") => match parsed() {
            Ok(v) => match v
                .get("tag")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| v.get("token").and_then(Value::as_str).map(tag))
            {
                Some(wanted) => match revoke_tag(&mut st, &wanted) {
                    Some((kind, family)) => {
                        Reply::json(200, json!({"kind": kind, "family": family}))
                    }
                    None => Reply::json(404, json!({"title": "no such token", "status": 404})),
                },
                None => Reply::json(
                    400,
                    json!({"title": "tag (or token) is required", "status": 400}),
                ),
            },
            Err(e) => bad(e),
        },
        ("POST", "/_control/config") => {
            match parsed().and_then(serde_json::from_value::<Behaviour>) {
                Ok(b) => match b.validate() {
                    Ok(()) => {
                        let event = Event::Config {
                            lifetime_secs: b.lifetime_secs,
                            latency_ms: b.latency_ms,
                        };
                        st.record(label, unix_us(), event);
                        st.behaviour = b;
                        Reply::json(200, serde_json::to_value(&st.behaviour).unwrap_or_default())
                    }
                    Err(message) => Reply::json(400, json!({"title": message, "status": 400})),
                },
                Err(e) => bad(e),
            }
        }
        ("POST", "/_control/fail") => match parsed().and_then(serde_json::from_value::<Fault>) {
            Ok(f) => {
                let event = Event::FaultArmed {
                    kind: "fail".into(),
                    count: f.count,
                    status: Some(f.status),
                    error: f.error.clone(),
                };
                st.record(label, unix_us(), event);
                st.fault = Some(f);
                Reply::json(200, json!({"ok": true}))
            }
            Err(e) => bad(e),
        },
        ("POST", "/_control/malformed") => {
            let kind = parsed().and_then(|v| {
                serde_json::from_value::<Malformed>(v.get("kind").cloned().unwrap_or(json!("html")))
            });
            match (parsed(), kind) {
                (Ok(v), Ok(kind)) => {
                    let count = v.get("count").and_then(Value::as_u64).unwrap_or(1);
                    let count = u32::try_from(count).unwrap_or(u32::MAX);
                    let event = Event::FaultArmed {
                        kind: "malformed".into(),
                        count,
                        status: None,
                        error: serde_json::to_value(kind)
                            .ok()
                            .and_then(|k| k.as_str().map(str::to_owned)),
                    };
                    st.record(label, unix_us(), event);
                    st.malformed = (count, kind);
                    Reply::json(200, json!({"ok": true}))
                }
                (Err(e), _) | (_, Err(e)) => bad(e),
            }
        }
        ("POST", "/_control/revoke") => match parsed() {
            Ok(v) => {
                revoke(
                    &mut st,
                    v.get("refresh").and_then(Value::as_bool).unwrap_or(false),
                );
                Reply::json(200, json!({"ok": true}))
            }
            Err(e) => bad(e),
        },
        ("POST", "/_control/dpop_rotate") => {
            st.dpop.rotate(Origin::As);
            st.dpop.rotate(Origin::Rs);
            Reply::json(
                200,
                json!({"as_nonce": st.dpop.nonce(Origin::As), "rs_nonce": st.dpop.nonce(Origin::Rs)}),
            )
        }
        ("GET", "/_control/token") => {
            let wanted = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "tag")
                .map(|(_, v)| v.into_owned());
            match wanted.and_then(|wanted| token_info(&st, &wanted)) {
                Some(info) => Reply::json(200, info),
                None => Reply::json(404, json!({"title": "no such token", "status": 404})),
            }
        }
        ("GET", "/_control/test_issuer/jwks") => Reply::json(200, shared.test_issuer.jwks()),
        ("POST", "/_control/test_issuer/mint") => {
            match parsed().and_then(serde_json::from_value::<test_issuer::Mint>) {
                Ok(mint) => match shared.test_issuer.mint(mint) {
                    Ok(jwt) => {
                        Reply::json(200, json!({"jwt": jwt, "iss": shared.test_issuer.id()}))
                    }
                    Err(message) => Reply::json(400, json!({"title": message, "status": 400})),
                },
                Err(e) => bad(e),
            }
        }
        ("POST", "/_control/client_certificate") => match (parsed(), &shared.ca) {
            (Ok(v), Some(ca)) => {
                let cn = v
                    .get("cn")
                    .and_then(Value::as_str)
                    .unwrap_or("authcore-client");
                let self_signed = v
                    .get("self_signed")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                match client_certificate(ca, cn, self_signed) {
                    Ok(answer) => Reply::json(200, answer),
                    Err(title) => Reply::json(500, json!({"title": title, "status": 500})),
                }
            }
            (Ok(_), None) => Reply::json(
                404,
                json!({"title": "client certificates need TLS mode (--tls-dir)", "status": 404}),
            ),
            (Err(e), _) => bad(e),
        },
        ("POST", "/_control/reset") => {
            *st = State::default();
            Reply::json(200, json!({"ok": true}))
        }
        _ => Reply::json(404, json!({"title": "unknown control", "status": 404})),
    }
}

/// A throwaway CA (its certificate written to `dir/ca.pem`) and a server certificate
/// for the loopback names signed by it, as a TLS server configuration that asks for a
/// client certificate (any: it is judged per client, see [`mtls_client`]).
fn throwaway_tls(dir: &Path) -> io::Result<(Arc<rustls::ServerConfig>, TlsCa)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let fail = |e: &dyn std::fmt::Display| io::Error::other(format!("TLS set-up: {e}"));
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| fail(&e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "authcore devserver throwaway CA");
    let ca_key = KeyPair::generate().map_err(|e| fail(&e))?;
    let ca = ca_params.self_signed(&ca_key).map_err(|e| fail(&e))?;
    let key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params.clone(), ca_key);
    let server_key = KeyPair::generate().map_err(|e| fail(&e))?;
    let names = vec![
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        "localhost".to_owned(),
    ];
    let server = CertificateParams::new(names)
        .map_err(|e| fail(&e))?
        .signed_by(&server_key, &issuer)
        .map_err(|e| fail(&e))?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der())
        .map_err(|e| fail(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).map_err(|e| fail(&e))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| fail(&e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(&e))?
        .with_client_cert_verifier(Arc::new(AnyClientCert(provider)))
        .with_single_cert(vec![server.der().clone()], key)
        .map_err(|e| fail(&e))?;
    let ca = TlsCa {
        params: ca_params,
        key_pem,
        verifier,
        file: dir.join("ca.pem"),
    };
    Ok((Arc::new(config), ca))
}

/// Asks every connection for a client certificate and takes any (or none) whose key
/// the connection proves to hold: which client a certificate authenticates, if any, is
/// decided per request ([`mtls_client`]), as servers with self-signed registrations do.
#[derive(Debug)]
struct AnyClientCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::server::danger::ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client certificate and key for `cn` (`O=authcore devserver` too), issued by the
/// provider's CA, or self-signed: its PEMs, subject and thumbprint, as JSON.
fn client_certificate(ca: &TlsCa, cn: &str, self_signed: bool) -> Result<Value, String> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
    let fail = |e: rcgen::Error| format!("cannot make the certificate: {e}");
    let key = KeyPair::generate().map_err(fail)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "authcore devserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = if self_signed {
        params.self_signed(&key).map_err(fail)?
    } else {
        let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(fail)?;
        params
            .signed_by(&key, &Issuer::new(ca.params.clone(), ca_key))
            .map_err(fail)?
    };
    let subject = x509_parser::parse_x509_certificate(cert.der())
        .map(|(_, c)| c.subject().to_string())
        .map_err(|e| format!("cannot read the certificate: {e}"))?;
    Ok(json!({
        "certificate": cert.pem(),
        "key": key.serialize_pem(),
        "subject": subject,
        "x5t#S256": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(cert.der())),
    }))
}
