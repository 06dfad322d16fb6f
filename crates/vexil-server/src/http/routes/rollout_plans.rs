//! `/v1/admin/flags/{key}/rollout-plan`: write a flag's progressive rollout plan, read its
//! status with live guard readings, and start, pause, resume or cancel it;
//! `/v1/admin/rollout-plans`: every plan of the environment with its status. An editor's write
//! in a protected environment is [`Held`]: 202 with a change request (to stop a rollout at
//! once there, an editor uses the emergency stop, which is never held).

use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ChangeReason, Env};
use crate::http::routes::change_requests::{propose, Held};
use crate::http::state::AppState;
use crate::service::changes::PlannedChange;
use crate::service::safety::plans::{self, Action, Loaded, Plan, PlanError, PlanRequest, State};
use axum::extract::{Path, State as AxumState};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use vexil_store::{EntityKind, StoreError, Write};

impl From<PlanError> for ApiError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::Invalid(problems) => ApiError::validation(problems),
            PlanError::WrongState(message) => ApiError::conflict("invalid_state", message),
            PlanError::Store(e) => e.into(),
        }
    }
}

fn no_plan(key: &str) -> ApiError {
    ApiError::from(StoreError::NotFound { kind: EntityKind::RolloutPlan, key: key.to_string() })
}

/// `PUT /v1/admin/flags/{key}/rollout-plan`: creates or replaces the plan (not while it runs
/// or is paused: 409).
pub async fn put(
    AxumState(state): AxumState<AppState>,
    Env(env): Env,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    held: Option<Extension<Held>>,
    Path(key): Path<String>,
    ApiJson(request): ApiJson<PlanRequest>,
) -> Result<Response, ApiError> {
    let store = env.store.as_ref();
    let flag = store
        .get(EntityKind::Flag, &key)
        .await?
        .ok_or_else(|| ApiError::from(StoreError::NotFound { kind: EntityKind::Flag, key: key.clone() }))?;
    let plan = Plan::from(request);
    plan.validate(&flag.body, state.safety.signals_of(&env.key).as_ref())?;
    let existing = store.get(EntityKind::RolloutPlan, &key).await?;
    if existing
        .as_ref()
        .and_then(|doc| plans::from_body(&doc.body))
        .is_some_and(|p| matches!(p.state, State::Running | State::Paused))
    {
        return Err(PlanError::WrongState("a running or paused plan cannot be replaced; cancel it first".into()).into());
    }
    let (kind, body, meta) = (EntityKind::RolloutPlan, plans::stored_body(&plan), caller.change(reason));
    if held.is_some() {
        let change = PlannedChange::between(kind, &key, existing.as_ref(), Some(body));
        return Ok(propose(&env, vec![change], None, &meta).await?.into_response());
    }
    let write = match &existing {
        Some(doc) => Write::Update { kind, key: key.clone(), body, expected_version: Some(doc.version) },
        None => Write::Create { kind, key: key.clone(), body },
    };
    store.apply(vec![write], &meta).await?;
    Ok(get(AxumState(state), Env(env), Path(key)).await?.into_response())
}

/// `GET /v1/admin/flags/{key}/rollout-plan`: the plan, where it stands and its guard readings.
pub async fn get(
    AxumState(state): AxumState<AppState>,
    Env(env): Env,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let loaded = Loaded::load(env.store.as_ref(), &key).await?.ok_or_else(|| no_plan(&key))?;
    Ok(Json(loaded.status(state.safety.signals_of(&env.key).as_ref(), vexil_store::now())))
}

/// `GET /v1/admin/rollout-plans` → `{"environment", "plans": [...]}`: every plan as
/// [`get`] shows it, ordered by flag.
pub async fn list(AxumState(state): AxumState<AppState>, Env(env): Env) -> Result<Json<Value>, ApiError> {
    let all = Loaded::load_all(env.store.as_ref()).await?;
    let (signals, now) = (state.safety.signals_of(&env.key), vexil_store::now());
    let plans: Vec<Value> = all.iter().map(|loaded| loaded.status(signals.as_ref(), now)).collect();
    Ok(Json(json!({"environment": &*env.key, "plans": plans})))
}

/// `POST /v1/admin/flags/{key}/rollout-plan/{action}`, action `start` (apply the first step now;
/// ready or scheduled plans), `pause` (running), `resume` (paused; the step's hold restarts) or
/// `cancel` (any plan that has not ended; the flag stays as it is). Other states answer 409.
pub async fn act(
    AxumState(state): AxumState<AppState>,
    Env(env): Env,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    held: Option<Extension<Held>>,
    Path((key, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let action = match action.as_str() {
        "start" => Action::Start,
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        "cancel" => Action::Cancel,
        _ => return Err(crate::http::error::not_found().await),
    };
    let store = env.store.as_ref();
    let loaded = Loaded::load(store, &key).await?.ok_or_else(|| no_plan(&key))?;
    let (plan, flag) = loaded.after(action, vexil_store::now())?;
    let meta = caller.change(reason.or_else(|| Some(format!("rollout plan {}", action.name()))));
    if held.is_some() {
        return Ok(propose(&env, loaded.planned(&plan, flag), None, &meta).await?.into_response());
    }
    loaded.save(store, &plan, flag, &meta).await?;
    env.snapshots.catch_up(store).await;
    Ok(get(AxumState(state), Env(env), Path(key)).await?.into_response())
}
