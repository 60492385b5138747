//! Name resolution without a thread per request.
//!
//! With a timeout configured, ureq's default resolver runs every lookup on a new thread
//! (so that it can give up on a slow `getaddrinfo`) — for IP literals too, and before
//! every request, pooled connection or not. authcore always has a deadline, so that
//! would be one thread per request. This resolver answers IP literals and `localhost`
//! inline, and keeps what a real lookup found for a bounded time: in steady state no
//! request creates a thread. A lookup that is not cached still runs bounded by its
//! deadline, through ureq's resolver.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long the addresses of a name are reused.
const TTL: Duration = Duration::from_secs(30);
/// How many names are remembered (the oldest is dropped first).
const MAX_NAMES: usize = 64;

/// Resolves IP literals and `localhost` inline and caches lookups for [`TTL`].
#[derive(Default)]
pub(crate) struct CachingResolver {
    fallback: DefaultResolver,
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl fmt::Debug for CachingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingResolver").finish_non_exhaustive()
    }
}

/// The addresses a host stands for without a lookup: an IP literal, or `localhost`.
fn literal(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(vec![SocketAddr::new(ip, port)]);
    }
    bare.eq_ignore_ascii_case("localhost").then(|| {
        vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]
    })
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let (Some(host), Some(scheme)) = (uri.host(), uri.scheme_str()) else {
            return self.fallback.resolve(uri, config, timeout);
        };
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        if let Some(addrs) = literal(host, port) {
            let mut out = self.empty();
            for a in addrs {
                out.push(a);
            }
            return Ok(out);
        }
        let key = format!("{host}:{port}");
        let now = Instant::now();
        if let Some((at, addrs)) = self.cache.lock().get(&key) {
            if now.saturating_duration_since(*at) < TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs = match self.fallback.resolve(uri, config, timeout) {
            // The system resolver's failures (no such name, no answer from the name
            // server) come back as I/O errors of no particular kind: say what they are.
            Err(ureq::Error::Io(_)) => return Err(ureq::Error::HostNotFound),
            other => other?,
        };
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_NAMES {
            let oldest = cache
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                cache.remove(&k);
            }
        }
        cache.insert(key, (now, addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_localhost_need_no_lookup() {
        assert_eq!(
            literal("127.0.0.1", 8080).unwrap(),
            vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            literal("[::1]", 443).unwrap(),
            vec!["[::1]:443".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(literal("LOCALHOST", 80).unwrap().len(), 2);
        assert!(literal("example.com", 443).is_none());
        assert!(literal("127.0.0.1.example.com", 443).is_none());
    }
}
