//! The Parquet archive of a real `vexil serve --archive-format parquet`, read back by pyarrow
//! (`tests/parquet/read_archive.py`): files closed at 1,000 events and at shutdown, a SIGKILL
//! whose open files are rebuilt by replay, redeliveries, and then every event exactly once with
//! every column as it was sent, in the partition of its event hour.
//!
//! pyarrow runs from the Python that `VEXIL_TEST_PYARROW` names; `scripts/test.sh` installs it
//! (`scripts/pyarrow.sh`). Without it the test fails: a green run must have read the archive with
//! a standard tool (`VEXIL_TEST_ALLOW_SKIPS=1` turns that into a recorded skip).

use crate::events::{post_json, settle};
use crate::harness::{Options, Server};
use chrono::{DateTime, Timelike, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use vexil_store::testkit::required_variable;

/// The Python with pyarrow; `None` only when skips are allowed (see `required_variable`).
fn pyarrow_python() -> Option<PathBuf> {
    required_variable("VEXIL_TEST_PYARROW", "scripts/pyarrow.sh installs pyarrow and prints it").map(PathBuf::from)
}

/// What `read_archive.py` prints for the archive under `root`.
fn read_with_pyarrow(python: &Path, root: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/parquet/read_archive.py");
    let output = std::process::Command::new(python).arg(script).arg(root).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "read_archive.py failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("read_archive.py printed no JSON ({e}): {stderr}"))
}

/// Every file's name below `dir`, recursively.
fn all_files(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path.file_name().unwrap().to_str().unwrap().to_string());
        }
    }
}

/// Users `u0`..`u9` of the 20 are exposed to `checkout` at 09:30.
const EXPOSED: usize = 10;
const EXPOSURE_TIME: &str = "2025-03-01T09:30:00Z";

fn variant_of(user: usize) -> &'static str {
    ["control", "treatment"][user % 2]
}

/// The `n`-th test event of a phase, in hour 10 or (every sixth) hour 11 of 2025-03-01, with
/// sub-millisecond times, other offsets than UTC, values, properties, and without them.
fn event(phase: &str, n: usize) -> Value {
    let user = n % 20;
    let hour = if n % 6 == 5 { 11 } else { 10 };
    let timestamp = match n % 3 {
        0 => format!("2025-03-01T{hour}:{:02}:{:02}.{:06}Z", n % 60, (n / 60) % 60, n * 7 % 1_000_000),
        1 => format!("2025-03-01T{}:{:02}:{:02}+02:00", hour + 2, n % 60, (n / 60) % 60),
        _ => format!("2025-03-01T{hour}:{:02}:{:02}.5Z", n % 60, (n / 60) % 60),
    };
    let name = ["view", "purchase"][n % 2];
    let mut event = json!({"event_id": format!("{phase}-{n}"), "event": name,
                           "user_id": format!("u{user}"), "timestamp": timestamp});
    if n % 2 == 1 {
        // Quarters, negative, zero and positive: short decimals every JSON parser reads exactly.
        event["value"] = json!((n as f64 - 900.0) * 0.25);
    }
    if n.is_multiple_of(3) {
        event["properties"] = json!({"n": n, "note": "grüße \"quoted\"", "nested": {"list": [1, 2.5, null]}});
    }
    event
}

/// Posts `events` in batches of 500.
async fn post_all(server: &Server, events: &[Value]) {
    for batch in events.chunks(500) {
        post_json(server, batch).await;
    }
}

