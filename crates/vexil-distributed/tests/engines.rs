//! The bus and the archive against real engines: a Kafka-protocol broker (`VEXIL_TEST_BROKER`,
//! tansu started by `scripts/services/broker.sh`) and an S3-compatible store (`AWS_ENDPOINT_URL`
//! and `VEXIL_TEST_S3_URL`, moto started by `scripts/services/s3.sh`); `scripts/test.sh`
//! starts both. Without them the tests fail, or with `VEXIL_TEST_ALLOW_SKIPS=1` record a skip.

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

async fn bus(topic: &str, partitions: u32) -> Option<KafkaBus> {
    let broker = engine("VEXIL_TEST_BROKER", "broker.sh")?;
    let target = KafkaTarget::parse(&format!("kafka://{broker}/{topic}?partitions={partitions}")).unwrap();
    Some(KafkaBus::connect(&target, 1).await.expect("connect to the broker"))
}

/// Reads `partition` from `offset` on a blocking thread (as the pipeline's reader thread does)
/// until `count` records came.
async fn read(bus: &KafkaBus, partition: u32, offset: u64, count: usize) -> Vec<(u64, Vec<u8>)> {
    let mut reader = bus.reader(partition, offset).unwrap();
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
    let Some(a) = bus(&topic, 1).await else { return };
    let b = bus(&topic, 1).await.unwrap();

    let records = |payloads: Vec<Vec<u8>>| payloads.into_iter().map(BusRecord::unkeyed).collect::<Vec<_>>();
    a.append(records(vec![b"one".to_vec(), b"two".to_vec()])).await.unwrap();
    b.append(records((0..500).map(|i| format!("event {i}").into_bytes()).collect())).await.unwrap();
    a.append(Vec::new()).await.unwrap();
    // A fresh topic of one partition: one order for every node's appends.
    let (first, second) = (0..2, 2..502);

    for node in [&a, &b] {
        let records = read(node, 0, first.start, 502).await;
        assert_eq!(records.len(), 502);
        assert_eq!(records[0], (first.start, b"one".to_vec()));
        assert_eq!(records[501], (second.end - 1, b"event 499".to_vec()));
        assert!(records.windows(2).all(|w| w[1].0 == w[0].0 + 1), "consecutive offsets");
        assert!(node.end_offset(0) >= second.end);
    }
    // A reader may start anywhere, also inside a produced batch.
    let tail = read(&a, 0, second.start + 10, 490).await;
    assert_eq!(tail.first().unwrap(), &(second.start + 10, b"event 10".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_land_on_their_keys_partition_in_order() {
    let topic = unique("vexil-keyed");
    let Some(a) = bus(&topic, 3).await else { return };
    // The topic exists now: a node asking for another count gets the topic's own.
    let b = bus(&topic, 5).await.unwrap();
    assert_eq!((a.partitions(), b.partitions()), (3, 3));

    // 20 users, 30 records each, appended in batches from both nodes; the big batch is split
    // into several produce requests (records of 50 KiB).
    let user = |n: usize| format!("user-{}", n % 20);
    let payload = |n: usize, pad: usize| format!("{n} {}", "x".repeat(pad)).into_bytes();
    for (i, batch) in (0..600).collect::<Vec<usize>>().chunks(100).enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        let pad = if i == 3 { 50 * 1024 } else { 0 };
        node.append(batch.iter().map(|&n| BusRecord::keyed(user(n), payload(n, pad))).collect()).await.unwrap();
    }
    b.append(vec![BusRecord::unkeyed(b"no key".to_vec())]).await.unwrap();

    let mut seen = Vec::new();
    for partition in 0..3 {
        let end = a.end_offset(partition).max(b.end_offset(partition));
        for (_, payload) in read(&a, partition, 0, end as usize).await {
            let text = String::from_utf8(payload).unwrap();
            let Some(n) = text.split(' ').next().and_then(|n| n.parse::<usize>().ok()) else {
                assert_eq!(text, "no key");
                seen.push((partition, usize::MAX));
                continue;
            };
            let expected = vexil_distributed::kafka::kafka_partition(user(n).as_bytes(), 3);
            assert_eq!(partition, expected, "record {n} of {} is on its key's partition", user(n));
            seen.push((partition, n));
        }
    }
    assert_eq!(seen.len(), 601, "every record once");
    for u in 0..20 {
        let order: Vec<usize> = seen.iter().filter(|(_, n)| *n != usize::MAX && n % 20 == u).map(|(_, n)| *n).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "user-{u}'s records keep their order: {order:?}");
    }
}

/// Concurrent appends share a partition's produce requests: each append's records for a
/// partition are queued together, several appends' go into one request, and a share too large
/// for one request is split over several. Every record must land once, on its key's partition,
/// and each append's records on a partition in their order with no other append's in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_each_land_whole_and_in_order() {
    let topic = unique("vexil-concurrent");
    let Some(bus) = bus(&topic, 2).await else { return };
    let bus = Arc::new(bus);
    // 24 appends of 50 records over 5 users; every sixth append's records are 40 KiB, so its
    // share of a partition (about 1 MiB) is more than one produce request holds.
    let appends = (0..24usize).map(|a| {
        let bus = Arc::clone(&bus);
        tokio::spawn(async move {
            let pad = if a % 6 == 0 { 40 * 1024 } else { 0 };
            let records = (0..50usize).map(|i| {
                BusRecord::keyed(format!("user-{}", i % 5), format!("{a} {i} {}", "x".repeat(pad)).into_bytes())
            });
            bus.append(records.collect()).await
        })
    });
    for append in appends.collect::<Vec<_>>() {
        append.await.unwrap().unwrap();
    }

    let mut seen = std::collections::HashSet::new();
    for partition in 0..2 {
        let end = bus.end_offset(partition);
        let records = read(&bus, partition, 0, end as usize).await;
        assert_eq!(records.len() as u64, end, "partition {partition} holds what its end offset says");
        // Each append's records on this partition, (offset, position in the append), in log order.
        let mut shares: std::collections::HashMap<usize, Vec<(u64, usize)>> = Default::default();
        for (offset, payload) in records {
            let text = String::from_utf8(payload).unwrap();
            let mut fields = text.split(' ').map(|n| n.parse::<usize>().unwrap_or(usize::MAX));
            let (a, i) = (fields.next().unwrap(), fields.next().unwrap());
            let user = format!("user-{}", i % 5);
            assert_eq!(vexil_distributed::kafka::kafka_partition(user.as_bytes(), 2), partition);
            assert!(seen.insert((a, i)), "record {i} of append {a} appears once");
            shares.entry(a).or_default().push((offset, i));
        }
        for (a, share) in shares {
            let whole_and_in_order = share.windows(2).all(|w| w[1].0 == w[0].0 + 1 && w[0].1 < w[1].1);
            assert!(whole_and_in_order, "append {a}'s records on partition {partition}: {share:?}");
        }
    }
    assert_eq!(seen.len(), 24 * 50, "every record of every append");
}

