//! The bodies of the cargo-fuzz targets for the admin documents (`fuzz/fuzz_targets/`): each
//! decodes arbitrary bytes as a rollout plan, a budget or an experiment the way the API does,
//! validates it, and then does with a valid one what the service does — steps a plan through
//! its lifecycle and the scheduler's decisions, decides a budget's thresholds, compiles an
//! experiment, places users and moves it through its lifecycle — under arbitrary signal
//! readings and times. They must never panic; the `assert!`s are properties every valid
//! document keeps.
//!
//! They live here, not in the fuzz crate, so that the normal test suite replays the committed
//! seeds (`fuzz/seeds/<target>/`) through the same code on stable Rust.
//!
//! An input is sections separated by a line `---`: the document (JSON, as the API receives it),
//! then what the target needs beside it, then a script of raw bytes (readings, times, actions)
//! read by [`Script`], which reads zeros once it runs out.

use crate::service::catalog;
use crate::service::experiments;
use crate::service::safety::budgets::{Budget, Progress};
use crate::service::safety::plans::{self, Action, Loaded, Plan, PlanRequest, State};
use crate::service::safety::scheduler::{budget_body, decide_budget, decide_plan, parse_budget, PlanDecision};
use crate::service::safety::signals::{Signals, Totals};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};
use vexil_core::experiment::LifecycleAction;
use vexil_core::{Context, FlagSet};
use vexil_store::{EntityKind, StoredDocument, Timestamp};

/// Splits `data` into at most `n` sections at lines `---`.
fn sections(data: &[u8], n: usize) -> Vec<&[u8]> {
    const SEPARATOR: &[u8] = b"\n---\n";
    let mut parts = Vec::with_capacity(n);
    let mut rest = data;
    while parts.len() + 1 < n {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts.resize(n, &[]);
    parts
}

/// Raw bytes read as numbers; zeros once they run out.
struct Script<'a> {
    bytes: &'a [u8],
}

impl<'a> Script<'a> {
    fn more(&self) -> bool {
        !self.bytes.is_empty()
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.bytes.len());
        out[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        out
    }

    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }

    /// Any f64, NaN and infinities included, or (more often) a small whole number.
    fn f64(&mut self) -> f64 {
        match self.u8() % 4 {
            0 => f64::from_le_bytes(self.take()),
            _ => f64::from(self.u32() % 10_000),
        }
    }

    /// A time: any representable instant, or (more often) one near the last.
    fn time(&mut self, last: Timestamp) -> Timestamp {
        match self.u8() % 8 {
            0 => DateTime::from_timestamp(self.i64(), 0).unwrap_or(DateTime::<Utc>::MAX_UTC),
            1 => DateTime::<Utc>::MAX_UTC,
            2 => DateTime::<Utc>::MIN_UTC,
            _ => last.checked_add_signed(Duration::seconds(i64::from(self.u32()))).unwrap_or(last),
        }
    }
}

/// Signal readings taken from the script: whether events were seen, then a cycle of totals.
struct ScriptedSignals {
    seen: bool,
    readings: Vec<Totals>,
    next: std::sync::atomic::AtomicUsize,
}

impl ScriptedSignals {
    fn read(script: &mut Script) -> ScriptedSignals {
        let seen = !script.u8().is_multiple_of(4);
        let readings = (0..script.u8() % 8)
            .map(|_| Totals { count: u64::from(script.u32()) * u64::from(script.u8()), sum: script.f64() })
            .collect();
        ScriptedSignals { seen, readings, next: Default::default() }
    }
}

impl Signals for ScriptedSignals {
    fn totals(
        &self,
        _event: &str,
        _variants: Option<&[String]>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Totals, String> {
        assert!(from <= to, "a signal read over a backward range {from}..{to}");
        if self.readings.is_empty() {
            return Err("no counters".into());
        }
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.readings[i % self.readings.len()])
    }

    fn seen(&self, _event: &str) -> Result<bool, String> {
        Ok(self.seen)
    }
}

fn stored(kind: EntityKind, key: &str, body: Value, at: Timestamp) -> StoredDocument {
    StoredDocument { kind, key: key.into(), id: "fuzz".into(), version: 1, created_at: at, updated_at: at, body }
}

/// A flag body must stay a valid flag after the service rewrites it.
fn assert_valid_flag(body: &Value, what: &str) {
    if let Err(e) = catalog::canonical(EntityKind::Flag, body) {
        panic!("{what} made the flag invalid: {e:?}\n{body}");
    }
}

/// The flag a plan steers when the input gives none (or one that is not a valid flag).
fn default_flag() -> Value {
    json!({"key": "new_checkout", "enabled": true,
           "rules": [{"id": "beta", "when": {"attr": "beta", "op": "eq", "value": true},
                      "serve": {"split": {"on": 1, "off": 1}, "rollout": 50}}],
           "default": {"split": {"on": 1}, "rollout": 0}})
}

