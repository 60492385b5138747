//! `authcore login` / `authcore logout`: sign a user in at any OpenID provider found by
//! its issuer URL — the authorization code flow with PKCE through the system browser
//! and a loopback redirect (RFC 8252 §7.3), or the device flow — and keep the refresh
//! token in a file store, where `authcore token --issuer …` finds it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use authcore::grant::{AuthorizationCode, DeviceCode, RefreshToken};
use authcore::{
    AuthorizationCodeFlow, Client, DeviceFlow, Dpop, DpopAlgorithm, DpopKey, Error, ErrorKind,
    FileStore, Metadata, Options, Secret, SignOut, StoreKey,
};
use serde::{Deserialize, Serialize};

/// The page the browser shows once the redirect arrived.
const DONE_PAGE: &str =
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>authcore</title></head>\
<body><p>Signed in. You can close this tab and return to the terminal.</p></body></html>";

/// The path of the loopback redirect URI.
const CALLBACK_PATH: &str = "/callback";

/// Where `authcore login` keeps tokens unless told otherwise:
/// `options` for the profile `profile` (default `default`): one signed-in user each,
/// filed under its name in the store.
pub fn profile_options(options: Options, profile: Option<&str>) -> Options {
    options.store_key(format!("profile:{}", profile.unwrap_or("default")))
}

/// The default store directory: `$XDG_STATE_HOME/authcore`, else
/// `~/.local/state/authcore` (state, not cache: cleaners wipe caches and CI uploads
/// them).
pub fn default_store_dir() -> Result<PathBuf, Error> {
    xdg_dir("XDG_STATE_HOME", ".local/state").ok_or_else(|| Error::Config {
        message: "no HOME or XDG_STATE_HOME: pass --store DIR".into(),
    })
}

/// Where sessions were kept before: `$XDG_CACHE_HOME/authcore`, else
/// `~/.cache/authcore`.
pub fn legacy_store_dir() -> Option<PathBuf> {
    xdg_dir("XDG_CACHE_HOME", ".cache")
}

/// `$VAR/authcore` if VAR is set (and absolute, as the XDG specification wants), else
/// `$HOME/<fallback>/authcore`.
fn xdg_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
    {
        return Some(dir.join("authcore"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(fallback).join("authcore"))
}

/// The store directory: `explicit` if given, else the default one, into which sessions
/// kept at the old default place are moved first (see [`migrate_legacy_store`]).
pub fn store_dir(explicit: Option<PathBuf>) -> Result<PathBuf, Error> {
    if let Some(dir) = explicit {
        return Ok(dir);
    }
    let dir = default_store_dir()?;
    if let Some(old) = legacy_store_dir() {
        migrate_legacy_store(&old, &dir);
    }
    Ok(dir)
}

/// Moves the sessions kept in `old` (the former default, under the cache directory)
/// to `new`, once: only when `old` exists and `new` does not, and only from a directory
/// that is this user's and private (else it is left alone, with a warning). The
/// directory ends up 0700 and its files 0600. Said at `-v`; a failure is a warning
/// that says where the sessions are (then `new` is used as it is).
pub fn migrate_legacy_store(old: &Path, new: &Path) {
    if old == new || new.exists() || !old.is_dir() {
        return;
    }
    // The same rule as for any store: a directory another user could have planted a
    // session in is not adopted.
    if let Err(why) = FileStore::new(old) {
        log::warn!(
            "the sessions in {} are not moved to {}: {why}",
            old.display(),
            new.display()
        );
        return;
    }
    match move_dir(old, new) {
        Ok(()) => log::info!(
            "moved the sessions from {} to {} (state, not cache)",
            old.display(),
            new.display()
        ),
        Err(MoveError::NotMoved(e)) => log::warn!(
            "could not move the sessions from {} to {}: {e}; they stay where they were",
            old.display(),
            new.display()
        ),
        Err(MoveError::OldKept(e)) => log::warn!(
            "moved the sessions from {} to {} (state, not cache), but could not remove {}: \
             {e}; remove it yourself (it holds copies of the sessions' refresh tokens)",
            old.display(),
            new.display(),
            old.display()
        ),
        Err(MoveError::NotPrivate(e)) => log::warn!(
            "moved the sessions from {} to {}, but could not make it and its files private \
             (0700, 0600): {e}",
            old.display(),
            new.display()
        ),
    }
}

/// How moving a store directory went wrong.
#[derive(Debug)]
enum MoveError {
    /// Nothing was moved: the sessions are still (only) in the old directory.
    NotMoved(std::io::Error),
    /// The sessions are in the new directory, but the old one (copied across file
    /// systems) could not be removed, wholly or in part.
    OldKept(std::io::Error),
    /// The sessions are in the new directory, but its modes could not be set.
    NotPrivate(std::io::Error),
}

/// Moves `old` to `new` (renamed when both are on one file system, else copied file by
/// file and removed), with `new`'s missing parents made 0700; then makes `new` 0700 and
/// its files 0600.
fn move_dir(old: &Path, new: &Path) -> Result<(), MoveError> {
    if let Some(parent) = new.parent() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(parent).map_err(MoveError::NotMoved)?;
    }
    let moved = match std::fs::rename(old, new) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => match copy_dir(old, new) {
            Err(e @ MoveError::NotMoved(_)) => return Err(e),
            moved => moved,
        },
        Err(e) => return Err(MoveError::NotMoved(e)),
    };
    #[cfg(unix)]
    make_private(new).map_err(MoveError::NotPrivate)?;
    moved
}

