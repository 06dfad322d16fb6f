//! Runs a real `vexil serve` process on a loopback port in a temporary data directory, and
//! talks to it over HTTP.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

pub const ADMIN_KEY: &str = "vx_test_admin_key_0123456789";

/// How long a test waits for something a correct server does in well under a second. Tests
/// poll for the condition and never assert elapsed time: the ceiling is generous so a loaded
/// machine cannot fail a correct build, while a broken one still fails, only later.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `probe` every 20 ms until it answers `Some`, and returns that; panics naming `what`
/// once [`PATIENCE`] has run out.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How to start a server.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra command-line arguments after `serve`.
    pub args: Vec<String>,
    /// Environment variables (the test's own environment is not passed on).
    pub env: Vec<(String, String)>,
    /// Leave `VEXIL_ADMIN_KEY` unset, so the server generates and prints a key.
    pub generated_key: bool,
    /// Working directory (for `vexil.toml`); the data directory's parent by default.
    pub cwd: Option<PathBuf>,
    /// The address to listen on; a free loopback port by default.
    pub listen: Option<String>,
}

pub struct Server {
    child: Child,
    pub base: String,
    pub key: String,
    pub data_dir: PathBuf,
    /// Standard output (the printed admin key) and the log lines, as they arrive.
    pub stdout: Arc<Mutex<String>>,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub client: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

pub fn vexil() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vexil"));
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).kill_on_drop(true);
    command
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let mut server = Server::start_in(&data_dir, options).await;
        server._dir = Some(dir);
        server
    }

    /// Starts on an existing data directory (for restarts); the caller keeps the directory.
    pub async fn start_in(data_dir: &Path, options: Options) -> Server {
        let mut command = vexil();
        let listen = options.listen.as_deref().unwrap_or("127.0.0.1:0");
        command.arg("serve").arg("--listen").arg(listen).arg("--data-dir").arg(data_dir);
        command.args(&options.args).current_dir(options.cwd.as_deref().unwrap_or(data_dir.parent().unwrap()));
        if !options.generated_key {
            command.env("VEXIL_ADMIN_KEY", ADMIN_KEY);
        }
        command.envs(options.env.iter().cloned());
        let (child, address, stdout, logs) = spawn_until_listening(command).await.unwrap_or_else(|e| panic!("{e}"));
        let key = if options.generated_key {
            stdout.lock().unwrap().lines().find(|l| l.starts_with("vx_adm_")).unwrap_or_default().to_string()
        } else {
            ADMIN_KEY.to_string()
        };
        let server = Server {
            child,
            base: format!("http://{address}"),
            key,
            data_dir: data_dir.to_path_buf(),
            stdout,
            logs,
            client: reqwest::Client::new(),
            _dir: None,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if let Ok(r) = self.client.get(self.url("/ready")).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not become ready");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the admin key.
    pub fn admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.with_key(method, path, &self.key.clone())
    }

    pub fn with_key(&self, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    /// Sends and returns the status and the JSON body (`Null` when empty).
    pub async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
    }

    /// An admin call with an optional JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.admin(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Server::send(request).await
    }

    /// Creates a flag or segment through the admin API and returns the stored object.
    pub async fn create(&self, collection: &str, body: Value) -> Value {
        let (status, stored) = self.call(Method::POST, &format!("/v1/admin/{collection}"), Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{stored}");
        stored
    }

    /// Creates a key of a kind and returns its secret.
    pub async fn create_key(&self, kind: &str) -> String {
        let body = serde_json::json!({"kind": kind, "name": format!("{kind} key")});
        let (status, created) = self.call(Method::POST, "/v1/admin/keys", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["key"].as_str().unwrap().to_string()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap()
    }

    /// Kills the process with SIGKILL, giving it no chance to flush or shut down.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// Stops with SIGTERM and returns whether the process exited successfully.
    pub async fn stop(mut self) -> bool {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.unwrap().unwrap();
        status.success()
    }
}

type Spawned = (Child, String, Arc<Mutex<String>>, Arc<Mutex<Vec<String>>>);

/// Spawns `command` and reads its JSON logs until the `listening` line, returning the address.
/// Output keeps being collected in the background so the process never blocks on a pipe.
pub async fn spawn_until_listening(mut command: Command) -> Result<Spawned, String> {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stdout = Arc::new(Mutex::new(String::new()));
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut out = child.stdout.take().unwrap();
    let collected = stdout.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf).await {
            if n == 0 {
                break;
            }
            collected.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            logs.lock().unwrap().push(line.clone());
            let parsed: Value = serde_json::from_str(&line).unwrap_or_default();
            if parsed["fields"]["message"] == "listening" {
                return parsed["fields"]["address"].as_str().map(str::to_string);
            }
        }
        None
    })
    .await;
    let Ok(Some(address)) = found else {
        let status = child.wait().await.unwrap();
        return Err(format!("no listening line ({status}); logs:\n{}", logs.lock().unwrap().join("\n")));
    };
    let collected = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            collected.lock().unwrap().push(line);
        }
    });
    // Give the printed key time to arrive before the caller reads stdout.
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok((child, address, stdout, logs))
}

/// A boolean flag with a rule on `country` and a 50 % default rollout.
pub fn checkout_flag() -> Value {
    serde_json::json!({
        "key": "new_checkout", "enabled": true, "tags": ["payments"],
        "rules": [{"id": "us", "when": {"attr": "country", "op": "eq", "value": "US"}, "serve": {"variant": "on"}}],
        "default": {"split": {"on": 1}, "rollout": 50}
    })
}
