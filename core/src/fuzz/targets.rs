//! One target per parser of outside input. A target is a corpus directory
//! (`core/fuzz/corpus/<name>/`) and a test that hands each input to the production
//! parser through [`run`], checking what it returns; adding a parser is adding both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use super::{all_secrets, no_secret_in, run, CASE_BUDGET, REQUEST_SECRETS, TOKEN_MARKER};
use crate::challenge::Challenge;
use crate::discovery::Metadata;
use crate::error;
use crate::flow::{AuthorizationCodeFlow, Callback};
use crate::grant::device_code;
use crate::grant::{AuthorizationCode, ClientCredentials};
use crate::http::{BodyFormat, Http, Replay, TokenRequest};
use crate::options::Options;
use crate::secret::Secret;
use crate::store::StoredToken;
use crate::token::{is_credential_field, parse_token_response, Token, MAX_LIFETIME};
use crate::Client;

/// A token request carrying every kind of credential a request can carry, each one a
/// planted secret, as the grants build them.
fn planted_request() -> TokenRequest<'static> {
    let [client_secret, refresh_token, device_code, code_verifier, code, client_assertion, subject_token, actor_token] =
        REQUEST_SECRETS
    else {
        unreachable!("eight planted request secrets")
    };
    TokenRequest {
        grant: "fuzz",
        url: "http://127.0.0.1:1/token",
        format: BodyFormat::Form,
        params: vec![
            ("client_secret", Secret::new(*client_secret)),
            ("refresh_token", Secret::new(*refresh_token)),
            ("device_code", Secret::new(*device_code)),
            ("code_verifier", Secret::new(*code_verifier)),
            ("code", Secret::new(*code)),
            ("client_assertion", Secret::new(*client_assertion)),
            ("subject_token", Secret::new(*subject_token)),
            ("actor_token", Secret::new(*actor_token)),
        ],
        basic: None,
        headers: Vec::new(),
        replay: Replay::Safe,
        redact: vec![Secret::new(*client_secret)],
        assertions: Vec::new(),
    }
}

fn http() -> Http {
    Http::new(Arc::new(Options::default())).expect("default options")
}

/// `shown` (a `Debug` text) holds the planted token only where a public part (scope,
/// token type) holds it too: secrets are never printed.
fn marker_not_shown(shown: String, public: &str) -> Result<(), String> {
    if shown.contains(TOKEN_MARKER) && !public.contains(TOKEN_MARKER) {
        return Err(format!("a secret is in Debug: {shown}"));
    }
    Ok(())
}

/// Whether a field name plainly holds a credential: the oracle for [`Token::fields`],
/// written apart from the filter it checks (`token::is_credential_field`), so that a
/// word missing from the filter is found here. Lowercase letters and digits only, one
/// plural `s` off; then the words of the credentials RFC 6749, 7636, 7523, 8628 and
/// the vendors name, at the end of the name (`access_token`, `client_secret`) or
/// anywhere for those that never describe one (`secret`, `password`). Names that only
/// describe a credential (`token_type`, `expires_in`, `user_code`, `key_id`) are not
/// credentials.
fn plainly_a_credential(name: &str) -> bool {
    let lower: String = name
        .to_ascii_lowercase()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let word = lower.strip_suffix('s').unwrap_or(&lower);
    const ANYWHERE: [&str; 6] = [
        "secret",
        "password",
        "passphrase",
        "credential",
        "assertion",
        "cookie",
    ];
    const AT_THE_END: [&str; 5] = ["token", "key", "jwt", "verifier", "sessionid"];
    const WHOLE: [&str; 3] = ["code", "devicecode", "authorizationcode"];
    lower.is_empty()
        || ANYWHERE.iter().any(|w| lower.contains(w))
        || AT_THE_END.iter().any(|w| word.ends_with(w))
        || WHOLE.contains(&word)
}

