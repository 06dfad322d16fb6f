//! Sticky assignment over HTTP: the status semantics of SPEC 1.3, targeting and traffic,
//! stickiness across weight and traffic changes, TTL expiry, restarts and SIGKILL, concurrent
//! first assignments, and flags that serve an experiment.

use crate::experiments::{experiment, lifecycle, running};
use crate::harness::{eventually, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

async fn try_assign(server: &Server, key: &str, user: &str, context: Value) -> (StatusCode, Value) {
    let body = json!({"experiment_key": key, "user_id": user, "context": context});
    Server::send(server.admin(Method::POST, "/v1/assign").json(&body)).await
}

async fn assign(server: &Server, key: &str, user: &str, context: Value) -> Value {
    let (status, answer) = try_assign(server, key, user, context).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

fn reason(answer: &Value) -> &str {
    answer["reason"].as_str().unwrap()
}

/// The variant SPEC 2 places `unit` in, written out from the spec rather than taken from the
/// service's allocation code: `None` outside the traffic.
fn spec_variant(salt: &str, unit: &str, weights: &[u64], traffic_percent: u64) -> Option<usize> {
    let h = vexil_core::hash::murmur3_x86_32(format!("{salt}:{unit}").as_bytes(), 0);
    let bucket = (u64::from(h) * 10_000) >> 32;
    let (total, coverage) = (weights.iter().sum::<u64>(), traffic_percent * 100);
    let mut below = 0;
    for (i, weight) in weights.iter().enumerate() {
        let start = 10_000 * below / total;
        below += weight;
        let end = 10_000 * below / total;
        if (start..start + (end - start) * coverage / 10_000).contains(&bucket) {
            return Some(i);
        }
    }
    None
}

async fn set_traffic_and_weights(server: &Server, key: &str, traffic: u32, weights: [u32; 2]) {
    let mut body = experiment(key);
    body["traffic_allocation"] = json!(traffic);
    body["variants"][0]["weight"] = json!(weights[0]);
    body["variants"][1]["weight"] = json!(weights[1]);
    let (status, stored) = server.call(Method::PUT, &format!("/v1/admin/experiments/{key}"), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
}

#[tokio::test]
async fn statuses_reasons_and_errors() {
    let server = Server::start().await;
    let created = server.create("experiments", experiment("checkout_redesign")).await;
    let (status, answer) = try_assign(&server, "checkout_redesign", "user_1", json!({})).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("experiment_not_assignable")));
    let (status, answer) = try_assign(&server, "ghost", "user_1", json!({})).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("experiment_not_found")));
    lifecycle(&server, "checkout_redesign", "start", None).await;
    for user in [json!(""), json!("  "), json!(null), json!(3)] {
        let body = json!({"experiment_key": "checkout_redesign", "user_id": user});
        let (status, answer) = Server::send(server.admin(Method::POST, "/v1/assign").json(&body)).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_user_id")));
    }
    let (status, answer) = try_assign(&server, "checkout_redesign", "u", json!([1])).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_context")));
    let (status, answer) = Server::send(server.admin(Method::POST, "/v1/assign").json(&json!({"user_id": "u"}))).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("experiment_key")));
    let (status, _) = Server::send(server.admin(Method::POST, "/v1/assign").body("{")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // SPEC 2's vector: checkout_redesign:user_1 is bucket 8331, in the second half.
    let first = assign(&server, "checkout_redesign", "user_1", json!({})).await;
    assert_eq!(
        (first["variant"].as_str(), reason(&first), first["in_experiment"].as_bool(), first["sticky"].as_bool()),
        (Some("treatment"), "ASSIGNED", Some(true), Some(false))
    );
    assert_eq!(
        (first["experiment_key"].as_str(), &first["experiment_id"]),
        (Some("checkout_redesign"), &created["id"])
    );
    let again = assign(&server, "checkout_redesign", "user_1", json!({"ignored": 1})).await;
    assert_eq!((reason(&again), again["sticky"].as_bool()), ("STICKY", Some(true)));
    assert_eq!((&again["assignment_id"], &again["timestamp"]), (&first["assignment_id"], &first["timestamp"]));
    let (status, query) =
        Server::send(server.admin(Method::GET, "/v1/assign?experiment_key=checkout_redesign&user_id=user_1")).await;
    assert_eq!((status, &query["assignment_id"]), (StatusCode::OK, &first["assignment_id"]));
    let client = server.create_key("client").await;
    let (status, _) = Server::send(server.with_key(
        Method::GET,
        "/v1/assign?experiment_key=checkout_redesign&user_id=user_2",
        &client,
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "client keys may assign");

    lifecycle(&server, "checkout_redesign", "pause", None).await;
    let paused = assign(&server, "checkout_redesign", "user_1", json!({})).await;
    assert_eq!(
        (
            paused["variant"].clone(),
            reason(&paused),
            paused["in_experiment"].as_bool(),
            paused["assignment_id"].clone()
        ),
        (Value::Null, "EXPERIMENT_PAUSED", Some(false), Value::Null)
    );
    lifecycle(&server, "checkout_redesign", "start", None).await;
    assert_eq!(
        assign(&server, "checkout_redesign", "user_1", json!({})).await["assignment_id"],
        first["assignment_id"]
    );

    lifecycle(&server, "checkout_redesign", "complete", Some(json!({"winner": "control"}))).await;
    for user in ["user_1", "someone_new"] {
        let concluded = assign(&server, "checkout_redesign", user, json!({})).await;
        assert_eq!(
            (concluded["variant"].as_str(), reason(&concluded), concluded["in_experiment"].as_bool()),
            (Some("control"), "EXPERIMENT_CONCLUDED", Some(false))
        );
        assert!(concluded["assignment_id"].is_null(), "no record for the winner");
    }

    let mut targeted = experiment("pricing");
    targeted["targeting"] = json!({"attr": "country", "op": "eq", "value": "US"});
    targeted["bucket_by"] = json!("account_id");
    running(&server, targeted).await;
    let answer = assign(&server, "pricing", "u", json!({"country": "FR", "account_id": "acme"})).await;
    assert_eq!((reason(&answer), answer["variant"].clone()), ("TARGETING_NOT_MATCHED", Value::Null));
    let answer = assign(&server, "pricing", "u", json!({"country": "US"})).await;
    assert_eq!((reason(&answer), answer["variant"].clone()), ("MISSING_BUCKETING_ATTRIBUTE", Value::Null));
    let by_account = assign(&server, "pricing", "u1", json!({"country": "US", "account_id": "acme"})).await;
    let same_account = assign(&server, "pricing", "u2", json!({"country": "US", "account_id": "acme"})).await;
    assert_eq!((reason(&same_account), &same_account["variant"]), ("STICKY", &by_account["variant"]), "one unit");
}

#[tokio::test]
async fn traffic_growth_and_weight_changes_keep_stored_users() {
    let server = Server::start().await;
    let mut body = experiment("growth");
    body["traffic_allocation"] = json!(20);
    running(&server, body).await;
    let users: Vec<String> = (0..300).map(|i| format!("user_{i}")).collect();
    let mut before = Vec::new();
    for user in &users {
        before.push(assign(&server, "growth", user, json!({})).await);
    }
    let arms = ["control", "treatment"];
    for (user, answer) in users.iter().zip(&before) {
        match spec_variant("growth", user, &[50, 50], 20) {
            Some(arm) => assert_eq!((reason(answer), answer["variant"].as_str()), ("ASSIGNED", Some(arms[arm]))),
            None => assert_eq!(reason(answer), "TRAFFIC_EXCLUDED", "{user}: {answer}"),
        }
    }
    let inside = before.iter().filter(|a| reason(a) == "ASSIGNED").count();
    assert_eq!(inside, 60, "the users of these names SPEC 2 lets into 20 % traffic");

    set_traffic_and_weights(&server, "growth", 60, [50, 50]).await;
    let mut grown = Vec::new();
    for (user, old) in users.iter().zip(&before) {
        let now = assign(&server, "growth", user, json!({})).await;
        if reason(old) == "ASSIGNED" {
            assert_eq!((reason(&now), &now["variant"]), ("STICKY", &old["variant"]), "{user} stays");
        }
        grown.push(now);
    }
    let newly = grown.iter().filter(|a| reason(a) == "ASSIGNED").count();
    assert!(newly > inside, "growing traffic admits more users: {newly}");

    lifecycle(&server, "growth", "pause", None).await;
    set_traffic_and_weights(&server, "growth", 10, [0, 1]).await;
    lifecycle(&server, "growth", "start", None).await;
    for (user, old) in users.iter().zip(&grown) {
        let now = assign(&server, "growth", user, json!({})).await;
        if old["in_experiment"] == true {
            assert_eq!((reason(&now), &now["variant"]), ("STICKY", &old["variant"]), "{user} keeps the arm");
        }
    }
    let controls = grown.iter().filter(|a| a["variant"] == "control").count();
    assert!(controls > 0, "some stored users are in control, which now has weight 0");
    // A new user whose bucket lay in control's range before the change, and lies inside the
    // 10 % traffic now: served treatment, never the weight-0 control.
    let fresh_user = (900..)
        .map(|i| format!("user_{i}"))
        .find(|u| {
            spec_variant("growth", u, &[50, 50], 60) == Some(0) && spec_variant("growth", u, &[0, 1], 10).is_some()
        })
        .unwrap();
    let fresh = assign(&server, "growth", &fresh_user, json!({})).await;
    assert_eq!((reason(&fresh), fresh["variant"].as_str()), ("ASSIGNED", Some("treatment")), "{fresh}");
}

#[tokio::test]
async fn assignments_survive_restarts_and_expire_after_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ttl = Duration::from_secs(4);
    let env = vec![("VEXIL_ASSIGNMENT_TTL_SECS".into(), ttl.as_secs().to_string())];
    let options = Options { env, ..Options::default() };
    let server = Server::start_in(&data, options.clone()).await;
    running(&server, experiment("sticky")).await;
    // Taken before the request, so the record's creation is no earlier than this.
    let assigned_at = std::time::Instant::now();
    let first = assign(&server, "sticky", "user_1", json!({})).await;
    assert!(server.stop().await);

    let server = Server::start_in(&data, options).await;
    let after_restart = assign(&server, "sticky", "user_1", json!({})).await;
    // A restart slower than the TTL (a loaded machine) may rightly find the record expired.
    if assigned_at.elapsed() < ttl {
        assert_eq!((reason(&after_restart), &after_restart["assignment_id"]), ("STICKY", &first["assignment_id"]));
    }
    let renewed = eventually("the expired assignment replaced", || async {
        let answer = assign(&server, "sticky", "user_1", json!({})).await;
        (reason(&answer) == "ASSIGNED").then_some(answer)
    })
    .await;
    assert!(assigned_at.elapsed() >= ttl, "replaced after {:?}, before its TTL", assigned_at.elapsed());
    assert_ne!(renewed["assignment_id"], first["assignment_id"]);
}

