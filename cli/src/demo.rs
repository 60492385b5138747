//! `authcore demo`: the real client against the in-process provider, through each
//! seed scenario, with a readable timeline. Fails if anything misbehaves.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use authcore::grant::{ApiKey, AuthorizationCode, ClientCredentials};
use authcore::AuthorizationCodeFlow;
use authcore::{Client, Dpop, Options, Token};

use crate::devserver::{Behaviour, Credentials, DevServer, Fault};
use crate::scenario::follow_authorize;

struct Timeline {
    start: Instant,
    failures: usize,
}

impl Timeline {
    fn say(&self, who: &str, what: impl AsRef<str>) {
        println!(
            "[{:>6.2}s] {who:<10} {}",
            self.start.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }

    fn check(&mut self, who: &str, ok: bool, what: impl AsRef<str>) {
        if ok {
            self.say(who, format!("ok: {}", what.as_ref()));
        } else {
            self.failures += 1;
            self.say(who, format!("MISBEHAVED: {}", what.as_ref()));
        }
    }
}

impl Timeline {
    /// Shows what the client counted in this scenario, and checks it against the
    /// provider: every token request the provider saw was counted by the client.
    fn stats(&mut self, who: &str, client: &Client, server: &DevServer) {
        let s = client.stats();
        self.say(
            who,
            format!(
                "counted: {} cache hits; {} token requests ({} ok, {} refused, {} failed); \
                 renewals {} initial, {} ahead, {} expired, {} after a 401; \
                 {} retries after a 401; {} calls refused by the backoff; {} resent with a \
                 DPoP nonce",
                s.cache_hits,
                s.token_requests(),
                s.token_requests_succeeded,
                s.token_requests_refused,
                s.token_requests_failed,
                s.renewals_initial,
                s.renewals_ahead,
                s.renewals_expired,
                s.renewals_rejected,
                s.retries_after_401,
                s.backoff_refusals,
                s.dpop_nonce_retries,
            ),
        );
        let provider = server.counters().token_requests;
        self.check(
            who,
            s.token_requests() == provider,
            format!("the provider saw the same {provider} token request(s)"),
        );
    }
}

type DemoResult = Result<(), Box<dyn std::error::Error>>;
/// One demo scenario: who it is about, and what it does.
type DemoStep = (&'static str, fn(&DevServer, &mut Timeline) -> DemoResult);

fn until_renewal(token: &Token) -> Duration {
    token
        .renew_at()
        .map(|at| at.saturating_duration_since(Instant::now()) + Duration::from_millis(20))
        .unwrap_or_default()
}

/// Client credentials at the provider's standard OAuth 2.0 endpoint.
fn dev_client_credentials(server: &DevServer) -> ClientCredentials {
    let creds = server.credentials();
    ClientCredentials::new(
        format!("{}/oauth2/token", server.url()),
        &creds.client_id,
        creds.client_secret.clone(),
    )
}

/// Sets the lifetime of the tokens the provider issues.
fn short_lifetime(server: &DevServer, secs: u64) {
    server
        .set_behaviour(Behaviour {
            lifetime_secs: secs,
            ..Behaviour::default()
        })
        .expect("the demo's lifetimes are in range");
}

fn options() -> Options {
    Options::default().timeout(Duration::from_secs(5))
}

/// Runs the demo; returns the number of scenarios that misbehaved.
pub fn run() -> Result<usize, Box<dyn std::error::Error>> {
    let addr: SocketAddr = "127.0.0.1:0".parse()?;
    let server = DevServer::start(addr, Credentials::default())?;
    let mut t = Timeline {
        start: Instant::now(),
        failures: 0,
    };
    t.say(
        "provider",
        format!("development provider on {}", server.url()),
    );
    let steps: [DemoStep; 7] = [
        ("api.video", api_video),
        ("viewneo", viewneo_pat),
        ("viewneo", viewneo_code),
        ("Vibe", vibe),
        ("revoked", revoked),
        ("backoff", backoff),
        ("DPoP", dpop),
    ];
    for (who, step) in steps {
        server.reset();
        if let Err(e) = step(&server, &mut t) {
            t.failures += 1;
            t.say(who, format!("MISBEHAVED: unexpected error: {e}"));
        }
    }
    let c = server.counters();
    t.say(
        "provider",
        format!(
            "expired tokens seen by the API in this demo: {}",
            c.resource_rejected_expired
        ),
    );
    Ok(t.failures)
}

fn api_video(server: &DevServer, t: &mut Timeline) -> DemoResult {
    const WHO: &str = "api.video";
    short_lifetime(server, 2);
    let rotations = Arc::new(AtomicUsize::new(0));
    let r = rotations.clone();
    let opts = options().on_refresh_token(move |_| {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let client = Client::new(
        ApiKey::with_base_url(server.url(), server.credentials().api_key.clone()),
        opts,
    )?;
    let first = client.token()?;
    t.say(
        WHO,
        "API key exchanged for an access token (lifetime 2 s) and a refresh token",
    );
    let resp = client.get(&format!("{}/api/videos", server.url()))?;
    t.check(
        WHO,
        resp.status == 200,
        format!("GET /api/videos -> {}", resp.status),
    );
    thread::sleep(until_renewal(&first));
    t.say(
        WHO,
        "token entered its renew-ahead window (last 20 % of its life)",
    );
    let second = client.token()?;
    let c = server.counters();
    let refreshes = c
        .token_requests_by_grant
        .get("apivideo/refresh")
        .copied()
        .unwrap_or(0);
    t.check(
        WHO,
        !Arc::ptr_eq(&first, &second) && refreshes == 1,
        format!("renewed ahead of expiry through /auth/refresh ({refreshes} refresh request)"),
    );
    t.check(
        WHO,
        rotations.load(Ordering::SeqCst) == 2,
        "both refresh tokens (first and rotated) reached the persistence hook",
    );
    t.stats(WHO, &client, server);
    Ok(())
}

fn viewneo_pat(server: &DevServer, t: &mut Timeline) -> DemoResult {
    const WHO: &str = "viewneo";
    let client = Client::personal_access_token(server.credentials().personal_access_token.clone());
    let resp = client.get(&format!("{}/api/v1.0/playlist", server.url()))?;
    t.check(
        WHO,
        resp.status == 200 && server.counters().token_requests == 0,
        format!(
            "personal access token: GET /api/v1.0/playlist -> {}, no token request",
            resp.status
        ),
    );
    t.stats(WHO, &client, server);
    Ok(())
}

fn viewneo_code(server: &DevServer, t: &mut Timeline) -> DemoResult {
    const WHO: &str = "viewneo";
    short_lifetime(server, 2);
    let creds = server.credentials();
    let config = AuthorizationCode::viewneo_at(
        &server.url(),
        &creds.client_id,
        creds.client_secret.clone(),
        "http://127.0.0.1:8765/callback",
    );
    let flow = AuthorizationCodeFlow::new(config, options())?;
    let request = flow.authorization_url()?;
    t.say(
        WHO,
        "authorization URL made with a fresh state and PKCE S256 challenge",
    );
    let callback = follow_authorize(&request.url)?;
    t.say(WHO, "user approved; redirected back with code and state");
    let client = flow.finish(&callback, &request.state)?;
    t.say(
        WHO,
        "state verified; code exchanged (JSON body) for access and refresh tokens",
    );
    let first = client.token()?;
    thread::sleep(until_renewal(&first));
    let resp = client.get(&format!("{}/api/v1.0/playlist", server.url()))?;
    let c = server.counters();
    let refreshes = c
        .token_requests_by_grant
        .get("viewneo/refresh_token")
        .copied()
        .unwrap_or(0);
    t.check(
        WHO,
        resp.status == 200 && refreshes == 1,
        format!(
            "renewed by refresh token before expiry; GET -> {}",
            resp.status
        ),
    );
    t.stats(WHO, &client, server);
    Ok(())
}

fn vibe(server: &DevServer, t: &mut Timeline) -> DemoResult {
    const WHO: &str = "Vibe";
    short_lifetime(server, 2);
    let grant = dev_client_credentials(server).scopes(["campaigns:read", "reporting:read"]);
    let client = Client::new(grant, options())?;
    let first = client.token()?;
    t.check(
        WHO,
        first.refresh_token().is_none() && first.scope() == Some("campaigns:read reporting:read"),
        "client credentials (Basic auth) granted scopes campaigns:read reporting:read, no refresh token",
    );
    thread::sleep(until_renewal(&first));
    let second = client.token()?;
    t.check(
        WHO,
        !Arc::ptr_eq(&first, &second) && server.counters().token_requests == 2,
        "a new token was requested shortly before the old one expired",
    );
    t.stats(WHO, &client, server);
    Ok(())
}

fn revoked(server: &DevServer, t: &mut Timeline) -> DemoResult {
    const WHO: &str = "revoked";
    let grant = dev_client_credentials(server);
    let client = Client::new(grant, options())?;
    let url = format!("{}/api/campaigns", server.url());
    client.get(&url)?;
    server.revoke_all(false);
    t.say(WHO, "provider revoked every access token");
    let resp = client.get(&url)?;
    let c = server.counters();
    t.check(
        WHO,
        resp.status == 200 && c.resource_rejected_invalid == 1 && c.token_requests == 2,
        format!("one 401, one renewal, request retried -> {}", resp.status),
    );
    t.stats(WHO, &client, server);
    Ok(())
}

fn backoff(server: &DevServer, t: &mut Timeline) -> DemoResult {
    const WHO: &str = "backoff";
    server.fail_next(Fault::status(1000, 503));
    let grant = dev_client_credentials(server);
    let opts = options()
        .max_retries(0)
        .failure_backoff(Duration::from_millis(500), Duration::from_secs(5));
    let client = Client::new(grant, opts)?;
    let mut errors = 0;
    for _ in 0..50 {
        if client.token().is_err() {
            errors += 1;
        }
    }
    let made = server.counters().token_requests;
    // The first failure is retried at once by the next call; the second starts the backoff.
    t.check(
        WHO,
        errors == 50 && made == 2,
        format!("token endpoint down: 50 calls failed fast, {made} token requests reached it (the second failure started the backoff)"),
    );
    server.fail_next(Fault::status(0, 503));
    thread::sleep(Duration::from_millis(550));
    let ok = client.token().is_ok();
    t.check(
        WHO,
        ok,
        "endpoint back: the next call after the backoff got a token",
    );
    t.stats(WHO, &client, server);
    Ok(())
}

fn dpop(server: &DevServer, t: &mut Timeline) -> DemoResult {
    const WHO: &str = "DPoP";
    server.set_behaviour(Behaviour {
        dpop: true,
        dpop_required: true,
        dpop_as_nonce: true,
        dpop_rs_nonce: true,
        ..Behaviour::default()
    })?;
    let dpop = Dpop::generate()?;
    t.say(
        WHO,
        format!(
            "a new ES256 key (thumbprint {}); the provider demands proofs and nonces",
            dpop.key().thumbprint()
        ),
    );
    let client = Client::new(dev_client_credentials(server), options().dpop(dpop))?;
    let url = format!("{}/api/campaigns", server.url());
    let resp = client.get(&url)?;
    let token = client.token()?;
    let c = server.counters();
    t.check(
        WHO,
        token.token_type() == "DPoP" && c.dpop_as_nonce_challenges == 1,
        "token endpoint asked for its nonce once; the request sent again with it got a DPoP-bound token",
    );
    t.check(
        WHO,
        resp.status == 200 && c.dpop_rs_nonce_challenges == 1,
        format!(
            "API asked for its own nonce once; sent again with a fresh proof (no renewal) -> {}",
            resp.status
        ),
    );
    for _ in 0..3 {
        client.get(&url)?;
    }
    let c = server.counters();
    t.check(
        WHO,
        c.dpop_proofs_rejected == 0 && client.stats().dpop_nonce_retries == 2,
        format!(
            "3 more requests, each with a fresh proof carrying the API's nonce: {} proofs accepted, none rejected, one resend per server",
            c.dpop_proofs_accepted
        ),
    );
    t.stats(WHO, &client, server);
    Ok(())
}
