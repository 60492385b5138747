//! Name resolution without a thread per request.
//!
//! With a timeout configured, ureq's default resolver runs every lookup on a new thread
//! (so that it can give up on a slow `getaddrinfo`) — for IP literals too, and before
//! every request, pooled connection or not. authcore always has a deadline, so that
//! would be one thread per request. This resolver answers IP literals and `localhost`
//! inline, and keeps what a real lookup found for a bounded time: in steady state no
//! request creates a thread. A lookup that is not cached still runs bounded by its
//! deadline, through ureq's resolver.
//!
//! The names found are read on every request to a named host, from every thread that
//! sends through the client: they are read without a lock and without an allocation,
//! and replaced whole when a lookup adds one (rarely: once per name and [`TTL`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
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
pub(crate) struct CachingResolver<R = DefaultResolver> {
    fallback: R,
    /// The names looked up, with when and what was found: replaced, never changed.
    found: ArcSwap<Vec<Found>>,
}

/// What a lookup of one name found, and when.
#[derive(Clone)]
struct Found {
    host: String,
    port: u16,
    at: Instant,
    addrs: ResolvedSocketAddrs,
}

impl<R> fmt::Debug for CachingResolver<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingResolver").finish_non_exhaustive()
    }
}

/// The addresses a host stands for without a lookup: an IP literal, or `localhost`.
/// Written into `out` (no allocation: this runs on every request to such a host);
/// `false`, and `out` untouched, for any other host.
fn literal(host: &str, port: u16, out: &mut ResolvedSocketAddrs) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        out.push(SocketAddr::new(ip, port));
        return true;
    }
    if bare.eq_ignore_ascii_case("localhost") {
        out.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        out.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port));
        return true;
    }
    false
}

impl<R: Resolver> Resolver for CachingResolver<R> {
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
        let mut out = self.empty();
        if literal(host, port, &mut out) {
            return Ok(out);
        }
        let now = Instant::now();
        let fresh = |f: &Found| {
            f.port == port && f.host == host && now.saturating_duration_since(f.at) < TTL
        };
        if let Some(found) = self.found.load().iter().find(|f| fresh(f)) {
            return Ok(found.addrs.clone());
        }
        let addrs = match self.fallback.resolve(uri, config, timeout) {
            // The system resolver's failures (no such name, no answer from the name
            // server) come back as I/O errors of no particular kind: say what they are.
            Err(ureq::Error::Io(_)) => return Err(ureq::Error::HostNotFound),
            other => other?,
        };
        let entry = Found {
            host: host.to_owned(),
            port,
            at: now,
            addrs: addrs.clone(),
        };
        self.found.rcu(|found| {
            let mut next: Vec<Found> = found
                .iter()
                .filter(|f| !(f.port == port && f.host == host))
                .cloned()
                .collect();
            if next.len() >= MAX_NAMES {
                if let Some(oldest) = next
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, f)| f.at)
                    .map(|(i, _)| i)
                {
                    next.remove(oldest);
                }
            }
            next.push(entry.clone());
            Arc::new(next)
        });
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_localhost_need_no_lookup() {
        let literal = |host: &str, port: u16| -> Option<Vec<SocketAddr>> {
            let mut out = CachingResolver::<Counting>::default().empty();
            literal(host, port, &mut out).then(|| out.to_vec())
        };
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

    /// Answers `10.0.0.N` for its Nth lookup.
    #[derive(Debug, Default)]
    struct Counting(std::sync::atomic::AtomicU8);

    impl Resolver for Counting {
        fn resolve(
            &self,
            uri: &Uri,
            _: &Config,
            _: NextTimeout,
        ) -> Result<ResolvedSocketAddrs, ureq::Error> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let mut out = self.empty();
            out.push(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)),
                uri.port_u16().unwrap_or(443),
            ));
            Ok(out)
        }
    }

    #[test]
    fn a_name_is_looked_up_once_per_port_and_the_names_kept_are_bounded() {
        let resolver = CachingResolver::<Counting>::default();
        let config = Config::default();
        let resolve = |url: &str| -> Vec<SocketAddr> {
            resolver
                .resolve(&url.parse().unwrap(), &config, NextTimeout::default())
                .unwrap()
                .to_vec()
        };
        let lookups = || {
            resolver
                .fallback
                .0
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let first = resolve("https://api.example/a");
        assert_eq!(first, ["10.0.0.1:443".parse().unwrap()]);
        assert_eq!(resolve("https://api.example/b?c=d"), first);
        assert_eq!(lookups(), 1);
        // Another port, another name: each its own lookup.
        assert_eq!(
            resolve("https://api.example:8443/"),
            ["10.0.0.2:8443".parse().unwrap()]
        );
        assert_eq!(
            resolve("https://other.example/"),
            ["10.0.0.3:443".parse().unwrap()]
        );
        assert_eq!(lookups(), 3);
        assert_eq!(resolve("https://api.example/"), first);
        assert_eq!(lookups(), 3);
        // At most MAX_NAMES are kept, the oldest dropped first: api.example:443 was.
        for i in 0..MAX_NAMES - 2 {
            resolve(&format!("https://n{i}.example/"));
        }
        assert_eq!(resolver.found.load().len(), MAX_NAMES);
        assert_eq!(lookups(), 3 + MAX_NAMES as u8 - 2);
        assert_ne!(resolve("https://api.example/"), first);
        assert_eq!(resolver.found.load().len(), MAX_NAMES);
        // …and a name found meanwhile is still read without a lookup.
        let before = lookups();
        resolve("https://other.example/");
        assert_eq!(lookups(), before);
    }
}
