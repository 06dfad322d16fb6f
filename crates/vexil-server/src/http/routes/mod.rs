//! The route table: every route with its method, path, required key kind, whether browsers may
//! call it cross-origin (`.cors()`), and summary, registered in one place. The router and the
//! OpenAPI document are both built from it, so a route cannot exist without being described.
//! How the table is built is in [`table`].

pub mod admin_documents;
pub mod admin_experiments;
pub mod admin_import;
pub mod assign;
pub mod audit;
pub mod budgets;
pub mod change_requests;
pub mod dlq;
pub mod emergency_stop;
pub mod environments;
pub mod evaluate;
pub mod events;
pub mod health;
pub mod keys;
pub mod ofrep;
pub mod promotion;
pub mod results;
pub mod rollout_plans;
pub mod sdk;
pub mod session;
pub mod stats;
pub mod users;

pub mod table;

use crate::http::auth::Access;
use crate::http::state::AppState;
use axum::http::Method;
use axum::Router;
use table::{spec, Table};
use vexil_store::EntityKind;

pub use table::RouteSpec;

/// Registers every route.
fn table(state: AppState) -> Table {
    use Access::*;
    use Method as M;
    let mut t = Table::new(state);
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
        .add(spec(M::GET, "/", None, "console", "The web console."), crate::http::console::page)
        .add(
            spec(M::GET, "/console/{*path}", None, "console", "The web console's scripts and styles."),
            crate::http::console::file,
        )
        .add(
            spec(
                M::POST,
                "/v1/flags/{key}/evaluate",
                Some(Client),
                "evaluation",
                "Evaluate one flag for a user and context.",
            )
            .cors(),
            evaluate::flag,
        )
        .add(
            spec(
                M::GET,
                "/v1/evaluate",
                Some(Client),
                "evaluation",
                "Evaluate one flag: query form (?flag_key=&user_id=, optional JSON body {\"context\"}).",
            )
            .cors(),
            evaluate::query,
        )
        .add(
            spec(
                M::POST,
                "/v1/evaluate",
                Some(Client),
                "evaluation",
                "Evaluate several flags (or all) for a user and context.",
            )
            .cors()
            .compressed(),
            evaluate::batch,
        )
        .add(
            spec(M::POST, "/ofrep/v1/evaluate/flags/{key}", Some(Client), "ofrep", "OFREP single flag evaluation.")
                .cors(),
            ofrep::flag,
        )
        .add(
            spec(
                M::POST,
                "/ofrep/v1/evaluate/flags",
                Some(Client),
                "ofrep",
                "OFREP bulk evaluation, with ETag / If-None-Match.",
            )
            .cors()
            .compressed(),
            ofrep::bulk,
        )
        .add(
            spec(
                M::GET,
                ofrep::EVENT_STREAM_PATH,
                Some(Client),
                "ofrep",
                "OFREP event stream (SSE): a refetchEvaluation message per configuration change \
                 (a client key may come as ?key=).",
            )
            .cors()
            .key_in_query(),
            ofrep::event_stream_route,
        )
        .add(
            spec(
                M::GET,
                "/v1/sdk/flags",
                Some(Server),
                "sdk",
                "The full flags document for local evaluation, with ETag / If-None-Match.",
            )
            .compressed(),
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
            spec(M::GET, collection, Some(Admin), tag, "List (optionally ?tag=).").compressed(),
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
        spec(M::GET, "/v1/admin/export", Some(Admin), "admin", "Export the configuration as a flags file.")
            .compressed(),
        admin_import::export,
    )
    .add(
        spec(M::POST, "/v1/admin/keys", Some(Admin), "admin", "Create an API key; the secret is in this answer only."),
        keys::create,
    )
    .add(spec(M::GET, "/v1/admin/keys", Some(Admin), "admin", "List API keys (no secrets)."), keys::list)
    .add(spec(M::DELETE, "/v1/admin/keys/{id}", Some(Admin), "admin", "Revoke an API key."), keys::revoke)
    .add(
        spec(M::GET, "/v1/admin/environments", Some(Admin), "environments", "List environments and name the default one."),
        environments::list,
    )
    .add(
        spec(
            M::POST,
            "/v1/admin/environments",
            Some(Admin),
            "environments",
            "Create an environment {\"key\", \"name\", \"description\", \"protected\", \"tags\"}.",
        ),
        environments::create,
    )
    .add(
        spec(M::GET, "/v1/admin/environments/{env}", Some(Admin), "environments", "One environment."),
        environments::get,
    )
    .add(
        spec(
            M::PUT,
            "/v1/admin/environments/{env}",
            Some(Admin),
            "environments",
            "Replace an environment's name, description, protection and tags (If-Match: <version>).",
        ),
        environments::replace,
    )
    .add(
        spec(
            M::DELETE,
            "/v1/admin/environments/{env}",
            Some(Admin),
            "environments",
            "Delete an environment: 409 not_empty while it holds anything unless ?force=true; never the default one.",
        ),
        environments::delete,
    )
    .add(
        spec(
            M::POST,
            "/v1/admin/environments/{env}/promote",
            Some(Admin),
            "environments",
            "Promote flags and segments {\"from\", \"flags\", \"segments\", \"dry_run\", \"expected_versions\"} \
             into this environment: the changes, applied atomically unless dry_run (202 with a change request for an \
             editor in a protected environment).",
        ),
        promotion::promote,
    )
    .add(
        spec(
            M::GET,
            "/v1/admin/flags/{key}/evaluation",
            Some(Admin),
            "admin",
            "What the flag gives a user and context now (?user_id=&context=<JSON object>), as the evaluation routes \
             answer, without counting, tracking or assigning (experiment rules answer as for a user in none).",
        ),
        evaluate::preview,
    )
    .add(
        spec(
            M::GET,
            "/v1/admin/stream",
            Some(Admin),
            "admin",
            "Server-Sent Events for the web console: `event: revision` {\"revision\"} whenever the environment's \
             configuration changes (and once on connect unless Last-Event-ID is current).",
        ),
        sdk::admin_stream,
    )
    .add(
        spec(
            M::GET,
            "/v1/admin/flags/{key}/environments",
            Some(Admin),
            "environments",
            "A flag in every environment the key may read: {\"environments\": {env: flag or null}}.",
        ),
        promotion::flag_everywhere,
    )
    .add(
        spec(
            M::GET,
            "/v1/admin/change-requests",
            Some(Admin),
            "environments",
            "The environment's change requests, newest first (?status=pending|approved|rejected).",
        ),
        change_requests::list,
    )
    .add(
        spec(M::GET, "/v1/admin/change-requests/{id}", Some(Admin), "environments", "One change request."),
        change_requests::get,
    )
    .add(
        spec(
            M::POST,
            "/v1/admin/change-requests/{id}/approve",
            Some(Admin),
            "environments",
            "Approve and apply a change request (not by its author; 409 if what it changes changed since).",
        ),
        change_requests::approve,
    )
    .add(
        spec(
            M::POST,
            "/v1/admin/change-requests/{id}/reject",
            Some(Admin),
            "environments",
            "Reject a change request.",
        ),
        change_requests::reject,
    )
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
            M::GET,
            "/v1/admin/emergency-stop/preview",
            Some(Admin),
            "safety",
            "What a stop would cover now (?scope=all|tag|flags&tag=&flags=a,b): the flags it turns off and the \
             experiments they serve; stores nothing.",
        ),
        emergency_stop::preview,
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
    )
    .add(
        spec(
            M::GET,
            "/v1/admin/rollout-plans",
            Some(Admin),
            "safety",
            "Every rollout plan of the environment with its state, step and guard readings.",
        ),
        rollout_plans::list,
    );
    let (budgets, budget) = ("/v1/admin/budgets", "/v1/admin/budgets/{key}");
    let kind = EntityKind::Budget;
    t.add(spec(M::POST, budgets, Some(Admin), "safety", "Create a cost budget."), budgets::create)
        .add(spec(M::GET, budgets, Some(Admin), "safety", "Budgets with their spend and remaining."), budgets::list)
        .add(spec(M::GET, budget, Some(Admin), "safety", "One budget with its spend and remaining."), budgets::get)
        .add_document(
            kind,
            spec(M::PUT, budget, Some(Admin), "safety", "Replace a budget (optional If-Match)."),
            budgets::replace,
        )
        .add_document(kind, spec(M::DELETE, budget, Some(Admin), "safety", "Delete a budget."), budgets::delete);
    event_routes(&mut t);
    people_routes(&mut t);
    t
}

