//! [`RedisStore`]: tokens shared by every process on every host that reaches one Redis —
//! a single server, a master watched by Redis Sentinel, or a Redis Cluster.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use zeroize::Zeroizing;

use super::{StoreKey, StoreLock, StoredToken, TokenStore};
use crate::error::{Error, Result};
use crate::fork::Stamp;

mod cluster;
mod sentinel;

/// Longest time one Redis command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two attempts to take a lock another process holds.
const LOCK_POLL: Duration = Duration::from_millis(20);
/// The least time given to releasing a lock, even after the renewal's deadline.
const RELEASE_AT_LEAST: Duration = Duration::from_millis(100);
/// The least time given to saving a new token, even after the renewal's deadline.
const SAVE_AT_LEAST: Duration = Duration::from_millis(500);
/// How long a lock outlives the deadline of the renewal that took it.
const LOCK_MARGIN: Duration = Duration::from_secs(2);
/// Pause between two attempts to save a new token while the sentinels fail over.
const FAILOVER_POLL: Duration = Duration::from_millis(100);

/// Deletes the lock only if this owner still holds it.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0"#;

/// Deletes the token only while this owner holds the lock.
const FENCED_DEL: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
return 1"#;

/// Writes the token only while this owner holds the lock: a renewal whose lock expired
/// (and was taken by another process) cannot overwrite a newer token.
const FENCED_SET: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1"#;

/// The URL schemes [`RedisStore::new`] accepts.
const SCHEMES: [&str; 6] = [
    "redis://",
    "rediss://",
    "redis+sentinel://",
    "rediss+sentinel://",
    "redis+cluster://",
    "rediss+cluster://",
];

/// Tokens in Redis, shared by a fleet: the token as one key expiring with its lifetime
/// (kept until replaced when it holds a refresh token, which outlives it),
/// a distributed single flight through a lock key (`SET NX PX` with a random owner,
/// released by compare-and-delete, living at least as long as the renewal's deadline),
/// and writes fenced by the lock so that a renewal that lost its lock cannot overwrite
/// a newer token. Waiting processes poll the lock until their deadline.
///
/// Three deployments, each by a constructor or a URL for [`new`](Self::new):
///
/// - **One server**: `redis://[user:password@]host:port[/db]`, or `rediss://…` (TLS,
///   verified against the Web PKI roots or a CA of your own, see
///   [`with_ca_pem`](Self::with_ca_pem)).
/// - **Redis Sentinel** (a master with replicas, failed over by sentinels):
///   [`sentinel`](Self::sentinel), or
///   `redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db]` (the
///   sentinels' addresses, default port 26379; the credentials and database are the
///   master's; `rediss+sentinel://` for TLS to the sentinels and the master). The master
///   is asked of the sentinels (the one that answered last first) and checked with `ROLE`;
///   a broken connection or a `READONLY` answer sends the store back to the sentinels for
///   the new master. While the master has replicas, a lock, save or removal counts only
///   once a replica has it too (`WAIT`), so that a failover keeps it; a lock that did not
///   survive a failover is lost, and the save fenced by it is refused (logged; the token
///   is still used). A save rides out a failover in progress until the renewal's deadline.
/// - **Redis Cluster**: [`cluster`](Self::cluster), or
///   `redis+cluster://[user:password@]host:port[,host:port…]` (any nodes, default port
///   6379; `rediss+cluster://` for TLS). A credential's lock and token keys share one hash
///   slot (`authcore:{<digest>}:lock`, `authcore:{<digest>}:token`), so that the fenced
///   scripts run on one node.
///
/// TLS trust: a CA given to the store ([`with_ca_pem`](Self::with_ca_pem),
/// [`with_ca_file`](Self::with_ca_file)) is used for every client; a store given none
/// verifies its servers against the [`ca_bundle`](crate::Options::ca_bundle) of the
/// client that uses it, else against the Web PKI roots.
///
/// A single server and a Sentinel master use the same key names
/// (`authcore:lock:<digest>`, `authcore:token:<digest>`), so a server that gains replicas
/// and sentinels keeps its tokens.
///
/// ACL users and passwords are supported everywhere; credentials are never printed. Every
/// command is bounded by the renewal's deadline and by 2 s (for Sentinel, finding the
/// master included). A Redis that cannot be reached, refuses the credentials or answers
/// nothing is a [`Store`](crate::ErrorKind::Store) error: client credentials and API keys
/// then renew without the store (logged once), rotating refresh tokens fail with it. A
/// child process after `fork()` opens its own connections.
pub struct RedisStore {
    shared: Arc<Shared>,
    /// Its servers are verified against a CA given to it (not the Web PKI roots).
    own_ca: bool,
    /// The copy of it that trusts a client's CA bundle, with that bundle's PEM: made
    /// once, shared by every client with that bundle.
    trusting: Mutex<Option<(Vec<u8>, Arc<RedisStore>)>>,
    fenced_set: redis::Script,
    fenced_del: redis::Script,
    release: redis::Script,
}

/// What a store shares with the locks it hands out.
struct Shared {
    target: Target,
    /// This process's connection. A child after `fork()` opens its own: the parent's
    /// socket (and its half-read replies) is never used by two processes.
    connection: ArcSwap<PerProcess>,
}

