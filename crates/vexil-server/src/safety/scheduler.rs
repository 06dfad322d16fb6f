//! The safety scheduler: every `safety_check_interval` it starts scheduled rollout plans,
//! reads each running plan's guards (rolling back at once when one breaks), advances plans
//! whose hold has elapsed, and checks budgets, firing threshold actions once per period.
//!
//! Every node runs it. Each change is a store write conditional on the versions it read, so
//! when two nodes act on the same plan or budget, one wins and the other's write is refused.

use super::budgets::{Budget, BudgetAction, Progress, BUDGET_ACTOR};
use super::plans::{self, Loaded, Plan, State, ROLLOUT_ACTOR};
use super::stops::{self, Scope, Stop};
use crate::notify::Notification;
use crate::state::AppState;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use vexil_store::{ChangeMeta, EntityKind, StoreError, StoredDocument, Timestamp, Write};

/// Checks every interval until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(state.config.safety_check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = tick(&state).await {
            tracing::error!(error = %e, "safety check failed; retrying at the next interval");
        }
    }
}

/// One round over plans and budgets.
pub async fn tick(state: &AppState) -> Result<(), StoreError> {
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
    refresh_metrics(state).await
}

/// A write refused because another node (or an operator) changed the document first is not
/// an error: the next round sees the new state.
fn refused_is_ok(result: Result<bool, StoreError>) -> Result<bool, StoreError> {
    match result {
        Err(StoreError::VersionMismatch { .. } | StoreError::NotFound { .. }) => Ok(false),
        other => other,
    }
}

fn notify_plan(state: &AppState, kind: &'static str, flag: &str, plan: &Plan, message: String) {
    let details = json!({"flag": flag, "state": plan.state, "step": plan.step,
        "percent": plan.step.and_then(|i| plan.steps.get(i)).map(|s| s.percent), "cause": plan.cause});
    state.safety.notifier.notify(Notification::new(kind, message, details));
}

