//! The live configuration: an immutable, compiled [`Snapshot`] of every flag and segment,
//! swapped atomically (arc-swap) when the store's revision moves.
//!
//! Evaluation never reads the store: it loads the current snapshot (a few nanoseconds, no
//! lock) and evaluates against it. A background task follows [`ConfigStore::watch`], which
//! reports changes made by this process at once and by other processes (another node, the CLI)
//! within a second, brings the snapshot up to date and publishes it: patched with the store's
//! changes since its revision ([`ConfigStore::changes_since`](vexil_store::ConfigStore::changes_since)),
//! recompiling only what they affect and sharing every other compiled flag and document, or
//! loaded whole where the store cannot list changes. When nothing the snapshot holds changed
//! (another environment's documents did, or documents it does not hold, like change
//! requests), it is not rebuilt at all: its compiled flags, its SDK document and its revision
//! (which the SDK document's ETag and the streams' event ids name) stay as they are, and only
//! the store revision it is known to be current at moves. A rebuild that fails to compile
//! (possible only when two nodes race conflicting writes) keeps the previous snapshot and is
//! counted in `vexil_config_reloads_total{result="error"}`. Active emergency stops (documents
//! of their own) are overlaid on the compiled flags here, so a stop never changes a flag.

use crate::metrics::{FlagCounters, Metrics};
use crate::service::experiments::Experiments;
use arc_swap::{ArcSwap, Guard};
use axum::body::Bytes;
use imbl::ordmap::DiffItem;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vexil_core::{FlagSet, ValidationErrors};
use vexil_store::{DocumentChanges, EntityKind, ShownDocument, Store, StoreError, StoredDocument};

/// Each flag's evaluation counters, looked up on every evaluation by a key from the
/// configuration (never from a client), so with the fast seeded hasher.
type FlagCounterMap = HashMap<String, FlagCounters, foldhash::fast::RandomState>;

/// One consistent view of the configuration at a store revision.
pub struct Snapshot {
    pub flags: FlagSet,
    /// The store revision this configuration was read at. It names the configuration: the
    /// environment's configuration at one revision is one thing, so the same revision is the
    /// same configuration on any node. It stays while only other environments change.
    pub revision: u64,
    /// Whether this snapshot was loaded from the store (the empty placeholder is not).
    pub loaded: bool,
    pub built_at: Instant,
    /// Flags and segments as the API shows them, by (kind, key), with the flags under an
    /// emergency stop shown `enabled: false`: the SDK document and the base of the stream's diffs.
    /// Kept serialised: as `Value`s (a B-tree node per object) they took about 13 KB per flag.
    /// A persistent map: a patched snapshot shares it with the one before, all but the path
    /// to each changed document, so a write copies a few nodes rather than every entry.
    pub documents: Documents,
    /// The compiled experiments, so assignment never reads configuration from the store.
    pub experiments: Experiments,
    /// `{"flags": [...], "segments": [...]}` for `GET /v1/sdk/flags` and SSE, serialised on first
    /// use (a write does not pay for 10 MB of JSON nobody may ask for), and its gzip.
    sdk_document: OnceLock<Bytes>,
    sdk_document_gzip: OnceLock<Bytes>,
    counters: Arc<FlagCounterMap>,
    /// The stored experiments and emergency stops, which a patch compiles again.
    experiment_documents: Arc<Vec<StoredDocument>>,
    stop_documents: Arc<Vec<StoredDocument>>,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored configuration does not compile:\n{0}")]
    Invalid(ValidationErrors),
}

pub type Documents = imbl::OrdMap<(EntityKind, String), ShownText>;

/// A document as the API shows it, as JSON text, shared (`Arc`) by the snapshots that hold it.
/// Two are equal when they are shared or, failing that, when their texts are.
#[derive(Clone, Debug)]
pub struct ShownText(Arc<RawValue>);

impl From<Box<RawValue>> for ShownText {
    fn from(json: Box<RawValue>) -> ShownText {
        ShownText(Arc::from(json))
    }
}

impl std::ops::Deref for ShownText {
    type Target = RawValue;

    fn deref(&self) -> &RawValue {
        &self.0
    }
}

impl PartialEq for ShownText {
    fn eq(&self, other: &ShownText) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.get() == other.0.get()
    }
}

