//! The safety scheduler: every `safety_check_interval` it starts scheduled rollout plans,
//! reads each running plan's guards (rolling back at once when one breaks), advances plans
//! whose hold has elapsed, checks budgets, firing threshold actions once per period, and
//! concludes experiments whose `auto_conclude` analysis has decided.
//!
//! Every node runs it. Each change is a store write conditional on the versions it read, so
//! when two nodes act on the same plan or budget, one wins and the other's write is refused.

use super::budgets::{Budget, BudgetAction, Progress, BUDGET_ACTOR};
use super::guards::Verdict;
use super::plans::{self, Loaded, Plan, State, ROLLOUT_ACTOR};
use super::signals::Signals;
use super::stops::{self, Scope, Stop};
use super::Safety;
use crate::service::environments::Environment;
use crate::service::notify::Notification;
use crate::service::results::ResultsSources;
use crate::service::snapshot::Snapshots;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vexil_events::pipeline::Pipeline;
use vexil_store::{ChangeMeta, EntityKind, Store, StoreError, StoredDocument, Timestamp, Write};

/// What the checks of one environment read and act on.
#[derive(Clone)]
pub struct SafetyChecks {
    /// The environment's key (the metrics' `environment` label).
    pub environment: Arc<str>,
    pub store: Arc<dyn Store>,
    pub snapshots: Arc<Snapshots>,
    pub safety: Arc<Safety>,
    /// The environment's signals: its events' counters.
    pub signals: Arc<dyn Signals>,
    /// Auto-conclusion of experiments runs with the checks.
    pub results: ResultsSources,
}

impl SafetyChecks {
    /// The checks of `environment`, reading its events in `pipeline`.
    pub fn of(environment: &Environment, safety: &Arc<Safety>, pipeline: &Arc<Pipeline>) -> SafetyChecks {
        SafetyChecks {
            environment: environment.key.clone(),
            store: environment.store.clone(),
            snapshots: environment.snapshots.clone(),
            safety: safety.clone(),
            signals: safety.signals_of(&environment.key),
            results: ResultsSources::of(environment, pipeline),
        }
    }
}

/// Checks every environment `environments` gives every `interval` until `shutdown`; the
/// gauges are set from all of them after each round.
pub async fn run<F>(environments: F, interval: std::time::Duration, shutdown: CancellationToken)
where
    F: Fn() -> Vec<SafetyChecks> + Send + Sync,
{
    let environments = &environments;
    crate::service::every(interval, shutdown, move || async move {
        let checks = environments();
        for state in &checks {
            if let Err(e) = tick(state).await {
                tracing::error!(environment = %state.environment, error = %e,
                    "safety check failed; retrying at the next interval");
            }
        }
        if let Err(e) = refresh_metrics(&checks).await {
            tracing::error!(error = %e, "cannot read the safety rails' state for their metrics");
        }
    })
    .await;
}

/// One round over one environment's plans, budgets and auto-concluding experiments.
pub async fn tick(state: &SafetyChecks) -> Result<(), StoreError> {
    let now = vexil_store::now();
    let mut changed = false;
    for doc in state.store.list(EntityKind::RolloutPlan).await? {
        changed |= refused_is_ok(check_plan(state, &doc.key, now).await)?;
    }
    for doc in state.store.list(EntityKind::Budget).await? {
        changed |= refused_is_ok(check_budget(state, &doc, now).await)?;
    }
    if changed {
        state.snapshots.catch_up(state.store.as_ref()).await;
    }
    crate::service::results::conclude_decided(&state.results).await;
    Ok(())
}

/// A write refused because another node (or an operator) changed the document first is not
/// an error: the next round sees the new state.
fn refused_is_ok(result: Result<bool, StoreError>) -> Result<bool, StoreError> {
    match result {
        Err(StoreError::VersionMismatch { .. } | StoreError::NotFound { .. }) => Ok(false),
        other => other,
    }
}

fn notify_plan(state: &SafetyChecks, kind: &'static str, flag: &str, plan: &Plan, message: String) {
    let details = json!({"flag": flag, "state": plan.state, "step": plan.step,
        "percent": plan.step.and_then(|i| plan.steps.get(i)).map(|s| s.percent), "cause": plan.cause});
    state.safety.notifier.notify(Notification::new(kind, message, details));
}

