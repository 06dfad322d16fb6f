//! Change requests (SPEC 9) for every kind of configuration an editor writes in a protected
//! environment: segments, experiments, rollout plans and budgets, each held (202), applied only
//! on another editor's approval, and audited; a protected environment holding pending requests
//! is not empty. Flags, imports and promotions are in `promotion.rs`. Every scenario runs on
//! the embedded store and on PostgreSQL.

use crate::cli::run_on;
use crate::environments::{admin_key, as_key, backends, code, create_environment};
use crate::harness::{checkout_flag, eventually, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The value at `pointer` of what `GET path` answers, `null` when it answers 404. Numbers
/// come as floats, whichever way the backend wrote them.
async fn read(server: &Server, path: &str, pointer: &str) -> Value {
    let (status, answer) = server.call(Method::GET, path, None).await;
    let value = match status {
        StatusCode::NOT_FOUND => Value::Null,
        StatusCode::OK => answer.pointer(pointer).cloned().unwrap_or(Value::Null),
        _ => panic!("GET {path}: {status} {answer}"),
    };
    value.as_f64().map_or(value, |n| json!(n))
}

fn time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap()
}

/// The (action, entity, key) of each change of a change request.
fn changes_of(request: &Value) -> Vec<(String, String, String)> {
    let text = |c: &Value, f: &str| c[f].as_str().unwrap_or_default().to_owned();
    let changes = request["changes"].as_array().unwrap();
    changes.iter().map(|c| (text(c, "action"), text(c, "entity"), text(c, "key"))).collect()
}

fn protect(env: &str) -> Value {
    json!({"key": env, "protected": true})
}

