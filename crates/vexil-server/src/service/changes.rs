//! Changes to an environment's configuration that are planned before they apply: a promotion
//! from another environment ([`crate::service::promotion`]) and a change request held for
//! approval in a protected environment (SPEC 9).
//!
//! A [`PlannedChange`] says what one document becomes (`before` as stored, `after` the body it
//! will have). Applying a list of them is one atomic store write in which every write is
//! conditional on the `before` read when it was planned, so a target that changed since makes
//! the whole list fail with nothing applied.
//!
//! A change request is a document of kind [`EntityKind::ChangeRequest`] in the environment it
//! changes, so storing, approving (the planned writes and the request's new status in one
//! transaction) and auditing it is what every backend already does for documents.

use crate::service::catalog::Catalog;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vexil_core::ValidationErrors;
use vexil_store::{ChangeMeta, EntityKind, Store, StoreError, StoredDocument, Write};

/// What a planned change does to its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Delete,
    Unchanged,
}

/// One document's change: `before` as the API shows the stored document (with its version),
/// `after` the body it will have (`None` for a delete).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedChange {
    pub entity: EntityKind,
    pub key: String,
    pub action: Action,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl PlannedChange {
    /// The change that makes `current` (the stored document, if any) into `after`.
    pub fn between(entity: EntityKind, key: &str, current: Option<&StoredDocument>, after: Option<Value>) -> Self {
        let action = match (current, &after) {
            (None, Some(_)) => Action::Create,
            (Some(_), None) => Action::Delete,
            (Some(doc), Some(body)) if doc.body == *body => Action::Unchanged,
            (Some(_), Some(_)) => Action::Update,
            (None, None) => Action::Unchanged,
        };
        PlannedChange { entity, key: key.to_owned(), action, before: current.map(StoredDocument::to_json), after }
    }

    /// The version of the document this change was planned against (`None`: it did not exist).
    pub fn base_version(&self) -> Option<u64> {
        self.before.as_ref().and_then(|b| b.get("version")).and_then(Value::as_u64)
    }

    /// The store write of this change, conditional on its base version; none if unchanged.
    fn write(&self) -> Option<Write> {
        let (kind, key) = (self.entity, self.key.clone());
        match (self.action, &self.after) {
            (Action::Create, Some(body)) => Some(Write::Create { kind, key, body: body.clone() }),
            (Action::Update, Some(body)) => {
                Some(Write::Update { kind, key, body: body.clone(), expected_version: self.base_version() })
            }
            (Action::Delete, _) => Some(Write::Delete { kind, key, expected_version: self.base_version() }),
            _ => None,
        }
    }
}

/// Why planned changes cannot apply.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A document changed since the changes were planned (`entity key: was vN, now vM`).
    #[error("{0}")]
    Changed(String),
    /// The configuration with the changes would not compile.
    #[error("{}", .0.first().map_or_else(|| "the configuration would be invalid".to_string(), ToString::to_string))]
    Invalid(ValidationErrors),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::VersionMismatch { .. } | StoreError::AlreadyExists { .. } | StoreError::NotFound { .. } => {
                ApplyError::Changed(format!("{e}; the target changed while the change was applied"))
            }
            e => ApplyError::Store(e),
        }
    }
}

/// The planned changes that are not yet the stored state, described as `flag a (v3, now v4)`:
/// the documents that changed since the changes were planned.
pub async fn changed_since(store: &dyn Store, changes: &[PlannedChange]) -> Result<Vec<String>, StoreError> {
    let mut changed = Vec::new();
    for change in changes.iter().filter(|c| c.action != Action::Unchanged) {
        let now = store.get(change.entity, &change.key).await?.map(|d| d.version);
        if now != change.base_version() {
            let show = |v: Option<u64>| v.map_or_else(|| "absent".to_owned(), |v| format!("v{v}"));
            changed.push(format!(
                "{} {} (was {}, now {})",
                change.entity,
                change.key,
                show(change.base_version()),
                show(now)
            ));
        }
    }
    Ok(changed)
}

