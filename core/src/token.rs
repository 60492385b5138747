//! [`Token`] and tolerant parsing of token endpoint responses.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Map, Value};

use crate::clock;
use crate::error::{self, Error, Result};
use crate::secret::{Secret, WipedJson};

/// Lifetimes longer than this are treated as this (keeps `Instant` arithmetic sane).
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Upper bound of the renew-ahead window.
const MAX_RENEW_AHEAD: Duration = Duration::from_secs(300);
/// Upper bound of the safety margin before expiry.
const MAX_EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// Where a token stands in its life at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Usable, and not yet due for renewal.
    Fresh,
    /// Usable, but inside the renew-ahead window: one caller should renew it.
    Stale,
    /// Not to be sent any more.
    Expired,
}

/// An access token with what is known about its life.
///
/// Expiry is measured from the moment the token request was sent, so network latency
/// can only make authcore renew early, never late — on both the monotonic clock and the
/// wall clock: a token is as stale as the further advanced of the two says. (Linux's
/// monotonic clock stops during suspend; the wall clock does not, so a laptop waking up
/// does not send a token that expired while it slept.)
///
/// Renewal rule: a token with lifetime `L` is renewed ahead from `L/5` (at most 5 min)
/// before its expiry and is no longer sent from `L/20` (at most 30 s) before it. The
/// window scales with `L` so that a 1 s token renews 200 ms early while a 15-day token
/// is not renewed days ahead; the margin covers the request's own travel time.
#[derive(Clone)]
pub struct Token {
    access_token: Secret,
    header: Secret,
    token_type: String,
    refresh_token: Option<Secret>,
    scope: Option<String>,
    lifetime: Option<Duration>,
    issued_at: Instant,
    renew_at: Option<Instant>,
    expire_at: Option<Instant>,
    /// The same two moments on the wall clock.
    renew_wall: Option<SystemTime>,
    expire_wall: Option<SystemTime>,
    /// The renewal moment on the cheap clocks, for the cached-token path.
    fresh_until: clock::Cutoff,
    /// The least margin before expiry at which the token is no longer sent.
    min_margin: Duration,
    /// When the token request was sent, on the wall clock.
    issued_wall: SystemTime,
    /// The OpenID Connect ID token that came with it, if any.
    id_token: Option<Secret>,
    /// The token response's other fields (never a token or a secret).
    fields: Option<Arc<Map<String, Value>>>,
    /// The DPoP key the token is bound to (a `DPoP` token), if any.
    dpop_key: Option<Arc<crate::DpopKey>>,
    /// What the server says it issued (RFC 8693 §2.2.1 `issued_token_type`), if it said.
    issued_token_type: Option<String>,
}

impl Token {
    /// A token with an optional lifetime, counted from `issued_at`.
    pub fn new(
        access_token: impl Into<Secret>,
        token_type: Option<&str>,
        lifetime: Option<Duration>,
        issued_at: Instant,
    ) -> Self {
        let access_token = access_token.into();
        let token_type = match token_type {
            None => "Bearer".to_owned(),
            Some(t) if t.eq_ignore_ascii_case("bearer") || t.is_empty() => "Bearer".to_owned(),
            Some(t) if t.eq_ignore_ascii_case("dpop") => "DPoP".to_owned(),
            Some(t) => t.to_owned(),
        };
        let header = Secret::new(format!("{token_type} {}", access_token.expose_secret()));
        let lifetime = lifetime.map(|l| l.min(MAX_LIFETIME));
        // The wall-clock time at which the request was sent.
        let issued_wall = SystemTime::now()
            .checked_sub(Instant::now().saturating_duration_since(issued_at))
            .unwrap_or(UNIX_EPOCH);
        let mut token = Token {
            access_token,
            header,
            token_type,
            refresh_token: None,
            scope: None,
            lifetime,
            issued_at,
            renew_at: None,
            expire_at: None,
            renew_wall: None,
            expire_wall: None,
            fresh_until: clock::Cutoff::NEVER,
            min_margin: Duration::ZERO,
            issued_wall,
            id_token: None,
            fields: None,
            dpop_key: None,
            issued_token_type: None,
        };
        token.set_windows(issued_wall);
        token
    }

