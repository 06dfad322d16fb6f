//! The stored flags and segments as one candidate document, for checks that need the whole
//! set: a write is valid only if the set *after* it still compiles (unknown segments,
//! prerequisite cycles, a variant a prerequisite names), a segment or flag can be deleted only
//! if nothing refers to it, and an import is validated and applied as one batch.
//!
//! Bodies are stored in canonical form (decoded and serialised again): aliases become
//! canonical operator names and defaults are filled in, as SPEC 1.2 asks.

use crate::service::environments::Environment;
use crate::service::snapshot::Snapshot;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use vexil_core::decode::{decode_flag, decode_segment};
use vexil_core::experiment::decode_experiment;
use vexil_core::model::{Flag, Meta, Serve};
use vexil_core::{FlagSet, ValidationError, ValidationErrors};
use vexil_store::{ChangeMeta, EntityKind, Store, StoreError, Write};

/// The name of a kind's collection in a flags file and in URLs: `flags`, `segments`.
pub fn collection(kind: EntityKind) -> String {
    format!("{kind}s")
}

/// Decodes a flag, segment or experiment and returns its canonical body, without
/// server-managed fields.
/// Written documents must also stay within [`vexil_core::bounds`].
pub fn canonical(kind: EntityKind, value: &Value) -> Result<Value, ValidationErrors> {
    let problems = vexil_core::bounds::document_problems(value);
    if !problems.is_empty() {
        return Err(ValidationErrors(problems));
    }
    let strip = |meta: &mut Meta| {
        meta.id = None;
        meta.version = None;
        meta.created_at = None;
        meta.updated_at = None;
    };
    let body = match kind {
        EntityKind::Experiment => return crate::service::experiments::canonical(value),
        EntityKind::Segment => decode_segment(value).map(|mut s| {
            strip(&mut s.meta);
            serde_json::to_value(s)
        })?,
        _ => decode_flag(value).map(|mut f| {
            strip(&mut f.meta);
            serde_json::to_value(f)
        })?,
    };
    Ok(body.expect("the model serialises"))
}

/// A stored item: its canonical body and version.
#[derive(Debug, Clone)]
struct Item {
    body: Value,
    version: u64,
}

/// Every stored flag, segment and experiment, by kind and key.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    items: BTreeMap<(EntityKind, String), Item>,
}

impl Catalog {
    pub async fn load(store: &dyn Store) -> Result<Catalog, StoreError> {
        let mut items = BTreeMap::new();
        for kind in [EntityKind::Flag, EntityKind::Segment, EntityKind::Experiment] {
            for doc in store.list(kind).await? {
                items.insert((kind, doc.key), Item { body: doc.body, version: doc.version });
            }
        }
        Ok(Catalog { items })
    }

    /// The catalog with one item set (`Some`) or removed (`None`).
    pub fn with(mut self, kind: EntityKind, key: &str, body: Option<Value>) -> Catalog {
        match body {
            Some(body) => {
                let version = self.version(kind, key).unwrap_or(0);
                self.items.insert((kind, key.to_string()), Item { body, version });
            }
            None => {
                self.items.remove(&(kind, key.to_string()));
            }
        }
        self
    }

    pub fn version(&self, kind: EntityKind, key: &str) -> Option<u64> {
        self.items.get(&(kind, key.to_string())).map(|i| i.version)
    }

    pub fn body(&self, kind: EntityKind, key: &str) -> Option<&Value> {
        self.items.get(&(kind, key.to_string())).map(|i| &i.body)
    }

    /// The flags file of this catalog (SPEC 1.5), without server-managed fields.
    pub fn document(&self) -> Value {
        let of = |kind: EntityKind| self.bodies(kind).cloned().collect::<Vec<_>>();
        json!({"flags": of(EntityKind::Flag), "segments": of(EntityKind::Segment)})
    }

    fn bodies(&self, kind: EntityKind) -> impl Iterator<Item = &Value> {
        self.items.iter().filter(move |((k, _), _)| *k == kind).map(|(_, i)| &i.body)
    }

    /// Compiles the whole catalog, experiments included; the problems carry document paths
    /// (`flags.a.rules[0]`, `experiments.b.targeting`).
    pub fn compile(&self) -> Result<FlagSet, ValidationErrors> {
        // Item by item: the whole catalog as one more document of JSON values was the peak of a write.
        let flags =
            FlagSet::from_items(self.bodies(EntityKind::Flag).cloned(), self.bodies(EntityKind::Segment).cloned())?;
        crate::service::experiments::compile(&flags, self.bodies(EntityKind::Experiment))?;
        Ok(flags)
    }

