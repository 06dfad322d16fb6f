//! Experiment results over HTTP: simulated users with a known true effect, assigned through
//! `/v1/assign` and converting through `/v1/events`, must show that effect with the right sign
//! and an interval that covers it; A/A experiments on random data must be called no more often
//! than the test's alpha allows.

use crate::events::{post_json, settle};
use crate::harness::{Options, Server};
use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const USERS: usize = 4_000;

async fn start_experiment(server: &Server, key: &str, analysis: Value) {
    server
        .create(
            "experiments",
            json!({"key": key,
                   "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
                   "metrics": [{"key": "purchase_rate", "kind": "conversion", "event": "purchase", "role": "primary"}],
                   "analysis": analysis}),
        )
        .await;
    let (status, body) = server.call(Method::POST, &format!("/v1/admin/experiments/{key}/start"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Assigns every user through the API and returns each user's variant.
async fn assign_all(server: &Server, key: &str) -> Vec<(String, String)> {
    futures_util::stream::iter(0..USERS)
        .map(|i| async move {
            let user = format!("{key}_user_{i}");
            let (status, body) =
                server.call(Method::POST, "/v1/assign", Some(json!({"user_id": user, "experiment_key": key}))).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            (user, body["variant"].as_str().unwrap().to_string())
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Makes exactly `rate` of each variant's users convert, so the observed effect is the true one
/// (up to rounding) and the test cannot fail by chance.
fn purchases(assigned: &[(String, String)], rates: [(&str, f64); 2]) -> Vec<Value> {
    let mut events = Vec::new();
    for (variant, rate) in rates {
        let users: Vec<&String> = assigned.iter().filter(|(_, v)| v == variant).map(|(u, _)| u).collect();
        let converters = (users.len() as f64 * rate).round() as usize;
        events.extend(users[..converters].iter().map(|u| json!({"event": "purchase", "user_id": u, "value": 10.0})));
    }
    events
}

async fn results(server: &Server, key: &str) -> Value {
    let (status, body) = server.call(Method::GET, &format!("/v1/experiments/{key}/results"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn a_true_ten_percent_lift_is_found() {
    let server = Server::start().await;
    let analysis = json!({"method": "frequentist", "min_sample_per_variant": 100});
    start_experiment(&server, "lift", analysis).await;
    let lift = assign_all(&server, "lift").await;
    let events = purchases(&lift, [("control", 0.20), ("treatment", 0.22)]);
    for chunk in events.chunks(1_000) {
        post_json(&server, chunk).await;
    }
    // Exposures (one per user) and purchases are all processed before results are read.
    settle(&server, (USERS + events.len()) as f64).await;

    let lift = results(&server, "lift").await;
    assert_eq!(lift["experiment_key"], "lift");
    assert_eq!(lift["status"], "running");
    assert!(lift["srm"]["ok"].as_bool().unwrap(), "{}", lift["srm"]);
    let users: u64 = lift["variants"].as_array().unwrap().iter().map(|v| v["users"].as_u64().unwrap()).sum();
    assert_eq!(users, USERS as u64);
    let treatment = &lift["metrics"][0]["variants"][1];
    let relative = treatment["relative"]["effect"].as_f64().unwrap();
    let ci: Vec<f64> = treatment["relative"]["ci"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!((relative - 0.10).abs() < 0.01, "observed lift {relative}");
    assert!(ci[0] < 0.10 && 0.10 < ci[1], "interval {ci:?} misses the true lift");
    assert!(treatment["absolute"]["effect"].as_f64().unwrap() > 0.0);
    assert!(treatment["p_value_adjusted"].is_number());
    let series_users: u64 = lift["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|day| day["variants"].as_object().unwrap().values().map(|v| v["users"].as_u64().unwrap()))
        .sum();
    assert_eq!(series_users, USERS as u64);

    // Overrides for one answer, and bad input.
    let (status, bayes) = server.call(Method::GET, "/v1/experiments/lift/results?method=bayesian", None).await;
    assert_eq!(status, StatusCode::OK, "{bayes}");
    assert_eq!(bayes["method"], "bayesian");
    assert!(bayes["metrics"][0]["variants"][1]["chance_to_win"].as_f64().unwrap() > 0.5);
    let (status, bad) = server.call(Method::GET, "/v1/experiments/lift/results?method=magic", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let (status, missing) = server.call(Method::GET, "/v1/experiments/nope/results", None).await;
    assert_eq!((status, missing["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("experiment_not_found")));

    // The CLI shows the same document as a table.
    let (ok, table, stderr) =
        crate::cli::run(&["results", "lift", "--server", &server.base, "--key", &server.key]).await;
    assert!(ok, "{stderr}");
    assert!(table.starts_with("lift: running, frequentist analysis, holm correction; SRM ok"), "{table}");
    assert!(table.contains("purchase_rate (primary)") && table.contains("recommendation: "), "{table}");

    // Planning from the control's data: 20 % baseline.
    let (status, plan) = server.call(Method::GET, "/v1/experiments/lift/power?mde=0.1", None).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert!((plan["baseline"]["rate"].as_f64().unwrap() - 0.20).abs() < 0.005, "{plan}");
    assert!(plan["sample_size"]["users_per_variant"].as_u64().unwrap() > 5_000, "{plan}");
}

#[tokio::test]
async fn auto_conclude_completes_a_decided_sequential_experiment_with_its_winner() {
    let options = Options { env: vec![("VEXIL_SAFETY_CHECK_INTERVAL_MS".into(), "200".into())], ..Options::default() };
    let server = Server::start_with(options).await;
    start_experiment(
        &server,
        "auto",
        json!({"method": "sequential", "auto_conclude": true, "min_sample_per_variant": 100}),
    )
    .await;
    let assigned = assign_all(&server, "auto").await;
    let events = purchases(&assigned, [("control", 0.10), ("treatment", 0.20)]);
    for chunk in events.chunks(1_000) {
        post_json(&server, chunk).await;
    }
    settle(&server, (USERS + events.len()) as f64).await;

    let mut concluded = Value::Null;
    for _ in 0..100 {
        let (_, experiment) = server.call(Method::GET, "/v1/admin/experiments/auto", None).await;
        if experiment["status"] == "completed" {
            concluded = experiment;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(concluded["winner"], "treatment", "not concluded: {concluded}");
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=experiment&key=auto&limit=1", None).await;
    assert_eq!(audit["records"][0]["actor"], "system:auto_conclude", "{audit}");
    let (_, answer) =
        server.call(Method::POST, "/v1/assign", Some(json!({"user_id": "newcomer", "experiment_key": "auto"}))).await;
    assert_eq!(
        (answer["variant"].as_str(), answer["reason"].as_str()),
        (Some("treatment"), Some("EXPERIMENT_CONCLUDED"))
    );
}

/// A/A experiments: each user is exposed to a fair coin's arm and converts with the same 20 %
/// in both, drawn at random. A correct analysis at alpha 5 % calls about one in twenty
/// significant, with p-values spread evenly over (0, 1).
///
/// With 300 experiments the count of calls is Binomial(300, 0.05) when all is well (mean 15);
/// "at most 27" is an exact one-sided test at level 0.0013, which a true false-positive rate of
/// 10 % fails two times in three and one of 12 % 94 times in 100. The even
/// spread catches the opposite defect, an analysis that never calls anything: p < 0.5 for
/// 150 ± 40 experiments (over 4.6 standard deviations).
#[tokio::test]
async fn a_a_experiments_are_called_significant_at_the_nominal_rate() {
    const EXPERIMENTS: usize = 300;
    const USERS_EACH: usize = 300;
    let server = Server::start().await;
    let analysis = json!({"method": "frequentist", "min_sample_per_variant": 100});
    let keys: Vec<String> = (0..EXPERIMENTS).map(|i| format!("aa_{i}")).collect();
    futures_util::stream::iter(&keys)
        .for_each_concurrent(8, |key| start_experiment(&server, key, analysis.clone()))
        .await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_204);
    let exposed_at = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let bought_at = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let mut events = Vec::new();
    for key in &keys {
        for u in 0..USERS_EACH {
            let user = format!("{key}_user_{u}");
            let variant = if rng.gen_bool(0.5) { "control" } else { "treatment" };
            events.push(json!({"event": "exposure", "type": "exposure", "user_id": user, "experiment_key": key,
                               "variant": variant, "timestamp": exposed_at}));
            if rng.gen_bool(0.2) {
                events.push(json!({"event": "purchase", "user_id": user, "value": 1.0, "timestamp": bought_at}));
            }
        }
    }
    for chunk in events.chunks(2_000) {
        post_json(&server, chunk).await;
    }
    settle(&server, events.len() as f64).await;

    let (mut called, mut below_half) = (0, 0);
    for key in &keys {
        let result = results(&server, key).await;
        let users: u64 = result["variants"].as_array().unwrap().iter().map(|v| v["users"].as_u64().unwrap()).sum();
        assert_eq!(users, USERS_EACH as u64, "{key}: every exposed user counted once");
        let treatment = &result["metrics"][0]["variants"][1];
        let p = treatment["relative"]["p_value"].as_f64().unwrap_or_else(|| panic!("{key}: no p-value: {treatment}"));
        assert_eq!(treatment["significant"], p < 0.05, "{key}: {treatment}");
        called += usize::from(p < 0.05);
        below_half += usize::from(p < 0.5);
    }
    assert!(called <= 27, "{called} of {EXPERIMENTS} A/A experiments called significant at alpha 5 %");
    assert!((110..=190).contains(&below_half), "{below_half} of {EXPERIMENTS} A/A p-values below 0.5");
}