    /// The token with an expiry margin of at least `margin` (for APIs whose clocks run
    /// ahead): it is no longer sent from `margin` before expiry (at most 90 % of its
    /// lifetime), and renewed ahead no later than that.
    pub fn with_expiry_margin(mut self, margin: Duration) -> Self {
        self.min_margin = margin;
        self.set_windows(self.issued_wall);
        self
    }

    /// Computes the renewal and expiry moments on both clocks.
    fn set_windows(&mut self, issued_wall: SystemTime) {
        self.set_wall_issue(issued_wall);
        if let (Some((ahead, margin)), Some(l)) = (self.windows(), self.lifetime) {
            self.renew_at = self.issued_at.checked_add(l - ahead);
            self.expire_at = self.issued_at.checked_add(l - margin);
        }
        self.fresh_until = clock::Cutoff::new(self.renew_at, self.renew_wall);
    }

    /// The renew-ahead window and the expiry margin, for a token with a lifetime: `L/5`
    /// (at most 5 min) and `L/20` (at most 30 s), or the configured minimum margin if
    /// larger (at most 90 % of `L`), the window never smaller than the margin.
    fn windows(&self) -> Option<(Duration, Duration)> {
        let l = self.lifetime?;
        let margin = (l / 20)
            .min(MAX_EXPIRY_MARGIN)
            .max(self.min_margin.min(l.mul_f64(0.9)));
        Some(((l / 5).min(MAX_RENEW_AHEAD).max(margin), margin))
    }

    /// Sets the wall-clock moments from the wall-clock time the request was sent.
    fn set_wall_issue(&mut self, issued_wall: SystemTime) {
        self.issued_wall = issued_wall;
        if let (Some((ahead, margin)), Some(l)) = (self.windows(), self.lifetime) {
            self.renew_wall = issued_wall.checked_add(l - ahead);
            self.expire_wall = issued_wall.checked_add(l - margin);
            self.fresh_until = clock::Cutoff::new(self.renew_at, self.renew_wall);
        }
    }

    /// Whether the token needs no renewal yet, on the cheap clocks: `true` only when
    /// [`freshness`](Self::freshness) would say [`Freshness::Fresh`] a moment earlier.
    #[inline]
    pub(crate) fn fresh_now(&self) -> bool {
        self.fresh_until.is_after(clock::now())
    }

    /// A token that never expires (personal access tokens, static bearer tokens).
    pub fn never_expiring(access_token: impl Into<Secret>) -> Self {
        Token::new(access_token, None, None, Instant::now())
    }

    /// Attaches a refresh token.
    pub fn with_refresh_token(mut self, refresh_token: Option<Secret>) -> Self {
        self.refresh_token = refresh_token;
        self
    }

    /// Attaches the granted scope.
    pub fn with_scope(mut self, scope: Option<String>) -> Self {
        self.scope = scope;
        self
    }

    /// Attaches the type of token the server says it issued (a token exchange's
    /// `issued_token_type`, RFC 8693 §2.2.1), e.g.
    /// `urn:ietf:params:oauth:token-type:access_token`. A value that is empty, longer
    /// than 1 KiB or holds a control character is dropped.
    pub fn with_issued_token_type(mut self, issued_token_type: Option<String>) -> Self {
        self.issued_token_type = issued_token_type
            .filter(|t| !t.is_empty() && t.len() <= 1024 && !t.chars().any(char::is_control));
        self
    }

    /// The type of token the server says it issued: a token exchange's
    /// `issued_token_type` (RFC 8693 §2.2.1, e.g.
    /// `urn:ietf:params:oauth:token-type:access_token`, see
    /// [`grant::token_type`](crate::grant::token_type)). `None` when the answer did not
    /// say (every grant but token exchange).
    pub fn issued_token_type(&self) -> Option<&str> {
        self.issued_token_type.as_deref()
    }

