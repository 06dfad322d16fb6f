//! An [OpenFeature](https://openfeature.dev) provider for the `open-feature` crate, evaluating
//! in-process through a [`Client`].
//!
//! Reasons and error codes are those the server's OFREP endpoint answers, so an application
//! sees the same whether it evaluates locally through this provider or remotely through an
//! OFREP provider: `OVERRIDE` and `TARGETING_MATCH` resolve as `TARGETING_MATCH`, `SPLIT` and
//! `ROLLOUT_EXCLUDED` as `SPLIT`, `DISABLED`, `SCHEDULED_OFF` and `PREREQUISITE_FAILED` as
//! `DISABLED`, and the native reason travels in the flag metadata as `reason` (with
//! `flag_version` and `rule_id`). The targeting key is the user id; a missing or blank one is
//! `TARGETING_KEY_MISSING`. Context fields become attributes: date-times as RFC 3339 strings;
//! opaque structures cannot be read and are left out.
//!
//! ```no_run
//! use open_feature::{EvaluationContext, OpenFeature};
//! use vexil_sdk::{openfeature::VexilProvider, Client, Options};
//!
//! # async fn run() {
//! let client = Client::start(Options::new("http://127.0.0.1:8080", "vx_srv_..."));
//! let mut api = OpenFeature::singleton_mut().await;
//! api.set_provider(VexilProvider::new(client)).await;
//! let flags = api.create_client();
//! let ctx = EvaluationContext::default().with_targeting_key("user_123").with_custom_field("country", "US");
//! let on = flags.get_bool_value("new_checkout", Some(&ctx), None).await.unwrap_or(false);
//! # let _ = on;
//! # }
//! ```

use crate::client::{Client, Details, ErrorKind, Resolution, Status};
use open_feature::async_trait;
use open_feature::provider::{FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode, EvaluationReason,
    EvaluationResult, FlagMetadata, StructValue,
};
use serde_json::{Map, Value};
use std::time::Duration;
use vexil_core::{Context, Reason};

/// The provider: a [`Client`] behind OpenFeature's interface.
pub struct VexilProvider {
    client: Client,
    metadata: ProviderMetadata,
    ready_within: Duration,
}

impl VexilProvider {
    /// A provider evaluating through `client`. Its `initialize` waits up to 5 s for the
    /// server's configuration (it never fails: fallbacks and defaults are served meanwhile).
    pub fn new(client: Client) -> VexilProvider {
        VexilProvider { client, metadata: ProviderMetadata::new("vexil"), ready_within: Duration::from_secs(5) }
    }

    /// How long `initialize` waits for the server's configuration.
    pub fn ready_within(mut self, limit: Duration) -> VexilProvider {
        self.ready_within = limit;
        self
    }

    /// Evaluates through `detailed` with the context converted; maps the outcome.
    fn resolve<T, U>(
        &self,
        context: &EvaluationContext,
        detailed: impl FnOnce(&Client, &Context<'_>) -> Details<T>,
        convert: impl FnOnce(T) -> Option<U>,
    ) -> EvaluationResult<ResolutionDetails<U>> {
        let user_id = context.targeting_key.as_deref().filter(|key| !key.trim().is_empty());
        let Some(user_id) = user_id else {
            return Err(error(ErrorKind::InvalidUserId, "the evaluation context has no targeting key"));
        };
        let attributes = attributes(context);
        let details = detailed(&self.client, &Context::new(user_id, &attributes));
        let (reason, native_reason) = match details.resolution {
            Resolution::Evaluated(reason) => (openfeature_reason(reason), reason.name()),
            // The off variant is served until the arm arrives; OpenFeature has no closer reason.
            Resolution::ArmUnknown => (EvaluationReason::Unknown, "ARM_UNKNOWN"),
            Resolution::Error(kind) => return Err(error(kind, describe(kind))),
        };
        let value = convert(details.value)
            .ok_or_else(|| error(ErrorKind::TypeMismatch, "the flag's value does not fit the type asked for"))?;
        let mut metadata = FlagMetadata::default().with_value("reason", native_reason);
        if let Some(version) = details.flag_version.and_then(|v| i64::try_from(v).ok()) {
            metadata = metadata.with_value("flag_version", version);
        }
        if let Some(rule_id) = details.rule_id {
            metadata = metadata.with_value("rule_id", rule_id);
        }
        Ok(ResolutionDetails { value, variant: details.variant, reason: Some(reason), flag_metadata: Some(metadata) })
    }
}

fn openfeature_reason(reason: Reason) -> EvaluationReason {
    match reason.ofrep() {
        "TARGETING_MATCH" => EvaluationReason::TargetingMatch,
        "SPLIT" => EvaluationReason::Split,
        "DEFAULT" => EvaluationReason::Default,
        "STATIC" => EvaluationReason::Static,
        "DISABLED" => EvaluationReason::Disabled,
        other => EvaluationReason::Other(other.to_string()),
    }
}

fn describe(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotReady => "no configuration has been received from the server or a local file yet",
        ErrorKind::FlagNotFound => "the configuration has no flag with this key",
        ErrorKind::TypeMismatch => "the flag's type is not the type asked for",
        ErrorKind::InvalidUserId => "the targeting key is empty",
    }
}