/// Makes `dir` 0700 and its files 0600.
#[cfg(unix)]
fn make_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Copies the files of `old` into a new directory `new` (made complete under a
/// temporary name beside it, then renamed into place; removed if anything fails before
/// that), then removes `old`.
fn copy_dir(old: &Path, new: &Path) -> Result<(), MoveError> {
    let parent = new.parent().unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".authcore-migrate-")
        .tempdir_in(parent)
        .map_err(MoveError::NotMoved)?;
    let copy = || -> std::io::Result<()> {
        for entry in std::fs::read_dir(old)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), staging.path().join(entry.file_name()))?;
            }
        }
        std::fs::rename(staging.path(), new)
    };
    // On failure `staging` is dropped, and with it the copies made so far.
    copy().map_err(MoveError::NotMoved)?;
    // In place under its new name: nothing is left to remove.
    let _ = staging.keep();
    std::fs::remove_dir_all(old).map_err(MoveError::OldKept)
}

/// Where a session is kept: the store directory, and the profile it is filed under
/// there (one signed-in user each).
#[derive(Clone, Debug)]
pub struct Place {
    /// The store directory.
    pub dir: PathBuf,
    /// The profile's name.
    pub profile: String,
}

impl Place {
    /// The profile `profile` (default `default`) in `dir`.
    pub fn new(dir: PathBuf, profile: Option<&str>) -> Place {
        Place {
            dir,
            profile: profile.unwrap_or("default").to_owned(),
        }
    }

    /// `options` with the file store in [`dir`](Self::dir) and the session filed under
    /// the profile.
    fn options(&self, options: Options) -> Result<Options, Error> {
        let options = profile_options(options, Some(&self.profile));
        Ok(options.store(Arc::new(FileStore::new(&self.dir)?)))
    }
}

/// What `authcore logout` needs to find a session without its provider, kept at sign-in
/// beside the session in the store (`<digest>.login`; nothing secret): the session is
/// filed under a key made of its token endpoint, which otherwise only the provider's
/// metadata says.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Note {
    issuer: String,
    client_id: String,
    profile: String,
    resources: Vec<String>,
    token_endpoint: String,
    /// The session was signed in with DPoP, so: (absent in notes of Bearer sessions and
    /// of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dpop: Option<DpopSetting>,
}

/// How a session was signed in with DPoP, kept in its note so that `authcore token
/// --issuer` renews it the same way without being told again. Nothing secret: the key
/// is kept with the session's tokens in the store record, and nowhere else.
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug, Clone)]
pub struct DpopSetting {
    /// The key's algorithm (`ES256`, `EdDSA`, `RS256`).
    pub algorithm: String,
    /// A Bearer answer was accepted.
    pub allow_bearer: bool,
}

