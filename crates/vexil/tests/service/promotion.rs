//! Across environments (SPEC 9) over HTTP: a flag in every environment, promotion from one
//! environment to another (dry run, atomic apply, expected versions, audit), and change
//! requests in protected environments (for flags, imports and promotions; the other kinds are
//! in `change_requests.rs`). Every scenario runs on the embedded store and on PostgreSQL.

use crate::environments::{admin_key, as_key, backends, code, create_environment, in_env};
use crate::harness::Server;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn beta_segment(plan: &str) -> Value {
    json!({"key": "beta", "when": {"attr": "plan", "op": "eq", "value": plan}})
}

/// A flag serving `on` to the `beta` segment, with a default rollout of `rollout` %.
fn checkout(rollout: u64) -> Value {
    json!({"key": "new_checkout", "enabled": true,
           "rules": [{"id": "beta", "when": {"segment": "beta"}, "serve": {"variant": "on"}}],
           "default": {"split": {"on": 1}, "rollout": rollout}})
}

async fn promote(server: &Server, key: &str, to: &str, body: Value) -> (StatusCode, Value) {
    as_key(server, key, Method::POST, &format!("/v1/admin/environments/{to}/promote"), Some(body)).await
}

/// The (entity, key, action) of each change of an answer.
fn actions(answer: &Value) -> Vec<(String, String, String)> {
    let text = |c: &Value, f: &str| c[f].as_str().unwrap_or_default().to_owned();
    answer["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (text(c, "entity"), text(c, "key"), text(c, "action")))
        .collect()
}

fn triple(entity: &str, key: &str, action: &str) -> (String, String, String) {
    (entity.to_owned(), key.to_owned(), action.to_owned())
}

/// The body of a stored document without the server-managed fields.
fn body_of(doc: &Value) -> Value {
    let mut body = doc.clone();
    for field in ["id", "version", "created_at", "updated_at"] {
        body.as_object_mut().unwrap().remove(field);
    }
    body
}

#[tokio::test]
async fn flags_are_promoted_atomically_with_their_diff_first() {
    for backend in backends().await {
        let server = backend.start().await;
        create_environment(&server, "staging").await;
        let (_, owner) =
            server.call(Method::POST, "/v1/admin/keys", Some(json!({"kind": "admin", "name": "release"}))).await;
        let (owner_id, owner) = (owner["id"].as_str().unwrap().to_owned(), owner["key"].as_str().unwrap().to_owned());
        for (path, body) in [("/v1/admin/segments", beta_segment("beta")), ("/v1/admin/flags", checkout(10))] {
            let (status, created) = in_env(&server, Some("staging"), Method::POST, path, Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{created}");
        }

        // The flag everywhere: in staging only.
        let (status, everywhere) = server.call(Method::GET, "/v1/admin/flags/new_checkout/environments", None).await;
        assert_eq!(status, StatusCode::OK, "{everywhere}");
        assert_eq!(everywhere["environments"]["production"], Value::Null);
        assert_eq!(everywhere["environments"]["staging"]["key"], "new_checkout");
        assert_eq!(everywhere["environments"]["staging"]["default"]["rollout"], 10);

        // The flag alone needs its segment, which production lacks.
        let refused =
            promote(&server, &owner, "production", json!({"from": "staging", "flags": ["new_checkout"]})).await;
        assert_eq!(code(&refused), (StatusCode::CONFLICT, "missing_dependencies"), "{}", refused.1);
        let message = refused.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("segment \"beta\" (used by flag \"new_checkout\")"), "{message}");

        // A dry run shows the exact diff and changes nothing.
        let selection = json!({"from": "staging", "flags": ["new_checkout"], "segments": ["beta"], "dry_run": true});
        let (status, diff) = promote(&server, &owner, "production", selection).await;
        assert_eq!(status, StatusCode::OK, "{diff}");
        assert_eq!(actions(&diff), [triple("segment", "beta", "create"), triple("flag", "new_checkout", "create")]);
        assert_eq!((&diff["applied"], &diff["changes"][1]["before"]), (&json!(false), &Value::Null));
        assert_eq!(diff["changes"][1]["after"]["default"]["rollout"], 10);
        assert_eq!(diff["expected_versions"], json!({"flags": {"new_checkout": null}, "segments": {"beta": null}}));
        let (status, _) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "a dry run writes nothing");

        // Applying what was reviewed.
        let apply = json!({"from": "staging", "flags": ["new_checkout"], "segments": ["beta"],
                           "expected_versions": diff["expected_versions"]});
        let (status, applied) = promote(&server, &owner, "production", apply).await;
        assert_eq!((status, &applied["applied"]), (StatusCode::OK, &json!(true)), "{applied}");
        let (_, promoted) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
        let (_, source) = in_env(&server, Some("staging"), Method::GET, "/v1/admin/flags/new_checkout", None).await;
        assert_eq!(body_of(&promoted), body_of(&source));
        assert_eq!(promoted["version"], 1);
        assert_ne!(promoted["id"], source["id"], "the target's document is its own");
        // One audit record per change, in production, naming the actor and the source.
        let (_, audit) = server.call(Method::GET, "/v1/admin/audit?limit=2", None).await;
        let records = audit["records"].as_array().unwrap();
        let described: Vec<_> = records
            .iter()
            .map(|r| (r["entity"].as_str().unwrap(), r["action"].as_str().unwrap(), r["environment"].as_str().unwrap()))
            .collect();
        assert_eq!(described, [("flag", "create", "production"), ("segment", "create", "production")]);
        for record in records {
            assert_eq!((&record["actor"], &record["reason"]), (&json!(owner_id), &json!("promoted from staging")));
        }
        // Promoting again changes nothing.
        let again = json!({"from": "staging", "flags": ["new_checkout"], "segments": ["beta"]});
        let (_, unchanged) = promote(&server, &owner, "production", again.clone()).await;
        assert_eq!(
            actions(&unchanged),
            [triple("segment", "beta", "unchanged"), triple("flag", "new_checkout", "unchanged")]
        );
        assert_eq!(unchanged["applied"], false);

        // Staging moves on; production changes after the review: nothing of the promotion applies.
        in_env(&server, Some("staging"), Method::PUT, "/v1/admin/segments/beta", Some(beta_segment("pro"))).await;
        in_env(&server, Some("staging"), Method::PUT, "/v1/admin/flags/new_checkout", Some(checkout(50))).await;
        let review = json!({"from": "staging", "flags": ["new_checkout"], "segments": ["beta"], "dry_run": true});
        let (_, diff) = promote(&server, &owner, "production", review).await;
        assert_eq!(actions(&diff), [triple("segment", "beta", "update"), triple("flag", "new_checkout", "update")]);
        assert_eq!(diff["changes"][1]["before"]["default"]["rollout"], 10);
        assert_eq!(diff["changes"][1]["after"]["default"]["rollout"], 50);
        assert_eq!(diff["expected_versions"], json!({"flags": {"new_checkout": 1}, "segments": {"beta": 1}}));
        let mut edited = checkout(20);
        edited["enabled"] = json!(false);
        let (status, _) = server.call(Method::PUT, "/v1/admin/flags/new_checkout", Some(edited)).await;
        assert_eq!(status, StatusCode::OK);
        let apply = json!({"from": "staging", "flags": ["new_checkout"], "segments": ["beta"],
                           "expected_versions": diff["expected_versions"]});
        let refused = promote(&server, &owner, "production", apply).await;
        assert_eq!(code(&refused), (StatusCode::CONFLICT, "version_mismatch"), "{}", refused.1);
        assert!(refused.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("flag \"new_checkout\" is version 2, expected version 1"));
        let (_, segment) = server.call(Method::GET, "/v1/admin/segments/beta", None).await;
        assert_eq!((&segment["version"], &segment["when"]["value"]), (&json!(1), &json!("beta")), "nothing applied");
        let (_, flag) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
        assert_eq!((&flag["version"], &flag["default"]["rollout"]), (&json!(2), &json!(20)));

        // Bad requests name what is wrong.
        let cases = [
            (json!({"from": "staging"}), StatusCode::BAD_REQUEST, "invalid_request", "flags"),
            (
                json!({"from": "production", "flags": ["new_checkout"]}),
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "from",
            ),
            (
                json!({"from": "ghost", "flags": ["new_checkout"]}),
                StatusCode::NOT_FOUND,
                "environment_not_found",
                "from",
            ),
            (json!({"from": "staging", "flags": ["ghost"]}), StatusCode::NOT_FOUND, "flag_not_found", ""),
            (json!({"from": "staging", "flags": ["new_checkout"], "colour": 1}), StatusCode::BAD_REQUEST, "", ""),
        ];
        for (body, status, error, field) in cases {
            let answer = promote(&server, &owner, "production", body.clone()).await;
            assert_eq!(answer.0, status, "{body}: {}", answer.1);
            if !error.is_empty() {
                assert_eq!(answer.1["error"]["code"], error, "{body}: {}", answer.1);
            }
            if !field.is_empty() {
                assert_eq!(answer.1["error"]["field"], field, "{body}: {}", answer.1);
            }
        }
        let answer = promote(&server, &owner, "ghost", json!({"from": "staging", "flags": ["new_checkout"]})).await;
        assert_eq!(code(&answer), (StatusCode::NOT_FOUND, "environment_not_found"));
    }
}

