//! Safety rails over HTTP: emergency stops across a restart and in the SDK document, rollout
//! plans stepping on a short check interval and rolled back by a burst of error events, budgets
//! throttling then disabling, signed webhooks received on loopback, the `vexil stop`, `resume`
//! and `rollout` commands, and plan validation and state errors.

use crate::cli::run;
use crate::harness::{checkout_flag, eventually, Options, Server, PATIENCE};
use crate::sdk::next_events;
use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::mpsc;

async fn reason_of(server: &Server, flag: &str) -> Value {
    let body = json!({"user_id": "user_1", "context": {"country": "US"}});
    let (status, result) = server.call(Method::POST, &format!("/v1/flags/{flag}/evaluate"), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    result["reason"].clone()
}

fn fast() -> Options {
    Options { env: vec![("VEXIL_SAFETY_CHECK_INTERVAL_MS".into(), "50".into())], ..Options::default() }
}

#[tokio::test]
async fn emergency_stop_and_resume_round_trip_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::start_in(&data_dir, fast()).await;
    server.create("flags", checkout_flag()).await;
    server.create("flags", json!({"key": "dark_mode", "enabled": true, "default": {"variant": "on"}})).await;
    assert_eq!(reason_of(&server, "new_checkout").await, "TARGETING_MATCH");

    let (status, body) = server
        .call(
            Method::POST,
            "/v1/admin/emergency-stop",
            Some(json!({"scope": "tag", "tag": "payments", "reason": "incident"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["stopped_flags"], json!(["new_checkout"]));
    assert_eq!(reason_of(&server, "new_checkout").await, "DISABLED", "immediately on the receiving node");
    assert_eq!(reason_of(&server, "dark_mode").await, "STATIC");

    let (status, body) = server
        .call(Method::POST, "/v1/admin/emergency-stop", Some(json!({"scope": "flags", "flags": ["ghost"]})))
        .await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("flags[0]")));

    assert!(server.stop().await);
    let server = Server::start_in(&data_dir, fast()).await;
    assert_eq!(reason_of(&server, "new_checkout").await, "DISABLED", "stops survive a restart");
    let (_, active) = server.call(Method::GET, "/v1/admin/emergency-stop", None).await;
    assert_eq!(active["stops"].as_array().unwrap().len(), 1);
    let metrics = server.metrics().await;
    assert!(metrics.contains("vexil_emergency_stops_active{environment=\"production\"} 1"), "{metrics}");

    let (status, body) = server.call(Method::POST, "/v1/admin/emergency-stop/resume", Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["resumed"].as_array().unwrap().len(), 1);
    assert_eq!(reason_of(&server, "new_checkout").await, "TARGETING_MATCH", "the previous state, exactly");
    let (_, flag) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
    assert_eq!(flag["version"], 1, "a stop never changes the flag");
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=emergency_stop", None).await;
    let actions: Vec<&str> =
        audit["records"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["delete", "create"]);
    assert_eq!(audit["records"][1]["reason"], "incident");
}

async fn plan_state(server: &Server, until: &str) -> Value {
    eventually(&format!("the plan reaching {until}"), || async {
        let (_, plan) = server.call(Method::GET, "/v1/admin/flags/new_checkout/rollout-plan", None).await;
        (plan["state"] == until).then_some(plan)
    })
    .await
}

#[tokio::test]
async fn a_plan_steps_through_its_percentages_as_holds_elapse() {
    let server = Server::start_with(fast()).await;
    server.create("flags", checkout_flag()).await;
    let steps = json!([{"percent": 1, "hold": 0}, {"percent": 5, "hold": "0s"}, {"percent": 25, "hold": 0}, {"percent": 100, "hold": 0}]);
    let (status, plan) =
        server.call(Method::PUT, "/v1/admin/flags/new_checkout/rollout-plan", Some(json!({"steps": steps}))).await;
    assert_eq!((status, &plan["state"]), (StatusCode::OK, &json!("ready")), "{plan}");
    let (status, plan) = server.call(Method::POST, "/v1/admin/flags/new_checkout/rollout-plan/start", None).await;
    assert_eq!((status, &plan["state"]), (StatusCode::OK, &json!("running")), "{plan}");

    plan_state(&server, "completed").await;
    let (_, flag) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
    assert_eq!(flag["default"]["rollout"], 100);
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=flag&key=new_checkout", None).await;
    let rollouts: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "update")
        .map(|r| &r["after"]["default"]["rollout"])
        .collect();
    assert_eq!(rollouts, [&json!(100), &json!(25), &json!(5), &json!(1)], "one flag version per step, newest first");
    assert!(audit["records"][0]["actor"] == "system:rollout");
    // The gauges are refreshed from the store at each scheduler tick, so they may trail the
    // plan's state by one tick.
    let completed = "vexil_rollout_plan_state{environment=\"production\",flag=\"new_checkout\",state=\"completed\"} 1";
    eventually("the plan's gauge saying completed", || async {
        server.metrics().await.contains(completed).then_some(())
    })
    .await;

    let (status, body) = server.call(Method::POST, "/v1/admin/flags/new_checkout/rollout-plan/pause", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_state")));
}

async fn put(server: &Server, flag: &str, body: Value) -> (StatusCode, Value) {
    server.call(Method::PUT, &format!("/v1/admin/flags/{flag}/rollout-plan"), Some(body)).await
}

#[tokio::test]
async fn invalid_plans_name_the_field() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    let (status, body) =
        put(&server, "new_checkout", json!({"steps": [{"percent": 5, "hold": 0}, {"percent": 5, "hold": 0}]})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("steps[1].percent")),
        "{body}"
    );
    let (status, body) = put(&server, "new_checkout", json!({"steps": [{"percent": 5, "hold": -1}]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("non-negative"), "{body}");
    let (status, body) =
        put(&server, "new_checkout", json!({"target": "us", "steps": [{"percent": 5, "hold": 0}]})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("target")), "{body}");
    let guard = json!({"signal": "count", "event": "never_sent", "op": "lt", "threshold": 1});
    let (status, body) =
        put(&server, "new_checkout", json!({"steps": [{"percent": 5, "hold": 0}], "guards": [guard]})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("guards[0].event")), "{body}");
    let (status, _) = put(&server, "ghost", json!({"steps": [{"percent": 5, "hold": 0}]})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = server.call(Method::POST, "/v1/admin/flags/new_checkout/rollout-plan/start", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

const WEBHOOK_SECRET: &str = "whsec_test_0123";

/// A webhook receiver on loopback: the `X-Vexil-Signature` and the raw body of every POST.
struct Webhooks {
    url: String,
    received: mpsc::UnboundedReceiver<(Option<String>, Vec<u8>)>,
}

impl Webhooks {
    async fn start() -> Webhooks {
        let (sender, received) = mpsc::unbounded_channel();
        let receive = move |headers: HeaderMap, body: Bytes| {
            let signature = headers.get("x-vexil-signature").and_then(|v| v.to_str().ok()).map(str::to_string);
            sender.send((signature, body.to_vec())).unwrap();
            std::future::ready(StatusCode::NO_CONTENT)
        };
        let app = axum::Router::new().route("/hooks/vexil", axum::routing::post(receive));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/vexil", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Webhooks { url, received }
    }

    /// Server options that deliver signed webhooks here and check safety every `interval_ms`.
    fn options(&self, interval_ms: u64) -> Options {
        let env = [
            ("VEXIL_SAFETY_CHECK_INTERVAL_MS", interval_ms.to_string()),
            ("VEXIL_WEBHOOK_URL", self.url.clone()),
            ("VEXIL_WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
        ];
        Options { env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), ..Options::default() }
    }

    /// The next notification of type `kind`, skipping others; every signature is verified.
    async fn next(&mut self, kind: &str) -> Value {
        loop {
            let received = tokio::time::timeout(PATIENCE, self.received.recv()).await;
            let (signature, body) = received.unwrap_or_else(|_| panic!("no {kind} webhook")).unwrap();
            assert!(verified(WEBHOOK_SECRET.as_bytes(), &body, signature.as_deref().unwrap_or("")), "bad signature");
            let notification: Value = serde_json::from_slice(&body).unwrap();
            if notification["type"] == kind {
                return notification;
            }
        }
    }
}

/// Checks `sha256=<hex>` against the HMAC-SHA256 of the exact body, in constant time, as a
/// receiver should.
fn verified(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else { return false };
    let digest: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|byte| u8::from_str_radix(byte, 16).ok()))
        .collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    digest.is_some_and(|digest| mac.verify_slice(&digest).is_ok())
}

