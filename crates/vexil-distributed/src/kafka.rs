//! An [`EventBus`] on the partitions of a Kafka topic, with `rskafka` (pure Rust; `rdkafka`
//! would build librdkafka from C sources on every fresh CI machine).
//!
//! - **Partitions.** A record goes to the partition of its key by Kafka's default partitioner
//!   (murmur2 of the key bytes, made positive, modulo the partition count; see
//!   [`kafka_partition`]), so any other Kafka producer keying by user id agrees on where a
//!   user's events are. Events are keyed by `user_id`: a user's events stay in order on one
//!   partition, which is what lets one processor own a user's state (assignments, metric
//!   values, unique-user sets) for the whole partition. Records without a key (evaluation
//!   counts) take turns over the partitions.
//! - **append** splits its records by partition, queues each partition's share (in append
//!   order) for that partition's writer as one entry, and returns once the broker acknowledged
//!   every share (`acks = all`, rskafka's setting). One entry and one acknowledgement per
//!   partition, not per record: with a future, a channel message and a reply per record, the
//!   bookkeeping of a 500-event batch cost the node more than encoding it
//!   (docs/benchmarks/distributed.md has the profile). A partition's writer has one produce
//!   request in flight at a time and puts everything queued meanwhile, from all concurrent
//!   appends, into the next (up to [`MAX_PRODUCE_BYTES`], splitting a share that does not fit):
//!   a group commit. One request in flight is what keeps a partition's records in the order
//!   they were appended (Kafka's `max.in.flight.requests.per.connection = 1`); rskafka's
//!   `BatchProducer`, used before, flushes a full batch in a background task beside the next
//!   one, and the broker could receive them swapped. Under load a batch spread over many
//!   partitions still costs one request per partition per round, not per HTTP request.
//! - **reader** fetches one partition from an offset with long polling, on a connection of its
//!   own, opened on its first fetch.
//! - **Connections.** A broker answers one connection's requests one at a time (tansu and Kafka
//!   alike), so every partition's writer and every reader has a connection of its own. A fetch
//!   waiting for records on a shared connection held every produce request behind it for the
//!   whole wait (the 200 ms stall of each ingest batch that docs/benchmarks/broker-stall.md
//!   traces), and the partitions' produce requests queued behind each other.
//! - **commit** does nothing. Retention is the broker's (`retention.ms` of the topic): the
//!   consumers' durable positions are the pipeline's checkpoints, committed in its state
//!   database together with what they processed.
//! - A missing topic is created with the partition count the URL asks for
//!   (`kafka://host:port/topic?partitions=N`, default [`DEFAULT_PARTITIONS`]); an existing
//!   topic keeps its own count, which every node then reads from the broker.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::Compression;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record as KafkaRecord;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use vexil_events::log::Record;
use vexil_events::{BusReader, BusRecord, EventBus, LogError};

/// Partitions of a topic created without `?partitions=`: enough for several processing nodes
/// to share the work, few enough that each keeps a useful batch size.
pub const DEFAULT_PARTITIONS: u32 = 8;

/// The most partitions `?partitions=` may ask for.
const MAX_PARTITIONS: u32 = 1024;

/// How long a new topic's leader may take to be elected before the first request.
const CREATE_TIMEOUT_MS: i32 = 5_000;

/// The most bytes one fetch asks for: with at most 2,000 records per poll and events of at
/// most 64 KiB, typical batches of small events fit in one response.
const MAX_FETCH_BYTES: i32 = 8 * 1024 * 1024;

/// The most record bytes in one produce request: below the 1 MiB Kafka brokers accept in one
/// record batch by default (`message.max.bytes`), so a 5 MiB ingest batch is split.
pub const MAX_PRODUCE_BYTES: usize = 900 * 1024;

/// Where `--event-bus kafka://host:port/topic?partitions=N` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTarget {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    pub topic: String,
    /// Partitions to create the topic with if it does not exist.
    pub partitions: u32,
}

