//! Hourly and daily counters per event name, per experiment variant, and per flag variant
//! (evaluation counts): events, sum of values and exact unique users.
//!
//! Unique users are exact: each counter's set of users is stored, and a user adds to
//! `unique_users` only the first time they appear in that window. In memory, a counter keeps
//! the users it is known to have: all of them for a counter this session created (a window's
//! first event), else those seen or looked up so far. A batch's lookups are made together —
//! one [`PartitionStore::counters`] call for the counters not in memory, one
//! [`PartitionStore::known_members`] call for users a counter may already have — so processing
//! pays one database round trip per batch, not one per event. Counters of old windows leave
//! memory and are read back if a late event touches them.
//!
//! The stage is [`count`], per event; the batch's events are then counted together
//! ([`Counters::add_events`]) before the batch's commit.

use crate::environment;
use crate::error::Error;
use crate::event::{EvaluationCounts, StoredEvent};
use crate::store::PartitionStore;
use chrono::{DateTime, Utc};
use hashbrown::{Equivalent, HashMap, HashSet};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Prefix of the event name under which flag evaluation counts are kept (`$` cannot start a
/// sent event's name, so these never mix with real events).
pub const EVALUATION_PREFIX: &str = "$evaluation:";

/// Counter windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Hour,
    Day,
}

impl Window {
    pub const BOTH: [Window; 2] = [Window::Hour, Window::Day];

    /// `hour` or `day`, as in `?window=`.
    pub fn parse(name: &str) -> Option<Window> {
        match name {
            "hour" => Some(Window::Hour),
            "day" => Some(Window::Day),
            _ => None,
        }
    }

    /// `hour` or `day`, as stored.
    pub fn name(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }

    fn seconds(self) -> i64 {
        match self {
            Window::Hour => 3600,
            Window::Day => 86_400,
        }
    }

    /// Start (Unix seconds, UTC) of the window holding `at` (Unix milliseconds).
    pub fn start_of(self, at_millis: i64) -> i64 {
        at_millis.div_euclid(1000).div_euclid(self.seconds()) * self.seconds()
    }
}

/// One counter's identity.
#[derive(Clone, Debug, Eq)]
pub struct CounterKey {
    pub window: Window,
    /// Unix seconds.
    pub start: i64,
    pub event: String,
    /// Empty for the per-event counter.
    pub experiment: String,
    /// Empty for the per-event counter.
    pub variant: String,
}

/// One counter's values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub count: u64,
    pub sum: f64,
    pub unique_users: u64,
}

/// One window of a counter query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterRow {
    pub start: DateTime<Utc>,
    pub event: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub experiment: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant: String,
    #[serde(flatten)]
    pub counter: Counter,
}

/// One event name's totals over a span of windows: what [`crate::store::Stats::event_totals`]
/// answers to list the event names that were seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventTotal {
    pub event: String,
    pub count: u64,
    pub sum: f64,
}

impl CounterKey {
    fn borrowed(&self) -> CounterRef<'_> {
        CounterRef {
            window: self.window,
            start: self.start,
            event: &self.event,
            experiment: &self.experiment,
            variant: &self.variant,
        }
    }
}

impl PartialEq for CounterKey {
    fn eq(&self, other: &CounterKey) -> bool {
        self.borrowed() == other.borrowed()
    }
}

impl Hash for CounterKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.borrowed().hash(state);
    }
}

/// A [`CounterKey`] of borrowed strings, to find a counter without allocating. The owned key
/// hashes and compares as this form of it, so either finds the other.
#[derive(Clone, Copy, Debug, Eq)]
struct CounterRef<'a> {
    window: Window,
    start: i64,
    event: &'a str,
    experiment: &'a str,
    variant: &'a str,
}

impl PartialEq for CounterRef<'_> {
    fn eq(&self, other: &CounterRef<'_>) -> bool {
        self.window == other.window
            && self.start == other.start
            && same_text(self.event, other.event)
            && same_text(self.experiment, other.experiment)
            && same_text(self.variant, other.variant)
    }
}

impl Hash for CounterRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.window.hash(state);
        self.start.hash(state);
        self.event.hash(state);
        self.experiment.hash(state);
        self.variant.hash(state);
    }
}

impl Equivalent<CounterKey> for CounterRef<'_> {
    fn equivalent(&self, key: &CounterKey) -> bool {
        *self == key.borrowed()
    }
}

