//! Fuzz targets for every parser of outside input, run as unit tests (they reach the
//! crate's private parsers) on stable Rust, with proptest.
//!
//! Each target feeds its parser the seeds of its corpus (`core/fuzz/corpus/<target>/`,
//! real answers of the development provider, oidc-provider and the vendors' pages) and
//! then inputs made from them: a few mutations of a seed (bytes flipped, inserted,
//! deleted, duplicated, spliced from another seed; dictionary words; a JSON value
//! replaced, a key added or removed) or bytes from nothing. Each input must be parsed
//! without a panic, within [`CASE_BUDGET`] (an input still running after [`HANG_LIMIT`]
//! ends the test process, with the input printed: a hang), and no error text
//! (`Display` or `Debug`) may hold a planted secret ([`TOKEN_MARKER`], [`REQUEST_SECRETS`]). A failure shrinks
//! to its fewest mutations and is kept in `core/fuzz/regressions/<target>.txt`, which
//! every later run replays first.
//!
//! `AUTHCORE_FUZZ_CASES` sets the number of generated inputs per target (default
//! [`CI_CASES`]); see `core/FUZZING.md` for long runs by hand.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use serde_json::Value;

use crate::error::Error;

mod targets;

/// Generated inputs per target in a plain `cargo test`.
pub(crate) const CI_CASES: u32 = 2_000;
/// The most one input may take: a hang or a blow-up, not a speed test (debug builds,
/// under a loaded machine or valgrind, are far slower than this needs).
pub(crate) const CASE_BUDGET: Duration = Duration::from_secs(5);
/// How long one input may run before the watchdog ends the test process: a hang,
/// which [`CASE_BUDGET`] (measured after the check returns) would never see.
const HANG_LIMIT: Duration = Duration::from_secs(60);
/// Inputs are cut to this size after mutation.
const MAX_INPUT: usize = 64 * 1024;

/// A credential as a provider issues one (long, letters and digits): planted in the
/// corpus wherever a token or code goes, and in the dictionary.
pub(crate) const TOKEN_MARKER: &str = "mArKeR7q2x9Z4b8W1k5N3v6J";
/// Credentials a request carries, of every shape (short, punctuated, letters only):
/// what a provider may echo back, removed by value.
pub(crate) const REQUEST_SECRETS: &[&str] = &[
    "cs-Sh0rt!",
    "rt-planted",
    "dc-planted",
    "cv-planted~x",
    "code-planted",
    "ca-planted.jwt",
    "st-planted",
    "at-planted",
];

/// Words mutations insert: JSON and HTTP syntax, numbers at the edges, the secrets.
const DICTIONARY: &[&str] = &[
    "\"",
    "\\",
    ",",
    ":",
    "=",
    "&",
    "?",
    "#",
    "%",
    "%00",
    "%zz",
    "{",
    "}",
    "[",
    "]",
    "null",
    "true",
    "false",
    "-1",
    "0",
    "1e999",
    "-1e999",
    "1.5e308",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "9999999999999999999999",
    "NaN",
    "\"\"",
    "\\u0000",
    "\\ud800",
    "\r\n",
    "\t",
    " ",
    "\u{0}",
    "\u{7f}",
    "é",
    "\u{feff}",
    "Bearer ",
    "Basic ",
    "DPoP ",
    "error=",
    "error_description=",
    "insufficient_scope",
    "invalid_token",
    "access_token",
    "refresh_token",
    "id_token",
    "expires_in",
    "token_type",
    "refresh_tokens",
    "accessTokens",
    "tokens",
    "api_keys",
    "client_secret_token_type",
    "exp",
    "sub",
    "issuer",
    "iss",
    "state",
    "code",
    "device_code",
    "interval",
    "version",
    "revoked",
    "lineage",
    "record",
    "eyJhbGciOiJub25lIn0",
    ".",
    "==",
    "http://",
    "https://",
    "http://127.0.0.1:1/",
    "https://[::1]/",
    "mArKeR7q2x9Z4b8W1k5N3v6J",
    "\"mArKeR7q2x9Z4b8W1k5N3v6J\"",
    "cs-Sh0rt!",
    "rt-planted",
    "dc-planted",
    "cv-planted~x",
    "code-planted",
];

/// One change to an input; positions and choices wrap around what there is.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Word(usize, usize, bool),
    Splice(usize, usize, usize, usize),
    JsonSet(usize, Value),
    JsonAdd(usize, usize, Value),
    JsonRemove(usize),
}

