//! The OpenFeature provider through the `open-feature` crate's own client: every type, the
//! reasons as OFREP maps them (native reason in the metadata) and every error code.
//!
//! The configuration comes from a bootstrap file and the server address is one nobody listens
//! on, so these answers are the ones an application gets while its server is away.

use open_feature::{
    EvaluationContext, EvaluationErrorCode, EvaluationReason, FlagMetadataValue, OpenFeature, StructValue,
};
use serde_json::json;
use std::time::Duration;
use vexil_sdk::openfeature::VexilProvider;
use vexil_sdk::{Client, Options};

fn flags() -> serde_json::Value {
    json!({"flags": [
        {"key": "beta", "enabled": true, "overrides": {"enabled_for": ["vip"]}, "default": {"variant": "off"}},
        {"key": "theme", "type": "string", "enabled": true, "variants": {"dark": "dark", "light": "light"},
         "off_variant": "light",
         "rules": [{"id": "early", "when": {"attr": "signup", "op": "before", "value": "2024-01-01T00:00:00Z"},
                    "serve": {"variant": "dark"}}],
         "default": {"split": {"light": 1}, "rollout": 100}},
        {"key": "retries", "type": "number", "enabled": true, "variants": {"few": 3, "half": 2.5},
         "off_variant": "few", "rules": [{"id": "pro", "when": {"attr": "plan", "op": "eq", "value": "pro"},
                                          "serve": {"variant": "half"}}],
         "default": {"variant": "few"}},
        {"key": "limits", "type": "json", "enabled": true, "variants": {"object": {"rpm": 60}, "list": [1, 2]},
         "off_variant": "list", "default": {"variant": "object"}},
        {"key": "old", "type": "json", "enabled": false, "variants": {"object": {"rpm": 60}, "list": [1, 2]},
         "off_variant": "list", "default": {"variant": "object"}},
        {"key": "sunset", "enabled": true, "schedule": {"disable_at": "2020-01-01T00:00:00Z"}, "default": {"variant": "on"}}
    ]})
}

fn unreachable() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

fn user(id: &str) -> EvaluationContext {
    EvaluationContext::default().with_targeting_key(id)
}

fn native_reason(metadata: &open_feature::FlagMetadata) -> Option<&str> {
    match metadata.values.get("reason")? {
        FlagMetadataValue::String(reason) => Some(reason),
        _ => None,
    }
}

#[tokio::test]
async fn the_provider_resolves_every_type_with_ofrep_reasons_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("flags.json");
    std::fs::write(&bootstrap, flags().to_string()).unwrap();
    let options = Options::new(unreachable(), "key")
        .bootstrap_file(&bootstrap)
        .retry_delays(Duration::from_secs(5), Duration::from_secs(5));
    let provider = VexilProvider::new(Client::start(options)).ready_within(Duration::from_millis(10));
    let mut api = OpenFeature::singleton_mut().await;
    api.set_provider(provider).await;
    let client = api.create_client();

    let vip = client.get_bool_details("beta", Some(&user("vip")), None).await.unwrap();
    assert_eq!((vip.value, vip.variant.as_deref()), (true, Some("on")));
    assert_eq!(
        (vip.reason, native_reason(&vip.flag_metadata)),
        (Some(EvaluationReason::TargetingMatch), Some("OVERRIDE"))
    );
    let other = client.get_bool_details("beta", Some(&user("u1")), None).await.unwrap();
    assert_eq!((other.value, other.reason), (false, Some(EvaluationReason::Default)));

    let signed_up = time::OffsetDateTime::from_unix_timestamp(1_600_000_000).unwrap();
    let early = user("u1").with_custom_field("signup", signed_up);
    let theme = client.get_string_details("theme", Some(&early), None).await.unwrap();
    assert_eq!((theme.value.as_str(), theme.reason), ("dark", Some(EvaluationReason::TargetingMatch)));
    assert_eq!(theme.flag_metadata.values.get("rule_id"), Some(&FlagMetadataValue::String("early".into())));
    let theme = client.get_string_details("theme", Some(&user("u1")), None).await.unwrap();
    assert_eq!((theme.value.as_str(), theme.reason), ("light", Some(EvaluationReason::Split)));

    let retries = client.get_int_details("retries", Some(&user("u1")), None).await.unwrap();
    assert_eq!((retries.value, retries.reason), (3, Some(EvaluationReason::Default)));
    let pro = user("u1").with_custom_field("plan", "pro");
    let half = client.get_float_details("retries", Some(&pro), None).await.unwrap();
    assert_eq!((half.value, half.variant.as_deref()), (2.5, Some("half")));
    let not_whole = client.get_int_details("retries", Some(&pro), None).await.unwrap_err();
    assert_eq!(not_whole.code, EvaluationErrorCode::TypeMismatch);

    let limits = client.get_struct_details::<StructValue>("limits", Some(&user("u1")), None).await.unwrap();
    assert_eq!(limits.value.fields.get("rpm"), Some(&open_feature::Value::Int(60)));
    assert_eq!(limits.reason, Some(EvaluationReason::Static));
    let list = client.get_struct_details::<StructValue>("old", Some(&user("u1")), None).await.unwrap_err();
    assert_eq!(list.code, EvaluationErrorCode::TypeMismatch, "an array is not a structure");

    let sunset = client.get_bool_details("sunset", Some(&user("u1")), None).await.unwrap();
    assert_eq!((sunset.value, sunset.reason), (false, Some(EvaluationReason::Disabled)));
    assert_eq!(native_reason(&sunset.flag_metadata), Some("SCHEDULED_OFF"));

    let errors = [
        (
            client.get_bool_details("missing", Some(&user("u1")), None).await.unwrap_err().code,
            EvaluationErrorCode::FlagNotFound,
        ),
        (
            client.get_bool_details("theme", Some(&user("u1")), None).await.unwrap_err().code,
            EvaluationErrorCode::TypeMismatch,
        ),
        (
            client.get_string_details("retries", Some(&user("u1")), None).await.unwrap_err().code,
            EvaluationErrorCode::TypeMismatch,
        ),
        (
            client.get_bool_details("beta", Some(&user(" ")), None).await.unwrap_err().code,
            EvaluationErrorCode::TargetingKeyMissing,
        ),
        (client.get_bool_details("beta", None, None).await.unwrap_err().code, EvaluationErrorCode::TargetingKeyMissing),
    ];
    for (got, expected) in errors {
        assert_eq!(got, expected);
    }
    assert!(!client.get_bool_value("missing", Some(&user("u1")), None).await.unwrap_or(false));

    // Without any configuration yet, every resolution says the provider is not ready.
    let empty = VexilProvider::new(Client::start(Options::new(unreachable(), "key"))).ready_within(Duration::ZERO);
    api.set_named_provider("empty", empty).await;
    let not_ready = api.create_named_client("empty").get_bool_details("beta", Some(&user("u1")), None).await;
    assert_eq!(not_ready.unwrap_err().code, EvaluationErrorCode::ProviderNotReady);
}
