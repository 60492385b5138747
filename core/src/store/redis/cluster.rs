//! The thread that owns a process's Redis Cluster connection.
//!
//! The `redis` crate's blocking cluster connection follows redirections, refreshes its
//! slot map and reconnects to nodes by itself, each step with its own timeout but with no
//! bound on the whole (a refresh connects to every node in turn). So the connection lives
//! on a thread of its own: a caller hands it a command and waits for the answer at most
//! until its own limit, and a command the cluster is slow with delays the next ones
//! only until theirs.

use std::sync::{mpsc, Arc};
use std::time::Instant;

use redis::cluster::{ClusterClient, ClusterConnection};

/// How often the cluster connection retries a command (a redirection, a node that is
/// loading or failing over) before it gives up.
pub(super) const RETRIES: u32 = 2;
/// The least pause (ms) before a retry.
pub(super) const MIN_RETRY_WAIT_MS: u64 = 10;
/// The longest pause (ms) before a retry.
pub(super) const MAX_RETRY_WAIT_MS: u64 = 200;

/// One command for the worker.
type Job = Box<dyn FnOnce(&mut Option<ClusterConnection>) + Send>;

/// A handle on the worker thread (which ends when the last handle is dropped).
#[derive(Clone)]
pub(super) struct Worker {
    jobs: mpsc::Sender<Job>,
    client: Arc<ClusterClient>,
}

/// The worker did not answer before the caller's limit.
pub(super) struct NoAnswer;

impl Worker {
    /// Starts the worker for `client`; it connects on its first command.
    pub(super) fn spawn(client: Arc<ClusterClient>) -> std::io::Result<Worker> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("authcore-redis-cluster".into())
            .spawn(move || {
                let mut connection = None;
                for job in queue {
                    job(&mut connection);
                }
            })?;
        Ok(Worker { jobs, client })
    }

    /// Runs `f` on the cluster connection (opened if needed, dropped after a failure),
    /// with the connection's timeouts set to the time left; waits for it until `until`.
    /// A command still queued at `until` is skipped.
    pub(super) fn run<T: Send + 'static>(
        &self,
        until: Instant,
        f: impl Fn(&mut dyn redis::ConnectionLike) -> redis::RedisResult<T> + Send + 'static,
    ) -> Result<redis::RedisResult<T>, NoAnswer> {
        let (reply, answer) = mpsc::sync_channel(1);
        let client = Arc::clone(&self.client);
        let job: Job = Box::new(move |slot: &mut Option<ClusterConnection>| {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let result = (|slot: &mut Option<ClusterConnection>| {
                let conn = match slot {
                    Some(conn) => conn,
                    empty => empty.insert(client.get_connection()?),
                };
                conn.set_read_timeout(Some(left))?;
                conn.set_write_timeout(Some(left))?;
                f(conn)
            })(slot);
            if result.is_err() {
                *slot = None;
            }
            let _ = reply.send(result);
        });
        self.jobs.send(job).map_err(|_| NoAnswer)?;
        let left = until.saturating_duration_since(Instant::now());
        answer.recv_timeout(left).map_err(|_| NoAnswer)
    }
}