impl Snapshot {
    /// The placeholder served until the first load succeeds (`/ready` says 503 meanwhile).
    pub fn unloaded() -> Snapshot {
        Snapshot {
            flags: FlagSet::empty(),
            revision: 0,
            loaded: false,
            built_at: Instant::now(),
            documents: Documents::new(),
            experiments: Experiments::default(),
            sdk_document: OnceLock::new(),
            sdk_document_gzip: OnceLock::new(),
            counters: Arc::default(),
            experiment_documents: Arc::default(),
            stop_documents: Arc::default(),
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
            let compiled = FlagSet::from_items(parsed(&flags), parsed(&segments)).map_err(LoadError::Invalid)?;
            let documents: Documents = flags
                .into_iter()
                .map(|d| ((EntityKind::Flag, d.key), ShownText::from(d.json)))
                .chain(segments.into_iter().map(|d| ((EntityKind::Segment, d.key), ShownText::from(d.json))))
                .collect();
            let environment = store.environment();
            let counters =
                compiled.flags().map(|f| (f.key.clone(), metrics.flag_counters(environment, &f.key))).collect();
            return Snapshot::finish(
                revision,
                compiled,
                documents,
                None,
                Arc::new(counters),
                Arc::new(experiments),
                Arc::new(stops),
            );
        }
    }

    /// Overlays the stops, compiles the experiments and assembles the snapshot. `patched`:
    /// the flags whose documents are new (a patch), `None` for all (a load).
    fn finish(
        revision: u64,
        mut compiled: FlagSet,
        mut documents: Documents,
        patched: Option<&[String]>,
        counters: Arc<FlagCounterMap>,
        experiment_documents: Arc<Vec<StoredDocument>>,
        stop_documents: Arc<Vec<StoredDocument>>,
    ) -> Result<Snapshot, LoadError> {
        let stops: Vec<_> =
            stop_documents.iter().filter_map(crate::service::safety::stops::Stop::from_document).collect();
        compiled.set_stopped(|flag| stops.iter().any(|stop| stop.covers(flag)));
        // SDKs evaluate the documents themselves: a stopped flag is served disabled there too.
        let stopped = match patched {
            None => crate::service::safety::stops::stopped_flags(&stops, &compiled),
            Some(keys) => keys
                .iter()
                .filter(|key| compiled.get(key).is_some_and(|flag| stops.iter().any(|stop| stop.covers(flag))))
                .cloned()
                .collect(),
        };
        for key in stopped {
            if let Some(document) = documents.get_mut(&(EntityKind::Flag, key)) {
                let mut shown: Value = serde_json::from_str(document.get()).expect("stored as JSON");
                shown["enabled"] = Value::Bool(false);
                *document = ShownText::from(raw(&shown));
            }
        }
        let compiled_experiments =
            crate::service::experiments::compile(&compiled, experiment_documents.iter().map(|d| &d.body))
                .map_err(LoadError::Invalid)?;
        let experiments =
            Experiments::new(&compiled, experiment_documents.iter().map(|d| d.id.clone()).zip(compiled_experiments));
        Ok(Snapshot {
            flags: compiled,
            revision,
            loaded: true,
            built_at: Instant::now(),
            documents,
            experiments,
            sdk_document: OnceLock::new(),
            sdk_document_gzip: OnceLock::new(),
            counters,
            experiment_documents,
            stop_documents,
        })
    }

    /// This snapshot with the store's changes since its revision applied: only the changed
    /// flags and segments and what depends on them are compiled again (see
    /// [`FlagSet::with_changes`]), everything else is shared; [`Update::Unchanged`] when none
    /// of the changes is of what it holds. `None` when the emergency stops changed: a stop
    /// lifted from a flag needs the flag's stored document, so the caller loads everything.
    pub async fn patched(
        &self,
        store: &dyn Store,
        changes: DocumentChanges,
        metrics: &Metrics,
    ) -> Result<Option<Update>, LoadError> {
        let (mut flag_changes, mut segment_changes) = (Vec::new(), Vec::new());
        let mut documents = None;
        let mut experiments_changed = false;
        let mut patched = Vec::new();
        let changed = changes.changed.into_iter().map(|(kind, doc)| (kind, doc.key, Some(doc.json)));
        let deleted = changes.deleted.into_iter().map(|(kind, key)| (kind, key, None));
        for (kind, key, json) in changed.chain(deleted) {
            let target = match kind {
                EntityKind::Flag => &mut flag_changes,
                EntityKind::Segment => &mut segment_changes,
                EntityKind::Experiment => {
                    experiments_changed = true;
                    continue;
                }
                EntityKind::EmergencyStop => return Ok(None),
                _ => continue,
            };
            let documents = documents.get_or_insert_with(|| self.documents.clone());
            let id = (kind, key.clone());
            if kind == EntityKind::Flag {
                patched.push(key.clone());
            }
            match json {
                Some(json) => {
                    target.push((key, Some(serde_json::from_str(json.get()).expect("the store lists JSON text"))));
                    documents.insert(id, ShownText::from(json));
                }
                None => {
                    target.push((key, None));
                    documents.remove(&id);
                }
            }
        }
        if documents.is_none() && !experiments_changed {
            return Ok(Some(Update::Unchanged { revision: changes.revision }));
        }
        let compiled = self.flags.with_changes(flag_changes, segment_changes).map_err(LoadError::Invalid)?;
        let counters = if compiled.same_keys(&self.flags) {
            self.counters.clone()
        } else {
            let counters = compiled
                .flags()
                .map(|f| {
                    (
                        f.key.clone(),
                        self.counters
                            .get(&f.key)
                            .cloned()
                            .unwrap_or_else(|| metrics.flag_counters(store.environment(), &f.key)),
                    )
                })
                .collect();
            Arc::new(counters)
        };
        let experiment_documents = match experiments_changed {
            true => Arc::new(store.list(EntityKind::Experiment).await?),
            false => self.experiment_documents.clone(),
        };
        Snapshot::finish(
            changes.revision,
            compiled,
            documents.unwrap_or_else(|| self.documents.clone()),
            Some(&patched),
            counters,
            experiment_documents,
            self.stop_documents.clone(),
        )
        .map(|snapshot| Some(Update::Changed(Box::new(snapshot))))
    }