fn error(kind: ErrorKind, message: &str) -> EvaluationError {
    let code = match kind {
        ErrorKind::NotReady => EvaluationErrorCode::ProviderNotReady,
        ErrorKind::FlagNotFound => EvaluationErrorCode::FlagNotFound,
        ErrorKind::TypeMismatch => EvaluationErrorCode::TypeMismatch,
        ErrorKind::InvalidUserId => EvaluationErrorCode::TargetingKeyMissing,
    };
    EvaluationError { code, message: Some(message.to_string()) }
}

/// The context's fields as attributes, with `targetingKey` among them as OFREP sends it.
fn attributes(context: &EvaluationContext) -> Map<String, Value> {
    let mut attributes: Map<String, Value> = context
        .custom_fields
        .iter()
        .filter_map(|(name, field)| {
            let value = match field {
                EvaluationContextFieldValue::Bool(b) => Value::Bool(*b),
                EvaluationContextFieldValue::Int(i) => Value::from(*i),
                EvaluationContextFieldValue::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number)?,
                EvaluationContextFieldValue::String(s) => Value::String(s.clone()),
                EvaluationContextFieldValue::DateTime(at) => {
                    Value::String(at.format(&time::format_description::well_known::Rfc3339).ok()?)
                }
                EvaluationContextFieldValue::Struct(_) => return None,
            };
            Some((name.clone(), value))
        })
        .collect();
    if let Some(key) = &context.targeting_key {
        attributes.insert("targetingKey".into(), Value::String(key.clone()));
    }
    attributes
}

/// A whole number as OpenFeature's integer (a number flag serving 2.5 is not one).
fn integer(value: f64) -> Option<i64> {
    let in_range = value.fract() == 0.0 && value >= i64::MIN as f64 && value < i64::MAX as f64;
    in_range.then_some(value as i64)
}

fn structure(value: Value) -> Option<StructValue> {
    match open_feature::Value::try_from(value).ok()? {
        open_feature::Value::Struct(fields) => Some(fields),
        _ => None,
    }
}

#[async_trait]
impl FeatureProvider for VexilProvider {
    async fn initialize(&mut self, _: &EvaluationContext) {
        self.client.wait_until_ready(self.ready_within).await;
    }

    fn status(&self) -> ProviderStatus {
        match self.client.status() {
            Status::NotReady => ProviderStatus::NotReady,
            Status::Ready => ProviderStatus::Ready,
            Status::Fallback(_) | Status::Stale => ProviderStatus::STALE,
        }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(ctx, |client, ctx| client.bool_details(key, ctx, false), Some)
    }

    async fn resolve_int_value(&self, key: &str, ctx: &EvaluationContext) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(ctx, |client, ctx| client.number_details(key, ctx, 0.0), integer)
    }

    async fn resolve_float_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(ctx, |client, ctx| client.number_details(key, ctx, 0.0), Some)
    }

    async fn resolve_string_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(ctx, |client, ctx| client.string_details(key, ctx, ""), Some)
    }

    async fn resolve_struct_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve(ctx, |client, ctx| client.json_details(key, ctx, Value::Null), structure)
    }
}
