//! Sticky experiment assignment (SPEC 1.3, 2): what a user gets in an experiment, given its
//! status, and the persistence that keeps the answer from ever changing.
//!
//! - Placement is the pure, deterministic [`CompiledExperiment::place`] over the snapshot;
//!   nothing here reads configuration from the store.
//! - The first assignment of a unit to a running experiment is stored insert-if-absent with
//!   a TTL. The store's unique key decides who was first — among concurrent requests on this
//!   node and across nodes alike — and every caller answers with the record that was stored.
//! - First assignments are group-committed: requests queue their record and one task writes
//!   whatever has queued meanwhile with `assign_many_if_absent`, one transaction per batch.
//!   Whether that commit also waits for the disk is `assignment_fsync` ([`Flush`]): by
//!   default it does not, and the store flushes it in the background.
//!
//!   Why a power loss that drops the newest records cannot change what a user is served: every
//!   change to an experiment is a flushed commit, which flushes the assignments before it. So
//!   any record lost was made under the configuration still in force after the restart, and
//!   placement is a pure function of that configuration and the context; the user's next call
//!   places them in the same variant again, with a new `assignment_id`.
//! - A bounded in-memory cache holds store-confirmed records, keyed by experiment *id* and
//!   unit. A stored record never changes until it expires (the store only inserts, or
//!   replaces an expired record), so a cached copy is exactly what the store would answer until
//!   its `expires_at`, which is checked on every hit. A deleted and re-created experiment has a
//!   new id, so its old records are never found.
//!
//! [`CompiledExperiment::place`]: vexil_core::experiment::CompiledExperiment::place

use crate::service::events::EventsIn;
use crate::service::experiments::LiveExperiment;
use crate::service::supervise::Supervisor;
use quick_cache::sync::Cache;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use vexil_core::experiment::{ExperimentStatus, Placement};
use vexil_core::Context;
use vexil_store::{Assignment, Flush, Store, StoreError, Timestamp};

/// First assignments written per transaction at most.
const MAX_BATCH: usize = 1024;
/// First assignments waiting for the writer before callers wait to queue theirs.
const QUEUE_CAPACITY: usize = 16 * MAX_BATCH;

/// Why an assignment answered what it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssignReason {
    /// Placed in a variant now; this call stored the user's first assignment.
    Assigned,
    /// The variant stored by an earlier call (weights or traffic may have changed since).
    Sticky,
    /// The experiment is paused: nobody is in it, stored assignments are kept but not served.
    ExperimentPaused,
    /// The experiment is completed or archived: everyone gets the winner, if there is one.
    ExperimentConcluded,
    /// The experiment's targeting does not match the context.
    TargetingNotMatched,
    /// Outside the traffic allocation.
    TrafficExcluded,
    /// The context lacks the experiment's `bucket_by` attribute.
    MissingBucketingAttribute,
}

/// Why an assignment could not answer.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// A draft experiment assigns nobody (SPEC 1.3: "not assignable").
    #[error("experiment \"{0}\" is a draft; start it to assign users")]
    Draft(String),
    #[error("the assignment writer stopped")]
    WriterStopped,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of one assignment call.
pub struct Decision {
    pub experiment: Arc<LiveExperiment>,
    /// The variant served, by key.
    pub variant: Option<String>,
    /// The stored record behind the answer (first or sticky assignments only).
    pub record: Option<Arc<Assignment>>,
    pub reason: AssignReason,
}

impl Decision {
    fn without_record(experiment: &Arc<LiveExperiment>, variant: Option<String>, reason: AssignReason) -> Decision {
        Decision { experiment: experiment.clone(), variant, record: None, reason }
    }

    /// The answer of `/v1/assign`.
    pub fn response(&self, now: Timestamp) -> AssignResponse<'_> {
        let definition = self.experiment.experiment();
        let served = definition.variants.iter().find(|v| Some(&v.key) == self.variant.as_ref());
        AssignResponse {
            experiment_key: &definition.key,
            experiment_id: &self.experiment.id,
            variant: self.variant.as_deref(),
            value: served.and_then(|v| v.value.as_ref()),
            assignment_id: self.record.as_ref().map(|r| r.assignment_id.as_str()),
            timestamp: self.record.as_ref().map_or(now, |r| r.assigned_at),
            in_experiment: self.record.is_some(),
            reason: self.reason,
            sticky: self.reason == AssignReason::Sticky,
        }
    }
}

