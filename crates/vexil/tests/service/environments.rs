//! Environments (SPEC 9) over HTTP: a store written before environments existed serves the same
//! answers from `production`; environments are created, replaced and deleted by the admin API;
//! keys act only in their environment, and admin requests name theirs with `?env=` or
//! `X-Vexil-Env`. Every scenario runs on the embedded store and on PostgreSQL.

use crate::harness::{eventually, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use vexil_store::testkit::postgres::fresh_database;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-environments");

/// The backends a scenario runs on: the embedded store, and PostgreSQL when the engine is
/// there (without it the PostgreSQL run fails, or records a skip with `VEXIL_TEST_ALLOW_SKIPS`).
pub(crate) enum Backend {
    Embedded,
    Postgres(String),
}

impl Backend {
    fn args(&self) -> Vec<String> {
        match self {
            Backend::Embedded => Vec::new(),
            Backend::Postgres(url) => vec!["--database-url".into(), url.clone()],
        }
    }

    pub(crate) async fn start(&self) -> Server {
        Server::start_with(Options { args: self.args(), ..Options::default() }).await
    }
}

pub(crate) async fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Embedded];
    backends.extend(fresh_database().await.map(Backend::Postgres));
    backends
}

/// An admin call in environment `env` (`None`: none named).
pub(crate) async fn in_env(
    server: &Server,
    env: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = server.admin(method, path);
    if let Some(env) = env {
        request = request.header("X-Vexil-Env", env);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    Server::send(request).await
}

pub(crate) async fn create_environment(server: &Server, key: &str) -> Value {
    let (status, created) = server.call(Method::POST, "/v1/admin/environments", Some(json!({"key": key}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

async fn create_key(server: &Server, kind: &str, environment: &str) -> String {
    let body = json!({"kind": kind, "name": format!("{kind} of {environment}"), "environment": environment});
    let (status, created) = server.call(Method::POST, "/v1/admin/keys", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["environment"], environment);
    created["key"].as_str().unwrap().to_string()
}

async fn evaluate(server: &Server, key: &str, flag: &str, user: &str) -> (StatusCode, Value) {
    let request =
        server.with_key(Method::POST, &format!("/v1/flags/{flag}/evaluate"), key).json(&json!({"user_id": user}));
    Server::send(request).await
}

pub(crate) fn code(answer: &(StatusCode, Value)) -> (StatusCode, &str) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or(""))
}

// ---- upgrade from a store written before environments ----

/// Starts the current vexil on the fixture store of `backend` and requires the answers the
/// older vexil gave from it (fixtures/pre-environments/make.sh wrote both).
async fn serves_what_it_served_before(server: &Server, expected: &Value) {
    let keys = &expected["keys"];
    let (admin, server_key, client_key) =
        (keys["admin"].as_str().unwrap(), keys["server"].as_str().unwrap(), keys["client"].as_str().unwrap());
    let as_admin = |method: Method, path: &str| Server::send(server.with_key(method, path, admin));

    for (user, answer) in expected["answers"].as_object().unwrap() {
        let body = json!({"user_id": user, "context": {"plan": answer["plan"]}});
        let response = server.with_key(Method::POST, "/v1/evaluate", server_key).json(&body).send().await.unwrap();
        assert_eq!(response.headers()["x-vexil-env"], "production");
        let evaluated: Value = response.json().await.unwrap();
        for (flag, want) in answer["flags"].as_object().unwrap() {
            let got = &evaluated["flags"][flag];
            let got = json!({"variant": got["variant"], "value": got["value"], "reason": got["reason"]});
            assert_eq!(&got, want, "{flag} for {user}");
        }
        let body = json!({"experiment_key": "checkout_redesign", "user_id": user});
        let (status, assigned) =
            Server::send(server.with_key(Method::POST, "/v1/assign", client_key).json(&body)).await;
        assert_eq!(status, StatusCode::OK, "{assigned}");
        let want = &answer["assignment"];
        assert_eq!(
            (&assigned["variant"], &assigned["assignment_id"], &assigned["sticky"]),
            (&want["variant"], &want["assignment_id"], &json!(true)),
            "the sticky assignment of {user}"
        );
    }
    let listed = |collection: &'static str, fields: &'static [&'static str]| async move {
        let (status, listed) = as_admin(Method::GET, &format!("/v1/admin/{collection}")).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        let items: Vec<Value> = listed[collection]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| fields.iter().map(|f| (f.to_string(), item[*f].clone())).collect())
            .collect();
        Value::Array(items)
    };
    assert_eq!(listed("flags", &["key", "id", "version"]).await, expected["flags"]);
    assert_eq!(listed("segments", &["key", "id", "version"]).await, expected["segments"]);
    assert_eq!(listed("experiments", &["key", "id", "version", "status"]).await, expected["experiments"]);
    let (_, stops) = as_admin(Method::GET, "/v1/admin/emergency-stop").await;
    assert_eq!(stops, expected["emergency_stops"]);
    let (_, audit) = as_admin(Method::GET, "/v1/admin/audit?limit=1000").await;
    assert_eq!(audit["records"].as_array().unwrap().len() as u64, expected["audit_records"].as_u64().unwrap());
    assert_eq!(audit["environment"], "production");

    let (status, environments) = as_admin(Method::GET, "/v1/admin/environments").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(environments["default"], "production");
    let environments = environments["environments"].as_array().unwrap();
    assert_eq!(environments.len(), 1);
    assert_eq!(
        (&environments[0]["key"], &environments[0]["protected"], &environments[0]["version"]),
        (&json!("production"), &json!(false), &json!(1))
    );
    let (_, keys) = as_admin(Method::GET, "/v1/admin/keys").await;
    let kinds: Vec<_> =
        keys["keys"].as_array().unwrap().iter().map(|k| (k["kind"].clone(), k["environment"].clone())).collect();
    assert_eq!(
        kinds,
        [(json!("admin"), Value::Null), (json!("server"), json!("production")), (json!("client"), json!("production"))]
    );
}

fn expected(backend: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(FIXTURE).join(format!("{backend}-expected.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_data_directory_written_before_environments_serves_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::copy(Path::new(FIXTURE).join("vexil.db"), data_dir.join("vexil.db")).unwrap();
    let server = Server::start_in(&data_dir, Options::default()).await;
    serves_what_it_served_before(&server, &expected("sqlite")).await;
    // And again after a restart, when the migration has already run.
    assert!(server.stop().await);
    let server = Server::start_in(&data_dir, Options::default()).await;
    serves_what_it_served_before(&server, &expected("sqlite")).await;
}

#[tokio::test]
async fn a_database_written_before_environments_serves_the_same_answers() {
    let Some(url) = fresh_database().await else { return };
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let dump = std::fs::read_to_string(Path::new(FIXTURE).join("postgres.sql")).unwrap();
    client.batch_execute(&dump).await.unwrap();
    drop(client);
    let backend = Backend::Postgres(url);
    let server = backend.start().await;
    serves_what_it_served_before(&server, &expected("postgres")).await;
}

// ---- the environments API ----

#[tokio::test]
async fn environments_are_created_replaced_and_deleted_by_the_rules() {
    for backend in backends().await {
        let server = backend.start().await;
        let (status, listed) = server.call(Method::GET, "/v1/admin/environments", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed["environments"].as_array().unwrap().len(), 1, "a fresh store has production only");
        assert_eq!(listed["environments"][0]["key"], "production");

        let created = create_environment(&server, "staging").await;
        assert_eq!(
            (&created["name"], &created["description"], &created["protected"], &created["version"]),
            (&json!("staging"), &json!(""), &json!(false), &json!(1))
        );
        let answer = server.call(Method::POST, "/v1/admin/environments", Some(json!({"key": "staging"}))).await;
        assert_eq!(code(&answer), (StatusCode::CONFLICT, "already_exists"));
        let answer = server
            .call(Method::POST, "/v1/admin/environments", Some(json!({"key": "Staging!", "protected": "yes"})))
            .await;
        assert_eq!(code(&answer), (StatusCode::BAD_REQUEST, "validation_failed"), "{}", answer.1);
        let fields: Vec<_> = answer.1["errors"].as_array().unwrap().iter().map(|e| e["path"].clone()).collect();
        assert_eq!(fields, [json!("key"), json!("protected")]);

        // Replacement with If-Match.
        let body = json!({"name": "Staging", "description": "pre-production", "protected": true});
        let request = server.admin(Method::PUT, "/v1/admin/environments/staging").header("If-Match", "1").json(&body);
        let (status, replaced) = Server::send(request).await;
        assert_eq!(status, StatusCode::OK, "{replaced}");
        assert_eq!(
            (&replaced["name"], &replaced["protected"], &replaced["version"]),
            (&json!("Staging"), &json!(true), &json!(2))
        );
        let request = server.admin(Method::PUT, "/v1/admin/environments/staging").header("If-Match", "1").json(&body);
        assert_eq!(code(&Server::send(request).await), (StatusCode::CONFLICT, "version_mismatch"));
        let (status, got) = server.call(Method::GET, "/v1/admin/environments/staging", None).await;
        assert_eq!((status, &got["description"]), (StatusCode::OK, &json!("pre-production")));
        let answer = server.call(Method::GET, "/v1/admin/environments/ghost", None).await;
        assert_eq!(code(&answer), (StatusCode::NOT_FOUND, "environment_not_found"));

        // An unknown environment named by an admin request.
        let answer = in_env(&server, Some("ghost"), Method::GET, "/v1/admin/flags", None).await;
        assert_eq!(code(&answer), (StatusCode::NOT_FOUND, "environment_not_found"));
        let answer = server.call(Method::GET, "/v1/admin/flags?env=ghost", None).await;
        assert_eq!(code(&answer), (StatusCode::NOT_FOUND, "environment_not_found"));

        // Deletion: never the default environment; not while it holds anything unless forced.
        let answer = server.call(Method::DELETE, "/v1/admin/environments/production", None).await;
        assert_eq!(code(&answer), (StatusCode::CONFLICT, "default_environment"));
        let (status, _) =
            in_env(&server, Some("staging"), Method::POST, "/v1/admin/flags", Some(crate::harness::checkout_flag()))
                .await;
        assert_eq!(status, StatusCode::CREATED);
        let staging_key = create_key(&server, "server", "staging").await;
        let answer = server.call(Method::DELETE, "/v1/admin/environments/staging", None).await;
        assert_eq!(code(&answer), (StatusCode::CONFLICT, "not_empty"));
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("1 flag, 1 key"), "{message}");
        assert_eq!(evaluate(&server, &staging_key, "new_checkout", "user_1").await.0, StatusCode::OK);

        let (status, _) = server.call(Method::DELETE, "/v1/admin/environments/staging?force=true", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let answer = server.call(Method::GET, "/v1/admin/environments/staging", None).await;
        assert_eq!(code(&answer), (StatusCode::NOT_FOUND, "environment_not_found"));
        assert_eq!(
            evaluate(&server, &staging_key, "new_checkout", "user_1").await.0,
            StatusCode::UNAUTHORIZED,
            "its key was revoked"
        );
        let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=environment&key=staging", None).await;
        let records = audit["records"].as_array().unwrap();
        let actions: Vec<_> = records.iter().map(|r| r["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["delete", "update", "create"]);
        assert!(records[0]["reason"].as_str().unwrap().contains("force=true; it held 1 flag, 1 key"), "{}", records[0]);

        // An empty environment goes without force, and one created again under its key is empty.
        create_environment(&server, "qa").await;
        let (status, _) = server.call(Method::DELETE, "/v1/admin/environments/qa", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        create_environment(&server, "staging").await;
        let (_, flags) = in_env(&server, Some("staging"), Method::GET, "/v1/admin/flags", None).await;
        assert_eq!(flags["flags"], json!([]));
    }
}

// ---- keys bound to environments ----

#[tokio::test]
async fn keys_act_only_in_their_environment() {
    for backend in backends().await {
        let server = backend.start().await;
        create_environment(&server, "staging").await;
        // The same flag key with different rules: on for everyone in staging, off in production.
        let mut production_flag = crate::harness::checkout_flag();
        production_flag["enabled"] = json!(false);
        let mut staging_flag = crate::harness::checkout_flag();
        staging_flag["rules"] = json!([]);
        staging_flag["default"] = json!({"variant": "on"});
        let (status, _) = in_env(&server, None, Method::POST, "/v1/admin/flags", Some(production_flag)).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, created) =
            in_env(&server, Some("staging"), Method::POST, "/v1/admin/flags", Some(staging_flag)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let staging_only = json!({"key": "staging_only", "default": {"variant": "on"}});
        let (status, _) = server.call(Method::POST, "/v1/admin/flags?env=staging", Some(staging_only)).await;
        assert_eq!(status, StatusCode::CREATED);

        let production_server = create_key(&server, "server", "production").await;
        let staging_server = create_key(&server, "server", "staging").await;
        let staging_client = create_key(&server, "client", "staging").await;

        // The SDK document's tag names the environment as well as a revision, which two
        // environments may share: staging's tag is no 304 for production's key.
        let sdk = |key: &str, etag: Option<&str>| {
            let mut request = server.with_key(Method::GET, "/v1/sdk/flags", key);
            if let Some(etag) = etag {
                request = request.header("if-none-match", etag);
            }
            request.send()
        };
        let staging_sdk = sdk(&staging_server, None).await.unwrap();
        let staging_etag = staging_sdk.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(sdk(&staging_server, Some(&staging_etag)).await.unwrap().status(), StatusCode::NOT_MODIFIED);
        let production_sdk = sdk(&production_server, Some(&staging_etag)).await.unwrap();
        assert_eq!(production_sdk.status(), StatusCode::OK, "another environment's tag");
        let (_, default_key) =
            server.call(Method::POST, "/v1/admin/keys", Some(json!({"kind": "client", "name": "no env"}))).await;
        assert_eq!(default_key["environment"], "production", "a key without environment belongs to the default one");
        let default_client = default_key["key"].as_str().unwrap().to_string();

        for user in ["user_1", "user_2", "user_3"] {
            let (status, on) = evaluate(&server, &staging_server, "new_checkout", user).await;
            assert_eq!((status, &on["value"], &on["reason"]), (StatusCode::OK, &json!(true), &json!("STATIC")), "{on}");
            let (_, off) = evaluate(&server, &production_server, "new_checkout", user).await;
            assert_eq!((&off["value"], &off["reason"]), (&json!(false), &json!("DISABLED")), "{off}");
            let (_, off) = evaluate(&server, &default_client, "new_checkout", user).await;
            assert_eq!(off["reason"], "DISABLED");
        }
        // A flag of one environment does not exist in another.
        assert_eq!(evaluate(&server, &staging_client, "staging_only", "user_1").await.0, StatusCode::OK);
        let answer = evaluate(&server, &default_client, "staging_only", "user_1").await;
        assert_eq!(code(&answer), (StatusCode::NOT_FOUND, "flag_not_found"));
        // OFREP, the batch and the SDK document see the key's environment only.
        let request = server
            .with_key(Method::POST, "/ofrep/v1/evaluate/flags", &staging_client)
            .json(&json!({"context": {"targetingKey": "u"}}));
        let (_, bulk) = Server::send(request).await;
        let mut keys: Vec<_> =
            bulk["flags"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap().to_string()).collect();
        keys.sort();
        assert_eq!(keys, ["new_checkout", "staging_only"]);
        let response = server.with_key(Method::GET, "/v1/sdk/flags", &production_server).send().await.unwrap();
        assert_eq!(response.headers()["x-vexil-env"], "production");
        let document: Value = response.json().await.unwrap();
        let keys: Vec<_> = document["flags"].as_array().unwrap().iter().map(|f| f["key"].clone()).collect();
        assert_eq!(keys, [json!("new_checkout")]);
        // A key may not reach into another environment.
        let request = server
            .with_key(Method::POST, "/v1/evaluate", &staging_server)
            .header("X-Vexil-Env", "production")
            .json(&json!({"user_id": "u"}));
        assert_eq!(code(&Server::send(request).await), (StatusCode::FORBIDDEN, "forbidden"));
        // Another environment's key sends events to its own environment.
        let request = server.with_key(Method::POST, "/v1/events", &staging_client).json(&json!([]));
        let (status, answer) = Server::send(request).await;
        assert_eq!((status, &answer["accepted"]), (StatusCode::OK, &json!(0)), "{answer}");

        // Admin requests name their environment and are told which one they used.
        let response = server.admin(Method::GET, "/v1/admin/flags/staging_only?env=staging").send().await.unwrap();
        assert_eq!(
            (response.status(), response.headers()["x-vexil-env"].to_str().unwrap()),
            (StatusCode::OK, "staging")
        );
        let response = server.admin(Method::GET, "/v1/admin/flags/staging_only").send().await.unwrap();
        assert_eq!(
            (response.status(), response.headers()["x-vexil-env"].to_str().unwrap()),
            (StatusCode::NOT_FOUND, "production")
        );

        // An emergency stop in staging leaves production untouched.
        let stop = json!({"scope": "all", "reason": "staging incident"});
        let (status, stopped) =
            in_env(&server, Some("staging"), Method::POST, "/v1/admin/emergency-stop", Some(stop)).await;
        assert_eq!(status, StatusCode::CREATED, "{stopped}");
        assert_eq!(stopped["stopped_flags"], json!(["new_checkout", "staging_only"]));
        let (_, off) = evaluate(&server, &staging_server, "new_checkout", "user_1").await;
        assert_eq!(off["reason"], "DISABLED", "{off}");
        let (_, production_stops) = in_env(&server, None, Method::GET, "/v1/admin/emergency-stop", None).await;
        assert_eq!(production_stops["stops"], json!([]));
        server
            .call(
                Method::PUT,
                "/v1/admin/flags/new_checkout",
                Some(json!({"enabled": true, "default": {"split": {"on": 1}, "rollout": 100}})),
            )
            .await;
        let (_, on) = evaluate(&server, &production_server, "new_checkout", "user_1").await;
        assert_eq!((&on["value"], &on["reason"]), (&json!(true), &json!("SPLIT")), "{on}");
        // Its audit record is staging's, not production's.
        let (_, audit) = in_env(&server, None, Method::GET, "/v1/admin/audit?entity=emergency_stop", None).await;
        assert_eq!(audit["records"], json!([]));
        let (_, audit) =
            in_env(&server, Some("staging"), Method::GET, "/v1/admin/audit?entity=emergency_stop", None).await;
        assert_eq!(audit["records"].as_array().unwrap().len(), 1, "{audit}");

        // A key created with an environment that does not exist is refused.
        let body = json!({"kind": "server", "name": "x", "environment": "ghost"});
        let answer = server.call(Method::POST, "/v1/admin/keys", Some(body)).await;
        assert_eq!(code(&answer), (StatusCode::NOT_FOUND, "environment_not_found"));
        let body = json!({"kind": "admin", "name": "x", "environment": "staging"});
        let answer = server.call(Method::POST, "/v1/admin/keys", Some(body)).await;
        assert_eq!((answer.0, &answer.1["error"]["field"]), (StatusCode::BAD_REQUEST, &json!("environment")));
    }
}

#[tokio::test]
async fn an_environment_created_on_one_node_is_served_by_another() {
    // Two nodes of the distributed mode on one database.
    let Some(url) = fresh_database().await else { return };
    let backend = Backend::Postgres(url);
    let (first, second) = (backend.start().await, backend.start().await);
    create_environment(&first, "staging").await;
    let (status, _) =
        first.call(Method::POST, "/v1/admin/flags?env=staging", Some(crate::harness::checkout_flag())).await;
    assert_eq!(status, StatusCode::CREATED);
    eventually("the other node serves the new environment", || async {
        let (status, _) = in_env(&second, Some("staging"), Method::GET, "/v1/admin/flags/new_checkout", None).await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
}

/// `GET /v1/sdk/flags` with a server key and an optional `If-None-Match`: the status, the
/// ETag and the document.
async fn sdk_document(server: &Server, key: &str, etag: Option<&str>) -> (StatusCode, String, Value) {
    let mut request = server.with_key(Method::GET, "/v1/sdk/flags", key);
    if let Some(etag) = etag {
        request = request.header("if-none-match", etag);
    }
    let response = request.send().await.unwrap();
    let (status, tag) = (response.status(), response.headers()["etag"].to_str().unwrap().to_owned());
    (status, tag, response.json().await.unwrap_or(Value::Null))
}

/// Waits until the node's default environment (production) has caught up with the store.
async fn caught_up(server: &Server) {
    eventually("production caught up with the store", || async {
        let (status, ready) = server.call(Method::GET, "/ready", None).await;
        (status == StatusCode::OK && ready["revision"] == ready["store_revision"]).then_some(())
    })
    .await;
}

/// The rollout of production's `new_checkout` in an SDK document.
fn rollout_in(document: &Value) -> Value {
    document["flags"].as_array().unwrap().iter().find(|f| f["key"] == "new_checkout").unwrap()["default"]["rollout"]
        .clone()
}

#[tokio::test]
async fn a_write_in_one_environment_leaves_anothers_sdk_document_as_it_was() {
    for backend in backends().await {
        let server = backend.start().await;
        create_environment(&server, "staging").await;
        server.create("flags", crate::harness::checkout_flag()).await;
        let production_server = create_key(&server, "server", "production").await;
        caught_up(&server).await;
        let (status, etag, document) = sdk_document(&server, &production_server, None).await;
        assert_eq!((status, rollout_in(&document)), (StatusCode::OK, json!(50)));

        // Staging changes; production, having read that nothing of its own changed, keeps its
        // document and its tag, which still answers 304.
        let staging_flag = json!({"key": "staging_only", "default": {"variant": "on"}});
        let (status, _) = server.call(Method::POST, "/v1/admin/flags?env=staging", Some(staging_flag)).await;
        assert_eq!(status, StatusCode::CREATED);
        caught_up(&server).await;
        let (status, after_staging, unchanged) = sdk_document(&server, &production_server, None).await;
        assert_eq!((status, &after_staging, &unchanged), (StatusCode::OK, &etag, &document));
        assert_eq!(sdk_document(&server, &production_server, Some(&etag)).await.0, StatusCode::NOT_MODIFIED);

        // Production changes: a client holding the old tag gets the new document and tag.
        let mut flag = crate::harness::checkout_flag();
        flag["default"]["rollout"] = json!(70);
        let (status, _) = server.call(Method::PUT, "/v1/admin/flags/new_checkout", Some(flag)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, changed, document) = sdk_document(&server, &production_server, Some(&etag)).await;
        assert_eq!((status, rollout_in(&document)), (StatusCode::OK, json!(70)));
        assert_ne!(changed, etag);
        assert_eq!(sdk_document(&server, &production_server, Some(&changed)).await.0, StatusCode::NOT_MODIFIED);
    }
}

#[tokio::test]
async fn a_change_on_one_node_reaches_another_nodes_evaluations() {
    // Two nodes of the distributed mode on one database: the second patches its snapshot from
    // the store's changes since its revision.
    let Some(url) = fresh_database().await else { return };
    let backend = Backend::Postgres(url);
    let (first, second) = (backend.start().await, backend.start().await);
    create_environment(&first, "staging").await;
    first.create("flags", crate::harness::checkout_flag()).await;
    let production_server = create_key(&first, "server", "production").await;
    eventually("the second node evaluates the new flag", || async {
        let (status, on) = evaluate(&second, &production_server, "new_checkout", "user_1").await;
        (status == StatusCode::OK && on["reason"] != "DISABLED").then_some(())
    })
    .await;
    caught_up(&second).await;
    let (_, etag, _) = sdk_document(&second, &production_server, None).await;

    // A staging change on the first node leaves the second node's production as it was.
    let staging_flag = json!({"key": "staging_only", "default": {"variant": "on"}});
    let (status, _) = first.call(Method::POST, "/v1/admin/flags?env=staging", Some(staging_flag)).await;
    assert_eq!(status, StatusCode::CREATED);
    caught_up(&second).await;
    assert_eq!(sdk_document(&second, &production_server, Some(&etag)).await.0, StatusCode::NOT_MODIFIED);

    // A production change on the first node reaches the second node's evaluations.
    let mut disabled = crate::harness::checkout_flag();
    disabled["enabled"] = json!(false);
    let (status, _) = first.call(Method::PUT, "/v1/admin/flags/new_checkout", Some(disabled)).await;
    assert_eq!(status, StatusCode::OK);
    eventually("the second node evaluates the disabled flag", || async {
        let (_, off) = evaluate(&second, &production_server, "new_checkout", "user_1").await;
        (off["reason"] == "DISABLED" && off["value"] == false).then_some(())
    })
    .await;
    let (status, _, document) = sdk_document(&second, &production_server, Some(&etag)).await;
    assert_eq!((status, &document["flags"][0]["enabled"]), (StatusCode::OK, &json!(false)));
}

#[tokio::test]
async fn an_sdk_stream_follows_its_keys_environment_only() {
    for backend in backends().await {
        let server = backend.start().await;
        create_environment(&server, "staging").await;
        server.create("flags", crate::harness::checkout_flag()).await;
        let staging_server = create_key(&server, "server", "staging").await;
        let response = server.with_key(Method::GET, "/v1/sdk/stream", &staging_server).send().await.unwrap();
        assert_eq!(response.headers()["x-vexil-env"], "staging");
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        let put = crate::sdk::next_events(&mut stream, &mut buffer, 1).await;
        assert_eq!(put[0], ("put".to_string(), json!({"flags": [], "segments": []})), "production's flag is not in it");

        // A change in production, then one in staging: the stream's next change is staging's.
        let mut production_flag = crate::harness::checkout_flag();
        production_flag["key"] = json!("production_only");
        server.create("flags", production_flag).await;
        let staging_flag = json!({"key": "staging_only", "default": {"variant": "on"}});
        let (status, _) = server.call(Method::POST, "/v1/admin/flags?env=staging", Some(staging_flag)).await;
        assert_eq!(status, StatusCode::CREATED);
        let patch = crate::sdk::next_events(&mut stream, &mut buffer, 1).await;
        assert_eq!(patch[0].0, "patch");
        assert_eq!((patch[0].1["kind"].as_str(), patch[0].1["key"].as_str()), (Some("flag"), Some("staging_only")));
    }
}

// ---- admin key roles and scopes ----

pub(crate) async fn admin_key(server: &Server, body: Value) -> String {
    let (status, created) = server.call(Method::POST, "/v1/admin/keys", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["key"].as_str().unwrap().to_string()
}

pub(crate) async fn as_key(
    server: &Server,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = server.with_key(method, path, key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    Server::send(request).await
}

#[tokio::test]
async fn admin_keys_act_within_their_role_and_environments() {
    for backend in backends().await {
        let server = backend.start().await;
        create_environment(&server, "staging").await;
        let (_, owner) = server.call(Method::POST, "/v1/admin/keys", Some(json!({"kind": "admin", "name": "o"}))).await;
        assert_eq!((&owner["role"], &owner["environments"]), (&json!("owner"), &Value::Null), "the default role");
        let viewer = admin_key(&server, json!({"kind": "admin", "name": "v", "role": "viewer"})).await;
        let editor = admin_key(&server, json!({"kind": "admin", "name": "e", "role": "editor"})).await;
        let staging_editor =
            admin_key(&server, json!({"kind": "admin", "name": "se", "role": "editor", "environments": ["staging"]}))
                .await;
        let flag = crate::harness::checkout_flag();

        // viewer: reads only.
        assert_eq!(as_key(&server, &viewer, Method::GET, "/v1/admin/flags", None).await.0, StatusCode::OK);
        assert_eq!(as_key(&server, &viewer, Method::GET, "/v1/admin/keys", None).await.0, StatusCode::OK);
        let refused = as_key(&server, &viewer, Method::POST, "/v1/admin/flags", Some(flag.clone())).await;
        assert_eq!(code(&refused), (StatusCode::FORBIDDEN, "forbidden"));
        assert!(refused.1["error"]["message"].as_str().unwrap().contains("needs the editor role"), "{}", refused.1);
        // editor: configuration, not keys or environments.
        assert_eq!(
            as_key(&server, &editor, Method::POST, "/v1/admin/flags", Some(flag.clone())).await.0,
            StatusCode::CREATED
        );
        let refused =
            as_key(&server, &editor, Method::POST, "/v1/admin/keys", Some(json!({"kind": "admin", "name": "x"}))).await;
        assert_eq!(code(&refused), (StatusCode::FORBIDDEN, "forbidden"));
        assert!(refused.1["error"]["message"].as_str().unwrap().contains("needs the owner role"), "{}", refused.1);
        let refused = as_key(&server, &editor, Method::DELETE, "/v1/admin/environments/staging?force=true", None).await;
        assert_eq!(code(&refused), (StatusCode::FORBIDDEN, "forbidden"));
        // A key scoped to staging acts there only.
        let created =
            as_key(&server, &staging_editor, Method::POST, "/v1/admin/flags?env=staging", Some(flag.clone())).await;
        assert_eq!(created.0, StatusCode::CREATED, "{}", created.1);
        let refused = as_key(&server, &staging_editor, Method::GET, "/v1/admin/flags", None).await;
        assert_eq!(code(&refused), (StatusCode::FORBIDDEN, "forbidden"));
        let message = refused.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("may not act in environment \"production\""), "{message}");
        // Bad grants are refused with the field named.
        let answer = server
            .call(Method::POST, "/v1/admin/keys", Some(json!({"kind": "admin", "name": "x", "role": "root"})))
            .await;
        assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{}", answer.1);
        let answer = server
            .call(Method::POST, "/v1/admin/keys", Some(json!({"kind": "server", "name": "x", "role": "viewer"})))
            .await;
        assert_eq!((answer.0, &answer.1["error"]["field"]), (StatusCode::BAD_REQUEST, &json!("role")));
        let body = json!({"kind": "admin", "name": "x", "environments": ["staging", "ghost"]});
        let answer = server.call(Method::POST, "/v1/admin/keys", Some(body)).await;
        assert_eq!(
            (code(&answer), &answer.1["error"]["field"]),
            ((StatusCode::NOT_FOUND, "environment_not_found"), &json!("environments[1]"))
        );
    }
}