#[tokio::test]
async fn parquet_archive_reads_back_in_pyarrow_with_every_event_once() {
    let Some(python) = pyarrow_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let options = Options { args: vec!["--archive-format".into(), "parquet".into()], ..Options::default() };
    let started = Utc::now().timestamp_millis();

    let server = Server::start_in(&data_dir, options.clone()).await;
    let exposures: Vec<Value> = (0..EXPOSED)
        .map(|user| {
            json!({"event_id": format!("exposure-{user}"), "event": "exposure", "type": "exposure",
                   "user_id": format!("u{user}"), "timestamp": EXPOSURE_TIME,
                   "experiment_key": "checkout", "variant": variant_of(user)})
        })
        .collect();
    post_json(&server, &exposures).await;
    settle(&server, EXPOSED as f64).await;
    let first: Vec<Value> = (0..1800).map(|n| event("a", n)).collect();
    post_all(&server, &first).await;
    settle(&server, (EXPOSED + first.len()) as f64).await;
    // Hour 10 has closed a file at 1,000 events; its rest, hour 9 and hour 11 are open buffers
    // that only the checkpoint knows about when the process dies.
    server.kill().await;

    let server = Server::start_in(&data_dir, options).await;
    let second: Vec<Value> = (0..800).map(|n| event("b", n)).collect();
    post_all(&server, &second).await;
    // Redeliveries of acknowledged events, after the restart.
    post_all(&server, &first[..50]).await;
    // A graceful stop processes what is left and closes the open files.
    assert!(server.stop().await);
    let finished = Utc::now().timestamp_millis();

    let mut names = Vec::new();
    all_files(&data_dir.join("archive"), &mut names);
    assert!(
        names.iter().all(|n| n.ends_with(".parquet") && n.bytes().next().is_some_and(|b| b.is_ascii_digit())),
        "only finished .parquet files: {names:?}"
    );
    let read = read_with_pyarrow(&python, &data_dir.join("archive"));

    let expected_types: BTreeMap<&str, &str> = [
        ("event_id", "string"),
        ("event", "string"),
        ("type", "string"),
        ("user_id", "string"),
        ("timestamp", "timestamp[us, tz=UTC]"),
        ("value", "double"),
        ("received_at", "timestamp[ms, tz=UTC]"),
        ("experiment_key", "string"),
        ("variant", "string"),
        ("properties", "extension<arrow.json>"),
        ("experiments", "map<string, string ('experiments')>"),
    ]
    .into();
    let files = read["files"].as_object().unwrap();
    assert_eq!(files.len(), names.len());
    for (file, types) in files {
        let types: BTreeMap<&str, &str> =
            types.as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap())).collect();
        assert_eq!(types, expected_types, "{file}");
    }

    let sent: Vec<&Value> = exposures.iter().chain(&first).chain(&second).collect();
    let rows = read["rows"].as_array().unwrap();
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    for row in rows {
        let id = row["event_id"].as_str().unwrap();
        assert!(by_id.insert(id, row).is_none(), "{id} was archived twice");
    }
    assert_eq!(rows.len(), sent.len(), "every event once");
    assert_eq!(read["dataset"]["rows"].as_u64(), Some(sent.len() as u64), "the Hive-partitioned dataset");
    let columns: Vec<&str> =
        read["dataset"]["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(columns.ends_with(&["year", "month", "day", "hour"]), "{columns:?}");

    let mut per_hour: BTreeMap<String, usize> = BTreeMap::new();
    for event in sent {
        let id = event["event_id"].as_str().unwrap();
        let row = by_id.get(id).unwrap_or_else(|| panic!("{id} is not in the archive"));
        let time: DateTime<Utc> = DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap()).unwrap().into();
        let user: usize = event["user_id"].as_str().unwrap()[1..].parse().unwrap();
        let experiments = if user < EXPOSED { json!({"checkout": variant_of(user)}) } else { json!({}) };
        let properties = row["properties"].as_str().map(|text| serde_json::from_str::<Value>(text).unwrap());
        let partition = time.format("events/year=%Y/month=%m/day=%d/hour=%H/").to_string();
        assert_eq!(row["event"], event["event"], "{id}");
        assert_eq!(row["type"], event.get("type").cloned().unwrap_or(json!("track")), "{id}");
        assert_eq!(row["user_id"], event["user_id"], "{id}");
        assert_eq!(row["timestamp"].as_i64(), Some(time.timestamp_micros()), "{id}");
        assert_eq!(row["value"], event.get("value").cloned().unwrap_or(Value::Null), "{id}");
        assert_eq!(properties, event.get("properties").cloned(), "{id}");
        assert_eq!(row["experiment_key"], event.get("experiment_key").cloned().unwrap_or(Value::Null), "{id}");
        assert_eq!(row["variant"], event.get("variant").cloned().unwrap_or(Value::Null), "{id}");
        assert_eq!(row["experiments"], experiments, "{id}");
        let received = row["received_at"].as_i64().unwrap();
        assert!((started..=finished).contains(&received), "{id}: received_at {received}");
        let file = row["file"].as_str().unwrap();
        assert!(file.starts_with(&partition), "{id} at {time} is in {file}");
        *per_hour.entry(format!("{:02}", time.hour())).or_default() += 1;
    }
    assert_eq!(per_hour.keys().collect::<Vec<_>>(), ["09", "10", "11"], "UTC hours, whatever the offset sent");
    // Hour 10 got 2,167 events, so at least two of its files were closed at 1,000.
    let hour_10_files = files.keys().filter(|f| f.contains("/hour=10/")).count();
    assert!(hour_10_files >= 2, "{hour_10_files} files in hour 10");
}
