//! [`DeviceFlow`]: the device authorization grant (RFC 8628) run to the end — a user
//! code to show, then polling until the user approves — handing out a [`Client`] that
//! goes on by refresh token.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::clock::Deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::flow::client_after;
use crate::grant::device_code::{DEFAULT_INTERVAL, SLOW_DOWN};
use crate::grant::DeviceCode;
use crate::http::Http;
use crate::options::Options;
use crate::secret::Secret;

/// Longest pause between two looks at the cancel flag while waiting.
const CANCEL_CHECK: Duration = Duration::from_millis(100);

/// A device authorization client: [`start`](Self::start) it, show the user the code.
pub struct DeviceFlow {
    config: DeviceCode,
    http: Arc<Http>,
}

impl fmt::Debug for DeviceFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceFlow")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DeviceFlow {
    /// A flow with these client options (used for every request and the client).
    pub fn new(config: DeviceCode, options: Options) -> Result<Self> {
        let http = Http::new(Arc::new(options))?;
        config.check_certificate(http.options())?;
        for url in config.endpoints()? {
            http.check_url(url)?;
        }
        Ok(DeviceFlow {
            config,
            http: Arc::new(http),
        })
    }

    /// Asks the server for a device code: what to show the user comes back.
    pub fn start(&self) -> Result<DeviceAuthorization> {
        let deadline = Deadline::after(self.http.options().timeout);
        let started = self.config.start(&self.http, deadline)?;
        let lifetime = Duration::from_secs(started.expires_in.clamp(1, 86_400));
        Ok(DeviceAuthorization {
            user_code: started.user_code.clone(),
            verification_uri: started.verification_uri.clone(),
            verification_uri_complete: started.verification_uri_complete.clone(),
            expires_in: lifetime,
            interval: started
                .interval
                .map_or(DEFAULT_INTERVAL, |s| Duration::from_secs(s.clamp(1, 60))),
            device_code: Secret::new(started.device_code.clone()),
            expires_at: Instant::now() + lifetime,
            cancelled: Arc::new(AtomicBool::new(false)),
            config: self.config.clone(),
            http: Arc::clone(&self.http),
        })
    }
}

/// A started device authorization: show `user_code` and `verification_uri` (or
/// `verification_uri_complete`) to the user, then [`wait`](Self::wait).
pub struct DeviceAuthorization {
    /// The code the user enters.
    pub user_code: String,
    /// Where the user enters it.
    pub verification_uri: String,
    /// A URL with the code already in it, if the server gives one.
    pub verification_uri_complete: Option<String>,
    /// How long the codes are valid.
    pub expires_in: Duration,
    /// The polling interval the server asked for.
    pub interval: Duration,
    device_code: Secret,
    expires_at: Instant,
    cancelled: Arc<AtomicBool>,
    config: DeviceCode,
    http: Arc<Http>,
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Cancels a [`DeviceAuthorization::wait`] from another thread.
#[derive(Debug, Clone)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// Makes the wait return [`Cancelled`](ErrorKind::Cancelled) within 100 ms.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl DeviceAuthorization {
    /// A handle that cancels [`wait`](Self::wait) from another thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(Arc::clone(&self.cancelled))
    }

    /// Polls the token endpoint until the user approves, honouring the interval
    /// (`slow_down` adds 5 s each time; a failed connection doubles it), and returns a
    /// client that renews by refresh token. Ends with the server's error
    /// (`access_denied`, `expired_token`), [`Timeout`](ErrorKind::Timeout) when the codes
    /// expire or `timeout` passes, or [`Cancelled`](ErrorKind::Cancelled).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Client> {
        let end = timeout.map_or(self.expires_at, |t| {
            self.expires_at
                .min(Instant::now() + t.min(crate::options::MAX_DURATION))
        });
        let mut interval = self.interval;
        let before = self.http.counters().snapshot();
        loop {
            self.pause(interval, end)?;
            let request_deadline = Deadline::after(
                self.http
                    .options()
                    .timeout
                    .min(end.saturating_duration_since(Instant::now())),
            );
            match self
                .config
                .poll(&self.http, &self.device_code, request_deadline)
            {
                Ok(token) => {
                    let grant = self.config.refresh_grant(token.clone());
                    let counted = self.http.counters().snapshot().since(&before);
                    return client_after(&self.http, grant, &token, &counted, request_deadline);
                }
                Err(e) => match e.oauth().map(|o| o.error.as_str()) {
                    Some("authorization_pending") => {}
                    Some("slow_down") => interval += SLOW_DOWN,
                    _ if matches!(e.kind(), ErrorKind::Transport | ErrorKind::Timeout) => {
                        interval = (interval * 2).min(Duration::from_secs(60));
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// Sleeps `interval`, watching the cancel flag and the end of the wait.
    fn pause(&self, interval: Duration, end: Instant) -> Result<()> {
        let until = Instant::now() + interval;
        loop {
            if self.cancelled.load(Ordering::SeqCst) {
                return Err(Error::Cancelled);
            }
            let now = Instant::now();
            if now >= end {
                return Err(Error::Timeout {
                    message: if end >= self.expires_at {
                        "the device code expired before the user approved".into()
                    } else {
                        "the user did not approve the device in time".into()
                    },
                });
            }
            if now >= until {
                return Ok(());
            }
            std::thread::sleep(CANCEL_CHECK.min(until - now).min(end - now));
        }
    }
}
