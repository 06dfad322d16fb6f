//! Environments (SPEC 9): named namespaces, each with its own flags, segments, experiments,
//! stops, plans, budgets and audit records, served from one deployment.
//!
//! [`Environments`] holds, for every environment in the store, a [`Scoped`] store and the
//! compiled [`Snapshots`] evaluation reads. A request's environment is resolved once, from its
//! key (server and client keys) or its `?env=` (admin keys), to an [`Environment`] here: a
//! map lookup in memory, never a store query. One task follows the store's revision, adds the
//! environments created anywhere, drops the deleted ones and brings every snapshot up to date.

use crate::metrics::Metrics;
use crate::service::changes::Status;
use crate::service::snapshot::{LoadError, Snapshot, Snapshots};
use arc_swap::ArcSwap;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vexil_core::{ValidationError, ValidationErrors};
use vexil_store::{is_environment_key, Backend, EntityKind, KeyKind, Scoped, Store, StoreError, GLOBAL};

/// One environment: its store and its live configuration.
pub struct Environment {
    pub key: Arc<str>,
    /// Sees only this environment's documents and audit records.
    pub store: Arc<dyn Store>,
    pub snapshots: Arc<Snapshots>,
}

/// Told about every environment's snapshots before anyone can read them (the event pipeline
/// learns each environment's experiments from it), and with `None` when an environment is gone.
pub type EnvironmentHook = Arc<dyn Fn(&str, Option<&Snapshot>) + Send + Sync>;

/// `hook` for the snapshots of environment `env`: told about `initial` now and about every
/// later snapshot before it is published.
fn hooked(hook: &EnvironmentHook, env: &Arc<str>, initial: Snapshot, metrics: Arc<Metrics>) -> Snapshots {
    hook(env, Some(&initial));
    let (hook, env) = (hook.clone(), env.clone());
    Snapshots::new(initial, metrics).before_publish(Box::new(move |snapshot| hook(&env, Some(snapshot))))
}

/// Every environment, by key.
pub struct Environments {
    backend: Arc<dyn Backend>,
    default: Arc<Environment>,
    metrics: Arc<Metrics>,
    hook: EnvironmentHook,
    all: ArcSwap<HashMap<Arc<str>, Arc<Environment>>>,
    /// One synchronisation with the store at a time.
    syncing: tokio::sync::Mutex<()>,
}

/// The first snapshot of an environment; a configuration that does not compile is served as
/// the empty placeholder (`/ready` says 503 for the default environment meanwhile).
async fn first_snapshot(env: &str, store: &dyn Store, metrics: &Metrics) -> Result<Snapshot, StoreError> {
    match Snapshot::load(store, metrics).await {
        Ok(snapshot) => Ok(snapshot),
        Err(LoadError::Store(e)) => Err(e),
        Err(e @ LoadError::Invalid(_)) => {
            tracing::error!(environment = env, error = %e, "starting the environment without configuration");
            Ok(Snapshot::unloaded())
        }
    }
}

impl Environments {
    /// The default environment's store and first snapshot, once it is known to exist.
    pub async fn load_default(
        backend: &Arc<dyn Backend>,
        default: &str,
        metrics: &Metrics,
    ) -> Result<(Arc<dyn Store>, Snapshot), String> {
        let listed = backend
            .list_in(GLOBAL, EntityKind::Environment)
            .await
            .map_err(|e| format!("cannot read the environments: {e}"))?;
        if !listed.iter().any(|doc| doc.key == default) {
            let known: Vec<_> = listed.iter().map(|d| d.key.as_str()).collect();
            return Err(format!(
                "default_environment: {default:?} is not an environment of this store (it has: {})",
                known.join(", ")
            ));
        }
        let store: Arc<dyn Store> = Arc::new(Scoped::new(backend.clone(), default));
        let initial = first_snapshot(default, store.as_ref(), metrics)
            .await
            .map_err(|e| format!("cannot read the configuration of environment {default:?}: {e}"))?;
        Ok((store, initial))
    }