/// `fuzz_targets/rollout_plan.rs`: sections plan (the body of `PUT .../rollout-plan`), flag,
/// script. A valid plan is stored, reloaded, and driven by scripted actions (start, pause,
/// resume, cancel), scheduler checks at scripted times and status reads. Returns whether the plan
/// was valid.
pub fn rollout_plan(data: &[u8]) -> bool {
    let parts = sections(data, 3);
    let Ok(request) = serde_json::from_slice::<PlanRequest>(parts[0]) else { return false };
    let flag_body = serde_json::from_slice::<Value>(parts[1])
        .ok()
        .and_then(|v| catalog::canonical(EntityKind::Flag, &v).ok())
        .unwrap_or_else(|| catalog::canonical(EntityKind::Flag, &default_flag()).expect("the default flag is valid"));
    let mut script = Script { bytes: parts[2] };
    let signals = ScriptedSignals::read(&mut script);
    let key = flag_body.get("key").and_then(Value::as_str).unwrap_or("new_checkout").to_string();

    let plan = Plan::from(request);
    if plan.validate(&flag_body, &signals).is_err() {
        return false;
    }
    let mut now = script.time(DateTime::from_timestamp(1_796_000_000, 0).expect("a valid time"));
    let mut loaded = Loaded {
        plan: plan.clone(),
        doc: stored(EntityKind::RolloutPlan, &key, plans::stored_body(&plan), now),
        flag: stored(EntityKind::Flag, &key, flag_body, now),
    };
    for _ in 0..64 {
        if !script.more() {
            break;
        }
        // What the store would hold and hand back: the plan must survive its round trip.
        let body = plans::stored_body(&loaded.plan);
        let reloaded = plans::from_body(&body);
        assert_eq!(reloaded.as_ref(), Some(&loaded.plan), "a stored plan does not reload: {body}");
        let next = match script.u8() % 6 {
            n @ 0..=3 => {
                let action = [Action::Start, Action::Pause, Action::Resume, Action::Cancel][usize::from(n)];
                loaded.after(action, now).ok()
            }
            4 => {
                now = script.time(now);
                match decide_plan(&loaded.plan, &loaded.flag.body, &key, &signals, now) {
                    PlanDecision::Wait => None,
                    PlanDecision::Start => Some(loaded.at_step(0, now)),
                    PlanDecision::Advance(i) => {
                        assert!(i < loaded.plan.steps.len(), "advance past the last step");
                        Some(loaded.at_step(i, now))
                    }
                    PlanDecision::Complete => {
                        let mut done = loaded.plan.clone();
                        done.state = State::Completed;
                        Some((done, None))
                    }
                    PlanDecision::RollBack { cause } => {
                        let mut rolled_back = loaded.plan.clone();
                        rolled_back.state = State::RolledBack;
                        rolled_back.cause = Some(cause);
                        Some((rolled_back, Some(loaded.flag_rolled_back())))
                    }
                }
            }
            _ => {
                let status = loaded.status(&signals, now);
                assert!(status.get("guard_readings").is_some_and(Value::is_array));
                None
            }
        };
        if let Some((plan, flag)) = next {
            if let Some(body) = flag {
                assert_valid_flag(&body, "a rollout step or rollback");
                loaded.flag.body = body;
            }
            loaded.doc.body = plans::stored_body(&plan);
            loaded.plan = plan;
        }
    }
    true
}

/// `fuzz_targets/budget.rs`: sections budget (the body of `POST /v1/admin/budgets`), script.
/// A valid budget is stored and reloaded with its progress, then checked at scripted times:
/// spend read, thresholds due, fired ones recorded as the scheduler does. Returns whether the
/// budget was valid.
pub fn budget(data: &[u8]) -> bool {
    let parts = sections(data, 2);
    let Ok(budget) = serde_json::from_slice::<Budget>(parts[0]) else { return false };
    let mut script = Script { bytes: parts[1] };
    let signals = ScriptedSignals::read(&mut script);
    let flag_exists = script.u8().is_multiple_of(2);
    if budget.validate(flag_exists, &signals).is_err() {
        return false;
    }
    let mut now = script.time(DateTime::from_timestamp(1_796_000_000, 0).expect("a valid time"));
    let mut progress = Progress::default();
    for _ in 0..64 {
        let doc = stored(EntityKind::Budget, &budget.key, budget_body(&budget, &progress), now);
        let (reloaded, reloaded_progress) = parse_budget(&doc).expect("a stored budget reloads");
        assert_eq!((&reloaded, &reloaded_progress), (&budget, &progress), "a stored budget changed on reload");
        let _ = budget.covers(&budget.key, &[budget.tag.clone().unwrap_or_default()]);
        if let Ok(decision) = decide_budget(&budget, progress.clone(), &signals, now) {
            assert!(decision.due.iter().all(|&i| i < budget.thresholds.len()), "a threshold index out of range");
            assert!(decision.due.iter().all(|i| !decision.progress.fired.contains(i)), "a threshold fired twice");
            progress = decision.progress;
            progress.fired.extend(decision.due);
        }
        if !script.more() {
            break;
        }
        now = script.time(now);
    }
    true
}

