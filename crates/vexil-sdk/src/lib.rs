//! The Rust SDK of vexil: evaluate feature flags inside
//! your application, from a configuration the server streams to it.
//!
//! A [`Client`] fetches the flags and segments your server key may see (`GET /v1/sdk/flags`),
//! then follows their changes as Server-Sent Events (`GET /v1/sdk/stream`), reconnecting with
//! backoff and polling when the stream cannot be held. Every getter evaluates in-process with
//! `vexil-core` — the engine the server runs — on a lock-free snapshot, so it costs tens of
//! nanoseconds and gives the server's answer for the same configuration.
//!
//! The SDK is fail-open: a getter never blocks, never panics and never returns an error. When
//! the server goes away it keeps serving the last configuration it received; when there never
//! was one it serves the cache file of an earlier run, or the bootstrap file you ship, or else
//! the default you pass. The detailed getters say which happened.
//!
//! ```no_run
//! use std::time::Duration;
//! use vexil_sdk::{Client, Context, Options, Resolution};
//!
//! # async fn run() {
//! let client = Client::start(
//!     Options::new("http://127.0.0.1:8080", std::env::var("VEXIL_SERVER_KEY").unwrap())
//!         .cache_file("/var/cache/checkout/vexil-flags.json"),
//! );
//! client.wait_until_ready(Duration::from_secs(2)).await; // optional: getters never wait
//!
//! let attributes = serde_json::json!({"country": "US", "plan": "pro"});
//! let ctx = Context::new("user_123", attributes.as_object().unwrap());
//! let enabled = client.bool_value("new_checkout", &ctx, false);
//! let details = client.string_details("checkout_theme", &ctx, "classic");
//! if let Resolution::Error(why) = details.resolution {
//!     eprintln!("served the default: {why:?}");
//! }
//! # let _ = enabled;
//! # }
//! ```
//!
//! Flags that serve an experiment serve the user's arm as the server stores it (fetched from
//! `POST /v1/assign` in the background, cached). Evaluation counts, the raw events of flags with
//! `track_events` and the application's own events ([`Client::track`]) are sent to the server
//! in the background, bounded ([`Client::delivery`] reports what was sent and dropped).
//!
//! With the `openfeature` feature (on by default), [`openfeature::VexilProvider`] plugs the
//! client into the OpenFeature Rust SDK.

#![warn(missing_docs)]

mod assignments;
mod client;
mod configuration;
#[cfg(feature = "openfeature")]
pub mod openfeature;
mod options;
mod reporting;
mod sync;

pub use client::{Client, Details, ErrorKind, Resolution, Status};
pub use configuration::Source;
pub use options::Options;
pub use reporting::Delivery;
pub use vexil_core::{Context, Reason};