/// Whether two texts are equal, without comparing the bytes of two empty ones. `str`'s `==`
/// calls `memcmp` even for zero bytes, and an empty `String` points at no memory: glibc's
/// AVX-512 `memcmp` still issues a masked load from that address, which the CPU completes with
/// a microcode assist, about 120 ns against 2 ns for a short text. Every per-event counter's
/// experiment and variant are empty, so every lookup of one compared two of them: 6–8 % of a
/// distributed node's CPU while it processed (BENCHMARKS.md, "Empty texts compared").
fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

impl CounterRef<'_> {
    fn to_owned(self) -> CounterKey {
        CounterKey {
            window: self.window,
            start: self.start,
            event: self.event.to_owned(),
            experiment: self.experiment.to_owned(),
            variant: self.variant.to_owned(),
        }
    }
}

/// One addition to a counter: `count` events with `value` in total, of `user` (none for
/// evaluation counts).
#[derive(Clone, Copy, Debug)]
struct Contribution<'a> {
    key: CounterRef<'a>,
    user: Option<&'a str>,
    count: u64,
    value: f64,
}

/// A batch's events waiting to be counted, with the experiments (and variants) each is
/// attributed to: they are counted together so that the batch pays one round trip to the store.
#[derive(Default)]
pub(crate) struct Pending<'a> {
    events: Vec<PendingEvent<'a>>,
}

/// An event waiting to be counted: the event, its name as its environment's counters are kept
/// (see [`crate::environment`]), and the experiments (and variants) it is attributed to.
type PendingEvent<'a> = (&'a StoredEvent, Cow<'a, str>, Vec<(String, String)>);

/// The counters stage of one event: it waits in `pending` for the end of its batch.
pub(crate) fn count<'a>(pending: &mut Pending<'a>, stored: &'a StoredEvent, attribution: Vec<(String, String)>) {
    let name = environment::qualify(stored.env.as_deref(), &stored.event.event);
    pending.events.push((stored, name, attribution));
}

impl Pending<'_> {
    /// The contributions of every event waiting, in their order: each event's hourly and daily
    /// counters, overall and per variant it is attributed to.
    fn contributions(&self) -> Vec<Contribution<'_>> {
        let mut out = Vec::with_capacity(self.events.len() * 4);
        for (stored, name, attribution) in &self.events {
            let event = &stored.event;
            let at = event.timestamp.timestamp_millis();
            let value = event.value.unwrap_or(0.0);
            let user = Some(event.user_id.as_str());
            for window in Window::BOTH {
                let start = window.start_of(at);
                let key = |experiment, variant| CounterRef { window, start, event: name, experiment, variant };
                out.push(Contribution { key: key("", ""), user, count: 1, value });
                for (experiment, variant) in attribution {
                    out.push(Contribution { key: key(experiment, variant), user, count: 1, value });
                }
            }
        }
        out
    }
}

/// `user`'s member id, shared with the contribution before if it was the same user's: an
/// event's contributions are consecutive, and so are a user's events more often than not, so
/// one id serves every counter they enter (allocating one per counter was the counters' largest
/// cost, and their memory's).
fn shared_member(last: &mut Option<Arc<str>>, user: &str) -> Arc<str> {
    match last {
        Some(member) if **member == *user => Arc::clone(member),
        _ => Arc::clone(last.insert(Arc::from(user))),
    }
}

/// A counter in memory.
struct Slot {
    key: CounterKey,
    counter: Counter,
    /// Shared with `new_users` until the commit: a new member's id is allocated once.
    users: HashSet<Arc<str>>,
    /// Whether `users` holds every user of the counter (it was created this session), so a
    /// user not in it is new without asking the store.
    complete: bool,
    dirty: bool,
}

/// The counters in memory, and what changed since the last commit.
pub(crate) struct Counters {
    slots: Vec<Slot>,
    index: HashMap<CounterKey, usize>,
    /// New members since the last commit: (slot, user).
    new_users: Vec<(usize, Arc<str>)>,
    newest_start: i64,
    /// Unique-user memberships kept in memory between commits at most (see
    /// [`Counters::committed`]).
    member_capacity: usize,
}

impl Counters {
    /// No counter in memory; up to `member_capacity` known members kept between batches.
    pub fn new(member_capacity: usize) -> Counters {
        Counters { slots: Vec::new(), index: HashMap::new(), new_users: Vec::new(), newest_start: 0, member_capacity }
    }