#[tokio::test]
async fn answered_first_assignments_survive_sigkill() {
    // By default a group commit of first assignments does not wait for fsync; the answer still
    // waits for the commit, so a process killed right after answering has lost nothing.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_in(&data, Options::default()).await;
    running(&server, experiment("killed")).await;
    let users: Vec<String> = (0..200).map(|i| format!("user_{i}")).collect();
    let first = futures_util::future::join_all(users.iter().map(|u| assign(&server, "killed", u, json!({})))).await;
    assert!(first.iter().all(|a| reason(a) == "ASSIGNED"), "every call was a first assignment");
    server.kill().await;

    let server = Server::start_in(&data, Options::default()).await;
    for (user, before) in users.iter().zip(&first) {
        let after = assign(&server, "killed", user, json!({})).await;
        assert_eq!((reason(&after), &after["assignment_id"]), ("STICKY", &before["assignment_id"]), "{user}");
    }
}

#[tokio::test]
async fn concurrent_first_assignments_store_one_record() {
    let server = Server::start().await;
    running(&server, experiment("race")).await;
    let calls = (0..64).map(|_| assign(&server, "race", "racer", json!({})));
    let answers = futures_util::future::join_all(calls).await;
    let ids: HashSet<&str> = answers.iter().map(|a| a["assignment_id"].as_str().unwrap()).collect();
    let variants: HashSet<&str> = answers.iter().map(|a| a["variant"].as_str().unwrap()).collect();
    assert_eq!((ids.len(), variants.len()), (1, 1), "one stored record, one variant");
    assert_eq!(answers.iter().filter(|a| reason(a) == "ASSIGNED").count(), 1, "exactly one caller stored it");
}