impl DpopSetting {
    /// DPoP configured this way, with a new key: the session's stored key signs for the
    /// session's tokens; this one only for a sign-in whose stored record has none.
    pub fn dpop(&self) -> Result<Dpop, Error> {
        let algorithm = DpopAlgorithm::from_name(&self.algorithm)?;
        Ok(Dpop::new(DpopKey::generate(algorithm)?).allow_bearer_downgrade(self.allow_bearer))
    }
}

/// How the session of `client_id` at `issuer` (for `resources`) in `place` was signed
/// in with DPoP, as its note says (`None`: without, or no note).
pub fn remembered_dpop(
    place: &Place,
    issuer: &str,
    client_id: &str,
    resources: &[String],
) -> Option<DpopSetting> {
    let (path, expected) = Note::at(place, issuer, client_id, resources);
    Note::read(&path, &expected).and_then(|note| note.dpop)
}

impl Note {
    /// The note for a session of `client_id` at `issuer` for `resources`, in `place`:
    /// its path, and what it says apart from the token endpoint.
    fn at(place: &Place, issuer: &str, client_id: &str, resources: &[String]) -> (PathBuf, Note) {
        let mut resources = resources.to_vec();
        resources.sort_unstable();
        resources.dedup();
        let note = Note {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            profile: place.profile.clone(),
            resources,
            token_endpoint: String::new(),
            dpop: None,
        };
        let name = serde_json::to_string(&(
            &note.issuer,
            &note.client_id,
            &note.profile,
            &note.resources,
        ))
        .unwrap_or_default();
        let digest = StoreKey::custom(format!("login {name}")).digest();
        (place.dir.join(format!("{}.login", &digest[..32])), note)
    }

    /// The token endpoint the note at `path` keeps for `expected`, if there is such a
    /// note (one that cannot be read or says something else is said, and not used).
    fn token_endpoint(path: &Path, expected: &Note) -> Option<String> {
        Note::read(path, expected).map(|note| note.token_endpoint)
    }

