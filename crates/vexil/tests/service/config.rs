//! Configuration precedence (file < environment < flags) and failing fast on bad settings.

use crate::harness::{spawn_until_listening, vexil, Options, Server};
use std::time::Duration;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vexil.toml"), "max_body_bytes = 4096\nlog_level = \"debug\"\nworkers = 1\n")
        .unwrap();
    let data = dir.path().join("data");
    // Padding in strings of 1,000 bytes, within the bound on one context string.
    let body =
        |size: usize| serde_json::json!({"user_id": "u", "context": {"pad": vec!["x".repeat(1000); size / 1000]}});
    let status_for = |server: &Server, size: usize| {
        let request = server.admin(reqwest::Method::POST, "/v1/evaluate").json(&body(size));
        async move { request.send().await.unwrap().status().as_u16() }
    };

    let from_file = Server::start_in(&data, Options { cwd: Some(dir.path().into()), ..Options::default() }).await;
    assert_eq!(status_for(&from_file, 6000).await, 413, "the file's limit applies");
    assert!(
        from_file.logs.lock().unwrap().iter().any(|l| l.contains("\"answered\"") && l.contains("request_id")),
        "log_level = debug from the file turns access logs on, with the request id"
    );
    assert!(from_file.stop().await);

    let options =
        Options { cwd: Some(dir.path().into()), env: env(&[("VEXIL_MAX_BODY_BYTES", "8192")]), ..Options::default() };
    let from_env = Server::start_in(&data, options.clone()).await;
    assert_eq!(status_for(&from_env, 6000).await, 200, "the environment overrides the file");
    assert_eq!(status_for(&from_env, 10000).await, 413);
    assert!(from_env.stop().await);

    let options = Options { args: vec!["--max-body-bytes".into(), "65536".into()], ..options };
    let from_flag = Server::start_in(&data, options).await;
    assert_eq!(status_for(&from_flag, 10000).await, 200, "a flag overrides the environment");
}

/// Arguments, environment, and a part of the expected message.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test]
async fn bad_configuration_fails_fast_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(&bad_file, "listn = \"127.0.0.1:1\"\n").unwrap();
    let cases: [Case; 6] = [
        (vec!["--config", bad_file.to_str().unwrap()], vec![], "unknown field"),
        (vec!["--archive-format", "csv"], vec![], "archive_format: \"csv\" is neither jsonl nor parquet"),
        (vec!["--config", "/nonexistent/vexil.toml"], vec![], "cannot read the configuration file"),
        (vec![], vec![("VEXIL_WORKERS", "many")], "VEXIL_WORKERS"),
        (vec!["--listen", "localhost"], vec![], "listen"),
        (vec![], vec![("VEXIL_LOG_FORMAT", "xml")], "log_format"),
    ];
    for (args, vars, needle) in cases {
        let mut command = vexil();
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(&args)
            .envs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let output =
            tokio::time::timeout(Duration::from_secs(10), command.output()).await.expect("fails fast").unwrap();
        assert!(!output.status.success(), "{args:?} {vars:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{needle} not in {stderr}");
    }
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut command = vexil();
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(occupied.local_addr().unwrap().to_string());
    let Err(error) = spawn_until_listening(command).await else { panic!("a taken port is an error") };
    assert!(error.contains("cannot listen"), "{error}");
}
