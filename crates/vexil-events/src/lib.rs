//! The event pipeline of vexil (SPEC 1.4 and 5), as a library the server wires to HTTP.
//!
//! Stages, each in the module of its name:
//!
//! - [`event`]: the event model and its validation;
//! - [`ingest`]: request bodies (JSON array, `{"events"}`, NDJSON, Kinesis) → validated events
//!   → the durable log, with partial acceptance;
//! - [`log`]: the durable append-only log with group commit, behind the [`EventBus`] trait;
//! - [`dlq`]: the dead-letter queue (list, replay, purge);
//! - [`pipeline`]: the consumer loop that reads each log partition it holds through bounded
//!   queues and runs each event through [`dedupe`] → [`enrich`] → [`aggregate`] → [`archive`]
//!   → [`counters`], then commits the batch with its checkpoint, with retries, backoff and
//!   poison handling; the stages are each in the module of their name and called in that
//!   order in one place (`pipeline/stages.rs`);
//! - [`store`]: where the processing state is kept, per log partition, and which partitions
//!   a node processes; [`sqlite`] is the embedded mode's;
//! - [`tracking`]: flag evaluation counts and raw evaluation events, never blocking an evaluation;
//! - [`metrics`]: the atomic counters the server exposes;
//! - [`backlog`]: what no node has processed yet on a bus the nodes share, for ingest's 429;
//! - [`environment`]: how each environment's events are kept apart in the shared state.
//!
//! `docs/events.md` explains the design and the exactly-once argument.

pub mod aggregate;
pub mod archive;
mod background;
pub mod backlog;
pub mod counters;
pub mod dedupe;
pub mod dlq;
mod durable;
pub mod enrich;
pub mod environment;
mod error;
pub mod event;
pub mod ingest;
pub mod log;
pub mod metrics;
pub mod pipeline;
pub mod sqlite;
pub mod store;
pub mod tracking;

pub use dlq::{Dlq, DlqEntry, DlqFilter, DlqLimits, DlqStage};
pub use error::Error;
pub use event::{Event, EventError, EventType};
pub use ingest::{BodyFormat, IngestError, IngestOptions, IngestResponse, Ingestor, KinesisResponse, ReplayReport};
pub use log::{BusReader, BusRecord, EventBus, FileLog, LogError, LogOptions};
pub use metrics::Metrics;
