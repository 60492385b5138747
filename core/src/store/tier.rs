//! [`Tier`]: the one path by which a new token is handed over — to the shared store (if
//! one is configured) under its lock, then to the refresh-token hook — below both the
//! client (renewals) and the code flow (the first exchange).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{refresh_token_tag, StoreKey, StoreLock, StoredToken, TokenStore, LINEAGE};
use crate::clock::Deadline;
use crate::dpop::DpopKey;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{self, event};
use crate::options::Options;
use crate::secret::Secret;
use crate::stats::{Counters, Reason};
use crate::token::Token;

/// How a grant may renew while its shared store cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithoutStore {
    /// Not at all: it would use a refresh token another process may rotate meanwhile.
    Refuse,
    /// With its own credential (client secret, API key), never a shared refresh token.
    OwnCredential,
    /// With the refresh token it holds: the server was seen to keep refresh tokens.
    SameRefreshToken,
}

/// What renews: given the refresh token to send and, when it comes from the store with a
/// DPoP key, that key (a public client's refresh token works with its own key only).
type Fetcher<'f> = dyn FnMut(Option<&Secret>, Option<&Arc<DpopKey>>) -> Result<Token> + 'f;

/// One renewal as the cache asks for it: why, which token it replaces, the newest
/// refresh token in memory, and by when.
pub(crate) struct Renewal<'a> {
    /// Why it renews.
    pub reason: Reason,
    /// The token it replaces (rejected by an API, forced out, or expiring): a stored
    /// copy of it is never adopted back.
    pub replacing: Option<&'a Token>,
    /// The newest refresh token this client holds.
    pub refresh_token: Option<&'a Secret>,
    /// The end of the renewal's token-request budget.
    pub deadline: Deadline,
    /// Whether the session was revoked since the renewal began: then nothing it obtains
    /// may be saved as live.
    pub revoked: &'a dyn Fn() -> bool,
    /// Set when the renewal's token is one another client saved in the store (adopted,
    /// told as `store.adopted`), not one this renewal requested.
    pub adopted: &'a Cell<bool>,
}

/// What this client last knew of the stored record: its version, refresh token and
/// lineage.
#[derive(Default)]
struct Known {
    version: u64,
    refresh_tag: Option<String>,
    lineage: Vec<String>,
}

impl Known {
    fn of(record: &StoredToken) -> Known {
        Known {
            version: record.version,
            refresh_tag: record.refresh_token.as_ref().map(refresh_token_tag),
            lineage: record.lineage.clone(),
        }
    }
}

/// The tier's memory of the store: what it last saw there, a record it could not save
/// (written first under the next lock), and whether that record holds a refresh token
/// nobody else has.
#[derive(Default)]
struct Memory {
    known: Option<Known>,
    unsaved: Option<StoredToken>,
    /// The tag of a refresh token the provider issued to this client (a rotation, a
    /// sign-in's first) that no save has stored yet: lost if the process ends now.
    lost: Option<String>,
}

/// The first pause of a waiter reading the store while another process renews.
const PEEK_FIRST: std::time::Duration = std::time::Duration::from_millis(1);
/// The longest pause between two such reads.
const PEEK_MAX: std::time::Duration = std::time::Duration::from_millis(8);

/// What waiting for the store's lock ended with.
enum Waited {
    /// The lock.
    Locked(StoreLock),
    /// The token its holder saved meanwhile.
    Adopted(Box<Token>),
}

