//! kterm: a self-hosted web terminal with real sandboxes.
//!
//! Dependencies point one way: `http` -> `auth`, `files`, `pool` -> `session` -> `sandbox` +
//! `store`; `audit` and `limits` are used by all of them above `store`. `sandbox` knows
//! nothing of HTTP; only `store` sees SQL. `app` wires them together; `main.rs` is the CLI.

pub mod app;
pub mod audit;
pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod exec;
pub mod files;
pub mod healthcheck;
pub mod http;
pub mod idle;
pub mod limits;
pub mod metrics;
pub mod pool;
pub mod preflight;
pub mod sandbox;
pub mod session;
pub mod store;
pub mod systemd;

pub use app::Server;
pub use config::Config;

/// The version and the git commit it was built from (`kterm --version`; see build.rs).
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KTERM_GIT_COMMIT"), ")");
