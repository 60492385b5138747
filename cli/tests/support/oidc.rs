//! A real, certified authorization server for the interoperability tests: panva's
//! `oidc-provider` from the npm registry (installed into `tests/oidc/node_modules` by
//! `tests/provision.sh`), started on a free loopback port and stopped when dropped;
//! and a small cookie-keeping "browser" that follows its redirects and submits its forms.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server's client ids and secrets (see `tests/oidc/server.mjs`).
pub const CC_BASIC: (&str, &str) = ("cc-basic", "cc-basic-secret-0123456789");
/// A client-credentials client authenticating with `client_secret_post`.
pub const CC_POST: (&str, &str) = ("cc-post", "cc-post-secret-0123456789");
/// A service that exchanges other clients' access tokens for its own (RFC 8693).
pub const EXCHANGER: (&str, &str) = ("exchanger", "exchanger-secret-0123456789");
/// A confidential code-flow client.
pub const APP: (&str, &str) = ("app", "app-secret-0123456789");
/// The registered redirect URI (any port on 127.0.0.1 for these native clients).
pub const REDIRECT: &str = "http://127.0.0.1/callback";
/// The resource server the provider issues JWT access tokens for.
pub const API: &str = "https://api.example.test/";

/// A running `oidc-provider`.
pub struct Oidc {
    child: Child,
    /// Its issuer, `http://127.0.0.1:PORT` (`https://` in TLS mode).
    pub issuer: String,
}

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/oidc")
}

impl Oidc {
    /// Starts the provider; `client_key` is a PEM public key registered for
    /// `jwt-client` (private_key_jwt).
    pub fn start(client_key: Option<&Path>) -> Oidc {
        match client_key {
            Some(key) => Self::start_with(&[("AUTHCORE_OIDC_CLIENT_KEY", key)]),
            None => Self::start_with(&[]),
        }
    }

    /// Starts the provider with these environment variables (see tests/oidc/server.mjs:
    /// `AUTHCORE_OIDC_CLIENT_KEY`, `AUTHCORE_OIDC_FEDERATED_KEY`, `AUTHCORE_OIDC_TLS_DIR`).
    pub fn start_with(env: &[(&str, &Path)]) -> Oidc {
        // A start that says nothing in time is stopped and tried once more: Node has
        // been seen to stall at start-up on a loaded machine.
        Self::try_start(env)
            .or_else(|| Self::try_start(env))
            .expect("oidc-provider did not start within 20 s, twice")
    }

