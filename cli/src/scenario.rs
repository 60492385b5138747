//! The shared scenarios (`tests/scenarios/*.json`): what the provider does, what the
//! client does, and what must be observed. This is the Rust runner; the C and Python
//! runners read the same files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use authcore::grant::{ApiKey, AuthorizationCode, ClientCredentials, DeviceCode};
use authcore::{AuthMethod, Client, Error, Options};
use authcore::{AuthorizationCodeFlow, DeviceFlow, Metadata};
use serde::Deserialize;

use crate::devserver::{Behaviour, Counters, DevServer, Fault, Malformed};

/// One scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// Which dialect and grant the client uses.
    pub dialect: Dialect,
    /// Provider behaviour at the start.
    #[serde(default)]
    pub provider: Behaviour,
    /// Client-side overrides of the provider's credentials.
    #[serde(default)]
    pub client: ClientOverrides,
    /// What happens, in order.
    pub steps: Vec<Step>,
    /// What must be observed.
    pub expect: Expect,
}

/// The dialect and grant of the client under test.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// api.video API key exchange with rotating refresh tokens.
    Apivideo,
    /// Vibe-style client credentials with `client_secret_basic`.
    Vibe,
    /// Client credentials with `client_secret_post`.
    Oauth2Post,
    /// Standard authorization code with PKCE (form bodies), then refresh tokens.
    Oauth2Code,
    /// viewneo authorization code (JSON bodies), then refresh tokens.
    ViewneoCode,
    /// viewneo personal access token.
    ViewneoPat,
    /// Endpoints discovered from the issuer (RFC 8414), then the device flow
    /// (RFC 8628), then refresh tokens.
    Oauth2Device,
}

/// Credentials the client uses instead of the provider's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientOverrides {
    /// Client secret (or api.video key) to present.
    pub secret: Option<String>,
    /// Scopes to request.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// A token store under the client (none by default).
    pub store: Option<StoreKind>,
}

/// The token store a scenario's client uses.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// A [`FileStore`](authcore::FileStore) in a fresh directory of the run's own.
    File,
}

/// One step of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// `threads` threads each get a token at once.
    Token {
        /// Threads.
        threads: usize,
    },
    /// `threads` threads each send `count` authenticated requests to `path`.
    Request {
        /// Threads.
        threads: usize,
        /// Requests per thread.
        count: usize,
        /// Resource path.
        #[serde(default = "default_path")]
        path: String,
    },
    /// `threads` threads send requests back to back for `seconds`.
    Churn {
        /// Threads.
        threads: usize,
        /// Duration.
        seconds: f64,
    },
    /// The provider revokes its access tokens (and refresh tokens if `refresh`).
    Revoke {
        /// Also revoke refresh tokens.
        #[serde(default)]
        refresh: bool,
    },
    /// The provider fails the next token requests.
    Fail(Fault),
    /// The provider answers the next token requests with a malformed body.
    Malformed {
        /// How many.
        count: u32,
        /// What kind (`html`, the default, or `header_injection`).
        #[serde(default)]
        kind: Malformed,
    },
    /// Wait.
    SleepMs(u64),
    /// The client revokes its tokens (RFC 7009) and forgets them.
    RevokeClient {},
    /// The client forces one renewal.
    Refresh {},
    /// The client signs out (`sign_out`: forgotten here and in the store, revoked at the
    /// provider when it can be).
    SignOut {},
}

fn default_path() -> String {
    "/api/resource".into()
}

/// What must be observed; absent fields are not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Token requests the provider received.
    pub token_requests: Option<u64>,
    /// Token requests the provider received, at most.
    pub token_requests_max: Option<u64>,
    /// Token requests by `dialect/grant`.
    pub token_requests_by_grant: Option<BTreeMap<String, u64>>,
    /// Errors seen by callers, by kind name; kinds not listed must not occur.
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// The OAuth `error` code of every OAuth error seen.
    pub oauth_error: Option<String>,
    /// Requests the provider saw with an expired token.
    pub expired_sent: Option<u64>,
    /// Requests the provider refused as unknown or revoked.
    pub resource_rejected_invalid: Option<u64>,
    /// Tokens revoked at the provider's revocation endpoint.
    pub revocations: Option<u64>,
    /// Requests the provider accepted, at least.
    pub resource_accepted_min: Option<u64>,
    /// Renewals the client counted, by reason (`initial`, `ahead`, `expired`,
    /// `rejected`, `forced`); reasons not listed are not checked.
    pub renewals: Option<BTreeMap<String, u64>>,
}

/// What a run observed.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Errors by kind name.
    pub errors: BTreeMap<String, u64>,
    /// OAuth error codes seen.
    pub oauth_errors: Vec<String>,
    /// The provider's counters at the end.
    pub counters: Counters,
    /// What the client counted, if one was built.
    pub stats: Option<authcore::Stats>,
}

/// Reads every `*.json` scenario in a directory, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