/// Posts events (`{"event", "value"}` pairs, one user each) and checks all were accepted.
async fn send_events(server: &Server, name: &str, values: impl IntoIterator<Item = f64>) {
    let events: Vec<Value> = values
        .into_iter()
        .enumerate()
        .map(|(i, value)| json!({"event": name, "user_id": format!("user_{i}"), "value": value}))
        .collect();
    let (status, answer) = server.call(Method::POST, "/v1/events", Some(json!(events))).await;
    assert!(status.is_success(), "{status} {answer}");
    assert_eq!(answer["accepted"].as_u64(), Some(events.len() as u64), "{answer}");
}

/// Sends one `event` and retries `request` until the pipeline has counted it (guards and
/// budgets refuse events never received) and the request succeeds.
async fn once_event_counted(server: &Server, event: &str, method: Method, path: &str, body: Value) -> Value {
    send_events(server, event, [1.0]).await;
    eventually(&format!("{event} counted"), || async {
        let (status, answer) = server.call(method.clone(), path, Some(body.clone())).await;
        status.is_success().then_some(answer)
    })
    .await
}

/// Waits, if midnight UTC is less than `margin` away, until it has passed.
async fn clear_of_midnight(margin: std::time::Duration) {
    let since_midnight = chrono::Utc::now().timestamp().rem_euclid(86_400) as u64;
    let to_midnight = 86_400 - since_midnight;
    if to_midnight < margin.as_secs() {
        tokio::time::sleep(std::time::Duration::from_secs(to_midnight + 1)).await;
    }
}