/// `{"experiment_key", "experiment_id", "variant", "value", "assignment_id", "timestamp",
/// "in_experiment", "reason", "sticky"}`. `value` is the flag value the variant carries (for
/// flags that serve the experiment), so an SDK can serve it without the experiment's definition.
#[derive(Serialize)]
pub struct AssignResponse<'a> {
    pub experiment_key: &'a str,
    pub experiment_id: &'a str,
    pub variant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<&'a serde_json::Value>,
    pub assignment_id: Option<&'a str>,
    #[serde(serialize_with = "rfc3339")]
    pub timestamp: Timestamp,
    pub in_experiment: bool,
    pub reason: AssignReason,
    pub sticky: bool,
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

type PendingWrite = (Assignment, oneshot::Sender<Result<Assignment, StoreError>>);

/// Sticky assignment over a store: the cache, the group-commit writer and the TTL.
pub struct Assigner {
    store: Arc<dyn Store>,
    cache: Cache<(Arc<str>, String), Arc<Assignment>>,
    ttl: Option<chrono::Duration>,
    writes: mpsc::Sender<PendingWrite>,
}

/// How an [`Assigner`] keeps its records.
pub struct AssignerOptions {
    /// `None` keeps assignments for the life of the experiment.
    pub ttl: Option<Duration>,
    /// Records the in-memory cache holds at most.
    pub cache_entries: usize,
    /// When a group commit of first assignments reaches the disk.
    pub flush: Flush,
}

impl Assigner {
    /// Starts the group-commit writer under `supervisor` (it ends when the assigner is dropped).
    pub fn new(store: Arc<dyn Store>, options: AssignerOptions, supervisor: &Supervisor) -> Assigner {
        let AssignerOptions { ttl, cache_entries, flush } = options;
        let (writes, queue) = mpsc::channel(QUEUE_CAPACITY);
        // The queue outlives a panicking writer: the restarted task locks it again, and the
        // callers of the batch it held get an error instead of waiting forever.
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        supervisor.spawn("assignment_writer", CancellationToken::new(), {
            let store = store.clone();
            move || write_batches(store.clone(), queue.clone(), flush)
        });
        Assigner {
            store,
            cache: Cache::new(cache_entries.max(1)),
            ttl: ttl.map(|t| chrono::Duration::from_std(t).unwrap_or(chrono::Duration::MAX)),
            writes,
        }
    }

    /// What `ctx` gets in `experiment` (SPEC 1.3): `draft` is not assignable (404), `paused`
    /// serves nothing, `completed` and `archived` serve the winner, `running` assigns.
    pub async fn assign(&self, experiment: &Arc<LiveExperiment>, ctx: &Context<'_>) -> Result<Decision, AssignError> {
        let definition = experiment.experiment();
        match definition.status {
            ExperimentStatus::Draft => Err(AssignError::Draft(definition.key.clone())),
            ExperimentStatus::Paused => Ok(Decision::without_record(experiment, None, AssignReason::ExperimentPaused)),
            ExperimentStatus::Completed | ExperimentStatus::Archived => {
                Ok(Decision::without_record(experiment, definition.winner.clone(), AssignReason::ExperimentConcluded))
            }
            ExperimentStatus::Running => self.assign_running(experiment, ctx).await,
        }
    }