    /// Checks the catalog after a write of `kind`/`key`: problems inside that item get paths
    /// relative to it (as the client posted it), problems elsewhere keep their document path.
    pub fn check_write(&self, kind: EntityKind, key: &str) -> Result<(), ValidationErrors> {
        self.compile().map(drop).map_err(|problems| relative_to(problems, kind, key))
    }

    /// Who refers to a flag (as a prerequisite), a segment (in a condition) or an experiment
    /// (a flag serving it), as `flag new_checkout` / `segment beta` / `experiment checkout`.
    pub fn referrers(&self, kind: EntityKind, key: &str) -> Vec<String> {
        let mut found = Vec::new();
        for ((item_kind, item_key), item) in &self.items {
            let refers = match (kind, item_kind) {
                (EntityKind::Segment, EntityKind::Flag) => decode_flag(&item.body).is_ok_and(|f| f.uses_segment(key)),
                (EntityKind::Segment, EntityKind::Segment) => {
                    decode_segment(&item.body).is_ok_and(|s| s.when.mentions_segment(key))
                }
                (EntityKind::Flag, EntityKind::Flag) => {
                    decode_flag(&item.body).is_ok_and(|f| f.prerequisites.iter().any(|p| p.flag == key))
                }
                (EntityKind::Segment, EntityKind::Experiment) => decode_experiment(&item.body).is_ok_and(|e| {
                    e.targeting
                        .iter()
                        .chain(e.metrics.iter().filter_map(|m| m.filter.as_ref()))
                        .any(|c| c.mentions_segment(key))
                }),
                (EntityKind::Experiment, EntityKind::Flag) => decode_flag(&item.body)
                    .is_ok_and(|f| f.serves().any(|s| matches!(s, Serve::Experiment(k) if k == key))),
                _ => false,
            };
            if refers && !(kind == *item_kind && key == item_key) {
                found.push(format!("{item_kind} {item_key}"));
            }
        }
        found
    }
}

/// Problems inside the item `kind`/`key` with paths relative to it (as the client posted it);
/// problems elsewhere keep their document path.
fn relative_to(problems: ValidationErrors, kind: EntityKind, key: &str) -> ValidationErrors {
    let prefix = format!("{}.{key}", collection(kind));
    let relative = problems
        .0
        .into_iter()
        .map(|p| match p.path.strip_prefix(&prefix) {
            Some(rest) if rest.is_empty() || rest.starts_with('.') || rest.starts_with('[') => {
                ValidationError::new(rest.trim_start_matches('.'), p.message)
            }
            _ => p,
        })
        .collect();
    ValidationErrors(relative)
}

/// The environment's live snapshot brought up to the store's revision, if it holds the stored
/// configuration (it does not while that configuration fails to compile): the write checks
/// below validate against it instead of reading and compiling the whole catalog.
async fn live(env: &Environment) -> Option<Arc<Snapshot>> {
    env.snapshots.catch_up(env.store.as_ref()).await;
    let snapshot = env.snapshots.current();
    snapshot.loaded.then_some(snapshot)
}

/// Checks that the environment's configuration still compiles, experiments included, with
/// `kind`/`key` set to the canonical `body` (a create or a replace), as
/// [`Catalog::check_write`] does: against the live snapshot, recompiling only what the write
/// can affect; against the whole stored catalog if there is no live snapshot.
pub async fn check_write(env: &Environment, kind: EntityKind, key: &str, body: &Value) -> Result<(), ImportError> {
    let Some(snapshot) = live(env).await else {
        let catalog = Catalog::load(env.store.as_ref()).await?;
        return Ok(catalog.with(kind, key, Some(body.clone())).check_write(kind, key)?);
    };
    let change = || [(key.to_string(), Some(body.clone()))];
    let flags = match kind {
        EntityKind::Flag => snapshot.flags.with_changes(change(), []),
        EntityKind::Segment => snapshot.flags.with_changes([], change()),
        _ => Ok(snapshot.flags.clone()),
    };
    let experiments = snapshot.experiment_documents().iter().filter(|d| kind != EntityKind::Experiment || d.key != key);
    let bodies: Vec<&Value> =
        experiments.map(|d| &d.body).chain((kind == EntityKind::Experiment).then_some(body)).collect();
    let checked = flags.and_then(|flags| crate::service::experiments::compile(&flags, bodies).map(drop));
    Ok(checked.map_err(|problems| relative_to(problems, kind, key))?)
}

