//! Finding the master of a Redis Sentinel deployment, every step bounded in time.
//!
//! The `redis` crate's blocking `sentinel` module connects to the sentinels and to the
//! master with no connect timeout and reads their answers with no read timeout
//! (redis-rs/redis-rs#1162): one sentinel host that drops packets would hold a renewal
//! for minutes, and one that stalls, forever. So the master is found here as the Sentinel
//! client guidelines describe — `SENTINEL GET-MASTER-ADDR-BY-NAME` on one sentinel after
//! the other, then `ROLE` on the server named — through the crate's connections, with a
//! share of the time left for each step.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::Node;
use crate::error::{Error, Result};

/// The least time given to one sentinel before the next is asked.
const LEAST_STEP: Duration = Duration::from_millis(100);

/// The sentinels of one master set, and how to reach its master.
pub(super) struct Sentinels {
    /// The sentinels, each with its own credentials and TLS.
    clients: Vec<redis::Client>,
    /// The master set's name.
    name: String,
    /// How to reach the master (credentials, database, TLS); its address is what the
    /// sentinels say.
    master: redis::ConnectionInfo,
    /// A CA of the caller's own, for TLS.
    certs: Option<redis::TlsCertificates>,
    /// The sentinel that answered last, asked first next time.
    preferred: AtomicUsize,
}

/// Why no master was reached, in secret-free words.
pub(super) struct Unreached {
    pub(super) why: String,
    /// Nothing answered in time.
    pub(super) timed_out: bool,
    /// Credentials were refused: asking again will not help.
    pub(super) refused: bool,
}

impl Unreached {
    /// `e` from a server reached over TLS if `tls`, told after `prefix`.
    fn of(prefix: &str, e: &redis::RedisError, tls: bool) -> Unreached {
        let why = super::why(e, tls);
        Unreached {
            refused: why.contains("credentials were refused"),
            why: format!("{prefix}{why}"),
            timed_out: e.is_timeout(),
        }
    }

    fn said(why: String) -> Unreached {
        Unreached {
            why,
            timed_out: false,
            refused: false,
        }
    }
}

impl Sentinels {
    /// The sentinels at `nodes` watching the master set `name`, reached with `master`'s
    /// credentials, database and TLS; `certs` for a CA of the caller's own.
    pub(super) fn new(
        nodes: Vec<redis::ConnectionInfo>,
        name: String,
        master: redis::ConnectionInfo,
        certs: Option<redis::TlsCertificates>,
    ) -> Result<Sentinels> {
        let clients = nodes
            .into_iter()
            .map(|info| client(info, certs.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        // The master's settings are checked now (a CA that is not PEM), not at a failover.
        client(master.clone(), certs.as_ref())?;
        Ok(Sentinels {
            clients,
            name,
            master,
            certs,
            preferred: AtomicUsize::new(0),
        })
    }

    /// These sentinels and their master reached over TLS verified against `certs`:
    /// `None` when none of them speaks TLS.
    pub(super) fn with_certs(&self, certs: redis::TlsCertificates) -> Result<Option<Sentinels>> {
        let nodes: Vec<redis::ConnectionInfo> = self
            .clients
            .iter()
            .map(|c| c.get_connection_info().clone())
            .collect();
        let tls = |info: &redis::ConnectionInfo| {
            matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. })
        };
        if !nodes.iter().any(tls) && !tls(&self.master) {
            return Ok(None);
        }
        Sentinels::new(nodes, self.name.clone(), self.master.clone(), Some(certs)).map(Some)
    }

    /// Whether the sentinels or the master are reached over TLS.
    pub(super) fn tls(&self) -> bool {
        self.clients
            .iter()
            .any(|c| super::is_tls(c.get_connection_info().addr()))
            || super::is_tls(self.master.addr())
    }

    /// The master set's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// How each sentinel is reached.
    pub(super) fn nodes(&self) -> impl Iterator<Item = &redis::ConnectionInfo> {
        self.clients.iter().map(|c| c.get_connection_info())
    }

    /// How the master is reached (its database, TLS and credentials).
    pub(super) fn master(&self) -> &redis::ConnectionInfo {
        &self.master
    }