    /// The note at `path`, if it is one of `expected`'s session (one that cannot be read
    /// or says something else is said, and not used).
    fn read(path: &Path, expected: &Note) -> Option<Note> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                log::warn!("cannot read {}: {e}", path.display());
                return None;
            }
        };
        match serde_json::from_slice::<Note>(&bytes) {
            Ok(note) if !note.token_endpoint.is_empty() && note.same_session(expected) => {
                Some(note)
            }
            _ => {
                log::warn!(
                    "{} is not a note of this session's token endpoint; not used",
                    path.display()
                );
                None
            }
        }
    }

    /// Both notes are of the same session (whatever their token endpoints).
    fn same_session(&self, other: &Note) -> bool {
        self.issuer == other.issuer
            && self.client_id == other.client_id
            && self.profile == other.profile
            && self.resources == other.resources
    }

    /// Writes the note to `path`, replacing any: a temporary file in the same directory
    /// (0600, as everything in a store), fsynced, renamed into place.
    fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".authcore-")
            .suffix(".tmp")
            .tempfile_in(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        tmp.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Who signs in where.
pub struct Session {
    /// The issuer's metadata.
    pub metadata: Metadata,
    /// The issuer URL it was discovered from.
    pub issuer: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The client secret; empty for a public client.
    pub client_secret: Secret,
    /// Scopes to ask for.
    pub scopes: Vec<String>,
    /// Resource indicators (RFC 8707).
    pub resources: Vec<String>,
    /// Where the session is kept.
    pub place: Place,
    /// Options, with the file store set.
    pub options: Options,
}

impl Session {
    /// Discovers `issuer` and sets up the file store in `place`, where the session is
    /// filed under its profile.
    pub fn new(
        issuer: &str,
        client_id: String,
        client_secret: Secret,
        scopes: Vec<String>,
        resources: Vec<String>,
        place: Place,
        options: Options,
    ) -> Result<Session, Error> {
        let metadata = Metadata::discover(issuer, &options)?;
        let options = place.options(options)?;
        Ok(Session {
            metadata,
            issuer: issuer.to_owned(),
            client_id,
            client_secret,
            scopes,
            resources,
            place,
            options,
        })
    }

    /// Keeps, beside the session in the store, what [`logout`] needs to find it when
    /// the provider cannot be reached (its token endpoint; nothing secret), and how the
    /// session was signed in with DPoP (`dpop`), for `authcore token --issuer` to renew
    /// it the same way. Called once signed in.
    pub fn note_where_kept(&self, dpop: Option<DpopSetting>) -> Result<(), Error> {
        let (path, note) = Note::at(&self.place, &self.issuer, &self.client_id, &self.resources);
        let note = Note {
            token_endpoint: self.metadata.require_token_endpoint()?.to_owned(),
            dpop,
            ..note
        };
        note.save(&path).map_err(|e| Error::Store {
            message: format!("cannot write {}: {e}", path.display()),
        })
    }

    /// A client that renews from the refresh token in the store (the one `login` put
    /// there): what `authcore token --issuer` and `logout` use.
    pub fn client(&self) -> Result<Client, Error> {
        let grant = RefreshToken::from_metadata(
            &self.metadata,
            self.client_id.clone(),
            self.client_secret.clone(),
        )?
        .resources(self.resources.clone());
        Client::new(grant, self.options.clone())
    }

    /// Signs in through the browser: the authorization URL is printed (and opened,
    /// unless `open_browser` is false), and the redirect carrying this sign-in's state
    /// is awaited on a loopback listener on a free port for at most `wait` (other
    /// requests are answered 400 or 404 and do not end it).
    pub fn browser_login(&self, open_browser: bool, wait: Duration) -> Result<Client, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Config {
                message: format!("cannot start the redirect listener: {e}"),
            })?;
        let listener = {
            let _inside = runtime.enter();
            listen_on_loopback().map_err(|e| Error::Config {
                message: format!("cannot listen on 127.0.0.1 for the redirect: {e}"),
            })?
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let redirect = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
        let config = AuthorizationCode::from_metadata(
            &self.metadata,
            self.client_id.clone(),
            self.client_secret.clone(),
            redirect.clone(),
        )?
        .scopes(self.scopes.clone())
        .resources(self.resources.clone());
        let flow = AuthorizationCodeFlow::new(config, self.options.clone())?;
        let request = flow.authorization_url()?;
        eprintln!(
            "Open this URL in a browser to sign in:\n\n  {}\n",
            request.url
        );
        if open_browser && open::that_detached(&request.url).is_err() {
            eprintln!("(no browser could be opened: open the URL yourself)");
        }
        // Only the redirect that carries this sign-in's state finishes it.
        let target = await_redirect(&runtime, listener, &request.state, wait)?;
        flow.finish(&format!("http://127.0.0.1:{port}{target}"), &request.state)
    }

    /// Signs in with the device flow: the code and URL are printed, then the user's
    /// approval is awaited (at most as long as the code lives, and `wait`).
    pub fn device_login(&self, wait: Duration) -> Result<Client, Error> {
        let config = DeviceCode::from_metadata(
            &self.metadata,
            self.client_id.clone(),
            self.client_secret.clone(),
        )?
        .scopes(self.scopes.clone())
        .resources(self.resources.clone());
        let flow = DeviceFlow::new(config, self.options.clone())?;
        let auth = flow.start()?;
        eprintln!(
            "To sign in, open {} and enter the code {}",
            auth.verification_uri, auth.user_code
        );
        if let Some(complete) = &auth.verification_uri_complete {
            eprintln!("(or open {complete})");
        }
        auth.wait(Some(wait))
    }
}

/// What [`logout`] did.
#[derive(Debug)]
pub enum Logout {
    /// The provider's metadata was had: the session is removed from the store, and
    /// revoked at the provider or not, as the outcome says.
    SignedOut(SignOut),
    /// The provider's metadata could not be had (`why`: it could not be reached, or
    /// answered with something unusable), so nothing was revoked there; the session,
    /// found through the note kept at sign-in, is removed from the store (`removed`:
    /// there was one).
    Offline {
        /// A session was there, and is removed.
        removed: bool,
        /// Why the provider's metadata could not be had.
        why: Error,
    },
    /// The provider's metadata could not be had (`why`), and no note says under which
    /// token endpoint a session would be filed (none was signed in by `authcore login`
    /// since notes are kept, or it was removed): nothing was removed or revoked.
    NotFound {
        /// Why the provider's metadata could not be had.
        why: Error,
    },
    /// The store could not be updated: the session may still be there.
    NotRemoved(Error),
}

