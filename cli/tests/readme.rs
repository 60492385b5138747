//! What the README says, held to what the code does: its event table names every event
//! the core raises, its table of the development provider's control surface names every
//! `/_control` route the provider serves, every fenced block of the READMEs is of a kind
//! that is run or known not to need it, and every shell block of the sections that show
//! the command line runs as written against a development provider set up as its section
//! describes (the block's [`World`]).
//!
//! A block runs as one `set -euo pipefail` bash script, in a HOME of its own that is also
//! its working directory, in a process group of its own: its output is read while it
//! runs, every wait is bounded, and the whole group is killed when it ends or overruns,
//! so that nothing it started in the background outlives it.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use authcore_cli::devserver::{
    tag, Behaviour, Credentials, DevServer, Event, MtlsClient, ResourceOutcome,
};
use serde_json::Value;

/// How long one block of the README may take before the test fails (a bound on
/// waiting, never a judgement on speed).
const BOUND: Duration = Duration::from_secs(120);

/// How long the end of a block may take: its killed processes to go, its output to
/// close.
const END_BOUND: Duration = Duration::from_secs(10);

/// How many requests the API answers an endless block (a loop) before the test stops it.
const ENDLESS_REQUESTS: u64 = 3;

/// The sections whose shell blocks run (with their subsections).
const RUN_SECTIONS: &[&str] = &[
    "## Quick start",
    "## Command line",
    "## C",
    "### DPoP on the command line",
    "## Workloads without secrets",
    "## Many processes and many hosts",
];

/// The kinds of fenced block the READMEs may have (the info string's first word), and
/// what becomes of each. Any other kind, an empty info string included (rustdoc would
/// compile it as Rust), fails: a new kind of block cannot escape unseen.
const KINDS: &[(&str, &str)] = &[
    ("sh", "run by this test in the sections of RUN_SECTIONS"),
    ("bash", "run by this test in the sections of RUN_SECTIONS"),
    ("shell", "run by this test in the sections of RUN_SECTIONS"),
    (
        "console",
        "its `$ ` lines run by this test in the sections of RUN_SECTIONS",
    ),
    ("python", "run by python/tests/test_readme.py"),
    (
        "rust",
        "compiled by rustdoc (core/src/lib.rs includes the README)",
    ),
    ("rust,no_run", "compiled by rustdoc"),
    (
        "c",
        "the first two compiled and run by tests/c/run.sh; fragments read",
    ),
    ("toml", "a manifest fragment, read"),
    ("text", "read, never run"),
];

/// The shell kinds of [`KINDS`].
const SHELL_KINDS: &[&str] = &["sh", "bash", "shell", "console"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

// ---------------------------------------------------------------------------------------
// Markdown: fences, headings, sections.

/// An opening code fence (CommonMark: three or more backticks or tildes; indented, as in
/// a list item, too): its indentation, its character and length, and its info string.
fn opening_fence(line: &str) -> Option<(usize, char, usize, &str)> {
    let trimmed = line.trim_start_matches([' ', '\t']);
    let indent = line.len() - trimmed.len();
    let c = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = trimmed.chars().take_while(|x| *x == c).count();
    let info = trimmed[len..].trim();
    // Backticks in the info string make it inline code, not a fence.
    (len >= 3 && !(c == '`' && info.contains('`'))).then_some((indent, c, len, info))
}

/// Whether `line` closes a fence of `len` `c`s: as many or more, nothing else.
fn closing_fence(line: &str, c: char, len: usize) -> bool {
    let t = line.trim();
    t.len() >= len && t.chars().all(|x| x == c)
}

/// The level of an ATX heading (`## Title`: 2).
fn heading_level(line: &str) -> Option<usize> {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    ((1..=6).contains(&hashes) && line[hashes..].starts_with(' ')).then_some(hashes)
}

/// A fenced code block of a Markdown text.
#[derive(Debug, Clone)]
struct Fenced {
    /// The line of its opening fence (from 1).
    line: usize,
    /// Its kind: the info string's first word (`sh`, `rust,no_run`; empty if none).
    kind: String,
    /// What the `<!-- readme-test: … -->` comment on the last non-blank line before it
    /// says, if there is one.
    marker: Option<String>,
    /// The headings it is under, outermost first.
    headings: Vec<String>,
    /// Its lines, the fence's indentation removed.
    body: Vec<String>,
}

/// A Markdown text read line by line: its prose lines (with their numbers, from 1) and
/// its fenced blocks. A fence left open is an error.
struct Markdown<'a> {
    prose: Vec<(usize, &'a str)>,
    blocks: Vec<Fenced>,
}

fn markdown(text: &str) -> Result<Markdown<'_>, String> {
    let mut prose = Vec::new();
    let mut blocks = Vec::new();
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut previous = "";
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        if let Some((indent, c, len, info)) = opening_fence(line) {
            let marker = previous
                .trim()
                .strip_prefix("<!-- readme-test: ")
                .and_then(|m| m.strip_suffix(" -->"))
                .map(str::to_owned);
            let mut body = Vec::new();
            let mut closed = false;
            for (_, inner) in lines.by_ref() {
                if closing_fence(inner, c, len) {
                    closed = true;
                    previous = inner;
                    break;
                }
                let strip = inner.len() - inner.trim_start_matches(' ').len();
                body.push(inner[strip.min(indent)..].to_owned());
            }
            if !closed {
                return Err(format!("the fence on line {} is never closed", i + 1));
            }
            blocks.push(Fenced {
                line: i + 1,
                kind: info.split_whitespace().next().unwrap_or("").to_owned(),
                marker,
                headings: headings.iter().map(|(_, h)| h.clone()).collect(),
                body,
            });
            continue;
        }
        if let Some(level) = heading_level(line) {
            headings.retain(|(l, _)| *l < level);
            headings.push((level, line.trim_end().to_owned()));
        }
        prose.push((i + 1, line));
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    Ok(Markdown { prose, blocks })
}