    /// The stored experiments this snapshot compiled.
    pub fn experiment_documents(&self) -> &[StoredDocument] {
        &self.experiment_documents
    }

    /// Counts one evaluation of `flag` for `/metrics`.
    pub fn count(&self, flag: &str, reason: vexil_core::Reason) {
        if let Some(counters) = self.counters.get(flag) {
            counters.count(reason);
        }
    }

    /// `{"flags": [...], "segments": [...]}`: the documents as SDKs read them, serialised once
    /// per snapshot, on first use.
    pub fn sdk_document(&self) -> Bytes {
        self.sdk_document
            .get_or_init(|| {
                #[derive(Serialize)]
                struct SdkDocument<'a> {
                    flags: Vec<&'a RawValue>,
                    segments: Vec<&'a RawValue>,
                }
                let of_kind = |kind: EntityKind| {
                    self.documents.iter().filter(|((k, _), _)| *k == kind).map(|(_, v)| &**v).collect()
                };
                let sdk = SdkDocument { flags: of_kind(EntityKind::Flag), segments: of_kind(EntityKind::Segment) };
                Bytes::from(serde_json::to_vec(&sdk).expect("JSON values serialise"))
            })
            .clone()
    }

    /// [`Snapshot::sdk_document`] gzip-compressed, once per snapshot, on first use: every client
    /// that accepts gzip is served the same bytes.
    pub fn sdk_document_gzip(&self) -> Bytes {
        self.sdk_document_gzip
            .get_or_init(|| {
                use std::io::Write;
                let document = self.sdk_document();
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(document.len() / 8),
                    flate2::Compression::default(),
                );
                encoder.write_all(&document).expect("writing to memory cannot fail");
                Bytes::from(encoder.finish().expect("writing to memory cannot fail"))
            })
            .clone()
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
    // imbl walks both maps in key order and skips the subtrees they share: a snapshot shares
    // all but the paths to its changed documents with the one before it.
    let (mut patches, mut deletes) = (Vec::new(), Vec::new());
    for item in old.documents.diff(&new.documents) {
        match item {
            DiffItem::Add((kind, key), object) | DiffItem::Update { new: ((kind, key), object), .. } => {
                patches.push(Change::Patch { kind: *kind, key, object })
            }
            DiffItem::Remove((kind, key), _) => deletes.push(Change::Delete { kind: *kind, key }),
        }
    }
    patches.sort_by_key(|c| matches!(c, Change::Patch { kind: EntityKind::Flag, .. }));
    deletes.sort_by_key(|c| matches!(c, Change::Delete { kind: EntityKind::Segment, .. }));
    patches.extend(deletes);
    patches
}

/// What bringing a snapshot up to the store's revision gives.
pub enum Update {
    /// Nothing the snapshot holds changed up to `revision`: it stays.
    Unchanged { revision: u64 },
    /// The snapshot that replaces it (boxed: a snapshot is large beside a revision).
    Changed(Box<Snapshot>),
}

