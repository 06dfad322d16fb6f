//! Enrichment: which experiments (and variants) an event belongs to.
//!
//! Exposure events (`type: exposure` with `experiment_key` and `variant`) establish a user's
//! assignment and the time of their first exposure. Any event is then attributed to each
//! experiment the user is assigned to whose first exposure is at or before the event's
//! timestamp; events before it belong to no variant of that experiment (SPEC 1.3).
//!
//! Assignments are sticky: a later exposure naming another variant does not move the user (it
//! is counted in `variant_conflicts_total`), and an exposure older than the known first one
//! moves the first exposure back.
//!
//! The stage is [`enrich`]; the [`aggregate`](crate::aggregate) stage then works on the user it
//! found, and [`Enriched::into_attribution`] hands the attribution on to the archive and the
//! counters.

use crate::environment;
use crate::error::Error;
use crate::event::{Event, EventType};
use crate::metrics::Metrics;
use crate::store::PartitionStore;
use foldhash::fast::RandomState;
use hashbrown::HashSet;
use hashlink::LruCache;
use serde::{Deserialize, Serialize};

/// A user's raw per-metric sums within one experiment (see [`crate::aggregate`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    pub metric: String,
    pub x: f64,
    pub y: f64,
}

/// A user's assignment to one experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub experiment: String,
    pub variant: String,
    /// Unix milliseconds of the earliest exposure seen.
    pub first_exposure: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<MetricValue>,
}

/// What an exposure changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposure {
    /// The user entered the experiment.
    New,
    /// The user was already in it; the first exposure may have moved earlier.
    Known,
    /// The exposure named another variant than the user's; ignored.
    Conflict,
}

/// Everything the pipeline keeps per user.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    pub assignments: Vec<Assignment>,
}

impl UserState {
    /// Records an exposure to `experiment` in `variant` at `at` (Unix ms).
    pub fn expose(&mut self, experiment: &str, variant: &str, at: i64) -> Exposure {
        match self.assignments.iter_mut().find(|a| a.experiment == experiment) {
            Some(a) if a.variant != variant => Exposure::Conflict,
            Some(a) => {
                a.first_exposure = a.first_exposure.min(at);
                Exposure::Known
            }
            None => {
                self.assignments.push(Assignment {
                    experiment: experiment.to_owned(),
                    variant: variant.to_owned(),
                    first_exposure: at,
                    values: Vec::new(),
                });
                Exposure::New
            }
        }
    }

    /// Indices of the assignments valid at `at` (Unix ms).
    pub fn active_at(&self, at: i64) -> impl Iterator<Item = usize> + '_ {
        self.assignments.iter().enumerate().filter(move |(_, a)| a.first_exposure <= at).map(|(i, _)| i)
    }
}

/// The users of one log partition that processing needs, in memory: a bounded cache in front of
/// the [`PartitionStore`]. A batch first reads its users that memory lacks ([`Users::load`]);
/// those the store has no row for are new to the partition, and the batch writes a row for each
/// of them (an empty state for a user never exposed). So every user counted in a counter's unique
/// users has a row, and a user the store has no row for is in no counter's unique users: the
/// counters stage asks the store about memberships only for users it already had
/// ([`Users::new_to_store`]). After each commit the least recently used users beyond the capacity
/// leave memory; they are committed by then, so the store holds their state for the next batch
/// that needs them.
pub(crate) struct Users {
    /// Hashed with foldhash, as every per-user set of processing: SipHash, the standard one, was
    /// a few percent of the processor's time when every user of a batch is looked up.
    cached: LruCache<String, UserState, RandomState>,
    changed: HashSet<String>,
    /// The users of the current batch the store had no row for (until its commit writes them).
    new_to_store: HashSet<String>,
    capacity: usize,
}

impl Users {
    /// No user in memory; up to `capacity` kept between batches.
    pub fn new(capacity: usize) -> Users {
        Users {
            cached: LruCache::with_hasher(usize::MAX, RandomState::default()),
            changed: HashSet::new(),
            new_to_store: HashSet::new(),
            capacity,
        }
    }

    /// Brings the states of `user_ids` that memory lacks in from `store`, in one call, and notes
    /// the ones the store has no row for.
    pub fn load(&mut self, store: &mut dyn PartitionStore, user_ids: &[&str]) -> Result<(), Error> {
        let mut asked = HashSet::new();
        let missing: Vec<&str> =
            user_ids.iter().copied().filter(|id| self.cached.get(*id).is_none() && asked.insert(*id)).collect();
        if !missing.is_empty() {
            let mut found = store.users(&missing)?;
            for user_id in missing {
                match found.remove_entry(user_id) {
                    Some((user_id, state)) => {
                        self.cached.insert(user_id, state);
                    }
                    None => {
                        self.new_to_store.insert(user_id.to_owned());
                    }
                }
            }
        }
        Ok(())
    }

    /// The users of the current batch the store has no row for: they are in no counter's unique
    /// users yet.
    pub fn new_to_store(&self) -> &HashSet<String> {
        &self.new_to_store
    }