/// The README's text from the heading `heading` to the next heading of its level or
/// above (a `#` line inside a code block, a shell comment, is no heading).
fn section(readme: &str, heading: &str) -> String {
    let doc = markdown(readme).unwrap();
    let level = heading_level(heading).unwrap();
    let start = doc
        .prose
        .iter()
        .position(|(_, l)| l.trim_end() == heading)
        .unwrap_or_else(|| panic!("the README has no {heading:?}"));
    let first = doc.prose[start].0;
    let last = doc.prose[start + 1..]
        .iter()
        .find(|(_, l)| heading_level(l).is_some_and(|h| h <= level))
        .map_or(usize::MAX, |(n, _)| *n);
    readme
        .lines()
        .enumerate()
        .filter(|(i, _)| *i + 1 > first && *i + 1 < last)
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------
// The README's tables.

/// Every `.rs` file under `dir`, comment lines left out.
fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            out.push((path, code.join("\n")));
        }
    }
}

/// The names of the events the core raises: `event!(level, "name", …)` and
/// `log::log!(…, event = "name", …)`.
fn core_events() -> BTreeSet<String> {
    let mut files = Vec::new();
    sources(&root().join("core/src"), &mut files);
    let mut names = BTreeSet::new();
    for (_, code) in &files {
        for (at, _) in code.match_indices("event!(") {
            let args = &code[at + "event!(".len()..];
            let (_, after_level) = args.split_once(',').unwrap();
            let after_level = after_level.trim_start();
            if let Some(rest) = after_level.strip_prefix('"') {
                names.insert(rest.split('"').next().unwrap().to_owned());
            }
        }
        for (at, _) in code.match_indices("event = \"") {
            let rest = &code[at + "event = \"".len()..];
            names.insert(rest.split('"').next().unwrap().to_owned());
        }
    }
    names
}

#[test]
fn the_event_table_names_every_event_the_core_raises() {
    let events = core_events();
    assert!(
        events.len() >= 25 && events.contains("store.unlock_failed"),
        "the source was read: {events:?}"
    );
    let table: BTreeSet<String> = section(&readme(), "## Events and counters")
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|row| {
            let first_cell = row.split(" | ").next().unwrap().to_owned();
            first_cell
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|name| name.contains('.'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let undocumented: Vec<_> = events.difference(&table).collect();
    let unknown: Vec<_> = table.difference(&events).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "README event table: missing {undocumented:?}; no such event {unknown:?}"
    );
    // The crate's own documentation (core/src/events.rs, on docs.rs) has the same rows.
    let rows = |text: &str, prefix: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter(|l| l.starts_with("| `"))
            .map(str::to_owned)
            .collect()
    };
    let rustdoc = std::fs::read_to_string(root().join("core/src/events.rs")).unwrap();
    assert_eq!(
        rows(&rustdoc, "//! "),
        rows(&section(&readme(), "## Events and counters"), ""),
        "core/src/events.rs's event table differs from the README's"
    );
}

/// The control routes the provider serves: `("METHOD", "/_control/…")` in its source.
fn control_routes() -> BTreeSet<String> {
    let source = std::fs::read_to_string(root().join("cli/src/devserver.rs")).unwrap();
    source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .filter_map(|l| {
            let parts: Vec<&str> = l.split('"').collect();
            let route = parts
                .windows(4)
                .find(|w| w[0].ends_with('(') && w[2] == ", " && w[3].starts_with("/_control/"))?;
            Some(format!("{} {}", route[1], route[3]))
        })
        .collect()
}

#[test]
fn the_control_table_names_every_control_route() {
    let routes = control_routes();
    assert!(
        routes.len() >= 15 && routes.contains("POST /_control/reset"),
        "the source was read: {routes:?}"
    );
    let documented: BTreeSet<String> = section(&readme(), "### The development provider")
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|row| {
            let cell = row.split('`').nth(1)?;
            cell.contains(" /_control/").then(|| cell.to_owned())
        })
        .collect();
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&routes).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "README control table: missing {undocumented:?}; no such route {unknown:?}"
    );
}

