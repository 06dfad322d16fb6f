//! Flags that serve an experiment (`serve: {"experiment": key}`): the user's arm comes from the
//! server's `POST /v1/assign`, never from a local placement, so the SDK cannot disagree with the
//! server about it (assignments are sticky and stored there; a local placement would drift as
//! soon as weights or traffic change).
//!
//! Arms are cached per (experiment, user id, context) in a bounded cache: the server's answer
//! depends on the context too (targeting, a `bucket_by` attribute), so an answer is reused only
//! for the same attributes; an application whose users keep their attributes fetches once per
//! user and experiment. A getter never waits for the
//! network: on a miss it serves what the server serves a user in no experiment (the flag's off
//! variant) and says so ([`Resolution::ArmUnknown`](crate::Resolution::ArmUnknown)), while one
//! background request per (experiment, user) fetches the arm. An entry older than its freshness
//! keeps being served while it is refreshed, so pauses, conclusions and context changes reach the
//! SDK within that time. The exposure is the server's business: `/v1/assign` emits it on the
//! first assignment only, exactly as a server-side evaluation would, so the SDK emits none.

use quick_cache::sync::Cache;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vexil_core::{Context, ExperimentResolver, ExperimentVariant};

/// What the server said about one user in one experiment.
#[derive(Debug)]
enum Arm {
    /// In a variant that carries a flag value.
    In { variant: String, value: Value },
    /// In no variant (not targeted, outside the traffic, paused, a draft, unknown, or a variant
    /// without a value): such a flag serves its off variant.
    Out,
    /// The server could not be asked; tried again after the retry delay.
    Unreachable,
}

#[derive(Debug)]
struct Entry {
    arm: Arm,
    fresh_until: Instant,
}

/// The part of `/v1/assign`'s answer the SDK needs.
#[derive(Deserialize)]
struct AssignAnswer {
    variant: Option<String>,
    value: Option<Value>,
}

/// The experiment key, the user id and a fingerprint of the context's attributes.
type Key = (String, String, u64);

/// The arms known to a client, and the requests that fetch them.
pub(crate) struct Assignments {
    cache: Cache<Key, Arc<Entry>>,
    in_flight: Mutex<HashSet<Key>>,
    http: reqwest::Client,
    url: String,
    key: String,
    fresh_for: Duration,
    retry_after: Duration,
    runtime: tokio::runtime::Handle,
}

impl Assignments {
    pub fn new(options: &crate::Options, http: reqwest::Client, runtime: tokio::runtime::Handle) -> Assignments {
        Assignments {
            cache: Cache::new(options.assignment_cache_entries.max(1)),
            in_flight: Mutex::new(HashSet::new()),
            http,
            url: format!("{}/v1/assign", options.base_url),
            key: options.key.clone(),
            fresh_for: options.assignment_freshness,
            retry_after: options.min_retry_delay.max(Duration::from_secs(1)),
            runtime,
        }
    }

    /// The arms of `ctx` in `experiments` that are known; starts fetching the others and those
    /// that are no longer fresh. Never waits.
    pub fn lookup(self: &Arc<Self>, experiments: &[String], ctx: &Context<'_>) -> KnownArms {
        let now = Instant::now();
        let fingerprint = fingerprint(ctx);
        let mut known = HashMap::new();
        for experiment in experiments {
            let key = (experiment.clone(), ctx.user_id().to_string(), fingerprint);
            let entry = self.cache.get(&key);
            if entry.as_ref().is_none_or(|e| e.fresh_until <= now) {
                self.fetch(key, ctx);
            }
            if let Some(entry) = entry.filter(|e| !matches!(e.arm, Arm::Unreachable)) {
                known.insert(experiment.clone(), entry);
            }
        }
        KnownArms(known)
    }

    /// Fetches one arm in the background, unless a request for it is already running.
    fn fetch(self: &Arc<Self>, key: Key, ctx: &Context<'_>) {
        if !self.in_flight.lock().expect("in-flight set poisoned").insert(key.clone()) {
            return;
        }
        let body = json!({"experiment_key": key.0, "user_id": key.1, "context": ctx.attributes()});
        let assignments = self.clone();
        self.runtime.spawn(async move {
            let arm = assignments.request(&body).await.unwrap_or_else(|e| {
                tracing::warn!(experiment = %key.0, error = %e, "cannot fetch an experiment assignment");
                Arm::Unreachable
            });
            let fresh_for =
                if matches!(arm, Arm::Unreachable) { assignments.retry_after } else { assignments.fresh_for };
            assignments.cache.insert(key.clone(), Arc::new(Entry { arm, fresh_until: Instant::now() + fresh_for }));
            assignments.in_flight.lock().expect("in-flight set poisoned").remove(&key);
        });
    }

    async fn request(&self, body: &Value) -> Result<Arm, String> {
        let response = self.http.post(&self.url).bearer_auth(&self.key).json(body).send().await;
        let response = response.map_err(|e| e.to_string())?;
        match response.status() {
            StatusCode::OK => {
                let answer: AssignAnswer = response.json().await.map_err(|e| e.to_string())?;
                Ok(match (answer.variant, answer.value) {
                    (Some(variant), Some(value)) => Arm::In { variant, value },
                    _ => Arm::Out,
                })
            }
            // A draft or a deleted experiment: the server's evaluation serves the off variant.
            StatusCode::NOT_FOUND => Ok(Arm::Out),
            status => Err(format!("the server answered {status}")),
        }
    }
}

fn fingerprint(ctx: &Context<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(ctx.attributes()).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

/// The arms known for one evaluation's context, by experiment key.
pub(crate) struct KnownArms(HashMap<String, Arc<Entry>>);

impl KnownArms {
    /// Whether every one of `experiments` has a known arm.
    pub fn covers(&self, experiments: &[String]) -> bool {
        experiments.iter().all(|e| self.0.contains_key(e))
    }
}

impl ExperimentResolver for KnownArms {
    fn resolve(&self, experiment_key: &str, _: &Context<'_>) -> Option<ExperimentVariant<'_>> {
        match &self.0.get(experiment_key)?.arm {
            Arm::In { variant, value } => Some(ExperimentVariant { variant, value }),
            Arm::Out | Arm::Unreachable => None,
        }
    }
}

/// Answers "in no experiment" and records which experiments an evaluation reached, so only
/// evaluations that reach one look up arms (the common flag pays nothing).
#[derive(Default)]
pub(crate) struct Probe(std::cell::RefCell<Vec<String>>);

impl Probe {
    /// The experiments reached so far, each once, in the order first reached.
    pub fn reached(&self) -> Vec<String> {
        std::mem::take(&mut self.0.borrow_mut())
    }
}

impl ExperimentResolver for Probe {
    fn resolve(&self, experiment_key: &str, _: &Context<'_>) -> Option<ExperimentVariant<'_>> {
        let mut reached = self.0.borrow_mut();
        if !reached.iter().any(|k| k == experiment_key) {
            reached.push(experiment_key.to_string());
        }
        None
    }
}
