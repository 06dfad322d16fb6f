//! Promotion (SPEC 9): copying flags and segments from one environment to another, as a diff
//! first (`dry_run`) and then atomically.
//!
//! Each promoted document's body in the source becomes its body in the target: `create` where
//! the target has none, `update` where it differs, `unchanged` where it is the same. The plan
//! is refused when a promoted flag or segment needs a segment, prerequisite flag or experiment
//! that the target would not hold (409 `missing_dependencies`, naming each one and who needs
//! it: promote the segments with the flags), or when `expected_versions` no longer describes
//! the target (409 `version_mismatch`). Applying writes every change in one transaction, each
//! conditional on the target's version read for the plan ([`crate::service::changes`]).

use crate::service::changes::{self, Action, ApplyError, PlannedChange};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use vexil_core::decode::{decode_flag, decode_segment};
use vexil_core::model::Serve;
use vexil_store::{ChangeMeta, EntityKind, Store, StoreError};

/// The versions a promotion expects the target to hold, by key: a version, or `null` for
/// "absent". The dry run's answer gives them, so applying what was reviewed is one step.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedVersions {
    #[serde(default)]
    pub flags: BTreeMap<String, Option<u64>>,
    #[serde(default)]
    pub segments: BTreeMap<String, Option<u64>>,
}

/// What to promote.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub flags: Vec<String>,
    pub segments: Vec<String>,
    pub expected_versions: Option<ExpectedVersions>,
}