#[test]
fn reset_returns_the_configuration_to_its_defaults_as_the_readme_says() {
    let s = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    s.set_behaviour(Behaviour {
        lifetime_secs: 77,
        ..Behaviour::default()
    })
    .unwrap();
    let token = |s: &DevServer| -> serde_json::Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        agent
            .post(format!("{}/oauth2/token", s.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .send("grant_type=client_credentials&client_id=dev-client&client_secret=dev-secret")
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    };
    assert_eq!(token(&s)["expires_in"], 77);
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    agent
        .post(format!("{}/_control/reset", s.url()))
        .send_json(serde_json::json!({}))
        .unwrap();
    assert_eq!(token(&s)["expires_in"], 3600, "the default lifetime again");
    assert!(
        readme().contains("**and returns the configuration to its defaults**"),
        "the README says so"
    );
}

// ---------------------------------------------------------------------------------------
// Fenced blocks: their kinds.

#[test]
fn every_fenced_block_of_the_readmes_is_of_a_known_kind() {
    for file in ["README.md", "python/README.md"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let doc = markdown(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(doc.blocks.len() >= 8, "{file}: {} blocks", doc.blocks.len());
        for block in &doc.blocks {
            assert!(
                KINDS.iter().any(|(kind, _)| *kind == block.kind),
                "{file}:{}: a block of kind {:?}, which no test runs or knows; the kinds: {KINDS:?}",
                block.line,
                block.kind
            );
        }
    }
}

#[test]
fn every_fence_variant_is_recognised_and_an_unknown_kind_is_refused() {
    let text = "\
## T

```sh
echo sh
```

```bash
echo bash
```

```shell
echo shell
```

```console
$ echo console \\
    continued
console
```

```text
# not a heading
```

1. In a list:

   ```sh
   echo indented
   ```

~~~sh
echo tilde
```
still in the tilde block
~~~

````sh
```
echo four
````

<!-- readme-test: skip: a reason given here -->
```sh
echo marked
```

## After
";
    let doc = markdown(text).unwrap();
    let found: Vec<(&str, Vec<&str>)> = doc
        .blocks
        .iter()
        .map(|b| (b.kind.as_str(), b.body.iter().map(String::as_str).collect()))
        .collect();
    let want: Vec<(&str, Vec<&str>)> = vec![
        ("sh", vec!["echo sh"]),
        ("bash", vec!["echo bash"]),
        ("shell", vec!["echo shell"]),
        (
            "console",
            vec!["$ echo console \\", "    continued", "console"],
        ),
        ("text", vec!["# not a heading"]),
        ("sh", vec!["echo indented"]),
        ("sh", vec!["echo tilde", "```", "still in the tilde block"]),
        ("sh", vec!["```", "echo four"]),
        ("sh", vec!["echo marked"]),
    ];
    assert_eq!(found, want);
    assert_eq!(
        commands(&doc.blocks[3]),
        ["echo console     continued"],
        "a console block's `$ ` lines, continued"
    );
    assert_eq!(
        doc.blocks[8].marker.as_deref(),
        Some("skip: a reason given here")
    );
    assert!(doc.blocks.iter().all(|b| b.headings == ["## T"]));
    let t = section(text, "## T");
    assert!(
        t.contains("echo marked") && !t.contains("## After"),
        "a `#` line in a block is no heading; the next heading ends the section: {t}"
    );
    let unknown = "```js\nalert(1)\n```\n\n```\nno kind\n```\n";
    let kinds: Vec<String> = markdown(unknown)
        .unwrap()
        .blocks
        .into_iter()
        .map(|b| b.kind)
        .collect();
    assert_eq!(kinds, ["js", ""]);
    assert!(kinds
        .iter()
        .all(|k| !KINDS.iter().any(|(known, _)| known == k)));
    assert!(
        markdown("```sh\necho never closed\n").is_err(),
        "an unclosed fence"
    );
}

/// The commands of a shell block as typed, continuation lines joined; of a `console`
/// block its `$ ` lines (the others are what they print).
fn commands(block: &Fenced) -> Vec<String> {
    let console = block.kind == "console";
    let mut out = Vec::new();
    let mut pending: Option<String> = None;
    for line in &block.body {
        let line = match (pending.is_some(), console) {
            (false, true) => match line.strip_prefix("$ ") {
                Some(command) => command,
                None => continue,
            },
            _ => line.as_str(),
        };
        let mut command = pending.take().unwrap_or_default();
        match line.strip_suffix('\\') {
            Some(part) => {
                command.push_str(part);
                pending = Some(command);
            }
            None => {
                command.push_str(line);
                out.push(command);
            }
        }
    }
    out.extend(pending);
    out
}

// ---------------------------------------------------------------------------------------
// Running a block: a process group, its output drained, every wait bounded.

/// How much of each output stream is kept for the failure message (the rest is read
/// and dropped).
const KEPT_OUTPUT: usize = 1 << 20;

/// A process's state letter (`Z`: exited, not yet reaped) and its process group, from
/// /proc.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.get(text.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// The live (not exited) processes of process group `group`.
fn group_members(group: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| matches!(proc_stat(*pid), Some((s, g)) if g == group && s != 'Z' && s != 'X'))
        .collect()
}

/// Kills every process of `group`, with kill(1): this test has no unsafe code to call
/// kill(2) with.
fn kill_group(group: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A block running as a bash script, leader of its own process group.
struct Running {
    child: Child,
    output: mpsc::Receiver<(bool, Vec<u8>)>,
    /// Whether `stop` reaped it (after which its group id may belong to another).
    stopped: bool,
}

/// A block left running by a panic (a failed assertion of the test) is killed with its
/// whole group, and its shell reaped.
impl Drop for Running {
    fn drop(&mut self) {
        if !self.stopped {
            kill_group(self.child.id());
            let _ = self.child.wait();
        }
    }
}

/// How a block ended.
struct Ran {
    /// Its exit status; `None` if it was killed at its bound.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Reads `from` to its end on a thread of its own, keeping the first [`KEPT_OUTPUT`]
/// bytes, so that a block never blocks on a full pipe.
fn drain(mut from: impl Read + Send + 'static, stderr: bool, to: mpsc::Sender<(bool, Vec<u8>)>) {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match from.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    let room = KEPT_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = to.send((stderr, kept));
    });
}

/// What a block's shell is given besides its script.
struct Setting<'a> {
    /// Its HOME, also its working directory.
    home: &'a Path,
    /// Directories put first on its PATH.
    path: Vec<PathBuf>,
    /// Its environment beyond the inherited one (from which every `AUTHCORE_`
    /// variable, proxy, trust store and XDG directory is removed).
    env: Vec<(String, String)>,
}

