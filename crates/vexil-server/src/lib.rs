//! The vexil service, in two layers over `vexil-core` (evaluation), `vexil-store` (state) and
//! `vexil-events` (the event pipeline):
//!
//! - [`service`]: the application layer, with no HTTP in it — evaluation, sticky assignment,
//!   the catalog of flags, segments and experiments, results, safety rails, the event
//!   pipeline as the service runs it, notifications and the configuration snapshot. The CLI
//!   uses it directly on a data directory.
//! - [`http`]: the HTTP layer (axum on tokio) — the route table and its handlers, extractors
//!   and the one error shape, middleware, authentication, the OpenAPI document, and the
//!   state the handlers share.
//!
//! Beside them: [`config`] (settings from `vexil.toml`, `VEXIL_*` variables and flags,
//! validated at start), [`server`] (start-up wiring, the first admin key, graceful shutdown),
//! [`metrics`] (the one Prometheus registry, which both layers register into) and [`logging`].

pub mod config;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod service;

pub use config::{PartialConfig, ServerConfig};
pub use server::run;
