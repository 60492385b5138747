//! authcore: the access-token lifecycle done once, correctly.
//!
//! A [`Client`] obtains a token through a [`grant`], caches it, renews it ahead of
//! expiry with exactly one request however many threads ask, recovers once from a
//! 401, and never prints a secret.
//!
//! ```no_run
//! use authcore::{grant::ClientCredentials, Client, Options};
//!
//! let grant = ClientCredentials::vibe("my-client-id", "my-client-secret")
//!     .scopes(["campaigns:read", "reporting:read"]);
//! let client = Client::new(grant, Options::default())?;
//! let response = client.get("https://api.vibe.co/rest/advertisers")?;
//! println!("{}", response.status);
//! # Ok::<(), authcore::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod assertion;
mod cache;
mod challenge;
mod client;
mod clock;
mod device;
mod discovery;
mod dpop;
mod error;
mod events;
mod flow;
mod fork;
#[cfg(test)]
mod fuzz;
pub mod grant;
mod http;
mod mtls;
mod options;
pub mod provider;
mod random;
mod resolve;
mod secret;
mod stats;
mod steady;
mod store;
mod token;

pub use assertion::{AssertionCallback, AssertionSource};
pub use challenge::Challenge;
pub use client::{Client, RequestHeaders, SignOut};
pub use device::{CancelHandle, DeviceAuthorization, DeviceFlow};
pub use discovery::Metadata;
pub use dpop::{
    htu as dpop_htu, is_valid_nonce as is_valid_dpop_nonce, Dpop, DpopAlgorithm, DpopKey,
};
pub use error::{Error, ErrorKind, OAuthError, Problem, Result};
pub use flow::{
    AuthorizationCodeFlow, AuthorizationRequest, MAX_PENDING, PENDING_CLOCK_SKEW, PENDING_KEY_LEN,
    PENDING_LIFETIME,
};
pub use fork::after_fork_in_child;
pub use grant::AuthMethod;
pub use http::{BodyFormat, Response, USER_AGENT};
pub use mtls::ClientCertificate;
pub use options::{
    is_valid_header, is_valid_proxy_url, HookError, HookOutcome, Options, Proxy, RefreshTokenHook,
    Rotation, MAX_DURATION,
};
pub use secret::Secret;
pub use stats::Stats;
pub use store::{FileStore, MemoryStore, RedisStore, StoreKey, StoreLock, StoredToken, TokenStore};
pub use token::{parse_token_response, Freshness, Token};

/// The README's examples, compiled as doc tests so that they stay true (`core/README.md`
/// links to the repository's README, and the packaged crate carries it at its root).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