/// Starts `script` after `set -euo pipefail`, with bash, as a user who typed it would.
fn start(script: &str, setting: &Setting) -> Running {
    let mut path = setting.path.clone();
    path.push(
        Path::new(env!("CARGO_BIN_EXE_authcore"))
            .parent()
            .unwrap()
            .to_owned(),
    );
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let mut command = Command::new("bash");
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy().to_ascii_uppercase();
        if name.starts_with("AUTHCORE_")
            || name.ends_with("_PROXY")
            || name.starts_with("SSL_CERT_")
            || name.starts_with("XDG_")
            || ["CURL_CA_BUNDLE", "BASH_ENV", "ENV"].contains(&name.as_str())
        {
            command.env_remove(&var);
        }
    }
    command.envs(setting.env.iter().map(|(k, v)| (k, v)));
    let mut child = command
        .args(["-c", &format!("set -euo pipefail\n{script}")])
        .current_dir(setting.home)
        .env("HOME", setting.home)
        .env("PATH", std::env::join_paths(path).unwrap())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (to, output) = mpsc::channel();
    drain(child.stdout.take().unwrap(), false, to.clone());
    drain(child.stderr.take().unwrap(), true, to);
    Running {
        child,
        output,
        stopped: false,
    }
}

impl Running {
    /// Whether its shell still runs. The shell is not reaped until [`Running::stop`] has
    /// killed its group, so that the group's number cannot be another's by then.
    fn running(&self) -> bool {
        matches!(proc_stat(self.child.id()), Some((s, _)) if s != 'Z' && s != 'X')
    }

    /// Waits for the block to end, at most `bound`, then stops it.
    fn wait(self, bound: Duration) -> Ran {
        let deadline = Instant::now() + bound;
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let overran = self.running();
        self.stop(overran)
    }