/// Whether a stored record is newer than this client's memory. It is when memory holds
/// no refresh token, the same one, one of its ancestors, or the one last seen in the
/// store at an older version; memory wins with a refresh token the store has never seen
/// (a rotation that could not be saved, or a fresh sign-in passed in by the caller) or
/// when the store went back in time.
fn stored_is_newer(memory: &Memory, stored: &StoredToken, memory_rt: Option<&Secret>) -> bool {
    if stored.revoked {
        // A revocation ends every refresh token of the session it names: the one in
        // memory, the one last seen in the store, and an unsaved rotation of either.
        let named = |tag: &str| stored.lineage.iter().any(|t| t == tag);
        let ours = memory_rt.map(refresh_token_tag).is_some_and(|t| named(&t))
            || memory
                .known
                .as_ref()
                .and_then(|k| k.refresh_tag.as_deref())
                .is_some_and(named)
            || memory
                .unsaved
                .iter()
                .flat_map(|u| u.lineage.iter())
                .any(|t| named(t));
        if ours {
            return true;
        }
    }
    let Some(m) = memory_rt else {
        return true;
    };
    if stored.refresh_token.as_ref() == Some(m) {
        return true;
    }
    let tag = refresh_token_tag(m);
    if stored.lineage.contains(&tag) {
        return true;
    }
    memory
        .known
        .as_ref()
        .filter(|k| k.refresh_tag.as_deref() == Some(tag.as_str()))
        .is_some_and(|known| stored.version > known.version)
}

/// A renewal's hold on the store: the store, the key, the lock, and the version the
/// store held when it was taken.
struct Locked<'a> {
    store: &'a dyn TokenStore,
    key: &'a StoreKey,
    lock: &'a StoreLock,
    stored_version: u64,
    /// Tags of another session of this user that a new record replaces (its refresh
    /// token and lineage): carried on, so that its clients adopt the newer session
    /// instead of sending a refresh token of theirs that may have been rotated since.
    superseded: Vec<String>,
    /// Whether the grant renews with a credential of its own (client secret, API key):
    /// then no refresh token is ever lost with an unsaved record.
    own_credential: bool,
}

/// `lineage` with `refresh_token` as its newest ancestor: at most [`LINEAGE`] tags, the
/// oldest (the session's first refresh token) always kept, so that a client started
/// from it is told apart from one holding a refresh token the store never saw.
fn descend(lineage: &[String], refresh_token: &Secret) -> Vec<String> {
    let tag = refresh_token_tag(refresh_token);
    let mut out: Vec<String> = std::iter::once(tag.clone())
        .chain(lineage.iter().filter(|t| **t != tag).cloned())
        .collect();
    if out.len() > LINEAGE {
        let origin = out.pop();
        out.truncate(LINEAGE - 1);
        out.extend(origin);
    }
    out
}

/// The tags that name a stored session: its refresh token, then its lineage.
fn session_tags(record: &StoredToken) -> Vec<String> {
    record
        .refresh_token
        .iter()
        .map(refresh_token_tag)
        .chain(record.lineage.iter().cloned())
        .collect()
}

/// A record's own lineage (at most half of [`LINEAGE`], its origin kept), followed by the
/// tags of the session it superseded, as many as fit.
fn with_superseded(mut own: Vec<String>, superseded: &[String]) -> Vec<String> {
    if superseded.is_empty() {
        return own;
    }
    if own.len() > LINEAGE / 2 {
        let origin = own.pop();
        own.truncate(LINEAGE / 2 - 1);
        own.extend(origin);
    }
    for tag in superseded {
        if own.len() >= LINEAGE {
            break;
        }
        if !own.contains(tag) {
            own.push(tag.clone());
        }
    }
    own
}

/// A record without an access token is a tombstone, whatever it says (a store of your
/// own may not keep the `revoked` field).
fn as_tombstone_if_empty(mut record: StoredToken) -> StoredToken {
    if record.access_token.expose_secret().is_empty() {
        record.revoked = true;
    }
    record
}

/// Which is newer: the stored record or this client's memory.
enum Newest {
    Stored(StoredToken),
    Memory(Option<StoredToken>),
}

/// The store tier of one client: its store and key (if sharing), the refresh-token
/// hook, and whether the store is currently unusable (so that is said once).
pub(crate) struct Tier {
    shared: Option<(Arc<dyn TokenStore>, StoreKey)>,
    options: Arc<Options>,
    degraded: AtomicBool,
    counters: Arc<Counters>,
    /// Whose tokens these are, for the refresh-token hook.
    credential: Option<StoreKey>,
    memory: Mutex<Memory>,
}

impl Tier {
    /// The tier for a credential: shared through `options`' store when `key` is some.
    pub(crate) fn new(
        options: Arc<Options>,
        key: Option<StoreKey>,
        counters: Arc<Counters>,
    ) -> Tier {
        let shared = options.store.clone().zip(key.clone());
        Tier {
            shared,
            options,
            degraded: AtomicBool::new(false),
            counters,
            credential: key,
            memory: Mutex::default(),
        }
    }

