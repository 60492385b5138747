//! The shared-store tier: clients that share a store share one token and one rotating
//! refresh token. (Real processes share a `FileStore` in `cli/tests/stores.rs`.)

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authcore::grant::{ApiKey, ClientCredentials};
use authcore::{Client, ErrorKind, FileStore, StoredToken, TokenStore};
use common::{counting_endpoint, err, opts};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "authcore-store-{name}-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn clients_sharing_a_file_store_share_one_token() {
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#,
    );
    let dir = temp_dir("cc");
    let store = Arc::new(FileStore::new(&dir).unwrap());
    let client = |scopes: &[&str]| {
        Client::new(
            ClientCredentials::new(format!("{}/token", server.url()), "id", "secret")
                .scopes(scopes.iter().copied()),
            opts().store(store.clone()),
        )
        .unwrap()
    };
    let (a, b) = (client(&["x", "y"]), client(&["y", "x"]));
    assert_eq!(
        a.token().unwrap().access_token().expose_secret(),
        "at-one-1a2b3c4d5e"
    );
    assert_eq!(
        b.token().unwrap().access_token().expose_secret(),
        "at-one-1a2b3c4d5e"
    );
    assert_eq!(
        count.load(SeqCst),
        1,
        "the second client adopted the stored token"
    );
    // Another scope is another credential.
    client(&["z"]).token().unwrap();
    assert_eq!(count.load(SeqCst), 2);
    // What is on disk: one token file per credential, mode 0600, no secret in its name.
    use std::os::unix::fs::PermissionsExt;
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 2);
    for f in &files {
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_rotated_refresh_token_is_shared_and_never_reused() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/auth/api-key")
        .with_body(r#"{"access_token":"at-one-1a2b3c4d5e","refresh_token":"rt-first-5c4b3a29","expires_in":1}"#)
        .expect(1)
        .create();
    let refresh = server
        .mock("POST", "/auth/refresh")
        .match_body(mockito::Matcher::Json(
            serde_json::json!({"refreshToken": "rt-first-5c4b3a29"}),
        ))
        .with_body(r#"{"access_token":"at-two-6f7a8b9c0d","refresh_token":"rt-second-8d7c6b5a","expires_in":3600}"#)
        .expect(1)
        .create();
    let dir = temp_dir("rotate");
    let store = Arc::new(FileStore::new(&dir).unwrap());
    let client = || {
        Client::new(
            ApiKey::with_base_url(server.url(), "sk_live_apikey_0123456789"),
            opts().store(store.clone()),
        )
        .unwrap()
    };
    let (a, b) = (client(), client());
    a.token().unwrap();
    b.token().unwrap();
    std::thread::sleep(Duration::from_millis(900));
    // Both need a renewal now; the first refreshes, the second adopts its result.
    assert_eq!(
        a.token().unwrap().access_token().expose_secret(),
        "at-two-6f7a8b9c0d"
    );
    assert_eq!(
        b.token().unwrap().access_token().expose_secret(),
        "at-two-6f7a8b9c0d"
    );
    refresh.assert();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_held_store_lock_bounds_the_wait_by_the_deadline() {
    let mut server = mockito::Server::new();
    counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-1","expires_in":3600}"#,
    );
    let dir = temp_dir("lock");
    let store = Arc::new(FileStore::new(&dir).unwrap());
    let client = Client::new(
        ClientCredentials::new(format!("{}/token", server.url()), "id", "secret"),
        opts()
            .store(store.clone())
            .timeout(Duration::from_millis(500)),
    )
    .unwrap();
    // Another holder of every lock file in the directory: take the client's own.
    let other = FileStore::new(&dir).unwrap();
    let probe = Client::new(
        ClientCredentials::new(format!("{}/token", server.url()), "id", "secret"),
        opts().store(Arc::new(other.clone())),
    )
    .unwrap();
    probe.token().unwrap();
    let lock_file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "lock"))
        .unwrap();
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock_file)
        .unwrap();
    held.lock().unwrap();
    // The stored token is fresh, but a renewal-free read never needs the lock: force one.
    std::fs::remove_file(lock_file.with_extension("json")).unwrap();
    let start = Instant::now();
    let e = err(client.token());
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    held.unlock().unwrap();
    client.token().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_file_reads_as_empty_and_an_unusable_directory_is_a_config_error() {
    let dir = temp_dir("corrupt");
    let store = FileStore::new(&dir).unwrap();
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-1","expires_in":3600}"#,
    );
    let client = Client::new(
        ClientCredentials::new(format!("{}/token", server.url()), "id", "secret"),
        opts().store(Arc::new(store.clone())),
    )
    .unwrap();
    client.token().unwrap();
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, &text[..text.len() / 2]).unwrap();
    let again = Client::new(
        ClientCredentials::new(format!("{}/token", server.url()), "id", "secret"),
        opts().store(Arc::new(store)),
    )
    .unwrap();
    again.token().unwrap();
    assert_eq!(
        count.load(SeqCst),
        2,
        "a truncated file is empty, not a crash"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        StoredToken::from_json(text.as_bytes()).is_some(),
        "rewritten whole"
    );

    let not_a_dir = dir.join("a-file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let e = FileStore::new(not_a_dir.join("sub")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A directory another user could plant a token in, or read one from, is refused with
/// a Config error that names it and says what is wrong; the one authcore makes is 0700.
#[test]
fn a_directory_other_users_could_write_or_own_is_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = temp_dir("private");
    FileStore::new(&dir).unwrap();
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    for (mode, what) in [
        (0o777, "world-writable"),
        (0o1777, "world-writable"),
        (0o775, "group-writable"),
        (0o772, "group- and world-writable"),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = FileStore::new(&dir).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let text = e.to_string();
        assert!(
            text.contains(&dir.display().to_string()) && text.contains(what),
            "{mode:o}: {text}"
        );
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    FileStore::new(&dir).expect("readable by others is not writable by them");
    // Owned by another user: as root, a directory given away; else one root owns.
    let theirs = if meta.uid() == 0 {
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        dir.clone()
    } else if std::fs::metadata("/").unwrap().uid() != meta.uid() {
        std::path::PathBuf::from("/")
    } else {
        eprintln!("skipped the other-user case: not root, and / is this user's");
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    };
    let e = FileStore::new(&theirs).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("owned by another user"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_store_trait_can_be_implemented_outside_the_crate() {
    // A user's own store: the MemoryStore's behaviour through the public trait.
    let store = authcore::MemoryStore::new();
    let deadline = Instant::now() + Duration::from_millis(100);
    let key = authcore::StoreKey::custom("k");
    let lock = store.lock(&key, deadline).unwrap();
    assert_eq!(
        store
            .lock(&key, Instant::now() + Duration::from_millis(50))
            .unwrap_err()
            .kind(),
        ErrorKind::Timeout
    );
    drop(lock);
    let lock = store.lock(&key, deadline).unwrap();
    assert!(store.load(&lock, &key).unwrap().is_none());
    // A save or removal under a lock that is not the holder's is refused.
    let stranger = authcore::StoreLock::none();
    let token = StoredToken::from_json(
        br#"{"version":2,"access_token":"a","token_type":"Bearer","refresh_token":null,"scope":null,"issued_at_unix_ms":0,"lifetime_ms":null}"#,
    )
    .unwrap();
    assert_eq!(
        store.save(&stranger, &key, &token).unwrap_err().kind(),
        ErrorKind::Store
    );
    assert_eq!(
        store.remove(&stranger, &key).unwrap_err().kind(),
        ErrorKind::Store
    );
    store.save(&lock, &key, &token).unwrap();
    assert!(store.load(&lock, &key).unwrap().is_some());
}

/// The store directory is checked once, by the path it follows: a symlink that another
/// user owns (here in a world-writable, sticky directory such as /tmp), pointing at a
/// private directory of this user, is accepted — and its owner can point it elsewhere
/// afterwards, at a directory of theirs with a planted token, which this store then
/// adopts. OpenSSH's StrictModes looks at the path's components (and `lstat`s them),
/// not only at what the path ends in. Runs as root only (it needs a file of another
/// user).
#[test]
fn a_store_path_another_user_controls_is_refused() {
    use authcore::{StoreKey, Token};
    use std::os::unix::fs::PermissionsExt;
    if rustix_euid() != 0 {
        eprintln!("skipped: needs root to make a symlink of another user");
        return;
    }
    let shared = temp_dir("sticky");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mine = shared.join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Another user's symlink, the path this user is told to use.
    let link = shared.join("store");
    std::os::unix::fs::symlink(&mine, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    let store = FileStore::new(&link);
    // What the link's owner can do after the check: plant a session of theirs.
    let key = StoreKey::custom("planted");
    let theirs = shared.join("theirs");
    {
        let planter = FileStore::new(&theirs).unwrap();
        let lock = planter
            .lock(&key, Instant::now() + Duration::from_secs(5))
            .unwrap();
        let token = Token::new(
            "at-planted-by-another-user".to_owned(),
            None,
            Some(Duration::from_secs(600)),
            Instant::now(),
        );
        planter
            .save(&lock, &key, &StoredToken::from_token(&token, None))
            .unwrap();
    }
    // Theirs: the directory and everything in it.
    for entry in std::fs::read_dir(&theirs).unwrap() {
        std::os::unix::fs::lchown(entry.unwrap().path(), Some(65534), Some(65534)).unwrap();
    }
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let adopted = store.as_ref().ok().and_then(|store| {
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&theirs, &link).unwrap();
        let lock = store
            .lock(&key, Instant::now() + Duration::from_secs(5))
            .unwrap();
        store.load(&lock, &key).unwrap()
    });
    std::fs::remove_dir_all(&shared).unwrap();
    assert!(
        store.is_err(),
        "a store path another user's symlink controls was accepted, and a token they \
         planted was adopted: {:?}",
        adopted.map(|r| r.access_token.expose_secret().to_owned())
    );
}

fn rustix_euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file this process just made is its effective user.
    let probe = temp_dir("euid");
    std::fs::create_dir(&probe).unwrap();
    let uid = std::fs::metadata(&probe).unwrap().uid();
    std::fs::remove_dir_all(&probe).unwrap();
    uid
}

/// A parent directory another user could rename the store away in, and put a
/// directory of theirs in its place, is refused: one group- or world-writable without
/// the sticky bit, or (as root) one owned by another user. A sticky one (as /tmp) is
/// fine, as every other test here shows.
#[test]
fn a_parent_directory_another_user_could_replace_the_store_in_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let parent = temp_dir("parent");
    let dir = parent.join("tokens");
    FileStore::new(&dir).expect("a private directory in a private one");
    for (mode, what) in [
        (0o777, "world-writable without the sticky bit"),
        (0o770, "group-writable without the sticky bit"),
    ] {
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = FileStore::new(&dir).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let text = e.to_string();
        assert!(
            text.contains(&dir.display().to_string())
                && text.contains(&format!("parent directory {}", parent.display()))
                && text.contains(what),
            "{mode:o}: {text}"
        );
    }
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o1777)).unwrap();
    FileStore::new(&dir).expect("a sticky parent: only the store's owner can rename it");
    if rustix_euid() == 0 {
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&parent, Some(65534), Some(65534)).unwrap();
        let e = FileStore::new(&dir).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("is owned by another user"), "{e}");
    }
    std::fs::remove_dir_all(&parent).unwrap();
}