/// Who refers to `kind`/`key`, as [`Catalog::referrers`] says, from the live snapshot (the
/// whole stored catalog if there is none).
pub async fn referrers(env: &Environment, kind: EntityKind, key: &str) -> Result<Vec<String>, StoreError> {
    let Some(snapshot) = live(env).await else {
        return Ok(Catalog::load(env.store.as_ref()).await?.referrers(kind, key));
    };
    let flags: Vec<&Flag> = match kind {
        EntityKind::Segment => snapshot.flags.using_segment(key).collect(),
        EntityKind::Flag => {
            snapshot.flags.flags().filter(|f| f.key != key && f.prerequisites.iter().any(|p| p.flag == key)).collect()
        }
        EntityKind::Experiment => snapshot
            .flags
            .serving_experiments()
            .filter(|f| f.serves().any(|s| matches!(s, Serve::Experiment(k) if k == key)))
            .collect(),
        _ => Vec::new(),
    };
    let mut found: Vec<(EntityKind, &str)> = flags.into_iter().map(|f| (EntityKind::Flag, f.key.as_str())).collect();
    if kind == EntityKind::Segment {
        let segments = snapshot.flags.segments().iter().filter(|s| s.key != key && s.when.mentions_segment(key));
        found.extend(segments.map(|s| (EntityKind::Segment, s.key.as_str())));
        let experiments = snapshot.experiment_documents().iter().filter(|d| {
            decode_experiment(&d.body).is_ok_and(|e| {
                e.targeting
                    .iter()
                    .chain(e.metrics.iter().filter_map(|m| m.filter.as_ref()))
                    .any(|c| c.mentions_segment(key))
            })
        });
        found.extend(experiments.map(|d| (EntityKind::Experiment, d.key.as_str())));
    }
    found.sort();
    Ok(found.into_iter().map(|(kind, key)| format!("{kind} {key}")).collect())
}

/// What an import did (or, on a dry run, would do) to one collection.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ImportChanges {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
}

/// The answer of an import.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ImportReport {
    pub dry_run: bool,
    pub flags: ImportChanges,
    pub segments: ImportChanges,
}

