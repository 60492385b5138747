//! The shared scenarios (`tests/scenarios/*.json`): what the provider does, what the
//! client does, and what must be observed. This is the Rust runner; the C and Python
//! runners read the same files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use authcore::grant::{
    token_type, ApiKey, AuthorizationCode, ClientCredentials, DeviceCode, JwtBearer, RefreshToken,
    TokenExchange,
};
use authcore::{
    AssertionSource, AuthMethod, Client, ClientCertificate, Dpop, DpopAlgorithm, DpopKey, Error,
    Options, Secret, Stats,
};
use authcore::{AuthorizationCodeFlow, DeviceFlow, Metadata};
use serde::Deserialize;

use crate::devserver::{Behaviour, Counters, DevServer, Fault, Malformed, MtlsClient};

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
    /// Client credentials, the client authenticated by a client assertion (RFC 7523
    /// §2.2) from the scenario's assertion file (or a command that prints it).
    Oauth2Assertion,
    /// The JWT bearer grant (RFC 7523 §2.1), its assertion from the scenario's
    /// assertion file (or a command that prints it); no client authentication.
    Oauth2JwtBearer,
    /// Mutual TLS (RFC 8705), against the provider in TLS mode: a client certificate
    /// the provider issues for [`MTLS_CLIENT_ID`] (registered for `tls_client_auth`
    /// with its subject), client credentials at the token endpoint's mTLS alias found
    /// by discovery, tokens bound to the certificate.
    Oauth2Mtls,
    /// Chained token exchange (RFC 8693): a subject client (client credentials,
    /// `client_secret_post`, for `client.subject_scopes`) whose access token the
    /// client exchanges at the same token endpoint (`client_secret_post`, for
    /// `client.scopes` and `client.audience`), subject token type access token.
    Oauth2TokenExchange,
}

/// The client id of the `oauth2_mtls` dialect's client (also its certificate's CN).
pub const MTLS_CLIENT_ID: &str = "scenario-mtls";

impl Scenario {
    /// Whether the scenario runs against the provider in TLS mode.
    pub fn needs_tls(&self) -> bool {
        self.dialect == Dialect::Oauth2Mtls
    }
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
    /// DPoP with a key generated for this algorithm (`ES256`, `EdDSA`, `RS256`); a
    /// restarted client generates one of its own.
    pub dpop: Option<String>,
    /// Token exchange: the audiences asked for.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Token exchange: the scopes of the subject client's token.
    #[serde(default)]
    pub subject_scopes: Vec<String>,
    /// How the assertion of the `oauth2_assertion` and `oauth2_jwt_bearer` dialects is
    /// read: the file itself (the default), or a command that prints it.
    pub assertion: Option<AssertionKind>,
}

/// How a scenario's client reads its assertion.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AssertionKind {
    /// The assertion file, read for every token request.
    File,
    /// `cat` of the assertion file, run for every token request.
    Command,
}

/// The store key of a scenario client's file store: whose tokens they are.
pub const STORE_KEY: &str = "scenario-user";

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
    /// The client is replaced as a restarted process would make it: the same options
    /// and store, a new DPoP key of its own, and (for the dialects that sign a user in)
    /// a refresh-token grant from the last refresh token the old client held.
    Restart {},
    /// The provider replaces its DPoP nonces (`POST /_control/dpop_rotate`).
    DpopRotate {},
    /// The client's request headers for `GET /api/replay` are sent twice, as they are,
    /// by the runner's own HTTP client; both statuses are recorded.
    Replay {},
    /// The provider's test issuer mints a JWT about `sub` (default the client id) for
    /// the provider, expiring in `ttl_s` seconds (negative: already expired), and the
    /// runner writes it to the assertion file (replacing what it held).
    WriteAssertion {
        /// Whose assertion it is.
        #[serde(default)]
        sub: Option<String>,
        /// Seconds until it expires.
        ttl_s: i64,
    },
    /// The runner removes the assertion file.
    RemoveAssertion {},
    /// Token exchange: the provider revokes the subject client's current access token
    /// (`POST /_control/revoke_token` with its tag), which that client still caches.
    RevokeSubject {},
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
    /// The type of the client's token at the end (`DPoP`, `Bearer`).
    pub token_type: Option<String>,
    /// Requests the client resent with a server's DPoP nonce.
    pub dpop_nonce_retries: Option<u64>,
    /// The two statuses of the `replay` step.
    pub replay_statuses: Option<Vec<u16>>,
    /// Assertions the provider received that it had received before.
    pub assertions_resent: Option<u64>,
    /// Assertions the provider received after their `exp`.
    pub assertions_expired: Option<u64>,
    /// Whether the client's token at the end is bound to its client certificate
    /// (`cnf.x5t#S256` at the provider is the certificate's thumbprint).
    pub certificate_bound: Option<bool>,
    /// The `issued_token_type` of the client's token at the end (token exchange).
    pub issued_token_type: Option<String>,
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
    /// What the client counted (its predecessors before a restart included), if one
    /// was built.
    pub stats: Option<authcore::Stats>,
    /// The type of the client's cached token at the end, if it holds one.
    pub token_type: Option<String>,
    /// The statuses of the `replay` step's two requests.
    pub replay_statuses: Vec<u16>,
    /// Whether the client's token at the end is bound to its client certificate.
    pub certificate_bound: bool,
    /// The `issued_token_type` of the client's cached token at the end, if it says.
    pub issued_token_type: Option<String>,
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

