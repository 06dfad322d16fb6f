//! Operators cannot lock themselves out or act on nothing: the last active admin key stays,
//! admin commands refuse a data directory that holds no store, a stop that matches no flag
//! says so, and output to a closed pipe ends the command quietly.

use crate::cli::run;
use crate::harness::{checkout_flag, vexil, Server};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::process::Stdio;

#[tokio::test]
async fn the_last_active_admin_key_cannot_be_revoked() {
    let server = Server::start().await;
    let (_, keys) = server.call(Method::GET, "/v1/admin/keys", None).await;
    let first = keys["keys"][0]["id"].as_str().unwrap().to_string();
    let (status, body) = server.call(Method::DELETE, &format!("/v1/admin/keys/{first}"), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("last_admin_key")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("create another admin key"), "{body}");
    assert_eq!(server.call(Method::GET, "/v1/admin/keys", None).await.0, StatusCode::OK, "the key still works");

    let second = server.create_key("admin").await;
    let (status, body) = server.call(Method::DELETE, &format!("/v1/admin/keys/{first}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, keys) = Server::send(server.with_key(Method::GET, "/v1/admin/keys", &second)).await;
    let second_id = keys["keys"].as_array().unwrap().iter().find(|k| k["revoked_at"].is_null()).unwrap()["id"].clone();
    let data_dir = server.data_dir.to_str().unwrap();
    let (ok, _, stderr) = run(&["keys", "revoke", second_id.as_str().unwrap(), "--data-dir", data_dir]).await;
    assert!(!ok && stderr.contains("last active admin key"), "{stderr}");
}

#[tokio::test]
async fn commands_refuse_a_data_directory_without_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("vexil-data");
    let missing = missing.to_str().unwrap();
    for args in [
        &["stop", "--all", "--data-dir", missing][..],
        &["resume", "--data-dir", missing],
        &["flags", "export", "--data-dir", missing],
        &["keys", "list", "--data-dir", missing],
        &["dlq", "list", "--data-dir", missing],
        &["rollout", "status", "new_checkout", "--data-dir", missing],
    ] {
        let (ok, stdout, stderr) = run(args).await;
        assert!(!ok && stderr.contains("is not a vexil data directory"), "{args:?}: {stdout} {stderr}");
        assert!(!std::path::Path::new(missing).exists(), "{args:?} created the directory");
    }
    let (ok, created, stderr) =
        run(&["keys", "create", "--kind", "admin", "--name", "first", "--data-dir", missing]).await;
    assert!(ok, "{stderr}");
    assert!(serde_json::from_str::<Value>(&created).unwrap()["key"].is_string());
    let (ok, _, stderr) = run(&["keys", "list", "--data-dir", missing]).await;
    assert!(ok, "the store keys create made is a data directory: {stderr}");
}

#[tokio::test]
async fn a_stop_matching_no_flag_warns_and_fails() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    let data_dir = server.data_dir.to_str().unwrap();
    let (ok, stdout, stderr) = run(&["stop", "--tag", "paymnts", "--data-dir", data_dir]).await;
    assert!(!ok && stderr.contains("matches no flag"), "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["stopped_flags"], serde_json::json!([]));
    let through_server = ["stop", "--tag", "paymnts", "--server", &server.base, "--key", &server.key];
    let (ok, _, stderr) = run(&through_server).await;
    assert!(!ok && stderr.contains("matches no flag"), "{stderr}");
    let (ok, _, stderr) = run(&["stop", "--tag", "payments", "--data-dir", data_dir]).await;
    assert!(ok, "{stderr}");
}

#[tokio::test]
async fn output_to_a_closed_pipe_ends_quietly() {
    let server = Server::start().await;
    for i in 0..200 {
        let mut flag = checkout_flag();
        flag["key"] = format!("flag_{i}").into();
        server.create("flags", flag).await;
    }
    let mut child = vexil()
        .args(["flags", "export", "--data-dir", server.data_dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command writes, as `| head -5` does once it has its lines.
    drop(child.stdout.take());
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked") && stderr.is_empty(), "{stderr}");
    assert!(output.status.success(), "{:?}", output.status);
}