    /// Renews: directly with `fetch` when there is no store; else under the store's
    /// lock, where the newer of the stored record and this client's memory wins:
    /// a stored token another process renewed meanwhile is adopted (fresh by the same
    /// renew-ahead rule, and never a copy of the token being replaced), else the grant
    /// fetches with the newest refresh token and the result is saved (with a higher
    /// version) before the lock is released. A failed save is logged, the token still
    /// used, and the record written first under the next lock. A refused refresh token
    /// leaves a tombstone, so that no other process sends it again; a tombstone makes a
    /// refresh-token client [`ReauthenticationRequired`](ErrorKind::ReauthenticationRequired).
    /// When the store cannot be used (an [`ErrorKind::Store`] failure), a grant that can
    /// renew without it does so and this is logged once; any other grant fails with
    /// that error. A renewal ahead of expiry tries the lock once: `Ok(None)` when
    /// another process holds it (keep the still-valid token).
    pub(crate) fn renew(
        &self,
        renewal: &Renewal<'_>,
        without_store: WithoutStore,
        mut fetch: impl FnMut(Option<&Secret>, Option<&Arc<DpopKey>>) -> Result<Token>,
    ) -> Result<Option<Token>> {
        let Some((store, key)) = &self.shared else {
            return fetch(renewal.refresh_token, None).map(Some);
        };
        let store = store.as_ref();
        let deadline = renewal.deadline.instant();
        let locked = if renewal.reason == Reason::Ahead {
            store.try_lock(key, deadline).map(|l| l.map(Waited::Locked))
        } else {
            self.lock_or_adopt(store, key, renewal).map(Some)
        };
        let locked = locked.and_then(|lock| match lock {
            Some(Waited::Locked(lock)) => {
                let stored = store.load(&lock, key)?.map(as_tombstone_if_empty);
                Ok(Some(Ok((lock, stored))))
            }
            Some(Waited::Adopted(token)) => Ok(Some(Err(token))),
            None => Ok(None),
        });
        let (lock, stored) = match locked {
            Ok(Some(Ok(locked))) => {
                self.usable();
                locked
            }
            Ok(Some(Err(adopted))) => {
                self.usable();
                return Ok(Some(*adopted));
            }
            Ok(None) => {
                event!(debug, "store.busy", store = store.name();
                    "another process is renewing; the still-valid token is kept");
                return Ok(None);
            }
            Err(e) if e.kind() == ErrorKind::Store => {
                return match without_store {
                    WithoutStore::Refuse => Err(e),
                    WithoutStore::OwnCredential => {
                        self.unusable(&e);
                        fetch(None, None).map(Some)
                    }
                    WithoutStore::SameRefreshToken => {
                        self.unusable(&e);
                        fetch(renewal.refresh_token, None).map(Some)
                    }
                };
            }
            Err(e) => return Err(e),
        };
        let mut locked = Locked {
            store,
            key,
            lock: &lock,
            stored_version: stored.as_ref().map_or(0, |s| s.version),
            superseded: Vec::new(),
            own_credential: without_store == WithoutStore::OwnCredential,
        };
        let outcome = match self.newest(stored.clone(), renewal.refresh_token) {
            Newest::Stored(record) => {
                self.renew_from_store(&locked, record, renewal, without_store, &mut fetch)
            }
            Newest::Memory(unsaved) => {
                // A live record that is not an older state of memory's session (another
                // sign-in of this user): left alone if memory's refresh token is refused,
                // superseded (and named in the new record) if it is not.
                let unrelated = stored.filter(|r| !r.revoked && !self.related(r, unsaved.as_ref()));
                locked.superseded = unrelated.as_ref().map(session_tags).unwrap_or_default();
                let owns_store = unrelated.is_none();
                let outcome =
                    self.renew_from_memory(&locked, unsaved, renewal, owns_store, &mut fetch);
                match (outcome, unrelated) {
                    // Memory's refresh token was refused, but the store holds a live
                    // session of this user with another one: that session goes on.
                    (Err(e), Some(record)) if e.kind() == ErrorKind::ReauthenticationRequired => {
                        let renewal = Renewal {
                            refresh_token: None,
                            ..*renewal
                        };
                        self.renew_from_store(&locked, record, &renewal, without_store, &mut fetch)
                    }
                    (outcome, _) => outcome,
                }
            }
        };
        drop(lock);
        outcome.map(Some)
    }

