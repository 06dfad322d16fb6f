//! The route table: every route with its method, path, required key kind, CORS and summary,
//! registered in one place. The router and the OpenAPI document are both built from it, so a
//! route cannot exist without being described.

pub mod admin_documents;
pub mod admin_experiments;
pub mod admin_import;
pub mod assign;
pub mod audit;
pub mod budgets;
pub mod dlq;
pub mod emergency_stop;
pub mod evaluate;
pub mod events;
pub mod health;
pub mod keys;
pub mod ofrep;
pub mod results;
pub mod rollout_plans;
pub mod sdk;
pub mod stats;

use crate::http::auth::{self, Access};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use axum::extract::FromRequestParts;
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Extension, Router};
use std::collections::BTreeMap;
use vexil_store::EntityKind;

/// One route as the OpenAPI document describes it.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    /// `None`: no key needed.
    pub access: Option<Access>,
    /// Whether browsers may call it cross-origin (when CORS is enabled).
    pub cors: bool,
    pub tag: &'static str,
    pub summary: &'static str,
}

/// Routes being registered, grouped by path (one method router per path).
struct Table {
    state: AppState,
    paths: BTreeMap<&'static str, (MethodRouter<AppState>, bool)>,
    specs: Vec<RouteSpec>,
}

impl Table {
    fn add<H, T>(&mut self, spec: RouteSpec, handler: H) -> &mut Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let route = on(method_filter(&spec.method), handler);
        self.insert(spec, route)
    }

    /// A route of the document handlers, told which kind it serves.
    fn add_document<H, T>(&mut self, kind: EntityKind, spec: RouteSpec, handler: H) -> &mut Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let route = on(method_filter(&spec.method), handler).layer(Extension(kind));
        self.insert(spec, route)
    }

    fn insert(&mut self, spec: RouteSpec, mut route: MethodRouter<AppState>) -> &mut Self {
        if let Some(access) = spec.access {
            route =
                route.route_layer(axum::middleware::from_fn_with_state((self.state.clone(), access), auth::require));
        }
        let entry =
            self.paths.remove(spec.path).map(|(existing, cors)| (existing.merge(route.clone()), cors || spec.cors));
        self.paths.insert(spec.path, entry.unwrap_or((route, spec.cors)));
        self.specs.push(spec);
        self
    }
}

fn method_filter(method: &Method) -> MethodFilter {
    MethodFilter::try_from(method.clone()).expect("the table uses standard methods")
}

fn spec(
    method: Method,
    path: &'static str,
    access: Option<Access>,
    tag: &'static str,
    summary: &'static str,
) -> RouteSpec {
    let cors = path.starts_with("/v1/flags/")
        || path == "/v1/evaluate"
        || path == "/v1/assign"
        || path.starts_with("/ofrep/")
        || path == "/v1/events";
    RouteSpec { method, path, access, cors, tag, summary }
}