/// What one check decides for a plan; [`decide_plan`] makes the decision, `check_plan` carries
/// it out.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanDecision {
    /// Nothing to do at this check.
    Wait,
    /// A scheduled plan whose `start_at` has come: apply the first step.
    Start,
    /// A guard broke: roll back, with the cause for the audit log and the notification.
    RollBack { cause: String },
    /// The hold elapsed with no broken guard: apply the step at this index.
    Advance(usize),
    /// The last step's hold elapsed: the plan is done.
    Complete,
}

/// Decides what a plan of the flag `key` (whose stored body is `flag`) needs at `now`. Guards
/// are read before the hold is looked at, so a broken guard rolls back in the middle of a hold;
/// a guard below its minimum sample, or whose signal cannot be read, neither breaks nor blocks.
pub fn decide_plan(plan: &Plan, flag: &Value, key: &str, signals: &dyn Signals, now: Timestamp) -> PlanDecision {
    match plan.state {
        State::Scheduled if plan.start_at.is_some_and(|at| at <= now) => PlanDecision::Start,
        State::Running => {
            let variants = plans::rolled_out_variants(flag, &plan.target);
            for guard in &plan.guards {
                match guard.read(signals, key, &variants, now) {
                    Ok(reading) if reading.verdict == Verdict::Broken => {
                        return PlanDecision::RollBack { cause: format!("guard broken: {}", guard.describe(&reading)) };
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(flag = key, error = %e, "cannot read a guard's signal"),
                }
            }
            if !plans::hold_elapsed(plan, now) {
                return PlanDecision::Wait;
            }
            let next = plan.step.map_or(0, |i| i + 1);
            if next < plan.steps.len() {
                PlanDecision::Advance(next)
            } else {
                PlanDecision::Complete
            }
        }
        _ => PlanDecision::Wait,
    }
}

async fn check_plan(state: &SafetyChecks, key: &str, now: Timestamp) -> Result<bool, StoreError> {
    let store = state.store.as_ref();
    let Some(loaded) = Loaded::load(store, key).await? else { return Ok(false) };
    let plan = &loaded.plan;
    match decide_plan(plan, &loaded.flag.body, key, state.signals.as_ref(), now) {
        PlanDecision::Wait => return Ok(false),
        PlanDecision::RollBack { cause } => {
            let mut rolled_back = plan.clone();
            rolled_back.state = State::RolledBack;
            rolled_back.cause = Some(cause.clone());
            let meta = ChangeMeta::new(ROLLOUT_ACTOR).with_reason(&cause);
            loaded.save(store, &rolled_back, Some(loaded.flag_rolled_back()), &meta).await?;
            state.safety.metrics.guard_breaks.with_label_values(&[&state.environment, key]).inc();
            let message = format!("flag {key} rolled back: {cause}");
            notify_plan(state, "rollout.rolled_back", key, &rolled_back, message);
        }
        decision @ (PlanDecision::Start | PlanDecision::Advance(_)) => {
            let next = if let PlanDecision::Advance(next) = decision { next } else { 0 };
            let (plan, flag) = loaded.at_step(next, now);
            let mut reason = format!("rollout step {}/{}: {} %", next + 1, plan.steps.len(), plan.steps[next].percent);
            if decision == PlanDecision::Start {
                reason.push_str(", the plan started at start_at");
            }
            loaded.save(store, &plan, flag, &ChangeMeta::new(ROLLOUT_ACTOR).with_reason(&reason)).await?;
            notify_plan(state, "rollout.step", key, &plan, format!("flag {key}: {reason}"));
        }
        PlanDecision::Complete => {
            let mut done = plan.clone();
            done.state = State::Completed;
            let meta = ChangeMeta::new(ROLLOUT_ACTOR).with_reason("rollout plan completed");
            loaded.save(store, &done, None, &meta).await?;
            notify_plan(state, "rollout.completed", key, &done, format!("flag {key}: rollout plan completed"));
        }
    }
    Ok(true)
}

/// A stored budget and its progress.
pub fn parse_budget(doc: &StoredDocument) -> Option<(Budget, Progress)> {
    let mut body = doc.body.clone();
    let progress = body.as_object_mut()?.remove("progress").map_or(Ok(Progress::default()), serde_json::from_value);
    Some((serde_json::from_value(body).ok()?, progress.ok()?))
}

/// The document body of a budget with its progress.
pub fn budget_body(budget: &Budget, progress: &Progress) -> Value {
    let mut body = serde_json::to_value(budget).expect("budgets serialise");
    body["progress"] = serde_json::to_value(progress).expect("progress serialises");
    body
}

/// What one check finds for a budget; [`decide_budget`] makes it, `check_budget` acts on it.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetDecision {
    /// Spend in the current period.
    pub spend: f64,
    /// The progress of the current period: the stored one, or a fresh one when a new period
    /// began (thresholds fire again in every period).
    pub progress: Progress,
    /// Whether `progress` differs from the stored progress.
    pub new_period: bool,
    /// Indexes of the thresholds reached that have not fired in this period.
    pub due: Vec<usize>,
}