    /// Counts a batch's events. `new_to_store` are the batch's users the store has no row for:
    /// they are in no counter's unique users (see [`crate::enrich::Users`]), so the store is not
    /// asked about them.
    pub fn add_events(
        &mut self,
        store: &mut dyn PartitionStore,
        pending: &Pending<'_>,
        new_to_store: &HashSet<String>,
    ) -> Result<(), Error> {
        self.add(store, &pending.contributions(), new_to_store)
    }

    /// Adds a batch's contributions, reading what memory lacks from `store` in two calls; users
    /// in `new_to_store` are known to be in no counter yet.
    fn add(
        &mut self,
        store: &mut dyn PartitionStore,
        contributions: &[Contribution<'_>],
        new_to_store: &HashSet<String>,
    ) -> Result<(), Error> {
        let slots = self.slots_of(store, contributions)?;
        // Members new to memory whose counter does not hold all its users in memory: the store
        // says which of them the counter already has. A user repeated in the batch is found in
        // memory the second time, so each is asked once.
        let mut unsure: Vec<(usize, Arc<str>)> = Vec::new();
        let mut last_member: Option<Arc<str>> = None;
        for (c, &slot) in contributions.iter().zip(&slots) {
            let s = &mut self.slots[slot];
            s.counter.count += c.count;
            s.counter.sum += c.value;
            s.dirty = true;
            self.newest_start = self.newest_start.max(c.key.start);
            let Some(user) = c.user else { continue };
            // One probe both asks and inserts; only a user new to the set makes a member.
            let mut added = None;
            s.users.get_or_insert_with(user, |_| {
                let member = shared_member(&mut last_member, user);
                added = Some(Arc::clone(&member));
                member
            });
            let Some(member) = added else { continue };
            if s.complete || new_to_store.contains(user) {
                s.counter.unique_users += 1;
                self.new_users.push((slot, member));
            } else {
                unsure.push((slot, member));
            }
        }
        if unsure.is_empty() {
            return Ok(());
        }
        let asked: Vec<(&CounterKey, &str)> =
            unsure.iter().map(|(slot, user)| (&self.slots[*slot].key, &**user)).collect();
        let known = store.known_members(&asked)?;
        for ((slot, member), known) in unsure.into_iter().zip(known) {
            // A member the store knows stays in memory, as what the store holds.
            if !known {
                self.slots[slot].counter.unique_users += 1;
                self.new_users.push((slot, member));
            }
        }
        Ok(())
    }

    /// Adds flushed evaluation counts to the `$evaluation:<flag>` counters.
    pub fn add_evaluations(&mut self, store: &mut dyn PartitionStore, counts: &EvaluationCounts) -> Result<(), Error> {
        let env = counts.env.as_deref();
        let events: Vec<String> = counts
            .counts
            .iter()
            .map(|(flag, _, _)| environment::qualify(env, &format!("{EVALUATION_PREFIX}{flag}")).into_owned())
            .collect();
        let mut contributions = Vec::with_capacity(events.len() * 2);
        for (event, (_, variant, n)) in events.iter().zip(&counts.counts) {
            for window in Window::BOTH {
                let start = window.start_of(counts.hour * 1000);
                let key = CounterRef { window, start, event, experiment: "", variant };
                contributions.push(Contribution { key, user: None, count: *n, value: 0.0 });
            }
        }
        self.add(store, &contributions, &HashSet::new())
    }

    /// The slot of each contribution's counter, in order: one lookup each, and one call to
    /// `store` for the counters memory lacks.
    fn slots_of(
        &mut self,
        store: &mut dyn PartitionStore,
        contributions: &[Contribution<'_>],
    ) -> Result<Vec<usize>, Error> {
        let found: Vec<Option<usize>> = contributions.iter().map(|c| self.index.get(&c.key).copied()).collect();
        let missing = contributions.iter().zip(&found).filter(|(_, slot)| slot.is_none()).map(|(c, _)| c.key);
        self.load(store, missing)?;
        Ok(contributions.iter().zip(found).map(|(c, slot)| slot.unwrap_or_else(|| self.index[&c.key])).collect())
    }

    /// Brings the counters of `keys` (none of them in memory) in from `store`, in one call.
    fn load<'k>(
        &mut self,
        store: &mut dyn PartitionStore,
        keys: impl Iterator<Item = CounterRef<'k>>,
    ) -> Result<(), Error> {
        let mut missing: Vec<CounterKey> = Vec::new();
        let mut seen: HashSet<CounterRef<'_>> = HashSet::new();
        for key in keys {
            if seen.insert(key) {
                missing.push(key.to_owned());
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let stored: HashMap<CounterKey, Counter> =
            store.counters(&missing.iter().collect::<Vec<_>>())?.into_iter().collect();
        for key in missing {
            let (counter, complete) = match stored.get(&key) {
                Some(counter) => (*counter, false),
                None => (Counter::default(), true),
            };
            self.index.insert(key.clone(), self.slots.len());
            self.slots.push(Slot { key, counter, users: HashSet::new(), complete, dirty: false });
        }
        Ok(())
    }

    /// The counters changed since the last commit.
    pub fn changed(&self) -> Vec<(&CounterKey, &Counter)> {
        self.slots.iter().filter(|s| s.dirty).map(|s| (&s.key, &s.counter)).collect()
    }

    /// The counters' new members since the last commit.
    pub fn new_members(&self) -> Vec<(&CounterKey, &str)> {
        self.new_users.iter().map(|(slot, user)| (&self.slots[*slot].key, &**user)).collect()
    }

    /// After a commit: nothing is changed any more, counters of windows more than two days
    /// older than the newest one (which rarely see events again) leave memory, and so do the
    /// known members beyond the capacity.
    pub fn committed(&mut self) {
        self.new_users.clear();
        let horizon = self.newest_start - 2 * 86_400;
        if self.slots.iter().any(|s| s.key.start < horizon) {
            self.slots.retain(|s| s.key.start >= horizon);
            self.index = self.slots.iter().enumerate().map(|(i, s)| (s.key.clone(), i)).collect();
        }
        for slot in &mut self.slots {
            slot.dirty = false;
        }
        self.forget_members_beyond_capacity();
    }

    /// Keeps at most `capacity` known members from the next commit on.
    pub fn set_member_capacity(&mut self, capacity: usize) {
        self.member_capacity = capacity;
    }

    /// The known members in memory.
    pub fn members_held(&self) -> usize {
        self.slots.iter().map(|s| s.users.len()).sum()
    }

    /// Known members are a cache of what the store holds (every new member is committed by
    /// now): over the capacity, the largest sets leave memory until half the capacity is
    /// left, so a steady stream of new users does not empty the cache at every commit. A
    /// counter that forgets its members is no longer complete: its next users are looked up.
    fn forget_members_beyond_capacity(&mut self) {
        let mut held = self.members_held();
        if held <= self.member_capacity {
            return;
        }
        let mut largest_first: Vec<usize> = (0..self.slots.len()).collect();
        largest_first.sort_unstable_by_key(|&i| std::cmp::Reverse(self.slots[i].users.len()));
        for i in largest_first {
            if held <= self.member_capacity / 2 {
                break;
            }
            let slot = &mut self.slots[i];
            held -= slot.users.len();
            slot.users = HashSet::new();
            slot.complete = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are equal exactly when every field is, empty texts included, whether compared owned,
    /// borrowed or owned against borrowed (as the index finds them), and equal keys hash alike.
    #[test]
    fn counter_keys_are_equal_exactly_when_every_field_is() {
        let texts = ["", "a", "b", "ab"];
        let mut keys = Vec::new();
        for window in Window::BOTH {
            for start in [0, 3600] {
                for event in texts {
                    for experiment in texts {
                        for variant in texts {
                            let key = CounterRef { window, start, event, experiment, variant };
                            keys.push(key.to_owned());
                        }
                    }
                }
            }
        }
        let index: HashMap<CounterKey, usize> = keys.iter().cloned().zip(0..).collect();
        assert_eq!(index.len(), keys.len(), "every key is distinct");
        for (i, a) in keys.iter().enumerate() {
            assert_eq!(index.get(&a.borrowed()), Some(&i), "{a:?} found by its borrowed form");
            for b in &keys {
                let fields_equal = (a.window, a.start, &a.event, &a.experiment, &a.variant)
                    == (b.window, b.start, &b.event, &b.experiment, &b.variant);
                assert_eq!(a == b, fields_equal, "{a:?} against {b:?}");
                assert_eq!(a.borrowed() == b.borrowed(), fields_equal);
                assert_eq!(a.borrowed().equivalent(b), fields_equal);
            }
        }
    }
}