    /// Kills the block's whole process group (its shell, if `overran`, and whatever it
    /// started that is still there), reaps the shell, checks that no process of the
    /// group is left, and collects the output.
    fn stop(mut self, overran: bool) -> Ran {
        let group = self.child.id();
        kill_group(group);
        let deadline = Instant::now() + END_BOUND;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.stopped = true;
                break status;
            }
            assert!(Instant::now() < deadline, "the block's shell did not die");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut left = group_members(group);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            left = group_members(group);
        }
        assert!(
            left.is_empty(),
            "processes {left:?} of the block outlived it"
        );
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let (is_err, bytes) = self
                .output
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the block's output was closed when it ended");
            *(if is_err { &mut stderr } else { &mut stdout }) = bytes;
        }
        Ran {
            status: (!overran).then_some(status),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

/// Runs `script` to its end (at most `bound`) in a HOME of its own.
fn run_plain(script: &str, bound: Duration) -> (Ran, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let setting = Setting {
        home: home.path(),
        path: Vec::new(),
        env: Vec::new(),
    };
    (start(script, &setting).wait(bound), home)
}

#[test]
fn a_failure_inside_a_pipeline_fails_the_block() {
    let (ran, _home) = run_plain("false | cat\necho after", BOUND);
    assert!(!ran.ok() && ran.status.is_some(), "{}", ran.stdout);
    assert!(!ran.stdout.contains("after"));
    let (ran, _home) = run_plain("echo $UNSET_IN_THIS_TEST", BOUND);
    assert!(!ran.ok(), "an unset variable fails the block");
    let (ran, _home) = run_plain("true | cat\necho after", BOUND);
    assert!(ran.ok() && ran.stdout == "after\n");
}

#[test]
fn output_beyond_a_pipe_buffer_is_read_while_the_block_runs() {
    // Four MiB on each stream, far beyond a pipe's 64 KiB: a block whose output is read
    // only after it ends would block on the full pipe and overrun its bound.
    let script = "head -c 4194304 /dev/zero\nhead -c 4194304 /dev/zero >&2\necho done >&2";
    let (ran, _home) = run_plain(script, Duration::from_secs(30));
    assert!(ran.ok(), "the block ended by itself");
    assert_eq!(ran.stdout.len(), KEPT_OUTPUT, "the first MiB kept");
}

#[test]
fn what_a_block_starts_in_the_background_is_stopped_with_it() {
    let (ran, home) = run_plain("sleep 300 &\necho $! > sleeper.pid", BOUND);
    assert!(ran.ok(), "{}", ran.stderr);
    let pid: u32 = std::fs::read_to_string(home.path().join("sleeper.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !matches!(proc_stat(pid), Some((s, _)) if s != 'Z' && s != 'X'),
        "the background sleep was killed"
    );
}

#[test]
fn a_block_past_its_bound_is_killed_with_its_whole_group() {
    let started = Instant::now();
    let (ran, home) = run_plain(
        "sleep 300 &\necho $! > sleeper.pid\nsleep 300",
        Duration::from_secs(1),
    );
    assert!(ran.status.is_none(), "killed at its bound");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "not waited for"
    );
    let pid: u32 = std::fs::read_to_string(home.path().join("sleeper.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!matches!(proc_stat(pid), Some((s, _)) if s != 'Z' && s != 'X'));
}

// ---------------------------------------------------------------------------------------
// Worlds: the provider a block runs against, and what the platform gives it.

/// A block's world: the development provider it runs against, set up as its section
/// describes, and what a machine where the block makes sense gives it (files in its
/// HOME, environment variables). Chosen by the innermost heading of the block that has
/// one; [`World::Plain`] otherwise. The worlds other than `Plain` serve HTTPS, as the
/// example URLs say, with a throwaway CA that the block's platform trusts (in
/// `SSL_CERT_FILE`, which authcore reads, and `CURL_CA_BUNDLE`, which curl reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum World {
    /// The provider with its defaults, over HTTP.
    Plain,
    /// "DPoP on the command line": the provider in DPoP mode, knowing the block's
    /// confidential client `ID` (its secret in the file `client-secret`) and public
    /// client `cli`.
    Dpop,
    /// "Federated client assertions and the JWT bearer grant": the provider trusts the
    /// test issuer (standing in for the cluster and the CI system) for client `my-app`:
    /// `AZURE_FEDERATED_TOKEN_FILE` names a JWT it signed, `./print-oidc-token.sh` prints
    /// a fresh one; and it trusts `svc@project`'s key, `service-account.pem`.
    Assertions,
    /// "A client certificate (mutual TLS)": the provider registers client `billing`
    /// for `tls_client_auth` with the subject of `client.pem` (key `client.key`), which
    /// its CA issued.
    Certificate,
    /// "Token exchange": the provider knows client `front` (its secret in
    /// `AUTHCORE_CLIENT_SECRET`), which may ask for scope `orders:read`.
    Exchange,
    /// "Many processes and many hosts": the api.video key in `AUTHCORE_API_KEY`.
    Fleet,
}

impl World {
    fn of(headings: &[String]) -> World {
        headings
            .iter()
            .rev()
            .find_map(|h| match h.as_str() {
                "### DPoP on the command line" => Some(World::Dpop),
                "### Federated client assertions and the JWT bearer grant" => {
                    Some(World::Assertions)
                }
                "### A client certificate (mutual TLS)" => Some(World::Certificate),
                "### Token exchange (RFC 8693)" => Some(World::Exchange),
                "## Many processes and many hosts" => Some(World::Fleet),
                _ => None,
            })
            .unwrap_or(World::Plain)
    }

    /// The provider's credentials.
    fn credentials(self) -> Credentials {
        let defaults = Credentials::default();
        match self {
            World::Dpop => Credentials {
                client_id: "ID".into(),
                client_secret: "the-example-client-secret".into(),
                public_client_id: "cli".into(),
                ..defaults
            },
            World::Assertions => Credentials {
                client_id: "my-app".into(),
                ..defaults
            },
            World::Exchange => Credentials {
                client_id: "front".into(),
                client_secret: "the-front-secret".into(),
                scopes: [defaults.scopes.clone(), vec!["orders:read".into()]].concat(),
                ..defaults
            },
            World::Plain | World::Certificate | World::Fleet => defaults,
        }
    }

    /// Starts the provider (its TLS files in `dir`).
    fn start(self, dir: &Path) -> DevServer {
        let any = "127.0.0.1:0".parse().unwrap();
        match self {
            World::Plain => DevServer::start(any, self.credentials()).unwrap(),
            _ => DevServer::start_tls(any, self.credentials(), dir).unwrap(),
        }
    }

    /// Sets the provider up and gives the block's HOME its files; answers the
    /// environment variables the block's platform has.
    fn furnish(self, s: &DevServer, home: &Path) -> Vec<(String, String)> {
        let write = |name: &str, contents: &[u8]| {
            std::fs::write(home.join(name), contents).unwrap();
        };
        let mut env = Vec::new();
        if let Some(ca) = s.ca_file() {
            let ca = ca.to_str().unwrap().to_owned();
            env.push(("SSL_CERT_FILE".to_owned(), ca.clone()));
            env.push(("CURL_CA_BUNDLE".to_owned(), ca));
        }
        match self {
            World::Plain => {}
            World::Dpop => {
                s.set_behaviour(Behaviour {
                    dpop: true,
                    ..Behaviour::default()
                })
                .unwrap();
                write("client-secret", s.credentials().client_secret.as_bytes());
            }
            World::Assertions => {
                let key = rcgen::KeyPair::generate().unwrap();
                write("service-account.pem", key.serialize_pem().as_bytes());
                s.set_behaviour(Behaviour {
                    jwt_bearer_keys: [("svc@project".to_owned(), key.public_key_pem())].into(),
                    ..Behaviour::default()
                })
                .unwrap();
                write(
                    "azure-identity-token",
                    s.mint("my-app", 300).unwrap().as_bytes(),
                );
                env.push((
                    "AZURE_FEDERATED_TOKEN_FILE".to_owned(),
                    home.join("azure-identity-token")
                        .to_str()
                        .unwrap()
                        .to_owned(),
                ));
                let helper = format!(
                    "#!/bin/sh\n\
                     # The CI system's token helper: a JWT the test issuer signs now.\n\
                     curl -sS --fail --max-time 10 -H 'content-type: application/json' \
                     -d '{{\"sub\": \"my-app\", \"aud\": \"{url}\"}}' {url}/_control/test_issuer/mint \
                     | sed -n 's/.*\"jwt\": *\"\\([^\"]*\\)\".*/\\1/p'\n",
                    url = s.url()
                );
                write("print-oidc-token.sh", helper.as_bytes());
                std::fs::set_permissions(
                    home.join("print-oidc-token.sh"),
                    std::fs::Permissions::from_mode(0o755),
                )
                .unwrap();
            }
            World::Certificate => {
                let cert = s.client_certificate("billing", false).unwrap();
                write(
                    "client.pem",
                    cert["certificate"].as_str().unwrap().as_bytes(),
                );
                write("client.key", cert["key"].as_str().unwrap().as_bytes());
                s.set_behaviour(Behaviour {
                    mtls_clients: vec![MtlsClient {
                        client_id: "billing".into(),
                        tls_client_auth_subject_dn: Some(
                            cert["subject"].as_str().unwrap().to_owned(),
                        ),
                        thumbprint: None,
                    }],
                    ..Behaviour::default()
                })
                .unwrap();
            }
            World::Exchange => env.push((
                "AUTHCORE_CLIENT_SECRET".to_owned(),
                s.credentials().client_secret.clone(),
            )),
            World::Fleet => env.push((
                "AUTHCORE_API_KEY".to_owned(),
                s.credentials().api_key.clone(),
            )),
        }
        env
    }

    /// What the block's comments claim, checked at the provider once it has run.
    fn check(self, s: &DevServer, home: &Path, stdout: &str) -> Result<(), String> {
        let c = s.counters();
        let printed = || -> Result<Value, String> {
            let token = stdout.lines().last().unwrap_or_default().trim();
            s.token_info(&tag(token))
                .ok_or(format!("it printed no token of the provider's: {stdout:?}"))
        };
        let holds = match self {
            World::Plain => true,
            // "A DPoP-bound token", "Sign in with DPoP".
            World::Dpop => c.tokens_issued >= 2 && c.dpop_tokens_issued == c.tokens_issued,
            // Three token requests, each with an assertion of its own.
            World::Assertions => {
                c.tokens_issued == 3 && c.assertions_resent == 0 && c.assertions_expired == 0
            }
            // The token is bound to the certificate.
            World::Certificate => {
                let pem = std::fs::read(home.join("client.pem")).unwrap();
                let info = printed()?;
                if info["cnf"]["x5t#S256"] != client_thumbprint(&pem).as_str() {
                    return Err(format!("the token is not bound to client.pem: {info}"));
                }
                true
            }
            // "exchanged for one for the orders API".
            World::Exchange => {
                let info = printed()?;
                if info["aud"] != serde_json::json!(["orders-api"])
                    || info["scope"] != "orders:read"
                {
                    return Err(format!("the exchanged token: {info}"));
                }
                c.token_requests == 2
            }
            // "one token request per token lifetime, however often the loop runs".
            World::Fleet => c.token_requests == 1 && c.resource_accepted >= ENDLESS_REQUESTS,
        };
        holds.then_some(()).ok_or(format!("{c:?}"))
    }
}

/// The SHA-256 thumbprint (`x5t#S256`, base64url) of the first certificate in `pem`.
fn client_thumbprint(pem: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    let der = ureq::tls::parse_pem(pem)
        .find_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .expect("a certificate");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der.der()))
}

