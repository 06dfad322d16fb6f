//! The pure evaluation core of vexil: no I/O, no async.
//!
//! - [`model`]: flags, segments and conditions as users write them (SPEC 1.1, 1.2, 1.5);
//! - [`decode`]: JSON/YAML values into the model, with every problem reported by path;
//! - [`hash`] and [`allocation`]: the exact bucketing of SPEC 2, shared with experiments;
//! - [`FlagSet`]: a validated, compiled document that evaluates flags as SPEC 3 says;
//! - [`experiment`]: experiments (SPEC 1.3), their lifecycle and deterministic placement.
//!
//! ```
//! use vexil_core::{Context, FlagSet, Format, Reason};
//! let flags = FlagSet::from_text(r#"{"flags": [{"key": "dark_mode", "enabled": true,
//!     "default": {"variant": "on"}}]}"#, Format::Json).unwrap();
//! // Evaluation takes the time (Unix milliseconds) for schedules: the core never reads the clock.
//! let result = flags.evaluate("dark_mode", &Context::user("user_1"), 1_767_225_600_000).unwrap();
//! assert_eq!((result.variant, result.reason), ("on", Reason::Static));
//! ```

pub mod allocation;
pub mod bounds;
mod compile;
mod condition;
mod context;
pub mod decode;
mod error;
mod evaluate;
pub mod experiment;
mod flagset;
pub mod hash;
pub mod model;
mod record_json;

pub use compile::MAX_PREREQUISITE_DEPTH;
pub use condition::CompiledCondition;
pub use context::{
    context_bounds_problem, Attribute, AttributePath, Context, MAX_ATTRIBUTE_BYTES, MAX_CONTEXT_ATTRIBUTES,
    MAX_CONTEXT_VALUES,
};
pub use error::{ValidationError, ValidationErrors};
pub use evaluate::{
    validate_user_id, EvalEnv, EvalError, Evaluation, EvaluationRecord, ExperimentResolver, ExperimentVariant,
    NoExperiments, Reason, MAX_USER_ID_CHARS,
};
pub use flagset::{parse_text, FlagSet, Format};
pub use model::{Condition, Flag, FlagType, FlagsDocument, Operator, Percent, Segment, Serve};