/// Registers every route; returns the routes by path and their specs.
fn table(state: AppState) -> Table {
    use Access::*;
    use Method as M;
    let mut t = Table { state, paths: BTreeMap::new(), specs: Vec::new() };
    t.add(spec(M::GET, "/health", None, "operations", "Liveness: the process answers."), health::live)
        .add(
            spec(
                M::GET,
                "/ready",
                None,
                "operations",
                "Readiness: store reachable and configuration loaded (503 otherwise).",
            ),
            health::ready,
        )
        .add(spec(M::GET, "/metrics", None, "operations", "Prometheus metrics."), health::metrics)
        .add(spec(M::GET, "/openapi.json", None, "operations", "This OpenAPI document."), crate::http::openapi::serve)
        .add(
            spec(
                M::POST,
                "/v1/flags/{key}/evaluate",
                Some(Client),
                "evaluation",
                "Evaluate one flag for a user and context.",
            ),
            evaluate::flag,
        )
        .add(
            spec(
                M::GET,
                "/v1/evaluate",
                Some(Client),
                "evaluation",
                "Evaluate one flag: query form (?flag_key=&user_id=, optional JSON body {\"context\"}).",
            ),
            evaluate::query,
        )
        .add(
            spec(
                M::POST,
                "/v1/evaluate",
                Some(Client),
                "evaluation",
                "Evaluate several flags (or all) for a user and context.",
            ),
            evaluate::batch,
        )
        .add(
            spec(M::POST, "/ofrep/v1/evaluate/flags/{key}", Some(Client), "ofrep", "OFREP single flag evaluation."),
            ofrep::flag,
        )
        .add(
            spec(
                M::POST,
                "/ofrep/v1/evaluate/flags",
                Some(Client),
                "ofrep",
                "OFREP bulk evaluation, with ETag / If-None-Match.",
            ),
            ofrep::bulk,
        )
        .add(
            spec(
                M::GET,
                "/v1/sdk/flags",
                Some(Server),
                "sdk",
                "The full flags document for local evaluation, with ETag / If-None-Match.",
            ),
            sdk::flags,
        )
        .add(
            spec(
                M::GET,
                "/v1/sdk/stream",
                Some(Server),
                "sdk",
                "Server-Sent Events: put, then patch/delete per change.",
            ),
            sdk::stream,
        );
    for kind in [EntityKind::Flag, EntityKind::Segment, EntityKind::Experiment] {
        let (collection, item) = match kind {
            EntityKind::Flag => ("/v1/admin/flags", "/v1/admin/flags/{key}"),
            EntityKind::Segment => ("/v1/admin/segments", "/v1/admin/segments/{key}"),
            _ => ("/v1/admin/experiments", "/v1/admin/experiments/{key}"),
        };
        let tag = "admin";
        t.add_document(
            kind,
            spec(M::GET, collection, Some(Admin), tag, "List (optionally ?tag=)."),
            admin_documents::list,
        )
        .add_document(
            kind,
            spec(M::POST, collection, Some(Admin), tag, "Create; 201 with the stored object."),
            admin_documents::create,
        )
        .add_document(kind, spec(M::GET, item, Some(Admin), tag, "Read one."), admin_documents::get)
        .add_document(
            kind,
            spec(M::PUT, item, Some(Admin), tag, "Replace, with optional If-Match: <version>."),
            admin_documents::replace,
        )
        .add_document(
            kind,
            spec(M::DELETE, item, Some(Admin), tag, "Delete; 409 while referenced."),
            admin_documents::delete,
        );
    }
    experiment_routes(&mut t);
    t.add(
        spec(
            M::POST,
            "/v1/admin/import",
            Some(Admin),
            "admin",
            "Import a flags file atomically (?dry_run=true to only validate).",
        ),
        admin_import::import_file,
    )
    .add(
        spec(M::GET, "/v1/admin/export", Some(Admin), "admin", "Export the configuration as a flags file."),
        admin_import::export,
    )
    .add(
        spec(M::POST, "/v1/admin/keys", Some(Admin), "admin", "Create an API key; the secret is in this answer only."),
        keys::create,
    )
    .add(spec(M::GET, "/v1/admin/keys", Some(Admin), "admin", "List API keys (no secrets)."), keys::list)
    .add(spec(M::DELETE, "/v1/admin/keys/{id}", Some(Admin), "admin", "Revoke an API key."), keys::revoke)
    .add(
        spec(
            M::GET,
            "/v1/admin/audit",
            Some(Admin),
            "admin",
            "The audit log, newest first (?entity=&key=&limit=&before=).",
        ),
        audit::list,
    )
    .add(
        spec(
            M::POST,
            "/v1/admin/emergency-stop",
            Some(Admin),
            "safety",
            "Emergency stop: {\"scope\": \"all\"|\"tag\"|\"flags\", \"tag\", \"flags\", \"reason\"}; stopped flags evaluate as DISABLED.",
        ),
        emergency_stop::stop,
    )
    .add(
        spec(M::GET, "/v1/admin/emergency-stop", Some(Admin), "safety", "The active emergency stops and the flags they cover."),
        emergency_stop::list,
    )
    .add(
        spec(
            M::POST,
            "/v1/admin/emergency-stop/resume",
            Some(Admin),
            "safety",
            "Lift every active emergency stop; flags return to their previous state.",
        ),
        emergency_stop::resume,
    );
    let plan = "/v1/admin/flags/{key}/rollout-plan";
    t.add(
        spec(
            M::PUT,
            plan,
            Some(Admin),
            "safety",
            "Write a flag's progressive rollout plan: steps [{percent, hold}], target, guards, start_at, rollback.",
        ),
        rollout_plans::put,
    )
    .add(
        spec(M::GET, plan, Some(Admin), "safety", "The rollout plan, its state and guard readings."),
        rollout_plans::get,
    )
    .add(
        spec(
            M::POST,
            "/v1/admin/flags/{key}/rollout-plan/{action}",
            Some(Admin),
            "safety",
            "start, pause, resume or cancel the rollout plan (409 in the wrong state).",
        ),
        rollout_plans::act,
    );
    let (budgets, budget) = ("/v1/admin/budgets", "/v1/admin/budgets/{key}");
    t.add(spec(M::POST, budgets, Some(Admin), "safety", "Create a cost budget."), budgets::create)
        .add(spec(M::GET, budgets, Some(Admin), "safety", "Budgets with their spend and remaining."), budgets::list)
        .add(spec(M::GET, budget, Some(Admin), "safety", "One budget with its spend and remaining."), budgets::get)
        .add(spec(M::PUT, budget, Some(Admin), "safety", "Replace a budget (optional If-Match)."), budgets::replace)
        .add(spec(M::DELETE, budget, Some(Admin), "safety", "Delete a budget."), budgets::delete);
    event_routes(&mut t);
    t
}

