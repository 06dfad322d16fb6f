//! The vexil service: a thin HTTP layer (axum on tokio) over `vexil-core` (evaluation) and
//! `vexil-store` (state). Each concern has its own module:
//!
//! - [`config`]: settings from `vexil.toml`, `VEXIL_*` variables and flags, validated at start;
//! - [`server`]: start-up, the first admin key, graceful shutdown;
//! - [`snapshot`]: the compiled configuration evaluation reads, swapped atomically on change;
//! - [`catalog`]: whole-configuration checks for writes, deletes and imports;
//! - [`experiments`]: experiment validation, lifecycle and the compiled set; [`assignment`]:
//!   sticky assignment with its cache and group-commit writer;
//! - [`auth`]: API keys, their kinds, and the authentication cache;
//! - [`error`]: the one error shape, including axum's own rejections;
//! - [`events`]: the event pipeline as the service runs it;
//! - [`middleware`]: request ids, security headers, body limit, panic guard, CORS;
//! - [`metrics`]: Prometheus metrics; [`logging`]: structured logs; [`openapi`]: the API description;
//! - [`service`]: the application layer, with no HTTP in it: [`service::evaluation`], the one
//!   path every evaluation route takes;
//! - [`routes`]: the route table and one module per group of endpoints;
//! - [`safety`]: emergency stops, rollout plans, guards and budgets; [`notify`]: their webhooks.

pub mod assignment;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod error;
pub mod events;
pub mod experiments;
pub mod logging;
pub mod metrics;
pub mod middleware;
pub mod notify;
pub mod openapi;
pub mod results;
pub mod routes;
pub mod safety;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod state;

pub use config::{PartialConfig, ServerConfig};
pub use server::run;