/// The options of a scenario's client: a file store in `store_dir` (filed under
/// [`STORE_KEY`]) when the scenario asks for one, and DPoP with a newly generated key
/// of the scenario's algorithm.
fn client_options(
    s: &Scenario,
    server: &DevServer,
    store_dir: Option<&Path>,
) -> Result<Options, Error> {
    let mut options = Options::default()
        .failure_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .timeout(Duration::from_secs(10));
    if let Some(ca) = server.ca_file() {
        options = options.ca_bundle(ca);
    }
    if let Some(dir) = store_dir {
        options = options
            .store(Arc::new(authcore::FileStore::new(dir)?))
            .store_key(STORE_KEY);
    }
    if let Some(name) = &s.client.dpop {
        let key = DpopKey::generate(DpopAlgorithm::from_name(name)?)?;
        options = options.dpop(Dpop::new(key));
    }
    Ok(options)
}

/// Builds the client a scenario describes, against `server`; `store_dir` is the
/// directory of its file store when the scenario asks for one.
pub fn build_client(
    s: &Scenario,
    server: &DevServer,
    store_dir: Option<&Path>,
    assertion_file: &Path,
) -> Result<Client, Error> {
    build_clients(s, server, store_dir, assertion_file).map(|(client, _)| client)
}

/// Like [`build_client`], with the subject client of a token exchange (whose token
/// requests count with the client's).
pub fn build_clients(
    s: &Scenario,
    server: &DevServer,
    store_dir: Option<&Path>,
    assertion_file: &Path,
) -> Result<(Client, Option<Client>), Error> {
    if s.dialect == Dialect::Oauth2TokenExchange {
        let creds = server.credentials();
        let token_url = format!("{}/oauth2/token", server.url());
        let secret = secret_of(s, server);
        // The subject client's tokens are its own: no store, no DPoP.
        let subject_options = Options::default()
            .failure_backoff(Duration::from_millis(50), Duration::from_millis(500))
            .timeout(Duration::from_secs(10));
        let subject = Client::new(
            ClientCredentials::new(&token_url, &creds.client_id, secret.clone())
                .scopes(s.client.subject_scopes.clone())
                .auth_method(AuthMethod::ClientSecretPost),
            subject_options,
        )?;
        let grant = TokenExchange::new(
            token_url,
            &creds.client_id,
            secret,
            AssertionSource::client(subject.clone()),
            token_type::ACCESS_TOKEN,
        )
        .audiences(s.client.audience.clone())
        .scopes(s.client.scopes.clone())
        .auth_method(AuthMethod::ClientSecretPost);
        let client = Client::new(grant, client_options(s, server, store_dir)?)?;
        return Ok((client, Some(subject)));
    }
    single_client(s, server, store_dir, assertion_file).map(|client| (client, None))
}

/// The client of every dialect that has no subject client.
fn single_client(
    s: &Scenario,
    server: &DevServer,
    store_dir: Option<&Path>,
    assertion_file: &Path,
) -> Result<Client, Error> {
    let creds = server.credentials();
    let base = server.url();
    let secret = secret_of(s, server);
    let options = client_options(s, server, store_dir)?;
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
        Dialect::Oauth2Assertion => {
            let grant =
                ClientCredentials::new(format!("{base}/oauth2/token"), &creds.client_id, "")
                    .scopes(s.client.scopes.clone())
                    .client_assertion(assertion_source(s, assertion_file));
            Client::new(grant, options)
        }
        Dialect::Oauth2JwtBearer => {
            let grant = JwtBearer::new(
                format!("{base}/oauth2/token"),
                assertion_source(s, assertion_file),
            )
            .scopes(s.client.scopes.clone());
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
        Dialect::Oauth2Mtls => {
            let certificate = mtls_certificate(s, server)?;
            let options = options.client_certificate(certificate);
            let metadata = Metadata::discover(&base, &options)?;
            let grant = ClientCredentials::from_metadata(&metadata, MTLS_CLIENT_ID, "")?
                .scopes(s.client.scopes.clone())
                .auth_method(AuthMethod::TlsClientAuth);
            Client::new(grant, options)
        }
        Dialect::Oauth2TokenExchange => build_client(s, server, store_dir, assertion_file),
    }
}

