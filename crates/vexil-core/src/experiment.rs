//! Experiments (SPEC 1.3): the model, its validation, the lifecycle, and the deterministic
//! placement of a user into a variant (targeting, traffic allocation and weights, SPEC 2).
//!
//! Placement is pure and exact; making it sticky (storing the first assignment) is the
//! service's job.

use crate::allocation::Allocation;
use crate::condition::CompiledCondition;
use crate::context::{unit_bytes, AttributePath, Context};
use crate::decode::{kind_of, Reader};
use crate::error::{index, join, ValidationErrors};
use crate::flagset::FlagSet;
use crate::hash::SaltedHasher;
use crate::model::{Condition, Meta, Percent};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    Draft,
    Running,
    Paused,
    Completed,
    Archived,
}

/// The lifecycle calls of the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleAction {
    Start,
    Pause,
    Complete,
    Archive,
}

impl ExperimentStatus {
    pub fn name(self) -> &'static str {
        match self {
            ExperimentStatus::Draft => "draft",
            ExperimentStatus::Running => "running",
            ExperimentStatus::Paused => "paused",
            ExperimentStatus::Completed => "completed",
            ExperimentStatus::Archived => "archived",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Draft, Self::Running, Self::Paused, Self::Completed, Self::Archived]
            .into_iter()
            .find(|st| st.name() == s)
    }

    /// The status an action leads to: `draft → running ⇄ paused → completed → archived`, and
    /// completing straight from `running`. `None` when the action is illegal here (HTTP 409).
    pub fn after(self, action: LifecycleAction) -> Option<ExperimentStatus> {
        use ExperimentStatus::*;
        match (self, action) {
            (Draft | Paused, LifecycleAction::Start) => Some(Running),
            (Running, LifecycleAction::Pause) => Some(Paused),
            (Running | Paused, LifecycleAction::Complete) => Some(Completed),
            (Completed, LifecycleAction::Archive) => Some(Archived),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExperimentVariant {
    pub key: String,
    pub weight: u32,
    /// The flag value this variant serves when a flag delegates to the experiment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Conversion,
    Count,
    Sum,
    Mean,
    Ratio,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricRole {
    Primary,
    Secondary,
    Guardrail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Increase,
    Decrease,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Sum,
    Count,
}

/// One side of a ratio metric: an event and how its occurrences aggregate per user.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricSource {
    pub event: String,
    pub agg: Aggregation,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metric {
    pub key: String,
    pub kind: MetricKind,
    /// The event of `conversion`, `count`, `sum` and `mean` metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numerator: Option<MetricSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denominator: Option<MetricSource>,
    pub role: MetricRole,
    pub direction: Direction,
    /// A condition over the event's properties; events that do not match are ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Condition>,
    /// Winsorises the per-user value at this upper bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisMethod {
    Frequentist,
    Sequential,
    Bayesian,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    Holm,
    Bh,
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnalysisConfig {
    pub method: AnalysisMethod,
    pub alpha: f64,
    pub correction: Correction,
    pub min_sample_per_variant: u64,
    pub auto_conclude: bool,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            method: AnalysisMethod::Frequentist,
            alpha: 0.05,
            correction: Correction::Holm,
            min_sample_per_variant: 100,
            auto_conclude: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Experiment {
    pub key: String,
    #[serde(flatten)]
    pub meta: Meta,
    pub status: ExperimentStatus,
    pub variants: Vec<ExperimentVariant>,
    pub traffic_allocation: Percent,
    pub targeting: Option<Condition>,
    pub bucket_by: String,
    pub salt: String,
    pub metrics: Vec<Metric>,
    pub analysis: AnalysisConfig,
    pub winner: Option<String>,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
}

impl Experiment {
    pub fn variant_index(&self, key: &str) -> Option<usize> {
        self.variants.iter().position(|v| v.key == key)
    }
}

const EXPERIMENT_FIELDS: &[&str] = &[
    "status",
    "variants",
    "traffic_allocation",
    "targeting",
    "bucket_by",
    "salt",
    "metrics",
    "analysis",
    "winner",
    "start_at",
    "end_at",
];

/// Event names: `^[A-Za-z0-9_.:-]{1,128}$` (SPEC 1.4).
pub fn is_valid_event_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Decodes and checks one experiment, with paths relative to it; every problem is reported.
pub fn decode_experiment(value: &Value) -> Result<Experiment, ValidationErrors> {
    let mut r = Reader::default();
    let experiment = read_experiment(&mut r, value);
    r.finish(experiment)
}

fn read_experiment(r: &mut Reader, value: &Value) -> Option<Experiment> {
    let o = r.stored_object(value, "", EXPERIMENT_FIELDS)?;
    let key = r.key(o.get("key"), "key");
    let meta = r.meta(o, "");
    let status = match r.string(o.get("status"), "status") {
        None => Some(ExperimentStatus::Draft),
        Some(s) => {
            let status = ExperimentStatus::parse(&s);
            if status.is_none() {
                r.error("status", format!("unknown status \"{s}\" (draft, running, paused, completed or archived)"));
            }
            status
        }
    };
    let variants = read_variants(r, o.get("variants"));
    let traffic_allocation = r.percent(o.get("traffic_allocation"), "traffic_allocation");
    let targeting = match o.get("targeting") {
        None | Some(Value::Null) => Some(None),
        Some(c) => r.condition(c, "targeting").map(Some),
    };
    let bucket_by = r.string(o.get("bucket_by"), "bucket_by").unwrap_or_else(|| "user_id".into());
    if bucket_by.trim().is_empty() {
        r.error("bucket_by", "must name a context attribute");
    }
    let salt = r.string(o.get("salt"), "salt");
    let metrics = read_metrics(r, o.get("metrics"));
    let analysis = match o.get("analysis") {
        None | Some(Value::Null) => Some(AnalysisConfig::default()),
        Some(a) => read_analysis(r, a),
    };
    let winner = r.string(o.get("winner"), "winner");
    if let (Some(w), Some(vs)) = (&winner, &variants) {
        if !vs.iter().any(|v| &v.key == w) {
            r.error("winner", format!("unknown variant \"{w}\""));
        }
    }
    let start_at = r.timestamp(o.get("start_at"), "start_at");
    let end_at = r.timestamp(o.get("end_at"), "end_at");
    if let (Some(s), Some(e)) = (start_at, end_at) {
        if s >= e {
            r.error("end_at", "must be after start_at");
        }
    }
    let key = key?;
    Some(Experiment {
        salt: salt.unwrap_or_else(|| key.clone()),
        key,
        meta,
        status: status?,
        variants: variants?,
        traffic_allocation: traffic_allocation?,
        targeting: targeting?,
        bucket_by,
        metrics,
        analysis: analysis?,
        winner,
        start_at,
        end_at,
    })
}

fn read_variants(r: &mut Reader, v: Option<&Value>) -> Option<Vec<ExperimentVariant>> {
    if v.is_none_or(Value::is_null) {
        r.error("variants", "is required");
        return None;
    }
    let before = r.errors.0.len();
    let variants = r.list(v, "variants", |r, v, path| {
        let o = r.object(v, path, &["key", "weight", "value"])?;
        let key = r.required_string(o.get("key"), &join(path, "key"));
        if key.as_deref().is_some_and(|k| k.is_empty() || k.len() > 128) {
            r.error(&join(path, "key"), "must be 1 to 128 characters");
        }
        let weight = match o.get("weight") {
            None | Some(Value::Null) => Some(1),
            Some(w) => {
                let weight = w.as_u64().and_then(|w| u32::try_from(w).ok());
                if weight.is_none() {
                    r.error(&join(path, "weight"), "must be a non-negative integer");
                }
                weight
            }
        };
        Some(ExperimentVariant { key: key?, weight: weight?, value: o.get("value").cloned() })
    });
    if r.errors.0.len() != before {
        return None;
    }
    if variants.len() < 2 {
        r.error("variants", "an experiment needs at least two variants");
    }
    for (i, v) in variants.iter().enumerate() {
        if variants[..i].iter().any(|other| other.key == v.key) {
            r.error(&join(&index("variants", i), "key"), format!("duplicate variant key \"{}\"", v.key));
        }
    }
    if !variants.is_empty() && variants.iter().all(|v| v.weight == 0) {
        r.error("variants", "weights must not all be zero");
    }
    let with_values = variants.iter().filter(|v| v.value.is_some()).count();
    if with_values != 0 && with_values != variants.len() {
        r.error("variants", "either every variant carries a value or none does");
    }
    Some(variants)
}

fn read_metrics(r: &mut Reader, v: Option<&Value>) -> Vec<Metric> {
    let metrics = r.list(v, "metrics", read_metric);
    for (i, m) in metrics.iter().enumerate() {
        if metrics[..i].iter().any(|other| other.key == m.key) {
            r.error(&join(&index("metrics", i), "key"), format!("duplicate metric key \"{}\"", m.key));
        }
    }
    metrics
}

fn read_metric(r: &mut Reader, v: &Value, path: &str) -> Option<Metric> {
    let at = |field: &str| join(path, field);
    let o = r.object(
        v,
        path,
        &["key", "kind", "event", "numerator", "denominator", "role", "direction", "filter", "cap", "description"],
    )?;
    let key = r.key(o.get("key"), &at("key"));
    let kind = choice(
        r,
        o.get("kind"),
        &at("kind"),
        None,
        &[
            ("conversion", MetricKind::Conversion),
            ("count", MetricKind::Count),
            ("sum", MetricKind::Sum),
            ("mean", MetricKind::Mean),
            ("ratio", MetricKind::Ratio),
        ],
    );
    let role = choice(
        r,
        o.get("role"),
        &at("role"),
        Some(MetricRole::Secondary),
        &[("primary", MetricRole::Primary), ("secondary", MetricRole::Secondary), ("guardrail", MetricRole::Guardrail)],
    );
    let direction = choice(
        r,
        o.get("direction"),
        &at("direction"),
        Some(Direction::Increase),
        &[("increase", Direction::Increase), ("decrease", Direction::Decrease)],
    );
    let event = event_name(r, o.get("event"), &at("event"));
    let numerator = o.get("numerator").and_then(|s| metric_source(r, s, &at("numerator")));
    let denominator = o.get("denominator").and_then(|s| metric_source(r, s, &at("denominator")));
    match kind {
        Some(MetricKind::Ratio) => {
            for (name, side) in [("numerator", &numerator), ("denominator", &denominator)] {
                if side.is_none() && o.get(name).is_none_or(Value::is_null) {
                    r.error(&at(name), "is required for ratio metrics");
                }
            }
            if o.contains_key("event") {
                r.error(&at("event"), "ratio metrics take numerator and denominator instead");
            }
        }
        Some(_) => {
            if event.is_none() && o.get("event").is_none_or(Value::is_null) {
                r.error(&at("event"), "is required");
            }
            for name in ["numerator", "denominator"] {
                if o.contains_key(name) {
                    r.error(&at(name), "is only for ratio metrics");
                }
            }
        }
        None => {}
    }
    let filter = match o.get("filter") {
        None | Some(Value::Null) => Some(None),
        Some(c) => r.condition(c, &at("filter")).map(Some),
    };
    let cap = match o.get("cap") {
        None | Some(Value::Null) => Some(None),
        Some(c) => match c.as_f64().filter(|c| c.is_finite() && *c > 0.0) {
            Some(c) => Some(Some(c)),
            None => {
                r.error(&at("cap"), format!("must be a positive number, found {c}"));
                None
            }
        },
    };
    Some(Metric {
        key: key?,
        kind: kind?,
        event,
        numerator,
        denominator,
        role: role?,
        direction: direction?,
        filter: filter?,
        cap: cap?,
    })
}

fn metric_source(r: &mut Reader, v: &Value, path: &str) -> Option<MetricSource> {
    let o = r.object(v, path, &["event", "agg"])?;
    let event = event_name(r, o.get("event"), &join(path, "event"));
    if o.get("event").is_none_or(Value::is_null) {
        r.error(&join(path, "event"), "is required");
    }
    let agg = choice(
        r,
        o.get("agg"),
        &join(path, "agg"),
        Some(Aggregation::Sum),
        &[("sum", Aggregation::Sum), ("count", Aggregation::Count)],
    );
    Some(MetricSource { event: event?, agg: agg? })
}

fn event_name(r: &mut Reader, v: Option<&Value>, path: &str) -> Option<String> {
    let name = r.string(v, path)?;
    if is_valid_event_name(&name) {
        Some(name)
    } else {
        r.error(path, format!("\"{name}\" must match ^[A-Za-z0-9_.:-]{{1,128}}$"));
        None
    }
}

/// One of a fixed set of names; `default` when absent (or an error when there is none).
fn choice<T: Copy>(
    r: &mut Reader,
    v: Option<&Value>,
    path: &str,
    default: Option<T>,
    options: &[(&str, T)],
) -> Option<T> {
    let names = || options.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    match v {
        None | Some(Value::Null) => {
            if default.is_none() {
                r.error(path, format!("is required (one of {})", names()));
            }
            default
        }
        Some(Value::String(s)) => {
            let found = options.iter().find(|(n, _)| n == s).map(|(_, t)| *t);
            if found.is_none() {
                r.error(path, format!("unknown value \"{s}\" (one of {})", names()));
            }
            found
        }
        Some(other) => {
            r.error(path, format!("must be a string, found {}", kind_of(other)));
            None
        }
    }
}

fn read_analysis(r: &mut Reader, v: &Value) -> Option<AnalysisConfig> {
    let o = r.object(v, "analysis", &["method", "alpha", "correction", "min_sample_per_variant", "auto_conclude"])?;
    let defaults = AnalysisConfig::default();
    let method = choice(
        r,
        o.get("method"),
        "analysis.method",
        Some(defaults.method),
        &[
            ("frequentist", AnalysisMethod::Frequentist),
            ("sequential", AnalysisMethod::Sequential),
            ("bayesian", AnalysisMethod::Bayesian),
        ],
    );
    let correction = choice(
        r,
        o.get("correction"),
        "analysis.correction",
        Some(defaults.correction),
        &[("holm", Correction::Holm), ("bh", Correction::Bh), ("none", Correction::None)],
    );
    let alpha = match o.get("alpha") {
        None | Some(Value::Null) => Some(defaults.alpha),
        Some(a) => {
            let alpha = a.as_f64().filter(|a| *a > 0.0 && *a < 1.0);
            if alpha.is_none() {
                r.error("analysis.alpha", format!("must be a number between 0 and 1, found {a}"));
            }
            alpha
        }
    };
    let min_sample = match o.get("min_sample_per_variant") {
        None | Some(Value::Null) => Some(defaults.min_sample_per_variant),
        Some(n) => {
            let n = n.as_u64();
            if n.is_none() {
                r.error("analysis.min_sample_per_variant", "must be a non-negative integer");
            }
            n
        }
    };
    let auto_conclude = r.bool(o.get("auto_conclude"), "analysis.auto_conclude").unwrap_or(false);
    Some(AnalysisConfig {
        method: method?,
        alpha: alpha?,
        correction: correction?,
        min_sample_per_variant: min_sample?,
        auto_conclude,
    })
}

/// Where a user falls in an experiment, before any stickiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In the experiment, in the variant with this index.
    Variant(usize),
    /// The targeting condition does not match.
    NotTargeted,
    /// Outside the traffic allocation.
    NotInTraffic,
    /// The bucketing attribute is missing (or not a string, number or boolean).
    MissingBucketingAttribute,
}

/// An experiment compiled against a flag set's segments, ready to place users.
#[derive(Debug)]
pub struct CompiledExperiment {
    source: Experiment,
    targeting: Option<CompiledCondition>,
    allocation: Allocation,
    salt: SaltedHasher,
    bucket_by: AttributePath,
    filters: Vec<Option<CompiledCondition>>,
}

impl CompiledExperiment {
    /// Compiles targeting and metric filters (segments resolve against `flags`).
    pub fn compile(experiment: Experiment, flags: &FlagSet) -> Result<CompiledExperiment, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let mut compile = |condition: &Condition, path: &str| match flags.compile_condition(condition, path) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.0.extend(e.0);
                None
            }
        };
        let targeting = experiment.targeting.as_ref().map(|t| compile(t, "targeting"));
        let filters: Vec<Option<CompiledCondition>> = experiment
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| m.filter.as_ref().and_then(|f| compile(f, &join(&index("metrics", i), "filter"))))
            .collect();
        let weights: Vec<u32> = experiment.variants.iter().map(|v| v.weight).collect();
        let allocation = Allocation::new(&weights, experiment.traffic_allocation.basis_points());
        if allocation.is_none() {
            errors.push("variants", "weights must have a positive sum");
        }
        match (allocation, errors.is_empty()) {
            (Some(allocation), true) => Ok(CompiledExperiment {
                salt: SaltedHasher::new(&experiment.salt),
                bucket_by: AttributePath::parse(&experiment.bucket_by),
                targeting: targeting.flatten(),
                allocation,
                filters,
                source: experiment,
            }),
            _ => Err(errors),
        }
    }

    pub fn experiment(&self) -> &Experiment {
        &self.source
    }

    /// Targeting first, then the bucket: in traffic and in which variant (SPEC 2).
    pub fn place(&self, ctx: &Context<'_>) -> Placement {
        if self.targeting.as_ref().is_some_and(|t| !t.matches(ctx)) {
            return Placement::NotTargeted;
        }
        let mut buf = [0u8; 40];
        let Some(unit) = ctx.lookup(&self.bucket_by).and_then(|attr| unit_bytes(attr, &mut buf)) else {
            return Placement::MissingBucketingAttribute;
        };
        match self.allocation.variant_for(self.salt.bucket(unit)) {
            Some(i) => Placement::Variant(i),
            None => Placement::NotInTraffic,
        }
    }

    /// The bucketing unit of `ctx` as text — what a sticky assignment is stored under — or
    /// `None` when the attribute is missing (the same rule as [`place`](Self::place)).
    pub fn unit(&self, ctx: &Context<'_>) -> Option<String> {
        let mut buf = [0u8; 40];
        let unit = ctx.lookup(&self.bucket_by).and_then(|attr| unit_bytes(attr, &mut buf))?;
        Some(String::from_utf8_lossy(unit).into_owned())
    }

    /// Whether an event with `properties` counts for metric `metric` (its `filter`, if any).
    pub fn metric_accepts(&self, metric: usize, user_id: &str, properties: &Map<String, Value>) -> bool {
        match self.filters.get(metric) {
            Some(Some(filter)) => filter.matches(&Context::new(user_id, properties)),
            _ => true,
        }
    }
}