/// Reads a budget's spend at `now` and decides which thresholds fire.
pub fn decide_budget(
    budget: &Budget,
    progress: Progress,
    signals: &dyn Signals,
    now: Timestamp,
) -> Result<BudgetDecision, String> {
    let spend = budget.spend(signals, now)?.sum;
    let start = budget.period_start(now);
    let new_period = progress.period_start != Some(start);
    let progress = if new_period { Progress { period_start: Some(start), fired: Vec::new() } } else { progress };
    let used = spend / budget.limit * 100.0;
    let due = (0..budget.thresholds.len())
        .filter(|i| used >= budget.thresholds[*i].at && !progress.fired.contains(i))
        .collect();
    Ok(BudgetDecision { spend, progress, new_period, due })
}

async fn check_budget(state: &SafetyChecks, doc: &StoredDocument, now: Timestamp) -> Result<bool, StoreError> {
    let Some((budget, progress)) = parse_budget(doc) else { return Ok(false) };
    let decision = match decide_budget(&budget, progress, state.signals.as_ref(), now) {
        Ok(decision) => decision,
        Err(e) => {
            tracing::warn!(budget = %budget.key, error = %e, "cannot read a budget's spend");
            return Ok(false);
        }
    };
    let BudgetDecision { spend, mut progress, new_period, due } = decision;
    for &i in &due {
        let threshold = &budget.thresholds[i];
        let reason = format!(
            "budget {}: spend {spend} of {} reached {} % ({:?})",
            budget.key, budget.limit, threshold.at, threshold.action
        );
        let flags = fire(state, &budget, threshold, &reason).await?;
        progress.fired.push(i);
        let details = json!({"budget": budget.key, "spend": spend, "limit": budget.limit,
            "threshold": threshold, "flags": flags});
        state.safety.notifier.notify(Notification::new("budget.threshold_crossed", reason, details));
    }
    let changed = new_period || !due.is_empty();
    if changed {
        let write = Write::Update {
            kind: EntityKind::Budget,
            key: doc.key.clone(),
            body: budget_body(&budget, &progress),
            expected_version: Some(doc.version),
        };
        state.store.apply(vec![write], &ChangeMeta::new(BUDGET_ACTOR)).await?;
    }
    Ok(changed)
}

/// Caps every split rollout in a flag body at `cap`; whether anything changed.
fn cap_rollouts(body: &mut Value, cap: f64) -> bool {
    let mut changed = false;
    let rules = body.get_mut("rules").and_then(Value::as_array_mut).into_iter().flatten();
    let serves: Vec<&mut Value> = rules.filter_map(|r| r.get_mut("serve")).collect();
    let mut cap_one = |serve: &mut Value| {
        if serve.get("split").is_some() && serve.get("rollout").and_then(Value::as_f64).unwrap_or(100.0) > cap {
            serve["rollout"] = plans::rollout_json(cap);
            changed = true;
        }
    };
    serves.into_iter().for_each(&mut cap_one);
    if let Some(default) = body.get_mut("default") {
        cap_one(default);
    }
    changed
}

