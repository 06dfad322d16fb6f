//! The engines of vexil's distributed mode, behind the event pipeline's own traits so the
//! pipeline runs unchanged on them (SPEC §8):
//!
//! - [`kafka::KafkaBus`], an [`EventBus`](vexil_events::EventBus) on a topic of any
//!   Kafka-protocol broker (`--event-bus kafka://host:port/topic`);
//! - [`s3::S3Archive`], an [`ArchiveStore`](vexil_events::archive::ArchiveStore) on any
//!   S3-compatible object store (`--archive-url s3://bucket/prefix`).
//!
//! Both clients are async; the pipeline's traits are called from its own threads, so each
//! keeps a handle on the tokio runtime it was created in and blocks on it there.

pub mod kafka;
pub mod s3;