/// What a store speaks to.
enum Target {
    /// One server.
    Server(redis::Client),
    /// Whichever server the sentinels name as master.
    Sentinel(sentinel::Sentinels),
    /// A cluster, through the `redis` crate's cluster connection.
    Cluster {
        client: Arc<redis::cluster::ClusterClient>,
        /// The nodes given, as given (for a copy with another CA).
        nodes: Vec<redis::ConnectionInfo>,
        /// The nodes given (`host:port, …`), for messages.
        addrs: String,
    },
}

/// A connection belonging to one process (and fork generation).
struct PerProcess {
    stamp: Stamp,
    link: Mutex<Option<Link>>,
}

/// An open way to Redis.
enum Link {
    /// A connection to the server, or to the master the sentinels named.
    Node(Node),
    /// The thread that owns the cluster connection.
    Cluster(cluster::Worker),
}

/// A connection to one server.
struct Node {
    conn: redis::Connection,
    /// How many replicas the master had when it was reached (Sentinel; 0 otherwise): a
    /// write waits for one of them.
    replicas: usize,
}

impl PerProcess {
    fn new() -> Arc<PerProcess> {
        Arc::new(PerProcess {
            stamp: Stamp::current(),
            link: Mutex::new(None),
        })
    }
}

/// Whether a command's effect must reach a replica before it counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    Master,
    Replica,
}

/// A failed command, before it becomes an [`Error`].
enum Failure {
    /// Nothing (or no master) answered: a failover may end it soon.
    Unreachable(Error),
    /// The command ran on the master, but no replica had it in time.
    NotReplicated(Error),
    /// Anything else (refused credentials, a failed script, the caller's deadline).
    Failed(Error),
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Error {
        match f {
            Failure::Unreachable(e) | Failure::NotReplicated(e) | Failure::Failed(e) => e,
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RedisStore");
        match &self.shared.target {
            Target::Server(_) => d.field("addr", &self.shared.describe_addrs()),
            Target::Sentinel(s) => d
                .field("sentinels", &self.shared.describe_addrs())
                .field("master", &s.name()),
            Target::Cluster { .. } => d.field("cluster", &self.shared.describe_addrs()),
        };
        d.finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store at `url`: `redis://` or `rediss://` (one server),
    /// `redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db]` (Redis
    /// Sentinel) or `redis+cluster://[user:password@]host:port[,host:port…]` (Redis
    /// Cluster), each also with `rediss+` for TLS. A URL that cannot be parsed is a
    /// [`Config`](crate::ErrorKind::Config) error; no connection is made until a renewal
    /// needs one.
    pub fn new(url: &str) -> Result<RedisStore> {
        match Many::parse(url)? {
            Some(many) => many.build(None),
            None => {
                let client = redis::Client::open(url).map_err(|_| invalid_url())?;
                Ok(Self::from_target(Target::Server(client), false))
            }
        }
    }

    /// Where the store is, as a URL [`new`](Self::new) takes, without credentials:
    /// `redis://host:port/db` (`rediss://` for TLS, `redis+unix:///path?db=N` for a
    /// socket), `redis+sentinel://host:port,…/master_name[/db]` or
    /// `redis+cluster://host:port,…` (`rediss+…` for TLS; for Sentinel, when the
    /// sentinels or the master are reached over TLS). For messages and descriptions: it
    /// never holds a user name or password.
    pub fn url(&self) -> String {
        match &self.shared.target {
            Target::Server(client) => {
                let info = client.get_connection_info();
                let db = info.redis_settings().db();
                match info.addr() {
                    redis::ConnectionAddr::Unix(path) => {
                        format!("redis+unix://{}?db={db}", path.display())
                    }
                    addr => format!("{}://{}/{db}", scheme(addr), authority(addr)),
                }
            }
            Target::Sentinel(s) => {
                let nodes: Vec<&redis::ConnectionInfo> = s.nodes().collect();
                // TLS to the sentinels or to the master (which no URL of one scheme
                // separates) is shown as TLS: never less secure than it is.
                let tls = if s.tls() { "rediss" } else { "redis" };
                let hosts: Vec<String> = nodes.iter().map(|n| authority(n.addr())).collect();
                let db = s.master().redis_settings().db();
                let db = if db == 0 {
                    String::new()
                } else {
                    format!("/{db}")
                };
                format!("{tls}+sentinel://{}/{}{db}", hosts.join(","), s.name())
            }
            Target::Cluster { nodes, .. } => {
                let tls = nodes.first().map_or("redis", |n| scheme(n.addr()));
                let hosts: Vec<String> = nodes.iter().map(|n| authority(n.addr())).collect();
                format!("{tls}+cluster://{}", hosts.join(","))
            }
        }
    }

    /// Whether `text` is a URL [`new`](Self::new) takes (by its scheme), rather than, say,
    /// a directory for a [`FileStore`](crate::FileStore).
    pub fn is_url(text: &str) -> bool {
        SCHEMES.iter().any(|s| text.starts_with(s))
    }

    /// A `rediss://` store (or `rediss+sentinel://`, `rediss+cluster://`) whose servers'
    /// certificates are verified against the CA certificate(s) in `ca_pem` (PEM) instead
    /// of the Web PKI roots.
    pub fn with_ca_pem(url: &str, ca_pem: &[u8]) -> Result<RedisStore> {
        if !url.starts_with("rediss://")
            && !url.starts_with("rediss+sentinel://")
            && !url.starts_with("rediss+cluster://")
        {
            return Err(Error::config(
                "a CA certificate needs a rediss:// URL (or rediss+sentinel://, rediss+cluster://)",
            ));
        }
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca_pem.to_vec()),
        };
        if let Some(many) = Many::parse(url)? {
            return many.build(Some(certs));
        }
        let info =
            redis::IntoConnectionInfo::into_connection_info(url).map_err(|_| invalid_url())?;
        let client = redis::Client::build_with_tls(info, certs).map_err(|_| invalid_pem())?;
        Ok(Self::from_target(Target::Server(client), true))
    }

