//! Progressive rollout plans: steps `{percent, hold}` applied to one split of a flag (its
//! `default` or a rule), guarded by health signals, advanced by the scheduler.
//!
//! A plan is a document of its own ([`EntityKind::RolloutPlan`], keyed by the flag), holding
//! what the operator wrote and where the plan stands. Every step, rollback, pause or cancel is
//! one atomic store write of the flag (a new, audited flag version) together with the plan.

use super::guards::Guard;
use super::signals::{Seconds, Signals};
use crate::service::changes::PlannedChange;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vexil_core::{Percent, ValidationError, ValidationErrors};
use vexil_store::{ChangeMeta, EntityKind, Store, StoreError, StoredDocument, Timestamp, Write};

/// The actor of the scheduler's changes in the audit log.
pub const ROLLOUT_ACTOR: &str = "system:rollout";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rollback {
    /// Set the split's rollout to 0 %.
    ToZero,
    /// Turn the flag off (`enabled: false`).
    Disable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Written, waiting for `start`.
    Ready,
    /// Waiting for `start_at`.
    Scheduled,
    Running,
    Paused,
    Completed,
    RolledBack,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub percent: f64,
    pub hold: Seconds,
}

/// `PUT /v1/admin/flags/{key}/rollout-plan`, as sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// `"default"` or the id of a rule whose `serve` is a split.
    #[serde(default = "default_target")]
    pub target: String,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub guards: Vec<Guard>,
    #[serde(default)]
    pub start_at: Option<Timestamp>,
    #[serde(default = "to_zero")]
    pub rollback: Rollback,
}

/// A plan as stored: the request and where the plan stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub target: String,
    pub steps: Vec<Step>,
    pub guards: Vec<Guard>,
    pub start_at: Option<Timestamp>,
    pub rollback: Rollback,
    pub state: State,
    /// Index of the step in force.
    pub step: Option<usize>,
    pub step_started_at: Option<Timestamp>,
    /// Why the plan rolled back, paused or ended.
    pub cause: Option<String>,
}

impl From<PlanRequest> for Plan {
    fn from(r: PlanRequest) -> Plan {
        let state = if r.start_at.is_some() { State::Scheduled } else { State::Ready };
        Plan {
            target: r.target,
            steps: r.steps,
            guards: r.guards,
            start_at: r.start_at,
            rollback: r.rollback,
            state,
            step: None,
            step_started_at: None,
            cause: None,
        }
    }
}

fn default_target() -> String {
    "default".into()
}
fn to_zero() -> Rollback {
    Rollback::ToZero
}

