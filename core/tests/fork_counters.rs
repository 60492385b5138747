//! A forked child's counters start at zero: `stats()` in a preloaded worker counts what
//! that worker did, not what its parent did before the fork. The fork is the at-fork
//! hook the Python package and `libauthcore` call in the child
//! (`after_fork_in_child`); its own test binary, since it moves a process-wide
//! generation.

mod common;

use authcore::grant::ClientCredentials;
use authcore::Client;
use common::opts;

#[test]
fn a_forked_child_counts_from_zero() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/token")
        .with_header("content-type", "application/json")
        .with_body(r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600}"#)
        .expect(1)
        .create();
    let client = Client::new(
        ClientCredentials::new(format!("{}/token", server.url()), "id", "secret"),
        opts(),
    )
    .unwrap();
    for _ in 0..3 {
        client.token().unwrap();
    }
    let parent = client.stats();
    assert_eq!(parent.token_requests(), 1);
    assert_eq!(parent.cache_hits, 2);
    assert_eq!(parent.renewals_initial, 1);

    authcore::after_fork_in_child();
    let child = client.stats();
    assert_eq!(child, authcore::Stats::default(), "{child:?}");
    // The inherited token is served from the cache: the child's first hit.
    client.token().unwrap();
    let child = client.stats();
    assert_eq!(child.cache_hits, 1, "{child:?}");
    assert_eq!(child.token_requests(), 0);
    // A grandchild starts again.
    authcore::after_fork_in_child();
    client.token().unwrap();
    client.token().unwrap();
    assert_eq!(client.stats().cache_hits, 2);
}
