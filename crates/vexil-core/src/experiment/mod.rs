//! Experiments (SPEC 1.3): the model, its decoding and validation, the lifecycle, and the
//! deterministic placement of a user into a variant (targeting, traffic allocation and weights,
//! SPEC 2).
//!
//! - `model`: what an experiment is, as users write it and the service stores it;
//! - `decode`: JSON into that model, every problem reported by path;
//! - `placement`: an experiment compiled against a flag set, placing users in variants.
//!
//! Everything is re-exported here, so callers name `vexil_core::experiment::Experiment`.

mod decode;
mod model;
mod placement;

pub use decode::decode_experiment;
pub use model::{
    is_valid_event_name, Aggregation, AnalysisConfig, AnalysisMethod, Correction, Direction, Experiment,
    ExperimentStatus, ExperimentVariant, LifecycleAction, Metric, MetricKind, MetricRole, MetricSource,
    EVENT_NAME_RULE,
};
pub use placement::{CompiledExperiment, Placement};