/// Signs the session of `client_id` at `issuer` (for `resources`) in `place` out: it is
/// removed from the store whatever the provider can do, then revoked at the provider if
/// the provider can be reached and has a revocation endpoint. The store key depends on
/// the provider's token endpoint: when the provider's metadata cannot be had, the note
/// [`Session::note_where_kept`] left says it. `Err`: the store cannot be used at all.
pub fn logout(
    issuer: &str,
    client_id: String,
    client_secret: Secret,
    resources: Vec<String>,
    place: Place,
    options: Options,
) -> Result<Logout, Error> {
    let stored = place.options(options.clone())?;
    let (path, expected) = Note::at(&place, issuer, &client_id, &resources);
    let noted = Note::token_endpoint(&path, &expected);
    let sign_out = |metadata: &Metadata| -> Result<Result<SignOut, Error>, Error> {
        let grant =
            RefreshToken::from_metadata(metadata, client_id.clone(), client_secret.clone())?
                .resources(resources.clone());
        Ok(Client::new(grant, stored.clone())?.sign_out())
    };
    match Metadata::discover(issuer, &options) {
        Ok(mut metadata) => {
            // Where `login` filed it, should the provider have moved its token endpoint since.
            if let Some(endpoint) = noted {
                metadata.token_endpoint = Some(endpoint);
            }
            Ok(match sign_out(&metadata)? {
                Ok(outcome) => Logout::SignedOut(outcome),
                Err(e) => Logout::NotRemoved(e),
            })
        }
        Err(why) => {
            let Some(endpoint) = noted else {
                return Ok(Logout::NotFound { why });
            };
            // The note's endpoint only: no revocation endpoint, nothing sent anywhere.
            let mut metadata = Metadata::default();
            metadata.issuer = issuer.to_owned();
            metadata.token_endpoint = Some(endpoint);
            Ok(match sign_out(&metadata)? {
                Ok(SignOut::NotSignedIn) => Logout::Offline {
                    removed: false,
                    why,
                },
                Ok(_) => Logout::Offline { removed: true, why },
                Err(e) => Logout::NotRemoved(e),
            })
        }
    }
}

/// Whether `e` says the provider could not be reached at all (rather than that it
/// answered with a refusal or something unusable).
pub fn unreachable(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Transport | ErrorKind::Timeout)
}

/// Most connections the redirect listener keeps open at once. Every connection is
/// accepted; when one more arrives, the oldest that has sent nothing yet (else the oldest
/// of all) is closed once it has had [`GRACE`], so that connections opened and left idle
/// — however many, however often reopened — never keep a newer one, the browser's, from
/// being served.
const MAX_CONNECTIONS: usize = 32;

/// How long a connection is kept open at the least (when [`MAX_CONNECTIONS`] are open
/// and more arrive): time enough for a browser to send its request, which it does as
/// soon as it has connected. With the listener full, at most [`MAX_CONNECTIONS`]
/// connections are accepted per `GRACE`.
const GRACE: Duration = Duration::from_millis(250);

/// Connections the system holds for the redirect listener until it accepts them (its
/// listen backlog): room for many waiting behind idle ones, so that the browser's is not
/// turned away meanwhile.
const BACKLOG: u32 = 1024;

/// How long one connection to the redirect listener may take to send its request and
/// be answered: a connection that sends nothing (a browser's preconnect, any local
/// process) is closed after it at the latest, and never holds up the real redirect
/// meanwhile.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The page a request to the callback path that is not this sign-in's gets (400).
const WRONG_STATE_PAGE: &str =
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>authcore</title></head>\
<body><p>This sign-in response does not belong to the sign-in this terminal is waiting for \
(its state does not match). The terminal keeps waiting.</p></body></html>";

/// A listener on a free port of 127.0.0.1 with a [`BACKLOG`]; inside a Tokio runtime.
fn listen_on_loopback() -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(([127, 0, 0, 1], 0).into())?;
    socket.listen(BACKLOG)
}