impl KafkaTarget {
    /// Parses `kafka://host:port[,host:port…]/topic[?partitions=N]`.
    pub fn parse(url: &str) -> Result<KafkaTarget, String> {
        let rest = url.strip_prefix("kafka://").ok_or("must start with kafka://")?;
        let (hosts, path) = rest.split_once('/').ok_or("must name a topic: kafka://host:port/topic")?;
        let brokers: Vec<String> = hosts.split(',').filter(|h| !h.is_empty()).map(str::to_owned).collect();
        if brokers.is_empty() || brokers.iter().any(|b| !b.contains(':')) {
            return Err("must name brokers as host:port".into());
        }
        let (topic, query) = path.split_once('?').unwrap_or((path, ""));
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if topic.is_empty() || topic.len() > 249 || !topic.chars().all(valid) {
            return Err(format!("{topic:?} is not a Kafka topic name (letters, digits, . _ -)"));
        }
        let mut partitions = DEFAULT_PARTITIONS;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("partitions", n)) => {
                    partitions = n
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_PARTITIONS).contains(n))
                        .ok_or(format!("partitions must be a number from 1 to {MAX_PARTITIONS}, not {n:?}"))?;
                }
                _ => return Err(format!("unknown option {pair:?}; the only one is partitions=N")),
            }
        }
        Ok(KafkaTarget { brokers, topic: topic.to_owned(), partitions })
    }
}

/// The partition Kafka's default partitioner gives `key` among `partitions`:
/// `toPositive(murmur2(key)) % partitions`, with Kafka's seed and its `toPositive` (the sign
/// bit cleared, not the absolute value).
pub fn kafka_partition(key: &[u8], partitions: u32) -> u32 {
    (murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff) % partitions
}

fn broker_error(e: impl std::fmt::Display) -> LogError {
    LogError::Io(io::Error::other(format!("Kafka: {e}")))
}

/// One append's records for one partition, in append order, waiting for the partition's
/// writer; `acknowledged` hears once the broker acknowledged the last of them (or the failure
/// that ended them).
struct PendingShare {
    records: VecDeque<KafkaRecord>,
    acknowledged: oneshot::Sender<Result<(), String>>,
}

/// One partition of the topic: its writer, on a connection of its own.
struct Partition {
    writes: mpsc::UnboundedSender<PendingShare>,
    /// The next offset known to exist: raised by the writer's acknowledged requests and by
    /// each fetch's high watermark.
    end: Arc<AtomicU64>,
}

/// A Kafka topic as the pipeline's durable log.
pub struct KafkaBus {
    target: Arc<KafkaTarget>,
    partitions: Vec<Partition>,
    runtime: Handle,
    /// Where the next record without a key goes.
    unkeyed: AtomicU32,
}