    /// Renews from a stored record that is newer than memory: a tombstone ends a
    /// refresh-token session; a fresh token is adopted; else the grant fetches with the
    /// stored refresh token.
    fn renew_from_store(
        &self,
        locked: &Locked<'_>,
        record: StoredToken,
        renewal: &Renewal<'_>,
        without_store: WithoutStore,
        fetch: &mut Fetcher<'_>,
    ) -> Result<Token> {
        let base = Known::of(&record);
        if record.revoked {
            self.memory.lock().known = Some(Known::of(&record));
            if without_store != WithoutStore::OwnCredential {
                return Err(Error::ReauthenticationRequired {
                    cause: Box::new(Error::config(
                        "the session in the shared store has ended (signed out, revoked, or its \
                         refresh token refused by the provider), as seen by a client sharing the store",
                    )),
                });
            }
            let outcome = fetch(None, None);
            return self.finish(locked, base, None, true, renewal, outcome);
        }
        if let Some(token) = self.adoptable(&record, renewal) {
            self.adopt(locked.store, &record, &token, renewal);
            return Ok(token);
        }
        // The stored refresh token is used with the stored session's DPoP key. A key this
        // process cannot read ends here, before any request and without a tombstone: a
        // process that can read it (a newer release) may go on with the session.
        let (sent, key) = match &record.refresh_token {
            Some(rt) => {
                let key = match &record.dpop_key {
                    Some(jwk) => Some(Arc::new(
                        DpopKey::from_jwk(jwk.expose_secret())
                            .map_err(|_| crate::dpop::lost_key())?,
                    )),
                    None => None,
                };
                (Some(rt.clone()), key)
            }
            None => (renewal.refresh_token.cloned(), None),
        };
        let outcome = fetch(sent.as_ref(), key.as_ref());
        self.finish(locked, base, sent, true, renewal, outcome)
    }

    /// Whether a stored record is an older state of the session in memory: its refresh
    /// token is the one last seen there, or an ancestor of an unsaved rotation.
    fn related(&self, record: &StoredToken, unsaved: Option<&StoredToken>) -> bool {
        let Some(tag) = record.refresh_token.as_ref().map(refresh_token_tag) else {
            return true;
        };
        let memory = self.memory.lock();
        memory.known.as_ref().and_then(|k| k.refresh_tag.as_ref()) == Some(&tag)
            || unsaved.is_some_and(|u| u.lineage.contains(&tag))
    }

    /// Renews from this client's memory, newer than the store: an unsaved rotation is
    /// written first, then the grant fetches with memory's refresh token.
    fn renew_from_memory(
        &self,
        locked: &Locked<'_>,
        unsaved: Option<StoredToken>,
        renewal: &Renewal<'_>,
        owns_store: bool,
        fetch: &mut Fetcher<'_>,
    ) -> Result<Token> {
        let mut base = self.memory.lock().known.take().unwrap_or_default();
        base.version = base.version.max(locked.stored_version);
        if let Some(mut record) = unsaved {
            // A rotated refresh token that could not be saved: written first.
            record.version = base.version + 1;
            match locked.store.save(locked.lock, locked.key, &record) {
                Ok(()) => {
                    base = Known::of(&record);
                    self.memory.lock().lost = None;
                }
                Err(e) => {
                    log_unsaved(&e);
                    self.memory.lock().unsaved = Some(record);
                }
            }
        }
        let sent = renewal.refresh_token.cloned();
        let outcome = fetch(sent.as_ref(), None);
        self.finish(locked, base, sent, owns_store, renewal, outcome)
    }