/// Checks that the configuration compiles with the changes applied (flags, segments and
/// experiments), and that each rollout plan written still steers a split of its flag as it
/// will be (a held plan may wait while its flag changes); other kinds are checked where they
/// are written.
pub async fn check(store: &dyn Store, changes: &[PlannedChange]) -> Result<(), ApplyError> {
    let mut catalog = Catalog::load(store).await?;
    for change in changes {
        if matches!(change.entity, EntityKind::Flag | EntityKind::Segment | EntityKind::Experiment) {
            catalog = catalog.with(change.entity, &change.key, change.after.clone());
        }
    }
    catalog.compile().map_err(ApplyError::Invalid)?;
    for change in changes.iter().filter(|c| c.entity == EntityKind::RolloutPlan) {
        let Some(plan) = change.after.as_ref().and_then(crate::service::safety::plans::from_body) else { continue };
        if let Some(problem) = plan.target_problem(catalog.body(EntityKind::Flag, &change.key).unwrap_or(&Value::Null))
        {
            return Err(ApplyError::Invalid(ValidationErrors(vec![problem])));
        }
    }
    Ok(())
}

/// The store writes of `changes`, segments created or updated first and deleted last, so no
/// flag ever refers to a segment the store does not hold yet.
fn writes(changes: &[PlannedChange]) -> Vec<Write> {
    let mut ordered: Vec<&PlannedChange> = changes.iter().collect();
    ordered.sort_by_key(|c| match (c.entity, c.action) {
        (EntityKind::Segment, Action::Delete) => 2,
        (EntityKind::Segment, _) => 0,
        _ => 1,
    });
    ordered.into_iter().filter_map(PlannedChange::write).collect()
}

/// Applies the changes in one transaction, each conditional on its planned base version, plus
/// `extra` writes (a change request's new status) in the same transaction. Nothing applies if
/// any document changed since the changes were planned.
pub async fn apply(
    store: &dyn Store,
    changes: &[PlannedChange],
    extra: Vec<Write>,
    meta: &ChangeMeta,
) -> Result<(), ApplyError> {
    let changed = changed_since(store, changes).await?;
    if !changed.is_empty() {
        return Err(ApplyError::Changed(format!("changed since the change was planned: {}", changed.join(", "))));
    }
    check(store, changes).await?;
    let mut all = writes(changes);
    all.extend(extra);
    if !all.is_empty() {
        store.apply(all, meta).await?;
    }
    Ok(())
}

// ---- change requests ----

/// The state of a change request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
}

/// A change request as stored (the body of its document).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub status: Status,
    /// The actor (key id) who asked for it.
    pub author: String,
    pub reason: Option<String>,
    /// The environment a promotion comes from, if it is one.
    pub source: Option<String>,
    pub changes: Vec<PlannedChange>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
}

/// A change request as the API shows it: its id, environment, version and times beside the body.
pub fn shown(environment: &str, doc: &StoredDocument) -> Value {
    let mut json = doc.to_json();
    if let Value::Object(fields) = &mut json {
        fields.insert("id".into(), Value::from(doc.key.clone()));
        fields.insert("environment".into(), Value::from(environment));
    }
    json
}

/// Why a change request step was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("change request \"{0}\" does not exist")]
    NotFound(String),
    #[error("change request \"{id}\" is {status:?} already; only a pending request can be approved or rejected")]
    Closed { id: String, status: Status },
    #[error("the author of change request \"{0}\" cannot approve it; another key or person with the editor or owner role there must")]
    OwnApproval(String),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Holds `changes` for approval: stores a pending change request by `meta.actor` and returns it.