/// The README's example URLs, and what of the block's provider each stands for (its
/// OAuth endpoints are under `/oauth2/`, its API under `/api/`).
const EXAMPLE_URLS: &[(&str, &str)] = &[
    ("https://id.example.com", ""),
    ("https://login.example", ""),
    ("https://oauth2.example/token", "/oauth2/token"),
    ("https://api.example.com", "/api"),
    ("https://sandbox.api.video/videos", "/api/videos"),
];

/// Whether `after`, what follows a URL's host (or port), would make it a longer one.
fn continues_host(after: &str) -> bool {
    after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':')
}

/// `text` with the URL `from` replaced by `to` wherever it is not part of a longer host
/// or port (`https://login.example.org` is not `https://login.example`).
fn replace_url(text: &str, from: &str, to: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        out.push_str(&rest[..at]);
        out.push_str(if continues_host(after) { from } else { to });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A block's commands as one script a user would type, with these changes only:
/// - a development provider the block starts in the background (`… devserver --port
///   PORT &`) is the test's, so `http://127.0.0.1:PORT` is its URL;
/// - `cargo run --release -p authcore-cli --` is the `authcore` built for this test;
/// - the example URLs of [`EXAMPLE_URLS`] are the provider's, and api.video's sandbox
///   preset is given `--base-url` with the provider's.
///
/// A URL left that is not the provider's fails: a block never reaches out.
fn as_typed(commands: &[String], url: &str) -> String {
    let mut script = String::new();
    let mut port = None;
    for command in commands {
        if command.contains(" devserver --port ") && command.contains(" &") {
            let p = command
                .split(" devserver --port ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .expect("a port");
            port = Some(p.to_owned());
            continue;
        }
        let mut command = command.replace("cargo run --release -p authcore-cli -- ", "authcore ");
        if let Some(p) = &port {
            command = replace_url(&command, &format!("http://127.0.0.1:{p}"), url);
        }
        for (example, path) in EXAMPLE_URLS {
            command = replace_url(&command, example, &format!("{url}{path}"));
        }
        command = command.replace(
            "--provider api-video-sandbox",
            &format!("--provider api-video-sandbox --base-url {url}"),
        );
        if !command.trim_start().starts_with('#') {
            // A preset of a real service, left at its own URL, would reach it.
            for (preset, own_url) in [
                ("--provider api-video", "--base-url"),
                ("--provider vibe", "--token-url"),
            ] {
                assert!(
                    !command.contains(preset) || command.contains(own_url),
                    "a preset with its real URL: {command}"
                );
            }
            for (at, _) in command.match_indices("://") {
                let start = command[..at]
                    .rfind(|c: char| !c.is_ascii_alphanumeric() && c != '+')
                    .map_or(0, |i| i + 1);
                assert!(
                    command[start..]
                        .strip_prefix(url)
                        .is_some_and(|after| !continues_host(after)),
                    "a URL no provider of the block serves: {command}"
                );
            }
        }
        script.push_str(&command);
        script.push('\n');
    }
    script
}

/// The browser of the block's desktop (`xdg-open`, which `authcore login` opens the
/// sign-in with): it follows the provider's redirects back to the command's loopback
/// redirect URI, as a user already signed in at the provider sees them.
const BROWSER: &str = "#!/bin/sh\nexec curl -sS -o /dev/null --max-time 30 -L \"$1\"\n";

/// The requests the provider's API has answered: their paths and verdicts.
fn api_requests(s: &DevServer) -> Vec<(String, ResourceOutcome)> {
    s.journal(0)
        .events
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Resource { path, outcome, .. } => Some((path, outcome)),
            _ => None,
        })
        .collect()
}

