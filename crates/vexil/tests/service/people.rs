//! People and sessions (SPEC 9): users managed by owners, sign-in with a session cookie, the
//! CSRF header on cookie-authenticated writes, sign-out, throttling, and `vexil users`.

use crate::harness::{checkout_flag, vexil, Options, Server, ADMIN_KEY};
use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const PASSWORD: &str = "correct horse battery staple";

/// A signed-in person: the cookie to send and the CSRF token of the session.
pub struct Person {
    pub cookie: String,
    pub csrf: String,
}

impl Person {
    /// A request with the session cookie only.
    pub fn request(&self, server: &Server, method: Method, path: &str) -> RequestBuilder {
        server.client.request(method, server.url(path)).header(COOKIE, &self.cookie)
    }

    /// A request with the session cookie and the CSRF header.
    pub fn write(&self, server: &Server, method: Method, path: &str) -> RequestBuilder {
        self.request(server, method, path).header("x-csrf-token", &self.csrf)
    }
}

/// Creates a user with the admin key and returns what the server answered.
pub async fn create_user(server: &Server, username: &str, role: &str, environments: Value) -> Value {
    let body = json!({"username": username, "password": PASSWORD, "role": role, "environments": environments});
    let (status, user) = server.call(Method::POST, "/v1/admin/users", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    user
}

/// `POST /v1/session`: the status, body and headers.
pub async fn sign_in_as(server: &Server, username: &str, password: &str) -> (StatusCode, Value, HeaderMap) {
    let request =
        server.client.post(server.url("/v1/session")).json(&json!({"username": username, "password": password}));
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), headers)
}

/// The `name=value` of the session cookie the answer sets.
fn session_cookie(headers: &HeaderMap) -> String {
    let set = headers.get(SET_COOKIE).expect("a Set-Cookie header").to_str().unwrap();
    set.split(';').next().unwrap().trim().to_owned()
}