/// Why a plan operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the plan is invalid")]
    Invalid(ValidationErrors),
    #[error("{0}")]
    WrongState(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The JSON path of the split `target` names in a flag body, if it is a split.
fn split_path(flag: &Value, target: &str) -> Option<Vec<Value>> {
    if target == "default" {
        return flag.get("default")?.get("split").map(|_| vec![Value::from("default")]);
    }
    let rules = flag.get("rules")?.as_array()?;
    let i = rules.iter().position(|r| r.get("id").and_then(Value::as_str) == Some(target))?;
    rules[i].get("serve")?.get("split").map(|_| vec![Value::from("rules"), Value::from(i), Value::from("serve")])
}

fn serve_mut<'a>(flag: &'a mut Value, target: &str) -> Option<&'a mut Value> {
    let mut at = flag;
    for part in split_path(at, target)? {
        at = match part {
            Value::String(s) => at.get_mut(s.as_str())?,
            Value::Number(n) => at.get_mut(usize::try_from(n.as_u64()?).ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// A rollout percentage as flags store it (`25`, `12.5`), validated plans' percentages being
/// 0–100 with at most two decimals.
pub fn rollout_json(percent: f64) -> Value {
    serde_json::to_value(Percent::from_percent(percent).unwrap_or(Percent::ALL)).expect("percentages serialise")
}

/// The variants of the target split that users are rolled out to (weight > 0, not the off
/// variant): the denominator of rate guards.
pub fn rolled_out_variants(flag: &Value, target: &str) -> Vec<String> {
    let mut flag = flag.clone();
    let off = flag.get("off_variant").and_then(Value::as_str).unwrap_or("off").to_string();
    let Some(serve) = serve_mut(&mut flag, target) else { return Vec::new() };
    let Some(weights) = serve.get("split").and_then(Value::as_object) else { return Vec::new() };
    weights.iter().filter(|(name, w)| **name != off && w.as_u64() != Some(0)).map(|(name, _)| name.clone()).collect()
}

impl Plan {
    /// Why the plan cannot steer `flag`, if it cannot: its target is not a split there.
    pub fn target_problem(&self, flag: &Value) -> Option<ValidationError> {
        let message = format!("\"{}\" is neither \"default\" nor a rule of the flag that serves a split", self.target);
        split_path(flag, &self.target).is_none().then(|| ValidationError::new("target", message))
    }

    /// Checks the plan against its flag and the events the pipeline knows.
    pub fn validate(&self, flag: &Value, signals: &dyn Signals) -> Result<(), PlanError> {
        let mut problems: Vec<ValidationError> = self.target_problem(flag).into_iter().collect();
        if self.steps.is_empty() {
            problems.push(ValidationError::new("steps", "a plan needs at least one step"));
        }
        let mut previous = -1.0;
        for (i, step) in self.steps.iter().enumerate() {
            if Percent::from_percent(step.percent).is_none() {
                problems.push(ValidationError::new(
                    format!("steps[{i}].percent"),
                    "must be 0–100 with at most two decimals",
                ));
            } else if step.percent <= previous {
                problems.push(ValidationError::new(
                    format!("steps[{i}].percent"),
                    format!("must be greater than the previous step's {previous}"),
                ));
            }
            previous = step.percent;
            if step.hold.0 > Seconds::LONGEST.0 {
                problems.push(too_long(format!("steps[{i}].hold")));
            }
        }
        for (i, guard) in self.guards.iter().enumerate() {
            match signals.seen(&guard.event) {
                Ok(true) => {}
                Ok(false) => problems.push(ValidationError::new(
                    format!("guards[{i}].event"),
                    format!("no event \"{}\" has been received yet", guard.event),
                )),
                Err(e) => problems.push(ValidationError::new(format!("guards[{i}].event"), e)),
            }
            if guard.window.0 > Seconds::LONGEST.0 {
                problems.push(too_long(format!("guards[{i}].window")));
            }
            if !guard.threshold.is_finite() {
                problems.push(ValidationError::new(format!("guards[{i}].threshold"), "must be a finite number"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PlanError::Invalid(ValidationErrors(problems)))
        }
    }
}

fn too_long(path: String) -> ValidationError {
    ValidationError::new(path, format!("must be at most {} days", Seconds::LONGEST.0 / (24 * 3600)))
}

/// A plan with the flag it steers, both as stored.
pub struct Loaded {
    pub plan: Plan,
    pub doc: StoredDocument,
    pub flag: StoredDocument,
}

impl Loaded {
    pub async fn load(store: &dyn Store, key: &str) -> Result<Option<Loaded>, StoreError> {
        let Some(doc) = store.get(EntityKind::RolloutPlan, key).await? else { return Ok(None) };
        let Some(flag) = store.get(EntityKind::Flag, key).await? else { return Ok(None) };
        let Some(plan) = from_body(&doc.body) else { return Ok(None) };
        Ok(Some(Loaded { plan, doc, flag }))
    }

    /// Every plan in `store` with the flag it steers, ordered by flag key (plans whose flag or
    /// body cannot be read are left out, as [`Loaded::load`] finds none for them).
    pub async fn load_all(store: &dyn Store) -> Result<Vec<Loaded>, StoreError> {
        let mut flags: std::collections::HashMap<String, StoredDocument> =
            store.list(EntityKind::Flag).await?.into_iter().map(|d| (d.key.clone(), d)).collect();
        let mut all: Vec<Loaded> = store
            .list(EntityKind::RolloutPlan)
            .await?
            .into_iter()
            .filter_map(|doc| {
                let plan = from_body(&doc.body)?;
                let flag = flags.remove(&doc.key)?;
                Some(Loaded { plan, doc, flag })
            })
            .collect();
        all.sort_by(|a, b| a.doc.key.cmp(&b.doc.key));
        Ok(all)
    }

    /// Stores `plan` and, when given, the flag body, in one write.
    pub async fn save(
        &self,
        store: &dyn Store,
        plan: &Plan,
        flag: Option<Value>,
        meta: &ChangeMeta,
    ) -> Result<(), StoreError> {
        let mut writes = Vec::new();
        if let Some(body) = flag {
            writes.push(Write::Update {
                kind: EntityKind::Flag,
                key: self.flag.key.clone(),
                body,
                expected_version: Some(self.flag.version),
            });
        }
        writes.push(Write::Update {
            kind: EntityKind::RolloutPlan,
            key: self.doc.key.clone(),
            body: stored_body(plan),
            expected_version: Some(self.doc.version),
        });
        store.apply(writes, meta).await?;
        Ok(())
    }

    /// What [`Loaded::save`] would write, as changes held for approval in a protected
    /// environment (SPEC 9): the flag first, when given, then the plan.
    pub fn planned(&self, plan: &Plan, flag: Option<Value>) -> Vec<PlannedChange> {
        let flag =
            flag.map(|body| PlannedChange::between(EntityKind::Flag, &self.flag.key, Some(&self.flag), Some(body)));
        let plan =
            PlannedChange::between(EntityKind::RolloutPlan, &self.doc.key, Some(&self.doc), Some(stored_body(plan)));
        flag.into_iter().chain([plan]).collect()
    }

    /// The flag body with the target split's rollout at `percent`.
    pub fn flag_at(&self, percent: f64) -> Value {
        let mut body = self.flag.body.clone();
        if let Some(serve) = serve_mut(&mut body, &self.plan.target) {
            serve["rollout"] = rollout_json(percent);
        }
        body
    }

    /// The plan as the API and the CLI show it: the stored document with its flag's key and
    /// version, and a live reading of every guard.
    pub fn status(&self, signals: &dyn Signals, now: Timestamp) -> Value {
        let variants = rolled_out_variants(&self.flag.body, &self.plan.target);
        let guards: Vec<Value> = self
            .plan
            .guards
            .iter()
            .map(|g| match g.read(signals, &self.flag.key, &variants, now) {
                Ok(reading) => json!({"guard": g, "reading": reading}),
                Err(e) => json!({"guard": g, "error": e}),
            })
            .collect();
        let mut body = self.doc.to_json();
        body["flag"] = json!(self.flag.key);
        body["flag_version"] = json!(self.flag.version);
        body["guard_readings"] = json!(guards);
        body
    }

    /// The flag body after a rollback of the configured kind.
    pub fn flag_rolled_back(&self) -> Value {
        match self.plan.rollback {
            Rollback::ToZero => self.flag_at(0.0),
            Rollback::Disable => {
                let mut body = self.flag.body.clone();
                body["enabled"] = Value::Bool(false);
                body
            }
        }
    }
}

/// The document body of a plan.
pub fn stored_body(plan: &Plan) -> Value {
    serde_json::to_value(plan).expect("plans serialise")
}

/// Reads a stored plan body.
pub fn from_body(body: &Value) -> Option<Plan> {
    serde_json::from_value(body.clone()).ok()
}

/// Held changes as they apply at `now`, when approved: a step that a change to a plan puts in
/// force (a start or a resume) starts its hold when it applies, not when it was asked for.
pub fn held_until(mut changes: Vec<PlannedChange>, now: Timestamp) -> Vec<PlannedChange> {
    for change in changes.iter_mut().filter(|c| c.entity == EntityKind::RolloutPlan) {
        let Some(mut plan) = change.after.as_ref().and_then(from_body) else { continue };
        let before = change.before.as_ref().and_then(from_body).and_then(|p| p.step_started_at);
        if plan.step_started_at.is_some() && plan.step_started_at != before {
            plan.step_started_at = Some(now);
            change.after = Some(stored_body(&plan));
        }
    }
    changes
}

/// Whether `now` is past the hold of the step in force.
pub fn hold_elapsed(plan: &Plan, now: Timestamp) -> bool {
    match (plan.step, plan.step_started_at) {
        (Some(i), Some(started)) => {
            let hold = plan.steps.get(i).map_or(Seconds(0), |s| s.hold);
            // A hold too long to represent never elapses.
            started.checked_add_signed(hold.delta()).is_some_and(|end| now >= end)
        }
        _ => false,
    }
}

/// Operations on a plan through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Pause,
    Resume,
    Cancel,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Cancel => "cancel",
        }
    }
}

impl Loaded {
    /// The plan and flag body after `action`, or why the plan's state does not allow it.
    pub fn after(&self, action: Action, now: Timestamp) -> Result<(Plan, Option<Value>), PlanError> {
        let mut plan = self.plan.clone();
        let flag = match (action, plan.state) {
            (Action::Start, State::Ready | State::Scheduled) => return Ok(self.at_step(0, now)),
            (Action::Pause, State::Running) => {
                plan.state = State::Paused;
                None
            }
            (Action::Resume, State::Paused) => {
                plan.state = State::Running;
                plan.step_started_at = Some(now);
                None
            }
            (Action::Cancel, State::Ready | State::Scheduled | State::Running | State::Paused) => {
                plan.state = State::Cancelled;
                None
            }
            (action, state) => {
                let state = serde_json::to_value(state).expect("states serialise");
                return Err(PlanError::WrongState(format!("a plan in state {state} cannot {}", action.name())));
            }
        };
        Ok((plan, flag))
    }

    /// The running plan at step `i`, and the flag with that step's percentage.
    pub fn at_step(&self, i: usize, now: Timestamp) -> (Plan, Option<Value>) {
        let mut plan = self.plan.clone();
        plan.state = State::Running;
        plan.step = Some(i);
        plan.step_started_at = Some(now);
        (plan, Some(self.flag_at(self.plan.steps[i].percent)))
    }
}