    /// [`with_ca_pem`](Self::with_ca_pem) with the PEM read from a file.
    pub fn with_ca_file(url: &str, ca_file: impl AsRef<std::path::Path>) -> Result<RedisStore> {
        if !url.starts_with("rediss") {
            return Err(Error::config("a CA certificate needs a rediss:// URL"));
        }
        let path = ca_file.as_ref();
        let pem = std::fs::read(path).map_err(|e| {
            Error::config(format!(
                "the CA file {} cannot be read: {}",
                path.display(),
                e.kind()
            ))
        })?;
        Self::with_ca_pem(url, &pem)
    }

    /// A store on the master that the Redis Sentinels at `sentinels` name `master`.
    ///
    /// Each sentinel is `host:port` or a URL, `redis://[user:password@]host:port` or
    /// `rediss://…` (TLS), with that sentinel's own credentials if it needs any. `master`
    /// is the master set's name (reached like the sentinels: TLS if they use it, without
    /// credentials), or a URL whose host is that name and that carries how to reach the
    /// master: `redis://[user:password@]master_name[/db]`, `rediss://…`. An empty list,
    /// an address or URL that cannot be parsed is a [`Config`](crate::ErrorKind::Config)
    /// error; no connection is made until a renewal needs one.
    pub fn sentinel(sentinels: &[&str], master: &str) -> Result<RedisStore> {
        let nodes = sentinels
            .iter()
            .map(|s| node_info(s))
            .collect::<Result<Vec<_>>>()?;
        let tls = nodes.first().is_some_and(|n| is_tls(n.addr()));
        let (name, master) = if master.contains("://") {
            let name = redis::parse_redis_url(master)
                .and_then(|u| u.host_str().map(str::to_owned))
                .ok_or_else(invalid_master)?;
            let info = redis::IntoConnectionInfo::into_connection_info(master)
                .map_err(|_| invalid_master())?;
            (name, info)
        } else {
            let scheme = if tls { "rediss" } else { "redis" };
            let info =
                redis::IntoConnectionInfo::into_connection_info(format!("{scheme}://localhost"))
                    .map_err(|_| invalid_master())?;
            (master.to_owned(), info)
        };
        Self::sentinel_parts(nodes, name, master, None)
    }

    /// A store on the Redis Cluster that `nodes` belong to (any of its nodes: the others
    /// are found from them), each `host:port` or a URL, `redis://[user:password@]host:port`
    /// or `rediss://…` (TLS), all with the same credentials. An empty list, an address or
    /// URL that cannot be parsed, or nodes with different credentials or TLS are a
    /// [`Config`](crate::ErrorKind::Config) error; no connection is made until a renewal
    /// needs one.
    pub fn cluster(nodes: &[&str]) -> Result<RedisStore> {
        let nodes = nodes
            .iter()
            .map(|s| node_info(s))
            .collect::<Result<Vec<_>>>()?;
        Self::cluster_parts(nodes, None)
    }

    fn sentinel_parts(
        sentinels: Vec<redis::ConnectionInfo>,
        name: String,
        master: redis::ConnectionInfo,
        certs: Option<redis::TlsCertificates>,
    ) -> Result<RedisStore> {
        if sentinels.is_empty() {
            return Err(Error::config("Redis Sentinel needs at least one sentinel"));
        }
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(invalid_master());
        }
        let own_ca = certs.is_some();
        let sentinels = sentinel::Sentinels::new(sentinels, name, master, certs)?;
        Ok(Self::from_target(Target::Sentinel(sentinels), own_ca))
    }

    fn cluster_parts(
        nodes: Vec<redis::ConnectionInfo>,
        certs: Option<redis::TlsCertificates>,
    ) -> Result<RedisStore> {
        if nodes.is_empty() {
            return Err(Error::config("Redis Cluster needs at least one node"));
        }
        let addrs = nodes
            .iter()
            .map(|n| n.addr().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let own_ca = certs.is_some();
        let mut builder = redis::cluster::ClusterClient::builder(nodes.clone())
            .connection_timeout(COMMAND_TIMEOUT)
            .response_timeout(COMMAND_TIMEOUT)
            .retries(cluster::RETRIES)
            .min_retry_wait(cluster::MIN_RETRY_WAIT_MS)
            .max_retry_wait(cluster::MAX_RETRY_WAIT_MS);
        if let Some(certs) = certs {
            builder = builder.certs(certs);
        }
        let client = builder.build().map_err(|e| {
            Error::config(format!(
                "the Redis Cluster nodes cannot be used together: {}",
                crate::error::scrub(e.category())
            ))
        })?;
        Ok(Self::from_target(
            Target::Cluster {
                client: Arc::new(client),
                nodes,
                addrs,
            },
            own_ca,
        ))
    }

    fn from_target(target: Target, own_ca: bool) -> RedisStore {
        RedisStore {
            own_ca,
            trusting: Mutex::new(None),
            shared: Arc::new(Shared {
                target,
                connection: ArcSwap::new(PerProcess::new()),
            }),
            fenced_set: redis::Script::new(FENCED_SET),
            fenced_del: redis::Script::new(FENCED_DEL),
            release: redis::Script::new(RELEASE),
        }
    }
}