/// Carries out a threshold's action on the budget's flags; returns their keys.
async fn fire(
    state: &SafetyChecks,
    budget: &Budget,
    threshold: &super::budgets::Threshold,
    reason: &str,
) -> Result<Vec<String>, StoreError> {
    let store = state.store.as_ref();
    let tags_of = |d: &StoredDocument| -> Vec<String> {
        d.body.get("tags").and_then(|t| serde_json::from_value(t.clone()).ok()).unwrap_or_default()
    };
    let flags: Vec<StoredDocument> =
        store.list(EntityKind::Flag).await?.into_iter().filter(|d| budget.covers(&d.key, &tags_of(d))).collect();
    let keys = flags.iter().map(|d| d.key.clone()).collect();
    let meta = ChangeMeta::new(BUDGET_ACTOR).with_reason(reason);
    let mut writes = Vec::new();
    match threshold.action {
        BudgetAction::Alert => {}
        BudgetAction::EmergencyStop => {
            let stop = Stop {
                scope: if budget.tag.is_some() { Scope::Tag } else { Scope::Flags },
                tag: budget.tag.clone(),
                flags: if budget.tag.is_some() { Vec::new() } else { keys },
                reason: Some(reason.to_string()),
                stopped_at: None,
            };
            let keys = stop.flags.clone();
            if let Err(e) = stops::stop(store, stop, &meta).await {
                tracing::error!(budget = %budget.key, error = %e, "the budget's emergency stop failed");
            }
            return Ok(keys);
        }
        BudgetAction::Throttle | BudgetAction::Disable => {
            let cap = threshold.rollout;
            for flag in &flags {
                let mut body = flag.body.clone();
                let changed = match cap {
                    Some(cap) if threshold.action == BudgetAction::Throttle => cap_rollouts(&mut body, cap),
                    _ => {
                        body.get("enabled") != Some(&Value::Bool(false)) && {
                            body["enabled"] = Value::Bool(false);
                            true
                        }
                    }
                };
                if changed {
                    writes.push(Write::Update {
                        kind: EntityKind::Flag,
                        key: flag.key.clone(),
                        body,
                        expected_version: Some(flag.version),
                    });
                }
                // A running rollout plan would raise the rollout again: pause it.
                if let Some(plan_doc) = store.get(EntityKind::RolloutPlan, &flag.key).await? {
                    if let Some(mut plan) = plans::from_body(&plan_doc.body).filter(|p| p.state == State::Running) {
                        plan.state = State::Paused;
                        plan.cause = Some(reason.to_string());
                        writes.push(Write::Update {
                            kind: EntityKind::RolloutPlan,
                            key: flag.key.clone(),
                            body: plans::stored_body(&plan),
                            expected_version: Some(plan_doc.version),
                        });
                    }
                }
            }
        }
    }
    if !writes.is_empty() {
        store.apply(writes, &meta).await?;
    }
    Ok(keys)
}