/// Runs `block` in its world; answers its commands (for the failure message) or why it
/// failed.
fn run_block(block: &Fenced, world: World, endless: bool) -> Result<(), String> {
    let home = tempfile::tempdir().unwrap();
    let platform = tempfile::tempdir().unwrap();
    let s = world.start(platform.path());
    let env = world.furnish(&s, home.path());
    let bin = platform.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("xdg-open"), BROWSER).unwrap();
    std::fs::set_permissions(bin.join("xdg-open"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = as_typed(&commands(block), &s.url());
    let setting = Setting {
        home: home.path(),
        path: vec![bin],
        env,
    };
    let running = start(&script, &setting);
    let ran = if endless {
        let deadline = Instant::now() + BOUND;
        while running.running() && api_requests(&s).len() < ENDLESS_REQUESTS as usize {
            if Instant::now() > deadline {
                let ran = running.stop(true);
                return Err(format!(
                    "the endless block overran:\n{script}\n{}\n{}",
                    ran.stdout, ran.stderr
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let ended = !running.running();
        let ran = running.stop(false);
        if ended {
            return Err(format!(
                "the endless block ended:\n{script}\n{}\n{}",
                ran.stdout, ran.stderr
            ));
        }
        ran
    } else {
        running.wait(BOUND)
    };
    let failed = |why: String| Err(format!("{why}:\n{script}\n{}\n{}", ran.stdout, ran.stderr));
    if !endless && !ran.ok() {
        return failed(format!("it failed ({:?})", ran.status));
    }
    // The API answered every request the block made, and was asked if the block names it.
    let refused: Vec<_> = api_requests(&s)
        .into_iter()
        .filter(|(_, outcome)| *outcome != ResourceOutcome::Accepted)
        .collect();
    if !refused.is_empty() {
        return failed(format!("the API refused {refused:?}"));
    }
    if script.contains(&format!("{}/api/", s.url())) && s.counters().resource_accepted == 0 {
        return failed("the API it names was never asked".into());
    }
    world
        .check(&s, home.path(), &ran.stdout)
        .or_else(|why| failed(format!("{world:?}: {why}")))
}

/// Every shell block of the sections of [`RUN_SECTIONS`] runs as written in its
/// [`World`], except those marked: `<!-- readme-test: skip: WHY -->` (a block that needs
/// what a test cannot have, said why), `<!-- readme-test: run by tests/c/run.sh -->` (the
/// C section's), `<!-- readme-test: endless: … -->` (a loop, stopped once the API has
/// answered [`ENDLESS_REQUESTS`] of its requests). A doc line that is no longer true
/// fails here.
#[test]
fn every_shell_block_of_the_command_line_sections_runs() {
    let started = Instant::now();
    let readme = readme();
    let doc = markdown(&readme).unwrap();
    let by_c_suite = doc
        .blocks
        .iter()
        .filter(|b| b.marker.as_deref() == Some("run by tests/c/run.sh"))
        .count();
    assert_eq!(
        by_c_suite, 1,
        "one block is run by tests/c/run.sh: the C section's"
    );
    let mut tally: Vec<(&str, usize, usize, usize)> =
        RUN_SECTIONS.iter().map(|s| (*s, 0, 0, 0)).collect();
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    for block in doc
        .blocks
        .iter()
        .filter(|b| SHELL_KINDS.contains(&b.kind.as_str()))
    {
        let Some(section) = block
            .headings
            .iter()
            .rev()
            .find_map(|h| RUN_SECTIONS.iter().position(|s| s == h))
        else {
            continue;
        };
        let heading = RUN_SECTIONS[section];
        let mut endless = false;
        match block.marker.as_deref() {
            None => {}
            Some(m) if m.strip_prefix("skip: ").is_some_and(|why| why.len() > 10) => {
                skipped.push(format!("README.md:{}: {m}", block.line));
                tally[section].2 += 1;
                continue;
            }
            Some("run by tests/c/run.sh") if heading == "## C" => {
                let c_suite = std::fs::read_to_string(root().join("tests/c/run.sh")).unwrap();
                assert!(
                    c_suite.contains("readme_sh_block"),
                    "tests/c/run.sh runs it"
                );
                tally[section].3 += 1;
                continue;
            }
            Some(m)
                if m.strip_prefix("endless: ")
                    .is_some_and(|why| why.len() > 10) =>
            {
                endless = true;
            }
            Some(other) => panic!("README.md:{}: an unknown marker {other:?}", block.line),
        }
        let world = World::of(&block.headings);
        if let Err(why) = run_block(block, world, endless) {
            failures.push(format!("README.md:{} ({heading}): {why}", block.line));
        }
        tally[section].1 += 1;
    }
    for (heading, ran, skipped, by_c) in &tally {
        eprintln!("{heading}: {ran} run, {skipped} skipped, {by_c} run by tests/c/run.sh");
    }
    eprintln!("in {:.1?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    for (heading, ran, _, by_c) in &tally {
        assert!(ran + by_c >= 1, "{heading}: no block ran: {tally:?}");
    }
    let workloads = tally
        .iter()
        .find(|t| t.0 == "## Workloads without secrets")
        .unwrap();
    assert!(workloads.1 >= 3, "{tally:?}");
    assert!(skipped.len() <= 2, "skipped {skipped:?}");
}

/// The commands of the README's development provider block.
fn devserver_block() -> Vec<String> {
    let readme = readme();
    let doc = markdown(&readme).unwrap();
    let block = doc
        .blocks
        .iter()
        .find(|b| {
            b.kind == "sh"
                && b.headings.last().map(String::as_str) == Some("### The development provider")
        })
        .expect("a sh block");
    commands(block)
}

#[test]
fn the_development_provider_block_runs_as_written() {
    let commands = devserver_block();
    assert!(commands[0].starts_with("authcore devserver --port 8765 &"));
    assert!(commands[1].starts_with("export AUTHCORE_DEVSERVER_URL=http://127.0.0.1:8765"));
    // The provider of the first two lines, on a free port: the rest as written, each
    // line on its own, with the URL the block exports.
    let s = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let rest = &commands[2..];
    assert!(
        rest.iter()
            .any(|c| c.contains("login") && c.contains("dev-cli")),
        "{rest:?}"
    );
    for line in rest {
        let setting = Setting {
            home: home.path(),
            path: Vec::new(),
            env: vec![("AUTHCORE_DEVSERVER_URL".to_owned(), s.url())],
        };
        let ran = start(line, &setting).wait(BOUND);
        assert!(ran.ok(), "`{line}` failed:\n{}\n{}", ran.stdout, ran.stderr);
        if line.contains("authcore token") {
            assert!(
                ran.stdout.starts_with("dev-at-"),
                "`{line}` printed {:?}",
                ran.stdout
            );
        }
    }
    let counters = s.counters();
    assert_eq!(counters.device_authorizations, 1);
    assert!(counters.revocations >= 1, "logout revoked the session");
}