    /// Records a renewal's outcome in the store: the new record (or, if the session was
    /// revoked meanwhile, a tombstone naming it); after a refusal of the refresh token
    /// the store holds (`owns_store`), a tombstone; after any other failure, nothing.
    fn finish(
        &self,
        locked: &Locked<'_>,
        base: Known,
        sent: Option<Secret>,
        owns_store: bool,
        renewal: &Renewal<'_>,
        outcome: Result<Token>,
    ) -> Result<Token> {
        let version = base.version.max(locked.stored_version) + 1;
        match &outcome {
            Ok(token) => {
                let mut record = StoredToken::from_token(token, sent.as_ref());
                let mut lineage = base.lineage.clone();
                if let Some(sent) = &sent {
                    if record.refresh_token.as_ref() != Some(sent) {
                        lineage = descend(&lineage, sent);
                    }
                }
                record.version = version;
                record.lineage = with_superseded(lineage, &locked.superseded);
                if (renewal.revoked)() {
                    // Revoked while this renewal was in flight: its refresh token is
                    // named in a tombstone, never saved as live.
                    let lineage = match &record.refresh_token {
                        Some(rt) => descend(&record.lineage, rt),
                        None => record.lineage.clone(),
                    };
                    record = StoredToken::tombstone(version, lineage);
                }
                // A refresh token the provider just issued (not the one sent): nobody
                // else has it until it is saved.
                let issued = record.refresh_token.is_some() && record.refresh_token != sent;
                self.save(locked, record, issued);
            }
            Err(e) if e.kind() == ErrorKind::ReauthenticationRequired && owns_store => {
                // A refused refresh token is dropped everywhere: a tombstone in the
                // store, so that no process sends it again.
                if let Some(sent) = &sent {
                    let tombstone = StoredToken::tombstone(version, descend(&base.lineage, sent));
                    self.save(locked, tombstone, false);
                }
            }
            Err(_) => {
                // Nothing learnt: what was known of the store still is.
                let mut memory = self.memory.lock();
                if memory.known.is_none() {
                    memory.known = Some(base);
                }
            }
        }
        outcome
    }

    /// Which of the stored record and this client's memory is newer (see
    /// [`stored_is_newer`]); the unsaved record, if memory wins.
    fn newest(&self, stored: Option<StoredToken>, memory_rt: Option<&Secret>) -> Newest {
        let mut memory = self.memory.lock();
        // A revocation this client could not save yet ends every record it names that
        // is not newer than the one it saw: memory (the tombstone) wins over those.
        let ended = |stored: &StoredToken| {
            memory.unsaved.as_ref().is_some_and(|u| {
                u.revoked
                    && stored.version < u.version
                    && session_tags(stored).iter().any(|t| u.lineage.contains(t))
            })
        };
        match stored {
            Some(stored) if !ended(&stored) && stored_is_newer(&memory, &stored, memory_rt) => {
                Newest::Stored(stored)
            }
            _ => Newest::Memory(memory.unsaved.take()),
        }
    }

    /// The stored record's token, if a renewal may take it instead of asking the
    /// provider: not a tombstone, fresh by the renew-ahead rule, and not a copy of a
    /// token an API rejected or the caller forced out.
    fn adoptable(&self, record: &StoredToken, renewal: &Renewal<'_>) -> Option<Token> {
        // A token a provider could have issued (RFC 6750 b64token): anything else in a
        // store was not written by a client, and is renewed over, never sent.
        if record.revoked || !crate::token::is_b64token(record.access_token.expose_secret()) {
            return None;
        }
        let token = record
            .to_token()
            .with_expiry_margin(self.options.expiry_margin);
        let refused = matches!(renewal.reason, Reason::Rejected | Reason::Forced);
        let replaced = refused
            && renewal
                .replacing
                .is_some_and(|r| r.access_token() == token.access_token());
        // A DPoP-bound token whose key cannot be read is of no use to anyone: renewed
        // instead (with the grant's own credential; a refresh token bound to the lost key
        // ends in a new sign-in).
        let key_lost = record.dpop_key.is_some() && token.dpop_key().is_none();
        // Nor is a bearer token adopted by a client that refuses them (a process not yet
        // configured for DPoP saved it).
        let bearer_refused = token.dpop_key().is_none()
            && self
                .options
                .dpop_config()
                .is_some_and(|d| !d.allows_bearer());
        (token.fresh_now() && !replaced && !key_lost && !bearer_refused).then_some(token)
    }

