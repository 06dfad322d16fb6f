//! The live configuration: an immutable, compiled [`Snapshot`] of every flag and segment,
//! swapped atomically (arc-swap) when the store's revision moves.
//!
//! Evaluation never reads the store: it loads the current snapshot (a few nanoseconds, no
//! lock) and evaluates against it. A background task follows [`ConfigStore::watch`], which
//! reports changes made by this process at once and by other processes (another node, the CLI)
//! within a second, rebuilds the snapshot and publishes it. A rebuild that fails to compile
//! (possible only when two nodes race conflicting writes) keeps the previous snapshot and is
//! counted in `vexil_config_reloads_total{result="error"}`. Active emergency stops (documents
//! of their own) are overlaid on the compiled flags here, so a stop never changes a flag.

use crate::metrics::{FlagCounters, Metrics};
use crate::service::experiments::Experiments;
use arc_swap::{ArcSwap, Guard};
use axum::body::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vexil_core::{FlagSet, ValidationErrors};
use vexil_store::{EntityKind, ShownDocument, Store, StoreError};

/// Each flag's evaluation counters, looked up on every evaluation by a key from the
/// configuration (never from a client), so with the fast seeded hasher.
type FlagCounterMap = HashMap<String, FlagCounters, foldhash::fast::RandomState>;

/// One consistent view of the configuration at a store revision.
pub struct Snapshot {
    pub flags: FlagSet,
    pub revision: u64,
    /// Whether this snapshot was loaded from the store (the empty placeholder is not).
    pub loaded: bool,
    pub built_at: Instant,
    /// Flags and segments as the API shows them, by (kind, key), with the flags under an
    /// emergency stop shown `enabled: false`: the SDK document and the base of the stream's diffs.
    /// Kept serialised: as `Value`s (a B-tree node per object) they took about 13 KB per flag.
    pub documents: BTreeMap<(EntityKind, String), Box<RawValue>>,
    /// `{"flags": [...], "segments": [...]}`, serialised once for `GET /v1/sdk/flags` and SSE.
    pub sdk_document: Bytes,
    /// The compiled experiments, so assignment never reads configuration from the store.
    pub experiments: Experiments,
    counters: FlagCounterMap,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored configuration does not compile:\n{0}")]
    Invalid(ValidationErrors),
}

impl Snapshot {
    /// The placeholder served until the first load succeeds (`/ready` says 503 meanwhile).
    pub fn unloaded() -> Snapshot {
        Snapshot::build(0, false, BTreeMap::new(), FlagSet::empty(), &FlagCounterMap::default())
    }

