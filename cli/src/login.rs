//! `authcore login` / `authcore logout`: sign a user in at any OpenID provider found by
//! its issuer URL — the authorization code flow with PKCE through the system browser
//! and a loopback redirect (RFC 8252 §7.3), or the device flow — and keep the refresh
//! token in a file store, where `authcore token --issuer …` finds it.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use authcore::grant::{AuthorizationCode, DeviceCode, RefreshToken};
use authcore::{
    AuthorizationCodeFlow, Client, DeviceFlow, Error, FileStore, Metadata, Options, Secret,
};

/// The page the browser shows once the redirect arrived.
const DONE_PAGE: &str =
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>authcore</title></head>\
<body><p>Signed in. You can close this tab and return to the terminal.</p></body></html>";

/// The path of the loopback redirect URI.
const CALLBACK_PATH: &str = "/callback";

/// Where `authcore login` keeps tokens unless told otherwise:
/// `options` for the profile `profile` (default `default`): one signed-in user each,
/// filed under its name in the store.
pub fn profile_options(options: Options, profile: Option<&str>) -> Options {
    options.store_key(format!("profile:{}", profile.unwrap_or("default")))
}

/// The default store directory: `$XDG_CACHE_HOME/authcore`, else `~/.cache/authcore`.
pub fn default_store_dir() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("authcore"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache/authcore"))
        .ok_or_else(|| Error::Config {
            message: "no HOME or XDG_CACHE_HOME: pass --store DIR".into(),
        })
}

/// Who signs in where.
pub struct Session {
    /// The issuer's metadata.
    pub metadata: Metadata,
    /// The OAuth client id.
    pub client_id: String,
    /// The client secret; empty for a public client.
    pub client_secret: Secret,
    /// Scopes to ask for.
    pub scopes: Vec<String>,
    /// Resource indicators (RFC 8707).
    pub resources: Vec<String>,
    /// Options, with the file store set.
    pub options: Options,
}

impl Session {
    /// Discovers `issuer` and sets up the file store in `store_dir`, where the session is
    /// filed under the profile [`profile_options`] names in `options`.
    pub fn new(
        issuer: &str,
        client_id: String,
        client_secret: Secret,
        scopes: Vec<String>,
        resources: Vec<String>,
        store_dir: PathBuf,
        options: Options,
    ) -> Result<Session, Error> {
        let metadata = Metadata::discover(issuer, &options)?;
        let options = options.store(Arc::new(FileStore::new(store_dir)?));
        Ok(Session {
            metadata,
            client_id,
            client_secret,
            scopes,
            resources,
            options,
        })
    }

    /// A client that renews from the refresh token in the store (the one `login` put
    /// there): what `authcore token --issuer` and `logout` use.
    pub fn client(&self) -> Result<Client, Error> {
        let grant = RefreshToken::from_metadata(
            &self.metadata,
            self.client_id.clone(),
            self.client_secret.clone(),
        )?
        .resources(self.resources.clone());
        Client::new(grant, self.options.clone())
    }

    /// Signs in through the browser: the authorization URL is printed (and opened,
    /// unless `open_browser` is false), one redirect to a loopback listener on a free
    /// port is accepted within `wait`.
    pub fn browser_login(&self, open_browser: bool, wait: Duration) -> Result<Client, Error> {
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| Error::Config {
                message: format!("cannot listen on 127.0.0.1 for the redirect: {e}"),
            })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let redirect = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
        let config = AuthorizationCode::from_metadata(
            &self.metadata,
            self.client_id.clone(),
            self.client_secret.clone(),
            redirect.clone(),
        )?
        .scopes(self.scopes.clone())
        .resources(self.resources.clone());
        let flow = AuthorizationCodeFlow::new(config, self.options.clone())?;
        let request = flow.authorization_url()?;
        eprintln!(
            "Open this URL in a browser to sign in:\n\n  {}\n",
            request.url
        );
        if open_browser && open::that_detached(&request.url).is_err() {
            eprintln!("(no browser could be opened: open the URL yourself)");
        }
        let target = await_redirect(listener, wait)?;
        flow.finish(&format!("http://127.0.0.1:{port}{target}"), &request.state)
    }

    /// Signs in with the device flow: the code and URL are printed, then the user's
    /// approval is awaited (at most as long as the code lives, and `wait`).
    pub fn device_login(&self, wait: Duration) -> Result<Client, Error> {
        let config = DeviceCode::from_metadata(
            &self.metadata,
            self.client_id.clone(),
            self.client_secret.clone(),
        )?
        .scopes(self.scopes.clone())
        .resources(self.resources.clone());
        let flow = DeviceFlow::new(config, self.options.clone())?;
        let auth = flow.start()?;
        eprintln!(
            "To sign in, open {} and enter the code {}",
            auth.verification_uri, auth.user_code
        );
        if let Some(complete) = &auth.verification_uri_complete {
            eprintln!("(or open {complete})");
        }
        auth.wait(Some(wait))
    }
}

/// Accepts connections on `listener` until one brings the redirect (a request for the
/// callback path with a query); answers it with a short page and returns its target
/// (path and query). Other requests (a favicon) get 404. Ends after `wait`.
fn await_redirect(listener: std::net::TcpListener, wait: Duration) -> Result<String, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Config {
            message: format!("cannot start the redirect listener: {e}"),
        })?;
    runtime.block_on(async move {
        listener.set_nonblocking(true).ok();
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| Error::Config {
            message: format!("cannot listen for the redirect: {e}"),
        })?;
        let timeout = tokio::time::sleep(wait);
        tokio::pin!(timeout);
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut timeout => {
                    return Err(Error::Timeout {
                        message: "no sign-in came back to the loopback redirect in time".into(),
                    })
                }
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let target = req.uri().path_and_query().map(|p| p.as_str().to_owned());
                        let reply = match target {
                            Some(t)
                                if req.uri().path() == CALLBACK_PATH
                                    && req.uri().query().is_some() =>
                            {
                                let _ = tx.try_send(t);
                                hyper::Response::builder()
                                    .header("content-type", "text/html; charset=utf-8")
                                    .header("connection", "close")
                                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                        DONE_PAGE.as_bytes(),
                                    )))
                            }
                            _ => hyper::Response::builder()
                                .status(404)
                                .body(http_body_util::Full::new(bytes::Bytes::new())),
                        };
                        Ok::<_, Infallible>(reply.unwrap_or_default())
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Ok(target) = rx.try_recv() {
                return Ok(target);
            }
        }
    })
}