/// One sentinel's or cluster node's address: `host:port` or a `redis[s]://` URL.
fn node_info(text: &str) -> Result<redis::ConnectionInfo> {
    let info = if text.contains("://") {
        if !text.starts_with("redis://") && !text.starts_with("rediss://") {
            return Err(invalid_node());
        }
        redis::IntoConnectionInfo::into_connection_info(text)
    } else {
        redis::IntoConnectionInfo::into_connection_info(format!("redis://{text}"))
    };
    info.map_err(|_| invalid_node())
}

fn is_tls(addr: &redis::ConnectionAddr) -> bool {
    matches!(addr, redis::ConnectionAddr::TcpTls { .. })
}

impl RedisStore {
    /// A copy of this store that verifies its servers against the CAs in `ca_pem`:
    /// `None` when it speaks no TLS or has a CA of its own.
    fn copy_trusting(&self, ca_pem: &[u8]) -> Result<Option<RedisStore>> {
        if self.own_ca {
            return Ok(None);
        }
        let certs = || redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca_pem.to_vec()),
        };
        match &self.shared.target {
            Target::Server(client) => {
                let info = client.get_connection_info().clone();
                if !is_tls(info.addr()) {
                    return Ok(None);
                }
                let client =
                    redis::Client::build_with_tls(info, certs()).map_err(|_| invalid_pem())?;
                Ok(Some(Self::from_target(Target::Server(client), true)))
            }
            Target::Sentinel(sentinels) => match sentinels.with_certs(certs())? {
                Some(sentinels) => Ok(Some(Self::from_target(Target::Sentinel(sentinels), true))),
                None => Ok(None),
            },
            Target::Cluster { nodes, .. } => {
                if !nodes.iter().any(|n| is_tls(n.addr())) {
                    return Ok(None);
                }
                Self::cluster_parts(nodes.clone(), Some(certs())).map(Some)
            }
        }
    }
}

/// The scheme of a URL to `addr`: `rediss` over TLS, else `redis`.
fn scheme(addr: &redis::ConnectionAddr) -> &'static str {
    match addr {
        redis::ConnectionAddr::TcpTls { .. } => "rediss",
        _ => "redis",
    }
}

/// `host:port` of a network address as a URL writes it (an IPv6 address in brackets).
fn authority(addr: &redis::ConnectionAddr) -> String {
    match addr {
        redis::ConnectionAddr::Tcp(host, port)
        | redis::ConnectionAddr::TcpTls { host, port, .. }
            if host.contains(':') =>
        {
            format!("[{host}]:{port}")
        }
        other => other.to_string(),
    }
}

/// A `redis+sentinel://` or `redis+cluster://` URL, in parts.
struct Many {
    tls: bool,
    sentinel: bool,
    /// `user:password` as written (percent-encoded), if any.
    userinfo: Option<Zeroizing<String>>,
    hosts: Vec<String>,
    /// The master set's name (Sentinel).
    name: String,
    /// The master's database (Sentinel).
    db: String,
}