    /// The token bound to a DPoP key (RFC 9449): sent as `DPoP <token>` with a proof
    /// signed by that key. `None` leaves the token as it is.
    pub fn with_dpop_key(mut self, key: Option<Arc<crate::DpopKey>>) -> Self {
        if let Some(key) = key {
            self.token_type = "DPoP".to_owned();
            self.header = Secret::new(format!("DPoP {}", self.access_token.expose_secret()));
            self.dpop_key = Some(key);
        }
        self
    }

    /// The DPoP key this token is bound to: every request that carries it needs a proof
    /// signed by this key. `None` for a bearer token.
    pub fn dpop_key(&self) -> Option<&Arc<crate::DpopKey>> {
        self.dpop_key.as_ref()
    }

    /// The access token.
    pub fn access_token(&self) -> &Secret {
        &self.access_token
    }

    /// The full `Authorization` header value, e.g. `Bearer abc…`.
    pub fn authorization_header(&self) -> &Secret {
        &self.header
    }

    /// The token type, normalised so that any spelling of bearer reads `Bearer`.
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// The refresh token that came with this token, if any.
    pub fn refresh_token(&self) -> Option<&Secret> {
        self.refresh_token.as_ref()
    }

    /// The granted scope, if the server said.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The OpenID Connect ID token that came with this token, if any (a credential:
    /// redacted in `Debug`).
    pub fn id_token(&self) -> Option<&Secret> {
        self.id_token.as_ref()
    }

    /// The user this token was issued to: the `sub` claim of its ID token (read, not
    /// verified: the ID token came from the token endpoint over the connection that
    /// authenticated the server). `None` without an ID token.
    pub fn subject(&self) -> Option<String> {
        let claims = jwt_claims(self.id_token.as_ref()?.expose_secret())?;
        let sub = claims.0.get("sub")?.as_str()?;
        let printable = !sub.is_empty() && sub.len() <= 255 && !sub.chars().any(char::is_control);
        printable.then(|| sub.to_owned())
    }

    /// The token response's other fields as the server sent them (e.g. `user_id`,
    /// `instance_url`, `refresh_token_expires_in`): every field except those whose name
    /// says they hold a credential, at any depth (inside nested objects and arrays too),
    /// in any case style (`access_token`, `accessToken`, `Access-Token`, `ACCESS_TOKEN`
    /// are one name). Dropped: names ending in `token` (but not `token_type`), `key`,
    /// `jwt` or `session_id`; names containing `secret`, `password`, `passwd`,
    /// `passphrase`, `credential`, `assertion`, `verifier` (`code_verifier`), `api_key`,
    /// `private_key` or `cookie`; `code`, `auth_code`, `authorization_code` and
    /// `device_code`. Empty for a token not from a token response.
    pub fn fields(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.fields
            .as_deref()
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// When the token expires by the server's word (the time the request was sent plus
    /// the lifetime granted), on the wall clock; `None` if it never expires. The token is
    /// no longer sent a little before this moment (see [`expires_at`](Self::expires_at)).
    pub fn expires_at_system(&self) -> Option<SystemTime> {
        self.issued_wall.checked_add(self.lifetime?)
    }

    /// The lifetime granted, if known.
    pub fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }

    /// When the token request was sent.
    pub fn issued_at(&self) -> Instant {
        self.issued_at
    }

    /// From when the token is no longer sent (expiry less the safety margin).
    pub fn expires_at(&self) -> Option<Instant> {
        self.expire_at
    }

    /// From when the token is due for renewal ahead of expiry.
    pub fn renew_at(&self) -> Option<Instant> {
        self.renew_at
    }

    /// Where the token stands at monotonic instant `now` and at the current wall-clock
    /// time: the worse of what the two clocks say.
    #[inline]
    pub fn freshness(&self, now: Instant) -> Freshness {
        if self.expire_at.is_none() {
            return Freshness::Fresh;
        }
        self.freshness_at(now, SystemTime::now())
    }

