//! What the README says, held to what the code does: its event table names every event
//! the core raises, its table of the development provider's control surface names every
//! `/_control` route the provider serves, and its development provider block (sign in
//! with the public client, print a token, sign out) runs as written against a devserver.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use authcore_cli::devserver::{Behaviour, Credentials, DevServer};

/// How long one command of the README may take before the test fails (a bound on
/// waiting, never a judgement on speed).
const BOUND: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// The README's text from the heading `heading` to the next heading of its level or
/// above (a `#` line inside a code block, a shell comment, is no heading).
fn section(readme: &str, heading: &str) -> String {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("the README has no {heading:?}"));
    let level = heading.split(' ').next().unwrap();
    let rest = &readme[start + heading.len() + 2..];
    let mut in_code = false;
    let end = rest
        .lines()
        .scan(0, |at, line| {
            let here = *at;
            *at += line.len() + 1;
            Some((here, line))
        })
        .find(|(_, line)| {
            if line.starts_with("```") {
                in_code = !in_code;
                return false;
            }
            !in_code
                && line.split(' ').next().is_some_and(|hashes| {
                    !hashes.is_empty()
                        && hashes.chars().all(|c| c == '#')
                        && hashes.len() <= level.len()
                })
        })
        .map_or(rest.len(), |(at, _)| at);
    rest[..end].to_owned()
}

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

/// The commands of the README's development provider block, continuation lines joined.
fn devserver_block() -> Vec<String> {
    let text = section(&readme(), "### The development provider");
    let start = text.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let block = &text[start..start + text[start..].find("\n```").unwrap()];
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        match line.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

/// Runs `line` with `sh`, as a user who typed it would, and waits for it (bounded), in
/// `home` (also its working directory), with `AUTHCORE_DEVSERVER_URL` set to `url` when
/// given.
fn run(line: &str, home: &Path, url: Option<&str>) -> (bool, String, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_authcore")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("sh");
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("AUTHCORE_") {
            command.env_remove(&var);
        }
    }
    if let Some(url) = url {
        command.env("AUTHCORE_DEVSERVER_URL", url);
    }
    let mut child = command
        .args(["-c", line])
        .current_dir(home)
        .env("PATH", path)
        .env("HOME", home)
        .env_remove("XDG_STATE_HOME")
        .env_remove("XDG_CACHE_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + BOUND;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{line}` did not end within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_development_provider_block_runs_as_written() {
    let commands = devserver_block();
    assert!(commands[0].starts_with("authcore devserver --port 8765 &"));
    assert!(commands[1].starts_with("export AUTHCORE_DEVSERVER_URL=http://127.0.0.1:8765"));
    // The provider of the first two lines, on a free port: the rest as written.
    let s = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let rest = &commands[2..];
    assert!(
        rest.iter()
            .any(|c| c.contains("login") && c.contains("dev-cli")),
        "{rest:?}"
    );
    for line in rest {
        let (ok, stdout, stderr) = run(line, home.path(), Some(&s.url()));
        assert!(ok, "`{line}` failed:\n{stdout}\n{stderr}");
        if line.contains("authcore token") {
            assert!(stdout.starts_with("dev-at-"), "`{line}` printed {stdout:?}");
        }
    }
    let counters = s.counters();
    assert_eq!(counters.device_authorizations, 1);
    assert!(counters.revocations >= 1, "logout revoked the session");
}

/// A `sh` block of the README: the marker on the line before it, if any, and its
/// commands (continuation lines joined).
struct ShBlock {
    marker: Option<String>,
    commands: Vec<String>,
}

/// The `sh` blocks of `text`. A marker is an HTML comment, invisible when rendered:
/// `<!-- readme-test: skip: WHY -->` (a block that needs what a test cannot have, said
/// why) or `<!-- readme-test: run by tests/c/run.sh -->`.
fn sh_blocks(text: &str) -> Vec<ShBlock> {
    let mut blocks = Vec::new();
    let mut previous = "";
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == "```sh" {
            let marker = previous
                .strip_prefix("<!-- readme-test: ")
                .and_then(|m| m.strip_suffix(" -->"))
                .map(str::to_owned);
            let mut commands = Vec::new();
            let mut pending = String::new();
            for line in lines.by_ref().take_while(|l| *l != "```") {
                match line.strip_suffix('\\') {
                    Some(part) => pending.push_str(part),
                    None => {
                        pending.push_str(line);
                        commands.push(std::mem::take(&mut pending));
                    }
                }
            }
            blocks.push(ShBlock { marker, commands });
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    blocks
}

/// A block's commands as one script a user would type: the development provider the
/// block starts in the background (`… devserver --port PORT &`) is this test's, on a
/// free port, so `http://127.0.0.1:PORT` is its URL (a block that uses another loopback
/// port fails), and `cargo run --release -p authcore-cli --` is the `authcore` built for
/// this test.
fn as_typed(commands: &[String], url: &str) -> String {
    let mut script = String::from("set -e\n");
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
            command = command.replace(&format!("http://127.0.0.1:{p}"), url);
        }
        assert!(
            !command.contains("http://127.0.0.1:") || command.contains(url),
            "a loopback URL no provider of the block serves: {command}"
        );
        script.push_str(&command);
        script.push('\n');
    }
    script
}

/// Every `sh` block of the Quick start, Command line and C sections runs as written
/// against a development provider, except those marked: a doc line that is no longer
/// true fails here.
#[test]
fn every_shell_block_of_quick_start_the_command_line_and_c_runs() {
    let readme = readme();
    let (mut ran, mut skipped) = (Vec::new(), Vec::new());
    let by_c_suite = sh_blocks(&readme)
        .iter()
        .filter(|b| b.marker.as_deref() == Some("run by tests/c/run.sh"))
        .count();
    assert_eq!(
        by_c_suite, 1,
        "one block is run by tests/c/run.sh: the C section's"
    );
    for heading in ["## Quick start", "## Command line", "## C"] {
        for block in sh_blocks(&section(&readme, heading)) {
            match block.marker.as_deref() {
                None => {}
                Some(m) if m.strip_prefix("skip: ").is_some_and(|why| why.len() > 10) => {
                    skipped.push(format!("{heading}: {m}"));
                    continue;
                }
                Some("run by tests/c/run.sh") if heading == "## C" => {
                    let c_suite = std::fs::read_to_string(root().join("tests/c/run.sh")).unwrap();
                    assert!(
                        c_suite.contains("readme_sh_block"),
                        "tests/c/run.sh runs it"
                    );
                    continue;
                }
                Some(other) => panic!("{heading}: an unknown marker {other:?}"),
            }
            let s =
                DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
            let home = tempfile::tempdir().unwrap();
            let script = as_typed(&block.commands, &s.url());
            let (ok, stdout, stderr) = run(&script, home.path(), None);
            assert!(
                ok,
                "{heading}: the block failed:\n{script}\n{stdout}\n{stderr}"
            );
            ran.push(format!("{heading}: {}", block.commands[0]));
        }
    }
    assert!(
        ran.len() >= 2 && ran.iter().any(|b| b.contains("demo")),
        "ran {ran:?}, skipped {skipped:?}"
    );
    assert!(skipped.len() <= 2, "skipped {skipped:?}");
}