/// A broker answers one connection's requests in turn, so a reader's fetch, which waits for
/// records, must not share the producers' connection: an append went out only once the fetch's
/// wait ended (the ingest stall of docs/benchmarks/broker-stall.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_does_not_wait_for_a_reader_waiting_for_records() {
    let topic = unique("vexil-no-wait");
    let Some(bus) = bus(&topic, 2).await else { return };
    let key_on = |partition: u32| {
        (0..)
            .map(|n| format!("user-{n}"))
            .find(|k| vexil_distributed::kafka::kafka_partition(k.as_bytes(), 2) == partition)
    };

    let mut reader = bus.reader(0, 0).unwrap();
    let waiting = tokio::task::spawn_blocking(move || reader.poll(10, Duration::from_secs(20)).unwrap());
    // Let the reader's fetch reach the broker and start waiting on the empty partition 0.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the reader waits for records");

    bus.append(vec![BusRecord::keyed(key_on(1).unwrap(), b"to partition 1".to_vec())]).await.unwrap();
    assert!(!waiting.is_finished(), "the append was acknowledged while the reader still waited");
    assert_eq!(bus.end_offset(1), 1);

    bus.append(vec![BusRecord::keyed(key_on(0).unwrap(), b"wakes the reader".to_vec())]).await.unwrap();
    let woken = waiting.await.unwrap();
    assert_eq!(woken.iter().map(|r| r.payload.as_slice()).collect::<Vec<_>>(), [b"wakes the reader"]);
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