/// JSON values at the edges of what parsers expect.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just(u64::MAX.into()),
            Just(i64::MIN.into()),
            Just(0.into()),
            Just((-1).into()),
            Just(1.0e308.into()),
            Just((-1.0e308).into()),
            Just(5e-324.into()),
        ],
        "[ -~]{0,24}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        prop::sample::select(DICTIONARY).prop_map(Value::from),
        Just(Value::from(TOKEN_MARKER)),
        Just(Value::from(format!("Bearer {TOKEN_MARKER}"))),
        (1usize..20_000).prop_map(|n| Value::from("A".repeat(n))),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(DICTIONARY), inner), 0..4).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<usize>(), 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::SetByte(p, b)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Delete(p, n)),
        1 => (any::<usize>(), 1usize..256).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
        3 => (any::<usize>(), any::<usize>(), any::<bool>())
            .prop_map(|(p, w, r)| Mutation::Word(p, w, r)),
        1 => (any::<usize>(), any::<usize>(), 1usize..128, any::<usize>())
            .prop_map(|(s, f, n, at)| Mutation::Splice(s, f, n, at)),
        3 => (any::<usize>(), json_value()).prop_map(|(n, v)| Mutation::JsonSet(n, v)),
        2 => (any::<usize>(), any::<usize>(), json_value())
            .prop_map(|(n, k, v)| Mutation::JsonAdd(n, k, v)),
        1 => (any::<usize>()).prop_map(Mutation::JsonRemove),
    ]
}

/// The `n`th node (wrapping) of a JSON document, depth first.
fn nth_node(value: &mut Value, n: usize) -> &mut Value {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn walk(v: &mut Value, mut n: usize) -> &mut Value {
        if n == 0 {
            return v;
        }
        n -= 1;
        let children: Vec<&mut Value> = match v {
            Value::Array(a) => a.iter_mut().collect(),
            Value::Object(o) => o.values_mut().collect(),
            _ => unreachable!("n is within the count"),
        };
        for child in children {
            let size = count(child);
            if n < size {
                return walk(child, n);
            }
            n -= size;
        }
        unreachable!("n is within the count")
    }
    let total = count(value);
    walk(value, n % total)
}

fn apply(seed: &[u8], seeds: &[Vec<u8>], mutations: &[Mutation]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for m in mutations {
        let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
        match m {
            Mutation::FlipBit(p, b) if !data.is_empty() => {
                let i = p % data.len();
                data[i] ^= 1 << b;
            }
            Mutation::SetByte(p, b) if !data.is_empty() => {
                let i = p % data.len();
                data[i] = *b;
            }
            Mutation::Insert(p, bytes) => {
                let i = at(*p, data.len());
                data.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(p, n) if !data.is_empty() => {
                let i = p % data.len();
                let end = (i + n).min(data.len());
                data.drain(i..end);
            }
            Mutation::Duplicate(p, n) if !data.is_empty() => {
                let i = p % data.len();
                let end = (i + n).min(data.len());
                let copy = data[i..end].to_vec();
                data.splice(end..end, copy);
            }
            Mutation::Word(p, w, replace) => {
                let word = DICTIONARY[w % DICTIONARY.len()].as_bytes();
                let i = at(*p, data.len());
                let end = if *replace {
                    (i + word.len()).min(data.len())
                } else {
                    i
                };
                data.splice(i..end, word.iter().copied());
            }
            Mutation::Splice(s, from, n, p) => {
                let other = &seeds[s % seeds.len()];
                if !other.is_empty() {
                    let f = from % other.len();
                    let end = (f + n).min(other.len());
                    let i = at(*p, data.len());
                    data.splice(i..i, other[f..end].iter().copied());
                }
            }
            Mutation::JsonSet(n, v) => {
                if let Ok(mut doc) = serde_json::from_slice::<Value>(&data) {
                    *nth_node(&mut doc, *n) = v.clone();
                    data = serde_json::to_vec(&doc).unwrap_or(data);
                }
            }
            Mutation::JsonAdd(n, k, v) => {
                if let Ok(mut doc) = serde_json::from_slice::<Value>(&data) {
                    if let Value::Object(o) = nth_node(&mut doc, *n) {
                        o.insert(DICTIONARY[k % DICTIONARY.len()].to_owned(), v.clone());
                    } else if let Value::Object(o) = &mut doc {
                        o.insert(DICTIONARY[k % DICTIONARY.len()].to_owned(), v.clone());
                    }
                    data = serde_json::to_vec(&doc).unwrap_or(data);
                }
            }
            Mutation::JsonRemove(n) => {
                if let Ok(mut doc) = serde_json::from_slice::<Value>(&data) {
                    if let Value::Object(o) = &mut doc {
                        if !o.is_empty() {
                            let key = o.keys().nth(n % o.len()).cloned().unwrap_or_default();
                            o.remove(&key);
                        }
                    }
                    data = serde_json::to_vec(&doc).unwrap_or(data);
                }
            }
            _ => {}
        }
        data.truncate(MAX_INPUT);
    }
    data
}

/// The seeds of `target`'s corpus, in file name order.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    paths.sort();
    let seeds: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).expect("a corpus file"))
        .collect();
    assert!(!seeds.is_empty(), "corpus {} is empty", dir.display());
    seeds
}