fn metric_line(metrics: &str, line: &str) -> bool {
    metrics.lines().any(|l| l == line)
}

#[tokio::test]
async fn every_background_task_of_a_node_runs_supervised() {
    let webhooks = Webhooks::start().await;
    let server = Server::start_with(webhooks.options(300)).await;
    // A supervised task's panic series exists from its start, at zero.
    let tasks = [
        "safety_scheduler",
        "snapshot_follower",
        "assignment_purge",
        "assignment_writer",
        "tracked_events",
        "evaluation_counts_flusher",
        "webhook_delivery",
    ];
    let metrics = server.metrics().await;
    for task in tasks {
        let series = format!("vexil_background_task_panics_total{{task=\"{task}\"}} 0");
        assert!(metric_line(&metrics, &series), "{task} is not supervised:\n{metrics}");
    }
}

#[tokio::test]
async fn an_error_burst_breaks_a_guard_and_rolls_back() {
    let mut webhooks = Webhooks::start().await;
    let server = Server::start_with(webhooks.options(300)).await;
    server.create("flags", checkout_flag()).await;
    let guard = json!({"signal": "count", "event": "checkout_error", "window": "1h", "op": "lt",
        "threshold": 20, "min_sample": 1});
    let plan = json!({"steps": [{"percent": 5, "hold": "1h"}, {"percent": 100, "hold": 0}], "guards": [guard]});
    let path = "/v1/admin/flags/new_checkout/rollout-plan";
    once_event_counted(&server, "checkout_error", Method::PUT, path, plan).await;
    let (status, plan) = server.call(Method::POST, &format!("{path}/start"), None).await;
    assert_eq!((status, &plan["state"]), (StatusCode::OK, &json!("running")), "{plan}");
    let (_, flag) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
    assert_eq!(flag["default"]["rollout"], 5);

    send_events(&server, "checkout_error", (0..30).map(|_| 1.0)).await;
    // The scheduler checks every interval, so the rollback follows the broken reading by about
    // one interval; how soon is a latency figure, not something to assert on a loaded machine.
    let plan = plan_state(&server, "rolled_back").await;
    assert!(plan["cause"].as_str().unwrap().starts_with("guard broken: count of checkout_error"), "{plan}");

    let (_, flag) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
    assert_eq!((&flag["default"]["rollout"], &flag["enabled"]), (&json!(0), &json!(true)));
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=flag&key=new_checkout&limit=1", None).await;
    let record = &audit["records"][0];
    assert_eq!((&record["actor"], &record["after"]["default"]["rollout"]), (&json!("system:rollout"), &json!(0)));
    assert!(record["reason"].as_str().unwrap().starts_with("guard broken"), "{record}");

    let notification = webhooks.next("rollout.rolled_back").await;
    assert_eq!(notification["details"]["flag"], "new_checkout");
    assert_eq!(notification["details"]["cause"], plan["cause"]);

    // The plan gauges are refreshed at the end of the scheduler's round, which may come after
    // the webhook was delivered: wait for all of them together.
    let expected = [
        "vexil_webhook_deliveries_total{result=\"ok\"} 1",
        "vexil_rollout_guard_breaks_total{environment=\"production\",flag=\"new_checkout\"} 1",
        "vexil_rollout_plan_state{environment=\"production\",flag=\"new_checkout\",state=\"rolled_back\"} 1",
        "vexil_rollout_plan_percent{environment=\"production\",flag=\"new_checkout\"} 5",
    ];
    eventually("the delivery, the break and the plan's state in /metrics", || async {
        let metrics = server.metrics().await;
        expected.iter().all(|line| metric_line(&metrics, line)).then_some(())
    })
    .await;
}