/// People of the web console (owners manage them) and their sessions (SPEC 9).
fn people_routes(t: &mut Table) {
    use Access::*;
    use Method as M;
    let (users, user) = ("/v1/admin/users", "/v1/admin/users/{username}");
    t.add(
        spec(M::POST, users, Some(Admin), "people", "Create a person who signs in to the web console."),
        users::create,
    )
    .add(spec(M::GET, users, Some(Admin), "people", "List people (never their passwords)."), users::list)
    .add(
        spec(M::PUT, user, Some(Admin), "people", "Change a person's role, environments, disabled or password."),
        users::update,
    )
    .add(
        spec(M::POST, session::PATH, None, "people", "Sign in: the session cookie and its csrf_token."),
        session::sign_in,
    )
    .add(spec(M::GET, session::PATH, None, "people", "The session the cookie names."), session::get)
    .add(spec(M::DELETE, session::PATH, None, "people", "Sign out: the session ends."), session::sign_out);
}

/// Assignment, and the experiment lifecycle calls.
fn experiment_routes(t: &mut Table) {
    use Access::*;
    use Method as M;
    let kind = EntityKind::Experiment;
    t.add(
        spec(M::POST, "/v1/assign", Some(Client), "assignment", "Assign a user to an experiment's variant (sticky).")
            .cors(),
        assign::post,
    )
    .add(
        spec(
            M::GET,
            "/v1/assign",
            Some(Client),
            "assignment",
            "Assignment, query form (?experiment_key=&user_id=, optional JSON body {\"context\"}).",
        )
        .cors(),
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
        )
        .cors(),
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
            M::POST,
            "/v1/events/evaluation-counts",
            Some(Server),
            "events",
            "Add evaluation counts an SDK made in-process: {\"report_id\", \"counts\": [{\"flag\", \"variant\", \"count\"}]}; \
             a report_id counted recently is a duplicate, not counted again.",
        ),
        events::evaluation_counts,
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
            "/v1/stats/event-names",
            Some(Server),
            "events",
            "The event names sent in the UTC days starting in [from, to), with their count and sum (?from=&to=).",
        ),
        stats::event_names,
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
    table(state).into_specs()
}

/// The router of every route, with CORS on the routes that allow it.
pub fn router(state: AppState) -> Router {
    table(state).into_router()
}
