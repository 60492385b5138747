//! Events: what a client does, told through the [`log`] facade with target `authcore`.
//!
//! Every event has a stable name in the key `event` (e.g. `token.obtained`) and its
//! facts as further key-values (the `log` crate's `kv` feature) and in the message. No
//! event ever carries a secret (tokens, refresh tokens, client secrets, API keys) or a
//! full URL: endpoints appear as `host:port`.
//!
//! | event | level | facts |
//! |---|---|---|
//! | `token.requested` | debug | `grant`, `host`, `attempt` |
//! | `token.obtained` | debug | `grant`, `host`, `attempt`, `lifetime_s`, `scope` |
//! | `token.request_failed` | warn (debug when retried, or a device flow's "not yet") | `grant`, `host`, `attempt`, `kind`, `status`, `retry_after_s`, `retrying` |
//! | `token.renewed` | info | `reason`: `initial`, `ahead`, `expired`, `rejected` (after a 401), `forced`; `lifetime_s` |
//! | `token.renewal_failed` | warn | `reason`, `kind`, `status` |
//! | `token.rejected` | info | an API answered 401: `status`, `dropped` |
//! | `refresh_token.rotated` | info | — |
//! | `backoff.entered` | warn | `failures`, `pause_s` |
//! | `backoff.refused` | debug | `kind` (a call answered with the last failure) |
//! | `wait.timed_out` | warn | `waited_s` |
//! | `token.assertion_reread` | debug | the token endpoint refused an assertion and is sent the one its source gives now: `grant`, `host` |
//! | `dpop.nonce` | debug | a server asked for a DPoP nonce and the request is sent once more with it: `status` (an API), or `grant`, `host` (a token endpoint) |
//! | `dpop.nonce_ignored` | warn | a server's `DPoP-Nonce` was not kept (empty, too long, or characters RFC 9449 does not allow): `length` |
//! | `store.adopted` | info | a token another client saved in the store is used and none is requested (said instead of `token.renewed`): `store`, `reason`, `expires_in_s` |
//! | `store.saved` | debug | `store` (`file`, `redis`, …) |
//! | `store.busy` | debug | another process holds the store's lock and renews; the still-valid token is kept: `store` |
//! | `store.unusable` / `store.usable` / `store.save_failed` | warn / info / error | — (the message says what failed) |
//! | `store.corrupt` | warn | a stored record that cannot be read is treated as empty: `store` |
//! | `store.unlock_failed` | warn | a Redis lock could not be released; it expires by itself: `store` |
//! | `store.no_user` | warn | a sign-in without an ID token (no `openid` scope) and without a store key is kept in its client only, not in the store |
//! | `hook.failed` | error | — |
//! | `signin.evicted` | warn | a flow dropped its oldest pending sign-in beyond its bound: `max_pending`, `age_s` |
//! | `tls.no_platform_roots` | warn | the platform's trust store holds no certificate; the built-in Web PKI roots are used |
//!
//! With no logger installed an event costs one relaxed load of `log`'s maximum level;
//! no event is emitted on the cached path.
//!
//! Where events are raised: on the thread doing the work, never while the cache's lock
//! is held and never inside a lazy initialiser (a logger may take locks of its own, such
//! as Python's GIL). A logger may call the client: a call that would wait for the
//! renewal the event belongs to (no fresh token is cached and this thread is renewing
//! it) fails at once with a [`Config`](crate::ErrorKind::Config) error rather than
//! waiting for itself.

/// The target of every event.
pub(crate) const TARGET: &str = "authcore";

/// Emits one event: `event!(level, "name", key = value, …; "message {}", args)`.
macro_rules! event {
    ($level:ident, $name:literal $(, $key:ident $(: $cap:tt)? = $value:expr)* ; $($message:tt)+) => {
        ::log::$level!(
            target: $crate::events::TARGET,
            event = $name $(, $key $(: $cap)? = $value)*;
            $($message)+
        )
    };
}
pub(crate) use event;

/// `text` fit for a log line: control characters replaced, at most 200 characters.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Seconds as a log value, with millisecond precision.
pub(crate) fn secs(d: std::time::Duration) -> f64 {
    (d.as_millis() as f64) / 1000.0
}