    /// Takes `token`, which `record` in `store` holds, for `renewal`: no token request
    /// is made, and the renewal says so (`store.adopted`, not `token.renewed`).
    fn adopt(
        &self,
        store: &dyn TokenStore,
        record: &StoredToken,
        token: &Token,
        renewal: &Renewal<'_>,
    ) {
        {
            // The store is newer than memory: nothing of memory's is needed any more.
            let mut memory = self.memory.lock();
            memory.known = Some(Known::of(record));
            memory.lost = None;
        }
        self.counters.store_adoption();
        renewal.adopted.set(true);
        let left = token.expires_at().map_or(-1.0, |at| {
            events::secs(at.saturating_duration_since(std::time::Instant::now()))
        });
        event!(info, "store.adopted", store = store.name(), reason = renewal.reason.name(), expires_in_s = left;
            "token adopted from the token store ({}; reason: {}): another client sharing the \
             store obtained it, so no token request was made; it expires in {left} s",
            store.name(), renewal.reason.name());
    }

    /// Takes the lock for a renewal; while another holder has it, reads the store
    /// without the lock (where the store can) and adopts the token the holder saves the
    /// moment it is there, instead of queueing for the lock to read it.
    fn lock_or_adopt(
        &self,
        store: &dyn TokenStore,
        key: &StoreKey,
        renewal: &Renewal<'_>,
    ) -> Result<Waited> {
        let deadline = renewal.deadline.instant();
        let mut pause = PEEK_FIRST;
        loop {
            if let Some(lock) = store.try_lock(key, deadline)? {
                return Ok(Waited::Locked(lock));
            }
            let Some(peeked) = store.peek(key, deadline) else {
                // This store cannot be read without its lock: wait for the lock.
                return store.lock(key, deadline).map(Waited::Locked);
            };
            if let Some(record) = peeked?.map(as_tombstone_if_empty) {
                let newer = stored_is_newer(&self.memory.lock(), &record, renewal.refresh_token);
                if let (true, Some(token)) = (newer, self.adoptable(&record, renewal)) {
                    self.adopt(store, &record, &token, renewal);
                    return Ok(Waited::Adopted(Box::new(token)));
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    message: format!(
                        "waited for another process's renewal through the token store ({})",
                        store.name()
                    ),
                });
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(PEEK_MAX);
        }
    }

    /// Saves `record` under the lock; a failure is logged and the record kept, to be
    /// written first under the next lock. `issued`: its refresh token is one the
    /// provider just issued, which nobody else has until it is saved.
    fn save(&self, locked: &Locked<'_>, record: StoredToken, issued: bool) {
        let store = locked.store;
        match store.save(locked.lock, locked.key, &record) {
            Ok(()) => {
                event!(debug, "store.saved", store = store.name();
                    "saved the new token to the store ({})", store.name());
                let mut memory = self.memory.lock();
                memory.known = Some(Known::of(&record));
                memory.unsaved = None;
                memory.lost = None;
            }
            Err(e) => {
                log_unsaved(&e);
                let mut memory = self.memory.lock();
                if record.revoked || locked.own_credential {
                    memory.lost = None;
                } else {
                    // Still lost: a refresh token just issued, or the unsaved one sent
                    // again and kept by the provider.
                    let tag = record.refresh_token.as_ref().map(refresh_token_tag);
                    let still = tag.is_some() && tag == memory.lost;
                    memory.lost = if issued || still { tag } else { None };
                }
                if !record.revoked {
                    memory.unsaved = Some(record);
                }
            }
        }
    }

    /// Whether this client holds a refresh token the provider issued to it that its
    /// store could not save (see [`Client::has_unsaved_refresh_token`](crate::Client::has_unsaved_refresh_token)).
    /// The key this client's tokens are filed under in its store, if it has one.
    pub(crate) fn store_key(&self) -> Option<&StoreKey> {
        self.shared.as_ref().map(|(_, key)| key)
    }