/// The current snapshot, the newest revision known to exist, and a channel for streams.
pub struct Snapshots {
    current: ArcSwap<Snapshot>,
    /// The store's latest revision as last reported by `watch`; a read of a snapshot not known
    /// to be current at it is counted as stale.
    latest_revision: AtomicU64,
    /// The store revision the current snapshot is known to be current at: its own, or later
    /// when only what it does not hold changed since.
    current_at: AtomicU64,
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
            current_at: AtomicU64::new(initial.revision),
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
        if self.current_at.load(Ordering::Relaxed) >= self.latest_revision.load(Ordering::Relaxed) {
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

    /// The store revision the current snapshot is known to be current at (readiness and the
    /// `vexil_config_revision` gauge: a node behind its peers has not caught up).
    pub fn current_at(&self) -> u64 {
        self.current_at.load(Ordering::Relaxed)
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

    /// Brings the snapshot up to the store's revision if the store has moved past it: patched
    /// with the changes since its revision where the store lists them, loaded whole otherwise.
    pub async fn refresh(&self, store: &dyn Store) {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.current.load_full();
        if current.loaded && self.current_at() >= self.latest_revision.load(Ordering::Relaxed) {
            return;
        }
        match self.next(&current, store).await {
            Ok(Update::Unchanged { revision }) => {
                self.latest_revision.fetch_max(revision, Ordering::Relaxed);
                self.current_at.fetch_max(revision, Ordering::Relaxed);
            }
            Ok(Update::Changed(snapshot)) => {
                self.metrics.reloads_ok.inc();
                let revision = snapshot.revision;
                self.latest_revision.fetch_max(revision, Ordering::Relaxed);
                tracing::info!(revision, flags = snapshot.flags.len(), "configuration loaded");
                self.publish(*snapshot);
                self.current_at.fetch_max(revision, Ordering::Relaxed);
            }
            Err(e) => {
                self.metrics.reloads_failed.inc();
                tracing::error!(error = %e, "configuration reload failed; serving the previous snapshot");
            }
        }
    }

    /// What `current` becomes at the store's revision.
    async fn next(&self, current: &Snapshot, store: &dyn Store) -> Result<Update, LoadError> {
        if current.loaded {
            // A patch parses its changed documents all at once; a load parses one at a time, so
            // a large change (an import) reads everything rather than raise the peak of memory.
            let small = |c: &DocumentChanges| c.changed.len() + c.deleted.len() <= (current.flags.len() / 4).max(256);
            if let Some(changes) = store.changes_since(current.revision).await?.filter(small) {
                match current.patched(store, changes, &self.metrics).await {
                    Ok(Some(update)) => return Ok(update),
                    Ok(None) => {}
                    // Two nodes raced conflicting writes; the whole stored configuration decides.
                    Err(e) => tracing::warn!(error = %e, "patching the configuration failed; loading it whole"),
                }
            }
        }
        Snapshot::load(store, &self.metrics).await.map(|snapshot| Update::Changed(Box::new(snapshot)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_documents(documents: &[(EntityKind, &str, &str)]) -> Snapshot {
        let mut snapshot = Snapshot::unloaded();
        snapshot.documents = documents
            .iter()
            .map(|(kind, key, json)| {
                ((*kind, key.to_string()), ShownText::from(RawValue::from_string(json.to_string()).unwrap()))
            })
            .collect();
        snapshot
    }

    fn described(changes: &[Change<'_>]) -> Vec<String> {
        changes
            .iter()
            .map(|change| match change {
                Change::Patch { kind, key, object } => format!("patch {kind} {key} {}", object.get()),
                Change::Delete { kind, key } => format!("delete {kind} {key}"),
            })
            .collect()
    }

    #[test]
    fn diff_lists_patches_segments_first_then_deletes_flags_first() {
        use EntityKind::{Flag, Segment};
        let old = with_documents(&[
            (Flag, "a", "1"),
            (Flag, "b", "2"),
            (Flag, "gone", "3"),
            (Segment, "kept", "4"),
            (Segment, "old", "5"),
        ]);
        let mut new = with_documents(&[
            (Flag, "a", "1"),
            (Flag, "b", "20"),
            (Flag, "new", "6"),
            (Segment, "added", "7"),
            (Segment, "kept", "4"),
        ]);
        // A document shared with the old snapshot is unchanged without comparing its text.
        let shared = old.documents[&(Segment, "kept".to_string())].clone();
        new.documents.insert((Segment, "kept".to_string()), shared);
        assert_eq!(
            described(&diff(&old, &new)),
            ["patch segment added 7", "patch flag b 20", "patch flag new 6", "delete flag gone", "delete segment old",]
        );
        assert!(diff(&new, &new).is_empty());
        assert_eq!(described(&diff(&Snapshot::unloaded(), &old)).len(), 5);
        assert_eq!(described(&diff(&old, &Snapshot::unloaded())).len(), 5);
    }
}