    /// Where the token stands at monotonic instant `now` and wall-clock time `wall`.
    pub fn freshness_at(&self, now: Instant, wall: SystemTime) -> Freshness {
        let past = |i: Option<Instant>, w: Option<SystemTime>| {
            i.is_some_and(|i| now >= i) || w.is_some_and(|w| wall >= w)
        };
        if past(self.expire_at, self.expire_wall) {
            Freshness::Expired
        } else if past(self.renew_at, self.renew_wall) {
            Freshness::Stale
        } else {
            Freshness::Fresh
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("refresh_token", &self.refresh_token)
            .field("scope", &self.scope)
            .field("lifetime", &self.lifetime)
            .field("id_token", &self.id_token)
            .field("dpop_key", &self.dpop_key)
            .field("issued_token_type", &self.issued_token_type)
            .finish()
    }
}

/// Field names that hold a credential, compared in normalised form (see
/// [`is_credential_field`]): a name that contains one of these anywhere…
const CREDENTIAL_ANYWHERE: &[&str] = &[
    "secret",
    "password",
    "passwd",
    "passphrase",
    "credential",
    "assertion",
    "verifier",
    "apikey",
    "privatekey",
    "cookie",
];
/// …or ends with one of these (`access_token`, `idToken`, `mac_key`, `session_id`,
/// `client_jwt`), also in the plural (`refresh_tokens`, `tokens`, `keys`)…
const CREDENTIAL_ENDINGS: &[&str] = &["token", "key", "jwt", "sessionid"];
/// …or is one of these (authorization and device codes), also in the plural.
const CREDENTIAL_NAMES: &[&str] = &["code", "authcode", "authorizationcode", "devicecode"];
/// Names that end like a credential but describe one (`token_type`,
/// `issued_token_type`), unless they contain a word of [`CREDENTIAL_ANYWHERE`]
/// (`client_secret_token_type` is a credential).
const NOT_CREDENTIAL_ENDINGS: &[&str] = &["tokentype"];

/// Whether a token response field holds a credential (kept out of [`Token::fields`]).
///
/// The name is normalised first, so that every case style is one name: ASCII letters
/// lowercased and everything that is not an ASCII letter or digit dropped
/// (`refresh_token`, `refreshToken`, `Refresh-Token`, `REFRESH_TOKEN` are all
/// `refreshtoken`; `apiKey`, `api_key`, `API-KEY` are `apikey`). A normalised name that
/// is empty (a name of only punctuation or non-ASCII letters) is taken for a credential
/// too: what it is cannot be told. Then, in this order: a name that contains a word of
/// [`CREDENTIAL_ANYWHERE`] is a credential; one that (after one trailing `s` is
/// dropped, for plurals) ends in `tokentype` is not; one that (again without one
/// trailing `s`) ends in a word of [`CREDENTIAL_ENDINGS`] or is one of
/// [`CREDENTIAL_NAMES`] is.
pub(crate) fn is_credential_field(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if n.is_empty() || CREDENTIAL_ANYWHERE.iter().any(|w| n.contains(w)) {
        return true;
    }
    let singular = n.strip_suffix('s').unwrap_or(&n);
    if NOT_CREDENTIAL_ENDINGS.iter().any(|e| singular.ends_with(e)) {
        return false;
    }
    CREDENTIAL_ENDINGS.iter().any(|e| singular.ends_with(e)) || CREDENTIAL_NAMES.contains(&singular)
}

/// A field value without any credential nested in it: objects lose their credential
/// fields at every depth (some providers nest a second token, e.g. an `authed_user`
/// object with its own `access_token`), arrays are filtered item by item.
fn without_credentials(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !is_credential_field(k))
                .map(|(k, v)| (k.clone(), without_credentials(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_credentials).collect()),
        other => other.clone(),
    }
}