/// Signs in with the test password and returns the person.
pub async fn sign_in(server: &Server, username: &str) -> Person {
    let (status, session, headers) = sign_in_as(server, username, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    Person { cookie: session_cookie(&headers), csrf: session["csrf_token"].as_str().unwrap().to_owned() }
}

#[tokio::test]
async fn a_person_signs_in_acts_as_their_role_and_signs_out() {
    let server = Server::start().await;
    let created = create_user(&server, "alice", "owner", Value::Null).await;
    assert_eq!(created["username"], "alice");
    assert_eq!(
        (&created["role"], &created["environments"], &created["disabled"]),
        (&json!("owner"), &Value::Null, &json!(false))
    );
    assert!(created["created_at"].is_string());
    assert_eq!(created.as_object().unwrap().len(), 5, "exactly the user's fields: {created}");

    let (status, session, headers) = sign_in_as(&server, "alice", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let csrf = session["csrf_token"].as_str().unwrap().to_owned();
    assert!(csrf.len() >= 20, "{csrf}");
    assert_eq!(session, json!({"username": "alice", "role": "owner", "environments": null, "csrf_token": csrf}));
    let set_cookie = headers.get(SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    let attributes: Vec<String> = set_cookie.split(';').map(|a| a.trim().to_ascii_lowercase()).collect();
    assert!(attributes[0].starts_with("vexil_session=") && attributes[0].len() > "vexil_session=".len() + 30);
    for wanted in ["httponly", "samesite=strict", "path=/"] {
        assert!(attributes.iter().any(|a| a == wanted), "{wanted} in {set_cookie}");
    }
    assert!(!attributes.iter().any(|a| a == "secure"), "no Secure over plain HTTP: {set_cookie}");
    let alice = Person { cookie: session_cookie(&headers), csrf };

    // The console restores its session on load.
    let (status, restored) = Server::send(alice.request(&server, Method::GET, "/v1/session")).await;
    assert_eq!((status, &restored), (StatusCode::OK, &session));

    // Reads need the cookie only; writes need the CSRF header too.
    let (status, flags) = Server::send(alice.request(&server, Method::GET, "/v1/admin/flags")).await;
    assert_eq!((status, &flags["flags"]), (StatusCode::OK, &json!([])));
    let (status, refused) =
        Server::send(alice.request(&server, Method::POST, "/v1/admin/flags").json(&checkout_flag())).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("csrf_required")), "{refused}");
    let wrong = alice.request(&server, Method::POST, "/v1/admin/flags").header("x-csrf-token", "not-the-token");
    let (status, refused) = Server::send(wrong.json(&checkout_flag())).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("csrf_required")));
    let (status, flag) =
        Server::send(alice.write(&server, Method::POST, "/v1/admin/flags").json(&checkout_flag())).await;
    assert_eq!(status, StatusCode::CREATED, "{flag}");

    // The audit log names the person.
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=flag&key=new_checkout", None).await;
    assert_eq!(audit["records"][0]["actor"], "user:alice");

    // An admin key keeps working beside a cookie, without the CSRF header.
    let with_both = server.admin(Method::PUT, "/v1/admin/flags/new_checkout").header(COOKIE, &alice.cookie);
    let (status, _) = Server::send(with_both.json(&checkout_flag())).await;
    assert_eq!(status, StatusCode::OK);

    // Sign-out needs the CSRF header, ends the session on the server and clears the cookie.
    let (status, refused) = Server::send(alice.request(&server, Method::DELETE, "/v1/session")).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("csrf_required")));
    let response = alice.write(&server, Method::DELETE, "/v1/session").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cleared = response.headers().get(SET_COOKIE).unwrap().to_str().unwrap().to_ascii_lowercase();
    assert!(cleared.starts_with("vexil_session=;") && cleared.contains("max-age=0"), "{cleared}");
    let (status, gone) = Server::send(alice.request(&server, Method::GET, "/v1/session")).await;
    assert_eq!((status, &gone["error"]["code"]), (StatusCode::UNAUTHORIZED, &json!("unauthenticated")));
    let (status, _) = Server::send(alice.request(&server, Method::GET, "/v1/admin/flags")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old cookie no longer works");
    let (status, _) = Server::send(alice.write(&server, Method::DELETE, "/v1/session")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_passwords_and_unknown_people_get_one_answer() {
    let server = Server::start().await;
    create_user(&server, "alice", "viewer", Value::Null).await;
    for (username, password) in [("alice", "not the password"), ("nobody", PASSWORD), ("ALICE", PASSWORD)] {
        let (status, refused, headers) = sign_in_as(&server, username, password).await;
        assert_eq!(
            (status, &refused["error"]["code"], &refused["error"]["message"]),
            (StatusCode::UNAUTHORIZED, &json!("invalid_credentials"), &json!("wrong username or password")),
            "{username}"
        );
        assert!(headers.get(SET_COOKIE).is_none());
    }
    let (status, refused) = Server::send(server.client.get(server.url("/v1/session"))).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::UNAUTHORIZED, &json!("unauthenticated")));
    let bogus = server.client.get(server.url("/v1/admin/flags")).header(COOKIE, "vexil_session=made-up");
    assert_eq!(Server::send(bogus).await.0, StatusCode::UNAUTHORIZED);
    let (status, refused, _) = sign_in_as(&server, "", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    let (status, refused) =
        Server::send(server.client.post(server.url("/v1/session")).json(&json!({"username": "alice"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
}

#[tokio::test]
async fn owners_manage_people_and_bad_input_names_the_field() {
    let server = Server::start().await;
    let bad: [(Value, StatusCode, &str); 6] = [
        (json!({"username": "Alice", "password": PASSWORD, "role": "owner"}), StatusCode::BAD_REQUEST, "username"),
        (json!({"username": "alice", "password": "short", "role": "owner"}), StatusCode::BAD_REQUEST, "password"),
        (
            json!({"username": "alice", "password": PASSWORD, "role": "owner", "environments": []}),
            StatusCode::BAD_REQUEST,
            "environments",
        ),
        (
            json!({"username": "alice", "password": PASSWORD, "role": "owner", "environments": ["nowhere"]}),
            StatusCode::NOT_FOUND,
            "environments[0]",
        ),
        (json!({"username": "alice", "password": PASSWORD, "role": "admin"}), StatusCode::BAD_REQUEST, ""),
        (json!({"username": "alice", "password": PASSWORD}), StatusCode::BAD_REQUEST, ""),
    ];
    for (body, status, field) in bad {
        let (got, error) = server.call(Method::POST, "/v1/admin/users", Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {error}");
        if !field.is_empty() {
            assert_eq!(error["error"]["field"], field, "{body}: {error}");
        }
    }
    let bob = create_user(&server, "bob", "editor", json!(["production"])).await;
    let (status, again) = server
        .call(Method::POST, "/v1/admin/users", Some(json!({"username": "bob", "password": PASSWORD, "role": "viewer"})))
        .await;
    assert_eq!(
        (status, &again["error"]["code"], &again["error"]["field"]),
        (StatusCode::CONFLICT, &json!("already_exists"), &json!("username"))
    );
    let (status, list) = server.call(Method::GET, "/v1/admin/users", None).await;
    assert_eq!((status, &list), (StatusCode::OK, &json!({"users": [bob.clone()]})));

    let (status, changed) =
        server.call(Method::PUT, "/v1/admin/users/bob", Some(json!({"role": "viewer", "environments": null}))).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!((&changed["role"], &changed["environments"]), (&json!("viewer"), &Value::Null));
    let (status, error) = server.call(Method::PUT, "/v1/admin/users/bob", Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (status, error) = server.call(Method::PUT, "/v1/admin/users/carol", Some(json!({"disabled": true}))).await;
    assert_eq!((status, &error["error"]["code"]), (StatusCode::NOT_FOUND, &json!("user_not_found")));
    let (status, error) = server.call(Method::PUT, "/v1/admin/users/bob", Some(json!({"password": "short"}))).await;
    assert_eq!((status, &error["error"]["field"]), (StatusCode::BAD_REQUEST, &json!("password")));

    // Only owners see or change people; an editor's key or session gets 403.
    let editor = {
        let body = json!({"kind": "admin", "name": "editor", "role": "editor"});
        server.call(Method::POST, "/v1/admin/keys", Some(body)).await.1["key"].as_str().unwrap().to_owned()
    };
    for (method, path, body) in [
        (Method::GET, "/v1/admin/users", Value::Null),
        (Method::POST, "/v1/admin/users", json!({"username": "eve", "password": PASSWORD, "role": "owner"})),
        (Method::PUT, "/v1/admin/users/bob", json!({"role": "owner"})),
    ] {
        let (status, error) = Server::send(server.with_key(method.clone(), path, &editor).json(&body)).await;
        assert_eq!((status, &error["error"]["code"]), (StatusCode::FORBIDDEN, &json!("forbidden")), "{method} {path}");
    }
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=user", None).await;
    let actions: Vec<(&str, &str)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["key"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, [("update", "bob"), ("create", "bob")], "failed changes are not audited");
    assert!(!audit.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Server::start_in(&data, Options::default()).await;
    create_user(&first, "alice", "owner", Value::Null).await;
    let alice = sign_in(&first, "alice").await;
    assert!(first.stop().await);
    let second = Server::start_in(&data, Options::default()).await;
    let (status, session) = Server::send(alice.request(&second, Method::GET, "/v1/session")).await;
    assert_eq!((status, &session["csrf_token"]), (StatusCode::OK, &json!(alice.csrf)));
    let (status, _) = Server::send(alice.write(&second, Method::POST, "/v1/admin/flags").json(&checkout_flag())).await;
    assert_eq!(status, StatusCode::CREATED);
}

/// Runs the CLI with `stdin` as its standard input; returns (success, stdout, stderr).
async fn run_with_input(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = vexil()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).await.unwrap();
    let output = child.wait_with_output().await.unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

#[tokio::test]
async fn the_cli_creates_lists_and_disables_people_through_a_server_or_a_data_directory() {
    let server = Server::start().await;
    let remote = ["--server", &server.base, "--key", ADMIN_KEY];
    let create =
        |username: &'static str| ["users", "create", "--username", username, "--role", "owner", "--password-stdin"];

    let (ok, out, err) = run_with_input(&[&create("alice")[..], &remote].concat(), &format!("{PASSWORD}\n")).await;
    assert!(ok, "{err}");
    let alice: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((&alice["username"], &alice["role"]), (&json!("alice"), &json!("owner")));
    assert!(!out.contains(PASSWORD));
    sign_in(&server, "alice").await;

    // On the data directory, beside the running server.
    let data_dir = server.data_dir.to_str().unwrap();
    let local = ["--data-dir", data_dir];
    let (ok, _, err) = run_with_input(
        &[
            &[
                "users",
                "create",
                "--username",
                "bob",
                "--role",
                "editor",
                "--environments",
                "production",
                "--password-stdin",
            ][..],
            &local,
        ]
        .concat(),
        &format!("{PASSWORD}\r\n"),
    )
    .await;
    assert!(ok, "{err}");
    let bob = sign_in(&server, "bob").await;
    let (_, session) = Server::send(bob.request(&server, Method::GET, "/v1/session")).await;
    assert_eq!((&session["role"], &session["environments"]), (&json!("editor"), &json!(["production"])));

    // Without a terminal and without --password-stdin there is no way to ask: refused.
    let (ok, _, err) =
        run_with_input(&[&["users", "create", "--username", "carol", "--role", "viewer"][..], &remote].concat(), "")
            .await;
    assert!(!ok && err.contains("--password-stdin"), "{err}");
    let (ok, _, err) = run_with_input(&[&create("dave")[..], &remote].concat(), "short\n").await;
    assert!(!ok && err.contains("password"), "{err}");

    for target in [&remote[..], &local[..]] {
        let (ok, out, err) = run_with_input(&[&["users", "list"][..], target].concat(), "").await;
        assert!(ok, "{err}");
        let listed: Value = serde_json::from_str(&out).unwrap();
        let names: Vec<&str> =
            listed["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
        assert_eq!(names, ["alice", "bob"]);
    }
    let (ok, out, err) = run_with_input(&[&["users", "disable", "bob"][..], &remote].concat(), "").await;
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["disabled"], true);
    let (status, _) = Server::send(bob.request(&server, Method::GET, "/v1/session")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a disabled person's session ends at once");
    let (status, _, _) = sign_in_as(&server, "bob", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "and they cannot sign in");
    let (ok, _, err) = run_with_input(&[&["users", "disable", "alice"][..], &local].concat(), "").await;
    assert!(ok, "{err}");
    let (status, _, _) = sign_in_as(&server, "alice", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Operations of the OpenAPI document a session cookie may call, event streams aside:
/// (method, path).
async fn cookie_operations(server: &Server) -> Vec<(String, String)> {
    let (_, openapi) = Server::send(server.client.get(server.url("/openapi.json"))).await;
    let mut operations = Vec::new();
    for (path, methods) in openapi["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let security = operation["security"].as_array().unwrap();
            // Event streams never end, so their answer cannot be read whole.
            let streams = operation["responses"]["200"]["content"].get("text/event-stream").is_some();
            if security.iter().any(|scheme| scheme.get("session").is_some()) && !streams {
                operations.push((method.clone(), path.clone()));
            }
        }
    }
    operations
}

/// A concrete URI for a path of the document.
fn concrete(path: &str) -> String {
    path.replace("{key}", "new_checkout")
        .replace("{id}", "some_id")
        .replace("{env}", "production")
        .replace("{action}", "start")
        .replace("{username}", "alice")
}

#[tokio::test]
async fn every_cookie_write_without_the_csrf_token_is_refused_and_nothing_answers_without_credentials() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    create_user(&server, "alice", "owner", Value::Null).await;
    let alice = sign_in(&server, "alice").await;
    let operations = cookie_operations(&server).await;
    let writes: Vec<&(String, String)> = operations
        .iter()
        .filter(|(method, _)| matches!(method.as_str(), "post" | "put" | "patch" | "delete"))
        .collect();
    assert!(writes.len() > 30, "{} cookie writes in the document", writes.len());
    for (method, path) in &operations {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let uri = concrete(path);
        let writing = method != Method::GET;
        for token in [None, Some("wrong-token")] {
            let mut request = alice.request(&server, method.clone(), &uri).json(&json!({}));
            if let Some(token) = token {
                request = request.header("x-csrf-token", token);
            }
            let (status, answer) = Server::send(request).await;
            let refused = (status, answer["error"]["code"].as_str()) == (StatusCode::FORBIDDEN, Some("csrf_required"));
            assert_eq!(refused, writing, "{method} {uri} with {token:?}: {status} {answer}");
        }
        // Neither a key nor a session: 401 on every operation that takes them, reads included.
        if path.starts_with("/v1/admin/") || path.starts_with("/v1/session") {
            let (status, answer) =
                Server::send(server.client.request(method.clone(), server.url(&uri)).json(&json!({}))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} without credentials: {answer}");
        }
    }
    // The session still works and nothing was changed by the refused writes.
    let (status, flag) = Server::send(alice.request(&server, Method::GET, "/v1/admin/flags/new_checkout")).await;
    assert_eq!((status, &flag["version"]), (StatusCode::OK, &json!(1)));
    let (_, users) = server.call(Method::GET, "/v1/admin/users", None).await;
    assert_eq!(users["users"][0]["disabled"], false);
}

#[tokio::test]
async fn a_session_acts_only_within_the_persons_role_and_environments_as_they_change() {
    let server = Server::start().await;
    crate::environments::create_environment(&server, "staging").await;
    create_user(&server, "vera", "viewer", Value::Null).await;
    create_user(&server, "ed", "editor", json!(["staging"])).await;
    let vera = sign_in(&server, "vera").await;
    let ed = sign_in(&server, "ed").await;

    let (status, _) = Server::send(vera.request(&server, Method::GET, "/v1/admin/flags?env=staging")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) =
        Server::send(vera.write(&server, Method::POST, "/v1/admin/flags?env=staging").json(&checkout_flag())).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("forbidden")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("this person has the viewer role"), "{refused}");

    let (status, _) =
        Server::send(ed.write(&server, Method::POST, "/v1/admin/flags?env=staging").json(&checkout_flag())).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, refused) =
        Server::send(ed.write(&server, Method::POST, "/v1/admin/flags").json(&checkout_flag())).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("forbidden")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("\"production\""), "{refused}");
    let (status, _) = Server::send(ed.request(&server, Method::GET, "/v1/admin/keys")).await;
    assert_eq!(status, StatusCode::OK, "an editor reads keys");
    let body = json!({"kind": "admin", "name": "mine", "role": "owner"});
    let (status, _) = Server::send(ed.write(&server, Method::POST, "/v1/admin/keys").json(&body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "but makes none");

    // A change of role or scope applies to the live session at its next request.
    let (status, _) = server.call(Method::PUT, "/v1/admin/users/vera", Some(json!({"role": "editor"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, created) = Server::send(
        vera.write(&server, Method::PUT, "/v1/admin/flags/new_checkout?env=staging").json(&checkout_flag()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let (_, session) = Server::send(vera.request(&server, Method::GET, "/v1/session")).await;
    assert_eq!(session["role"], "editor");
    let (status, _) =
        server.call(Method::PUT, "/v1/admin/users/ed", Some(json!({"environments": ["production"]}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = Server::send(ed.write(&server, Method::DELETE, "/v1/admin/flags/new_checkout?env=staging")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "staging is no longer ed's");
    let (status, _) = Server::send(ed.write(&server, Method::POST, "/v1/admin/flags").json(&checkout_flag())).await;
    assert_eq!(status, StatusCode::CREATED, "production is");

    // A new password ends the person's sessions; the new one works, the old one no longer.
    let (status, _) =
        server.call(Method::PUT, "/v1/admin/users/ed", Some(json!({"password": "a brand new passphrase"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(Server::send(ed.request(&server, Method::GET, "/v1/session")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(sign_in_as(&server, "ed", PASSWORD).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(sign_in_as(&server, "ed", "a brand new passphrase").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_persons_change_request_is_approved_by_another_person_never_its_author() {
    for backend in crate::environments::backends().await {
        let server = backend.start().await;
        crate::environments::create_environment(&server, "staging").await;
        let staging = |path: &str| format!("{path}?env=staging");
        let (status, _) =
            Server::send(server.admin(Method::POST, &staging("/v1/admin/flags")).json(&checkout_flag())).await;
        assert_eq!(status, StatusCode::CREATED);
        let protect = json!({"key": "staging", "protected": true});
        assert_eq!(server.call(Method::PUT, "/v1/admin/environments/staging", Some(protect)).await.0, StatusCode::OK);
        create_user(&server, "ann", "editor", json!(["staging"])).await;
        create_user(&server, "ben", "editor", json!(["staging"])).await;
        let (ann, ben) = (sign_in(&server, "ann").await, sign_in(&server, "ben").await);

        let mut changed = checkout_flag();
        changed["default"]["rollout"] = json!(80);
        let flag = staging("/v1/admin/flags/new_checkout");
        let (status, held) = Server::send(ann.write(&server, Method::PUT, &flag).json(&changed)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{held}");
        assert_eq!(held["change_request"]["author"], "user:ann");
        let approve =
            staging(&format!("/v1/admin/change-requests/{}/approve", held["change_request"]["id"].as_str().unwrap()));
        let (status, refused) = Server::send(ann.write(&server, Method::POST, &approve)).await;
        assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("forbidden")), "{refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("author"), "{refused}");
        let (_, unchanged) = Server::send(server.admin(Method::GET, &flag)).await;
        assert_eq!(unchanged["default"]["rollout"], 50, "the author's own approval applied nothing");
        let (status, approved) = Server::send(ben.write(&server, Method::POST, &approve)).await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        assert_eq!((&approved["status"], &approved["decided_by"]), (&json!("approved"), &json!("user:ben")));
        let (_, applied) = Server::send(server.admin(Method::GET, &flag)).await;
        assert_eq!(applied["default"]["rollout"], 80);
        let (_, audit) =
            server.call(Method::GET, "/v1/admin/audit?entity=flag&key=new_checkout&env=staging", None).await;
        assert_eq!(audit["records"][0]["actor"], "user:ben");
        assert!(audit["records"][0]["reason"].as_str().unwrap().contains("by user:ann"), "{audit}");
    }
}

#[tokio::test]
async fn passwords_never_appear_in_answers_the_audit_log_or_the_service_log() {
    let options = Options { env: vec![("VEXIL_LOG_LEVEL".into(), "debug".into())], ..Options::default() };
    let server = Server::start_with(options).await;
    let (first, second, wrong) = ("first-secret-passphrase", "second-secret-passphrase", "wrong-secret-passphrase");
    let mut answers = Vec::new();
    let body = json!({"username": "alice", "password": first, "role": "owner"});
    answers.push(server.call(Method::POST, "/v1/admin/users", Some(body)).await.1);
    answers.push(sign_in_as(&server, "alice", wrong).await.1);
    let (status, session, _) = sign_in_as(&server, "alice", first).await;
    assert_eq!(status, StatusCode::OK);
    answers.push(session);
    answers.push(server.call(Method::PUT, "/v1/admin/users/alice", Some(json!({"password": second}))).await.1);
    answers.push(server.call(Method::PUT, "/v1/admin/users/alice", Some(json!({"password": "short"}))).await.1);
    let (status, session, _) = sign_in_as(&server, "alice", second).await;
    assert_eq!(status, StatusCode::OK);
    answers.push(session);
    answers.push(server.call(Method::GET, "/v1/admin/users", None).await.1);
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit", None).await;
    assert!(audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["entity"] == "user" && r["after"]["password_changed"] == true));
    answers.push(audit);
    let logs = server.logs.lock().unwrap().join("\n");
    assert!(logs.contains("signed in") && logs.contains("alice"), "the check must see the log: {logs}");
    for password in [first, second, wrong, "short"] {
        for answer in &answers {
            assert!(!answer.to_string().contains(password), "{password} in {answer}");
        }
        assert!(!logs.contains(password), "{password} in the log");
    }
    for answer in &answers {
        assert!(!answer.to_string().contains("argon2"), "a password hash in {answer}");
    }
}

#[tokio::test]
async fn sign_in_is_throttled_per_username_and_per_address_and_a_success_resets_it() {
    let env = [
        ("VEXIL_LOGIN_MAX_FAILURES", "3"),
        ("VEXIL_LOGIN_MAX_FAILURES_PER_ADDRESS", "5"),
        ("VEXIL_TRUST_FORWARDED_HEADERS", "true"),
    ];
    let options =
        Options { env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..Options::default() };
    let server = Server::start_with(options).await;
    for name in ["alice", "bob"] {
        create_user(&server, name, "viewer", Value::Null).await;
    }
    let attempt = |username: &str, password: &str, address: &str| {
        let body = json!({"username": username, "password": password});
        server
            .client
            .post(server.url("/v1/session"))
            .header("x-forwarded-for", format!("{address}, 10.0.0.1"))
            .json(&body)
    };
    let status_of = |request: RequestBuilder| async move { request.send().await.unwrap().status() };

    // Three failures of alice's, from three addresses: the fourth attempt is refused, even with
    // the right password, and says when to retry.
    for address in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        assert_eq!(status_of(attempt("alice", "wrong password", address)).await, StatusCode::UNAUTHORIZED);
    }
    let response = attempt("alice", PASSWORD, "192.0.2.4").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_attempts");

    // bob: two failures, a success, two failures, a success: never refused, as the success
    // clears the count (without that the fifth attempt would be).
    for (password, expected) in [
        ("wrong password", StatusCode::UNAUTHORIZED),
        ("wrong password", StatusCode::UNAUTHORIZED),
        (PASSWORD, StatusCode::OK),
        ("wrong password", StatusCode::UNAUTHORIZED),
        ("wrong password", StatusCode::UNAUTHORIZED),
        (PASSWORD, StatusCode::OK),
    ] {
        assert_eq!(status_of(attempt("bob", password, "198.51.100.1")).await, expected);
    }

    // Five failures from one address, each for another username: that address is refused,
    // another is not.
    for n in 0..5 {
        assert_eq!(status_of(attempt(&format!("nobody{n}"), "guess", "203.0.113.9")).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(status_of(attempt("bob", PASSWORD, "203.0.113.9")).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(status_of(attempt("bob", PASSWORD, "203.0.113.10")).await, StatusCode::OK);
}

#[tokio::test]
async fn the_cookie_is_secure_when_the_request_came_over_tls() {
    let cookie_of = |headers: &HeaderMap| headers.get(SET_COOKIE).unwrap().to_str().unwrap().to_ascii_lowercase();
    let secure = |cookie: &str| cookie.split(';').any(|a| a.trim() == "secure");
    let env = vec![("VEXIL_TRUST_FORWARDED_HEADERS".into(), "true".into())];
    let proxied = Server::start_with(Options { env, ..Options::default() }).await;
    create_user(&proxied, "alice", "viewer", Value::Null).await;
    let body = json!({"username": "alice", "password": PASSWORD});
    let over_tls = proxied.client.post(proxied.url("/v1/session")).header("x-forwarded-proto", "https").json(&body);
    let response = over_tls.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(secure(&cookie_of(response.headers())), "{}", cookie_of(response.headers()));
    let (_, _, headers) = sign_in_as(&proxied, "alice", PASSWORD).await;
    assert!(!secure(&cookie_of(&headers)), "plain HTTP: {}", cookie_of(&headers));

    // Without trusting the proxy, its header is ignored; the switch marks every cookie Secure.
    let untrusting = Server::start().await;
    create_user(&untrusting, "alice", "viewer", Value::Null).await;
    let over_tls =
        untrusting.client.post(untrusting.url("/v1/session")).header("x-forwarded-proto", "https").json(&body);
    assert!(!secure(&cookie_of(over_tls.send().await.unwrap().headers())));
    let env = vec![("VEXIL_SESSION_COOKIE_SECURE".into(), "true".into())];
    let switched = Server::start_with(Options { env, ..Options::default() }).await;
    create_user(&switched, "alice", "viewer", Value::Null).await;
    let (_, _, headers) = sign_in_as(&switched, "alice", PASSWORD).await;
    assert!(secure(&cookie_of(&headers)), "{}", cookie_of(&headers));
}