    fn build(
        revision: u64,
        loaded: bool,
        documents: BTreeMap<(EntityKind, String), Box<RawValue>>,
        flags: FlagSet,
        counters: &FlagCounterMap,
    ) -> Snapshot {
        #[derive(Serialize)]
        struct SdkDocument<'a> {
            flags: Vec<&'a RawValue>,
            segments: Vec<&'a RawValue>,
        }
        let of_kind = |kind: EntityKind| {
            documents.iter().filter(move |((k, _), _)| *k == kind).map(|(_, v)| v.as_ref()).collect()
        };
        let sdk = SdkDocument { flags: of_kind(EntityKind::Flag), segments: of_kind(EntityKind::Segment) };
        let counters = flags.flags().filter_map(|f| Some((f.key.clone(), counters.get(&f.key)?.clone()))).collect();
        Snapshot {
            flags,
            revision,
            loaded,
            built_at: Instant::now(),
            experiments: Experiments::default(),
            sdk_document: Bytes::from(serde_json::to_vec(&sdk).expect("JSON values serialise")),
            documents,
            counters,
        }
    }

    /// Reads flags and segments at one revision and compiles them. The two lists are read
    /// separately, so the revision is checked around them and the read retried if a change
    /// slipped in between.
    pub async fn load(store: &dyn Store, metrics: &Metrics) -> Result<Snapshot, LoadError> {
        let mut attempts = 0;
        loop {
            let revision = store.revision().await?;
            let flags = store.list_shown(EntityKind::Flag).await?;
            let segments = store.list_shown(EntityKind::Segment).await?;
            let experiments = store.list(EntityKind::Experiment).await?;
            let stops = store.list(EntityKind::EmergencyStop).await?;
            attempts += 1;
            if store.revision().await? != revision && attempts < 5 {
                continue;
            }
            // Kept as text, and parsed one document at a time to compile: ten thousand flags as
            // `Value`s take about 120 MB, and every copy of them raised the peak of a load.
            let mut compiled = FlagSet::from_items(parsed(&flags), parsed(&segments)).map_err(LoadError::Invalid)?;
            let mut documents: BTreeMap<_, _> = flags
                .into_iter()
                .map(|d| ((EntityKind::Flag, d.key), d.json))
                .chain(segments.into_iter().map(|d| ((EntityKind::Segment, d.key), d.json)))
                .collect();
            let stops: Vec<_> = stops.iter().filter_map(crate::service::safety::stops::Stop::from_document).collect();
            compiled.set_stopped(|flag| stops.iter().any(|stop| stop.covers(flag)));
            // SDKs evaluate the documents themselves: a stopped flag is served disabled there too.
            for key in crate::service::safety::stops::stopped_flags(&stops, &compiled) {
                if let Some(document) = documents.get_mut(&(EntityKind::Flag, key)) {
                    let mut shown: Value = serde_json::from_str(document.get()).expect("stored as JSON");
                    shown["enabled"] = Value::Bool(false);
                    *document = raw(&shown);
                }
            }
            let counters = compiled.flags().map(|f| (f.key.clone(), metrics.flag_counters(&f.key))).collect();
            let compiled_experiments =
                crate::service::experiments::compile(&compiled, experiments.iter().map(|d| &d.body))
                    .map_err(LoadError::Invalid)?;
            let experiments =
                Experiments::new(&compiled, experiments.iter().map(|d| d.id.clone()).zip(compiled_experiments));
            return Ok(Snapshot { experiments, ..Snapshot::build(revision, true, documents, compiled, &counters) });
        }
    }

    /// Counts one evaluation of `flag` for `/metrics`.
    pub fn count(&self, flag: &str, reason: vexil_core::Reason) {
        if let Some(counters) = self.counters.get(flag) {
            counters.count(reason);
        }
    }

    pub fn sdk_document_text(&self) -> &str {
        std::str::from_utf8(&self.sdk_document).expect("serde_json writes UTF-8")
    }
}

/// The documents as JSON values, parsed one at a time as the compiler takes them.
fn parsed(documents: &[ShownDocument]) -> impl Iterator<Item = Value> + '_ {
    documents.iter().map(|d| serde_json::from_str(d.json.get()).expect("the store lists JSON text"))
}

fn raw(document: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(document).expect("JSON values serialise")
}

/// A change between two snapshots, as the SDK stream sends it.
#[derive(Debug, Clone)]
pub enum Change<'a> {
    /// Created or updated: the document as the API shows it.
    Patch {
        kind: EntityKind,
        key: &'a str,
        object: &'a RawValue,
    },
    Delete {
        kind: EntityKind,
        key: &'a str,
    },
}

/// What changed from `old` to `new`: segments before flags among the patches (a flag may
/// start referring to a new segment), flags before segments among the deletes. Documents are
/// compared whole, not by version: a stop or a resume changes a flag's document and not its
/// version.
pub fn diff<'a>(old: &'a Snapshot, new: &'a Snapshot) -> Vec<Change<'a>> {
    let mut patches: Vec<Change<'a>> = new
        .documents
        .iter()
        .filter(|(id, doc)| old.documents.get(*id).is_none_or(|old| old.get() != doc.get()))
        .map(|((kind, key), object)| Change::Patch { kind: *kind, key, object: object.as_ref() })
        .collect();
    patches.sort_by_key(|c| matches!(c, Change::Patch { kind: EntityKind::Flag, .. }));
    let mut deletes: Vec<Change<'a>> = old
        .documents
        .keys()
        .filter(|id| !new.documents.contains_key(*id))
        .map(|(kind, key)| Change::Delete { kind: *kind, key })
        .collect();
    deletes.sort_by_key(|c| matches!(c, Change::Delete { kind: EntityKind::Segment, .. }));
    patches.extend(deletes);
    patches
}

