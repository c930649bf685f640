//! kterm: a self-hosted web terminal with real sandboxes.
//!
//! Dependencies point one way: `http` -> `files` -> `session` -> `sandbox` + `store`.
//! `sandbox` knows nothing of HTTP; only `store` sees SQL. `app` wires them together;
//! `main.rs` is the CLI.

pub mod app;
pub mod config;
pub mod error;
pub mod files;
pub mod http;
pub mod metrics;
pub mod pool;
pub mod sandbox;
pub mod session;
pub mod store;

pub use app::Server;
pub use config::Config;