/// The flags an experiment compiles against when the input gives none (or an invalid set): a
/// segment for targeting, and a flag serving the experiment.
fn default_flags() -> Value {
    json!({"segments": [{"key": "beta", "when": {"attr": "beta", "op": "eq", "value": true}}],
           "flags": [{"key": "banner", "type": "string", "enabled": true,
                      "variants": {"a": "A", "b": "B"}, "off_variant": "a", "default": {"variant": "a"}}]})
}

/// `fuzz_targets/experiment.rs`: sections experiment (the body of
/// `POST /v1/admin/experiments`), flags document, context (a JSON object), script. A valid
/// experiment is made canonical, compiled against the flags, places users from the script,
/// filters events through its metrics, and goes through scripted lifecycle calls and
/// replacements. Returns whether the experiment was valid.
pub fn experiment(data: &[u8]) -> bool {
    let parts = sections(data, 4);
    let Ok(value) = serde_json::from_slice::<Value>(parts[0]) else { return false };
    let Ok(canonical) = catalog::canonical(EntityKind::Experiment, &value) else { return false };
    let again = catalog::canonical(EntityKind::Experiment, &canonical).expect("a canonical experiment decodes");
    assert_eq!(again, canonical, "canonical form is not stable");
    let _ = experiments::check_new(&canonical);

    let flags = serde_json::from_slice::<Value>(parts[1])
        .ok()
        .and_then(|v| FlagSet::from_value(&v).ok())
        .unwrap_or_else(|| FlagSet::from_value(&default_flags()).expect("the default flags are valid"));
    let attributes: Map<String, Value> = serde_json::from_slice(parts[2]).unwrap_or_default();
    let mut script = Script { bytes: parts[3] };

    let mut stored = canonical;
    for _ in 0..16 {
        if let Ok(compiled) = experiments::compile(&flags, [&stored]) {
            for experiment in &compiled {
                let users: Vec<String> = (0..4)
                    .map(|_| {
                        let n = usize::from(script.u8() % 24);
                        String::from_utf8_lossy(&script.take::<24>()[..n]).into_owned()
                    })
                    .collect();
                for user in &users {
                    let ctx = Context::new(user, &attributes);
                    if let vexil_core::experiment::Placement::Variant(i) = experiment.place(&ctx) {
                        assert!(i < experiment.experiment().variants.len(), "placed in a variant that does not exist");
                        assert!(experiment.unit(&ctx).is_some(), "placed without a bucketing unit");
                    }
                    for metric in 0..experiment.experiment().metrics.len() {
                        let _ = experiment.metric_accepts(metric, user, &attributes);
                    }
                }
            }
        }
        if !script.more() {
            break;
        }
        let next = match script.u8() % 5 {
            4 => {
                // A replacement: the document as the client sent it, lifecycle fields kept.
                let mut body = value.clone();
                experiments::keep_lifecycle_fields(&stored, &mut body);
                catalog::canonical(EntityKind::Experiment, &body)
                    .ok()
                    .filter(|body| experiments::check_replace(&stored, body).is_ok())
            }
            n => {
                let action = [
                    LifecycleAction::Start,
                    LifecycleAction::Pause,
                    LifecycleAction::Complete,
                    LifecycleAction::Archive,
                ][usize::from(n)];
                let winner = stored
                    .get("variants")
                    .and_then(Value::as_array)
                    .and_then(|v| v.get(usize::from(script.u8() % 4)))
                    .and_then(|v| v.get("key"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .filter(|_| action == LifecycleAction::Complete);
                experiments::transition(&stored, action, winner).ok()
            }
        };
        if let Some(body) = next {
            let body = catalog::canonical(EntityKind::Experiment, &body).expect("a changed experiment is still valid");
            stored = body;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Feeds every committed seed of `target` through `run`: the fuzz targets' seeds replay in
    /// the normal suite, on stable.
    fn replay(target: &str, run: fn(&[u8]) -> bool) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds").join(target);
        let (mut seeds, mut valid) = (0, 0);
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a readable seed directory").path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            valid += usize::from(run(&data));
            seeds += 1;
        }
        // The seeds must reach past validation, where the service's work on a document starts.
        assert!(valid >= 2, "{target}: {valid} of {seeds} seeds in {} are valid documents", dir.display());
    }

    #[test]
    fn rollout_plan_seeds_replay() {
        replay("rollout_plan", rollout_plan);
    }

    #[test]
    fn budget_seeds_replay() {
        replay("budget", budget);
    }

    #[test]
    fn experiment_seeds_replay() {
        replay("experiment", experiment);
    }

    #[test]
    fn sections_split_at_separator_lines() {
        assert_eq!(sections(b"a\n---\nb\n---\nc\n---\nd", 3), vec![&b"a"[..], b"b", b"c\n---\nd"]);
        assert_eq!(sections(b"a", 3), vec![&b"a"[..], b"", b""]);
    }
}