/// The oracle of [`token_holds`] catches what the filter misses: it names the
/// credentials the filter drops, by its own rules.
#[test]
fn the_credential_oracle_agrees_with_the_filter_on_known_names() {
    for name in [
        "access_token",
        "refreshTokens",
        "tokens",
        "client_secret",
        "client_secret_token_type",
        "api_keys",
        "id_token",
        "code",
        "device_code",
        "code_verifier",
        "client_assertion",
        "session_cookie",
        "",
    ] {
        assert!(plainly_a_credential(name), "oracle: {name:?}");
        assert!(is_credential_field(name), "filter: {name:?}");
    }
    for name in ["token_type", "expires_in", "user_code", "key_id", "scope"] {
        assert!(!plainly_a_credential(name), "oracle: {name:?}");
        assert!(!is_credential_field(name), "filter: {name:?}");
    }
}

/// What must hold of any token a parser hands out.
fn token_holds(t: &Token) -> Result<(), String> {
    // What a token's Debug may show: its type, scope and issued type (none a credential).
    let public = format!(
        "{} {} {}",
        t.token_type(),
        t.scope().unwrap_or(""),
        t.issued_token_type().unwrap_or("")
    );
    marker_not_shown(format!("{t:?}"), &public)?;
    if t.lifetime().is_some_and(|l| l > MAX_LIFETIME) {
        return Err(format!("a lifetime past the cap: {:?}", t.lifetime()));
    }
    fn credential_name_in(v: &Value) -> Option<String> {
        match v {
            Value::Object(o) => o.iter().find_map(|(k, v)| {
                if plainly_a_credential(k) {
                    Some(k.clone())
                } else {
                    credential_name_in(v)
                }
            }),
            Value::Array(a) => a.iter().find_map(credential_name_in),
            _ => None,
        }
    }
    let fields = Value::Object(t.fields().clone());
    if let Some(name) = credential_name_in(&fields) {
        return Err(format!("a credential field {name:?} is in fields()"));
    }
    if let Some(sub) = t.subject() {
        if sub.is_empty() || sub.chars().any(char::is_control) {
            return Err(format!("an unprintable subject: {sub:?}"));
        }
    }
    if let Some(issued) = t.issued_token_type() {
        if issued.is_empty() || issued.chars().any(char::is_control) {
            return Err(format!("an unprintable issued token type: {issued:?}"));
        }
    }
    let _ = (
        t.freshness(Instant::now()),
        t.expires_at_system(),
        t.renew_at(),
    );
    Ok(())
}

/// Token endpoint answers (RFC 6749 §5.1/§5.2, device polls of RFC 8628 §3.5, vendor
/// envelopes, form-encoded bodies, HTML pages): as a success and as a failure status.
#[test]
fn token_response() {
    let req = planted_request();
    let secrets = all_secrets();
    run("token_response", |body| {
        for status in [200, 201] {
            match parse_token_response(status, body, Instant::now(), None) {
                Ok(t) => token_holds(&t)?,
                Err(e) => no_secret_in(&req.redacted(e), &secrets)?,
            }
        }
        for status in [400, 401, 403, 429, 500, 503] {
            let e = error::from_response(status, Some(Duration::from_secs(1)), body);
            no_secret_in(&req.redacted(e), &secrets)?;
        }
        Ok(())
    });
}

/// A JWT's claims (the input) read for `exp` (an access token without `expires_in`)
/// and `sub` (an ID token).
#[test]
fn jwt_claims() {
    run("jwt_claims", |claims| {
        let jwt = format!(
            "eyJhbGciOiJub25lIn0.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(claims)
        );
        let body =
            serde_json::json!({"access_token": jwt, "token_type": "Bearer", "id_token": jwt});
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        match parse_token_response(200, &body, Instant::now(), None) {
            Ok(t) => token_holds(&t),
            Err(e) => no_secret_in(&e, &[TOKEN_MARKER]),
        }
    });
}

/// `WWW-Authenticate` values, one field line per input line.
/// An assertion read from a file or a command (a projected service-account token, a CI
/// system's OIDC token) whose `exp` decides whether it is sent: any claims, as a JWT's
/// payload and as the whole value, give an expiry or none, and never a panic; an expiry
/// is given only for a numeric `exp` (a negative one is long past: 0).
#[test]
fn assertion_jwt() {
    run("assertion_jwt", |claims| {
        let jwt = format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(claims)
        );
        // (Claims another member of which serde_json's `Value` cannot hold, such as a
        // number out of range, are not checked further: only `exp` is read.)
        if let (Some(exp), Ok(parsed)) = (
            crate::assertion::jwt_expiry(&jwt),
            serde_json::from_slice::<Value>(claims),
        ) {
            if !parsed["exp"].is_number()
                || (parsed["exp"].as_f64().is_some_and(|n| n <= 0.0) && exp != 0)
            {
                return Err(format!("an expiry {exp} from exp {:?}", parsed["exp"]));
            }
        }

        let _ = crate::assertion::jwt_expiry(&String::from_utf8_lossy(claims));
        Ok(())
    });
}