/// Where the scenario's client reads its assertion: the file, or `cat` of it.
fn assertion_source(s: &Scenario, file: &Path) -> AssertionSource {
    match s.client.assertion {
        Some(AssertionKind::Command) => {
            AssertionSource::command("cat", [file.to_string_lossy().into_owned()])
        }
        _ => AssertionSource::file(file),
    }
}

/// The `oauth2_mtls` client's certificate: issued by the provider for
/// [`MTLS_CLIENT_ID`], whose registration (`tls_client_auth` with its subject) is added
/// to the scenario's provider settings.
fn mtls_certificate(s: &Scenario, server: &DevServer) -> Result<ClientCertificate, Error> {
    let config = |message: String| Error::Config { message };
    let made = server
        .client_certificate(MTLS_CLIENT_ID, false)
        .map_err(config)?;
    let text = |name: &str| made[name].as_str().unwrap_or_default().to_owned();
    let mut behaviour = s.provider.clone();
    behaviour.mtls_clients.push(MtlsClient {
        client_id: MTLS_CLIENT_ID.to_owned(),
        tls_client_auth_subject_dn: Some(text("subject")),
        thumbprint: None,
    });
    server.set_behaviour(behaviour).map_err(config)?;
    ClientCertificate::from_pem(text("certificate").as_bytes(), text("key").as_bytes())
}

/// The client secret (or api.video key) the scenario's client presents.
fn secret_of(s: &Scenario, server: &DevServer) -> String {
    s.client
        .secret
        .clone()
        .unwrap_or_else(|| server.credentials().client_secret.clone())
}

/// The client that replaces `old` after a restart: for the dialects that sign a user
/// in, a refresh-token grant from the last refresh token `old` held (at the endpoint
/// the sign-in used, in its body format); for the others, the same client made anew.
/// Either way with the same options and store, and a new DPoP key.
pub fn restart_client(
    s: &Scenario,
    server: &DevServer,
    store_dir: Option<&Path>,
    assertion_file: &Path,
    old: &Client,
) -> Result<Client, Error> {
    let base = server.url();
    let options = client_options(s, server, store_dir)?;
    let creds = server.credentials();
    let last = || -> Result<Secret, Error> {
        old.cached_token()
            .and_then(|t| t.refresh_token().cloned())
            .ok_or_else(|| Error::Config {
                message: "the client to restart holds no refresh token".into(),
            })
    };
    let grant = match s.dialect {
        Dialect::Oauth2Code => RefreshToken::new(
            format!("{base}/oauth2/token"),
            &creds.client_id,
            secret_of(s, server),
            last()?,
        )
        .revocation_url(format!("{base}/oauth2/revoke")),
        Dialect::ViewneoCode => RefreshToken::new(
            format!("{base}/oauth/token"),
            &creds.client_id,
            secret_of(s, server),
            last()?,
        )
        .json_body(),
        Dialect::Oauth2Device => {
            let metadata = Metadata::discover(&base, &options)?;
            let mut grant = RefreshToken::new(
                metadata.require_token_endpoint()?,
                &creds.client_id,
                secret_of(s, server),
                last()?,
            );
            if let Some(url) = &metadata.revocation_endpoint {
                grant = grant.revocation_url(url);
            }
            grant
        }
        _ => return build_client(s, server, store_dir, assertion_file),
    };
    Client::new(grant, options)
}

/// `a`'s counts plus `b`'s: what a client and its restarted successor did together.
fn summed(a: &Stats, b: &Stats) -> Stats {
    let mut sum = *a;
    sum.cache_hits += b.cache_hits;
    sum.token_requests_succeeded += b.token_requests_succeeded;
    sum.token_requests_refused += b.token_requests_refused;
    sum.token_requests_failed += b.token_requests_failed;
    sum.renewals_initial += b.renewals_initial;
    sum.renewals_ahead += b.renewals_ahead;
    sum.renewals_expired += b.renewals_expired;
    sum.renewals_rejected += b.renewals_rejected;
    sum.renewals_forced += b.renewals_forced;
    sum.store_adoptions += b.store_adoptions;
    sum.waits += b.waits;
    sum.wait_time += b.wait_time;
    sum.wait_timeouts += b.wait_timeouts;
    sum.backoff_refusals += b.backoff_refusals;
    sum.retries_after_401 += b.retries_after_401;
    sum.signins_evicted += b.signins_evicted;
    sum.dpop_nonce_retries += b.dpop_nonce_retries;
    sum
}

