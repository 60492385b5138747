//! The library behind the `authcore` command: the local development provider, the
//! shared scenario runner, the demo, and `login`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod demo;
pub mod devserver;
pub mod login;
pub mod scenario;
