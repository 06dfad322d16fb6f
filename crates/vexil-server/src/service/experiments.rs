//! Experiments in the service (SPEC 1.3): their canonical stored form, the checks that tie
//! them to the flag set (segments in targeting and metric filters, flags that serve an
//! experiment's variant values), the rules for changing a running experiment, lifecycle
//! transitions, and the compiled set the snapshot holds so that assignment never reads
//! configuration from the store.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use vexil_core::experiment::{decode_experiment, CompiledExperiment, Experiment, ExperimentStatus, LifecycleAction};
use vexil_core::{FlagSet, Serve, ValidationError, ValidationErrors};

/// Decodes an experiment and returns its canonical body, without server-managed fields.
pub fn canonical(value: &Value) -> Result<Value, ValidationErrors> {
    let mut experiment = decode_experiment(value)?;
    experiment.meta.id = None;
    experiment.meta.version = None;
    experiment.meta.created_at = None;
    experiment.meta.updated_at = None;
    Ok(serde_json::to_value(experiment).expect("the model serialises"))
}

/// `path` inside the experiment `key`, as a path of the whole configuration.
fn document_path(key: &str, path: &str) -> String {
    match path {
        "" => format!("experiments.{key}"),
        p if p.starts_with('[') => format!("experiments.{key}{p}"),
        p => format!("experiments.{key}.{p}"),
    }
}