/// A symlink of this user's own is followed once, when the store is made: the store
/// keeps the directory it led to, and repointing the link later changes nothing.
/// A symlink planted in place of a record file is not followed.
#[test]
fn the_store_path_is_resolved_once_and_links_in_it_are_not_followed() {
    use authcore::{StoreKey, Token};
    let base = temp_dir("resolved");
    let real = base.join("real");
    let other = base.join("other");
    let link = base.join("link");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let store = FileStore::new(&link).unwrap();
    assert_eq!(store.dir(), std::fs::canonicalize(&real).unwrap());
    let key = StoreKey::custom("resolved");
    let token = |at: &str| {
        StoredToken::from_token(
            &Token::new(
                at.to_owned(),
                None,
                Some(Duration::from_secs(600)),
                Instant::now(),
            ),
            None,
        )
    };
    let deadline = || Instant::now() + Duration::from_secs(5);
    {
        let lock = store.lock(&key, deadline()).unwrap();
        store.save(&lock, &key, &token("at-mine")).unwrap();
    }
    // Repointed at another directory (with a record of the same name): not looked at.
    let elsewhere = FileStore::new(&other).unwrap();
    {
        let lock = elsewhere.lock(&key, deadline()).unwrap();
        elsewhere.save(&lock, &key, &token("at-elsewhere")).unwrap();
    }
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&other, &link).unwrap();
    let lock = store.lock(&key, deadline()).unwrap();
    let loaded = store.load(&lock, &key).unwrap().expect("its own record");
    assert_eq!(loaded.access_token.expose_secret(), "at-mine");
    // A record file replaced by a symlink (to the other store's record) is refused.
    let record = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "json"))
            .expect("a record file")
    };
    let mine = record(&real);
    std::fs::remove_file(&mine).unwrap();
    std::os::unix::fs::symlink(record(&other), &mine).unwrap();
    let e = store.load(&lock, &key).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Store, "{e}");
    drop(lock);
    std::fs::remove_dir_all(&base).unwrap();
}