    /// The experiments (and variants) `event` belongs to, without changing anything (for records
    /// replayed into the archive only: they were enriched before the checkpoint).
    pub fn attribution(&self, event: &Event, env: Option<&str>) -> Vec<(String, String)> {
        let at = event.timestamp.timestamp_millis();
        self.cached.peek(event.user_id.as_str()).map_or_else(Vec::new, |user| attribution(user, at, env))
    }

    /// The users changed since the last commit (all of them in memory: users leave memory only
    /// after a commit).
    pub fn changed(&self) -> Vec<(&str, &UserState)> {
        self.changed
            .iter()
            .filter_map(|user_id| self.cached.peek(user_id.as_str()).map(|state| (user_id.as_str(), state)))
            .collect()
    }

    /// Keeps at most `capacity` users from the next commit on.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// The users in memory.
    pub fn held(&self) -> usize {
        self.cached.len()
    }

    /// After a commit: nothing is changed any more, every user has a row, and the least recently
    /// used users beyond the capacity leave memory.
    pub fn committed(&mut self) {
        self.changed.clear();
        self.new_to_store.clear();
        while self.cached.len() > self.capacity {
            self.cached.remove_lru();
        }
    }
}

/// One event's user after the enrich stage, for the aggregate stage to work on.
pub(crate) struct Enriched<'a> {
    /// The user's state; no assignment when the user was never exposed (the event then belongs
    /// to no experiment).
    user: &'a mut UserState,
    user_id: &'a str,
    /// The event's environment: only its assignments count.
    env: Option<&'a str>,
    /// The event's time, Unix ms.
    at: i64,
    /// The experiment (qualified) and variant the event's exposure has just entered the user into.
    entered: Option<(String, &'a str)>,
    /// Whether the user must be written with the next commit.
    changed: bool,
    changed_users: &'a mut HashSet<String>,
}

impl<'a> Enriched<'a> {
    /// The experiment (qualified, see [`crate::environment`]) and variant the event's exposure
    /// has just entered the user into.
    pub fn entered(&self) -> Option<(&str, &'a str)> {
        self.entered.as_ref().map(|(experiment, variant)| (experiment.as_str(), *variant))
    }

    /// The user's assignments in the event's environment that the event falls under (first
    /// exposure at or before it).
    pub fn active_mut(&mut self) -> impl Iterator<Item = &mut Assignment> {
        let (at, env) = (self.at, self.env);
        self.user
            .assignments
            .iter_mut()
            .filter(move |a| a.first_exposure <= at && environment::split(&a.experiment).0 == env)
    }

    /// Records that the user's metric values changed, so the user is written with the commit.
    pub fn values_changed(&mut self) {
        self.changed = true;
    }

    /// The experiments (and variants) the event is attributed to. The user is marked for the
    /// next commit here, once, if the exposure or the metric values changed anything.
    pub fn into_attribution(self) -> Vec<(String, String)> {
        if self.changed {
            // A user's events of one batch (an exposure, then a purchase) find them marked.
            self.changed_users.get_or_insert_with(self.user_id, str::to_owned);
        }
        attribution(self.user, self.at, self.env)
    }
}

/// The enrich stage: applies an exposure to its user's assignments (entering them into the
/// experiment, or moving their first exposure back) and finds the user `event` is about.
/// `env` is the event's environment: its experiments are kept under qualified keys.
pub(crate) fn enrich<'a>(
    users: &'a mut Users,
    event: &'a Event,
    env: Option<&'a str>,
    metrics: &Metrics,
) -> Enriched<'a> {
    let at = event.timestamp.timestamp_millis();
    // A user not in memory after the batch's load is new to the store: their row is written with
    // this batch, whatever the event, so that a user without a row is in no counter's unique users.
    let new = !users.cached.contains_key(event.user_id.as_str());
    if new {
        users.cached.insert(event.user_id.clone(), UserState::default());
    }
    let user = users.cached.get_mut(event.user_id.as_str()).expect("found or inserted above");
    let (mut entered, mut changed) = (None, new);
    if let (EventType::Exposure, Some(experiment), Some(variant)) = (event.kind, &event.experiment_key, &event.variant)
    {
        let experiment = environment::qualify(env, experiment);
        let before = user.assignments.iter().find(|a| a.experiment == experiment).map(|a| a.first_exposure);
        match user.expose(&experiment, variant, at) {
            Exposure::New => {
                changed = true;
                entered = Some((experiment.into_owned(), variant.as_str()));
            }
            Exposure::Known => changed |= before.is_some_and(|first| at < first),
            Exposure::Conflict => Metrics::add(&metrics.variant_conflicts_total, 1),
        }
    }
    let changed_users = &mut users.changed;
    Enriched { user, user_id: &event.user_id, env, at, entered, changed, changed_users }
}

/// The experiments (and variants) of `user`'s assignments in environment `env` valid at `at`
/// (Unix ms), by their keys in that environment.
fn attribution(user: &UserState, at: i64, env: Option<&str>) -> Vec<(String, String)> {
    user.active_at(at)
        .map(|i| &user.assignments[i])
        .filter_map(|a| match environment::split(&a.experiment) {
            (in_env, key) if in_env == env => Some((key.to_owned(), a.variant.clone())),
            _ => None,
        })
        .collect()
}
