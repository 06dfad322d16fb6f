//! Flag evaluation exactly as SPEC 3, step by step, and the reasons it reports.
//!
//! The evaluator borrows everything it returns from the compiled flag set, so evaluating a
//! flag allocates nothing on the heap (a test with a counting allocator holds us to that).

use crate::compile::{CompiledFlag, CompiledServe, FlagEntry};
use crate::context::{unit_bytes, Context};
use crate::model::{Flag, FlagType};
use serde::Serialize;
use serde_json::Value;

/// Why a flag served what it served (SPEC 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    Disabled,
    ScheduledOff,
    PrerequisiteFailed,
    Override,
    TargetingMatch,
    Split,
    RolloutExcluded,
    Default,
    Static,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Disabled,
        Reason::ScheduledOff,
        Reason::PrerequisiteFailed,
        Reason::Override,
        Reason::TargetingMatch,
        Reason::Split,
        Reason::RolloutExcluded,
        Reason::Default,
        Reason::Static,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::Disabled => "DISABLED",
            Reason::ScheduledOff => "SCHEDULED_OFF",
            Reason::PrerequisiteFailed => "PREREQUISITE_FAILED",
            Reason::Override => "OVERRIDE",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::RolloutExcluded => "ROLLOUT_EXCLUDED",
            Reason::Default => "DEFAULT",
            Reason::Static => "STATIC",
        }
    }

    /// The OpenFeature (OFREP) reason for this native reason.
    pub fn ofrep(self) -> &'static str {
        match self {
            Reason::Override | Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split | Reason::RolloutExcluded => "SPLIT",
            Reason::Default => "DEFAULT",
            Reason::Static => "STATIC",
            Reason::Disabled | Reason::ScheduledOff | Reason::PrerequisiteFailed => "DISABLED",
        }
    }
}

/// Why an evaluation could not be made at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvalError {
    InvalidUserId,
    /// A user id longer than [`MAX_USER_ID_CHARS`] (after trimming), as events refuse it.
    UserIdTooLong,
    FlagNotFound(String),
}

impl EvalError {
    /// The API error code (SPEC 4).
    pub fn code(&self) -> &'static str {
        match self {
            EvalError::InvalidUserId | EvalError::UserIdTooLong => "invalid_user_id",
            EvalError::FlagNotFound(_) => "flag_not_found",
        }
    }
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalError::InvalidUserId => f.write_str("user_id must be a non-empty string"),
            EvalError::UserIdTooLong => write!(f, "user_id must be at most {MAX_USER_ID_CHARS} characters"),
            EvalError::FlagNotFound(key) => write!(f, "flag \"{key}\" does not exist"),
        }
    }
}

impl std::error::Error for EvalError {}

/// The outcome of evaluating one flag for one context.
#[derive(Clone, Copy, Debug)]
pub struct Evaluation<'a> {
    pub flag: &'a Flag,
    pub variant: &'a str,
    pub value: &'a Value,
    pub reason: Reason,
    pub rule_id: Option<&'a str>,
    /// For boolean flags the value; otherwise whether the variant is not the off variant.
    pub enabled: bool,
}

impl<'a> Evaluation<'a> {
    /// The result document of SPEC 3 for `user_id`.
    pub fn record(&self, user_id: &'a str) -> EvaluationRecord<'a> {
        EvaluationRecord {
            flag_key: &self.flag.key,
            flag_id: self.flag.meta.id.as_deref(),
            flag_version: self.flag.meta.version,
            user_id,
            value: self.value,
            variant: self.variant,
            reason: self.reason,
            rule_id: self.rule_id,
            enabled: self.enabled,
        }
    }
}

/// The serialized form of an evaluation result (SPEC 3).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct EvaluationRecord<'a> {
    pub flag_key: &'a str,
    pub flag_id: Option<&'a str>,
    pub flag_version: Option<u64>,
    pub user_id: &'a str,
    pub value: &'a Value,
    pub variant: &'a str,
    pub reason: Reason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<&'a str>,
    pub enabled: bool,
}

/// The variant a user has in an experiment, and the flag value that variant carries.
#[derive(Clone, Copy, Debug)]
pub struct ExperimentVariant<'a> {
    pub variant: &'a str,
    pub value: &'a Value,
}

/// Answers `serve: {"experiment": key}`: the user's variant in that experiment, if any.
pub trait ExperimentResolver {
    fn resolve(&self, experiment_key: &str, ctx: &Context<'_>) -> Option<ExperimentVariant<'_>>;
}

/// For evaluation without experiments: nobody is in any experiment.
pub struct NoExperiments;

impl ExperimentResolver for NoExperiments {
    fn resolve(&self, _: &str, _: &Context<'_>) -> Option<ExperimentVariant<'_>> {
        None
    }
}

/// What an evaluation may depend on besides the flags and the context. The time is an input:
/// the core never reads the clock, so an evaluation is a pure function of what it is given.
#[derive(Clone, Copy)]
pub struct EvalEnv<'r> {
    /// Unix milliseconds to evaluate schedules at.
    pub now_millis: i64,
    pub experiments: &'r dyn ExperimentResolver,
}

impl EvalEnv<'_> {
    /// Evaluation at `now_millis` with no experiments.
    pub fn at(now_millis: i64) -> EvalEnv<'static> {
        EvalEnv { now_millis, experiments: &NoExperiments }
    }
}

