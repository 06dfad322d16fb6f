//! An [`EventBus`] on partition 0 of a Kafka topic, with `rskafka` (pure Rust; `rdkafka` would
//! build librdkafka from C sources on every fresh CI machine).
//!
//! - **append** produces the batch in one request and returns once the broker acknowledged it
//!   (`acks = all`, rskafka's setting): the offsets it returns are the broker's.
//! - **reader** fetches from an offset with long polling.
//! - The topic has one partition, so every event keeps its place in one total order, a user's
//!   events included, and a record's offset means the same on every node. Each node's pipeline
//!   reads the whole topic into its own processing state (deduplicated by `event_id`,
//!   checkpointed in the same commit as its aggregates), so every node holds the complete,
//!   exactly-once aggregates and answers results for all events, whichever node took them.
//! - **commit** does nothing. Retention is the broker's (`retention.ms` of the topic) rather
//!   than the consumers': deleting records one node has processed would take them from the
//!   others. The pipeline's durable checkpoint is in its state database.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record as KafkaRecord;
use tokio::runtime::Handle;
use vexil_events::log::Record;
use vexil_events::{BusReader, BusRecord, EventBus, LogError};

/// The partition every event goes to (see the module docs).
const PARTITION: i32 = 0;

/// How long a new topic's leader may take to be elected before the first request.
const CREATE_TIMEOUT_MS: i32 = 5_000;

/// The most bytes one fetch asks for: with at most 2,000 records per poll and events of at
/// most 64 KiB, typical batches of small events fit in one response.
const MAX_FETCH_BYTES: i32 = 8 * 1024 * 1024;

/// Where `--event-bus kafka://host:port/topic` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTarget {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    pub topic: String,
}

impl KafkaTarget {
    /// Parses `kafka://host:port[,host:port…]/topic`.
    pub fn parse(url: &str) -> Result<KafkaTarget, String> {
        let rest = url.strip_prefix("kafka://").ok_or("must start with kafka://")?;
        let (hosts, topic) = rest.split_once('/').ok_or("must name a topic: kafka://host:port/topic")?;
        let brokers: Vec<String> = hosts.split(',').filter(|h| !h.is_empty()).map(str::to_owned).collect();
        if brokers.is_empty() || brokers.iter().any(|b| !b.contains(':')) {
            return Err("must name brokers as host:port".into());
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if topic.is_empty() || topic.len() > 249 || !topic.chars().all(valid) {
            return Err(format!("{topic:?} is not a Kafka topic name (letters, digits, . _ -)"));
        }
        Ok(KafkaTarget { brokers, topic: topic.to_owned() })
    }
}

fn broker_error(e: impl std::fmt::Display) -> LogError {
    LogError::Io(io::Error::other(format!("Kafka: {e}")))
}

/// A Kafka topic as the pipeline's durable log.
pub struct KafkaBus {
    partition: Arc<PartitionClient>,
    runtime: Handle,
    /// The next offset known to exist: raised by appends and by each fetch's high watermark.
    end: Arc<AtomicU64>,
}

impl KafkaBus {
    /// Connects, creating the topic (one partition, `replication` copies) if it does not exist.
    /// Must run inside the tokio runtime that will carry the bus's requests.
    pub async fn connect(target: &KafkaTarget, replication: i16) -> Result<KafkaBus, LogError> {
        let client =
            ClientBuilder::new(target.brokers.clone()).client_id("vexil").build().await.map_err(broker_error)?;
        let topics = client.list_topics().await.map_err(broker_error)?;
        if !topics.iter().any(|t| t.name == target.topic) {
            let controller = client.controller_client().map_err(broker_error)?;
            // Another node may create it at the same moment; its creation is as good as ours.
            if let Err(e) = controller.create_topic(&target.topic, 1, replication, CREATE_TIMEOUT_MS).await {
                let exists = client.list_topics().await.map_err(broker_error)?.iter().any(|t| t.name == target.topic);
                if !exists {
                    return Err(broker_error(e));
                }
            }
        }
        let partition = client
            .partition_client(&target.topic, PARTITION, UnknownTopicHandling::Retry)
            .await
            .map_err(broker_error)?;
        let end = partition.get_offset(OffsetAt::Latest).await.map_err(broker_error)?;
        Ok(KafkaBus {
            partition: Arc::new(partition),
            runtime: Handle::current(),
            end: Arc::new(AtomicU64::new(offset(end)?)),
        })
    }
}

fn offset(value: i64) -> Result<u64, LogError> {
    u64::try_from(value).map_err(|_| broker_error(format!("negative offset {value}")))
}

#[async_trait::async_trait]
impl EventBus for KafkaBus {
    fn partitions(&self) -> u32 {
        1
    }

