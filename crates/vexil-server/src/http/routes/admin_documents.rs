//! `/v1/admin/flags`, `/v1/admin/segments` and `/v1/admin/experiments`: create, read, list,
//! replace and delete, with validation against the whole configuration and optimistic
//! concurrency. Experiments add their own rules (see [`crate::service::experiments`]).
//!
//! One set of handlers serves every collection; the route table tells each which
//! [`EntityKind`] it serves through a request extension.

use crate::http::error::ApiError;
use crate::http::extract::{path_key, ApiJson, ApiQuery, Change, Env};
use crate::http::routes::change_requests::{propose, Held};
use crate::service::catalog::{self, canonical, collection, Catalog};
use crate::service::changes::PlannedChange;
use crate::service::environments::Environment;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;
use vexil_store::{EntityKind, StoredDocument, Write};

/// The catalog, provided the document exists.
pub async fn catalog_with(env: &Environment, kind: EntityKind, key: &str) -> Result<Catalog, ApiError> {
    let catalog = Catalog::load(env.store.as_ref()).await?;
    match catalog.version(kind, key) {
        Some(_) => Ok(catalog),
        None => Err(not_found(kind, key)),
    }
}

fn not_found(kind: EntityKind, key: &str) -> ApiError {
    ApiError::from(vexil_store::StoreError::NotFound { kind, key: key.to_string() })
}

/// The canonical body of a posted document, or the validation error of its own problems.
fn decode(kind: EntityKind, body: &Value) -> Result<Value, ApiError> {
    canonical(kind, body).map_err(ApiError::validation)
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    tag: Option<String>,
}

/// `GET /v1/admin/{flags|segments}[?tag=]` → `{"flags": [...]}` / `{"segments": [...]}`.
///
/// Written from the stored text: as JSON values, the list of 10,000 flags took about 300 MB
/// while it was written, memory the allocator then kept.
pub async fn list(
    Env(env): Env,
    Extension(kind): Extension<EntityKind>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<crate::http::json::Json<BTreeMap<String, Vec<Box<RawValue>>>>, ApiError> {
    let mut documents = env.store.list_shown(kind).await?;
    if let Some(tag) = &query.tag {
        documents.retain(|d| has_tag(d.json.get(), tag));
    }
    let items = documents.into_iter().map(|d| d.json).collect();
    Ok(crate::http::json::Json(BTreeMap::from([(collection(kind), items)])))
}

/// Whether the document's `tags` list holds `tag`.
fn has_tag(document: &str, tag: &str) -> bool {
    #[derive(Deserialize)]
    struct Tagged {
        tags: Option<Vec<Value>>,
    }
    serde_json::from_str::<Tagged>(document).ok().and_then(|d| d.tags).is_some_and(|tags| tags.iter().any(|t| t == tag))
}

/// `GET /v1/admin/{flags|segments}/{key}`
pub async fn get(
    Env(env): Env,
    Extension(kind): Extension<EntityKind>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let doc = env.store.get(kind, &key).await?.ok_or_else(|| not_found(kind, &key))?;
    Ok(Json(doc.to_json()))
}

/// `POST /v1/admin/{flags|segments}` → 201 with the stored document (202 with a change request
/// when the write is [`Held`]).
pub async fn create(
    Env(env): Env,
    Change { kind, meta, .. }: Change,
    held: Option<Extension<Held>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let body = decode(kind, &body)?;
    if kind == EntityKind::Experiment {
        crate::service::experiments::check_new(&body)?;
    }
    let key = body["key"].as_str().expect("decoded documents have a key").to_string();
    if env.store.get(kind, &key).await?.is_some() {
        return Err(ApiError::from(vexil_store::StoreError::AlreadyExists { kind, key }));
    }
    catalog::check_write(&env, kind, &key, &body).await?;
    if held.is_some() {
        let change = PlannedChange::between(kind, &key, None, Some(body));
        return Ok(propose(&env, vec![change], None, &meta).await?.into_response());
    }
    let stored = env.store.apply(vec![Write::Create { kind, key, body }], &meta).await?;
    env.snapshots.catch_up(env.store.as_ref()).await;
    Ok((StatusCode::CREATED, Json(stored_json(stored))).into_response())
}

/// `PUT /v1/admin/{flags|segments}/{key}` with optional `If-Match: <version>`. The body's key
/// must be the path's key (it may be left out). An experiment's replacement is checked
/// against the stored one it replaces, and written only if that is still the stored version.
pub async fn replace(
    Env(env): Env,
    Change { kind, meta, mut expected_version }: Change,
    held: Option<Extension<Held>>,
    Path(key): Path<String>,
    ApiJson(mut body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    path_key(&mut body, &key)?;
    let stored = env.store.get(kind, &key).await?.ok_or_else(|| not_found(kind, &key))?;
    if kind == EntityKind::Experiment {
        crate::service::experiments::keep_lifecycle_fields(&stored.body, &mut body);
    }
    let body = decode(kind, &body)?;
    if kind == EntityKind::Experiment {
        crate::service::experiments::check_replace(&stored.body, &body)?;
        expected_version = expected_version.or(Some(stored.version));
    }
    catalog::check_write(&env, kind, &key, &body).await?;
    if held.is_some() {
        let current = current_at(&env, kind, &key, expected_version).await?;
        let change = PlannedChange::between(kind, &key, Some(&current), Some(body));
        return Ok(propose(&env, vec![change], None, &meta).await?.into_response());
    }
    let write = Write::Update { kind, key, body, expected_version };
    let stored = env.store.apply(vec![write], &meta).await?;
    env.snapshots.catch_up(env.store.as_ref()).await;
    Ok(Json(stored_json(stored)).into_response())
}

/// The stored document a change applies to, checked against `If-Match` as a write is: 404 if
/// there is none, 409 if it is not the version named.
pub async fn current_at(
    env: &Environment,
    kind: EntityKind,
    key: &str,
    expected_version: Option<u64>,
) -> Result<StoredDocument, ApiError> {
    let current = env.store.get(kind, key).await?.ok_or_else(|| not_found(kind, key))?;
    match expected_version {
        Some(expected) if expected != current.version => {
            Err(ApiError::from(vexil_store::StoreError::VersionMismatch {
                kind,
                key: key.to_owned(),
                expected,
                actual: current.version,
            }))
        }
        _ => Ok(current),
    }
}

/// `DELETE /v1/admin/{flags|segments}/{key}` with optional `If-Match` → 204; 409 naming the
/// referrers while a flag or segment still refers to it.
pub async fn delete(
    Env(env): Env,
    Change { kind, meta, expected_version }: Change,
    held: Option<Extension<Held>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    if held.is_some() {
        let current = current_at(&env, kind, &key, expected_version).await?;
        let referrers = catalog::referrers(&env, kind, &key).await?;
        if !referrers.is_empty() {
            let e = crate::service::catalog::DeleteError::Referenced { kind, key, referrers };
            return Err(e.into());
        }
        let change = PlannedChange::between(kind, &key, Some(&current), None);
        return Ok(propose(&env, vec![change], None, &meta).await?.into_response());
    }
    catalog::delete_in(&env, kind, &key, expected_version, &meta).await?;
    env.snapshots.catch_up(env.store.as_ref()).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub fn stored_json(mut stored: Vec<Option<StoredDocument>>) -> Value {
    stored.pop().flatten().expect("a create or update returns the stored document").to_json()
}