impl KafkaBus {
    /// Connects, creating the topic (`target.partitions` partitions, `replication` copies) if
    /// it does not exist. Must run inside the tokio runtime that will carry the bus's requests.
    pub async fn connect(target: &KafkaTarget, replication: i16) -> Result<KafkaBus, LogError> {
        let client =
            ClientBuilder::new(target.brokers.clone()).client_id("vexil").build().await.map_err(broker_error)?;
        let find = |topics: Vec<rskafka::topic::Topic>| topics.into_iter().find(|t| t.name == target.topic);
        let mut topic = find(client.list_topics().await.map_err(broker_error)?);
        if topic.is_none() {
            let controller = client.controller_client().map_err(broker_error)?;
            let partitions = i32::try_from(target.partitions).map_err(broker_error)?;
            // Another node may create it at the same moment; its creation is as good as ours.
            let created = controller.create_topic(&target.topic, partitions, replication, CREATE_TIMEOUT_MS).await;
            topic = find(client.list_topics().await.map_err(broker_error)?);
            if let (Err(e), None) = (created, &topic) {
                return Err(broker_error(e));
            }
        }
        // A topic just created may list its partitions only once their leaders are elected.
        let mut ids: Vec<i32> = topic.map(|t| t.partitions.into_iter().collect()).unwrap_or_default();
        for _ in 0..50 {
            if !ids.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            ids = find(client.list_topics().await.map_err(broker_error)?)
                .map(|t| t.partitions.into_iter().collect())
                .unwrap_or_default();
        }
        if ids.is_empty() || ids.iter().enumerate().any(|(i, id)| usize::try_from(*id).ok() != Some(i)) {
            return Err(broker_error(format!("topic {} lists partitions {ids:?}, not 0..N", target.topic)));
        }
        let mut partitions = Vec::with_capacity(ids.len());
        for id in ids {
            let client = partition_connection(target, id).await?;
            let end = client.get_offset(OffsetAt::Latest).await.map_err(broker_error)?;
            let (writes, queue) = mpsc::unbounded_channel();
            let end = Arc::new(AtomicU64::new(offset(end)?));
            tokio::spawn(write_in_order(client, queue, Arc::clone(&end)));
            partitions.push(Partition { writes, end });
        }
        Ok(KafkaBus {
            target: Arc::new(target.clone()),
            partitions,
            runtime: Handle::current(),
            unkeyed: AtomicU32::new(0),
        })
    }

    fn partition(&self, partition: u32) -> Result<&Partition, LogError> {
        self.partitions.get(partition as usize).ok_or(LogError::NoPartition(partition))
    }
}

/// A client of one partition on a connection of its own (see the module docs).
async fn partition_connection(target: &KafkaTarget, partition: i32) -> Result<PartitionClient, LogError> {
    let client = ClientBuilder::new(target.brokers.clone()).client_id("vexil").build().await.map_err(broker_error)?;
    client.partition_client(&target.topic, partition, UnknownTopicHandling::Retry).await.map_err(broker_error)
}

fn offset(value: i64) -> Result<u64, LogError> {
    u64::try_from(value).map_err(|_| broker_error(format!("negative offset {value}")))
}

/// A partition's writer: one produce request at a time, each carrying the records queued
/// while the previous one was in flight, in queue order, and raising `end` past what the broker
/// acknowledged (ends when the bus is dropped).
async fn write_in_order(
    client: PartitionClient,
    mut queue: mpsc::UnboundedReceiver<PendingShare>,
    end: Arc<AtomicU64>,
) {
    let mut pending: VecDeque<PendingShare> = VecDeque::new();
    let mut received = Vec::new();
    while !pending.is_empty() || queue.recv_many(&mut received, usize::MAX).await > 0 {
        pending.extend(received.drain(..));
        let Request { records, completed, carried } = next_request(&mut pending);
        let outcome = client.produce(records, Compression::NoCompression).await;
        let outcome = match outcome {
            Ok(offsets) => match offsets.last().map(|last| offset(*last)) {
                Some(Ok(last)) => {
                    end.fetch_max(last + 1, Ordering::AcqRel);
                    Ok(())
                }
                Some(Err(e)) => Err(e.to_string()),
                None => Err("the broker acknowledged a produce request without offsets".to_owned()),
            },
            Err(e) => Err(e.to_string()),
        };
        // A failed request also ends the share it carried only part of: that append fails as a
        // whole, so the rest of its share is not sent.
        let ended = if outcome.is_ok() { completed } else { carried };
        for share in pending.drain(..ended) {
            let _ = share.acknowledged.send(outcome.clone());
        }
        // Records queued meanwhile join what is left, behind it.
        while let Ok(share) = queue.try_recv() {
            pending.push_back(share);
        }
    }
}

/// The records of one produce request and the shares they come from.
struct Request {
    records: Vec<KafkaRecord>,
    /// Shares at the front of the queue whose last record is in the request.
    completed: usize,
    /// Shares with records in the request: `completed`, and one more if the request carries
    /// only the first part of the next share.
    carried: usize,
}