/// Runs `check` on every seed of `target`, then on generated inputs; `check` panics or
/// returns an error on a finding.
pub(crate) fn run(target: &str, check: impl Fn(&[u8]) -> Result<(), String>) {
    let seeds = corpus(target);
    let watchdog = Watchdog::start(target);
    for (i, seed) in seeds.iter().enumerate() {
        let _case = watchdog.case(seed);
        if let Err(e) = check(seed) {
            panic!("{target}: seed {i}: {e}");
        }
    }
    let cases = std::env::var("AUTHCORE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CI_CASES);
    let regressions = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(format!("{target}.txt"));
    let config = Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(Box::leak(
            regressions.to_string_lossy().into_owned().into_boxed_str(),
        )))),
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let inputs = prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512),
        1 => "[ -~]{0,256}".prop_map(String::into_bytes),
        8 => (any::<usize>(), prop::collection::vec(mutation(), 1..6)).prop_map({
            let seeds = seeds.clone();
            move |(s, ms)| apply(&seeds[s % seeds.len()], &seeds, &ms)
        }),
    ];
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&inputs, |input| {
        let started = Instant::now();
        let _case = watchdog.case(&input);
        check(&input).map_err(TestCaseError::fail)?;
        let took = started.elapsed();
        prop_assert!(took < CASE_BUDGET, "one input took {took:?}");
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{target}: {e}");
    }
}

/// What the watchdog sees: the input running (when it started, its first bytes), and
/// whether the run is over.
#[derive(Default)]
struct Watched {
    running: Option<(Instant, Vec<u8>)>,
    over: bool,
}

/// A thread that ends the test process when one input runs past [`HANG_LIMIT`]: a
/// hung check cannot be stopped from outside, and a test that waits for it never
/// fails. Stopped (and joined) when dropped.
struct Watchdog {
    watched: std::sync::Arc<(std::sync::Mutex<Watched>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The input of [`Watchdog::case`], until dropped.
struct Case<'a>(&'a Watchdog);

impl Watchdog {
    fn start(target: &str) -> Watchdog {
        let watched = std::sync::Arc::new((
            std::sync::Mutex::new(Watched::default()),
            std::sync::Condvar::new(),
        ));
        let thread = std::thread::spawn({
            let watched = std::sync::Arc::clone(&watched);
            let target = target.to_owned();
            move || {
                let (lock, wake) = &*watched;
                let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
                // Ends when the run does; each turn waits at most a second.
                while !state.over {
                    if let Some((started, input)) = &state.running {
                        if started.elapsed() > HANG_LIMIT {
                            // Straight to stderr: the test harness's capture of
                            // eprintln! would be lost with the process.
                            let said = format!(
                                "{target}: one input has run for over {HANG_LIMIT:?} (a hang); \
                                 its first bytes: {:?}\n",
                                String::from_utf8_lossy(input)
                            );
                            let _ =
                                std::io::Write::write_all(&mut std::io::stderr(), said.as_bytes());
                            std::process::abort();
                        }
                    }
                    state = wake
                        .wait_timeout(state, Duration::from_secs(1))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        });
        Watchdog {
            watched,
            thread: Some(thread),
        }
    }

    /// Watches `input` until the returned guard is dropped.
    fn case(&self, input: &[u8]) -> Case<'_> {
        let mut state = self.watched.0.lock().unwrap_or_else(|e| e.into_inner());
        state.running = Some((Instant::now(), input[..input.len().min(512)].to_vec()));
        Case(self)
    }
}

impl Drop for Case<'_> {
    fn drop(&mut self) {
        let mut state = self.0.watched.0.lock().unwrap_or_else(|e| e.into_inner());
        state.running = None;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, wake) = &*self.watched;
        lock.lock().unwrap_or_else(|e| e.into_inner()).over = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Every planted secret: for parsers of answers to a request that carried
/// [`REQUEST_SECRETS`].
pub(crate) fn all_secrets() -> Vec<&'static str> {
    std::iter::once(TOKEN_MARKER)
        .chain(REQUEST_SECRETS.iter().copied())
        .collect()
}

/// An error's `Display` and `Debug` with none of `secrets` in them.
pub(crate) fn no_secret_in(error: &Error, secrets: &[&str]) -> Result<(), String> {
    let texts = [error.to_string(), format!("{error:?}")];
    for &secret in secrets {
        if let Some(text) = texts.iter().find(|t| t.contains(secret)) {
            return Err(format!("the secret {secret:?} is in an error: {text}"));
        }
    }
    Ok(())
}