    fn try_start(env: &[(&str, &Path)]) -> Option<Oidc> {
        let dir = oidc_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run `npm ci --prefix tests/oidc` (tests/provision.sh does)"
        );
        let mut command = Command::new("node");
        command
            .arg("server.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("node must be installed");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(issuer) = line.strip_prefix("OIDC_ISSUER=") {
                    let _ = tx.send(issuer.to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(issuer) => Some(Oidc { child, issuer }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser without a screen: keeps cookies, follows redirects, submits forms.
pub struct Browser {
    agent: ureq::Agent,
    cookies: BTreeMap<String, String>,
}

/// Where a walk through redirects ended.
pub enum Landed {
    /// At a URL starting with the prefix asked for (not fetched).
    At(String),
    /// On a page (its URL and body).
    Page(String, String),
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser with no cookies.
    pub fn new() -> Browser {
        Browser {
            agent: ureq::Agent::config_builder()
                .max_redirects(0)
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, response: &ureq::http::Response<ureq::Body>) {
        for value in response.headers().get_all("set-cookie") {
            let Ok(value) = value.to_str() else { continue };
            let pair = value.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() {
                    self.cookies.remove(k.trim());
                } else {
                    self.cookies.insert(k.trim().to_owned(), v.to_owned());
                }
            }
        }
    }

    /// Requests `url` (GET, or POST of `form`) and follows redirects until a URL that
    /// starts with `stop_at` (not fetched) or a page; at most 20 hops.
    pub fn walk(&mut self, url: &str, form: Option<&[(String, String)]>, stop_at: &str) -> Landed {
        let mut url = url.to_owned();
        let mut form = form.map(<[_]>::to_vec);
        for _ in 0..20 {
            if url.starts_with(stop_at) {
                return Landed::At(url);
            }
            let cookie = self.cookie_header();
            let mut response = match form.take() {
                Some(fields) => {
                    let body: String = url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(fields.iter())
                        .finish();
                    self.agent
                        .post(&url)
                        .header("cookie", &cookie)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .send(body.as_bytes())
                }
                None => self.agent.get(&url).header("cookie", &cookie).call(),
            }
            .unwrap_or_else(|e| panic!("{url}: {e}"));
            self.keep_cookies(&response);
            let status = response.status().as_u16();
            if (300..400).contains(&status) {
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .expect("a redirect has a Location")
                    .to_owned();
                url = url::Url::parse(&url)
                    .and_then(|base| base.join(&location))
                    .map(String::from)
                    .expect("a valid Location");
                continue;
            }
            let body = response.body_mut().read_to_string().unwrap_or_default();
            return Landed::Page(url, body);
        }
        panic!("more than 20 redirects");
    }

    /// Submits the first form on `page` (at `page_url`) with its hidden fields, and
    /// follows redirects as [`walk`](Self::walk) does.
    pub fn submit(&mut self, page_url: &str, page: &str, stop_at: &str) -> Landed {
        let form = page.find("<form").map(|i| &page[i..]).expect("a form");
        let form = &form[..form.find("</form>").unwrap_or(form.len())];
        let attr = |tag: &str, name: &str| {
            let needle = format!("{name}=\"");
            tag.find(&needle).map(|i| {
                let rest = &tag[i + needle.len()..];
                html_unescape(&rest[..rest.find('"').unwrap_or(rest.len())])
            })
        };
        let action = attr(&form[..form.find('>').unwrap_or(form.len())], "action")
            .unwrap_or_else(|| page_url.to_owned());
        let mut fields = Vec::new();
        for input in form.split("<input").skip(1) {
            let tag = &input[..input.find('>').unwrap_or(input.len())];
            if let (Some(name), value) = (attr(tag, "name"), attr(tag, "value")) {
                fields.push((name, value.unwrap_or_default()));
            }
        }
        let action = url::Url::parse(page_url)
            .and_then(|base| base.join(&action))
            .map(String::from)
            .expect("a valid form action");
        self.walk(&action, Some(&fields), stop_at)
    }
}

fn html_unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// Signs in (approving everything) at `authorization_url` and returns the callback URL
/// the server redirects to (starting with `redirect`).
pub fn sign_in(authorization_url: &str, redirect: &str) -> String {
    match Browser::new().walk(authorization_url, None, redirect) {
        Landed::At(url) => url,
        Landed::Page(url, body) => panic!("stopped at {url}: {}", &body[..body.len().min(400)]),
    }
}

/// Approves a device authorization: opens `verification_uri_complete`, then submits
/// the code form and the confirmation form (at most four forms).
pub fn approve_device(verification_uri_complete: &str) {
    let mut browser = Browser::new();
    let Landed::Page(mut url, mut page) = browser.walk(verification_uri_complete, None, "\u{0}")
    else {
        unreachable!("no stop prefix")
    };
    for _ in 0..4 {
        if page.contains("<title>Sign-in Success</title>") {
            return;
        }
        let Landed::Page(next_url, next) = browser.submit(&url, &page, "\u{0}") else {
            unreachable!("no stop prefix")
        };
        (url, page) = (next_url, next);
    }
    let body = page.find("<body").map_or(&page[..], |i| &page[i..]);
    panic!(
        "device not approved, at {url}: {}",
        &body[..body.len().min(600)]
    );
}

/// Polls `check` every 50 ms until it is true or `within` passes.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}
