//! The engines of vexil's distributed mode, behind the event pipeline's own traits so the
//! pipeline runs unchanged on them (SPEC §8):
//!
//! - [`kafka::KafkaBus`], an [`EventBus`](vexil_events::EventBus) on the partitions of a topic
//!   of any Kafka-protocol broker (`--event-bus kafka://host:port/topic`), events keyed by user;
//! - [`processing::PostgresBackend`], a [`ProcessingBackend`](vexil_events::store::ProcessingBackend) keeping
//!   every partition's processing state in the shared PostgreSQL database, with the
//!   [`group`] that shares the partitions among the live nodes and fences a node that lost one;
//! - [`s3::S3Archive`], an [`ArchiveStore`](vexil_events::archive::ArchiveStore) on any
//!   S3-compatible object store (`--archive-url s3://bucket/prefix`), one prefix for all nodes.
//!
//! The clients are async; the pipeline's traits are called from its own threads, so each keeps
//! a handle on the tokio runtime it was created in and blocks on it there.

pub mod group;
pub mod kafka;
pub mod processing;
pub mod s3;
