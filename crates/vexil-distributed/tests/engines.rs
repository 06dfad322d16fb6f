//! The bus and the archive against real engines: a Kafka-protocol broker (`VEXIL_TEST_BROKER`,
//! tansu started by `scripts/services/broker.sh`) and an S3-compatible store (`AWS_ENDPOINT_URL`
//! and `VEXIL_TEST_S3_URL`, moto started by `scripts/services/s3.sh`); `scripts/test.sh`
//! starts both. Without them the tests are skipped with a note, except under `CI=true`.

use std::sync::Arc;
use std::time::Duration;

use vexil_distributed::kafka::{KafkaBus, KafkaTarget};
use vexil_distributed::s3::{S3Archive, S3Target};
use vexil_events::archive::ArchiveStore;
use vexil_events::{BusRecord, EventBus};
use vexil_store::testkit::postgres::engine_variable as engine;

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

async fn bus(topic: &str) -> Option<KafkaBus> {
    let broker = engine("VEXIL_TEST_BROKER", "broker.sh")?;
    let target = KafkaTarget::parse(&format!("kafka://{broker}/{topic}")).unwrap();
    Some(KafkaBus::connect(&target, 1).await.expect("connect to the broker"))
}

/// Reads from `offset` on a blocking thread (as the pipeline's reader thread does) until
/// `count` records came.
async fn read(bus: &KafkaBus, offset: u64, count: usize) -> Vec<(u64, Vec<u8>)> {
    let mut reader = bus.reader(0, offset).unwrap();
    tokio::task::spawn_blocking(move || {
        let mut records = Vec::new();
        for _ in 0..500 {
            records
                .extend(reader.poll(7, Duration::from_millis(200)).unwrap().into_iter().map(|r| (r.offset, r.payload)));
            if records.len() >= count {
                break;
            }
        }
        records
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_batches_are_read_back_in_order_by_every_node() {
    let topic = unique("vexil-test");
    let Some(a) = bus(&topic).await else { return };
    let b = bus(&topic).await.unwrap();

    let records = |payloads: Vec<Vec<u8>>| payloads.into_iter().map(BusRecord::unkeyed).collect::<Vec<_>>();
    a.append(records(vec![b"one".to_vec(), b"two".to_vec()])).await.unwrap();
    b.append(records((0..500).map(|i| format!("event {i}").into_bytes()).collect())).await.unwrap();
    a.append(Vec::new()).await.unwrap();
    // A fresh topic: one partition, one order for every node's appends.
    let (first, second) = (0..2, 2..502);

    for node in [&a, &b] {
        let records = read(node, first.start, 502).await;
        assert_eq!(records.len(), 502);
        assert_eq!(records[0], (first.start, b"one".to_vec()));
        assert_eq!(records[501], (second.end - 1, b"event 499".to_vec()));
        assert!(records.windows(2).all(|w| w[1].0 == w[0].0 + 1), "consecutive offsets");
        assert!(node.end_offset(0) >= second.end);
    }
    // A reader may start anywhere, also inside a produced batch.
    let tail = read(&a, second.start + 10, 490).await;
    assert_eq!(tail.first().unwrap(), &(second.start + 10, b"event 10".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_files_are_single_objects_under_the_prefix_and_rewrites_replace_them() {
    let (Some(_endpoint), Some(url)) = (engine("AWS_ENDPOINT_URL", "s3.sh"), engine("VEXIL_TEST_S3_URL", "s3.sh"))
    else {
        return;
    };
    let prefix = unique("archive");
    let target = S3Target::parse(&format!("{url}/{prefix}")).unwrap();
    let archive = Arc::new(S3Archive::connect(&target).unwrap());
    let partition = "events/year=2026/month=11/day=21/hour=10";
    let name = "00000000000000000042.jsonl.gz";

    // `put` blocks, as on the pipeline's thread.
    let put = |bytes: &'static [u8]| {
        let archive = Arc::clone(&archive);
        tokio::task::spawn_blocking(move || archive.put(partition, name, bytes))
    };
    put(b"first").await.unwrap().unwrap();
    put(b"second, after a crash").await.unwrap().unwrap();

    let objects = archive.list().await.unwrap();
    assert_eq!(objects, vec![(format!("{prefix}/{partition}/{name}"), b"second, after a crash".to_vec())]);
}
