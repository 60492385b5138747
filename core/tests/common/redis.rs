//! A `redis-server` of the test's own (installed by `tests/provision.sh`) on a free
//! loopback port with a throwaway directory; stopped when dropped, also when a test fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` process of this test's own.
pub struct Redis {
    child: Option<Child>,
    /// Its loopback port.
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
    tls: bool,
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
pub struct Pki {
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// Paths of the CA certificate, server certificate and server key.
    pub files: [PathBuf; 3],
}

impl Pki {
    /// A fresh CA and server certificate, written under `dir`.
    pub fn new(dir: &std::path::Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let files = [
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
        ];
        std::fs::write(&files[0], ca.pem()).unwrap();
        std::fs::write(&files[1], server.pem()).unwrap();
        std::fs::write(&files[2], server_key.serialize_pem()).unwrap();
        Pki {
            ca_pem: ca.pem(),
            files,
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "authcore-redis-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Redis {
    /// A plain-TCP Redis with `extra` arguments (`--requirepass …`).
    pub fn start(extra: &[&str]) -> Redis {
        let port = free_port();
        let mut args = vec!["--port".to_owned(), port.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut redis = Redis {
            child: None,
            port,
            dir: temp_dir(),
            args,
            tls: false,
        };
        redis.restart();
        redis
    }

    /// A TLS-only Redis whose certificate is signed by a fresh CA, and that CA.
    pub fn start_tls() -> (Redis, Pki) {
        let port = free_port();
        let dir = temp_dir();
        let pki = Pki::new(&dir);
        let [ca, cert, key] = &pki.files;
        let args = vec![
            "--port".to_owned(),
            "0".to_owned(),
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            cert.display().to_string(),
            "--tls-key-file".to_owned(),
            key.display().to_string(),
            "--tls-ca-cert-file".to_owned(),
            ca.display().to_string(),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        let mut redis = Redis {
            child: None,
            port,
            dir,
            args,
            tls: true,
        };
        redis.restart();
        (redis, pki)
    }

    /// `redis://127.0.0.1:PORT` (or `rediss://` for a TLS Redis).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: no goodbye to its clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port, empty, and waits until it is up.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (tests/provision.sh installs it)");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if self.tls {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
            } else if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"PING\r\n");
                let mut buf = [0u8; 64];
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                if s.read(&mut buf).is_ok_and(|n| n > 0) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Sends one raw command (plain Redis only) and returns the first reply bytes.
    pub fn raw(&self, command: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(format!("{command}\r\n").as_bytes()).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends one inline command to the server on `port` and returns the whole reply (read
/// until the server has said nothing more for a moment), or "" if it cannot be reached.
pub fn query(port: u16, command: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    if s.write_all(format!("{command}\r\n").as_bytes()).is_err() {
        return String::new();
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                s.set_read_timeout(Some(Duration::from_millis(15))).unwrap();
            }
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// The value after `field` in a reply of bulk strings (`SENTINEL MASTER`'s field list).
fn field(reply: &str, field: &str) -> Option<String> {
    let after = reply.split_once(&format!("\r\n{field}\r\n"))?.1;
    let mut lines = after.split("\r\n");
    let _len = lines.next()?;
    lines.next().map(str::to_owned)
}

/// A process killed (SIGKILL) and reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `ready` every 50 ms until it holds, at most `within`; panics with `what`
/// otherwise.
fn wait_for(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} (waited {within:?})");
}

/// A Redis Sentinel deployment of the test's own: a master, one replica and three
/// sentinels (`redis-sentinel`, installed by `tests/provision.sh`; quorum 2, a master
/// is down after 500 ms), all on free loopback ports, all stopped when dropped.
pub struct Sentinel {
    /// The data servers: the first started as master, the second as its replica.
    pub servers: Vec<Redis>,
    sentinels: Vec<(u16, Killed)>,
    dir: PathBuf,
    /// `AUTH …` before a command to a data server, if they have a password.
    auth: String,
}

/// The master set's name in [`Sentinel`].
pub const MASTER_NAME: &str = "authcore-master";

impl Sentinel {
    /// Starts the deployment and waits until the sentinels know the master, the replica
    /// and each other (so that they can fail over).
    /// `password`: the servers' `requirepass` (and `masterauth`), if any.
    pub fn start(password: Option<&str>) -> Sentinel {
        let mut extra = Vec::new();
        if let Some(p) = password {
            extra.extend(["--requirepass", p, "--masterauth", p]);
        }
        let master = Redis::start(&extra);
        let master_port = master.port.to_string();
        let mut replica_args = vec!["--replicaof", "127.0.0.1", &master_port];
        replica_args.extend_from_slice(&extra);
        let replica = Redis::start(&replica_args);
        let dir = temp_dir();
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{i}.conf"));
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 500\n\
                 sentinel failover-timeout {MASTER_NAME} 2000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir.display(),
                master.port
            );
            if let Some(p) = password {
                text += &format!("sentinel auth-pass {MASTER_NAME} {p}\n");
            }
            std::fs::write(&conf, text).unwrap();
            let child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-sentinel must be installed (tests/provision.sh installs it)");
            sentinels.push((port, Killed(child)));
        }
        let deployment = Sentinel {
            servers: vec![master, replica],
            sentinels,
            dir,
            auth: password
                .map(|p| format!("AUTH {p}\r\n"))
                .unwrap_or_default(),
        };
        wait_for(
            "the sentinels did not see the replica and each other",
            Duration::from_secs(15),
            || {
                deployment.sentinels.iter().all(|(port, _)| {
                    let reply = query(*port, &format!("SENTINEL MASTER {MASTER_NAME}"));
                    field(&reply, "num-slaves").as_deref() == Some("1")
                        && field(&reply, "num-other-sentinels").as_deref() == Some("2")
                })
            },
        );
        deployment
    }

    /// The sentinels' `127.0.0.1:PORT` addresses.
    pub fn addrs(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect()
    }

    /// `redis+sentinel://127.0.0.1:P1,…/authcore-master`.
    pub fn url(&self) -> String {
        format!("redis+sentinel://{}/{MASTER_NAME}", self.addrs().join(","))
    }

    /// The master's port as the first sentinel that answers says.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|(port, _)| {
            let reply = query(
                *port,
                &format!("SENTINEL GET-MASTER-ADDR-BY-NAME {MASTER_NAME}"),
            );
            reply.split("\r\n").nth(4).and_then(|p| p.parse().ok())
        })
    }