/// One held write: the call, the changes it asks for, and a reading that tells whether it
/// applied (`path`, JSON pointer, value before, value after).
struct Held {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    changes: Vec<(&'static str, &'static str, &'static str)>,
    reading: (&'static str, &'static str, Value, Value),
}

fn held(
    method: Method,
    path: &'static str,
    body: Option<Value>,
    changes: &[(&'static str, &'static str, &'static str)],
    reading: (&'static str, &'static str, Value, Value),
) -> Held {
    Held { method, path, body, changes: changes.to_vec(), reading }
}

fn budget(limit: u64) -> Value {
    json!({"key": "llm_daily", "event": "llm_cost", "flag": "new_checkout", "period": "day", "limit": limit,
           "thresholds": [{"at": 100, "action": "disable"}]})
}

#[tokio::test]
async fn every_editor_write_in_a_protected_environment_waits_for_another_approver() {
    for backend in backends().await {
        let server = backend.start().await;
        server.create("flags", checkout_flag()).await;
        // Budgets refuse events never received: one event, counted before the budget rows.
        let (status, answer) = server
            .call(Method::POST, "/v1/events", Some(json!([{"event": "llm_cost", "user_id": "u", "value": 1}])))
            .await;
        assert!(status.is_success(), "{answer}");
        eventually("llm_cost counted", || async {
            let (status, _) = server.call(Method::POST, "/v1/admin/budgets", Some(budget(5))).await;
            (status == StatusCode::CREATED).then_some(())
        })
        .await;
        let (status, _) = server.call(Method::DELETE, "/v1/admin/budgets/llm_daily", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) =
            server.call(Method::PUT, "/v1/admin/environments/production", Some(protect("production"))).await;
        assert_eq!(status, StatusCode::OK);
        let grant = |name: &str| json!({"kind": "admin", "name": name, "role": "editor"});
        let (author, reviewer) =
            (admin_key(&server, grant("author")).await, admin_key(&server, grant("reviewer")).await);

        let plan = "/v1/admin/flags/new_checkout/rollout-plan";
        let steps = json!({"steps": [{"percent": 10, "hold": 3600}, {"percent": 100, "hold": 0}]});
        let segment = json!({"key": "beta", "when": {"attr": "plan", "op": "eq", "value": "beta"}});
        let variants = json!([{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}]);
        let experiment = json!({"key": "banner_test", "variants": variants});
        let table = [
            held(
                Method::PUT,
                plan,
                Some(steps),
                &[("create", "rollout_plan", "new_checkout")],
                (plan, "/state", Value::Null, json!("ready")),
            ),
            held(
                Method::POST,
                "/v1/admin/flags/new_checkout/rollout-plan/start",
                None,
                &[("update", "flag", "new_checkout"), ("update", "rollout_plan", "new_checkout")],
                ("/v1/admin/flags/new_checkout", "/default/rollout", json!(50.0), json!(10.0)),
            ),
            held(
                Method::POST,
                "/v1/admin/flags/new_checkout/rollout-plan/pause",
                None,
                &[("update", "rollout_plan", "new_checkout")],
                (plan, "/state", json!("running"), json!("paused")),
            ),
            held(
                Method::POST,
                "/v1/admin/flags/new_checkout/rollout-plan/cancel",
                None,
                &[("update", "rollout_plan", "new_checkout")],
                (plan, "/state", json!("paused"), json!("cancelled")),
            ),
            held(
                Method::POST,
                "/v1/admin/budgets",
                Some(budget(10)),
                &[("create", "budget", "llm_daily")],
                ("/v1/admin/budgets/llm_daily", "/limit", Value::Null, json!(10.0)),
            ),
            held(
                Method::PUT,
                "/v1/admin/budgets/llm_daily",
                Some(budget(20)),
                &[("update", "budget", "llm_daily")],
                ("/v1/admin/budgets/llm_daily", "/limit", json!(10.0), json!(20.0)),
            ),
            held(
                Method::DELETE,
                "/v1/admin/budgets/llm_daily",
                None,
                &[("delete", "budget", "llm_daily")],
                ("/v1/admin/budgets/llm_daily", "/limit", json!(20.0), Value::Null),
            ),
            held(
                Method::POST,
                "/v1/admin/segments",
                Some(segment),
                &[("create", "segment", "beta")],
                ("/v1/admin/segments/beta", "/when/value", Value::Null, json!("beta")),
            ),
            held(
                Method::PUT,
                "/v1/admin/segments/beta",
                Some(json!({"key": "beta", "when": {"attr": "plan", "op": "eq", "value": "gold"}})),
                &[("update", "segment", "beta")],
                ("/v1/admin/segments/beta", "/when/value", json!("beta"), json!("gold")),
            ),
            held(
                Method::DELETE,
                "/v1/admin/segments/beta",
                None,
                &[("delete", "segment", "beta")],
                ("/v1/admin/segments/beta", "/key", json!("beta"), Value::Null),
            ),
            held(
                Method::POST,
                "/v1/admin/experiments",
                Some(experiment),
                &[("create", "experiment", "banner_test")],
                ("/v1/admin/experiments/banner_test", "/status", Value::Null, json!("draft")),
            ),
            held(
                Method::POST,
                "/v1/admin/experiments/banner_test/start",
                None,
                &[("update", "experiment", "banner_test")],
                ("/v1/admin/experiments/banner_test", "/status", json!("draft"), json!("running")),
            ),
            held(
                Method::POST,
                "/v1/admin/experiments/banner_test/pause",
                None,
                &[("update", "experiment", "banner_test")],
                ("/v1/admin/experiments/banner_test", "/status", json!("running"), json!("paused")),
            ),
        ];
        for Held { method, path, body, changes, reading: (at, pointer, before, after) } in table {
            let what = format!("{method} {path}");
            let (status, answer) = as_key(&server, &author, method, path, body).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{what}: {answer}");
            let request = &answer["change_request"];
            let expected: Vec<_> =
                changes.iter().map(|(a, e, k)| (a.to_string(), e.to_string(), k.to_string())).collect();
            assert_eq!((&request["status"], changes_of(request)), (&json!("pending"), expected), "{what}");
            assert_eq!(read(&server, at, pointer).await, before, "{what}: not applied while pending");

            if path.ends_with("/rollout-plan/start") {
                // The CLI lists the request with what it changes and the state it moves to.
                let target = ["--server", &server.base, "--key", &reviewer];
                let (ok, listed, err) = run_on(&["changes", "list", "--status", "pending"], &target).await;
                assert!(ok, "{err}");
                let line = "update flag new_checkout, update rollout plan new_checkout (ready → running)";
                assert!(listed.contains("pending") && listed.contains(line), "{listed}");
            }
            let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
            let refused = as_key(&server, &author, Method::POST, &approve, None).await;
            assert_eq!(code(&refused), (StatusCode::FORBIDDEN, "forbidden"), "{what}: {}", refused.1);
            let (status, approved) = as_key(&server, &reviewer, Method::POST, &approve, None).await;
            assert_eq!((status, &approved["status"]), (StatusCode::OK, &json!("approved")), "{what}: {approved}");
            assert_eq!(read(&server, at, pointer).await, after, "{what}: applied on approval");

            // Audited with the approver as actor, naming the request.
            let (entity, key) = (changes[0].1, changes[0].2);
            let (_, audit) =
                server.call(Method::GET, &format!("/v1/admin/audit?entity={entity}&key={key}&limit=1"), None).await;
            let record = &audit["records"][0];
            assert_eq!(record["action"], changes[0].0, "{what}: {audit}");
            assert_eq!(record["actor"], approved["decided_by"], "{what}: {audit}");
            assert!(record["reason"].as_str().unwrap().contains(request["id"].as_str().unwrap()), "{what}: {audit}");

            if path.ends_with("/rollout-plan/start") {
                // The first step's hold starts when the step applies, not when it was asked for.
                let (_, plan_now) = server.call(Method::GET, plan, None).await;
                assert!(time(&plan_now["step_started_at"]) > time(&request["created_at"]), "{plan_now} {request}");
            }
        }

        // A held plan whose flag no longer has the split it steers does not apply.
        let (status, _) = server.call(Method::PUT, plan, Some(json!({"steps": [{"percent": 100, "hold": 0}]}))).await;
        assert_eq!(status, StatusCode::OK, "owners write directly");
        let (_, answer) =
            as_key(&server, &author, Method::PUT, plan, Some(json!({"steps": [{"percent": 30, "hold": 0}]}))).await;
        let approve = format!("/v1/admin/change-requests/{}/approve", answer["change_request"]["id"].as_str().unwrap());
        let mut without_split = checkout_flag();
        without_split["default"] = json!({"variant": "on"});
        let (status, _) = server.call(Method::PUT, "/v1/admin/flags/new_checkout", Some(without_split)).await;
        assert_eq!(status, StatusCode::OK);
        let refused = as_key(&server, &reviewer, Method::POST, &approve, None).await;
        assert_eq!(
            (code(&refused), &refused.1["error"]["field"]),
            ((StatusCode::BAD_REQUEST, "validation_failed"), &json!("target")),
            "{}",
            refused.1
        );
        // And one whose plan changed since does not either.
        let mut with_split = checkout_flag();
        with_split["default"] = json!({"split": {"on": 1}, "rollout": 5});
        server.call(Method::PUT, "/v1/admin/flags/new_checkout", Some(with_split)).await;
        let (_, answer) =
            as_key(&server, &author, Method::PUT, plan, Some(json!({"steps": [{"percent": 40, "hold": 0}]}))).await;
        let approve = format!("/v1/admin/change-requests/{}/approve", answer["change_request"]["id"].as_str().unwrap());
        server.call(Method::PUT, plan, Some(json!({"steps": [{"percent": 60, "hold": 0}]}))).await;
        let refused = as_key(&server, &reviewer, Method::POST, &approve, None).await;
        assert_eq!(code(&refused), (StatusCode::CONFLICT, "version_mismatch"), "{}", refused.1);
        assert_eq!(read(&server, plan, "/steps/0/percent").await, json!(60.0));
        // Bad input is refused before anything is held.
        let answer = as_key(&server, &author, Method::PUT, plan, Some(json!({"steps": []}))).await;
        assert_eq!(
            (code(&answer), &answer.1["error"]["field"]),
            ((StatusCode::BAD_REQUEST, "validation_failed"), &json!("steps"))
        );
        let answer = as_key(&server, &author, Method::DELETE, "/v1/admin/budgets/ghost", None).await;
        assert_eq!(answer.0, StatusCode::NOT_FOUND, "{}", answer.1);
        // The CLI says when a rollout action is held, and how to approve it.
        let (ok, out, err) =
            run_on(&["rollout", "start", "new_checkout"], &["--server", &server.base, "--key", &author]).await;
        assert!(ok, "{err}");
        assert!(out.starts_with("production is protected: held for approval as change request cr_"), "{out}");
        assert_eq!(read(&server, plan, "/state").await, json!("ready"));
        // Emergency stops are never held.
        let stop = json!({"scope": "flags", "flags": ["new_checkout"], "reason": "incident"});
        let (status, answer) = as_key(&server, &author, Method::POST, "/v1/admin/emergency-stop", Some(stop)).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
}

#[tokio::test]
async fn an_environment_with_pending_change_requests_is_not_empty() {
    for backend in backends().await {
        let server = backend.start().await;
        create_environment(&server, "staging").await;
        let (status, _) = server.call(Method::PUT, "/v1/admin/environments/staging", Some(protect("staging"))).await;
        assert_eq!(status, StatusCode::OK);
        let editor = admin_key(&server, json!({"kind": "admin", "name": "editor", "role": "editor"})).await;
        let segment = json!({"key": "beta", "when": {"attr": "plan", "op": "eq", "value": "beta"}});
        let (status, held) =
            as_key(&server, &editor, Method::POST, "/v1/admin/segments?env=staging", Some(segment)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{held}");

        // The environment holds nothing but the pending request.
        let refused = server.call(Method::DELETE, "/v1/admin/environments/staging", None).await;
        assert_eq!(code(&refused), (StatusCode::CONFLICT, "not_empty"), "{}", refused.1);
        let message = refused.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("holds 1 pending change request;"), "{message}");

        // Decided requests are history: once it is rejected, the environment is empty.
        let id = held["change_request"]["id"].as_str().unwrap();
        let path = format!("/v1/admin/change-requests/{id}/reject?env=staging");
        let (status, _) = server.call(Method::POST, &path, None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, answer) = server.call(Method::DELETE, "/v1/admin/environments/staging", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");

        // ?force=true deletes an environment with a pending request, audited with what it held.
        create_environment(&server, "qa").await;
        server.call(Method::PUT, "/v1/admin/environments/qa", Some(protect("qa"))).await;
        let segment = json!({"key": "beta", "when": {"attr": "plan", "op": "eq", "value": "beta"}});
        let (status, _) = as_key(&server, &editor, Method::POST, "/v1/admin/segments?env=qa", Some(segment)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, _) = server.call(Method::DELETE, "/v1/admin/environments/qa?force=true", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=environment&key=qa&limit=1", None).await;
        let record = &audit["records"][0];
        assert_eq!(record["action"], "delete", "{audit}");
        assert_eq!(record["reason"], "force=true; it held 1 pending change request", "{audit}");
        create_environment(&server, "qa").await;
        let (_, listed) = server.call(Method::GET, "/v1/admin/change-requests?env=qa", None).await;
        assert_eq!(listed["change_requests"], json!([]), "the request went with its environment");
    }
}