/// Assignment, and the experiment lifecycle calls.
fn experiment_routes(t: &mut Table) {
    use Access::*;
    use Method as M;
    let kind = EntityKind::Experiment;
    t.add(
        spec(M::POST, "/v1/assign", Some(Client), "assignment", "Assign a user to an experiment's variant (sticky)."),
        assign::post,
    )
    .add(
        spec(
            M::GET,
            "/v1/assign",
            Some(Client),
            "assignment",
            "Assignment, query form (?experiment_key=&user_id=, optional JSON body {\"context\"}).",
        ),
        assign::query,
    )
    .add(
        spec(
            M::GET,
            "/v1/experiments/{key}/results",
            Some(Server),
            "analysis",
            "Experiment results: effects, intervals, corrected p-values, SRM, series and a recommendation \
             (?method=&correction= override the configuration).",
        ),
        results::results,
    )
    .add(
        spec(
            M::GET,
            "/v1/experiments/{key}/power",
            Some(Server),
            "analysis",
            "Planning from the control's data: users per variant for ?mde=, and the detectable effect.",
        ),
        results::power,
    )
    .add_document(
        kind,
        spec(M::POST, "/v1/admin/experiments/{key}/start", Some(Admin), "admin", "Start (draft or paused → running)."),
        admin_experiments::start,
    )
    .add_document(
        kind,
        spec(M::POST, "/v1/admin/experiments/{key}/pause", Some(Admin), "admin", "Pause (running → paused)."),
        admin_experiments::pause,
    )
    .add_document(
        kind,
        spec(
            M::POST,
            "/v1/admin/experiments/{key}/complete",
            Some(Admin),
            "admin",
            "Complete (running or paused → completed), optionally with {\"winner\": variant}.",
        ),
        admin_experiments::complete,
    )
    .add_document(
        kind,
        spec(M::POST, "/v1/admin/experiments/{key}/archive", Some(Admin), "admin", "Archive (completed → archived)."),
        admin_experiments::archive,
    );
}