async fn check_plan(state: &AppState, key: &str, now: Timestamp) -> Result<bool, StoreError> {
    let store = state.store.as_ref();
    let Some(loaded) = Loaded::load(store, key).await? else { return Ok(false) };
    let plan = &loaded.plan;
    match plan.state {
        State::Scheduled if plan.start_at.is_some_and(|at| at <= now) => {
            let (plan, flag) = loaded.at_step(0, now);
            let reason = format!("rollout plan started at start_at: {} %", plan.steps[0].percent);
            loaded.save(store, &plan, flag, &ChangeMeta::new(ROLLOUT_ACTOR).with_reason(&reason)).await?;
            notify_plan(state, "rollout.step", key, &plan, format!("flag {key}: {reason}"));
            Ok(true)
        }
        State::Running => {
            let variants = plans::rolled_out_variants(&loaded.flag.body, &plan.target);
            for guard in &plan.guards {
                let reading = match guard.read(state.safety.signals.as_ref(), key, &variants, now) {
                    Ok(reading) => reading,
                    Err(e) => {
                        tracing::warn!(flag = key, error = %e, "cannot read a guard's signal");
                        continue;
                    }
                };
                if reading.verdict == super::guards::Verdict::Broken {
                    let cause = format!("guard broken: {}", guard.describe(&reading));
                    let mut rolled_back = plan.clone();
                    rolled_back.state = State::RolledBack;
                    rolled_back.cause = Some(cause.clone());
                    let meta = ChangeMeta::new(ROLLOUT_ACTOR).with_reason(&cause);
                    loaded.save(store, &rolled_back, Some(loaded.flag_rolled_back()), &meta).await?;
                    state.safety.metrics.guard_breaks.with_label_values(&[key]).inc();
                    notify_plan(
                        state,
                        "rollout.rolled_back",
                        key,
                        &rolled_back,
                        format!("flag {key} rolled back: {cause}"),
                    );
                    return Ok(true);
                }
            }
            if !plans::hold_elapsed(plan, now) {
                return Ok(false);
            }
            let next = plan.step.map_or(0, |i| i + 1);
            if next < plan.steps.len() {
                let (plan, flag) = loaded.at_step(next, now);
                let reason = format!("rollout step {}/{}: {} %", next + 1, plan.steps.len(), plan.steps[next].percent);
                loaded.save(store, &plan, flag, &ChangeMeta::new(ROLLOUT_ACTOR).with_reason(&reason)).await?;
                notify_plan(state, "rollout.step", key, &plan, format!("flag {key}: {reason}"));
            } else {
                let mut done = plan.clone();
                done.state = State::Completed;
                let meta = ChangeMeta::new(ROLLOUT_ACTOR).with_reason("rollout plan completed");
                loaded.save(store, &done, None, &meta).await?;
                notify_plan(state, "rollout.completed", key, &done, format!("flag {key}: rollout plan completed"));
            }
            Ok(true)
        }
        _ => Ok(false),
    }
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

async fn check_budget(state: &AppState, doc: &StoredDocument, now: Timestamp) -> Result<bool, StoreError> {
    let Some((budget, mut progress)) = parse_budget(doc) else { return Ok(false) };
    let spend = match budget.spend(state.safety.signals.as_ref(), now) {
        Ok(spend) => spend.sum,
        Err(e) => {
            tracing::warn!(budget = %budget.key, error = %e, "cannot read a budget's spend");
            return Ok(false);
        }
    };
    let start = budget.period_start(now);
    let mut changed = progress.period_start != Some(start);
    if changed {
        progress = Progress { period_start: Some(start), fired: Vec::new() };
    }
    let used = spend / budget.limit * 100.0;
    for (i, threshold) in budget.thresholds.iter().enumerate() {
        if used < threshold.at || progress.fired.contains(&i) {
            continue;
        }
        let reason = format!(
            "budget {}: spend {spend} of {} reached {} % ({:?})",
            budget.key, budget.limit, threshold.at, threshold.action
        );
        let flags = fire(state, &budget, threshold, &reason).await?;
        progress.fired.push(i);
        changed = true;
        let details = json!({"budget": budget.key, "spend": spend, "limit": budget.limit,
            "threshold": threshold, "flags": flags});
        state.safety.notifier.notify(Notification::new("budget.threshold_crossed", reason, details));
    }
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
    state: &AppState,
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

/// Sets the gauges of stops, plans and budgets from the store.
async fn refresh_metrics(state: &AppState) -> Result<(), StoreError> {
    let store = state.store.as_ref();
    let m = &state.safety.metrics;
    m.active_stops.set(i64::try_from(stops::active(store).await?.len()).unwrap_or(i64::MAX));
    m.plan_state.reset();
    m.plan_step.reset();
    m.plan_percent.reset();
    for doc in store.list(EntityKind::RolloutPlan).await? {
        let Some(plan) = plans::from_body(&doc.body) else { continue };
        let name = serde_json::to_value(plan.state).expect("states serialise");
        m.plan_state.with_label_values(&[doc.key.as_str(), name.as_str().unwrap_or_default()]).set(1);
        if let Some(i) = plan.step {
            m.plan_step.with_label_values(&[doc.key.as_str()]).set(i64::try_from(i + 1).unwrap_or(i64::MAX));
            m.plan_percent.with_label_values(&[doc.key.as_str()]).set(plan.steps[i].percent);
        }
    }
    let now = vexil_store::now();
    for doc in store.list(EntityKind::Budget).await? {
        let Some((budget, _)) = parse_budget(&doc) else { continue };
        if let Ok(spend) = budget.spend(state.safety.signals.as_ref(), now) {
            m.budget_spend.with_label_values(&[budget.key.as_str()]).set(spend.sum);
            m.budget_remaining.with_label_values(&[budget.key.as_str()]).set(budget.limit - spend.sum);
        }
    }
    Ok(())
}