    async fn assign_running(
        &self,
        experiment: &Arc<LiveExperiment>,
        ctx: &Context<'_>,
    ) -> Result<Decision, AssignError> {
        let Some(unit) = experiment.compiled.unit(ctx) else {
            return Ok(Decision::without_record(experiment, None, AssignReason::MissingBucketingAttribute));
        };
        let now = vexil_store::now();
        let key = (experiment.id.clone(), unit);
        if let Some(record) = self.cache.get(&key).filter(|r| r.expires_at.is_none_or(|t| t > now)) {
            return Ok(sticky(experiment, record));
        }
        let (experiment_id, unit) = key;
        match experiment.compiled.place(ctx) {
            Placement::Variant(i) => {
                // Insert-if-absent answers with an earlier record if there is one, so a user
                // stored before a weight change keeps their variant without a separate read.
                let ours = Assignment {
                    experiment_id: experiment_id.to_string(),
                    unit: unit.clone(),
                    variant: experiment.experiment().variants[i].key.clone(),
                    assignment_id: uuid::Uuid::new_v4().to_string(),
                    assigned_at: now,
                    expires_at: self.ttl.and_then(|ttl| now.checked_add_signed(ttl)),
                };
                let assignment_id = ours.assignment_id.clone();
                let stored = Arc::new(self.write(ours).await?);
                self.cache.insert((experiment_id, unit), stored.clone());
                if stored.assignment_id == assignment_id {
                    Ok(Decision {
                        experiment: experiment.clone(),
                        variant: Some(stored.variant.clone()),
                        record: Some(stored),
                        reason: AssignReason::Assigned,
                    })
                } else {
                    Ok(sticky(experiment, stored))
                }
            }
            placement => {
                // Not placed now, but placed before (targeting or traffic changed while
                // paused): the stored variant still stands.
                if let Some(stored) = self.store.get_assignment(&experiment_id, &unit, now).await? {
                    let stored = Arc::new(stored);
                    self.cache.insert((experiment_id, unit), stored.clone());
                    return Ok(sticky(experiment, stored));
                }
                let reason = match placement {
                    Placement::NotTargeted => AssignReason::TargetingNotMatched,
                    Placement::NotInTraffic => AssignReason::TrafficExcluded,
                    _ => AssignReason::MissingBucketingAttribute,
                };
                Ok(Decision::without_record(experiment, None, reason))
            }
        }
    }

    /// Queues a first assignment for the next group commit and waits for the stored record.
    async fn write(&self, assignment: Assignment) -> Result<Assignment, AssignError> {
        let (reply, stored) = oneshot::channel();
        self.writes.send((assignment, reply)).await.map_err(|_| AssignError::WriterStopped)?;
        Ok(stored.await.map_err(|_| AssignError::WriterStopped)??)
    }
}

fn sticky(experiment: &Arc<LiveExperiment>, record: Arc<Assignment>) -> Decision {
    Decision {
        experiment: experiment.clone(),
        variant: Some(record.variant.clone()),
        record: Some(record),
        reason: AssignReason::Sticky,
    }
}

/// The group-commit writer: every record queued while the previous transaction ran goes into
/// the next one.
async fn write_batches(
    store: Arc<dyn Store>,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<PendingWrite>>>,
    flush: Flush,
) {
    let mut queue = queue.lock().await;
    let mut pending = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut pending, MAX_BATCH).await > 0 {
        let (batch, replies): (Vec<_>, Vec<_>) = pending.drain(..).unzip();
        match store.assign_many_if_absent(batch, flush).await {
            Ok(stored) => {
                for (reply, record) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(record));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Deletes expired assignments every `interval` until `shutdown`.
pub async fn purge_expired(store: Arc<dyn Store>, interval: Duration, shutdown: CancellationToken) {
    let store = store.as_ref();
    crate::service::every(interval, shutdown, move || async move {
        match store.purge_expired_assignments(vexil_store::now()).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired assignments purged"),
            Err(e) => tracing::warn!(error = %e, "purging expired assignments failed"),
        }
    })
    .await;
}

/// Assigns and, for a first assignment, emits the exposure event (fire-and-forget: a full
/// event queue drops it and counts the drop, never delaying or failing the call). Repeat
/// calls do not emit: the first exposure is what metrics count from. The exposure goes to
/// `events`, the experiment's environment's.
pub async fn assign(
    assigner: &Assigner,
    events: EventsIn<'_>,
    experiment: &Arc<LiveExperiment>,
    ctx: &Context<'_>,
) -> Result<Decision, AssignError> {
    let decision = assigner.assign(experiment, ctx).await?;
    if let (AssignReason::Assigned, Some(record)) = (decision.reason, &decision.record) {
        events.emit_exposure(vexil_events::Event {
            event_id: record.assignment_id.clone(),
            event: "exposure".into(),
            kind: vexil_events::EventType::Exposure,
            user_id: ctx.user_id().to_string(),
            timestamp: record.assigned_at,
            value: None,
            properties: serde_json::Map::new(),
            experiment_key: Some(experiment.experiment().key.clone()),
            variant: Some(record.variant.clone()),
        });
    }
    Ok(decision)
}