/// The event pipeline's routes: ingest, counters and the dead-letter queue.
fn event_routes(t: &mut Table) {
    use Access::*;
    use Method as M;
    t.add(
        spec(
            M::POST,
            "/v1/events",
            Some(Client),
            "events",
            "Ingest a batch: JSON array, {\"events\": [...]}, or NDJSON (application/x-ndjson); partial acceptance.",
        ),
        events::ingest,
    )
    .add(
        spec(
            M::POST,
            "/v1/events/kinesis",
            Some(Server),
            "events",
            "Ingest a Kinesis-shaped batch; answers the records to retry in batchItemFailures.",
        ),
        events::kinesis,
    )
    .add(
        spec(
            M::GET,
            "/v1/stats/events",
            Some(Server),
            "events",
            "Hourly or daily counters of an event (?event=&window=hour|day&from=&to=&experiment=).",
        ),
        stats::events,
    )
    .add(
        spec(
            M::GET,
            "/v1/admin/dlq",
            Some(Admin),
            "events",
            "List dead letters (?code=&stage=&since=&after_id=&ids=&limit=).",
        ),
        dlq::list,
    )
    .add(
        spec(
            M::POST,
            "/v1/admin/dlq/replay",
            Some(Admin),
            "events",
            "Validate the selected dead letters again; re-ingest those that pass.",
        ),
        dlq::replay,
    )
    .add(
        spec(
            M::DELETE,
            "/v1/admin/dlq",
            Some(Admin),
            "events",
            "Purge the selected dead letters (all without filters).",
        ),
        dlq::purge,
    );
}

/// Every route the service serves.
pub fn specs(state: AppState) -> Vec<RouteSpec> {
    table(state).specs
}

/// The routes, with CORS on the routes that allow it, and the API's 404 and 405 answers.
pub fn router(state: AppState) -> Router {
    let cors = crate::http::middleware::cors(&state.config.cors);
    let table = table(state.clone());
    let (mut plain, mut browser) = (Router::new(), Router::new());
    for (path, (route, allows_cors)) in table.paths {
        if allows_cors && cors.is_some() {
            browser = browser.route(path, route);
        } else {
            plain = plain.route(path, route);
        }
    }
    // The 405 answer is set before CORS is layered on, so preflight (OPTIONS) requests, which
    // no route serves, reach the CORS layer wrapped around it rather than a bare 405.
    browser = browser.method_not_allowed_fallback(crate::http::error::method_not_allowed);
    if let Some(cors) = cors {
        browser = browser.layer(cors);
    }
    plain
        .method_not_allowed_fallback(crate::http::error::method_not_allowed)
        .merge(browser)
        .fallback(crate::http::error::not_found)
        .with_state(state)
}

/// Whether `If-None-Match` lists `etag` (or is `*`).
pub fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(axum::http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// `If-Match: <version>` (quoted or not), or none.
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(axum::http::header::IF_MATCH) else { return Ok(IfMatch(None)) };
        value
            .to_str()
            .ok()
            .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|version| IfMatch(Some(version)))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_header", "If-Match must be the document's version, e.g. If-Match: 3")
                    .with_field("If-Match")
            })
    }
}

/// The reason for a change, from `X-Vexil-Reason` or `?reason=`; recorded in the audit log.
pub struct ChangeReason(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ChangeReason {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        if let Some(value) = parts.headers.get("x-vexil-reason") {
            let text = value.to_str().map_err(|_| {
                ApiError::bad_request("invalid_header", "X-Vexil-Reason must be visible ASCII")
                    .with_field("X-Vexil-Reason")
            })?;
            return Ok(ChangeReason(Some(text.to_string())));
        }
        #[derive(serde::Deserialize)]
        struct ReasonQuery {
            reason: Option<String>,
        }
        let query = axum::extract::Query::<ReasonQuery>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
        Ok(ChangeReason(query.0.reason))
    }
}