#[tokio::test]
async fn promotion_and_the_flag_everywhere_follow_roles_and_scopes() {
    for backend in backends().await {
        let server = backend.start().await;
        create_environment(&server, "staging").await;
        create_environment(&server, "qa").await;
        for env in ["staging", "qa"] {
            in_env(&server, Some(env), Method::POST, "/v1/admin/segments", Some(beta_segment(env))).await;
            in_env(&server, Some(env), Method::POST, "/v1/admin/flags", Some(checkout(10))).await;
        }
        let grant = |role: &str, environments: Value| json!({"kind": "admin", "name": role, "role": role, "environments": environments});
        let viewer = admin_key(&server, grant("viewer", Value::Null)).await;
        let staging_viewer = admin_key(&server, grant("viewer", json!(["staging"]))).await;
        let production_editor = admin_key(&server, grant("editor", json!(["production"]))).await;
        let editor = admin_key(&server, grant("editor", json!(["production", "staging"]))).await;
        let body = json!({"from": "staging", "flags": ["new_checkout"], "segments": ["beta"], "dry_run": true});
        // (key, target, expected status, words of the refusal)
        let table = [
            (&viewer, "production", StatusCode::FORBIDDEN, "needs the editor role"),
            (&staging_viewer, "production", StatusCode::FORBIDDEN, "needs the editor role"),
            (&production_editor, "production", StatusCode::FORBIDDEN, "may not act in environment \"staging\""),
            (&editor, "qa", StatusCode::FORBIDDEN, "may not act in environment \"qa\""),
            (&editor, "production", StatusCode::OK, ""),
        ];
        for (key, to, status, words) in table {
            let answer = promote(&server, key, to, body.clone()).await;
            assert_eq!(answer.0, status, "to {to}: {}", answer.1);
            if !words.is_empty() {
                assert_eq!(answer.1["error"]["code"], "forbidden");
                assert!(answer.1["error"]["message"].as_str().unwrap().contains(words), "{}", answer.1);
            }
        }
        // Each key sees the flag in the environments it may read, and only there.
        let seen = |answer: &Value| answer["environments"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        for (key, expected) in [
            (&viewer, vec!["production", "qa", "staging"]),
            (&staging_viewer, vec!["staging"]),
            (&production_editor, vec!["production"]),
        ] {
            let (status, answer) =
                as_key(&server, key, Method::GET, "/v1/admin/flags/new_checkout/environments", None).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert_eq!(seen(&answer), expected);
        }
    }
}

// ---- protected environments and change requests ----

async fn key_id(server: &Server, name: &str) -> String {
    let (_, keys) = server.call(Method::GET, "/v1/admin/keys", None).await;
    let key = keys["keys"].as_array().unwrap().iter().find(|k| k["name"] == name).unwrap();
    key["id"].as_str().unwrap().to_owned()
}

async fn in_staging(
    server: &Server,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let separator = if path.contains('?') { '&' } else { '?' };
    as_key(server, key, method, &format!("{path}{separator}env=staging"), body).await
}

#[tokio::test]
async fn an_editors_change_in_a_protected_environment_waits_for_another_approver() {
    for backend in backends().await {
        let server = backend.start().await;
        create_environment(&server, "staging").await;
        in_env(&server, Some("staging"), Method::POST, "/v1/admin/segments", Some(beta_segment("beta"))).await;
        in_env(&server, Some("staging"), Method::POST, "/v1/admin/flags", Some(checkout(10))).await;
        let protect = json!({"key": "staging", "protected": true});
        let (status, _) = server.call(Method::PUT, "/v1/admin/environments/staging", Some(protect)).await;
        assert_eq!(status, StatusCode::OK);
        let grant = |name: &str, role: &str| json!({"kind": "admin", "name": name, "role": role});
        let author = admin_key(&server, grant("author", "editor")).await;
        let reviewer = admin_key(&server, grant("reviewer", "editor")).await;
        let viewer = admin_key(&server, grant("viewer", "viewer")).await;
        let owner = admin_key(&server, grant("owner", "owner")).await;
        let (author_id, reviewer_id) = (key_id(&server, "author").await, key_id(&server, "reviewer").await);

        // The editor's replacement is held: 202 with the diff, the flag unchanged.
        let flag_path = "/v1/admin/flags/new_checkout";
        let (status, held) = in_staging(&server, &author, Method::PUT, flag_path, Some(checkout(30))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{held}");
        let request = &held["change_request"];
        assert_eq!(
            (&request["status"], &request["author"], &request["environment"]),
            (&json!("pending"), &json!(author_id), &json!("staging"))
        );
        assert_eq!(actions(request), [triple("flag", "new_checkout", "update")]);
        assert_eq!(
            (
                &request["changes"][0]["before"]["default"]["rollout"],
                &request["changes"][0]["after"]["default"]["rollout"]
            ),
            (&json!(10), &json!(30))
        );
        let id = request["id"].as_str().unwrap().to_owned();
        let (_, flag) = in_staging(&server, &author, Method::GET, flag_path, None).await;
        assert_eq!((&flag["version"], &flag["default"]["rollout"]), (&json!(1), &json!(10)), "not applied");
        let (status, listed) =
            in_staging(&server, &viewer, Method::GET, "/v1/admin/change-requests?status=pending", None).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        assert_eq!(listed["change_requests"].as_array().unwrap().len(), 1);
        assert_eq!(listed["change_requests"][0]["id"], json!(id));
        let (status, _) = as_key(&server, &viewer, Method::GET, "/v1/admin/change-requests?status=pending", None).await;
        assert_eq!(status, StatusCode::OK, "production has its own (empty) list");

        // Not by its author, not by a viewer; another editor applies it.
        let approve = format!("/v1/admin/change-requests/{id}/approve");
        let refused = in_staging(&server, &author, Method::POST, &approve, None).await;
        assert_eq!(code(&refused), (StatusCode::FORBIDDEN, "forbidden"));
        assert!(refused.1["error"]["message"].as_str().unwrap().contains("author"), "{}", refused.1);
        let refused = in_staging(&server, &viewer, Method::POST, &approve, None).await;
        assert_eq!(code(&refused), (StatusCode::FORBIDDEN, "forbidden"));
        let (status, approved) = in_staging(&server, &reviewer, Method::POST, &approve, None).await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        assert_eq!((&approved["status"], &approved["decided_by"]), (&json!("approved"), &json!(reviewer_id)));
        let (_, flag) = in_staging(&server, &author, Method::GET, flag_path, None).await;
        assert_eq!((&flag["version"], &flag["default"]["rollout"]), (&json!(2), &json!(30)));
        let again = in_staging(&server, &reviewer, Method::POST, &approve, None).await;
        assert_eq!(code(&again), (StatusCode::CONFLICT, "change_request_closed"));
        // Every step is audited in staging with its actor.
        let (_, audit) = in_env(&server, Some("staging"), Method::GET, "/v1/admin/audit?limit=3", None).await;
        let steps: Vec<_> = audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["entity"].as_str().unwrap().to_owned(),
                    r["action"].as_str().unwrap().to_owned(),
                    r["actor"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("change_request".to_owned(), "update".to_owned(), reviewer_id.clone()),
                ("flag".to_owned(), "update".to_owned(), reviewer_id.clone()),
                ("change_request".to_owned(), "create".to_owned(), author_id.clone()),
            ]
        );
        let reason = audit["records"][1]["reason"].as_str().unwrap();
        assert!(reason.contains(&id) && reason.contains(&author_id), "{reason}");

        // A request whose target changed since it was made does not apply.
        let (_, held) = in_staging(&server, &author, Method::PUT, flag_path, Some(checkout(40))).await;
        let stale = held["change_request"]["id"].as_str().unwrap().to_owned();
        let (status, direct) = in_staging(&server, &owner, Method::PUT, flag_path, Some(checkout(60))).await;
        assert_eq!((status, &direct["version"]), (StatusCode::OK, &json!(3)), "owners apply directly");
        let refused =
            in_staging(&server, &reviewer, Method::POST, &format!("/v1/admin/change-requests/{stale}/approve"), None)
                .await;
        assert_eq!(code(&refused), (StatusCode::CONFLICT, "version_mismatch"), "{}", refused.1);
        let (_, flag) = in_staging(&server, &author, Method::GET, flag_path, None).await;
        assert_eq!(flag["default"]["rollout"], 60);
        let (status, rejected) =
            in_staging(&server, &reviewer, Method::POST, &format!("/v1/admin/change-requests/{stale}/reject"), None)
                .await;
        assert_eq!((status, &rejected["status"]), (StatusCode::OK, &json!("rejected")));

        // Creates, deletes and promotions are held too; emergency stops never are.
        let mut new_flag = checkout(5);
        new_flag["key"] = json!("dark_mode");
        let (status, _) = in_staging(&server, &author, Method::POST, "/v1/admin/flags", Some(new_flag)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, _) = in_staging(&server, &author, Method::DELETE, flag_path, None).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, _) = in_staging(&server, &author, Method::GET, "/v1/admin/flags/dark_mode", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, stop) = in_staging(
            &server,
            &author,
            Method::POST,
            "/v1/admin/emergency-stop",
            Some(json!({"scope": "all", "reason": "incident"})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{stop}");
        let (status, _) = in_staging(&server, &author, Method::POST, "/v1/admin/emergency-stop/resume", None).await;
        assert_eq!(status, StatusCode::OK);
        let mut imported = checkout(70);
        imported["key"] = json!("imported");
        let file = json!({"flags": [imported], "segments": [beta_segment("pro")]});
        let (status, held) = in_staging(&server, &author, Method::POST, "/v1/admin/import", Some(file)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{held}");
        assert_eq!(
            actions(&held["change_request"]),
            [triple("segment", "beta", "update"), triple("flag", "imported", "create")]
        );

        let (status, segment) = server.call(Method::POST, "/v1/admin/segments", Some(beta_segment("gold"))).await;
        assert_eq!(status, StatusCode::CREATED, "{segment}");
        let (status, _) = server.call(Method::POST, "/v1/admin/flags", Some(checkout(1))).await;
        assert_eq!(status, StatusCode::CREATED);
        let body = json!({"from": "production", "flags": ["new_checkout"], "segments": ["beta"]});
        let (status, held) =
            as_key(&server, &author, Method::POST, "/v1/admin/environments/staging/promote", Some(body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{held}");
        assert_eq!(
            (&held["change_request"]["source"], actions(&held["change_request"])),
            (&json!("production"), vec![triple("segment", "beta", "update"), triple("flag", "new_checkout", "update")])
        );
        let promoted = held["change_request"]["id"].as_str().unwrap().to_owned();
        let (status, approved) = in_staging(
            &server,
            &reviewer,
            Method::POST,
            &format!("/v1/admin/change-requests/{promoted}/approve"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        let (_, segment) = in_staging(&server, &author, Method::GET, "/v1/admin/segments/beta", None).await;
        assert_eq!(segment["when"]["value"], "gold");
        let (_, flag) = in_staging(&server, &author, Method::GET, flag_path, None).await;
        assert_eq!(flag["default"]["rollout"], 1);
    }
}

/// The role an admin route needs (SPEC 9): people are an owner's to see and change; every other
/// read is a viewer's; keys and environments are an owner's to change, except promotion, an
/// editor's (in its target); everything else an editor's.
fn needed_role(method: &str, path: &str) -> &'static str {
    let global = path.starts_with("/v1/admin/keys")
        || (path.starts_with("/v1/admin/environments") && !path.ends_with("/promote"));
    match () {
        _ if path.starts_with("/v1/admin/users") => "owner",
        _ if method == "get" => "viewer",
        _ if global => "owner",
        _ => "editor",
    }
}

#[tokio::test]
async fn every_admin_route_of_the_route_table_answers_by_role_and_scope() {
    let server = crate::harness::Server::start().await;
    create_environment(&server, "staging").await;
    let grant = |role: &str, environments: Value| json!({"kind": "admin", "name": role, "role": role, "environments": environments});
    let viewer = admin_key(&server, grant("viewer", Value::Null)).await;
    let editor = admin_key(&server, grant("editor", Value::Null)).await;
    let staging_editor = admin_key(&server, grant("editor", json!(["staging"]))).await;
    let (_, openapi) = Server::send(server.client.get(server.url("/openapi.json"))).await;
    let mut checked = 0;
    for (path, operations) in openapi["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/admin/") {
            continue;
        }
        let uri = path
            .replace("{key}", "some_key")
            .replace("{id}", "some_id")
            .replace("{env}", "staging")
            .replace("{action}", "start");
        for method in operations.as_object().unwrap().keys() {
            let needed = needed_role(method, path);
            let promote = path.ends_with("/promote");
            // Promotion names its source in the body: production, outside the scoped key's.
            let body = if promote { json!({"from": "production", "flags": ["some_key"]}) } else { json!({}) };
            // An event stream does not end: its answer is its status.
            let stream = path.ends_with("/stream");
            let call = |key: &str| {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let mut request = server.with_key(method.clone(), &uri, key);
                if method != Method::GET {
                    request = request.json(&body);
                }
                async move {
                    if stream {
                        return (request.send().await.unwrap().status(), Value::Null);
                    }
                    Server::send(request).await
                }
            };
            let forbidden = |answer: &(StatusCode, Value)| answer.0 == StatusCode::FORBIDDEN;
            let answer = call(&viewer).await;
            assert_eq!(forbidden(&answer), needed != "viewer", "viewer: {method} {uri}: {}", answer.1);
            let answer = call(&editor).await;
            assert_eq!(forbidden(&answer), needed == "owner", "editor: {method} {uri}: {}", answer.1);
            // In production (named by no ?env=), a key of staging only: refused unless the
            // route reads what belongs to no environment or names its environments itself.
            let global_read =
                method == "get" && (path.starts_with("/v1/admin/keys") || path.starts_with("/v1/admin/environments"));
            let everywhere = path.ends_with("/environments") && path.starts_with("/v1/admin/flags/");
            let answer = call(&staging_editor).await;
            assert_eq!(
                forbidden(&answer),
                !(global_read || everywhere),
                "staging editor: {method} {uri}: {}",
                answer.1
            );
            checked += 1;
        }
    }
    assert!(checked > 30, "{checked} admin operations");
}
