//! The dead-letter queue over HTTP and through `vexil dlq`: list with filters, replay (entries
//! that now validate are ingested and leave the queue, the others stay with one more attempt),
//! purge with filters.

use crate::cli::run;
use crate::events::{post_json, settle};
use crate::harness::Server;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// How far past the 24 h limit a "soon valid" event starts: the few calls of the "too early"
/// part must fit in it, however loaded the machine.
const TOO_EARLY_FOR: chrono::Duration = chrono::Duration::seconds(10);

/// An event whose timestamp is just over the 24 h limit now, and valid once `valid_from`
/// passes.
fn soon_valid(user: &str, valid_from: chrono::DateTime<chrono::Utc>) -> Value {
    let at = valid_from + chrono::Duration::hours(24);
    json!({"event": "signup", "user_id": user, "timestamp": at.to_rfc3339()})
}

/// Sleeps until the clock (the server's too: one machine) has passed `moment`.
async fn sleep_until(moment: chrono::DateTime<chrono::Utc>) {
    while chrono::Utc::now() <= moment {
        let left = (moment - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_and_purged() {
    let server = Server::start().await;
    let valid_from = chrono::Utc::now() + TOO_EARLY_FOR;
    let answer = post_json(
        &server,
        &[
            json!({"event": "ok", "user_id": "u0"}),
            soon_valid("u1", valid_from),
            json!({"event": "no good", "user_id": "u2"}),
            soon_valid("u3", valid_from),
        ],
    )
    .await;
    assert_eq!(answer["accepted"], 1, "{answer}");
    let (status, all) = server.call(Method::GET, "/v1/admin/dlq", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["total"], 3);
    let (_, page) = server.call(Method::GET, "/v1/admin/dlq?limit=2", None).await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    let after = page["next_after_id"].as_i64().unwrap();
    let (_, rest) = server.call(Method::GET, &format!("/v1/admin/dlq?after_id={after}"), None).await;
    assert_eq!((rest["entries"].as_array().unwrap().len(), &rest["next_after_id"]), (1, &Value::Null));
    let (_, timestamps) = server.call(Method::GET, "/v1/admin/dlq?code=invalid_timestamp&stage=ingest", None).await;
    assert_eq!(timestamps["entries"].as_array().unwrap().len(), 2, "{timestamps}");

    // Too early: everything still fails, and stays with one more attempt.
    let (status, report) = server.call(Method::POST, "/v1/admin/dlq/replay?code=invalid_timestamp", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report, json!({"replayed": 0, "duplicates": 0, "failed": 2}));
    sleep_until(valid_from).await;
    let first_id = timestamps["entries"][0]["id"].as_i64().unwrap();
    let (_, report) = server.call(Method::POST, &format!("/v1/admin/dlq/replay?ids={first_id}"), None).await;
    assert_eq!(report, json!({"replayed": 1, "duplicates": 0, "failed": 0}));

    // The CLI, through the server: replay the rest, list, purge.
    let base = server.base.clone();
    let target = ["--server", base.as_str(), "--key", server.key.as_str()];
    let (ok, out, err) = run(&[&["dlq", "replay"][..], &target[..]].concat()).await;
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"replayed": 1, "duplicates": 0, "failed": 1}));
    let (ok, out, err) = run(&[&["dlq", "list", "--code", "invalid_event_name"][..], &target[..]].concat()).await;
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["entries"][0]["attempts"], 1, "{listed}");
    assert_eq!(listed["entries"][0]["error"]["field"], "event");
    settle(&server, 3.0).await;

    // On the data directory while the server runs: list and purge work, replay refuses.
    let data_dir = server.data_dir.to_str().unwrap().to_owned();
    let (ok, out, err) = run(&["dlq", "list", "--data-dir", &data_dir]).await;
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["total"], 1);
    let (ok, _, err) = run(&["dlq", "replay", "--data-dir", &data_dir]).await;
    assert!(!ok && err.contains("--server"), "{err}");
    let (ok, out, _) = run(&["dlq", "purge", "--code", "nothing_like_this", "--data-dir", &data_dir]).await;
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"purged": 0}));
    let (status, purged) = server.call(Method::DELETE, "/v1/admin/dlq?stage=ingest", None).await;
    assert_eq!((status, purged), (StatusCode::OK, json!({"purged": 1})));
    let (_, empty) = server.call(Method::GET, "/v1/admin/dlq", None).await;
    assert_eq!(empty["total"], 0);
}

/// Five batches of 9,000 invalid events from a client key (a key that ships in web pages) grew
/// the DLQ without bound. Now it keeps at most its limit, cuts long payloads, counts what it
/// refused, tells every sender each event was rejected, and still takes valid events.
#[tokio::test]
async fn a_flood_of_invalid_events_is_capped_cut_and_counted() {
    let options = crate::harness::Options {
        env: vec![
            ("VEXIL_DLQ_MAX_ENTRIES".into(), "10000".into()),
            ("VEXIL_DLQ_MAX_PAYLOAD_BYTES".into(), "1024".into()),
        ],
        ..Default::default()
    };
    let server = Server::start_with(options).await;
    let client_key = server.create_key("client").await;
    let long = json!({"event": "no good", "user_id": "u", "padding": "p".repeat(4000)});
    let (status, answer) =
        crate::events::post_events(&server, &client_key, "application/json", serde_json::to_vec(&[&long]).unwrap())
            .await;
    assert_eq!((status, answer["rejected"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{answer}");
    let invalid: Vec<Value> = (0..9000).map(|i| json!({"event": "no good", "user_id": format!("u{i}")})).collect();
    for _ in 0..5 {
        let body = serde_json::to_vec(&invalid).unwrap();
        let (status, answer) = crate::events::post_events(&server, &client_key, "application/json", body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["rejected"].as_array().unwrap().len(), 9000, "every sender hears of every rejection");
    }
    let (_, listed) = server.call(Method::GET, "/v1/admin/dlq?limit=1", None).await;
    assert_eq!(listed["total"], 10_000, "{listed}");
    let payload = listed["entries"][0]["payload"].as_str().unwrap();
    assert!(payload.len() < 1100 && payload.ends_with("…[truncated]"), "{}", payload.len());
    let metrics = server.metrics().await;
    let refused = 1 + 5 * 9000 - 10_000;
    assert!(metrics.lines().any(|l| l == format!("vexil_events_dlq_refused_total {refused}")), "{metrics}");
    assert!(metrics.lines().any(|l| l == "vexil_events_dlq_truncated_total 1"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "vexil_events_dlq_size 10000"), "{metrics}");

    let answer = post_json(&server, &[json!({"event": "signup", "user_id": "still_counted"})]).await;
    assert_eq!(answer["accepted"], 1, "valid events are never refused: {answer}");
    settle(&server, 1.0).await;
}