/// Builds the client a scenario describes, against `server`; `store_dir` is the
/// directory of its file store when the scenario asks for one.
pub fn build_client(
    s: &Scenario,
    server: &DevServer,
    store_dir: Option<&Path>,
) -> Result<Client, Error> {
    let creds = server.credentials();
    let base = server.url();
    let secret = s
        .client
        .secret
        .clone()
        .unwrap_or_else(|| creds.client_secret.clone());
    let mut options = Options::default()
        .failure_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .timeout(Duration::from_secs(10));
    if let Some(dir) = store_dir {
        options = options.store(Arc::new(authcore::FileStore::new(dir)?));
    }
    match s.dialect {
        Dialect::Apivideo => {
            let key = s
                .client
                .secret
                .clone()
                .unwrap_or_else(|| creds.api_key.clone());
            Client::new(ApiKey::with_base_url(&base, key), options)
        }
        Dialect::Vibe | Dialect::Oauth2Post => {
            let method = if s.dialect == Dialect::Vibe {
                AuthMethod::ClientSecretBasic
            } else {
                AuthMethod::ClientSecretPost
            };
            let grant =
                ClientCredentials::new(format!("{base}/oauth2/token"), &creds.client_id, secret)
                    .scopes(s.client.scopes.clone())
                    .auth_method(method);
            Client::new(grant, options)
        }
        Dialect::ViewneoPat => Ok(Client::personal_access_token(
            creds.personal_access_token.clone(),
        )),
        Dialect::Oauth2Code | Dialect::ViewneoCode => {
            let redirect = "http://127.0.0.1/callback";
            let config = if s.dialect == Dialect::ViewneoCode {
                AuthorizationCode::viewneo_at(&base, &creds.client_id, secret, redirect)
            } else {
                AuthorizationCode::new(
                    format!("{base}/oauth2/authorize"),
                    format!("{base}/oauth2/token"),
                    &creds.client_id,
                    secret,
                    redirect,
                )
                .revocation_url(format!("{base}/oauth2/revoke"))
            }
            .scopes(s.client.scopes.clone());
            let flow = AuthorizationCodeFlow::new(config, options)?;
            let request = flow.authorization_url()?;
            let callback = follow_authorize(&request.url)?;
            flow.finish(&callback, &request.state)
        }
        Dialect::Oauth2Device => {
            let metadata = Metadata::discover(&base, &options)?;
            let config = DeviceCode::from_metadata(&metadata, &creds.client_id, secret)?
                .scopes(s.client.scopes.clone());
            let flow = DeviceFlow::new(config, options)?;
            flow.start()?.wait(Some(Duration::from_secs(30)))
        }
    }
}

/// Plays the user's browser: fetches the authorization URL and returns the redirect.
pub fn follow_authorize(url: &str) -> Result<String, Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| Error::Transport {
        message: format!("authorize request failed: {e}"),
        source: None,
    })?;
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| Error::Config {
            message: format!(
                "authorize endpoint answered {} without a redirect",
                response.status()
            ),
        })
}

fn record(observed: &parking_lot::Mutex<Observed>, result: Result<(), Error>) {
    if let Err(e) = result {
        let mut o = observed.lock();
        *o.errors.entry(e.kind().name().to_owned()).or_default() += 1;
        if let Some(oauth) = e.oauth() {
            o.oauth_errors.push(oauth.error.clone());
        }
    }
}