    /// The key of this tier's credential, with or without a store.
    pub(crate) fn credential_key(&self) -> Option<&StoreKey> {
        self.credential.as_ref()
    }

    pub(crate) fn has_unsaved_refresh_token(&self) -> bool {
        self.memory.lock().lost.is_some()
    }

    /// Keeps a sign-in's first record that [`hand_over_new`](Self::hand_over_new) could
    /// not save: written first under this tier's next lock, and its refresh token
    /// counted as unsaved until then.
    pub(crate) fn keep_unsaved(&self, record: StoredToken) {
        let mut memory = self.memory.lock();
        memory.lost = record.refresh_token.as_ref().map(refresh_token_tag);
        memory.unsaved = Some(record);
    }

    /// Hands over a token obtained outside a renewal (a code exchange, a fresh sign-in):
    /// saved to the store under its lock as the newest record (a failure is logged, the
    /// token still used, and the record returned for the client that goes on with it to
    /// keep; see [`keep_unsaved`](Self::keep_unsaved)), then announced.
    pub(crate) fn hand_over_new(&self, token: &Token, deadline: Deadline) -> Option<StoredToken> {
        let mut unsaved = None;
        if let Some((store, key)) = &self.shared {
            let mut record = StoredToken::from_token(token, None);
            let saved = store.lock(key, deadline.instant()).and_then(|lock| {
                let previous = store.load(&lock, key)?.map(as_tombstone_if_empty);
                record.version = previous.as_ref().map_or(0, |s| s.version) + 1;
                // A new sign-in supersedes the user's previous session, if one is live.
                let superseded = previous
                    .filter(|p| !p.revoked)
                    .map(|p| session_tags(&p))
                    .unwrap_or_default();
                record.lineage = with_superseded(Vec::new(), &superseded);
                store.save(&lock, key, &record)
            });
            if let Err(e) = saved {
                log_unsaved(&e);
                unsaved = Some(record);
            }
        }
        self.announce(token, None);
        unsaved
    }

    /// Ends the credential's session in the store (after a revocation), under its lock:
    /// a tombstone naming every refresh token of the session (so that no process
    /// renews it again from memory), and says what it held: the newest refresh token in
    /// particular. `memory_rt` is this client's newest refresh token.
    pub(crate) fn take(
        &self,
        memory_rt: Option<&Secret>,
        deadline: Deadline,
    ) -> Result<Option<StoredToken>> {
        let (known_version, known_tags) = {
            let mut memory = self.memory.lock();
            memory.unsaved = None;
            memory.lost = None;
            let known = memory.known.as_ref();
            (
                known.map_or(0, |k| k.version),
                known
                    .map(|k| {
                        k.refresh_tag
                            .iter()
                            .chain(&k.lineage)
                            .cloned()
                            .collect::<Vec<String>>()
                    })
                    .unwrap_or_default(),
            )
        };
        let Some((store, key)) = &self.shared else {
            return Ok(None);
        };
        // A store that cannot take the tombstone now: it is kept as this client's unsaved
        // record, written first under the next lock, and until then no record it names
        // is adopted back (see `newest`), so the tokens just revoked are never served.
        let keep = |tombstone: StoredToken| self.memory.lock().unsaved = Some(tombstone);
        let from_memory = || {
            let mut lineage = known_tags.clone();
            if let Some(rt) = memory_rt {
                lineage = descend(&lineage, rt);
            }
            StoredToken::tombstone(known_version + 1, lineage)
        };
        let lock = store.lock(key, deadline.instant()).inspect_err(|_| {
            keep(from_memory());
        })?;
        let stored = store.load(&lock, key).inspect_err(|_| {
            keep(from_memory());
        })?;
        let stored = stored.map(as_tombstone_if_empty);
        if memory_rt.is_none() && stored.as_ref().is_none_or(|s| s.revoked) {
            // No session, here or there: nothing to end.
            return Ok(None);
        }
        let mut lineage = stored
            .as_ref()
            .map(|s| s.lineage.clone())
            .unwrap_or_default();
        for rt in stored
            .iter()
            .flat_map(|s| s.refresh_token.as_ref())
            .chain(memory_rt)
        {
            lineage = descend(&lineage, rt);
        }
        let version = stored.as_ref().map_or(0, |s| s.version) + 1;
        let tombstone = StoredToken::tombstone(version, lineage);
        if let Err(e) = store.save(&lock, key, &tombstone) {
            keep(tombstone);
            return Err(e);
        }
        self.memory.lock().known = Some(Known::of(&tombstone));
        Ok(stored.filter(|s| !s.revoked))
    }