/// Longest accepted `user_id`, in characters after trimming, on every route: an id the event
/// pipeline would refuse must not be assigned or evaluated either, or its exposures vanish.
pub const MAX_USER_ID_CHARS: usize = 256;

/// Checks the user id of SPEC 3 step 1: a string with something besides white space, and at
/// most [`MAX_USER_ID_CHARS`] characters.
pub fn validate_user_id(user_id: &str) -> Result<(), EvalError> {
    let trimmed = user_id.trim();
    if trimmed.is_empty() {
        Err(EvalError::InvalidUserId)
    } else if trimmed.len() > MAX_USER_ID_CHARS && trimmed.chars().count() > MAX_USER_ID_CHARS {
        Err(EvalError::UserIdTooLong)
    } else {
        Ok(())
    }
}

pub(crate) fn evaluate<'a>(flags: &'a [FlagEntry], i: usize, ctx: &Context<'_>, env: &EvalEnv<'a>) -> Evaluation<'a> {
    let entry = &flags[i];
    let flag: &CompiledFlag = &entry.compiled;
    let off = || flag.serve_variant(flag.off, Reason::Disabled, None);

    if !flag.source.enabled || entry.stopped {
        return off();
    }
    if let Some((enable_at, disable_at)) = flag.schedule {
        let now = env.now_millis;
        if enable_at.is_some_and(|t| now < t) || disable_at.is_some_and(|t| now >= t) {
            return Evaluation { reason: Reason::ScheduledOff, ..off() };
        }
    }
    // The compiler rejects cycles and chains deeper than the limit, so recursion is bounded.
    for prerequisite in flag.prerequisites.iter() {
        let result = evaluate(flags, prerequisite.flag, ctx, env);
        if !prerequisite.variants.iter().any(|v| v.as_ref() == result.variant) {
            return Evaluation { reason: Reason::PrerequisiteFailed, ..off() };
        }
    }
    let user = ctx.user_id();
    if flag.disabled_for.contains(user) {
        return Evaluation { reason: Reason::Override, ..off() };
    }
    if let Some(&variant) = flag.pinned.get(user) {
        return flag.serve_variant(variant, Reason::Override, None);
    }
    for rule in flag.rules.iter() {
        if rule.when.matches(ctx) {
            return flag.serve(&rule.serve, Reason::TargetingMatch, Some(&rule.id), ctx, env);
        }
    }
    let fixed_reason = if flag.is_static { Reason::Static } else { Reason::Default };
    flag.serve(&flag.default, fixed_reason, None, ctx, env)
}

impl CompiledFlag {
    fn serve_variant<'a>(&'a self, variant: usize, reason: Reason, rule_id: Option<&'a str>) -> Evaluation<'a> {
        let value = &self.variant_values[variant];
        Evaluation {
            flag: &self.source,
            variant: &self.variant_names[variant],
            value,
            reason,
            rule_id,
            enabled: self.is_enabled(variant == self.off, value),
        }
    }

    fn is_enabled(&self, is_off_variant: bool, value: &Value) -> bool {
        match self.source.kind {
            FlagType::Boolean => value.as_bool().unwrap_or(false),
            _ => !is_off_variant,
        }
    }

    /// Serves a rule's or the default's choice; `fixed_reason` is the reason of a fixed variant.
    fn serve<'a>(
        &'a self,
        serve: &'a CompiledServe,
        fixed_reason: Reason,
        rule_id: Option<&'a str>,
        ctx: &Context<'_>,
        env: &EvalEnv<'a>,
    ) -> Evaluation<'a> {
        match serve {
            CompiledServe::Variant(v) => self.serve_variant(*v, fixed_reason, rule_id),
            CompiledServe::Split(allocation, variants) => {
                let mut buf = [0u8; 40];
                let served = ctx
                    .lookup(&self.bucket_by)
                    .and_then(|attr| unit_bytes(attr, &mut buf))
                    .and_then(|unit| allocation.variant_for(self.salt.bucket(unit)));
                match served {
                    Some(i) => self.serve_variant(variants[i], Reason::Split, rule_id),
                    None => self.serve_variant(self.off, Reason::RolloutExcluded, rule_id),
                }
            }
            CompiledServe::Experiment(key) => match env.experiments.resolve(key, ctx) {
                Some(assigned) => Evaluation {
                    flag: &self.source,
                    variant: assigned.variant,
                    value: assigned.value,
                    reason: Reason::Split,
                    rule_id,
                    enabled: self.is_enabled(assigned.variant == self.variant_names[self.off].as_ref(), assigned.value),
                },
                None => self.serve_variant(self.off, Reason::RolloutExcluded, rule_id),
            },
        }
    }
}