    /// The data server on `port`.
    pub fn server(&mut self, port: u16) -> &mut Redis {
        self.servers.iter_mut().find(|s| s.port == port).unwrap()
    }

    /// Kills (SIGKILL) the current master; returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port().expect("a master");
        self.server(port).stop();
        port
    }

    /// Waits (at most `within`) until every sentinel names a master other than `old`
    /// that says it is a master; returns its port.
    pub fn wait_for_new_master(&self, old: u16, within: Duration) -> u16 {
        let mut new = 0;
        wait_for("the sentinels did not fail over", within, || {
            let named: Vec<Option<u16>> = self
                .sentinels
                .iter()
                .map(|(port, _)| {
                    let reply = query(
                        *port,
                        &format!("SENTINEL GET-MASTER-ADDR-BY-NAME {MASTER_NAME}"),
                    );
                    reply.split("\r\n").nth(4).and_then(|p| p.parse().ok())
                })
                .collect();
            match named[0] {
                Some(p) if p != old && named.iter().all(|n| *n == Some(p)) => {
                    new = p;
                    query(p, &format!("{}ROLE", self.auth)).contains("master")
                }
                _ => false,
            }
        });
        new
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.sentinels.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of the test's own: three masters (no replicas) on free loopback
/// ports (and free cluster-bus ports), slots assigned by `redis-cli --cluster create`;
/// stopped when dropped.
pub struct Cluster {
    /// The nodes.
    pub nodes: Vec<Redis>,
}

impl Cluster {
    /// Starts three nodes, creates the cluster and waits until every node says it is ok.
    pub fn start() -> Cluster {
        let nodes: Vec<Redis> = (0..3)
            .map(|_| {
                let bus = free_port().to_string();
                Redis::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let status = create
            .arg("--cluster-yes")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed (it comes with redis-server)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Cluster { nodes };
        wait_for(
            "the cluster did not become ok",
            Duration::from_secs(15),
            || {
                cluster
                    .nodes
                    .iter()
                    .all(|n| query(n.port, "CLUSTER INFO").contains("cluster_state:ok"))
            },
        );
        cluster
    }

    /// The nodes' `127.0.0.1:PORT` addresses.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect()
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn url(&self) -> String {
        format!("redis+cluster://{}", self.addrs().join(","))
    }

    /// Every key on every node that starts with `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| {
                query(n.port, &format!("KEYS {prefix}*"))
                    .split("\r\n")
                    .filter(|l| l.starts_with(prefix))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}