#[tokio::test]
async fn flags_serve_the_variant_of_the_sticky_assignment() {
    let server = Server::start().await;
    let mut colours = experiment("banner_test");
    colours["variants"] = json!([{"key": "blue", "value": "#00f"}, {"key": "green", "value": "#0f0"}]);
    running(&server, colours).await;
    server
        .create(
            "flags",
            json!({"key": "banner", "type": "string", "enabled": true,
                "variants": {"off": "none"}, "off_variant": "off",
                "rules": [{"id": "us", "when": {"attr": "country", "op": "eq", "value": "US"},
                           "serve": {"experiment": "banner_test"}}],
                "default": {"variant": "off"}}),
        )
        .await;
    let evaluate = |user: &str, country: &str| {
        let body = json!({"user_id": user, "context": {"country": country}});
        Server::send(server.admin(Method::POST, "/v1/flags/banner/evaluate").json(&body))
    };

    let (status, outside) = evaluate("visitor", "FR").await;
    assert_eq!(
        (status, outside["variant"].as_str(), outside["reason"].as_str()),
        (StatusCode::OK, Some("off"), Some("DEFAULT"))
    );
    let assigned = assign(&server, "banner_test", "visitor", json!({})).await;
    assert_eq!(reason(&assigned), "ASSIGNED", "evaluating a flag that did not reach the rule assigned nobody");

    let (_, inside) = evaluate("buyer", "US").await;
    assert_eq!((inside["reason"].as_str(), inside["rule_id"].as_str()), (Some("SPLIT"), Some("us")));
    let stored = assign(&server, "banner_test", "buyer", json!({})).await;
    assert_eq!((reason(&stored), &stored["variant"]), ("STICKY", &inside["variant"]), "the flag stored the assignment");
    let expected = if inside["variant"] == "blue" { "#00f" } else { "#0f0" };
    assert_eq!(inside["value"], expected);
    let (_, batch) = Server::send(
        server.admin(Method::POST, "/v1/evaluate").json(&json!({"user_id": "buyer", "context": {"country": "US"}})),
    )
    .await;
    assert_eq!(batch["flags"]["banner"]["value"], expected);
    let ofrep = server
        .admin(Method::POST, "/ofrep/v1/evaluate/flags/banner")
        .json(&json!({"context": {"targetingKey": "buyer", "country": "US"}}));
    assert_eq!(Server::send(ofrep).await.1["value"], expected);

    lifecycle(&server, "banner_test", "pause", None).await;
    let (_, paused) = evaluate("buyer", "US").await;
    assert_eq!((paused["variant"].as_str(), paused["reason"].as_str()), (Some("off"), Some("ROLLOUT_EXCLUDED")));
}

#[tokio::test]
async fn cli_assigns_through_the_server_or_on_the_data_directory() {
    let server = Server::start().await;
    running(&server, experiment("cli_test")).await;
    let cli = |target: Vec<String>, user: &str| {
        let mut command = crate::harness::vexil();
        command.args(["assign", "--experiment", "cli_test", "--user", user, "--context", r#"{"plan": "pro"}"#]);
        command.args(target);
        async move {
            let output = command.output().await.unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            serde_json::from_slice::<Value>(&output.stdout).unwrap()
        }
    };
    let remote = vec!["--server".into(), server.base.clone(), "--key".into(), server.key.clone()];
    let through_server = cli(remote, "user_1").await;
    assert_eq!(reason(&through_server), "ASSIGNED");
    let local = vec!["--data-dir".to_string(), server.data_dir.display().to_string()];
    let on_disk = cli(local, "user_2").await;
    assert_eq!(reason(&on_disk), "ASSIGNED");
    let seen_by_server = assign(&server, "cli_test", "user_2", json!({})).await;
    assert_eq!((reason(&seen_by_server), &seen_by_server["assignment_id"]), ("STICKY", &on_disk["assignment_id"]));
}