/// Takes the records of the next produce request from the front of `pending`: whole shares
/// while they fit in [`MAX_PRODUCE_BYTES`], then as much of the next share as fits, which keeps
/// the rest for the following request. The first record always goes, however large; the broker
/// judges it.
fn next_request(pending: &mut VecDeque<PendingShare>) -> Request {
    let mut records = Vec::new();
    let mut bytes = 0;
    let mut completed = 0;
    for share in pending.iter_mut() {
        let before = records.len();
        while let Some(record) = share.records.pop_front() {
            bytes += record.approximate_size();
            if bytes > MAX_PRODUCE_BYTES && !records.is_empty() {
                share.records.push_front(record);
                let carried = completed + usize::from(records.len() > before);
                return Request { records, completed, carried };
            }
            records.push(record);
        }
        completed += 1;
    }
    Request { records, carried: completed, completed }
}

#[async_trait::async_trait]
impl EventBus for KafkaBus {
    fn partitions(&self) -> u32 {
        self.partitions.len() as u32
    }

    async fn append(&self, records: Vec<BusRecord>) -> Result<(), LogError> {
        let count = self.partitions();
        let spare = self.unkeyed.fetch_add(1, Ordering::Relaxed) % count;
        let now = chrono::Utc::now();
        let mut shares: Vec<VecDeque<KafkaRecord>> = (0..count).map(|_| VecDeque::new()).collect();
        for BusRecord { key, payload } in records {
            let partition = key.as_deref().map_or(spare, |k| kafka_partition(k.as_bytes(), count));
            shares[partition as usize].push_back(KafkaRecord {
                key: key.map(String::into_bytes),
                value: Some(payload),
                headers: Default::default(),
                timestamp: now,
            });
        }
        // Each share is queued whole, so a partition's writer takes this append's records for it
        // in their order; the append is acknowledged when every share is.
        let stopped = || broker_error("the partition's writer stopped");
        let mut acknowledgements = Vec::new();
        for (partition, records) in self.partitions.iter().zip(shares) {
            if records.is_empty() {
                continue;
            }
            let (acknowledged, acknowledgement) = oneshot::channel();
            partition.writes.send(PendingShare { records, acknowledged }).map_err(|_| stopped())?;
            acknowledgements.push(acknowledgement);
        }
        for acknowledgement in acknowledgements {
            acknowledgement.await.map_err(|_| stopped())?.map_err(broker_error)?;
        }
        Ok(())
    }

    fn reader(&self, partition: u32, offset: u64) -> Result<Box<dyn BusReader>, LogError> {
        let id = i32::try_from(partition).map_err(broker_error)?;
        let partition = self.partition(partition)?;
        Ok(Box::new(KafkaReader {
            target: Arc::clone(&self.target),
            id,
            connection: None,
            runtime: self.runtime.clone(),
            end: Arc::clone(&partition.end),
            next: offset,
            buffered: VecDeque::new(),
        }))
    }

    /// Nothing to do (see the module docs).
    fn commit(&self, _partition: u32, _offset: u64) -> Result<(), LogError> {
        Ok(())
    }

    fn end_offset(&self, partition: u32) -> u64 {
        self.partition(partition).map_or(0, |p| p.end.load(Ordering::Acquire))
    }
}

/// Fetches records in offset order; called on the pipeline's reader thread.
///
/// A fetch returns whole produced batches, which may hold more records than one poll takes:
/// the rest wait in `buffered`, so the next fetch starts at a batch boundary again. Some
/// brokers (tansu among them) answer a fetch that starts *inside* a batch with nothing, or
/// with the batch after it; the reader then looks back for the batch that holds the offset.
struct KafkaReader {
    target: Arc<KafkaTarget>,
    id: i32,
    /// The reader's own connection (see the module docs), opened by the first fetch.
    connection: Option<PartitionClient>,
    runtime: Handle,
    end: Arc<AtomicU64>,
    next: u64,
    buffered: VecDeque<Record>,
}