/// A guard window or hold beyond what date arithmetic can hold once stored a plan that made
/// every scheduler tick panic, which stopped every other plan on the node.
#[tokio::test]
async fn out_of_range_durations_answer_400_and_other_plans_keep_advancing() {
    let server = Server::start_with(fast()).await;
    server.create("flags", checkout_flag()).await;
    server
        .create("flags", json!({"key": "dark_mode", "enabled": true, "default": {"split": {"on": 1}, "rollout": 0}}))
        .await;
    let guard = json!({"signal": "count", "event": "checkout_error", "window": "999999999999d", "op": "lt",
        "threshold": 20});
    let plan = json!({"steps": [{"percent": 5, "hold": 0}], "guards": [guard]});
    send_events(&server, "checkout_error", [1.0]).await;
    let (status, body) = eventually("the window refused once the event is known", || async {
        let (status, body) = put(&server, "new_checkout", plan.clone()).await;
        (body["error"]["field"] != "guards[0].event").then_some((status, body))
    })
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("guards[0].window")),
        "{body}"
    );
    let (status, body) =
        put(&server, "new_checkout", json!({"steps": [{"percent": 5, "hold": "999999999999d"}]})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("steps[0].hold")), "{body}");
    let (status, _) = server.call(Method::GET, "/v1/admin/flags/new_checkout/rollout-plan", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");

    let steps = json!([{"percent": 10, "hold": 0}, {"percent": 100, "hold": 0}]);
    let (status, body) = put(&server, "dark_mode", json!({"steps": steps})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.call(Method::POST, "/v1/admin/flags/dark_mode/rollout-plan/start", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the other plan completing", || async {
        let (_, plan) = server.call(Method::GET, "/v1/admin/flags/dark_mode/rollout-plan", None).await;
        (plan["state"] == "completed").then_some(())
    })
    .await;
    let (_, flag) = server.call(Method::GET, "/v1/admin/flags/dark_mode", None).await;
    assert_eq!(flag["default"]["rollout"], 100);
}

