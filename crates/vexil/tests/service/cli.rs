//! `vexil flags import|export` and `vexil keys`, against a running server and directly on its
//! data directory.

use crate::harness::{eventually, vexil, Server, ADMIN_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Runs the CLI and returns (success, stdout, stderr).
pub async fn run(args: &[&str]) -> (bool, String, String) {
    let output = vexil().args(args).output().await.unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

/// [`run`] with the target options (`--server …` or `--data-dir …`) after `args`.
pub async fn run_on(args: &[&str], target: &[&str]) -> (bool, String, String) {
    run(&[args, target].concat()).await
}

const FILE: &str = r#"
flags:
  - key: dark_mode
    enabled: true
    default: {variant: "on"}
  - key: beta_banner
    enabled: true
    rules:
      - id: testers
        when: {segment: testers}
        serve: {variant: "on"}
segments:
  - key: testers
    when: {attr: email, op: ends_with, value: "@example.com"}
"#;

#[tokio::test]
async fn import_through_the_server_is_atomic_and_has_a_dry_run() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.yaml");
    std::fs::write(&file, FILE).unwrap();
    let file = file.to_str().unwrap();
    let remote = ["--server", &server.base, "--key", ADMIN_KEY];

    let (ok, out, err) = run(&[&["flags", "import", file, "--dry-run"][..], &remote].concat()).await;
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["flags"]["created"], json!(["dark_mode", "beta_banner"]));
    assert_eq!(
        server.call(Method::GET, "/v1/admin/flags", None).await.1["flags"],
        json!([]),
        "a dry run changes nothing"
    );

    let (ok, _, err) = run(&[&["flags", "import", file, "--reason", "initial load"][..], &remote].concat()).await;
    assert!(ok, "{err}");
    assert_eq!(server.call(Method::GET, "/v1/admin/flags", None).await.1["flags"].as_array().unwrap().len(), 2);
    let (_, again, _) = run(&[&["flags", "import", file][..], &remote].concat()).await;
    assert_eq!(
        serde_json::from_str::<Value>(&again).unwrap()["flags"]["unchanged"],
        json!(["dark_mode", "beta_banner"])
    );
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=flag&key=dark_mode", None).await;
    assert_eq!(audit["records"][0]["reason"], "initial load");

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, r#"{"flags": [{"key": "fine", "enabled": true},
        {"key": "dark_mode", "enabled": false, "rules": [{"id": "r", "when": {"segment": "ghost"}, "serve": {"variant": "on"}}]}]}"#).unwrap();
    let (ok, _, err) = run(&[&["flags", "import", broken.to_str().unwrap()][..], &remote].concat()).await;
    assert!(!ok);
    assert!(err.contains("ghost"), "{err}");
    let (status, _) = server.call(Method::GET, "/v1/admin/flags/fine", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing of a failed import is stored");
    assert_eq!(server.call(Method::GET, "/v1/admin/flags/dark_mode", None).await.1["enabled"], true);

    let (ok, exported, err) = run(&[&["flags", "export"][..], &remote].concat()).await;
    assert!(ok, "{err}");
    assert!(exported.contains("key: beta_banner") && !exported.contains("version:"), "{exported}");
}