impl KafkaReader {
    fn connection(&mut self) -> Result<&PartitionClient, LogError> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => self.runtime.block_on(partition_connection(&self.target, self.id))?,
        };
        Ok(self.connection.insert(connection))
    }

    /// Records from `from` on, as fetched (possibly from before `from`), and the high watermark.
    fn fetch(&mut self, from: u64, wait: Duration) -> Result<Vec<Record>, LogError> {
        let start = i64::try_from(from).map_err(broker_error)?;
        let wait_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        let runtime = self.runtime.clone();
        let connection = self.connection()?;
        let (fetched, high_watermark) =
            runtime.block_on(connection.fetch_records(start, 1..MAX_FETCH_BYTES, wait_ms)).map_err(broker_error)?;
        self.end.fetch_max(offset(high_watermark)?, Ordering::AcqRel);
        fetched
            .into_iter()
            .map(|r| Ok(Record { offset: offset(r.offset)?, payload: r.record.value.unwrap_or_default() }))
            .collect()
    }

    /// Fills `buffered` with records from `self.next` on, if any arrive within `wait`.
    fn refill(&mut self, wait: Duration) -> Result<(), LogError> {
        let mut records = self.fetch(self.next, wait)?;
        let holds_next = |records: &[Record], next: u64| records.iter().any(|r| r.offset == next);
        // Nothing (or a later batch) although the offset exists: it lies inside a batch the
        // broker would not split. Look back, doubling the step, for a fetch that includes it.
        let mut step = 1;
        while !holds_next(&records, self.next) && self.next < self.end.load(Ordering::Acquire) && step <= self.next {
            records = self.fetch(self.next - step, Duration::ZERO)?;
            step *= 2;
        }
        if !holds_next(&records, self.next) && step > self.next && self.next > 0 {
            records = self.fetch(0, Duration::ZERO)?;
        }
        let next = self.next;
        self.buffered.extend(records.into_iter().filter(|r| r.offset >= next));
        Ok(())
    }
}