/// Sends the request `headers` describe (`GET url`) twice, exactly as they are, with
/// an HTTP client of the runner's own; the two statuses.
///
/// In TLS mode it trusts the provider's CA, and presents no client certificate.
fn replay(
    url: &str,
    headers: &authcore::RequestHeaders,
    ca: Option<&Path>,
) -> Result<Vec<u16>, Error> {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| Error::Config {
            message: format!("cannot read {}: {e}", ca.display()),
        })?;
        let roots: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                .build(),
        );
    }
    let agent: ureq::Agent = config.build().into();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let mut request = agent
            .get(url)
            .header("authorization", headers.authorization.expose_secret());
        if let Some(proof) = &headers.dpop {
            request = request.header("dpop", proof.expose_secret());
        }
        let response = request.call().map_err(|e| Error::Transport {
            message: format!("the replayed request failed: {e}"),
            source: None,
        })?;
        statuses.push(response.status().as_u16());
    }
    Ok(statuses)
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
    let store_path = store_dir.as_ref().map(|d| d.path());
    // Where the assertion dialects read their assertion (written by the steps).
    let assertion_dir = tempfile::tempdir().expect("a temporary assertion directory");
    let assertion_file = assertion_dir.path().join("assertion");
    let (mut current, mut subject) = match build_clients(s, server, store_path, &assertion_file) {
        Ok((c, subject)) => (Some(c), subject),
        Err(e) => {
            record(&observed, Err(e));
            (None, None)
        }
    };
    // What restarted clients counted before they were replaced.
    let mut retired = Stats::default();
    for step in &s.steps {
        let Some(client) = current.clone() else {
            break;
        };
        let obs = observed.clone();
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
            Step::DpopRotate {} => server.rotate_dpop_nonces(),
            Step::Replay {} => {
                let url = format!("{}/api/replay", server.url());
                let statuses = client
                    .request_headers("GET", &url)
                    .and_then(|headers| replay(&url, &headers, server.ca_file()));
                match statuses {
                    Ok(statuses) => obs.lock().replay_statuses.extend(statuses),
                    Err(e) => record(&obs, Err(e)),
                }
            }
            Step::WriteAssertion { sub, ttl_s } => {
                let sub = sub.as_deref().unwrap_or(&server.credentials().client_id);
                match server.mint(sub, *ttl_s) {
                    Ok(jwt) => {
                        if let Err(e) = std::fs::write(&assertion_file, jwt) {
                            panic!("scenario {}: writing the assertion: {e}", s.name);
                        }
                    }
                    Err(e) => panic!("scenario {}: minting the assertion: {e}", s.name),
                }
            }
            Step::RemoveAssertion {} => {
                let _ = std::fs::remove_file(&assertion_file);
            }
            Step::Restart {} if subject.is_some() => {
                match build_clients(s, server, store_path, &assertion_file) {
                    Ok((next, next_subject)) => {
                        retired = summed(&retired, &client.stats());
                        if let Some(old) = std::mem::replace(&mut subject, next_subject) {
                            retired = summed(&retired, &old.stats());
                        }
                        current = Some(next);
                    }
                    Err(e) => record(&obs, Err(e)),
                }
            }
            Step::Restart {} => {
                match restart_client(s, server, store_path, &assertion_file, &client) {
                    Ok(next) => {
                        retired = summed(&retired, &client.stats());
                        current = Some(next);
                    }
                    Err(e) => record(&obs, Err(e)),
                }
            }
            Step::RevokeSubject {} => {
                let cached = subject.as_ref().and_then(Client::cached_token);
                let revoked = cached.and_then(|t| {
                    server
                        .revoke_token_tag(&crate::devserver::tag(t.access_token().expose_secret()))
                });
                if revoked.is_none() {
                    record(
                        &obs,
                        Err(Error::Config {
                            message: "revoke_subject: no subject token to revoke".into(),
                        }),
                    );
                }
            }
        }
    }
    let mut o = observed.lock().clone();
    o.counters = server.counters();
    o.token_type = current
        .as_ref()
        .and_then(Client::cached_token)
        .map(|t| t.token_type().to_owned());
    o.certificate_bound = current.as_ref().is_some_and(|c| {
        let (Some(cert), Some(token)) = (c.client_certificate(), c.cached_token()) else {
            return false;
        };
        let tag = crate::devserver::tag(token.access_token().expose_secret());
        server
            .token_info(&tag)
            .is_some_and(|info| info["cnf"]["x5t#S256"].as_str() == Some(cert.thumbprint()))
    });
    o.issued_token_type = current
        .as_ref()
        .and_then(Client::cached_token)
        .and_then(|t| t.issued_token_type().map(str::to_owned));
    // A subject client's token requests count with the client's.
    let retired = match &subject {
        Some(subject) => summed(&retired, &subject.stats()),
        None => retired,
    };
    o.stats = current.map(|c| summed(&retired, &c.stats()));
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
    eq(
        "assertions received again",
        e.assertions_resent,
        c.assertions_resent,
    );
    eq(
        "assertions received expired",
        e.assertions_expired,
        c.assertions_expired,
    );
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
    if let Some(want) = e.certificate_bound {
        if want != o.certificate_bound {
            problems.push(format!(
                "token bound to the client certificate: expected {want}, observed {}",
                o.certificate_bound
            ));
        }
    }
    if let Some(want) = e.dpop_nonce_retries {
        let got = o.stats.as_ref().map(|s| s.dpop_nonce_retries);
        if got != Some(want) {
            problems.push(format!(
                "requests resent with a DPoP nonce: expected {want}, observed {got:?}"
            ));
        }
    }
    if let Some(want) = &e.token_type {
        if o.token_type.as_ref() != Some(want) {
            problems.push(format!(
                "token type at the end: expected {want}, observed {:?}",
                o.token_type
            ));
        }
    }
    if let Some(want) = &e.issued_token_type {
        if o.issued_token_type.as_ref() != Some(want) {
            problems.push(format!(
                "issued token type at the end: expected {want}, observed {:?}",
                o.issued_token_type
            ));
        }
    }
    if let Some(want) = &e.replay_statuses {
        if *want != o.replay_statuses {
            problems.push(format!(
                "statuses of the replayed request: expected {want:?}, observed {:?}",
                o.replay_statuses
            ));
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
    fn dpop_expectations_are_compared() {
        let s = scenario(
            r#"{"token_type": "DPoP", "dpop_nonce_retries": 1, "replay_statuses": [200, 401], "errors": {}}"#,
        );
        let mut o = Observed::default();
        let problems = check(&s, &o).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        let mut stats = authcore::Stats::default();
        stats.dpop_nonce_retries = 1;
        o.stats = Some(stats);
        o.token_type = Some("DPoP".into());
        o.replay_statuses = vec![200, 401];
        assert!(check(&s, &o).is_ok());
        o.replay_statuses = vec![200, 200];
        o.token_type = Some("Bearer".into());
        assert_eq!(check(&s, &o).unwrap_err().len(), 2);
    }

    #[test]
    fn the_issued_token_type_is_compared() {
        let s = scenario(
            r#"{"issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "errors": {}}"#,
        );
        let mut o = Observed::default();
        assert_eq!(check(&s, &o).unwrap_err().len(), 1);
        o.issued_token_type = Some("urn:ietf:params:oauth:token-type:jwt".into());
        assert_eq!(check(&s, &o).unwrap_err().len(), 1);
        o.issued_token_type = Some("urn:ietf:params:oauth:token-type:access_token".into());
        assert!(check(&s, &o).is_ok());
        let exchange = r#"{"name":"t","dialect":"oauth2_token_exchange",
            "client":{"audience":["a"],"subject_scopes":["s"]},
            "steps":[{"revoke_subject":{}}],"expect":{}}"#;
        let parsed: Scenario = serde_json::from_str(exchange).unwrap();
        assert_eq!(parsed.dialect, Dialect::Oauth2TokenExchange);
        assert_eq!(parsed.client.audience, ["a"]);
    }

    #[test]
    fn a_restarted_clients_counts_add_up() {
        let mut a = authcore::Stats::default();
        a.token_requests_succeeded = 1;
        a.dpop_nonce_retries = 1;
        a.renewals_initial = 1;
        let mut b = authcore::Stats::default();
        b.token_requests_succeeded = 2;
        b.renewals_forced = 1;
        let sum = summed(&a, &b);
        assert_eq!(sum.token_requests(), 3);
        assert_eq!(sum.dpop_nonce_retries, 1);
        assert_eq!(sum.renewals(), 2);
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
