//! Runs every shared scenario in `tests/scenarios/` against the development provider.

use std::net::SocketAddr;
use std::path::Path;

use authcore_cli::devserver::{Credentials, DevServer};
use authcore_cli::scenario;

#[test]
fn every_shared_scenario_passes_in_rust() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios");
    let scenarios = scenario::load_dir(&dir).expect("scenarios load");
    assert!(scenarios.len() >= 15, "found {} scenarios", scenarios.len());
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = DevServer::start(addr, Credentials::default()).expect("devserver starts");
    // The scenarios of mutual TLS run against the provider in TLS mode.
    let tls_dir = tempfile::tempdir().unwrap();
    let tls_server = scenarios
        .iter()
        .any(scenario::Scenario::needs_tls)
        .then(|| DevServer::start_tls(addr, Credentials::default(), tls_dir.path()).unwrap());
    let mut failures = Vec::new();
    for s in &scenarios {
        let server = match &tls_server {
            Some(tls) if s.needs_tls() => tls,
            _ => &server,
        };
        let observed = scenario::run(s, server);
        match scenario::check(s, &observed) {
            Ok(()) => println!("ok   {}", s.name),
            Err(problems) => {
                println!("FAIL {}: {problems:?}", s.name);
                failures.push((s.name.clone(), problems));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