fn string_field(map: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match map.get(*k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}

/// `expires_in` as integer, float or string; zero, negative or junk mean "unknown".
fn expires_in(map: &Map<String, Value>) -> Option<Duration> {
    let secs = match map.get("expires_in").or_else(|| map.get("expiresIn"))? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (secs.is_finite() && secs > 0.0)
        .then(|| Duration::from_secs_f64(secs.min(MAX_LIFETIME.as_secs_f64())))
}

/// A JWT's claims (its payload, not verified), wiped when dropped.
fn jwt_claims(token: &str) -> Option<WipedJson> {
    let payload = token.split('.').nth(1)?;
    let bytes = zeroize::Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?,
    );
    serde_json::from_slice(&bytes).ok().map(WipedJson)
}

/// The remaining lifetime from a JWT's `exp` claim, if the token is a JWT.
fn jwt_lifetime(token: &str) -> Option<Duration> {
    let claims = jwt_claims(token)?;
    let exp = claims.0.get("exp")?.as_f64()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    let left = exp - now;
    (left.is_finite() && left > 0.0)
        .then(|| Duration::from_secs_f64(left.min(MAX_LIFETIME.as_secs_f64())))
}

/// RFC 6750 `b64token` characters: what may follow `Bearer ` in a header.
pub(crate) fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// RFC 9110 `token` characters: an authentication scheme name.
fn is_scheme_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses a 2xx token response body.
///
/// Tolerates every quirk in the provider notes: string or float `expires_in`, zero or
/// missing lifetime (then the JWT `exp` claim, then `default_lifetime`), missing or
/// lowercase `token_type`, camelCase keys, unknown fields. A 2xx carrying an OAuth
/// error is an OAuth error; one without `access_token` is an invalid response, and so is
/// an access token that is not an RFC 6750 `b64token` or a token type that is not an
/// RFC 9110 token (CR, LF, NUL, spaces …), so that no host can paste them into a header.
/// The parsed copy of the body is wiped before returning.
pub fn parse_token_response(
    status: u16,
    body: &[u8],
    sent_at: Instant,
    default_lifetime: Option<Duration>,
) -> Result<Token> {
    let parsed = WipedJson(serde_json::from_slice::<Value>(body).unwrap_or(Value::Null));
    let map = match &parsed.0 {
        Value::Object(map) => map,
        _ => {
            return Err(Error::invalid(
                status,
                "token response is not a JSON object",
                body,
            ))
        }
    };
    if let Some(e) = error::oauth_error(map, Some(status)) {
        return Err(Error::OAuth(e));
    }
    let Some(access) = string_field(map, &["access_token", "accessToken", "token"]) else {
        return Err(Error::invalid(
            status,
            "token response has no access_token",
            body,
        ));
    };
    let access = Secret::new(access);
    if !is_b64token(access.expose_secret()) {
        return Err(Error::invalid(
            status,
            "the access token has characters a bearer token may not have (RFC 6750 b64token)",
            body,
        ));
    }
    let token_type = string_field(map, &["token_type", "tokenType"]);
    if token_type.as_deref().is_some_and(|t| !is_scheme_token(t)) {
        return Err(Error::invalid(
            status,
            "the token type is not a valid authentication scheme name",
            body,
        ));
    }
    let lifetime = expires_in(map)
        .or_else(|| jwt_lifetime(access.expose_secret()))
        .or(default_lifetime);
    let mut token = Token::new(access, token_type.as_deref(), lifetime, sent_at);
    token.refresh_token = string_field(map, &["refresh_token", "refreshToken"]).map(Secret::new);
    token.scope = string_field(map, &["scope"]);
    token.id_token = string_field(map, &["id_token"]).map(Secret::new);
    let mut token =
        token.with_issued_token_type(string_field(map, &["issued_token_type", "issuedTokenType"]));
    let fields = match without_credentials(&parsed.0) {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    if !fields.is_empty() {
        token.fields = Some(Arc::new(fields));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {

    #[test]
    fn details_of_the_response_are_kept_and_credentials_are_not() {
        let body = br#"{"access_token":"at-1a2b3c","token_type":"bearer","expires_in":3600,
            "refresh_token":"rt-9z8y","id_token":"eyJ.id.tok","scope":"read",
            "user_id":"u-42","instance_url":"https://na1.example","refresh_token_expires_in":86400,
            "mac_key":"k-secret","client_secret":"cs","session_token":"st"}"#;
        let before = SystemTime::now();
        let t = parse_token_response(200, body, Instant::now(), None).unwrap();
        assert_eq!(t.id_token().map(|s| s.expose_secret()), Some("eyJ.id.tok"));
        let keys: Vec<&str> = t.fields().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "expires_in",
                "instance_url",
                "refresh_token_expires_in",
                "scope",
                "token_type",
                "user_id"
            ]
        );
        assert!(!format!("{t:?}").contains("eyJ.id.tok"));
        let at = t.expires_at_system().unwrap();
        let left = at.duration_since(before).unwrap();
        assert!(
            left <= Duration::from_secs(3601) && left >= Duration::from_secs(3599),
            "{left:?}"
        );
        assert!(Token::never_expiring("x").expires_at_system().is_none());
        assert!(Token::never_expiring("x").fields().is_empty());
    }

    #[test]
    fn credential_names_are_dropped_in_every_case_style() {
        let credentials = [
            "access_token",
            "accessToken",
            "AccessToken",
            "access-token",
            "ACCESS_TOKEN",
            "refresh_token",
            "refreshToken",
            "Refresh-Token",
            "REFRESHTOKEN",
            "id_token",
            "idToken",
            "session_token",
            "token",
            "TOKEN",
            "client_secret",
            "clientSecret",
            "CLIENT-SECRET",
            "secret",
            "apiKey",
            "api_key",
            "API-KEY",
            "ApiKey",
            "x-api-key",
            "privateKey",
            "private_key",
            "PRIVATE_KEY",
            "mac_key",
            "key",
            "password",
            "Password",
            "user_password",
            "passwd",
            "passphrase",
            "assertion",
            "client_assertion",
            "clientAssertion",
            "code_verifier",
            "codeVerifier",
            "code",
            "authorization_code",
            "authCode",
            "device_code",
            "deviceCode",
            "credentials",
            "aws_credentials",
            "session_cookie",
            "client_jwt",
            "session_id",
            "sessionId",
            "api.key",
            "api key",
            "_",
            "",
        ];
        for name in credentials {
            assert!(is_credential_field(name), "{name} should be dropped");
        }
        let kept = [
            "token_type",
            "tokenType",
            "TOKEN-TYPE",
            "issued_token_type",
            "issuedTokenType",
            "expires_in",
            "expiresIn",
            "refresh_token_expires_in",
            "refreshTokenExpiresIn",
            "scope",
            "user_id",
            "userId",
            "instance_url",
            "key_id",
            "kid",
            "error_code",
            "status_code",
            "signature_method",
            "not-before-policy",
            "sid",
        ];
        for name in kept {
            assert!(!is_credential_field(name), "{name} should be kept");
        }
    }

    /// Plural names (a list or map of credentials) and a credential name that happens
    /// to end like `token_type` are credentials too.
    #[test]
    fn plural_and_type_suffixed_credential_names_are_dropped() {
        for name in [
            "refresh_tokens",
            "accessTokens",
            "tokens",
            "api_keys",
            "sessionTokens",
            "client_secret_token_type",
        ] {
            assert!(is_credential_field(name), "{name} should be dropped");
        }
        let body = br#"{"access_token":"at-1a2b3c4d","refresh_tokens":["rt-leaked-1"],
            "tokens":{"github":"gho-leaked-2"}}"#;
        let t = parse_token_response(200, body, Instant::now(), None).unwrap();
        let text = serde_json::to_string(t.fields()).unwrap();
        assert!(!text.contains("leaked"), "credentials in fields(): {text}");
    }

    #[test]
    fn credentials_nested_in_fields_are_dropped_too() {
        let body = br#"{"access_token":"at-outer-1a2b","token_type":"bearer",
            "authed_user":{"id":"U1","scope":"chat:write","accessToken":"xoxp-inner-secret",
                "token_type":"user","nested":{"refresh-token":"rt-deep-secret","n":1}},
            "items":[{"kid":"k1","privateKey":"pk-in-array"},"plain"],
            "team":{"name":"T","apiKey":"ak-nested"}}"#;
        let t = parse_token_response(200, body, Instant::now(), None).unwrap();
        let text = serde_json::to_string(t.fields()).unwrap();
        for secret in [
            "xoxp-inner-secret",
            "rt-deep-secret",
            "pk-in-array",
            "ak-nested",
            "at-outer",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(t.fields()["authed_user"]["id"], "U1");
        assert_eq!(t.fields()["authed_user"]["token_type"], "user");
        assert_eq!(t.fields()["authed_user"]["nested"]["n"], 1);
        assert_eq!(t.fields()["items"][0]["kid"], "k1");
        assert_eq!(t.fields()["items"][1], "plain");
        assert_eq!(t.fields()["team"]["name"], "T");
    }

    use super::*;

    fn parse(body: &str) -> Result<Token> {
        parse_token_response(200, body.as_bytes(), Instant::now(), None)
    }

    #[test]
    fn expires_in_integer_string_float() {
        for body in [
            r#"{"access_token":"a","expires_in":3600}"#,
            r#"{"access_token":"a","expires_in":"3600"}"#,
            r#"{"access_token":"a","expires_in":3600.0}"#,
        ] {
            assert_eq!(
                parse(body).unwrap().lifetime(),
                Some(Duration::from_secs(3600)),
                "{body}"
            );
        }
    }

    #[test]
    fn zero_negative_or_missing_expiry_is_unknown() {
        for body in [
            r#"{"access_token":"a","expires_in":0}"#,
            r#"{"access_token":"a","expires_in":-5}"#,
            r#"{"access_token":"a","expires_in":"soon"}"#,
            r#"{"access_token":"a"}"#,
        ] {
            let t = parse(body).unwrap();
            assert_eq!(t.lifetime(), None, "{body}");
            assert_eq!(t.freshness(Instant::now() + MAX_LIFETIME), Freshness::Fresh);
        }
    }

    #[test]
    fn default_lifetime_applies_when_unknown() {
        let t = parse_token_response(
            200,
            br#"{"access_token":"a"}"#,
            Instant::now(),
            Some(Duration::from_secs(60)),
        )
        .unwrap();
        assert_eq!(t.lifetime(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn jwt_exp_is_used_when_expires_in_is_missing() {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1000;
        let b64 = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"none"}"#.into()),
            b64(format!(r#"{{"sub":"x","exp":{exp}}}"#))
        );
        let t = parse(&format!(r#"{{"access_token":"{jwt}"}}"#)).unwrap();
        let l = t.lifetime().unwrap().as_secs_f64();
        assert!((990.0..=1000.0).contains(&l), "{l}");
    }

    #[test]
    fn token_type_is_normalised() {
        assert_eq!(
            parse(r#"{"access_token":"a","token_type":"bearer"}"#)
                .unwrap()
                .token_type(),
            "Bearer"
        );
        let t = parse(r#"{"access_token":"a"}"#).unwrap();
        assert_eq!(t.authorization_header().expose_secret(), "Bearer a");
    }

    #[test]
    fn ok_status_with_error_body_is_oauth_error() {
        let e = parse(r#"{"error":"invalid_grant","error_description":"nope"}"#).unwrap_err();
        assert_eq!(e.oauth().unwrap().error, "invalid_grant");
        assert_eq!(e.oauth().unwrap().status, Some(200));
    }

    #[test]
    fn missing_access_token_or_non_json_is_invalid_response() {
        for body in [
            r#"{"token_type":"Bearer"}"#,
            "<html>oops</html>",
            "",
            "[1,2]",
            r#"{"access_token":""}"#,
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::InvalidResponse, "{body}");
        }
    }

    #[test]
    fn header_breaking_tokens_are_invalid_responses() {
        for body in [
            r#"{"access_token":"abc\r\nX-Evil: 1"}"#,
            r#"{"access_token":"abc def"}"#,
            r#"{"access_token":"abc\u0000def"}"#,
            r#"{"access_token":"ab\ncd"}"#,
            r#"{"access_token":"é-token"}"#,
            r#"{"access_token":"=="}"#,
            r#"{"access_token":"abc","token_type":"Bearer\r\nX: y"}"#,
            r#"{"access_token":"abc","token_type":"Bear er"}"#,
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::InvalidResponse, "{body}");
        }
        for ok in [
            r#"{"access_token":"a-b.c_d~e+f/g=="}"#,
            r#"{"access_token":"abc","token_type":"DPoP"}"#,
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn an_expiry_margin_moves_expiry_and_renewal_earlier() {
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        let t = Token::new("a", None, Some(hour), now);
        assert_eq!(t.expires_at(), Some(now + hour - Duration::from_secs(30)));
        let t = t.with_expiry_margin(Duration::from_secs(120));
        assert_eq!(t.expires_at(), Some(now + hour - Duration::from_secs(120)));
        assert_eq!(t.renew_at(), Some(now + hour - Duration::from_secs(300)));
        // A margin larger than the renew-ahead window pulls renewal along.
        let t = t.with_expiry_margin(Duration::from_secs(600));
        assert_eq!(t.renew_at(), t.expires_at());
        // Never more than 90 % of the lifetime; a smaller margin than the default is none.
        let short = Token::new("a", None, Some(Duration::from_secs(10)), now)
            .with_expiry_margin(Duration::from_secs(3600));
        assert_eq!(short.expires_at(), Some(now + Duration::from_secs(1)));
        let small =
            Token::new("a", None, Some(hour), now).with_expiry_margin(Duration::from_secs(1));
        assert_eq!(
            small.expires_at(),
            Some(now + hour - Duration::from_secs(30))
        );
        assert_eq!(
            short.freshness(now + Duration::from_millis(1500)),
            Freshness::Expired
        );
    }

    #[test]
    fn wall_clock_running_ahead_expires_the_token() {
        // A laptop that slept for two hours: the monotonic clock did not move, the wall
        // clock did. The token was issued "two hours ago" by the wall clock.
        let now = Instant::now();
        let mut t = Token::new("a", None, Some(Duration::from_secs(3600)), now);
        assert_eq!(t.freshness(now), Freshness::Fresh);
        t.set_wall_issue(SystemTime::now() - Duration::from_secs(7200));
        assert_eq!(t.freshness(now), Freshness::Expired);
        // And a wall clock set back (NTP) does not revive a monotonically expired token.
        let t = Token::new("a", None, Some(Duration::from_secs(10)), now);
        let past = SystemTime::now() - Duration::from_secs(3600);
        assert_eq!(
            t.freshness_at(now + Duration::from_secs(20), past),
            Freshness::Expired
        );
    }

    #[test]
    fn renewal_window_scales_with_lifetime() {
        let now = Instant::now();
        let t = Token::new("a", None, Some(Duration::from_secs(1)), now);
        assert_eq!(t.renew_at(), Some(now + Duration::from_millis(800)));
        assert_eq!(t.expires_at(), Some(now + Duration::from_millis(950)));
        let t = Token::new("a", None, Some(Duration::from_secs(3600)), now);
        assert_eq!(t.renew_at(), Some(now + Duration::from_secs(3300)));
        assert_eq!(t.expires_at(), Some(now + Duration::from_secs(3570)));
        assert_eq!(t.freshness(now), Freshness::Fresh);
        assert_eq!(
            t.freshness(now + Duration::from_secs(3400)),
            Freshness::Stale
        );
        assert_eq!(
            t.freshness(now + Duration::from_secs(3580)),
            Freshness::Expired
        );
    }
}