impl Many {
    /// The parts of a Sentinel or Cluster URL; `None` for any other URL.
    fn parse(url: &str) -> Result<Option<Many>> {
        let (tls, sentinel, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, true, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            (true, true, rest)
        } else if let Some(rest) = url.strip_prefix("redis+cluster://") {
            (false, false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+cluster://") {
            (true, false, rest)
        } else {
            return Ok(None);
        };
        let invalid = || {
            Error::config(if sentinel {
                "the Redis Sentinel URL is not valid (redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db])"
            } else {
                "the Redis Cluster URL is not valid (redis+cluster://[user:password@]host:port[,host:port…])"
            })
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(Zeroizing::new(userinfo.to_owned())), hosts),
            None => (None, authority),
        };
        let default_port = if sentinel { 26379 } else { 6379 };
        let hosts = hosts
            .split(',')
            .map(|h| {
                let has_port = h.rsplit_once(':').is_some_and(|(_, p)| !p.ends_with(']'));
                match h {
                    "" => Err(invalid()),
                    h if has_port => Ok(h.to_owned()),
                    h => Ok(format!("{h}:{default_port}")),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let (name, db) = path.split_once('/').unwrap_or((path, ""));
        let db_ok = db.is_empty() || db.parse::<u32>().is_ok();
        if sentinel && (name.is_empty() || !db_ok) || !sentinel && !path.is_empty() {
            return Err(invalid());
        }
        Ok(Some(Many {
            tls,
            sentinel,
            userinfo,
            hosts,
            name: name.to_owned(),
            db: db.to_owned(),
        }))
    }

    fn build(self, certs: Option<redis::TlsCertificates>) -> Result<RedisStore> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let with_user = |host: &str| -> Zeroizing<String> {
            match &self.userinfo {
                Some(u) => Zeroizing::new(format!("{scheme}://{}@{host}", u.as_str())),
                None => Zeroizing::new(format!("{scheme}://{host}")),
            }
        };
        let parse = |url: &str| {
            redis::IntoConnectionInfo::into_connection_info(url).map_err(|_| invalid_url())
        };
        if self.sentinel {
            let sentinels = self
                .hosts
                .iter()
                .map(|h| parse(&format!("{scheme}://{h}")))
                .collect::<Result<Vec<_>>>()?;
            let master = parse(&with_user(&format!("localhost/{}", self.db)))?;
            RedisStore::sentinel_parts(sentinels, self.name.clone(), master, certs)
        } else {
            let nodes = self
                .hosts
                .iter()
                .map(|h| parse(&with_user(h)))
                .collect::<Result<Vec<_>>>()?;
            RedisStore::cluster_parts(nodes, certs)
        }
    }
}

impl Target {
    /// The key holding `key`'s lock.
    fn lock_key(&self, key: &StoreKey) -> String {
        match self {
            Target::Cluster { .. } => format!("authcore:{{{}}}:lock", key.digest()),
            _ => format!("authcore:lock:{}", key.digest()),
        }
    }

    /// The key holding `key`'s token.
    fn token_key(&self, key: &StoreKey) -> String {
        match self {
            Target::Cluster { .. } => format!("authcore:{{{}}}:token", key.digest()),
            _ => format!("authcore:token:{}", key.digest()),
        }
    }
}

/// What to check when a server reached over TLS (`rediss://`) does not answer with it.
const NOT_TLS: &str =
    "is the server speaking TLS? rediss:// needs a port where Redis serves TLS; a plain one takes redis://";

/// Why a Redis command failed, in secret-free words; `tls`: the server was reached
/// over TLS (a silence or a garbled answer then says what to check).
fn why(e: &redis::RedisError, tls: bool) -> String {
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || e.code()
            .is_some_and(|c| c == "WRONGPASS" || c == "NOAUTH" || c == "NOPERM")
    {
        "the credentials were refused".to_owned()
    } else if e.is_connection_refusal() {
        "connection refused (is Redis listening at that address?)".to_owned()
    } else if e.is_timeout() {
        if tls {
            format!("no answer in time ({NOT_TLS})")
        } else {
            "no answer in time".to_owned()
        }
    } else if let Some(failure) = tls_failure(e) {
        match failure {
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                format!("the server did not answer with TLS ({NOT_TLS})")
            }
            other => format!("TLS failed: {other}"),
        }
    } else {
        crate::error::scrub(e.category())
    }
}

/// The TLS failure behind a Redis error, if that is what it is.
fn tls_failure(e: &redis::RedisError) -> Option<&rustls::Error> {
    use std::error::Error as _;
    let io = e.source()?.downcast_ref::<std::io::Error>()?;
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Whether a failure says this server is gone or no longer the master: worth asking
/// (the sentinels) again.
fn is_gone(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code() == Some("READONLY")
        || e.code() == Some("MASTERDOWN")
        || e.code() == Some("LOADING")
}

impl Shared {
    /// The addresses this store was given (without credentials).
    fn describe_addrs(&self) -> String {
        match &self.target {
            Target::Server(client) => authority(client.get_connection_info().addr()),
            Target::Sentinel(s) => s.addrs(),
            Target::Cluster { addrs, .. } => addrs.clone(),
        }
    }

    /// Whether the store's servers are reached over TLS.
    fn tls(&self) -> bool {
        match &self.target {
            Target::Server(client) => is_tls(client.get_connection_info().addr()),
            Target::Sentinel(s) => s.tls(),
            Target::Cluster { nodes, .. } => nodes.iter().any(|n| is_tls(n.addr())),
        }
    }

    /// What the store speaks to, for messages: `Redis at host:port`, …
    fn describe(&self) -> String {
        match &self.target {
            Target::Server(_) => format!("Redis at {}", self.describe_addrs()),
            Target::Sentinel(s) => format!(
                "the Redis master \"{}\" (sentinels at {})",
                s.name(),
                s.addrs()
            ),
            Target::Cluster { addrs, .. } => format!("Redis Cluster at {addrs}"),
        }
    }

    /// A failure in secret-free terms; a command cut short by the caller's own
    /// deadline (rather than by Redis's silence) is a timeout of that call.
    fn failure(&self, what: &str, why: &str, timed_out: bool, by_deadline: bool) -> Error {
        let message = format!("{} could not {what}: {why}", self.describe());
        if timed_out && by_deadline {
            Error::Timeout { message }
        } else {
            Error::store(message)
        }
    }

    fn redis_failure(&self, what: &str, e: &redis::RedisError, by_deadline: bool) -> Failure {
        let error = self.failure(what, &why(e, self.tls()), e.is_timeout(), by_deadline);
        if is_gone(e) && !(e.is_timeout() && by_deadline) {
            Failure::Unreachable(error)
        } else {
            Failure::Failed(error)
        }
    }

    /// Runs `f` on a connection (opened on first use, dropped after a failure), every
    /// step bounded by `deadline` and by [`COMMAND_TIMEOUT`]. A connection found broken
    /// (or, for Sentinel, no longer on the master) is replaced once. With
    /// [`Reach::Replica`], a Sentinel master's write counts once a replica has it.
    fn run<T: Send + 'static>(
        &self,
        what: &str,
        deadline: Instant,
        reach: Reach,
        f: impl Fn(&mut dyn redis::ConnectionLike) -> redis::RedisResult<T> + Send + 'static,
    ) -> std::result::Result<T, Failure> {
        self.run_until(what, deadline, deadline, reach, f)
    }

    /// [`run`](Self::run) bounded by `deadline`, a limit of the store's own that may come
    /// before `caller`, the caller's deadline: a command cut short is a timeout of the
    /// call only when `caller` is what cut it short.
    fn run_until<T: Send + 'static>(
        &self,
        what: &str,
        deadline: Instant,
        caller: Instant,
        reach: Reach,
        f: impl Fn(&mut dyn redis::ConnectionLike) -> redis::RedisResult<T> + Send + 'static,
    ) -> std::result::Result<T, Failure> {
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            return Err(Failure::Failed(Error::Timeout {
                message: format!(
                    "the deadline passed before {} was asked to {what}",
                    self.describe()
                ),
            }));
        }
        let limit = left.min(COMMAND_TIMEOUT);
        let by_deadline = caller <= now + limit;
        let until = now + limit;
        let here = self.here();
        // Another thread of this process may be using the connection: waited for only
        // until this command's own limit.
        let Some(mut slot) = here.link.try_lock_until(until) else {
            return Err(Failure::Unreachable(self.failure(
                what,
                "no answer in time (another thread's command is still waiting for one)",
                true,
                by_deadline,
            )));
        };
        if let Target::Cluster { client, .. } = &self.target {
            let worker = match &*slot {
                Some(Link::Cluster(worker)) => worker.clone(),
                _ => {
                    let worker = cluster::Worker::spawn(Arc::clone(client)).map_err(|_| {
                        Failure::Failed(self.failure(
                            what,
                            "no thread could be started for it",
                            false,
                            false,
                        ))
                    })?;
                    *slot = Some(Link::Cluster(worker.clone()));
                    worker
                }
            };
            // The worker is waited for without the slot held: a command it is stuck on
            // delays the others only until their own limits.
            drop(slot);
            return match worker.run(until, f) {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(self.redis_failure(what, &e, by_deadline)),
                Err(cluster::NoAnswer) => Err(Failure::Unreachable(self.failure(
                    what,
                    "no answer in time",
                    true,
                    by_deadline,
                ))),
            };
        }
        for attempt in 0..2 {
            let fresh = !matches!(&*slot, Some(Link::Node(_)));
            if fresh {
                *slot = Some(Link::Node(self.connect(what, until, by_deadline)?));
            }
            let Some(Link::Node(node)) = &mut *slot else {
                unreachable!("a node link was just put in place");
            };
            let step = until.saturating_duration_since(Instant::now());
            if step.is_zero() {
                return Err(Failure::Failed(self.failure(
                    what,
                    "no answer in time",
                    true,
                    by_deadline,
                )));
            }
            let conn = &mut node.conn;
            let result = conn
                .set_read_timeout(Some(step))
                .and_then(|()| conn.set_write_timeout(Some(step)))
                .and_then(|()| f(conn));
            match result {
                Ok(value) if reach == Reach::Replica && node.replicas > 0 => {
                    return match wait_for_replica(node, until) {
                        Ok(true) => Ok(value),
                        Ok(false) => Err(Failure::NotReplicated(self.failure(
                            what,
                            "no replica had it in time",
                            false,
                            false,
                        ))),
                        Err(e) => {
                            *slot = None;
                            Err(self.redis_failure(what, &e, by_deadline))
                        }
                    };
                }
                Ok(value) => return Ok(value),
                Err(e) => {
                    *slot = None;
                    if attempt == 0 && !fresh && is_gone(&e) && !e.is_timeout() {
                        continue;
                    }
                    return Err(self.redis_failure(what, &e, by_deadline));
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    /// A new connection: to the server, or to the master the sentinels name.
    fn connect(
        &self,
        what: &str,
        until: Instant,
        by_deadline: bool,
    ) -> std::result::Result<Node, Failure> {
        match &self.target {
            Target::Server(client) => {
                let limit = until.saturating_duration_since(Instant::now());
                let conn = client
                    .get_connection_with_timeout(limit.max(Duration::from_millis(1)))
                    .map_err(|e| self.redis_failure("be reached", &e, by_deadline))?;
                Ok(Node { conn, replicas: 0 })
            }
            Target::Sentinel(sentinels) => sentinels.connect(until).map_err(|m| {
                let error = self.failure(what, &m.why, m.timed_out, by_deadline);
                if m.refused || (m.timed_out && by_deadline) {
                    Failure::Failed(error)
                } else {
                    Failure::Unreachable(error)
                }
            }),
            Target::Cluster { .. } => unreachable!("a cluster is reached through its worker"),
        }
    }

    /// This process's connection slot; a new one in a child after `fork()`. The
    /// parent's connection is left alone (never closed or used by the child), and so
    /// is its mutex, which a parent thread may have held at the fork.
    fn here(&self) -> Arc<PerProcess> {
        let current = self.connection.load_full();
        if current.stamp == Stamp::current() {
            return current;
        }
        let fresh = PerProcess::new();
        let previous = self
            .connection
            .compare_and_swap(&current, Arc::clone(&fresh));
        if Arc::ptr_eq(&previous, &current) {
            // The parent's socket belongs to the parent: not closed from here.
            std::mem::forget(previous);
            fresh
        } else {
            self.connection.load_full()
        }
    }
}

/// Waits (until `until`) for one replica to have every write made so far on `node`.
fn wait_for_replica(node: &mut Node, until: Instant) -> redis::RedisResult<bool> {
    let left = until
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    // The server answers by itself when its wait is over; the socket waits a little
    // longer, but never past `until`.
    let wait = left.saturating_sub(Duration::from_millis(100));
    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
    node.conn.set_read_timeout(Some(left))?;
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(wait_ms)
        .query(&mut node.conn)?;
    Ok(acked >= 1)
}

fn invalid_url() -> Error {
    Error::config(
        "the Redis URL is not valid (redis[s]://[user:password@]host:port[/db], redis+sentinel://…, redis+cluster://…)",
    )
}

fn invalid_pem() -> Error {
    Error::config("the CA certificate for Redis is not valid PEM")
}

fn invalid_node() -> Error {
    Error::config(
        "a Redis address is not valid (host:port or redis[s]://[user:password@]host:port)",
    )
}

fn invalid_master() -> Error {
    Error::config(
        "the Redis Sentinel master is not valid (a name, or redis[s]://[user:password@]master_name[/db])",
    )
}

/// Releases a Redis lock (compare-and-delete, on the store's connection) when dropped.
struct RedisLock {
    shared: Arc<Shared>,
    release: redis::Script,
    lock_key: String,
    owner: String,
    deadline: Instant,
    stamp: Stamp,
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        if self.stamp != Stamp::current() {
            // A child after fork() releases nothing of its parent's.
            return;
        }
        // Bounded by the renewal's deadline, but given a moment even after it: a lock
        // left behind only delays the others until it expires.
        let deadline = self.deadline.max(Instant::now() + RELEASE_AT_LEAST);
        let (release, lock_key, owner) = (
            self.release.clone(),
            self.lock_key.clone(),
            self.owner.clone(),
        );
        let released = self
            .shared
            .run("release the lock", deadline, Reach::Master, move |c| {
                release.key(&lock_key).arg(&owner).invoke::<i64>(c)
            });
        if released.is_err() {
            crate::events::event!(warn, "store.unlock_failed", store = "redis";
                "could not release a Redis token-store lock; it expires by itself"
            );
        }
    }
}

impl RedisStore {
    /// One `SET NX PX` attempt for the lock of `key`, living until `deadline` plus a
    /// margin; `wait_until` bounds the command itself.
    fn attempt(
        &self,
        key: &StoreKey,
        deadline: Instant,
        wait_until: Instant,
    ) -> Result<Option<StoreLock>> {
        let owner = crate::random::url_safe_string(16);
        let ttl = deadline.saturating_duration_since(Instant::now()) + LOCK_MARGIN;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let lock_key = self.shared.target.lock_key(key);
        let (k, o) = (lock_key.clone(), owner.clone());
        let taken = self.shared.run_until(
            "take the lock",
            wait_until,
            deadline,
            Reach::Replica,
            move |c| {
                redis::cmd("SET")
                    .arg(&k)
                    .arg(&o)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query::<Option<String>>(c)
            },
        );
        let lock = |owner: String| RedisLock {
            shared: Arc::clone(&self.shared),
            release: self.release.clone(),
            lock_key: lock_key.clone(),
            owner,
            deadline,
            stamp: Stamp::current(),
        };
        match taken {
            Ok(None) => Ok(None),
            Ok(Some(_)) => Ok(Some(StoreLock::with_owner(
                owner.clone(),
                deadline,
                lock(owner),
            ))),
            Err(Failure::NotReplicated(e)) => {
                // Taken on a master that could lose it in a failover: given back.
                drop(lock(owner));
                Err(e)
            }
            Err(f) => Err(f.into()),
        }
    }

    /// Runs a fenced script (save or removal) under `lock`; while the sentinels fail
    /// over, tried again until `deadline`.
    fn fenced(
        &self,
        what: &str,
        deadline: Instant,
        f: impl Fn(&mut dyn redis::ConnectionLike) -> redis::RedisResult<i64> + Send + Sync + 'static,
    ) -> Result<i64> {
        let f = Arc::new(f);
        loop {
            let g = Arc::clone(&f);
            match self
                .shared
                .run(what, deadline, Reach::Replica, move |c| g(c))
            {
                Ok(n) => return Ok(n),
                Err(Failure::Unreachable(e))
                    if matches!(self.shared.target, Target::Sentinel(_))
                        && Instant::now() + FAILOVER_POLL < deadline =>
                {
                    drop(e);
                    std::thread::sleep(FAILOVER_POLL);
                }
                Err(f) => return Err(f.into()),
            }
        }
    }
}

impl RedisStore {
    /// The stored record for `key`, read within `deadline` (`say_corrupt`: log a corrupt
    /// one).
    fn read(
        &self,
        key: &StoreKey,
        deadline: Instant,
        say_corrupt: bool,
    ) -> Result<Option<StoredToken>> {
        let token_key = self.shared.target.token_key(key);
        let value = self
            .shared
            .run("read the token", deadline, Reach::Master, move |c| {
                redis::cmd("GET")
                    .arg(&token_key)
                    .query::<Option<Vec<u8>>>(c)
            })
            .map_err(Error::from)?;
        let Some(bytes) = value.map(Zeroizing::new) else {
            return Ok(None);
        };
        let stored = StoredToken::from_json(&bytes);
        if stored.is_none() && say_corrupt {
            crate::events::event!(warn, "store.corrupt", store = "redis"; "the token in Redis is corrupt; treated as empty");
        }
        Ok(stored)
    }
}

impl TokenStore for RedisStore {
    /// A `rediss://` store made without a CA of its own verifies its servers against the
    /// client's CA bundle: one copy per bundle, shared by the clients that have it.
    fn trusting(&self, ca_pem: &[u8]) -> Result<Option<Arc<dyn TokenStore>>> {
        let mut memo = self.trusting.lock();
        if let Some((pem, store)) = memo.as_ref() {
            if pem.as_slice() == ca_pem {
                return Ok(Some(Arc::clone(store) as Arc<dyn TokenStore>));
            }
        }
        let Some(copy) = self.copy_trusting(ca_pem)? else {
            return Ok(None);
        };
        let copy = Arc::new(copy);
        *memo = Some((ca_pem.to_vec(), Arc::clone(&copy)));
        Ok(Some(copy as Arc<dyn TokenStore>))
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    fn load(&self, lock: &StoreLock, key: &StoreKey) -> Result<Option<StoredToken>> {
        self.read(key, lock.until(), true)
    }

    fn peek(&self, key: &StoreKey, deadline: Instant) -> Option<Result<Option<StoredToken>>> {
        // One SET writes the whole record: a read never sees half of one.
        Some(self.read(key, deadline, false))
    }

    fn try_lock(&self, key: &StoreKey, deadline: Instant) -> Result<Option<StoreLock>> {
        // The store's own limit: a silent server is a store error then (which a grant
        // that can renew without the store gets past), not the call's timeout.
        let wait_until = Instant::now() + COMMAND_TIMEOUT;
        self.attempt(
            key,
            deadline,
            wait_until.min(deadline.max(Instant::now() + RELEASE_AT_LEAST)),
        )
    }

    fn lock(&self, key: &StoreKey, deadline: Instant) -> Result<StoreLock> {
        let started = Instant::now();
        loop {
            if let Some(lock) = self.attempt(key, deadline, deadline)? {
                return Ok(lock);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    message: format!(
                        "waited {:.1} s for another process's renewal (token-store lock of {})",
                        started.elapsed().as_secs_f64(),
                        self.shared.describe()
                    ),
                });
            }
            std::thread::sleep(left.min(LOCK_POLL));
        }
    }

    fn remove(&self, lock: &StoreLock, key: &StoreKey) -> Result<()> {
        let deadline = lock.until().max(Instant::now() + SAVE_AT_LEAST);
        let (script, owner) = (self.fenced_del.clone(), lock.owner().to_owned());
        let (lock_key, token_key) = (
            self.shared.target.lock_key(key),
            self.shared.target.token_key(key),
        );
        let removed = self.fenced("remove the token", deadline, move |c| {
            script.key(&lock_key).key(&token_key).arg(&owner).invoke(c)
        })?;
        if removed == 1 {
            Ok(())
        } else {
            Err(Error::store(
                "the Redis lock expired before the token was removed",
            ))
        }
    }

    fn save(&self, lock: &StoreLock, key: &StoreKey, token: &StoredToken) -> Result<()> {
        let (owner, deadline) = (lock.owner().to_owned(), lock.until());
        // The key expires with the access token, unless it holds a refresh token: that
        // outlives the access token and is the one thing that must not be lost.
        let ttl_ms = match (&token.refresh_token, token.lifetime) {
            (None, Some(lifetime)) => {
                let left = (token.issued_at + lifetime)
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1)
            }
            _ => 0,
        };
        let json = Zeroizing::new(token.to_json());
        // A token just obtained (perhaps with a rotated refresh token) is worth saving
        // even if the renewal used up its deadline: it gets a moment more.
        let deadline = deadline.max(Instant::now() + SAVE_AT_LEAST);
        let script = self.fenced_set.clone();
        let (lock_key, token_key) = (
            self.shared.target.lock_key(key),
            self.shared.target.token_key(key),
        );
        let written = self.fenced("save the token", deadline, move |c| {
            script
                .key(&lock_key)
                .key(&token_key)
                .arg(&owner)
                .arg(&json[..])
                .arg(ttl_ms)
                .invoke(c)
        })?;
        if written == 1 {
            Ok(())
        } else {
            Err(Error::store(
                "the Redis lock expired before the token was saved; a newer renewal wins",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RedisStore;

    #[test]
    fn the_url_names_where_the_store_is_without_credentials() {
        let url = |u: &str| RedisStore::new(u).unwrap().url();
        assert_eq!(
            url("redis://user:hunter2@127.0.0.1:6379/2"),
            "redis://127.0.0.1:6379/2"
        );
        assert_eq!(url("rediss://:hunter2@[::1]:6380"), "rediss://[::1]:6380/0");
        assert_eq!(
            url("redis+sentinel://u:hunter2@h1:26379,h2/mymaster/3"),
            "redis+sentinel://h1:26379,h2:26379/mymaster/3"
        );
        assert_eq!(
            url("rediss+cluster://u:hunter2@a:7000,b:7001"),
            "rediss+cluster://a:7000,b:7001"
        );
        let sentinel = RedisStore::sentinel(&["h1:26379"], "redis://:hunter2@mymaster/1");
        assert_eq!(
            sentinel.unwrap().url(),
            "redis+sentinel://h1:26379/mymaster/1"
        );
        let cluster = RedisStore::cluster(&["redis://:hunter2@a:7000"]).unwrap();
        assert_eq!(cluster.url(), "redis+cluster://a:7000");
        // Every URL it gives is one `new` takes, and gives back.
        for u in [
            "redis://127.0.0.1:6379/2",
            "redis+sentinel://h1:26379,h2:26379/mymaster/3",
            "rediss+cluster://a:7000,b:7001",
        ] {
            assert_eq!(url(u), u);
        }
    }
}