/// Why a promotion was refused.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// The request itself is wrong (`field`, message).
    #[error("{1}")]
    Invalid(&'static str, String),
    #[error("{entity} \"{key}\" does not exist in environment \"{environment}\"")]
    NotInSource { entity: EntityKind, key: String, environment: String },
    /// Documents the promoted ones need, which the target would not hold.
    #[error("environment \"{target}\" would lack what the promoted documents need: {}; promote them too", .missing.join(", "))]
    MissingDependencies { target: String, missing: Vec<String> },
    /// The target is not at the versions the caller expected.
    #[error("the target changed since it was reviewed: {}", .0.join(", "))]
    Stale(Vec<String>),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The changes promoting `selection` from `source` (environment `from`) to `target` (`to`)
/// would make, segments first, checked against the target; nothing is written.
pub async fn plan(
    source: &dyn Store,
    target: &dyn Store,
    (from, to): (&str, &str),
    selection: &Selection,
) -> Result<Vec<PlannedChange>, PromoteError> {
    if from == to {
        return Err(PromoteError::Invalid("from", format!("\"from\" is the target environment \"{to}\" itself")));
    }
    if selection.flags.is_empty() && selection.segments.is_empty() {
        return Err(PromoteError::Invalid("flags", "name at least one flag or segment to promote".to_owned()));
    }
    let mut changes = Vec::new();
    let mut seen = BTreeSet::new();
    let selected = selection
        .segments
        .iter()
        .map(|k| (EntityKind::Segment, k))
        .chain(selection.flags.iter().map(|k| (EntityKind::Flag, k)));
    for (entity, key) in selected {
        if !seen.insert((entity, key.clone())) {
            continue;
        }
        let Some(promoted) = source.get(entity, key).await? else {
            return Err(PromoteError::NotInSource { entity, key: key.clone(), environment: from.to_owned() });
        };
        let current = target.get(entity, key).await?;
        changes.push(PlannedChange::between(entity, key, current.as_ref(), Some(promoted.body)));
    }
    if let Some(expected) = &selection.expected_versions {
        check_expected(&changes, expected)?;
    }
    let missing = missing_dependencies(target, &changes).await?;
    if !missing.is_empty() {
        return Err(PromoteError::MissingDependencies { target: to.to_owned(), missing });
    }
    changes::check(target, &changes).await?;
    Ok(changes)
}

/// Applies a plan made by [`plan`]: all changes or none, each audited in the target with the
/// source environment named in the reason.
pub async fn apply(
    target: &dyn Store,
    from: &str,
    changes: &[PlannedChange],
    meta: &ChangeMeta,
) -> Result<(), PromoteError> {
    let reason = match &meta.reason {
        Some(reason) => format!("promoted from {from}: {reason}"),
        None => format!("promoted from {from}"),
    };
    changes::apply(target, changes, Vec::new(), &ChangeMeta { actor: meta.actor.clone(), reason: Some(reason) })
        .await?;
    Ok(())
}

/// The versions the target holds for the planned documents, in the shape of
/// [`ExpectedVersions`]: what a caller sends back to apply exactly the reviewed diff.
pub fn expected_versions(changes: &[PlannedChange]) -> serde_json::Value {
    let of = |entity: EntityKind| {
        changes
            .iter()
            .filter(|c| c.entity == entity)
            .map(|c| (c.key.clone(), serde_json::json!(c.base_version())))
            .collect::<serde_json::Map<_, _>>()
    };
    serde_json::json!({"flags": of(EntityKind::Flag), "segments": of(EntityKind::Segment)})
}

fn check_expected(changes: &[PlannedChange], expected: &ExpectedVersions) -> Result<(), PromoteError> {
    let mut stale = Vec::new();
    for (entity, field, map) in
        [(EntityKind::Flag, "flags", &expected.flags), (EntityKind::Segment, "segments", &expected.segments)]
    {
        for (key, version) in map {
            let Some(change) = changes.iter().find(|c| c.entity == entity && &c.key == key) else {
                let message = format!("expected_versions.{field}.{key}: {entity} \"{key}\" is not promoted");
                return Err(PromoteError::Invalid("expected_versions", message));
            };
            if change.base_version() != *version {
                let show = |v: Option<u64>| v.map_or_else(|| "absent".to_owned(), |v| format!("version {v}"));
                stale.push(format!(
                    "{entity} \"{key}\" is {}, expected {}",
                    show(change.base_version()),
                    show(*version)
                ));
            }
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(PromoteError::Stale(stale))
    }
}

/// What the promoted documents refer to that the target would not hold, as
/// `segment "beta" (used by flag "checkout")`.
async fn missing_dependencies(target: &dyn Store, changes: &[PlannedChange]) -> Result<Vec<String>, StoreError> {
    let promoted: BTreeSet<(EntityKind, &str)> = changes.iter().map(|c| (c.entity, c.key.as_str())).collect();
    let mut missing = Vec::new();
    for change in changes {
        let Some(body) = &change.after else { continue };
        for (entity, key) in references(change.entity, body) {
            if promoted.contains(&(entity, key.as_str())) || target.get(entity, &key).await?.is_some() {
                continue;
            }
            missing.push(format!("{entity} \"{key}\" (used by {} \"{}\")", change.entity, change.key));
        }
    }
    Ok(missing)
}

/// The documents a flag or segment body refers to: segments in conditions, prerequisite flags
/// and served experiments (experiments are not promoted, so a served one must exist in the
/// target already).
fn references(entity: EntityKind, body: &serde_json::Value) -> BTreeSet<(EntityKind, String)> {
    let mut found = BTreeSet::new();
    // Answers false, so that the walk goes on to every segment referred to.
    let segment = |found: &mut BTreeSet<_>, key: &str| {
        found.insert((EntityKind::Segment, key.to_owned()));
        false
    };
    match entity {
        EntityKind::Flag => {
            let Ok(flag) = decode_flag(body) else { return found };
            flag.any_segment(&mut |key| segment(&mut found, key));
            for serve in flag.serves() {
                if let Serve::Experiment(key) = serve {
                    found.insert((EntityKind::Experiment, key.clone()));
                }
            }
            for prerequisite in &flag.prerequisites {
                found.insert((EntityKind::Flag, prerequisite.flag.clone()));
            }
        }
        EntityKind::Segment => {
            let Ok(referring) = decode_segment(body) else { return found };
            referring.when.any_segment(&mut |key| segment(&mut found, key));
        }
        _ => {}
    }
    found
}

/// Whether the plan changes anything.
pub fn changes_anything(changes: &[PlannedChange]) -> bool {
    changes.iter().any(|c| c.action != Action::Unchanged)
}