impl BusReader for KafkaReader {
    fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError> {
        if self.buffered.is_empty() {
            self.refill(wait)?;
        }
        let records: Vec<Record> = self.buffered.drain(..max.min(self.buffered.len())).collect();
        if let Some(last) = records.last() {
            self.next = last.offset + 1;
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use rskafka::record::Record as KafkaRecord;
    use tokio::sync::oneshot;

    use super::{kafka_partition, next_request, KafkaTarget, PendingShare, DEFAULT_PARTITIONS, MAX_PRODUCE_BYTES};

    #[test]
    fn targets_parse_and_bad_ones_are_named() {
        let target = KafkaTarget::parse("kafka://127.0.0.1:9092,b2:9093/vexil.events").unwrap();
        assert_eq!(target.brokers, ["127.0.0.1:9092", "b2:9093"]);
        assert_eq!(target.topic, "vexil.events");
        assert_eq!(target.partitions, DEFAULT_PARTITIONS);
        assert_eq!(KafkaTarget::parse("kafka://h:1/t?partitions=3").unwrap().partitions, 3);
        assert!(KafkaTarget::parse("http://h:1/t").unwrap_err().contains("kafka://"));
        assert!(KafkaTarget::parse("kafka://h:1").unwrap_err().contains("topic"));
        assert!(KafkaTarget::parse("kafka://h/t").unwrap_err().contains("host:port"));
        assert!(KafkaTarget::parse("kafka://h:1/a b").unwrap_err().contains("topic name"));
        assert!(KafkaTarget::parse("kafka://h:1/t?partitions=0").unwrap_err().contains("partitions must be"));
        assert!(KafkaTarget::parse("kafka://h:1/t?partitions=x").unwrap_err().contains("partitions must be"));
        assert!(KafkaTarget::parse("kafka://h:1/t?acks=1").unwrap_err().contains("unknown option"));
    }

    /// Golden values of Kafka's default partitioner: the murmur2 hashes are those of Kafka's
    /// own `UtilsTest.testMurmur2` (as signed 32-bit integers) and agree with kafka-python's
    /// `murmur2`; partitions are `(hash & 0x7fffffff) % n`.
    #[test]
    fn keys_go_where_kafkas_default_partitioner_puts_them() {
        let hashes: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (key, hash) in hashes {
            assert_eq!(murmur2::murmur2(key, murmur2::KAFKA_SEED) as i32, hash, "{}", String::from_utf8_lossy(key));
            assert_eq!(kafka_partition(key, 1 << 31), (hash & 0x7fff_ffff) as u32);
        }
        let partitions: [(&[u8], u32, u32); 7] = [
            (b"21", 4, 0),
            (b"foobar", 6, 0),
            (b"a-little-bit-long-string", 0, 2),
            (b"user_123", 7, 2),
            (b"u-0", 5, 1),
            (b"u-42", 1, 1),
            (b"", 1, 0),
        ];
        for (key, of_8, of_3) in partitions {
            assert_eq!((kafka_partition(key, 8), kafka_partition(key, 3)), (of_8, of_3));
        }
    }

    /// Shares of records whose values are `sizes` bytes, each named by its share and position.
    fn shares(sizes: &[&[usize]]) -> VecDeque<PendingShare> {
        let share = |(n, sizes): (usize, &&[usize])| {
            let records = sizes.iter().enumerate().map(|(i, &size)| {
                let mut value = format!("{n}.{i} ").into_bytes();
                value.resize(size, b'x');
                KafkaRecord {
                    key: None,
                    value: Some(value),
                    headers: Default::default(),
                    timestamp: Default::default(),
                }
            });
            PendingShare { records: records.collect(), acknowledged: oneshot::channel().0 }
        };
        sizes.iter().enumerate().map(share).collect()
    }

    fn names(records: &[KafkaRecord]) -> Vec<String> {
        let name = |r: &KafkaRecord| {
            String::from_utf8_lossy(r.value.as_deref().unwrap()).split(' ').next().unwrap().to_owned()
        };
        records.iter().map(name).collect()
    }

    #[test]
    fn a_request_takes_whole_shares_in_order_and_splits_the_one_that_does_not_fit() {
        let third = MAX_PRODUCE_BYTES / 3;
        // Shares 0 and 1 fit whole; share 2's first record fits, its second does not.
        let mut pending = shares(&[&[third, 100], &[third], &[100, third], &[10]]);
        let request = next_request(&mut pending);
        assert_eq!(names(&request.records), ["0.0", "0.1", "1.0", "2.0"]);
        assert_eq!((request.completed, request.carried), (2, 3));
        assert_eq!(pending[2].records.len(), 1, "the rest of share 2 waits");

        // The writer drops the completed shares; the next request goes on where this one stopped.
        pending.drain(..request.completed);
        let request = next_request(&mut pending);
        assert_eq!(names(&request.records), ["2.1", "3.0"]);
        assert_eq!((request.completed, request.carried), (2, 2));
    }

    #[test]
    fn a_request_stops_at_a_share_boundary_and_always_carries_its_first_record() {
        let half = MAX_PRODUCE_BYTES / 2 + 1;
        // Share 1 does not fit behind share 0: nothing of it goes, so it is not carried.
        let mut pending = shares(&[&[half], &[half], &[2 * MAX_PRODUCE_BYTES]]);
        let request = next_request(&mut pending);
        assert_eq!(names(&request.records), ["0.0"]);
        assert_eq!((request.completed, request.carried), (1, 1));
        pending.drain(..1);
        assert_eq!(names(&next_request(&mut pending).records), ["1.0"]);
        pending.drain(..1);
        // A record larger than a request goes alone; the broker judges it.
        let request = next_request(&mut pending);
        assert_eq!(names(&request.records), ["2.0"]);
        assert_eq!((request.completed, request.carried), (1, 1));
    }
}