pub async fn propose(
    store: &dyn Store,
    changes: Vec<PlannedChange>,
    source: Option<String>,
    meta: &ChangeMeta,
) -> Result<StoredDocument, StoreError> {
    let request = Request {
        status: Status::Pending,
        author: meta.actor.clone(),
        reason: meta.reason.clone(),
        source,
        changes,
        decided_by: None,
        decision_reason: None,
    };
    let id = format!("cr_{}", uuid::Uuid::new_v4().simple());
    let body = serde_json::to_value(&request).expect("a change request serialises");
    let write = Write::Create { kind: EntityKind::ChangeRequest, key: id, body };
    let mut stored = store.apply(vec![write], meta).await?;
    Ok(stored.pop().flatten().expect("a create returns the stored document"))
}

/// The change requests of the environment, newest first, optionally only those of `status`.
pub async fn list(store: &dyn Store, status: Option<Status>) -> Result<Vec<StoredDocument>, StoreError> {
    let mut docs = store.list(EntityKind::ChangeRequest).await?;
    docs.retain(|d| status.is_none_or(|s| decode(d).is_some_and(|r| r.status == s)));
    docs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.key.cmp(&a.key)));
    Ok(docs)
}

fn decode(doc: &StoredDocument) -> Option<Request> {
    serde_json::from_value(doc.body.clone()).ok()
}

/// One change request.
pub async fn get(store: &dyn Store, id: &str) -> Result<StoredDocument, RequestError> {
    store.get(EntityKind::ChangeRequest, id).await?.ok_or_else(|| RequestError::NotFound(id.to_owned()))
}

/// A pending request and its stored document, or why it cannot be decided.
async fn pending(store: &dyn Store, id: &str) -> Result<(StoredDocument, Request), RequestError> {
    let doc = get(store, id).await?;
    let request = decode(&doc).ok_or_else(|| StoreError::Backend(format!("change request {id} is unreadable")))?;
    if request.status != Status::Pending {
        return Err(RequestError::Closed { id: id.to_owned(), status: request.status });
    }
    Ok((doc, request))
}

/// The write that closes a request with `status`, conditional on the version read.
fn closing(doc: &StoredDocument, mut request: Request, status: Status, meta: &ChangeMeta) -> Write {
    request.status = status;
    request.decided_by = Some(meta.actor.clone());
    request.decision_reason = meta.reason.clone();
    Write::Update {
        kind: EntityKind::ChangeRequest,
        key: doc.key.clone(),
        body: serde_json::to_value(&request).expect("a change request serialises"),
        expected_version: Some(doc.version),
    }
}

/// Approves a pending request by `meta.actor`, who must not be its author: its changes and its
/// new status apply in one transaction, only if no document it changes has changed since the
/// request was made. The changes are audited with the approver as actor and the request named
/// in the reason. Returns the request afterwards.
pub async fn approve(store: &dyn Store, id: &str, meta: &ChangeMeta) -> Result<StoredDocument, RequestError> {
    let (doc, request) = pending(store, id).await?;
    if request.author == meta.actor {
        return Err(RequestError::OwnApproval(id.to_owned()));
    }
    let changes = crate::service::safety::plans::held_until(request.changes.clone(), vexil_store::now());
    let mut why = format!("change request {id} by {}", request.author);
    if let Some(source) = &request.source {
        why.push_str(&format!(", promoted from {source}"));
    }
    if let Some(reason) = request.reason.as_deref().or(meta.reason.as_deref()) {
        why.push_str(&format!(": {reason}"));
    }
    let close = closing(&doc, request, Status::Approved, meta);
    apply(store, &changes, vec![close], &ChangeMeta { actor: meta.actor.clone(), reason: Some(why) }).await?;
    get(store, id).await
}

/// Rejects a pending request (its author may withdraw it this way). Returns it afterwards.
pub async fn reject(store: &dyn Store, id: &str, meta: &ChangeMeta) -> Result<StoredDocument, RequestError> {
    let (doc, request) = pending(store, id).await?;
    store.apply(vec![closing(&doc, request, Status::Rejected, meta)], meta).await?;
    get(store, id).await
}