    async fn append(&self, records: Vec<BusRecord>) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now();
        let batch = records
            .into_iter()
            .map(|r| KafkaRecord { key: None, value: Some(r.payload), headers: Default::default(), timestamp: now })
            .collect();
        // Returns once the broker acknowledged the whole batch (acks = all).
        let offsets = self.partition.produce(batch, Compression::NoCompression).await.map_err(broker_error)?;
        let last = offset(*offsets.last().expect("one offset per record"))?;
        self.end.fetch_max(last + 1, Ordering::AcqRel);
        Ok(())
    }

    fn reader(&self, _partition: u32, offset: u64) -> Result<Box<dyn BusReader>, LogError> {
        Ok(Box::new(KafkaReader {
            partition: Arc::clone(&self.partition),
            runtime: self.runtime.clone(),
            end: Arc::clone(&self.end),
            next: offset,
            buffered: VecDeque::new(),
        }))
    }

    /// Nothing to do: the pipeline's durable position is its checkpoint, and retention is the
    /// broker's (see the module docs).
    fn commit(&self, _partition: u32, _consumer: &str, _offset: u64) -> Result<(), LogError> {
        Ok(())
    }

    fn end_offset(&self, _partition: u32) -> u64 {
        self.end.load(Ordering::Acquire)
    }
}

/// Fetches records in offset order; called on the pipeline's reader thread.
///
/// A fetch returns whole produced batches, which may hold more records than one poll takes:
/// the rest wait in `buffered`, so the next fetch starts at a batch boundary again. Some
/// brokers (tansu among them) answer a fetch that starts *inside* a batch with nothing, or
/// with the batch after it; the reader then looks back for the batch that holds the offset.
struct KafkaReader {
    partition: Arc<PartitionClient>,
    runtime: Handle,
    end: Arc<AtomicU64>,
    next: u64,
    buffered: VecDeque<Record>,
}

impl KafkaReader {
    /// Records from `from` on, as fetched (possibly from before `from`), and the high watermark.
    fn fetch(&self, from: u64, wait: Duration) -> Result<Vec<Record>, LogError> {
        let start = i64::try_from(from).map_err(broker_error)?;
        let wait_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        let (fetched, high_watermark) = self
            .runtime
            .block_on(self.partition.fetch_records(start, 1..MAX_FETCH_BYTES, wait_ms))
            .map_err(broker_error)?;
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
    use super::KafkaTarget;

    #[test]
    fn targets_parse_and_bad_ones_are_named() {
        let target = KafkaTarget::parse("kafka://127.0.0.1:9092,b2:9093/vexil.events").unwrap();
        assert_eq!(target.brokers, ["127.0.0.1:9092", "b2:9093"]);
        assert_eq!(target.topic, "vexil.events");
        assert!(KafkaTarget::parse("http://h:1/t").unwrap_err().contains("kafka://"));
        assert!(KafkaTarget::parse("kafka://h:1").unwrap_err().contains("topic"));
        assert!(KafkaTarget::parse("kafka://h/t").unwrap_err().contains("host:port"));
        assert!(KafkaTarget::parse("kafka://h:1/a b").unwrap_err().contains("topic name"));
    }
}