#[tokio::test]
async fn a_budget_throttles_then_disables_its_flag() {
    // The budget's period is the UTC day: spend from before midnight is yesterday's, so the
    // gauges this test waits for could never appear if it ran across midnight.
    clear_of_midnight(std::time::Duration::from_secs(180)).await;
    let mut webhooks = Webhooks::start().await;
    let server = Server::start_with(webhooks.options(100)).await;
    let flag = json!({"key": "ai_summaries", "enabled": true, "default": {"split": {"on": 1}, "rollout": 100}});
    server.create("flags", flag).await;
    let budget = json!({"key": "summaries_daily", "event": "llm_cost", "flag": "ai_summaries", "period": "day",
        "limit": 100, "thresholds": [{"at": 50, "action": "throttle", "rollout": 10}, {"at": 100, "action": "disable"}]});
    once_event_counted(&server, "llm_cost", Method::POST, "/v1/admin/budgets", budget).await;

    let flag_once = |check: fn(&Value) -> bool| {
        let server = &server;
        async move {
            eventually("the budget's action", || async {
                let (_, flag) = server.call(Method::GET, "/v1/admin/flags/ai_summaries", None).await;
                check(&flag).then_some(flag)
            })
            .await
        }
    };
    send_events(&server, "llm_cost", [30.0, 29.5]).await;
    let flag = flag_once(|f| f["default"]["rollout"] == 10).await;
    assert_eq!(flag["enabled"], true, "throttled, not disabled, at 60.5 %");
    let crossed = webhooks.next("budget.threshold_crossed").await;
    assert_eq!(crossed["details"]["threshold"]["action"], "throttle");
    assert_eq!(crossed["details"]["flags"], json!(["ai_summaries"]));
    // The gauges are set by the scheduler's pass, which may finish just after the flag changed.
    eventually("the budget gauges", || async {
        let metrics = server.metrics().await;
        (metric_line(&metrics, "vexil_budget_spend{budget=\"summaries_daily\",environment=\"production\"} 60.5")
            && metric_line(
                &metrics,
                "vexil_budget_remaining{budget=\"summaries_daily\",environment=\"production\"} 39.5",
            ))
        .then_some(())
    })
    .await;

    send_events(&server, "llm_cost", [40.0]).await;
    flag_once(|f| f["enabled"] == false).await;
    assert_eq!(webhooks.next("budget.threshold_crossed").await["details"]["threshold"]["action"], "disable");
    let (_, budget) = server.call(Method::GET, "/v1/admin/budgets/summaries_daily", None).await;
    assert_eq!(budget["status"]["spend"], 100.5, "{budget}");
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=flag&key=ai_summaries", None).await;
    let actors: Vec<&Value> = audit["records"].as_array().unwrap().iter().map(|r| &r["actor"]).collect();
    assert_eq!(actors[..2], [&json!("system:budget"), &json!("system:budget")], "{audit}");

    // Each threshold fires once per period: more spend changes nothing.
    send_events(&server, "llm_cost", [10.0]).await;
    eventually("the spend counted", || async {
        let metrics = server.metrics().await;
        metric_line(&metrics, "vexil_budget_spend{budget=\"summaries_daily\",environment=\"production\"} 110.5")
            .then_some(())
    })
    .await;
    let (_, flag) = server.call(Method::GET, "/v1/admin/flags/ai_summaries", None).await;
    assert_eq!(flag["version"], 3, "one change per threshold: {flag}");
}