    /// Hands a new refresh token to the hook before any caller can use the access
    /// token that came with it. The hook runs inside a panic boundary: a hook that
    /// fails or panics is logged (error level, target `authcore`) and costs nothing
    /// else; the token is kept and used.
    pub(crate) fn announce(&self, token: &Token, previous: Option<&Secret>) {
        let (Some(hook), Some(rt)) = (&self.options.on_refresh_token, token.refresh_token()) else {
            return;
        };
        if previous == Some(rt) {
            return;
        }
        let rotation = crate::options::Rotation {
            refresh_token: rt,
            token,
            credential: self.credential.as_ref(),
        };
        match catch_unwind(AssertUnwindSafe(|| hook(&rotation))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => event!(error, "hook.failed";
                "the refresh-token hook failed: {}; the new refresh token is kept in memory and used",
                crate::error::scrub(&e.to_string())
            ),
            Err(_) => event!(error, "hook.failed";
                "the refresh-token hook panicked; the new refresh token is kept in memory and used"
            ),
        }
    }

    fn unusable(&self, e: &Error) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            event!(warn, "store.unusable";
                "{e}; renewing without it (tokens are not shared) until it is back"
            );
        }
    }

    fn usable(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            event!(info, "store.usable"; "the token store is usable again; tokens are shared");
        }
    }
}

fn log_unsaved(e: &Error) {
    event!(error, "store.save_failed";
        "could not save the new token to the store ({e}); it is kept and used in this process"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: u64, rt: &str, lineage: &[&str]) -> StoredToken {
        let mut r = StoredToken::tombstone(version, Vec::new());
        r.revoked = false;
        r.access_token = Secret::new("at");
        r.refresh_token = Some(Secret::new(rt));
        r.lineage = lineage
            .iter()
            .map(|t| refresh_token_tag(&Secret::new(*t)))
            .collect();
        r
    }

    fn knowing(r: &StoredToken) -> Memory {
        Memory {
            known: Some(Known::of(r)),
            ..Memory::default()
        }
    }

    #[test]
    fn the_newer_of_store_and_memory_wins() {
        let rt = |s: &str| Secret::new(s);
        let empty = Memory::default();
        // Nothing in memory, or the same refresh token: the store.
        assert!(stored_is_newer(&empty, &record(3, "rt3", &[]), None));
        assert!(stored_is_newer(
            &empty,
            &record(3, "rt3", &[]),
            Some(&rt("rt3"))
        ));
        // Memory holds an ancestor of the stored refresh token: the store.
        let r = record(3, "rt3", &["rt2", "rt1"]);
        assert!(stored_is_newer(&empty, &r, Some(&rt("rt1"))));
        // A refresh token the store never saw (an unsaved rotation, a fresh sign-in):
        // memory.
        assert!(!stored_is_newer(&empty, &r, Some(&rt("rt-new"))));
        assert!(!stored_is_newer(
            &knowing(&record(3, "rt3", &[])),
            &record(3, "rt3-other", &[]),
            Some(&rt("rt3"))
        ));
        // Memory holds what it last saw there, and the store moved on (a new sign-in
        // elsewhere): the store. The store went back in time: memory.
        let seen = knowing(&record(3, "rt3", &[]));
        assert!(stored_is_newer(
            &seen,
            &record(4, "rt-other", &[]),
            Some(&rt("rt3"))
        ));
        assert!(!stored_is_newer(
            &seen,
            &record(2, "rt-old", &[]),
            Some(&rt("rt3"))
        ));
        // A tombstone naming memory's refresh token: the store (the session is over).
        let tomb = StoredToken::tombstone(5, vec![refresh_token_tag(&rt("rt3"))]);
        assert!(stored_is_newer(&empty, &tomb, Some(&rt("rt3"))));
    }
}