    /// Every environment, the default one from [`Environments::load_default`]; every
    /// environment's snapshots are published through `hook` (the event pipeline learns
    /// experiments from it).
    pub async fn new(
        backend: Arc<dyn Backend>,
        (default, store, initial): (&str, Arc<dyn Store>, Snapshot),
        metrics: Arc<Metrics>,
        hook: EnvironmentHook,
    ) -> Result<Environments, String> {
        let key: Arc<str> = default.into();
        let snapshots = Arc::new(hooked(&hook, &key, initial, metrics.clone()));
        let default = Arc::new(Environment { key, store, snapshots });
        let all = HashMap::from([(default.key.clone(), default.clone())]);
        let environments = Environments {
            backend,
            default,
            metrics,
            hook,
            all: ArcSwap::from_pointee(all),
            syncing: tokio::sync::Mutex::new(()),
        };
        environments.sync().await.map_err(|e| format!("cannot load the environments: {e}"))?;
        Ok(environments)
    }

    /// The environment of keys that name none, and of admin requests that name none.
    pub fn default(&self) -> &Arc<Environment> {
        &self.default
    }

    /// The environment `key`, if it exists.
    pub fn get(&self, key: &str) -> Option<Arc<Environment>> {
        self.all.load().get(key).cloned()
    }

    /// Every environment, ordered by key.
    pub fn all(&self) -> Vec<Arc<Environment>> {
        let mut all: Vec<_> = self.all.load().values().cloned().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Adds the environments the store has and this map has not, and drops those it no longer
    /// has (never the default one, which cannot be deleted).
    async fn sync(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.syncing.lock().await;
        let listed = self.backend.list_in(GLOBAL, EntityKind::Environment).await?;
        let current = self.all.load_full();
        let mut next = HashMap::with_capacity(listed.len());
        next.insert(self.default.key.clone(), self.default.clone());
        for doc in listed {
            if let Some(known) = current.get(doc.key.as_str()) {
                next.insert(known.key.clone(), known.clone());
                continue;
            }
            let store: Arc<dyn Store> = Arc::new(Scoped::new(self.backend.clone(), doc.key.as_str()));
            let initial = first_snapshot(&doc.key, store.as_ref(), &self.metrics).await?;
            let key: Arc<str> = doc.key.into();
            let snapshots = Arc::new(hooked(&self.hook, &key, initial, self.metrics.clone()));
            next.insert(key.clone(), Arc::new(Environment { key, store, snapshots }));
        }
        for gone in current.keys().filter(|key| !next.contains_key(*key)) {
            (self.hook)(gone, None);
        }
        self.all.store(Arc::new(next));
        Ok(())
    }

    /// Brings the set of environments and every snapshot up to the store's current revision,
    /// so a client that changed environments through this node reads its own write.
    pub async fn catch_up(&self) {
        if let Err(e) = self.sync().await {
            tracing::error!(error = %e, "cannot read the environments; keeping the known ones");
        }
        for environment in self.all() {
            environment.snapshots.catch_up(environment.store.as_ref()).await;
        }
    }

    /// Follows the store's revision until `shutdown`, catching up on every move.
    pub async fn follow(self: Arc<Self>, shutdown: CancellationToken) {
        let mut revisions = self.backend.watch();
        loop {
            revisions.borrow_and_update();
            self.catch_up().await;
            tokio::select! {
                changed = revisions.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// The canonical body of an environment as posted: `key` (SPEC 9's pattern), `name` (default:
/// the key), `description` (default empty), `protected` (default false) and `tags` (default
/// none). Server-managed fields are ignored, any other field is refused; every problem is
/// reported at once.
pub fn canonical(value: &Value) -> Result<Value, ValidationErrors> {
    let mut problems = Vec::new();
    let Some(object) = value.as_object() else {
        return Err(ValidationErrors(vec![ValidationError::new("", "an environment is a JSON object")]));
    };
    let key = match object.get("key") {
        Some(Value::String(key)) if is_environment_key(key) => key.clone(),
        Some(Value::String(key)) => {
            problems.push(ValidationError::new(
                "key",
                format!("{key:?} is not an environment key: ^[a-z][a-z0-9_-]{{0,63}}$"),
            ));
            String::new()
        }
        Some(_) => {
            problems.push(ValidationError::new("key", "must be a string"));
            String::new()
        }
        None => {
            problems.push(ValidationError::new("key", "is required"));
            String::new()
        }
    };
    let text = |field: &str, default: &str, problems: &mut Vec<ValidationError>| match object.get(field) {
        None | Some(Value::Null) => default.to_string(),
        Some(Value::String(s)) if s.chars().count() <= 1024 => s.clone(),
        Some(Value::String(_)) => {
            problems.push(ValidationError::new(field, "is longer than 1024 characters"));
            String::new()
        }
        Some(_) => {
            problems.push(ValidationError::new(field, "must be a string"));
            String::new()
        }
    };
    let name = text("name", &key, &mut problems);
    let description = text("description", "", &mut problems);
    let protected = match object.get("protected") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            problems.push(ValidationError::new("protected", "must be true or false"));
            false
        }
    };
    let tags = match object.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tags)) => tags
            .iter()
            .enumerate()
            .filter_map(|(i, tag)| match tag {
                Value::String(tag) => Some(Value::String(tag.clone())),
                _ => {
                    problems.push(ValidationError::new(format!("tags[{i}]"), "must be a string"));
                    None
                }
            })
            .collect(),
        Some(_) => {
            problems.push(ValidationError::new("tags", "must be a list of strings"));
            Vec::new()
        }
    };
    for field in object.keys() {
        let known = ["key", "name", "description", "protected", "tags", "id", "version", "created_at", "updated_at"];
        if !known.contains(&field.as_str()) {
            problems.push(ValidationError::new(field.as_str(), "unknown field"));
        }
    }
    if !problems.is_empty() {
        return Err(ValidationErrors(problems));
    }
    let mut body = Map::new();
    body.insert("key".into(), Value::String(key));
    body.insert("name".into(), Value::String(name));
    body.insert("description".into(), Value::String(description));
    body.insert("protected".into(), Value::Bool(protected));
    body.insert("tags".into(), Value::Array(tags));
    Ok(Value::Object(body))
}

