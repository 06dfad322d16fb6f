//! The HTTP layer: thin handlers that extract a request, call the application layer
//! ([`crate::service`]) and answer.
//!
//! - [`routes`]: the route table and one module per group of endpoints;
//! - [`error`]: the one error shape (SPEC 4) and the mapping of every service error and axum
//!   rejection to it; [`extract`]: the extractors, which reject in that shape; [`json`]: the
//!   JSON answers of the hot routes;
//! - [`edge`]: connections, timeouts and request size limits before any route;
//! - [`middleware`]: request ids, security headers, body limit, panic guard, CORS;
//! - [`auth`]: API keys, their kinds, and the authentication cache; [`session`]: people's
//!   session cookie and CSRF header; [`rate_limit`]: per-key request rates;
//! - [`openapi`]: the API description; [`state`]: what every handler shares;
//! - [`console`]: the web console's embedded files;
//! - [`sdk_stream`]: the SDK stream's fan-out, one serialised frame per change for all streams.

pub mod auth;
pub mod console;
pub mod edge;
pub mod error;
pub mod extract;
pub mod json;
pub mod middleware;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod sdk_stream;
pub mod session;
pub mod state;