    /// The sentinels' addresses (`host:port, …`, no credentials).
    pub(super) fn addrs(&self) -> String {
        self.clients
            .iter()
            .map(|c| c.get_connection_info().addr().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A connection to the current master, found before `until`: each sentinel in turn
    /// (the one that answered last first) is asked for the master's address with a share
    /// of the time left, and the server it names must say it is a master.
    pub(super) fn connect(&self, until: Instant) -> std::result::Result<Node, Unreached> {
        let n = self.clients.len();
        let first = self.preferred.load(Relaxed) % n;
        let mut tried: Vec<(String, u16)> = Vec::new();
        let mut last = None;
        for i in 0..n {
            let index = (first + i) % n;
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let share = (left / u32::try_from(n - i).unwrap_or(1))
                .max(LEAST_STEP)
                .min(left);
            match self.ask(index, share) {
                Ok(Some(addr)) if tried.contains(&addr) => {}
                Ok(Some(addr)) => {
                    tried.push(addr.clone());
                    match self.master_at(&addr, until) {
                        Ok(node) => {
                            self.preferred.store(index, Relaxed);
                            return Ok(node);
                        }
                        Err(u) if u.refused => return Err(u),
                        Err(u) => last = Some(u),
                    }
                }
                Ok(None) => {
                    last = Some(Unreached::said(format!(
                        "the sentinels know no master named \"{}\"",
                        self.name
                    )));
                }
                Err(u) if u.refused => return Err(u),
                Err(u) => last = Some(u),
            }
        }
        Err(last.unwrap_or(Unreached {
            why: "no sentinel answered in time".to_owned(),
            timed_out: true,
            refused: false,
        }))
    }

    /// The master's address as sentinel `index` says it, within `limit`.
    fn ask(
        &self,
        index: usize,
        limit: Duration,
    ) -> std::result::Result<Option<(String, u16)>, Unreached> {
        let answer = (|| {
            let mut conn = self.clients[index].get_connection_with_timeout(limit)?;
            conn.set_read_timeout(Some(limit))?;
            conn.set_write_timeout(Some(limit))?;
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&self.name)
                .query::<Option<(String, u16)>>(&mut conn)
        })();
        let tls = super::is_tls(self.clients[index].get_connection_info().addr());
        answer.map_err(|e| Unreached::of("no sentinel answered: ", &e, tls))
    }

    /// A connection to the server at `addr`, if it is a master, before `until`.
    fn master_at(
        &self,
        (ip, port): &(String, u16),
        until: Instant,
    ) -> std::result::Result<Node, Unreached> {
        let addr = match self.master.addr() {
            redis::ConnectionAddr::TcpTls { insecure, .. } => redis::ConnectionAddr::TcpTls {
                host: ip.clone(),
                port: *port,
                insecure: *insecure,
                tls_params: None,
            },
            _ => redis::ConnectionAddr::Tcp(ip.clone(), *port),
        };
        let at = format!("the master the sentinels named ({ip}:{port})");
        let client = client(self.master.clone().set_addr(addr), self.certs.as_ref())
            .map_err(|_| Unreached::said(format!("{at} cannot be addressed")))?;
        let reached = (|| {
            let left = until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let mut conn = client.get_connection_with_timeout(left)?;
            let left = until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            conn.set_read_timeout(Some(left))?;
            conn.set_write_timeout(Some(left))?;
            let role: redis::Role = redis::cmd("ROLE").query(&mut conn)?;
            Ok((conn, role))
        })();
        match reached {
            Ok((conn, redis::Role::Primary { replicas, .. })) => Ok(Node {
                conn,
                replicas: replicas.len(),
            }),
            Ok(_) => Err(Unreached::said(format!(
                "{at} is not a master (a failover is under way)"
            ))),
            Err(e) => Err(Unreached::of(
                &format!("{at} could not be reached: "),
                &e,
                super::is_tls(self.master.addr()),
            )),
        }
    }
}

/// A client for `info`, over TLS with `certs` if given.
fn client(
    info: redis::ConnectionInfo,
    certs: Option<&redis::TlsCertificates>,
) -> Result<redis::Client> {
    match certs {
        Some(certs) => redis::Client::build_with_tls(info, certs.clone())
            .map_err(|_| Error::config("the CA certificate for Redis is not valid PEM")),
        None => redis::Client::open(info)
            .map_err(|_| Error::config("a Redis Sentinel address is not valid")),
    }
}