/// One connection the redirect listener is serving.
struct Live {
    /// When it was accepted.
    accepted: tokio::time::Instant,
    /// It has sent something (its request, or part of it).
    spoke: Arc<AtomicBool>,
    /// Its task: aborting it closes the connection.
    task: tokio::task::JoinHandle<()>,
}

/// The connections the redirect listener serves, the oldest first: at most
/// [`MAX_CONNECTIONS`].
#[derive(Default)]
struct Connections(VecDeque<Live>);

impl Connections {
    /// Makes room for one more connection if it can now: `None` when there is room (the
    /// connections that have ended are forgotten; if [`MAX_CONNECTIONS`] are still
    /// open, the oldest that has sent nothing — an idle connection is always older than
    /// the browser's new one — or else the oldest of all, is closed once it has been
    /// open for [`GRACE`]); else how long until it can.
    fn make_room(&mut self) -> Option<Duration> {
        self.0.retain(|c| !c.task.is_finished());
        if self.0.len() < MAX_CONNECTIONS {
            return None;
        }
        let victim = self
            .0
            .iter()
            .position(|c| !c.spoke.load(Ordering::Relaxed))
            .unwrap_or(0);
        let open_for = self.0[victim].accepted.elapsed();
        if open_for < GRACE {
            return Some(GRACE - open_for);
        }
        if let Some(closed) = self.0.remove(victim) {
            closed.task.abort();
        }
        None
    }

    fn push(&mut self, live: Live) {
        self.0.push_back(live);
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        for c in &self.0 {
            c.task.abort();
        }
    }
}

/// `stream`, and whether it has sent anything yet (bytes waiting to be read), asked
/// without waiting. A connection that cannot be asked counts as one that sent nothing.
fn has_spoken(stream: tokio::net::TcpStream) -> std::io::Result<(tokio::net::TcpStream, bool)> {
    let stream = stream.into_std()?;
    let spoke = matches!(stream.peek(&mut [0u8; 1]), Ok(n) if n > 0);
    Ok((tokio::net::TcpStream::from_std(stream)?, spoke))
}

/// Serves connections on `listener` (on `runtime`), each on its own task under
/// [`CONNECTION_TIMEOUT`] (at most [`MAX_CONNECTIONS`] at once: see [`Connections`]),
/// until one brings the redirect: a request for the callback path whose `state` is
/// `state`. It is answered with a short page and its target (path and query) returned.
/// A request for the callback path with another `state` (or none) gets 400, any other
/// path 404, and the listener goes on. Ends with a [`Timeout`](Error::Timeout) after
/// `wait`.
fn await_redirect(
    runtime: &tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    state: &str,
    wait: Duration,
) -> Result<String, Error> {
    let expected = Arc::new(Secret::new(state));
    runtime.block_on(async move {
        let (found, mut redirect) = tokio::sync::mpsc::channel::<String>(1);
        let mut live = Connections::default();
        let timeout = tokio::time::sleep(wait);
        tokio::pin!(timeout);
        let timed_out = || Error::Timeout {
            message: "no sign-in came back to the loopback redirect in time".into(),
        };
        loop {
            // Full of connections younger than GRACE: accept nothing until one may go.
            let full = live.make_room();
            let accepted = tokio::select! {
                _ = &mut timeout => return Err(timed_out()),
                Some(target) = redirect.recv() => return Ok(target),
                _ = tokio::time::sleep(full.unwrap_or_default()), if full.is_some() => continue,
                accepted = listener.accept(), if full.is_none() => {
                    accepted.and_then(|(s, _)| has_spoken(s))
                }
            };
            let (stream, spoke) = match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of descriptors, or a connection reset before it was accepted:
                    // pause rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let spoke = Arc::new(AtomicBool::new(spoke));
            let task = tokio::spawn(serve_connection(
                stream,
                Arc::clone(&expected),
                found.clone(),
                Arc::clone(&spoke),
            ));
            live.push(Live {
                accepted: tokio::time::Instant::now(),
                spoke,
                task,
            });
        }
    })
}

/// What the redirect listener makes of one request.
enum Request {
    /// This sign-in's redirect: its path and query.
    Redirect(String),
    /// The callback path with another sign-in's `state`, or none.
    WrongState,
    /// Any other path (a favicon).
    Other,
}