/// Why an import was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file, or the configuration it would make, is invalid.
    #[error("{}", .0.first().map_or_else(|| "the document is invalid".to_string(), ToString::to_string))]
    Invalid(#[from] ValidationErrors),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a flag or segment, or replaces the stored one (only if `expected_version`, when
/// given, is still the stored version), provided the whole configuration still compiles with
/// it. Returns the stored document.
pub async fn save(
    store: &dyn Store,
    kind: EntityKind,
    document: &Value,
    expected_version: Option<u64>,
    meta: &ChangeMeta,
) -> Result<vexil_store::StoredDocument, ImportError> {
    let body = canonical(kind, document)?;
    let key = body["key"].as_str().expect("decoded documents have a key").to_string();
    let catalog = Catalog::load(store).await?;
    let write = match catalog.version(kind, &key) {
        Some(stored) => Write::Update {
            kind,
            key: key.clone(),
            body: body.clone(),
            expected_version: Some(expected_version.unwrap_or(stored)),
        },
        None => Write::Create { kind, key: key.clone(), body: body.clone() },
    };
    catalog.with(kind, &key, Some(body)).check_write(kind, &key)?;
    let stored = store.apply(vec![write], meta).await?.pop().flatten();
    Ok(stored.expect("a create or update returns the stored document"))
}

/// Why a delete did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// Other documents still refer to it (as `flag new_checkout`, `segment beta`, …).
    #[error("{kind} \"{key}\" is still referenced by {}", .referrers.join(", "))]
    Referenced { kind: EntityKind, key: String, referrers: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Deletes a flag, segment or experiment unless another document still refers to it; with
/// `expected_version`, only if that is still the stored version.
pub async fn delete(
    store: &dyn Store,
    kind: EntityKind,
    key: &str,
    expected_version: Option<u64>,
    meta: &ChangeMeta,
) -> Result<(), DeleteError> {
    let catalog = Catalog::load(store).await?;
    if catalog.version(kind, key).is_none() {
        return Err(StoreError::NotFound { kind, key: key.to_string() }.into());
    }
    let referrers = catalog.referrers(kind, key);
    delete_unreferenced(store, kind, key, expected_version, meta, referrers).await
}

/// [`delete`] in an environment served by this process: the references are looked up in its
/// live snapshot rather than in the whole stored catalog.
pub async fn delete_in(
    env: &Environment,
    kind: EntityKind,
    key: &str,
    expected_version: Option<u64>,
    meta: &ChangeMeta,
) -> Result<(), DeleteError> {
    if env.store.get(kind, key).await?.is_none() {
        return Err(StoreError::NotFound { kind, key: key.to_string() }.into());
    }
    let referrers = referrers(env, kind, key).await?;
    delete_unreferenced(env.store.as_ref(), kind, key, expected_version, meta, referrers).await
}

async fn delete_unreferenced(
    store: &dyn Store,
    kind: EntityKind,
    key: &str,
    expected_version: Option<u64>,
    meta: &ChangeMeta,
    referrers: Vec<String>,
) -> Result<(), DeleteError> {
    if !referrers.is_empty() {
        return Err(DeleteError::Referenced { kind, key: key.to_string(), referrers });
    }
    store.apply(vec![Write::Delete { kind, key: key.to_string(), expected_version }], meta).await?;
    Ok(())
}

/// Imports a flags file (SPEC 1.5): every flag and segment in it is created or replaced,
/// items not in it are left alone, and items whose content is unchanged are not rewritten.
/// The file must be valid on its own and the stored set with it applied must compile; then
/// all writes go to the store in one atomic `apply`, each conditional on the version read
/// here, so a concurrent change makes the whole import fail (409) rather than half-apply.
pub async fn import(
    store: &dyn Store,
    file: &Value,
    dry_run: bool,
    meta: &ChangeMeta,
) -> Result<ImportReport, ImportError> {
    FlagSet::from_value(file)?;
    let items = file_items(file)?;
    let mut catalog = Catalog::load(store).await?;
    let mut report = ImportReport { dry_run, ..ImportReport::default() };
    let mut writes = Vec::new();
    for (kind, key, body) in items {
        let changes = if kind == EntityKind::Flag { &mut report.flags } else { &mut report.segments };
        match (catalog.version(kind, &key), catalog.body(kind, &key)) {
            (Some(_), Some(stored)) if *stored == body => changes.unchanged.push(key),
            (Some(version), _) => {
                changes.updated.push(key.clone());
                writes.push(Write::Update {
                    kind,
                    key: key.clone(),
                    body: body.clone(),
                    expected_version: Some(version),
                });
                catalog = catalog.with(kind, &key, Some(body));
            }
            (None, _) => {
                changes.created.push(key.clone());
                writes.push(Write::Create { kind, key: key.clone(), body: body.clone() });
                catalog = catalog.with(kind, &key, Some(body));
            }
        }
    }
    catalog.compile()?;
    // Segments first, so the store never holds a flag whose segment is still to come.
    writes.sort_by_key(|w| {
        !matches!(w, Write::Create { kind: EntityKind::Segment, .. } | Write::Update { kind: EntityKind::Segment, .. })
    });
    if !dry_run && !writes.is_empty() {
        store.apply(writes, meta).await?;
    }
    Ok(report)
}

/// The changes importing a flags file would make, as [`import`] checks them, for a change
/// request that holds the import for approval (unchanged items included, so the request shows
/// the whole file's effect).
pub async fn import_changes(
    store: &dyn Store,
    file: &Value,
) -> Result<Vec<crate::service::changes::PlannedChange>, ImportError> {
    FlagSet::from_value(file)?;
    let mut catalog = Catalog::load(store).await?;
    let mut changes = Vec::new();
    for (kind, key, body) in file_items(file)? {
        let current = store.get(kind, &key).await?;
        changes.push(crate::service::changes::PlannedChange::between(kind, &key, current.as_ref(), Some(body.clone())));
        catalog = catalog.with(kind, &key, Some(body));
    }
    catalog.compile()?;
    Ok(changes)
}

/// The flags and segments of a valid file, each in canonical form.
fn file_items(file: &Value) -> Result<Vec<(EntityKind, String, Value)>, ValidationErrors> {
    let empty = Vec::new();
    let list = |name: &str| file.get(name).and_then(Value::as_array).unwrap_or(&empty);
    let mut items = Vec::new();
    for (kind, values) in [(EntityKind::Segment, list("segments")), (EntityKind::Flag, list("flags"))] {
        for value in values {
            let body = canonical(kind, value)?;
            let key = body.get("key").and_then(Value::as_str).unwrap_or_default().to_string();
            items.push((kind, key, body));
        }
    }
    Ok(items)
}