/// The current snapshot, the newest revision known to exist, and a channel for streams.
pub struct Snapshots {
    current: ArcSwap<Snapshot>,
    /// The store's latest revision as last reported by `watch`; a read of an older snapshot
    /// is counted as stale.
    latest_revision: AtomicU64,
    changes: watch::Sender<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
    /// One rebuild at a time, so an older snapshot is never published over a newer one.
    reloading: tokio::sync::Mutex<()>,
    /// Told about each snapshot before anyone can read it (see [`Snapshots::before_publish`]).
    hook: Option<PublishHook>,
}

/// Runs before a snapshot becomes readable.
pub type PublishHook = Box<dyn Fn(&Snapshot) + Send + Sync>;

impl Snapshots {
    pub fn new(initial: Snapshot, metrics: Arc<Metrics>) -> Snapshots {
        let initial = Arc::new(initial);
        Snapshots {
            latest_revision: AtomicU64::new(initial.revision),
            changes: watch::Sender::new(initial.clone()),
            current: ArcSwap::new(initial),
            metrics,
            reloading: tokio::sync::Mutex::new(()),
            hook: None,
        }
    }

    /// Calls `hook` with every later snapshot before it is published. The event pipeline learns
    /// a new experiment this way before any request can assign a user to it, so the first
    /// exposure is never processed without the experiment's metrics.
    pub fn before_publish(mut self, hook: PublishHook) -> Snapshots {
        self.hook = Some(hook);
        self
    }

    /// The snapshot for one evaluation request, counted as a hit or a stale read.
    pub fn read(&self) -> Guard<Arc<Snapshot>> {
        let snapshot = self.current.load();
        if snapshot.revision >= self.latest_revision.load(Ordering::Relaxed) {
            self.metrics.snapshot_hits.inc();
        } else {
            self.metrics.snapshot_stale_reads.inc();
        }
        snapshot
    }

    /// The snapshot, uncounted (SDK document, readiness, metrics).
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Every published snapshot, starting with the current one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.changes.subscribe()
    }

    fn publish(&self, snapshot: Snapshot) {
        if let Some(hook) = &self.hook {
            hook(&snapshot);
        }
        let snapshot = Arc::new(snapshot);
        self.current.store(snapshot.clone());
        self.changes.send_replace(snapshot);
    }

    /// Brings the snapshot up to the store's current revision before returning, so a client
    /// that changed the configuration through this node reads its own write.
    pub async fn catch_up(&self, store: &dyn Store) {
        match store.revision().await {
            Ok(revision) => {
                self.latest_revision.fetch_max(revision, Ordering::Relaxed);
                self.refresh(store).await;
            }
            Err(e) => tracing::error!(error = %e, "cannot read the store's revision"),
        }
    }

    /// Rebuilds the snapshot if the store has moved past it.
    pub async fn refresh(&self, store: &dyn Store) {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.current.load();
        if current.loaded && current.revision >= self.latest_revision.load(Ordering::Relaxed) {
            return;
        }
        match Snapshot::load(store, &self.metrics).await {
            Ok(snapshot) => {
                self.metrics.reloads_ok.inc();
                self.latest_revision.fetch_max(snapshot.revision, Ordering::Relaxed);
                tracing::info!(revision = snapshot.revision, flags = snapshot.flags.len(), "configuration loaded");
                self.publish(snapshot);
            }
            Err(e) => {
                self.metrics.reloads_failed.inc();
                tracing::error!(error = %e, "configuration reload failed; serving the previous snapshot");
            }
        }
    }

    /// Follows the store's revision until `shutdown`, refreshing on every move.
    pub async fn follow(self: Arc<Self>, store: Arc<dyn Store>, shutdown: CancellationToken) {
        let mut revisions = store.watch();
        loop {
            let revision = *revisions.borrow_and_update();
            self.latest_revision.fetch_max(revision, Ordering::Relaxed);
            self.refresh(store.as_ref()).await;
            tokio::select! {
                changed = revisions.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
    }
}
