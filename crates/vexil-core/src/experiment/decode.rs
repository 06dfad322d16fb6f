//! Turns a JSON value into an [`Experiment`], reporting every problem with its path, the same
//! way [`crate::decode`] does for flags and with its `Reader`.

use super::model::*;
use crate::decode::{kind_of, Reader};
use crate::error::{FieldPath, ValidationErrors};
use serde_json::Value;

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

/// Decodes and checks one experiment, with paths relative to it; every problem is reported.
pub fn decode_experiment(value: &Value) -> Result<Experiment, ValidationErrors> {
    let mut r = Reader::default();
    let experiment = read_experiment(&mut r, value);
    r.finish(experiment)
}

fn read_experiment(r: &mut Reader, value: &Value) -> Option<Experiment> {
    let o = r.stored_object(value, &FieldPath::ROOT, EXPERIMENT_FIELDS)?;
    let key = r.key(o.get("key"), &top("key"));
    let meta = r.meta(o, &FieldPath::ROOT);
    let status = match r.string(o.get("status"), &top("status")) {
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
    let traffic_allocation = r.percent(o.get("traffic_allocation"), &top("traffic_allocation"));
    let targeting = r.optional(o.get("targeting"), &top("targeting"), Reader::condition);
    let bucket_by = r.bucket_by(o.get("bucket_by"), &top("bucket_by"));
    let salt = r.string(o.get("salt"), &top("salt"));
    let metrics = read_metrics(r, o.get("metrics"));
    let analysis = match o.get("analysis") {
        None | Some(Value::Null) => Some(AnalysisConfig::default()),
        Some(a) => read_analysis(r, a),
    };
    let winner = r.string(o.get("winner"), &top("winner"));
    if let (Some(w), Some(vs)) = (&winner, &variants) {
        if !vs.iter().any(|v| &v.key == w) {
            r.error("winner", format!("unknown variant \"{w}\""));
        }
    }
    let start_at = r.timestamp(o.get("start_at"), &top("start_at"));
    let end_at = r.timestamp(o.get("end_at"), &top("end_at"));
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
    let variants = r.list(v, &top("variants"), |r, v, path| {
        let o = r.object(v, path, &["key", "weight", "value"])?;
        let key = r.required_string(o.get("key"), &path.field("key"));
        if key.as_deref().is_some_and(|k| k.is_empty() || k.len() > 128) {
            r.error(path.field("key"), "must be 1 to 128 characters");
        }
        let weight = match o.get("weight") {
            None | Some(Value::Null) => Some(1),
            Some(w) => {
                let weight = w.as_u64().and_then(|w| u32::try_from(w).ok());
                if weight.is_none() {
                    r.error(path.field("weight"), "must be a non-negative integer");
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
            r.error(top("variants").index(i).field("key"), format!("duplicate variant key \"{}\"", v.key));
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
    let metrics = r.list(v, &top("metrics"), read_metric);
    for (i, m) in metrics.iter().enumerate() {
        if metrics[..i].iter().any(|other| other.key == m.key) {
            r.error(top("metrics").index(i).field("key"), format!("duplicate metric key \"{}\"", m.key));
        }
    }
    metrics
}

fn read_metric(r: &mut Reader, v: &Value, path: &FieldPath<'_>) -> Option<Metric> {
    let at = |field: &'static str| path.field(field);
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
                    r.error(at(name), "is required for ratio metrics");
                }
            }
            if o.contains_key("event") {
                r.error(at("event"), "ratio metrics take numerator and denominator instead");
            }
        }
        Some(_) => {
            if event.is_none() && o.get("event").is_none_or(Value::is_null) {
                r.error(at("event"), "is required");
            }
            for name in ["numerator", "denominator"] {
                if o.contains_key(name) {
                    r.error(at(name), "is only for ratio metrics");
                }
            }
        }
        None => {}
    }
    let filter = r.optional(o.get("filter"), &at("filter"), Reader::condition);
    let cap = match o.get("cap") {
        None | Some(Value::Null) => Some(None),
        Some(c) => match c.as_f64().filter(|c| c.is_finite() && *c > 0.0) {
            Some(c) => Some(Some(c)),
            None => {
                r.error(at("cap"), format!("must be a positive number, found {c}"));
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

fn metric_source(r: &mut Reader, v: &Value, path: &FieldPath<'_>) -> Option<MetricSource> {
    let o = r.object(v, path, &["event", "agg"])?;
    let event = event_name(r, o.get("event"), &path.field("event"));
    if o.get("event").is_none_or(Value::is_null) {
        r.error(path.field("event"), "is required");
    }
    let agg = choice(
        r,
        o.get("agg"),
        &path.field("agg"),
        Some(Aggregation::Sum),
        &[("sum", Aggregation::Sum), ("count", Aggregation::Count)],
    );
    Some(MetricSource { event: event?, agg: agg? })
}

fn event_name(r: &mut Reader, v: Option<&Value>, path: &FieldPath<'_>) -> Option<String> {
    let name = r.string(v, path)?;
    r.matching(name, path, is_valid_event_name, EVENT_NAME_RULE)
}

/// One of a fixed set of names; `default` when absent (or an error when there is none).
fn choice<T: Copy>(
    r: &mut Reader,
    v: Option<&Value>,
    path: &FieldPath<'_>,
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
    let o =
        r.object(v, &top("analysis"), &["method", "alpha", "correction", "min_sample_per_variant", "auto_conclude"])?;
    let defaults = AnalysisConfig::default();
    let method = choice(
        r,
        o.get("method"),
        &top("analysis.method"),
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
        &top("analysis.correction"),
        Some(defaults.correction),
        &[("holm", Correction::Holm), ("bh", Correction::Bh), ("none", Correction::None)],
    );
    let alpha = match o.get("alpha") {
        None | Some(Value::Null) => Some(defaults.alpha),
        Some(a) => {
            let alpha = a.as_f64().filter(|a| *a > 0.0 && *a < 1.0);
            if alpha.is_none() {
                r.error(top("analysis.alpha"), format!("must be a number between 0 and 1, found {a}"));
            }
            alpha
        }
    };
    let min_sample = match o.get("min_sample_per_variant") {
        None | Some(Value::Null) => Some(defaults.min_sample_per_variant),
        Some(n) => {
            let n = n.as_u64();
            if n.is_none() {
                r.error(top("analysis.min_sample_per_variant"), "must be a non-negative integer");
            }
            n
        }
    };
    let auto_conclude = r.bool(o.get("auto_conclude"), &top("analysis.auto_conclude")).unwrap_or(false);
    Some(AnalysisConfig {
        method: method?,
        alpha: alpha?,
        correction: correction?,
        min_sample_per_variant: min_sample?,
        auto_conclude,
    })
}

/// A field of the experiment itself (`status`), or the start of a path within it.
fn top(field: &str) -> FieldPath<'_> {
    FieldPath::Text(field)
}
