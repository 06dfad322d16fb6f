//! `vexil-floor`: the floor of `POST /v1/flags/{key}/evaluate`, for benchmarks only.
//!
//! A bare axum server on the same axum, tokio and allocator as `vexil serve`, answering
//! `POST /v1/flags/{key}/evaluate`: it parses the same body (`{"user_id", "context"}` JSON into
//! serde_json values) and answers a fixed result of the same shape as vexil's evaluation result,
//! with the path's flag key and the body's user id. No auth, metrics, tracking, request ids or
//! other layers: the throughput of this server is the ceiling for vexil's per-request overhead
//! (`scripts/bench/floor.sh` compares the two).
//!
//! Usage: `vexil-floor [--listen ADDR] [--workers N]` (defaults 127.0.0.1:0 and one worker per
//! CPU, as `vexil serve`). Once bound it writes one JSON line to stderr with the address, in the
//! shape of vexil's `listening` log line.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::SocketAddr;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The body of vexil's evaluate route (`EvaluateRequest` in crates/vexil-server).
#[derive(Deserialize)]
struct EvaluateRequest {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    context: Option<Value>,
}

/// The shape of vexil's evaluation result (`EvaluationRecord` in crates/vexil-core).
#[derive(Serialize)]
struct Record<'a> {
    flag_key: &'a str,
    flag_id: Option<&'a str>,
    flag_version: Option<u64>,
    user_id: &'a str,
    value: &'a Value,
    variant: &'a str,
    reason: &'a str,
    rule_id: Option<&'a str>,
    enabled: bool,
}

async fn evaluate(Path(key): Path<String>, body: Bytes) -> Response {
    let request: EvaluateRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let Some(Value::String(user_id)) = &request.user_id else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    Json(Record {
        flag_key: &key,
        flag_id: Some("0194f3a2-7c1e-7d3a-9a4b-5b6c7d8e9f00"),
        flag_version: Some(1),
        user_id,
        value: &Value::Bool(true),
        variant: "on",
        reason: "TARGETING_MATCH",
        rule_id: Some("us_pro"),
        enabled: true,
    })
    .into_response()
}

fn main() -> Result<(), String> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
    let mut workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--listen" => listen = value.parse().map_err(|e| format!("--listen {value}: {e}"))?,
            "--workers" => workers = value.parse().map_err(|e| format!("--workers {value}: {e}"))?,
            _ => return Err(format!("unknown argument {arg} (usage: vexil-floor [--listen ADDR] [--workers N])")),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!(r#"{{"message":"listening","address":"{address}","workers":{workers}}}"#);
        let app = Router::new().route("/v1/flags/{key}/evaluate", post(evaluate));
        axum::serve(listener, app).await.map_err(|e| format!("the server failed: {e}"))
    })
}
