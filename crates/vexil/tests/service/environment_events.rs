//! Events per environment (SPEC 9) over HTTP: each environment's events, aggregates, experiment
//! results, counters, dead letters, budgets and stops are its own, and the event data a vexil
//! from before left in a data directory is served unchanged as production's. Every scenario
//! runs on the embedded store and on PostgreSQL.

use crate::events::settle;
use crate::harness::{eventually, vexil, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use vexil_store::testkit::postgres::fresh_database;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-environment-events");

/// The servers a scenario runs on: the embedded store, and PostgreSQL when the engine is there
/// (without it that run fails, or records a skip with `VEXIL_TEST_ALLOW_SKIPS`).
async fn servers(options: impl Fn() -> Options) -> Vec<Server> {
    let mut servers = vec![Server::start_with(options()).await];
    if let Some(url) = fresh_database().await {
        let mut postgres = options();
        postgres.args.extend(["--database-url".to_string(), url]);
        servers.push(Server::start_with(postgres).await);
    }
    servers
}

/// An admin call in environment `env`.
async fn in_env(server: &Server, env: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    as_admin(server, &server.key, env, method, path, body).await
}

/// An admin call with `key` in environment `env`.
async fn as_admin(
    server: &Server,
    key: &str,
    env: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = server.with_key(method, path, key).header("X-Vexil-Env", env);
    if let Some(body) = body {
        request = request.json(&body);
    }
    Server::send(request).await
}

/// A call with `key` (bound to its environment).
async fn with_key(server: &Server, key: &str, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    Server::send(server.with_key(method, path, key).json(&body)).await
}

async fn create_key(server: &Server, kind: &str, environment: &str) -> String {
    let body = json!({"kind": kind, "name": format!("{kind} of {environment}"), "environment": environment});
    let (status, created) = server.call(Method::POST, "/v1/admin/keys", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["key"].as_str().unwrap().to_string()
}

async fn ok(answer: (StatusCode, Value)) -> Value {
    assert!(answer.0.is_success(), "{} {}", answer.0, answer.1);
    answer.1
}

/// Users per environment.
const USERS: usize = 20;

#[tokio::test]
async fn events_and_results_never_mix_across_environments() {
    for (run, server) in servers(Options::default).await.into_iter().enumerate() {
        let embedded = run == 0;
        ok(server.call(Method::POST, "/v1/admin/environments", Some(json!({"key": "staging"}))).await).await;
        let experiment = json!({"key": "checkout_test",
            "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
            "metrics": [{"key": "purchase_rate", "kind": "conversion", "event": "purchase", "role": "primary"}]});
        for env in ["production", "staging"] {
            ok(in_env(&server, env, Method::POST, "/v1/admin/experiments", Some(experiment.clone())).await).await;
            ok(in_env(&server, env, Method::POST, "/v1/admin/experiments/checkout_test/start", None).await).await;
        }
        let production = create_key(&server, "server", "production").await;
        let staging = create_key(&server, "server", "staging").await;
        // The same users, the same experiment key, in both environments: exposures go to the
        // key's environment.
        for key in [&production, &staging] {
            for i in 0..USERS {
                let body = json!({"user_id": format!("user_{i}"), "experiment_key": "checkout_test"});
                ok(with_key(&server, key, Method::POST, "/v1/assign", body).await).await;
            }
        }
        // The exposures go through the server's queue: they are processed before the purchases
        // are sent, so every purchase is attributed (attribution uses the state at processing).
        settle(&server, (2 * USERS) as f64).await;
        // Every production user buys; in staging nobody buys, and the staging events reuse
        // production's event ids (they are other events there, not redeliveries).
        let events = |name: &str| -> Value {
            let events: Vec<Value> = (0..USERS)
                .map(|i| json!({"event": name, "user_id": format!("user_{i}"), "value": 10, "event_id": format!("e{i}")}))
                .collect();
            json!(events)
        };
        let answer = ok(with_key(&server, &production, Method::POST, "/v1/events", events("purchase")).await).await;
        assert_eq!(answer["accepted"], USERS, "{answer}");
        let mut staged = events("signup");
        staged.as_array_mut().unwrap().push(json!({"event": "signup"}));
        let answer = ok(with_key(&server, &staging, Method::POST, "/v1/events", staged).await).await;
        assert_eq!((&answer["accepted"], &answer["duplicates"]), (&json!(USERS), &json!(0)), "{answer}");
        assert_eq!(answer["rejected"][0]["error"]["code"], "invalid_user_id", "{answer}");
        settle(&server, (4 * USERS) as f64).await;

        // Results: each environment's users and conversions only.
        for (key, rate) in [(&production, 1.0), (&staging, 0.0)] {
            let path = "/v1/experiments/checkout_test/results";
            let results = ok(with_key(&server, key, Method::GET, path, Value::Null).await).await;
            let users: u64 = results["variants"].as_array().unwrap().iter().map(|v| v["users"].as_u64().unwrap()).sum();
            assert_eq!(users, USERS as u64, "{results}");
            for variant in results["metrics"][0]["variants"].as_array().unwrap() {
                assert_eq!(variant["mean"], rate, "{results}");
            }
            let power =
                ok(with_key(&server, key, Method::GET, "/v1/experiments/checkout_test/power", Value::Null).await).await;
            assert!(power.is_object(), "{power}");
        }
        // Counters: each environment's events only, answered by their own names.
        let count = |key: &String, event: &str| {
            let (server, key, event) = (&server, key.clone(), event.to_string());
            async move {
                let path = format!("/v1/stats/events?event={event}&window=day");
                let stats = ok(with_key(server, &key, Method::GET, &path, Value::Null).await).await;
                let buckets = stats["buckets"].as_array().unwrap();
                assert!(buckets.iter().all(|b| b["event"] == event.as_str()), "{stats}");
                buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>()
            }
        };
        assert_eq!((count(&production, "purchase").await, count(&staging, "purchase").await), (USERS as u64, 0));
        assert_eq!((count(&production, "signup").await, count(&staging, "signup").await), (0, USERS as u64));
        assert_eq!(count(&staging, "exposure").await, USERS as u64);

        // The staging dead letter is not production's: not listed, counted or purged there.
        let (_, listed) = in_env(&server, "production", Method::GET, "/v1/admin/dlq", None).await;
        assert_eq!((&listed["total"], &listed["entries"]), (&json!(0), &json!([])), "{listed}");
        let (_, purged) = in_env(&server, "production", Method::DELETE, "/v1/admin/dlq", None).await;
        assert_eq!(purged["purged"], 0);
        let (_, listed) = in_env(&server, "staging", Method::GET, "/v1/admin/dlq", None).await;
        assert_eq!(listed["total"], 1, "{listed}");
        assert_eq!(listed["entries"][0]["error"]["code"], "invalid_user_id", "{listed}");
        // The CLI on the (embedded) data directory sees the same split, production without --env.
        let data_dir = server.data_dir.to_string_lossy().into_owned();
        for (env, total) in [(None, 0), (Some("staging"), 1)].into_iter().filter(|_| embedded) {
            let mut args = vec!["dlq", "list", "--data-dir", data_dir.as_str()];
            args.extend(env.iter().flat_map(|env| ["--env", *env]));
            let (ok, stdout, stderr) = crate::cli::run(&args).await;
            assert!(ok, "{stderr}");
            let listed: Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(listed["total"], total, "{env:?}: {listed}");
        }

        // Evaluation counts an SDK reports are its key's environment's.
        let counts = json!({"report_id": "r1", "counts": [{"flag": "banner", "variant": "on", "count": 7}]});
        ok(with_key(&server, &staging, Method::POST, "/v1/events/evaluation-counts", counts.clone()).await).await;
        // The same report id in production is another report.
        let answer =
            ok(with_key(&server, &production, Method::POST, "/v1/events/evaluation-counts", counts).await).await;
        assert_eq!(answer["duplicate"], false, "{answer}");
        eventually("the staging evaluation counts", || async {
            let path = "/v1/stats/events?event=$evaluation:banner&window=day";
            let stats = ok(with_key(&server, &staging, Method::GET, path, Value::Null).await).await;
            let buckets = stats["buckets"].as_array().unwrap();
            (buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>() == 7).then_some(())
        })
        .await;
    }
}

/// A stop and a budget in staging: the stop's gauge and the budget's spend are staging's, and
/// production serves and counts on unchanged.
#[tokio::test]
async fn a_stop_and_a_budget_in_staging_leave_production_untouched() {
    let fast = || Options { env: vec![("VEXIL_SAFETY_CHECK_INTERVAL_MS".into(), "50".into())], ..Options::default() };
    for server in servers(fast).await {
        ok(server.call(Method::POST, "/v1/admin/environments", Some(json!({"key": "staging"}))).await).await;
        let flag = json!({"key": "ai_summaries", "enabled": true, "default": {"split": {"on": 1}, "rollout": 100}});
        for env in ["production", "staging"] {
            ok(in_env(&server, env, Method::POST, "/v1/admin/flags", Some(flag.clone())).await).await;
        }
        let production = create_key(&server, "server", "production").await;
        let staging = create_key(&server, "server", "staging").await;
        let cost = |value: f64| json!([{"event": "llm_cost", "user_id": "u1", "value": value}]);
        ok(with_key(&server, &production, Method::POST, "/v1/events", cost(500.0)).await).await;
        // A budget names an event its environment has seen: production's events do not count.
        let budget = json!({"key": "summaries_daily", "event": "llm_cost", "flag": "ai_summaries", "period": "day",
            "limit": 100, "thresholds": [{"at": 100, "action": "disable"}]});
        settle(&server, 1.0).await;
        let (status, refused) =
            in_env(&server, "staging", Method::POST, "/v1/admin/budgets", Some(budget.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        ok(with_key(&server, &staging, Method::POST, "/v1/events", cost(30.0)).await).await;
        settle(&server, 2.0).await;
        ok(in_env(&server, "staging", Method::POST, "/v1/admin/budgets", Some(budget)).await).await;
        let (_, stored) = in_env(&server, "staging", Method::GET, "/v1/admin/budgets/summaries_daily", None).await;
        assert_eq!(stored["status"]["spend"], 30.0, "production's 500 are not staging's spend: {stored}");
        let (_, budgets) = in_env(&server, "production", Method::GET, "/v1/admin/budgets", None).await;
        assert_eq!(budgets["budgets"], json!([]));
        eventually("the staging budget's gauge", || async {
            let metrics = server.metrics().await;
            metrics
                .lines()
                .any(|l| l == "vexil_budget_spend{budget=\"summaries_daily\",environment=\"staging\"} 30")
                .then_some(())
        })
        .await;

        // A stop in staging: staging's flag is off, production's still on; the gauge says which.
        let stop = json!({"scope": "all", "reason": "staging incident"});
        ok(in_env(&server, "staging", Method::POST, "/v1/admin/emergency-stop", Some(stop)).await).await;
        let evaluate = |key: &String| {
            let (server, key) = (&server, key.clone());
            async move {
                let body = json!({"user_id": "u1"});
                ok(with_key(server, &key, Method::POST, "/v1/flags/ai_summaries/evaluate", body).await).await["reason"]
                    .clone()
            }
        };
        assert_eq!((evaluate(&staging).await, evaluate(&production).await), (json!("DISABLED"), json!("SPLIT")));
        let (_, stops) = in_env(&server, "production", Method::GET, "/v1/admin/emergency-stop", None).await;
        assert_eq!(stops["stops"], json!([]));
        eventually("the stop gauges and evaluation counters", || async {
            let metrics = server.metrics().await;
            let has = |line: &str| metrics.lines().any(|l| l == line);
            (has("vexil_emergency_stops_active{environment=\"staging\"} 1")
                && has("vexil_emergency_stops_active{environment=\"production\"} 0")
                && has("vexil_evaluations_total{environment=\"staging\",flag=\"ai_summaries\",reason=\"DISABLED\"} 1")
                && has("vexil_evaluations_total{environment=\"production\",flag=\"ai_summaries\",reason=\"SPLIT\"} 1"))
            .then_some(())
        })
        .await;
        // Production's budget-less flag and evaluations are untouched by staging's budget.
        let (_, flag) = in_env(&server, "production", Method::GET, "/v1/admin/flags/ai_summaries", None).await;
        assert_eq!((&flag["enabled"], &flag["version"]), (&json!(true), &json!(1)), "{flag}");
    }
}

/// A data directory whose event pipeline the last vexil before per-environment events filled
/// (`fixtures/pre-environment-events/make.sh`): its results, counters, dead letters and archive
/// are production's, unchanged, and a new environment starts empty beside them.
#[tokio::test]
async fn event_data_written_before_environments_is_served_unchanged_as_production() {
    let (_dir, data_dir, expected) = unpack_fixture();
    let options = Options::default;
    let admin = expected["keys"]["admin"].as_str().unwrap();
    let server = Server::start_in(&data_dir, options()).await;
    let (from, to) = (expected["from"].as_str().unwrap(), expected["to"].as_str().unwrap());
    serves_the_same(&server, "production", &expected).await;
    // A new environment starts with nothing of production's.
    let staging = json!({"key": "staging"});
    ok(as_admin(&server, admin, "production", Method::POST, "/v1/admin/environments", Some(staging)).await).await;
    let (_, listed) = as_admin(&server, admin, "staging", Method::GET, "/v1/admin/dlq", None).await;
    assert_eq!(listed["total"], 0);
    let (_, stats) = as_admin(
        &server,
        admin,
        "staging",
        Method::GET,
        &format!("/v1/stats/events?event=purchase&window=day&from={from}&to={to}"),
        None,
    )
    .await;
    assert_eq!(stats["buckets"], json!([]));
    // A redelivery of an event the old vexil counted is recognised: its dedupe ids are
    // production's. (After a restart, so only the processor's dedupe can tell.)
    assert!(server.stop().await);
    let server = Server::start_in(&data_dir, options()).await;
    let client = expected["keys"]["client"].as_str().unwrap();
    let again = json!([{"event": "purchase", "user_id": "user_0", "value": 10, "event_id": "buy-user_0"}]);
    ok(with_key(&server, client, Method::POST, "/v1/events", again).await).await;
    eventually("the redelivery recognised", || async {
        (crate::events::metric(&server, "vexil_events_processed_duplicates_total").await >= 1.0).then_some(())
    })
    .await;
    serves_the_same(&server, "production", &expected).await;
    assert!(server.stop().await);
    let server = Server::start_in(&data_dir, options()).await;
    serves_the_same(&server, "production", &expected).await;
    let mut archived: Vec<String> = walk(&data_dir.join("archive"))
        .into_iter()
        .map(|p| p.strip_prefix(&data_dir).unwrap().to_string_lossy().into_owned())
        .collect();
    archived.sort();
    assert_eq!(json!(archived), expected["archive_files"], "production's archive files are where they were");
}

/// The fixture's data directory, unpacked into a temporary directory, and what it must serve.
fn unpack_fixture() -> (tempfile::TempDir, PathBuf, Value) {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(FIXTURE).join("expected.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let unpacked = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(Path::new(FIXTURE).join("data.tar.gz"))
        .arg("-C")
        .arg(&data_dir)
        .status()
        .unwrap();
    assert!(unpacked.success());
    (dir, data_dir, expected)
}

/// `vexil rebuild-state` on the old vexil's data directory: refused while a server runs there;
/// with the server stopped, the event-processing state gets the current small pages, and the
/// directory serves what the old vexil did.
#[tokio::test]
async fn event_state_an_older_version_wrote_is_rebuilt_with_small_pages_and_serves_the_same() {
    let (_dir, data_dir, expected) = unpack_fixture();
    let rebuild_state =
        || async { vexil().arg("rebuild-state").arg("--data-dir").arg(&data_dir).output().await.unwrap() };
    let server = Server::start_in(&data_dir, Options::default()).await;
    let refused = rebuild_state().await;
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("a server is running on"), "{message}");
    assert!(server.stop().await);

    let rebuilt = rebuild_state().await;
    assert!(rebuilt.status.success(), "{}", String::from_utf8_lossy(&rebuilt.stderr));
    let report: Value = serde_json::from_slice(&rebuilt.stdout).unwrap();
    assert_eq!((&report["page_bytes_before"], &report["page_bytes"]), (&json!(4096), &json!(2048)), "{report}");
    let server = Server::start_in(&data_dir, Options::default()).await;
    serves_the_same(&server, "production", &expected).await;
}

/// Asserts that `server` answers in `env` what the old vexil answered from the fixture.
async fn serves_the_same(server: &Server, env: &str, expected: &Value) {
    let (from, to) = (expected["from"].as_str().unwrap(), expected["to"].as_str().unwrap());
    let admin = expected["keys"]["admin"].as_str().unwrap();
    let (_, results) =
        as_admin(server, admin, env, Method::GET, "/v1/experiments/checkout_redesign/results", None).await;
    let results = json!({
        "variants": results["variants"].as_array().unwrap().iter()
            .map(|v| json!({"key": v["key"], "users": v["users"]})).collect::<Vec<_>>(),
        "metrics": results["metrics"].as_array().unwrap().iter()
            .map(|m| json!({"key": m["key"], "variants": m["variants"].as_array().unwrap().iter()
                .map(|v| json!({"key": v["key"], "mean": v["mean"]})).collect::<Vec<_>>()}))
            .collect::<Vec<_>>(),
    });
    assert_eq!(numbers(results), numbers(expected["results"].clone()));
    let path = format!("/v1/stats/events?event=purchase&window=day&from={from}&to={to}");
    let (_, stats) = as_admin(server, admin, env, Method::GET, &path, None).await;
    let purchases: Vec<Value> = stats["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| json!({"start": b["start"], "count": b["count"], "sum": b["sum"], "unique_users": b["unique_users"]}))
        .collect();
    assert_eq!(numbers(json!(purchases)), numbers(expected["purchases"].clone()));
    let path = format!("/v1/stats/events?event=exposure&window=day&from={from}&to={to}&experiment=checkout_redesign");
    let (_, stats) = as_admin(server, admin, env, Method::GET, &path, None).await;
    let exposures: Vec<Value> = stats["buckets"].as_array().unwrap().iter()
        .map(|b| json!({"start": b["start"], "variant": b["variant"], "count": b["count"], "unique_users": b["unique_users"]}))
        .collect();
    assert_eq!(numbers(json!(exposures)), numbers(expected["exposures"].clone()));
    let (_, dlq) = as_admin(server, admin, env, Method::GET, "/v1/admin/dlq", None).await;
    let entries: Vec<Value> = dlq["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!({"id": e["id"], "stage": e["stage"], "payload": e["payload"], "error": e["error"]}))
        .collect();
    assert_eq!(json!({"total": dlq["total"], "entries": entries}), expected["dlq"]);
}

/// `value` with every number as a float (the fixture's answers went through `jq`, which writes
/// `464.0` as `464`).
fn numbers(value: Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers).collect()),
        Value::Object(fields) => Value::Object(fields.into_iter().map(|(k, v)| (k, numbers(v))).collect()),
        other => other,
    }
}

/// Every archive file (`.jsonl.gz`) under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.to_string_lossy().ends_with(".jsonl.gz") {
            files.push(path);
        }
    }
    files
}