#[test]
fn www_authenticate() {
    let client = Client::new(
        ClientCredentials::new("http://127.0.0.1:1/token", "c", "s"),
        Options::default(),
    )
    .expect("a client");
    run("www_authenticate", |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        for c in Challenge::parse_all(text.split('\n')) {
            if c.scheme().is_empty() || !c.scheme().bytes().all(tchar) {
                return Err(format!("a scheme that is not a token: {:?}", c.scheme()));
            }
            for (name, _) in c.params() {
                if name.is_empty() || !name.bytes().all(tchar) || name != name.to_lowercase() {
                    return Err(format!(
                        "a parameter name that is not a lowercase token: {name:?}"
                    ));
                }
            }
            if c.token68().is_some() && c.params().next().is_some() {
                return Err("a challenge with both a token68 and parameters".into());
            }
        }
        let joined = text.replace('\n', ", ");
        let _ = client.renewal_helps(401, Some(&joined));
        Ok(())
    });
}

/// Authorization callback URLs (RFC 6749 §4.1.2, errors of §4.1.2.1, `iss` of RFC
/// 9207), as `finish` reads them before any token request.
#[test]
fn callback_url() {
    let config = AuthorizationCode::new(
        "http://127.0.0.1:1/authorize",
        "http://127.0.0.1:1/token",
        "c",
        "s",
        "http://127.0.0.1:9/callback",
    )
    .issuer("http://127.0.0.1:38931", true);
    run("callback_url", |bytes| {
        let url = String::from_utf8_lossy(bytes);
        match Callback::parse(&url).and_then(|c| c.into_code(&config)) {
            Ok(_code) => Ok(()),
            Err(e) => no_secret_in(&e, &[TOKEN_MARKER]),
        }
    });
}

