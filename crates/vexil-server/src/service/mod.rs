//! The application layer: what the service does, with no knowledge of HTTP. A service takes the
//! narrow handles it needs (the snapshot, the assigner, the event pipeline), and answers in
//! domain types — its own error types included — that the HTTP layer maps to responses.
//!
//! - [`evaluation`]: the one path every flag evaluation takes;
//! - [`assignment`]: sticky experiment assignment with its cache and group-commit writer;
//! - [`snapshot`]: the compiled configuration evaluation reads, swapped atomically on change;
//! - [`catalog`]: whole-configuration checks for writes, deletes and imports;
//! - [`changes`]: planned changes applied atomically, and change requests held for approval;
//! - [`promotion`]: copying flags and segments from one environment to another;
//! - [`environments`]: every environment's store and snapshot, and the environment document;
//! - [`keys`]: what a new API key may be granted (its environment, role and scope);
//! - [`people`]: user accounts of the web console, their passwords, sessions and sign-in throttling;
//! - [`experiments`]: experiment validation, lifecycle and the compiled set;
//! - [`results`]: experiment results and auto-conclusion;
//! - [`events`]: the event pipeline as the service runs it;
//! - [`safety`]: emergency stops, rollout plans, guards and budgets; [`notify`]: their webhooks.
//!
//! [`every`] runs the periodic work (purging expired assignments, the safety checks), and
//! [`supervise`] restarts a background task that panicked.

pub mod assignment;
pub mod catalog;
pub mod changes;
pub mod environments;
pub mod evaluation;
pub mod events;
pub mod experiments;
pub mod keys;
pub mod notify;
pub mod people;
pub mod promotion;
pub mod results;
pub mod safety;
pub mod snapshot;
pub mod supervise;

use std::future::Future;
use std::time::Duration;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Runs `round` every `interval`, the first at once, until `shutdown`. A round that overruns
/// delays the next one rather than bunching the missed ones together.
pub async fn every<F: Future<Output = ()>>(
    interval: Duration,
    shutdown: CancellationToken,
    mut round: impl FnMut() -> F,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        round().await;
    }
}