#[tokio::test]
async fn the_stop_and_resume_commands_reach_the_sdk_document_and_stream() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    server.create("flags", json!({"key": "dark_mode", "enabled": true, "default": {"variant": "on"}})).await;
    let response = server.admin(Method::GET, "/v1/sdk/stream").send().await.unwrap();
    let (mut stream, mut buffer) = (response.bytes_stream(), String::new());
    next_events(&mut stream, &mut buffer, 1).await;

    let data_dir = server.data_dir.to_str().unwrap();
    let through_server = ["--server", server.base.as_str(), "--key", server.key.as_str()];
    let stop = [&["stop", "--tag", "payments", "--reason", "incident 7"], &through_server[..]].concat();
    let (ok, stdout, stderr) = run(&stop).await;
    assert!(ok, "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["stopped_flags"], json!(["new_checkout"]));

    let patch = next_events(&mut stream, &mut buffer, 1).await;
    assert_eq!(patch[0].0, "patch");
    assert_eq!(patch[0].1["key"], "new_checkout");
    assert_eq!((&patch[0].1["object"]["enabled"], &patch[0].1["object"]["version"]), (&json!(false), &json!(1)));
    let (_, document) = server.call(Method::GET, "/v1/sdk/flags", None).await;
    let enabled: Vec<(&Value, &Value)> =
        document["flags"].as_array().unwrap().iter().map(|f| (&f["key"], &f["enabled"])).collect();
    assert_eq!(enabled, [(&json!("dark_mode"), &json!(true)), (&json!("new_checkout"), &json!(false))]);

    // On the data directory, while the server runs: the server follows within a second.
    let (ok, stdout, stderr) = run(&["resume", "--reason", "fixed", "--data-dir", data_dir]).await;
    assert!(ok, "{stderr}");
    let resumed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((resumed["resumed"].as_array().unwrap().len(), &resumed["stopped_flags"]), (1, &json!([])));
    let patch = next_events(&mut stream, &mut buffer, 1).await;
    assert_eq!((&patch[0].1["key"], &patch[0].1["object"]["enabled"]), (&json!("new_checkout"), &json!(true)));
    assert_eq!(reason_of(&server, "new_checkout").await, "TARGETING_MATCH");
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=emergency_stop", None).await;
    let records: Vec<(&Value, &Value)> =
        audit["records"].as_array().unwrap().iter().map(|r| (&r["actor"], &r["reason"])).collect();
    assert_eq!(records[0], (&json!("cli"), &json!("fixed")));
    assert_eq!(records[1].1, "incident 7");

    let (ok, _, stderr) = run(&["stop", "--tag", "payments", "--flags", "dark_mode", "--data-dir", data_dir]).await;
    assert!(!ok && stderr.contains("cannot be used with"), "{stderr}");
    let (ok, _, stderr) = run(&["stop", "--flags", "dark_mode,ghost", "--data-dir", data_dir]).await;
    assert!(!ok && stderr.contains("flags[1]: flag \"ghost\" does not exist"), "{stderr}");
}

#[tokio::test]
async fn the_rollout_command_drives_a_plan_through_a_server_or_a_data_directory() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    let plan = json!({"steps": [{"percent": 10, "hold": "1h"}, {"percent": 100, "hold": 0}]});
    put(&server, "new_checkout", plan).await;
    let data_dir = server.data_dir.to_str().unwrap();
    let through_server = ["--server", server.base.as_str(), "--key", server.key.as_str()];
    let rollout = |action: &'static str, target: &[&str]| {
        let args = [&["rollout", action, "new_checkout"], target].concat().iter().map(|a| a.to_string()).collect();
        async move {
            let args: Vec<String> = args;
            let (ok, stdout, stderr) = run(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
            if ok {
                Ok(serde_json::from_str::<Value>(&stdout).unwrap())
            } else {
                Err(stderr)
            }
        }
    };

    let started = rollout("start", &through_server).await.unwrap();
    assert_eq!((&started["state"], &started["step"]), (&json!("running"), &json!(0)));
    let (_, flag) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
    assert_eq!(flag["default"]["rollout"], 10);

    let paused = rollout("pause", &["--data-dir", data_dir]).await.unwrap();
    assert_eq!((&paused["state"], &paused["flag_version"]), (&json!("paused"), &json!(2)));
    let status = rollout("status", &through_server).await.unwrap();
    assert_eq!(status["state"], "paused", "the server reads what the CLI wrote");
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=rollout_plan&limit=1", None).await;
    assert_eq!(
        (&audit["records"][0]["actor"], &audit["records"][0]["reason"]),
        (&json!("cli"), &json!("rollout plan pause"))
    );

    assert_eq!(rollout("cancel", &through_server).await.unwrap()["state"], "cancelled");
    let refused = rollout("resume", &["--data-dir", data_dir]).await.unwrap_err();
    assert!(refused.contains("cannot resume"), "{refused}");
    let refused = rollout("start", &through_server).await.unwrap_err();
    assert!(refused.contains("409"), "{refused}");
}
