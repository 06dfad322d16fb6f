//! Emergency stops (SPEC 7): one call puts every flag, the flags with a tag, or listed flags
//! under a stop, and they evaluate as `DISABLED` until the stops are lifted.
//!
//! A stop is a document of its own ([`EntityKind::EmergencyStop`]), never a change to a flag:
//! the snapshot overlays active stops on the compiled flags with
//! [`FlagSet::set_stopped`](vexil_core::FlagSet::set_stopped). Lifting the stops therefore
//! restores exactly the previous state, and because stops are documents they survive restarts,
//! move the store's revision (so every node picks them up through its watch) and are audited
//! like every other write.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use vexil_core::{Flag, FlagSet, Serve};
use vexil_store::{ChangeMeta, EntityKind, Store, StoreError, StoredDocument, Timestamp, Write};

/// Which flags a stop covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    All,
    Tag,
    Flags,
}

/// `POST /v1/admin/emergency-stop`, as sent (and as stored, with `stopped_at`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
}

impl Stop {
    /// Whether this stop covers `flag`.
    pub fn covers(&self, flag: &Flag) -> bool {
        match self.scope {
            Scope::All => true,
            Scope::Tag => self.tag.as_ref().is_some_and(|tag| flag.meta.tags.contains(tag)),
            Scope::Flags => self.flags.contains(&flag.key),
        }
    }

    /// The stop in a stored document; documents that are not stops cover nothing.
    pub fn from_document(doc: &StoredDocument) -> Option<Stop> {
        serde_json::from_value(doc.body.clone()).ok()
    }

    /// Whether the stop is well formed for its scope and names only stored flags.
    pub async fn check(&self, store: &dyn Store) -> Result<(), StopError> {
        if let Some(problem) = self.reason.as_deref().and_then(vexil_core::bounds::reason_problem) {
            return Err(invalid("reason", problem));
        }
        match self.scope {
            Scope::All => {
                if self.tag.is_some() || !self.flags.is_empty() {
                    return Err(invalid("scope", "scope \"all\" takes neither tag nor flags"));
                }
            }
            Scope::Tag => {
                if self.tag.as_deref().is_none_or(|t| t.trim().is_empty()) {
                    return Err(invalid("tag", "scope \"tag\" needs a non-empty tag"));
                }
                if !self.flags.is_empty() {
                    return Err(invalid("flags", "scope \"tag\" takes no flags"));
                }
            }
            Scope::Flags => {
                if self.flags.is_empty() {
                    return Err(invalid("flags", "scope \"flags\" needs at least one flag key"));
                }
                if self.tag.is_some() {
                    return Err(invalid("tag", "scope \"flags\" takes no tag"));
                }
                let known: BTreeSet<String> = store.list(EntityKind::Flag).await?.into_iter().map(|d| d.key).collect();
                if let Some((i, key)) = self.flags.iter().enumerate().find(|(_, k)| !known.contains(*k)) {
                    return Err(invalid(format!("flags[{i}]"), format!("flag \"{key}\" does not exist")));
                }
            }
        }
        Ok(())
    }
}

/// A stop request that cannot be carried out: the field at fault and why.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> StopError {
    StopError::Invalid { field: field.into(), message: message.into() }
}

/// The active stops, oldest first, as the API shows them (with `id` and `created_at`).
pub async fn active(store: &dyn Store) -> Result<Vec<StoredDocument>, StoreError> {
    let mut stops = store.list(EntityKind::EmergencyStop).await?;
    stops.sort_by_key(|d| d.created_at);
    Ok(stops)
}

/// The keys of the flags in `flags` that any of `stops` covers.
pub fn stopped_flags(stops: &[Stop], flags: &FlagSet) -> Vec<String> {
    flags.flags().filter(|f| stops.iter().any(|s| s.covers(f))).map(|f| f.key.clone()).collect()
}

/// The keys of the flags in `flags` under any of the stored stops `active`.
pub fn covered(active: &[StoredDocument], flags: &FlagSet) -> Vec<String> {
    let stops: Vec<Stop> = active.iter().filter_map(Stop::from_document).collect();
    stopped_flags(&stops, flags)
}

/// What a stop would cover now: the flags it would turn off and the experiments those flags
/// serve (users stop reaching them through the flags), each sorted.
#[derive(Debug, Serialize)]
pub struct Preview {
    pub scope: Scope,
    pub flags: Vec<String>,
    pub experiments: Vec<String>,
}

/// The [`Preview`] of `stop` over `flags`, the environment's current flags.
pub fn preview(stop: &Stop, flags: &FlagSet) -> Preview {
    let covered: Vec<&Flag> = flags.flags().filter(|f| stop.covers(f)).collect();
    let experiments: BTreeSet<String> = covered
        .iter()
        .flat_map(|f| f.serves())
        .filter_map(|serve| match serve {
            Serve::Experiment(key) => Some(key.clone()),
            _ => None,
        })
        .collect();
    let mut flags: Vec<String> = covered.iter().map(|f| f.key.clone()).collect();
    flags.sort();
    Preview { scope: stop.scope, flags, experiments: experiments.into_iter().collect() }
}

/// Checks `stop` against the stored flags and stores it; returns the stored document.
pub async fn stop(store: &dyn Store, mut stop: Stop, meta: &ChangeMeta) -> Result<StoredDocument, StopError> {
    stop.check(store).await?;
    stop.stopped_at = Some(vexil_store::now());
    let key = format!("stop_{}", uuid::Uuid::new_v4().simple());
    let body = serde_json::to_value(&stop).expect("stops serialise");
    let mut meta = meta.clone();
    meta.reason = meta.reason.or_else(|| stop.reason.clone());
    let stored = store.apply(vec![Write::Create { kind: EntityKind::EmergencyStop, key, body }], &meta).await?;
    Ok(stored.into_iter().flatten().next().expect("a create returns the stored document"))
}

/// Lifts every active stop (one audited delete each, in one transaction); returns them.
pub async fn resume(store: &dyn Store, meta: &ChangeMeta) -> Result<Vec<StoredDocument>, StoreError> {
    let stops = active(store).await?;
    if stops.is_empty() {
        return Ok(stops);
    }
    let writes = stops
        .iter()
        .map(|d| Write::Delete {
            kind: EntityKind::EmergencyStop,
            key: d.key.clone(),
            expected_version: Some(d.version),
        })
        .collect();
    store.apply(writes, meta).await?;
    Ok(stops)
}