fn in_threads(threads: usize, work: impl Fn() + Send + Sync + 'static) {
    let work = Arc::new(work);
    let barrier = Arc::new(Barrier::new(threads.max(1)));
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (work, barrier) = (work.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                work();
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

/// Runs a scenario against a fresh provider state and returns what was observed.
pub fn run(s: &Scenario, server: &DevServer) -> Observed {
    server.reset();
    if let Err(e) = server.set_behaviour(s.provider.clone()) {
        panic!("scenario {}: provider settings: {e}", s.name);
    }
    let observed = Arc::new(parking_lot::Mutex::new(Observed::default()));
    // Declared before the client, so that it is removed after the client is gone.
    let store_dir = s.client.store.map(|kind| match kind {
        StoreKind::File => tempfile::tempdir().expect("a temporary store directory"),
    });
    let client = match build_client(s, server, store_dir.as_ref().map(|d| d.path())) {
        Ok(c) => Some(c),
        Err(e) => {
            record(&observed, Err(e));
            None
        }
    };
    if let Some(client) = &client {
        for step in &s.steps {
            let (client, obs) = (client.clone(), observed.clone());
            match step {
                Step::Token { threads } => {
                    in_threads(*threads, move || record(&obs, client.token().map(|_| ())))
                }
                Step::Request {
                    threads,
                    count,
                    path,
                } => {
                    let url = format!("{}{path}", server.url());
                    let count = (*count).min(100_000);
                    in_threads(*threads, move || {
                        for _ in 0..count {
                            record(&obs, client.get(&url).map(|_| ()));
                        }
                    })
                }
                Step::Churn { threads, seconds } => {
                    let url = format!("{}/api/resource", server.url());
                    let until = Instant::now() + Duration::from_secs_f64(seconds.clamp(0.0, 60.0));
                    in_threads(*threads, move || {
                        while Instant::now() < until {
                            record(&obs, client.get(&url).map(|_| ()));
                        }
                    })
                }
                Step::Revoke { refresh } => server.revoke_all(*refresh),
                Step::Fail(f) => server.fail_next(f.clone()),
                Step::Malformed { count, kind } => server.malformed_next(*count, *kind),
                Step::SleepMs(ms) => thread::sleep(Duration::from_millis((*ms).min(60_000))),
                Step::RevokeClient {} => record(&obs, client.revoke()),
                Step::Refresh {} => record(&obs, client.refresh().map(|_| ())),
                Step::SignOut {} => record(&obs, client.sign_out().map(|_| ())),
            }
        }
    }
    let mut o = observed.lock().clone();
    o.counters = server.counters();
    o.stats = client.map(|c| c.stats());
    o
}

/// Compares what was observed with what the scenario expects.
pub fn check(s: &Scenario, o: &Observed) -> Result<(), Vec<String>> {
    let e = &s.expect;
    let c = &o.counters;
    let mut problems = Vec::new();
    let mut eq = |what: &str, want: Option<u64>, got: u64| {
        if let Some(want) = want {
            if want != got {
                problems.push(format!("{what}: expected {want}, observed {got}"));
            }
        }
    };
    eq("token requests", e.token_requests, c.token_requests);
    eq(
        "requests sent with an expired token",
        e.expired_sent,
        c.resource_rejected_expired,
    );
    eq(
        "requests refused as unknown or revoked",
        e.resource_rejected_invalid,
        c.resource_rejected_invalid,
    );
    eq("tokens revoked", e.revocations, c.revocations);
    if let Some(stats) = &o.stats {
        if stats.token_requests() != c.token_requests {
            problems.push(format!(
                "the client counted {} token requests, the provider {}",
                stats.token_requests(),
                c.token_requests
            ));
        }
    }
    if let Some(by) = &e.renewals {
        for (reason, want) in by {
            let got = o.stats.as_ref().and_then(|s| match reason.as_str() {
                "initial" => Some(s.renewals_initial),
                "ahead" => Some(s.renewals_ahead),
                "expired" => Some(s.renewals_expired),
                "rejected" => Some(s.renewals_rejected),
                "forced" => Some(s.renewals_forced),
                _ => None,
            });
            if got != Some(*want) {
                problems.push(format!(
                    "renewals {reason}: expected {want}, observed {got:?}"
                ));
            }
        }
    }
    if let Some(max) = e.token_requests_max {
        if c.token_requests > max {
            problems.push(format!(
                "token requests: expected at most {max}, observed {}",
                c.token_requests
            ));
        }
    }
    if let Some(min) = e.resource_accepted_min {
        if c.resource_accepted < min {
            problems.push(format!(
                "accepted requests: expected at least {min}, observed {}",
                c.resource_accepted
            ));
        }
    }
    if let Some(by) = &e.token_requests_by_grant {
        for (grant, want) in by {
            let got = c.token_requests_by_grant.get(grant).copied().unwrap_or(0);
            if got != *want {
                problems.push(format!(
                    "token requests for {grant}: expected {want}, observed {got}"
                ));
            }
        }
    }
    if e.errors != o.errors {
        problems.push(format!(
            "errors by kind: expected {:?}, observed {:?}",
            e.errors, o.errors
        ));
    }
    if let Some(code) = &e.oauth_error {
        if o.oauth_errors.is_empty() || o.oauth_errors.iter().any(|x| x != code) {
            problems.push(format!(
                "OAuth errors: expected all {code:?}, observed {:?}",
                o.oauth_errors
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(expect: &str) -> Scenario {
        serde_json::from_str(&format!(
            r#"{{"name":"t","dialect":"vibe","steps":[{{"token":{{"threads":1}}}}],"expect":{expect}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn check_reports_every_mismatch() {
        let s = scenario(
            r#"{"token_requests": 1, "errors": {}, "expired_sent": 0, "oauth_error": "invalid_client"}"#,
        );
        let mut o = Observed::default();
        o.counters.token_requests = 2;
        o.counters.resource_rejected_expired = 3;
        o.errors.insert("oauth".into(), 1);
        o.oauth_errors.push("invalid_scope".into());
        let problems = check(&s, &o).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn renewals_are_compared_with_the_clients_counters() {
        let s = scenario(r#"{"renewals": {"initial": 1, "forced": 1}, "errors": {}}"#);
        let mut o = Observed::default();
        let mut stats = authcore::Stats::default();
        stats.renewals_initial = 1;
        o.stats = Some(stats);
        let problems = check(&s, &o).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("forced"), "{problems:?}");
        stats.renewals_forced = 1;
        o.stats = Some(stats);
        assert!(check(&s, &o).is_ok());
    }

    #[test]
    fn check_accepts_a_match_and_unknown_fields_are_rejected() {
        let s = scenario(r#"{"token_requests": 1, "errors": {}}"#);
        let mut o = Observed::default();
        o.counters.token_requests = 1;
        assert!(check(&s, &o).is_ok());
        let bad = r#"{"name":"t","dialect":"vibe","steps":[],"expect":{"tokens":1}}"#;
        assert!(serde_json::from_str::<Scenario>(bad).is_err());
    }
}