/// Compiles stored experiment bodies against `flags`, and checks that every flag serving an
/// experiment names one whose variants carry values of the flag's type. Problems have
/// configuration paths (`experiments.checkout.targeting`, `flags.banner.default.experiment`).
pub fn compile<'a>(
    flags: &FlagSet,
    bodies: impl IntoIterator<Item = &'a Value>,
) -> Result<Vec<CompiledExperiment>, ValidationErrors> {
    let mut problems = Vec::new();
    let mut compiled = Vec::new();
    for body in bodies {
        let key = body.get("key").and_then(Value::as_str).unwrap_or_default();
        let result = decode_experiment(body).and_then(|e| CompiledExperiment::compile(e, flags));
        match result {
            Ok(c) => compiled.push(c),
            Err(e) => {
                problems.extend(e.0.into_iter().map(|p| ValidationError::new(document_path(key, &p.path), p.message)))
            }
        }
    }
    for flag in flags.serving_experiments() {
        // Positions, not paths: a path is written only for a rule that serves an experiment.
        let serves = flag.rules.iter().enumerate().map(|(i, r)| (Some(i), &r.serve));
        for (rule, serve) in serves.chain([(None, &flag.default)]) {
            let Serve::Experiment(key) = serve else { continue };
            let path = rule.map_or_else(|| "default".to_string(), |i| format!("rules[{i}].serve"));
            let at = format!("flags.{}.{path}.experiment", flag.key);
            let Some(experiment) = compiled.iter().map(CompiledExperiment::experiment).find(|e| &e.key == key) else {
                problems.push(ValidationError::new(at, format!("unknown experiment \"{key}\"")));
                continue;
            };
            for v in &experiment.variants {
                match &v.value {
                    None => problems.push(ValidationError::new(
                        &at,
                        format!("experiment \"{key}\" variant \"{}\" carries no value to serve", v.key),
                    )),
                    Some(value) if !flag.kind.accepts(value) => problems.push(ValidationError::new(
                        &at,
                        format!(
                            "experiment \"{key}\" variant \"{}\" has the value {value}, not a {} like the flag",
                            v.key,
                            flag.kind.name()
                        ),
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(compiled)
    } else {
        Err(ValidationErrors(problems))
    }
}

/// One experiment as assignment sees it: its compiled form (shared with the event pipeline,
/// which aggregates its metrics) and the stored document's id.
#[derive(Debug)]
pub struct LiveExperiment {
    pub id: Arc<str>,
    pub compiled: Arc<CompiledExperiment>,
}

impl LiveExperiment {
    pub fn experiment(&self) -> &Experiment {
        self.compiled.experiment()
    }
}

/// The compiled experiments of a snapshot, by key.
#[derive(Debug, Default, Clone)]
pub struct Experiments {
    by_key: HashMap<String, Arc<LiveExperiment>>,
    /// Whether any flag serves an experiment: evaluation probes for experiments only then.
    delegated: bool,
}

impl Experiments {
    /// `experiments` paired with the ids of their documents.
    pub fn new(flags: &FlagSet, experiments: impl IntoIterator<Item = (String, CompiledExperiment)>) -> Experiments {
        let by_key = experiments
            .into_iter()
            .map(|(id, compiled)| {
                let compiled = Arc::new(compiled);
                (compiled.experiment().key.clone(), Arc::new(LiveExperiment { id: id.into(), compiled }))
            })
            .collect();
        let delegated = flags.serving_experiments().len() > 0;
        Experiments { by_key, delegated }
    }

    pub fn get(&self, key: &str) -> Option<&Arc<LiveExperiment>> {
        self.by_key.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<LiveExperiment>> {
        self.by_key.values()
    }

    pub fn delegated(&self) -> bool {
        self.delegated
    }
}

/// Why a change to an experiment was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The new body is invalid.
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// The change conflicts with the experiment's state (SPEC 1.3: 409); `field` names what.
    #[error("{message}")]
    Conflict { code: &'static str, field: &'static str, message: String },
    /// A stored body no longer decodes: the store's fault, not the caller's.
    #[error("a stored experiment does not decode: {0}")]
    Corrupt(ValidationErrors),
}

impl ExperimentError {
    fn conflict(code: &'static str, field: &'static str, message: impl Into<String>) -> ExperimentError {
        ExperimentError::Conflict { code, field, message: message.into() }
    }

    fn invalid(field: &str, message: impl Into<String>) -> ExperimentError {
        ExperimentError::Invalid(ValidationErrors(vec![ValidationError::new(field, message)]))
    }
}

/// A new experiment starts as a draft; its status moves only through the lifecycle calls.
pub fn check_new(body: &Value) -> Result<(), ExperimentError> {
    let experiment = decoded(body)?;
    if experiment.status != ExperimentStatus::Draft {
        return Err(ExperimentError::invalid(
            "status",
            "a new experiment is a draft; start it with POST /v1/admin/experiments/{key}/start",
        ));
    }
    Ok(())
}

/// A replacement body may leave out `status` and `winner`: they are kept as stored.
pub fn keep_lifecycle_fields(stored: &Value, body: &mut Value) {
    let Some(fields) = body.as_object_mut() else { return };
    for name in ["status", "winner"] {
        if !fields.contains_key(name) {
            fields.insert(name.into(), stored.get(name).cloned().unwrap_or(Value::Null));
        }
    }
}

/// What a replacement may change (SPEC 1.3): never the status or winner (the lifecycle calls
/// do that), and while running not the variants, weights, salt or bucketing attribute, and
/// the traffic allocation only upwards — so no user placed so far moves or drops out.
pub fn check_replace(stored: &Value, body: &Value) -> Result<(), ExperimentError> {
    let (before, after) = (decoded(stored)?, decoded(body)?);
    if before.status != after.status || before.winner != after.winner {
        return Err(ExperimentError::conflict(
            "invalid_transition",
            if before.status != after.status { "status" } else { "winner" },
            "status and winner change only through /start, /pause, /complete and /archive",
        ));
    }
    if before.status != ExperimentStatus::Running {
        return Ok(());
    }
    let running = |field: &'static str, what: &str| {
        Err(ExperimentError::conflict(
            "experiment_running",
            field,
            format!("{what} of a running experiment cannot change; pause it first"),
        ))
    };
    if before.variants != after.variants {
        return running("variants", "the variants and weights");
    }
    if before.salt != after.salt || before.bucket_by != after.bucket_by {
        return running(if before.salt != after.salt { "salt" } else { "bucket_by" }, "the bucketing");
    }
    if after.traffic_allocation.basis_points() < before.traffic_allocation.basis_points() {
        return Err(ExperimentError::conflict(
            "experiment_running",
            "traffic_allocation",
            "the traffic allocation of a running experiment may only grow",
        ));
    }
    Ok(())
}

/// The body after a lifecycle call, or 409 when the transition is illegal from the stored
/// status. `winner` (completion only) must name a variant.
pub fn transition(stored: &Value, action: LifecycleAction, winner: Option<String>) -> Result<Value, ExperimentError> {
    let mut experiment = decoded(stored)?;
    let Some(status) = experiment.status.after(action) else {
        return Err(ExperimentError::conflict(
            "invalid_transition",
            "status",
            format!("a {} experiment cannot be {}", experiment.status.name(), past_tense(action)),
        ));
    };
    if let Some(winner) = winner {
        if experiment.variant_index(&winner).is_none() {
            return Err(ExperimentError::invalid("winner", format!("unknown variant \"{winner}\"")));
        }
        experiment.winner = Some(winner);
    }
    experiment.status = status;
    Ok(serde_json::to_value(experiment).expect("the model serialises"))
}

fn past_tense(action: LifecycleAction) -> &'static str {
    match action {
        LifecycleAction::Start => "started",
        LifecycleAction::Pause => "paused",
        LifecycleAction::Complete => "completed",
        LifecycleAction::Archive => "archived",
    }
}

/// A stored or canonical body; both were validated before they were written, so a failure
/// here is the store's fault.
fn decoded(body: &Value) -> Result<Experiment, ExperimentError> {
    decode_experiment(body).map_err(ExperimentError::Corrupt)
}