/// Sets the gauges of stops, plans and budgets of every environment from the store (so a
/// deleted environment's, plan's or budget's series disappear).
async fn refresh_metrics(environments: &[SafetyChecks]) -> Result<(), StoreError> {
    let Some(first) = environments.first() else { return Ok(()) };
    let m = &first.safety.metrics;
    let mut readings = Vec::with_capacity(environments.len());
    // Everything is read before any gauge is reset, so a failed read leaves them as they were.
    for state in environments {
        let store = state.store.as_ref();
        let stops = stops::active(store).await?.len();
        let plans = store.list(EntityKind::RolloutPlan).await?;
        let budgets = store.list(EntityKind::Budget).await?;
        readings.push((state, stops, plans, budgets));
    }
    m.active_stops.reset();
    m.plan_state.reset();
    m.plan_step.reset();
    m.plan_percent.reset();
    m.budget_spend.reset();
    m.budget_remaining.reset();
    let now = vexil_store::now();
    for (state, stops, plans, budgets) in readings {
        let env = &*state.environment;
        m.active_stops.with_label_values(&[env]).set(i64::try_from(stops).unwrap_or(i64::MAX));
        for doc in plans {
            let Some(plan) = plans::from_body(&doc.body) else { continue };
            let name = serde_json::to_value(plan.state).expect("states serialise");
            m.plan_state.with_label_values(&[env, doc.key.as_str(), name.as_str().unwrap_or_default()]).set(1);
            if let Some(i) = plan.step {
                m.plan_step.with_label_values(&[env, doc.key.as_str()]).set(i64::try_from(i + 1).unwrap_or(i64::MAX));
                m.plan_percent.with_label_values(&[env, doc.key.as_str()]).set(plan.steps[i].percent);
            }
        }
        for doc in budgets {
            let Some((budget, _)) = parse_budget(&doc) else { continue };
            if let Ok(spend) = budget.spend(state.signals.as_ref(), now) {
                m.budget_spend.with_label_values(&[env, budget.key.as_str()]).set(spend.sum);
                m.budget_remaining.with_label_values(&[env, budget.key.as_str()]).set(budget.limit - spend.sum);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::safety::budgets::{Period, Threshold};
    use crate::service::safety::guards::{Comparison, Guard, Signal};
    use crate::service::safety::plans::{Rollback, Step};
    use crate::service::safety::signals::{evaluations_of, Seconds, Totals};
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use std::collections::HashMap;

    /// Made-up counters: the totals of each event (and `$evaluation:<flag>`) over any window.
    #[derive(Default)]
    struct FakeSignals(HashMap<String, Totals>);

    impl FakeSignals {
        fn with(mut self, event: &str, count: u64, sum: f64) -> FakeSignals {
            self.0.insert(event.to_string(), Totals { count, sum });
            self
        }
    }

    impl Signals for FakeSignals {
        fn totals(
            &self,
            event: &str,
            _variants: Option<&[String]>,
            _from: DateTime<Utc>,
            _to: DateTime<Utc>,
        ) -> Result<Totals, String> {
            Ok(self.0.get(event).copied().unwrap_or_default())
        }

        fn seen(&self, event: &str) -> Result<bool, String> {
            Ok(self.0.contains_key(event))
        }
    }

    fn now() -> Timestamp {
        Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap()
    }

    fn flag() -> Value {
        json!({"key": "new_checkout", "enabled": true, "default": {"split": {"on": 1}, "rollout": 1}})
    }

    fn guard(signal: Signal, threshold: f64, min_sample: u64) -> Guard {
        Guard {
            signal,
            event: "checkout_error".into(),
            window: Seconds(1800),
            op: Comparison::Lt,
            threshold,
            min_sample,
        }
    }

    /// A plan running its first step (1 % held for ten minutes) since `started` seconds ago.
    fn running(guards: Vec<Guard>, started: i64) -> Plan {
        Plan {
            target: "default".into(),
            steps: vec![Step { percent: 1.0, hold: Seconds(600) }, Step { percent: 25.0, hold: Seconds(0) }],
            guards,
            start_at: None,
            rollback: Rollback::ToZero,
            state: State::Running,
            step: Some(0),
            step_started_at: Some(now() - Duration::seconds(started)),
            cause: None,
        }
    }

    fn decide(plan: &Plan, signals: &FakeSignals) -> PlanDecision {
        decide_plan(plan, &flag(), "new_checkout", signals, now())
    }

    #[test]
    fn passing_guards_advance_only_once_the_hold_elapsed() {
        let signals = FakeSignals::default().with("checkout_error", 3, 3.0);
        let guards = vec![guard(Signal::Count, 10.0, 1)];
        assert_eq!(decide(&running(guards.clone(), 599), &signals), PlanDecision::Wait);
        assert_eq!(decide(&running(guards.clone(), 600), &signals), PlanDecision::Advance(1));
        let mut last = running(guards, 600);
        last.step = Some(1);
        assert_eq!(decide(&last, &signals), PlanDecision::Complete, "the last step's hold is 0");
    }

    #[test]
    fn a_broken_guard_rolls_back_even_in_the_middle_of_a_hold() {
        let signals =
            FakeSignals::default().with("checkout_error", 40, 40.0).with(&evaluations_of("new_checkout"), 1000, 0.0);
        let plan = running(vec![guard(Signal::Count, 100.0, 1), guard(Signal::Rate, 0.02, 500)], 5);
        let PlanDecision::RollBack { cause } = decide(&plan, &signals) else { panic!("no rollback") };
        assert_eq!(cause, "guard broken: rate of checkout_error over 1800s is 0.04 (sample 1000), required lt 0.02");
    }

    #[test]
    fn below_the_minimum_sample_a_guard_neither_breaks_nor_blocks() {
        // Every second evaluation failed, but over 20 evaluations only.
        let signals =
            FakeSignals::default().with("checkout_error", 10, 10.0).with(&evaluations_of("new_checkout"), 20, 0.0);
        let plan = running(vec![guard(Signal::Rate, 0.02, 500)], 5);
        assert_eq!(decide(&plan, &signals), PlanDecision::Wait);
        assert_eq!(decide(&running(plan.guards.clone(), 600), &signals), PlanDecision::Advance(1));
        let enough =
            FakeSignals::default().with("checkout_error", 10, 10.0).with(&evaluations_of("new_checkout"), 500, 0.0);
        assert!(matches!(decide(&plan, &enough), PlanDecision::RollBack { .. }), "from the minimum sample on");
        let mean = running(vec![guard(Signal::Mean, 1.0, 11)], 5);
        assert_eq!(decide(&mean, &signals), PlanDecision::Wait, "mean's sample is the events");
    }

    #[test]
    fn scheduled_plans_start_at_start_at_and_ended_plans_rest() {
        let signals = FakeSignals::default();
        let mut plan = running(Vec::new(), 0);
        plan.state = State::Scheduled;
        plan.step = None;
        plan.start_at = Some(now() + Duration::seconds(1));
        assert_eq!(decide(&plan, &signals), PlanDecision::Wait);
        plan.start_at = Some(now());
        assert_eq!(decide(&plan, &signals), PlanDecision::Start);
        for state in [State::Ready, State::Paused, State::Completed, State::RolledBack, State::Cancelled] {
            let mut plan = running(Vec::new(), 10_000);
            plan.state = state;
            assert_eq!(decide(&plan, &signals), PlanDecision::Wait, "{state:?}");
        }
    }

    fn budget() -> Budget {
        let threshold = |at, action, rollout| Threshold { at, action, rollout };
        Budget {
            key: "summaries_daily".into(),
            description: String::new(),
            event: "llm_cost".into(),
            flag: Some("ai_summaries".into()),
            tag: None,
            period: Period::Day,
            limit: 200.0,
            thresholds: vec![
                threshold(80.0, BudgetAction::Alert, None),
                threshold(90.0, BudgetAction::Throttle, Some(10.0)),
                threshold(100.0, BudgetAction::Disable, None),
            ],
        }
    }

    /// Checks the budget at `at` with `spend` and stores the thresholds that fired, as the
    /// scheduler does; returns the ones that fired.
    fn check(progress: &mut Progress, spend: f64, at: Timestamp) -> Vec<usize> {
        let signals = FakeSignals::default().with("llm_cost", 10, spend);
        let decision = decide_budget(&budget(), progress.clone(), &signals, at).unwrap();
        assert_eq!(decision.spend, spend);
        *progress = decision.progress;
        progress.fired.extend(&decision.due);
        decision.due
    }

    #[test]
    fn budget_thresholds_fire_once_per_period() {
        let mut progress = Progress::default();
        assert_eq!(check(&mut progress, 100.0, now()), Vec::<usize>::new(), "50 % reaches nothing");
        assert_eq!(progress.period_start, Some(Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap()));
        assert_eq!(check(&mut progress, 170.0, now()), [0], "85 %: alert");
        assert_eq!(check(&mut progress, 175.0, now()), Vec::<usize>::new(), "alert does not fire twice");
        assert_eq!(check(&mut progress, 250.0, now()), [1, 2], "125 %: throttle and disable at once");
        assert_eq!(check(&mut progress, 260.0, now()), Vec::<usize>::new());
        let tomorrow = now() + Duration::days(1);
        assert_eq!(check(&mut progress, 170.0, tomorrow), [0], "a new day, a new period");
        assert_eq!(progress.fired, [0]);
    }

    #[test]
    fn a_new_period_alone_is_a_change_to_store() {
        let signals = FakeSignals::default().with("llm_cost", 1, 1.0);
        let decision = decide_budget(&budget(), Progress::default(), &signals, now()).unwrap();
        assert!(decision.new_period && decision.due.is_empty());
        let again = decide_budget(&budget(), decision.progress, &signals, now()).unwrap();
        assert!(!again.new_period);
    }

    /// Found by the `rollout_plan` and `budget` fuzz targets: reading a guard or a budget's
    /// spend at the last representable instant overflowed the window's end (a panic).
    #[test]
    fn guards_and_budgets_read_at_the_end_of_time() {
        let signals = FakeSignals::default().with("checkout_error", 5, 5.0).with("llm_cost", 3, 300.0);
        let end = DateTime::<Utc>::MAX_UTC;
        let reading = guard(Signal::Count, 10.0, 0).read(&signals, "new_checkout", &[], end).unwrap();
        assert_eq!(reading.verdict, Verdict::Pass);
        let decision = decide_budget(&budget(), Progress::default(), &signals, end).unwrap();
        assert_eq!(decision.spend, 300.0);
    }
}