#[tokio::test]
async fn data_dir_mode_reaches_a_running_server_and_keys_work_both_ways() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.yaml");
    std::fs::write(&file, FILE).unwrap();
    let data_dir = server.data_dir.to_str().unwrap().to_string();
    let local = ["--data-dir", data_dir.as_str()];

    let (ok, _, err) = run(&[&["flags", "import", file.to_str().unwrap()][..], &local].concat()).await;
    assert!(ok, "{err}");
    // The server follows the store's revision, so it picks up a change made by another process.
    let result = eventually("the server serving the imported flag", || async {
        let request = server.admin(Method::POST, "/v1/flags/dark_mode/evaluate").json(&json!({"user_id": "u"}));
        let (status, result) = Server::send(request).await;
        (status == StatusCode::OK).then_some(result)
    })
    .await;
    assert_eq!(result["value"], true);
    let (ok, exported, _) = run(&[&["flags", "export", "--format", "json"][..], &local].concat()).await;
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&exported).unwrap()["segments"][0]["key"], "testers");

    let (ok, created, err) =
        run(&[&["keys", "create", "--kind", "client", "--name", "web"][..], &local].concat()).await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&created).unwrap();
    let secret = created["key"].as_str().unwrap();
    let (status, _) = Server::send(
        server.with_key(Method::POST, "/v1/flags/dark_mode/evaluate", secret).json(&json!({"user_id": "u"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a key created on the data directory works at once");

    let remote = ["--server", &server.base, "--key", ADMIN_KEY];
    let (ok, listed, _) = run(&[&["keys", "list"][..], &remote].concat()).await;
    assert!(ok && listed.contains("\"web\"") && !listed.contains(secret), "{listed}");
    let id = created["id"].as_str().unwrap();
    let (ok, _, err) = run(&[&["keys", "revoke", id][..], &remote].concat()).await;
    assert!(ok, "{err}");
    let (status, _) = Server::send(
        server.with_key(Method::POST, "/v1/flags/dark_mode/evaluate", secret).json(&json!({"user_id": "u"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (ok, _, err) = run(&["keys", "list", "--server", &server.base, "--key", "vx_wrong"]).await;
    assert!(!ok && err.contains("401"), "{err}");
}

/// `flags export` wrote `on:`/`off:` bare, which YAML 1.1 readers such as PyYAML read as the
/// booleans True and False. The exported file read by PyYAML must equal the JSON export.
#[tokio::test]
async fn exported_yaml_reads_back_the_same_in_a_yaml_1_1_reader() {
    let Some(python) = vexil_store::testkit::required_variable(
        "VEXIL_TEST_PYYAML",
        "scripts/pyarrow.sh installs PyYAML and prints it",
    ) else {
        return;
    };
    let server = Server::start().await;
    let mut flag = json!({"key": "dark_mode", "enabled": true, "variants": {"on": true, "off": false},
        "default": {"variant": "on"}, "off_variant": "off", "description": "yes",
        "tags": ["on", "off", "yes", "no", "y", "n", "true", "null", "~", "1e3", "0x1f", "12", "1.5", ".inf", "-1"]});
    server.create("flags", flag.take()).await;
    let local = ["--data-dir", server.data_dir.to_str().unwrap()];
    let (ok, yaml, err) = run(&[&["flags", "export"][..], &local].concat()).await;
    assert!(ok, "{err}");
    let (ok, json_text, err) = run(&[&["flags", "export", "--format", "json"][..], &local].concat()).await;
    assert!(ok, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let read = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let output = std::process::Command::new(python).args(["-c", read]).arg(&file).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let from_pyyaml: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(from_pyyaml, serde_json::from_str::<Value>(&json_text).unwrap(), "PyYAML read:\n{yaml}");
}

/// The everyday flag commands, the same through a server and directly on its data directory:
/// list (table, tag filter, JSON), get, set (one flag, checked against the stored segments),
/// toggle (the kill switch, audited with its reason, seen by evaluation) and delete.
#[tokio::test]
async fn everyday_flag_commands_work_through_a_server_and_on_a_data_directory() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let file = write("flags.yaml", FILE);
    let data_dir = server.data_dir.to_str().unwrap().to_string();
    let remote = ["--server", server.base.as_str(), "--key", ADMIN_KEY];
    let local = ["--data-dir", data_dir.as_str()];
    let (ok, _, err) = run(&[&["flags", "import", file.as_str()][..], &remote].concat()).await;
    assert!(ok, "{err}");
    let evaluate = |key: &'static str| {
        let server = &server;
        async move {
            let request =
                server.admin(Method::POST, &format!("/v1/flags/{key}/evaluate")).json(&json!({"user_id": "u"}));
            Server::send(request).await
        }
    };

    for (mode, target) in [("server", &remote[..]), ("data dir", &local[..])] {
        let (ok, table, err) = run_on(&["flags", "list"], target).await;
        assert!(ok, "{mode}: {err}");
        let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[0], ["KEY", "STATE", "VERSION", "TAGS"], "{mode}: {table}");
        assert!(rows.iter().any(|r| r[..2] == ["dark_mode", "on"]), "{mode}: {table}");
        let (_, listed, _) = run_on(&["flags", "list", "--json", "--tag", "none-has-it"], target).await;
        assert_eq!(serde_json::from_str::<Value>(&listed).unwrap(), json!({"flags": []}), "{mode}");

        let (ok, got, err) = run_on(&["flags", "get", "beta_banner"], target).await;
        assert!(ok, "{mode}: {err}");
        let got: Value = serde_json::from_str(&got).unwrap();
        assert_eq!(got["rules"][0]["when"], json!({"segment": "testers"}), "{mode}");

        // One flag that refers to a stored segment is valid on its own terms.
        let flag = format!("{{\"key\": \"greeting_{}\", \"type\": \"string\", \"enabled\": true, \"variants\": {{\"hi\": \"hi\", \"off\": \"\"}}, \"off_variant\": \"off\", \"default\": {{\"variant\": \"off\"}}, \"rules\": [{{\"id\": \"t\", \"when\": {{\"segment\": \"testers\"}}, \"serve\": {{\"variant\": \"hi\"}}}}]}}", mode.len());
        let (ok, stored, err) =
            run_on(&["flags", "set", &write("greeting.json", &flag), "--reason", "new greeting"], target).await;
        assert!(ok, "{mode}: {err}");
        let stored: Value = serde_json::from_str(&stored).unwrap();
        let created = stored["key"].as_str().unwrap();
        assert_eq!(stored["version"], 1, "{mode}: {stored}");
        let ghost = flag.replace("testers", "ghost");
        let (ok, _, err) = run_on(&["flags", "set", &write("ghost.json", &ghost)], target).await;
        assert!(!ok && err.contains("ghost"), "{mode}: an unknown segment is refused: {err}");
        let (_, again, _) = run_on(&["flags", "get", created], target).await;
        assert_eq!(
            serde_json::from_str::<Value>(&again).unwrap()["version"],
            1,
            "{mode}: a refused set stores nothing"
        );

        let (ok, _, err) = run_on(&["flags", "toggle", "dark_mode", "off"], target).await;
        assert!(!ok && err.contains("--reason"), "{mode}: the kill switch needs a reason: {err}");
        let (ok, toggled, err) =
            run_on(&["flags", "toggle", "dark_mode", "off", "--reason", &format!("incident via {mode}")], target).await;
        assert!(ok, "{mode}: {err}");
        assert_eq!(serde_json::from_str::<Value>(&toggled).unwrap()["enabled"], false, "{mode}");
        eventually("evaluation answering DISABLED", || async {
            (evaluate("dark_mode").await.1["reason"] == "DISABLED").then_some(())
        })
        .await;
        let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=flag&key=dark_mode", None).await;
        assert_eq!(audit["records"][0]["reason"], format!("incident via {mode}"), "{mode}: {audit}");
        let (ok, _, err) = run_on(&["flags", "toggle", "dark_mode", "on", "--reason", "over"], target).await;
        assert!(ok, "{mode}: {err}");

        let (ok, _, err) = run_on(&["flags", "delete", created, "--reason", "done"], target).await;
        assert!(ok, "{mode}: {err}");
        let (ok, _, err) = run_on(&["flags", "get", created], target).await;
        assert!(!ok && !err.is_empty(), "{mode}: a deleted flag is gone");
        let (ok, _, err) = run_on(&["flags", "delete", "no_such_flag"], target).await;
        assert!(!ok && err.contains("no_such_flag"), "{mode}: {err}");
    }
    eventually("evaluation answering the flag turned on again", || async {
        (evaluate("dark_mode").await.1["value"] == true).then_some(())
    })
    .await;
}

/// `--env` (or `VEXIL_ENV`) points every command at one environment, through a server and on a
/// data directory alike; `keys create --env` binds a server or client key to it.
#[tokio::test]
async fn commands_act_in_the_environment_named_by_env() {
    let server = Server::start().await;
    let (status, body) = server.call(Method::POST, "/v1/admin/environments", Some(json!({"key": "staging"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("greeting.json");
    std::fs::write(
        &flag,
        r#"{"key": "greeting", "type": "string", "enabled": true, "variants": {"hi": "hi", "off": ""},
        "off_variant": "off", "default": {"variant": "hi"}}"#,
    )
    .unwrap();
    let data_dir = server.data_dir.to_str().unwrap().to_string();
    let remote = ["--server", server.base.as_str(), "--key", ADMIN_KEY, "--env", "staging"];
    let local = ["--data-dir", data_dir.as_str(), "--env", "staging"];

    let (ok, _, err) = run_on(&["flags", "set", flag.to_str().unwrap()], &remote).await;
    assert!(ok, "{err}");
    let (status, _) = server.call(Method::GET, "/v1/admin/flags/greeting", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "production has no such flag");
    let (ok, _, err) = run_on(&["flags", "toggle", "greeting", "off", "--reason", "staging only"], &local).await;
    assert!(ok, "{err}");
    let (_, stored) = server.call(Method::GET, "/v1/admin/flags/greeting?env=staging", None).await;
    assert_eq!(stored["enabled"], false, "{stored}");

    let (ok, created, err) = run_on(&["keys", "create", "--kind", "server", "--name", "staging web"], &local).await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["environment"], "staging", "{created}");
    let result = eventually("staging's flag evaluated with staging's key", || async {
        let request = server
            .with_key(Method::POST, "/v1/flags/greeting/evaluate", created["key"].as_str().unwrap())
            .json(&json!({"user_id": "u"}));
        let (status, result) = Server::send(request).await;
        (status == StatusCode::OK && result["reason"] == "DISABLED").then_some(result)
    })
    .await;
    assert_eq!(result["value"], "");
    let (ok, _, err) = run_on(&["keys", "create", "--kind", "admin", "--name", "ops"], &local).await;
    assert!(!ok && err.contains("environment"), "an admin key takes no --env: {err}");

    for target in [
        &["--server", server.base.as_str(), "--key", ADMIN_KEY, "--env", "qa"][..],
        &["--data-dir", data_dir.as_str(), "--env", "qa"],
    ] {
        let (ok, _, err) = run_on(&["flags", "list"], target).await;
        assert!(!ok && err.contains("\"qa\""), "an unknown environment is named: {err}");
    }
}

#[tokio::test]
async fn environments_are_managed_diffed_and_promoted_from_the_command_line() {
    let server = Server::start().await;
    let remote = ["--server", server.base.as_str(), "--key", ADMIN_KEY];
    let (ok, out, err) = run_on(&["env", "create", "staging", "--name", "Staging"], &remote).await;
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["name"], "Staging");
    let (ok, out, err) = run_on(&["env", "create", "scratch"], &remote).await;
    assert!(ok, "{err}: {out}");
    let (ok, out, _) = run_on(&["env", "list"], &remote).await;
    assert!(ok);
    assert_eq!(out, "production\tProduction\tdefault\nscratch\tscratch\nstaging\tStaging\n");
    let (ok, _, err) = run_on(&["env", "delete", "scratch"], &remote).await;
    assert!(ok, "{err}");
    let (ok, _, err) = run_on(&["env", "delete", "production"], &remote).await;
    assert!(!ok && err.contains("default environment"), "{err}");
    let (ok, _, err) = run(&["env", "list", "--data-dir", "."]).await;
    assert!(!ok && err.contains("--server"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.yaml");
    std::fs::write(&file, FILE).unwrap();
    let staging = [&remote[..], &["--env", "staging"]].concat();
    let (ok, _, err) = run_on(&["flags", "import", file.to_str().unwrap()], &staging).await;
    assert!(ok, "{err}");

    // Everything differs at first; a promotion names what it needs.
    let (ok, out, err) = run_on(&["flags", "diff", "--from", "staging", "--to", "production"], &remote).await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "staging → production:\n+ segment testers (create)\n+ flag beta_banner (create)\n+ flag dark_mode (create)\n"
    );
    let promote = ["flags", "promote", "--from", "staging", "--to", "production"];
    let (ok, _, err) = run_on(&[&promote[..], &["--flag", "beta_banner"]].concat(), &remote).await;
    assert!(!ok && err.contains("segment \"testers\""), "{err}");
    let (ok, out, err) =
        run_on(&[&promote[..], &["--flag", "beta_banner", "--segment", "testers", "--dry-run"]].concat(), &remote)
            .await;
    assert!(ok, "{err}");
    assert!(out.contains("+ flag beta_banner (create)") && !out.contains("promoted"), "{out}");
    let (status, _) = server.call(Method::GET, "/v1/admin/flags/beta_banner", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a dry run applies nothing");
    let (ok, out, err) = run_on(
        &[&promote[..], &["--flag", "beta_banner", "--segment", "testers", "--reason", "ship"]].concat(),
        &remote,
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.ends_with("promoted from staging to production\n"), "{out}");
    let (status, flag) = server.call(Method::GET, "/v1/admin/flags/beta_banner", None).await;
    assert_eq!((status, &flag["version"]), (StatusCode::OK, &json!(1)));

    // A change in staging shows as a field-by-field update, and promotes on the data directory too.
    let (ok, _, err) = run_on(&["flags", "toggle", "beta_banner", "off", "--reason", "pause"], &staging).await;
    assert!(ok, "{err}");
    let (ok, out, _) =
        run_on(&["flags", "diff", "--from", "staging", "--to", "production", "--flag", "beta_banner"], &remote).await;
    assert!(ok);
    assert_eq!(out, "staging → production:\n~ flag beta_banner (update)\n    enabled: true → false\n");
    let data_dir = server.data_dir.to_str().unwrap().to_string();
    let (ok, out, err) = run_on(&[&promote[..], &["--all"]].concat(), &["--data-dir", data_dir.as_str()]).await;
    assert!(ok, "{err}");
    assert!(out.contains("~ flag beta_banner (update)") && out.contains("+ flag dark_mode (create)"), "{out}");
    assert!(out.contains("= segment testers (unchanged)"), "{out}");
    let flag = eventually("the promotion made on the data directory", || async {
        let (_, flag) = server.call(Method::GET, "/v1/admin/flags/beta_banner", None).await;
        (flag["enabled"] == false).then_some(flag)
    })
    .await;
    assert_eq!(flag["version"], 2);

    // In a protected environment an editor's promotion waits for another key's approval.
    let (ok, _, err) = run_on(&["env", "create", "qa", "--protected"], &remote).await;
    assert!(ok, "{err}");
    let mut editors = Vec::new();
    for name in ["author", "reviewer"] {
        let args = ["keys", "create", "--kind", "admin", "--name", name, "--role", "editor"];
        let (ok, out, err) = run_on(&args, &remote).await;
        assert!(ok, "{err}");
        editors.push(serde_json::from_str::<Value>(&out).unwrap()["key"].as_str().unwrap().to_owned());
    }
    let as_editor = |key: &str| vec!["--server".to_owned(), server.base.clone(), "--key".to_owned(), key.to_owned()];
    let author: Vec<String> = as_editor(&editors[0]);
    let author: Vec<&str> = author.iter().map(String::as_str).collect();
    let (ok, out, err) =
        run_on(&["flags", "promote", "--from", "staging", "--to", "qa", "--flag", "dark_mode"], &author).await;
    assert!(ok, "{err}");
    assert!(out.contains("held for approval as change request cr_"), "{out}");
    let (ok, listed, err) = run_on(&["changes", "list", "--status", "pending", "--env", "qa"], &author).await;
    assert!(ok, "{err}");
    let id = listed.split('\t').next().unwrap().to_owned();
    assert!(listed.contains("pending") && listed.contains("create flag dark_mode"), "{listed}");
    let (ok, _, err) = run_on(&["changes", "approve", &id, "--env", "qa"], &author).await;
    assert!(!ok && err.contains("author"), "{err}");
    let reviewer: Vec<String> = as_editor(&editors[1]);
    let reviewer: Vec<&str> = reviewer.iter().map(String::as_str).collect();
    let (ok, out, err) =
        run_on(&["changes", "approve", &id, "--env", "qa", "--reason", "looks right"], &reviewer).await;
    assert!(ok, "{err}");
    assert_eq!(out, format!("change request {id} is approved in qa\n"));
    let (status, _) = server.call(Method::GET, "/v1/admin/flags/dark_mode?env=qa", None).await;
    assert_eq!(status, StatusCode::OK);
}