impl Request {
    fn classify(uri: &hyper::Uri, expected: &Secret) -> Request {
        if uri.path() != CALLBACK_PATH {
            return Request::Other;
        }
        let state = uri.query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "state")
                .map(|(_, v)| Secret::new(v.into_owned()))
        });
        match (state, uri.path_and_query()) {
            (Some(state), Some(target)) if state == *expected => {
                Request::Redirect(target.as_str().to_owned())
            }
            _ => Request::WrongState,
        }
    }
}

/// Serves one connection (one request: no keep-alive) within [`CONNECTION_TIMEOUT`],
/// setting `spoke` once it has sent something; once this sign-in's redirect has been
/// answered, hands its target to `found`.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    expected: Arc<Secret>,
    found: tokio::sync::mpsc::Sender<String>,
    spoke: Arc<AtomicBool>,
) {
    let target: Arc<parking_lot::Mutex<Option<String>>> = Arc::default();
    let seen = Arc::clone(&target);
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let answer = Request::classify(req.uri(), &expected);
        let seen = Arc::clone(&seen);
        async move {
            let page = |status: u16, body: &'static str| {
                hyper::Response::builder()
                    .status(status)
                    .header("content-type", "text/html; charset=utf-8")
                    .header("cache-control", "no-store")
                    .header("connection", "close")
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                        body.as_bytes(),
                    )))
            };
            let reply = match answer {
                Request::Redirect(t) => {
                    *seen.lock() = Some(t);
                    page(200, DONE_PAGE)
                }
                Request::WrongState => {
                    log::warn!(
                        "a request to the redirect listener did not carry this sign-in's state: \
                         answered 400, still waiting for the sign-in"
                    );
                    page(400, WRONG_STATE_PAGE)
                }
                Request::Other => page(404, ""),
            };
            Ok::<_, Infallible>(reply.unwrap_or_default())
        }
    });
    let served = async {
        // Once it sends something, it is no longer the first to be closed for a newer
        // connection (a connection that ended has nothing to serve).
        if !spoke.load(Ordering::Relaxed) {
            let mut byte = [0u8; 1];
            match stream.peek(&mut byte).await {
                Ok(n) if n > 0 => spoke.store(true, Ordering::Relaxed),
                _ => return,
            }
        }
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(CONNECTION_TIMEOUT)
            .keep_alive(false)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let _ = connection.await;
    };
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, served).await;
    let answered = target.lock().take();
    if let Some(target) = answered {
        let _ = found.try_send(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files directly in `dir` whose names start with `prefix`.
    fn named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .collect()
    }

    /// A copy across file systems whose last step (the rename into place) fails leaves
    /// no staging directory with copies of the sessions behind, and the old directory
    /// as it was.
    #[test]
    fn a_failed_copy_leaves_no_staging_directory() {
        let root = tempfile::tempdir().unwrap();
        let old = root.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join("session.json"), b"{\"refresh_token\":\"rt\"}").unwrap();
        // Something else took the new place meanwhile: the rename cannot replace it.
        let new = root.path().join("new");
        std::fs::create_dir(&new).unwrap();
        std::fs::write(new.join("theirs"), b"").unwrap();
        let outcome = copy_dir(&old, &new);
        assert!(
            matches!(outcome, Err(MoveError::NotMoved(_))),
            "{outcome:?}"
        );
        assert_eq!(
            named(root.path(), ".authcore-migrate-"),
            Vec::<PathBuf>::new()
        );
        assert!(
            old.join("session.json").is_file(),
            "the old directory stays"
        );
        assert!(!new.join("session.json").exists());
    }

    /// A copy that succeeds removes the old directory and disarms nothing it should not:
    /// the new directory stays.
    #[test]
    fn a_copy_moves_the_files_and_removes_the_old_directory() {
        let root = tempfile::tempdir().unwrap();
        let old = root.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join("session.json"), b"{}").unwrap();
        let new = root.path().join("new");
        copy_dir(&old, &new).unwrap();
        assert!(!old.exists());
        assert_eq!(std::fs::read(new.join("session.json")).unwrap(), b"{}");
        assert_eq!(
            named(root.path(), ".authcore-migrate-"),
            Vec::<PathBuf>::new()
        );
    }
}