/// What an environment holds, as "2 flags, 1 key": its documents of every kind, its pending
/// change requests and the active keys that act in it. Empty when it holds nothing (decided
/// change requests are history, like its audit records).
pub async fn holdings(
    environment: &Environment,
    backend: &dyn Backend,
    is_default: bool,
) -> Result<Vec<String>, StoreError> {
    let mut held = Vec::new();
    let kinds = [
        (EntityKind::Flag, "flag"),
        (EntityKind::Segment, "segment"),
        (EntityKind::Experiment, "experiment"),
        (EntityKind::RolloutPlan, "rollout plan"),
        (EntityKind::Budget, "budget"),
        (EntityKind::EmergencyStop, "emergency stop"),
    ];
    let mut count = |n: usize, name: &str| {
        if n > 0 {
            held.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
        }
    };
    for (kind, name) in kinds {
        count(environment.store.list(kind).await?.len(), name);
    }
    let pending = crate::service::changes::list(environment.store.as_ref(), Some(Status::Pending)).await?;
    count(pending.len(), "pending change request");
    let keys = backend
        .list_keys()
        .await?
        .into_iter()
        .filter(|k| k.revoked_at.is_none() && k.kind != KeyKind::Admin)
        .filter(|k| match &k.environment {
            Some(env) => env.as_str() == &*environment.key,
            None => is_default,
        })
        .count();
    count(keys, "key");
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_fills_defaults_and_reports_every_problem() {
        assert_eq!(
            canonical(&json!({"key": "staging", "version": 3})).unwrap(),
            json!({"key": "staging", "name": "staging", "description": "", "protected": false, "tags": []})
        );
        let problems = canonical(&json!({"key": "Staging", "protected": "yes", "tags": [1], "color": "red"}))
            .unwrap_err()
            .iter()
            .map(|p| p.path.clone())
            .collect::<Vec<_>>();
        assert_eq!(problems, ["key", "protected", "tags[0]", "color"]);
        assert_eq!(canonical(&json!({})).unwrap_err().first().unwrap().path, "key");
    }
}
