//! What an evaluation costs the application through the SDK handle, idle and while the
//! configuration changes every 10 ms.
//!
//! The changes come the way they do in production: a loopback server (axum, in this process)
//! answers `GET /v1/sdk/flags` and streams a `patch` every 10 ms on `GET /v1/sdk/stream`, so
//! each one is parsed, recompiled and swapped in by the SDK's own synchronisation task.

use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::Router;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Duration;
use tokio_stream::wrappers::IntervalStream;
use vexil_sdk::{Client, Context, Options, Status};

/// The flags of the benchmark: a plain boolean (`dark_mode`, no rules: the target's workload),
/// `new_checkout` (a rule on `country`, a rollout) and eight others beside them.
fn document(rollout: u32) -> Value {
    let mut flags: Vec<Value> = (0..8)
        .map(|i| json!({"key": format!("other_{i}"), "enabled": true, "default": {"split": {"on": 1}, "rollout": 10}}))
        .collect();
    flags.push(json!({"key": "dark_mode", "enabled": true, "default": {"variant": "on"}}));
    flags.push(checkout(rollout));
    json!({"flags": flags, "segments": []})
}

fn checkout(rollout: u32) -> Value {
    json!({"key": "new_checkout", "enabled": true,
           "rules": [{"id": "us", "when": {"attr": "country", "op": "eq", "value": "US"}, "serve": {"variant": "on"}}],
           "default": {"split": {"on": 1}, "rollout": rollout}})
}

/// Serves the document and, when `changing`, a patch of `new_checkout` every 10 ms.
async fn serve(changing: bool) -> String {
    let flags = get(|| async { axum::Json(document(50)) });
    let stream = get(move || async move {
        let put = futures_util::stream::once(async { Event::default().event("put").data(document(50).to_string()) });
        let ticks = IntervalStream::new(tokio::time::interval(Duration::from_millis(10)));
        let patches = ticks.enumerate().filter(move |_| std::future::ready(changing)).map(|(i, _)| {
            let object = checkout(40 + (i % 20) as u32);
            Event::default()
                .event("patch")
                .data(json!({"kind": "flag", "key": "new_checkout", "object": object}).to_string())
        });
        Sse::new(put.chain(patches).map(Ok::<_, Infallible>))
    });
    let app = Router::new().route("/v1/sdk/flags", flags).route("/v1/sdk/stream", stream);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

fn started_client(runtime: &tokio::runtime::Runtime, changing: bool) -> Client {
    runtime.block_on(async {
        let client = Client::start(Options::new(serve(changing).await, "bench"));
        assert_eq!(client.wait_until_ready(Duration::from_secs(10)).await, Status::Ready);
        client
    })
}

fn bool_value(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let attributes = json!({"country": "FR", "plan": "pro"});
    let attributes = attributes.as_object().unwrap();
    let users: Vec<String> = (0..1024).map(|i| format!("user_{i}")).collect();

    let idle = started_client(&runtime, false);
    for flag in ["dark_mode", "new_checkout"] {
        let mut i = 0;
        c.bench_function(&format!("sdk/bool_value/{flag}"), |b| {
            b.iter(|| {
                i = (i + 1) % users.len();
                idle.bool_value(black_box(flag), &Context::new(&users[i], attributes), false)
            })
        });
    }

    let mut group = c.benchmark_group("sdk/throughput");
    group.throughput(Throughput::Elements(users.len() as u64));
    for (name, changing) in [("idle", false), ("update_every_10ms", true)] {
        let client = started_client(&runtime, changing);
        group.bench_function(name, |b| {
            b.iter(|| {
                users
                    .iter()
                    .filter(|user| client.bool_value("new_checkout", &Context::new(user, attributes), false))
                    .count()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bool_value);
criterion_main!(benches);