/// The exported sign-in (`pending`) as `finish_pending` reads it: the input is both a
/// `pending` string as it arrives (never opens: it is not sealed under this flow's key)
/// and the plaintext a sealed one carries (sealed here under the flow's key, as an
/// attacker who knew the key could make it), so that every field the JSON can hold —
/// a start time past i64, no verifier, an empty or huge state — meets the checks that
/// run before any token request. The token endpoint is a closed port: a sign-in that
/// passes every check fails at the exchange (counted in the flow's stats), which is
/// also checked for secrets. A plaintext with no verifier (the flow uses PKCE), a start
/// beyond the clock skew allowance or one older than the lifetime must make no token
/// request. A sealed sign-in's state is used once per flow: each object plaintext gets
/// a fresh state (as a real one has), so that a state seen in an earlier case does not
/// stop it before those checks.
#[test]
fn pending() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::SystemTime;

    use crate::flow::{PENDING_CLOCK_SKEW, PENDING_LIFETIME};
    use crate::stats::Stats;

    let config = AuthorizationCode::new(
        "http://127.0.0.1:1/authorize",
        "http://127.0.0.1:1/token",
        "c",
        "s",
        "http://127.0.0.1:9/callback",
    );
    let flow = AuthorizationCodeFlow::new(config, Options::default())
        .and_then(|f| f.pending_key(&[7u8; 32]))
        .expect("a flow");
    let requests =
        |s: Stats| s.token_requests_succeeded + s.token_requests_refused + s.token_requests_failed;
    let now_ms = || {
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    // Cases that reached the exchange, and cases that had to stop before it: both
    // must occur, or the checks below check nothing.
    let exchanged = AtomicU64::new(0);
    let must_stop = AtomicU64::new(0);
    run("pending", |bytes| {
        let as_given = String::from_utf8_lossy(bytes);
        let callback = format!("/callback?code={TOKEN_MARKER}&state={TOKEN_MARKER}");
        if let Ok(client) = flow.finish_pending(&callback, &as_given) {
            return Err(format!("an unsealed pending finished: {client:?}"));
        }
        let doc = serde_json::from_slice::<Value>(bytes).ok();
        // The input as it is; and (for an object) with a fresh state, as it is and
        // started now: a committed seed is never fresh, and only a fresh one reaches
        // the code exchange.
        let mut plaintexts = vec![bytes.to_vec()];
        if let Some(Value::Object(mut o)) = doc {
            if o.get("state").is_some_and(Value::is_string) {
                o.insert(
                    "state".into(),
                    Value::from(crate::random::url_safe_string(16)),
                );
            }
            plaintexts.push(serde_json::to_vec(&o).map_err(|e| e.to_string())?);
            if o.get("state").is_some_and(Value::is_string) {
                o.insert(
                    "state".into(),
                    Value::from(crate::random::url_safe_string(16)),
                );
            }
            o.insert("started_ms".into(), Value::from(now_ms()));
            plaintexts.push(serde_json::to_vec(&o).map_err(|e| e.to_string())?);
        }
        for plaintext in &plaintexts {
            let doc = serde_json::from_slice::<Value>(plaintext).ok();
            let field = |name: &str| doc.as_ref().and_then(|d| d.get(name));
            let state = field("state")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            // What the checks before the exchange must refuse, with room for the time
            // a case takes.
            let now = now_ms();
            let started = field("started_ms").and_then(Value::as_u64);
            let slack = u64::try_from(2 * CASE_BUDGET.as_millis()).unwrap_or(u64::MAX);
            let skew = u64::try_from(PENDING_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
            let lifetime = u64::try_from(PENDING_LIFETIME.as_millis()).unwrap_or(u64::MAX);
            let refusal = if field("verifier").is_none_or(Value::is_null) {
                Some("no verifier, with PKCE on")
            } else if started.is_some_and(|s| s > now.saturating_add(skew + slack)) {
                Some("a start beyond the clock skew allowance")
            } else if started.is_some_and(|s| now.saturating_sub(s) > lifetime) {
                Some("an expired start")
            } else {
                None
            };
            let sealed = flow
                .seal_for_fuzzing(plaintext)
                .map_err(|e| e.to_string())?;
            for state in [state.as_str(), TOKEN_MARKER] {
                let callback = format!(
                    "/callback?code={TOKEN_MARKER}&state={}",
                    url::form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>()
                );
                let before = requests(flow.stats());
                let outcome = flow.finish_pending(&callback, sealed.expose_secret());
                let made = requests(flow.stats()) - before;
                if let Err(e) = &outcome {
                    no_secret_in(e, &[TOKEN_MARKER])?;
                }
                if made > 0 {
                    exchanged.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(why) = refusal {
                    must_stop.fetch_add(1, Ordering::Relaxed);
                    if made > 0 {
                        return Err(format!(
                            "a sealed sign-in with {why} made a token request: {}",
                            String::from_utf8_lossy(plaintext)
                        ));
                    }
                }
            }
        }
        Ok(())
    });
    assert!(
        exchanged.load(Ordering::Relaxed) > 0,
        "no case reached the code exchange: the checks above never met a sign-in they let through"
    );
    assert!(
        must_stop.load(Ordering::Relaxed) > 0,
        "no case had to stop before the exchange"
    );
}

/// Authorization server metadata (RFC 8414, OpenID Connect Discovery), checked against
/// the issuer it names and against another.
#[test]
fn discovery() {
    let http = http();
    run("discovery", |body| {
        let named = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("issuer")?.as_str().map(str::to_owned));
        for issuer in [named.as_deref(), Some("http://127.0.0.1:38931")]
            .into_iter()
            .flatten()
        {
            match Metadata::from_document(&http, issuer, body) {
                Ok(m) => {
                    let _ = format!("{m:?}");
                }
                Err(e) => no_secret_in(&e, &[TOKEN_MARKER])?,
            }
        }
        Ok(())
    });
}

/// Device authorization answers (RFC 8628 §3.2 and its errors).
#[test]
fn device_authorization() {
    let http = http();
    let req = planted_request();
    let secrets = all_secrets();
    run("device_authorization", |body| {
        for status in [200, 400, 401, 429, 503] {
            match device_code::started(&http, &req, status, body) {
                Ok(started) => {
                    if started.device_code.is_empty() || started.user_code.is_empty() {
                        return Err("empty codes accepted".into());
                    }
                }
                Err(e) => no_secret_in(&e, &secrets)?,
            }
        }
        Ok(())
    });
}

/// Revocation answers (RFC 7009 §2.2, §2.2.1).
#[test]
fn revocation() {
    let req = planted_request();
    let secrets = all_secrets();
    run("revocation", |body| {
        for status in [200, 400, 401, 500, 503] {
            if let Err(e) = crate::grant::revocation_answer(&req, status, body) {
                no_secret_in(&e, &secrets)?;
            }
        }
        Ok(())
    });
}

/// Stored records, as the file store, the Redis store and stores of one's own hand
/// them back: read, turned into a token, written again.
#[test]
fn stored_record() {
    run("stored_record", |bytes| {
        let Some(record) = StoredToken::from_json(bytes) else {
            return Ok(());
        };
        let public = format!(
            "{} {}",
            record.token_type,
            record.scope.as_deref().unwrap_or("")
        );
        marker_not_shown(format!("{record:?}"), &public)?;
        if !record.revoked {
            token_holds(&record.to_token())?;
        }
        let written = record.to_json();
        let again = StoredToken::from_json(&written)
            .ok_or_else(|| "a record it wrote does not read back".to_owned())?;
        if again.to_json() != written {
            return Err("a record changes when read back".into());
        }
        Ok(())
    });
}

/// DPoP keys as a caller or a stored session hands them over (PEM or private JWK):
/// read or refused with a configuration error that shows no key material; a key that
/// is read signs a proof that names its own public key, and survives its JWK.
#[test]
fn dpop_key() {
    run("dpop_key", |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let private = |text: &str| -> Vec<String> {
            serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("d").and_then(Value::as_str).map(str::to_owned))
                .into_iter()
                .filter(|d| d.len() >= 8)
                .collect()
        };
        let read = if text.trim_start().starts_with('{') {
            crate::DpopKey::from_jwk(&text)
        } else {
            crate::DpopKey::from_pem(&text)
        };
        match read {
            Err(e) => {
                if e.kind() != crate::ErrorKind::Config {
                    return Err(format!("a bad key is a {:?} error", e.kind()));
                }
                let shown = format!("{e} {e:?}");
                marker_not_shown(shown.clone(), "")?;
                if private(&text).iter().any(|d| shown.contains(d.as_str())) {
                    return Err("an error shows the private key".into());
                }
            }
            Ok(key) => {
                let shown = format!("{key:?}");
                marker_not_shown(shown.clone(), "")?;
                let jwk = key.to_jwk();
                if private(jwk.expose_secret())
                    .iter()
                    .any(|d| shown.contains(d.as_str()))
                {
                    return Err("Debug shows the private key".into());
                }
                let again = crate::DpopKey::from_jwk(jwk.expose_secret())
                    .map_err(|e| format!("a key's own JWK is refused: {e}"))?;
                if again.thumbprint() != key.thumbprint() {
                    return Err("a key's JWK reads back as another key".into());
                }
                let proof = key
                    .proof("GET", "https://api.example/x", Some("t"), None)
                    .map_err(|e| format!("a key that was read cannot sign: {e}"))?;
                if proof.expose_secret().split('.').count() != 3 {
                    return Err("a proof is not a compact JWS".into());
                }
            }
        }
        Ok(())
    });
}

/// The secrets the harness plants are ones the checks can see.
#[test]
fn planted_secrets_are_caught() {
    let leaked = crate::Error::Config {
        message: format!("echoed {TOKEN_MARKER}"),
    };
    assert!(no_secret_in(&leaked, &[TOKEN_MARKER]).is_err());
    let leaked = crate::Error::Config {
        message: format!("echoed {}", REQUEST_SECRETS[0]),
    };
    assert!(no_secret_in(&leaked, &all_secrets()).is_err());
    assert!(no_secret_in(&leaked, &[TOKEN_MARKER]).is_ok());
}
