//! `GET /openapi.json`: an OpenAPI 3.1 document built from the route table, so every route
//! the router serves is described, with its security, parameters, bodies and error answers.
//! The schemas of the bodies are in `schemas`, beside the mapping of routes to them here.

use crate::http::auth::Access;
use crate::http::routes::{specs, RouteSpec};
use crate::http::session::{writes, SESSION_PATH};
use crate::http::state::AppState;
use axum::extract::State;
use axum::http::Method;
use axum::Json;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

mod schemas;
use schemas::schemas;

/// The route of the console's files, whose parameter is the rest of the path.
const CONSOLE_FILES: &str = "/console/{*path}";

/// `GET /openapi.json`
pub async fn serve(State(state): State<AppState>) -> Json<Value> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    Json(DOCUMENT.get_or_init(|| document(&specs(state))).clone())
}

/// The schemas a route takes and answers: (request body, success status, success body).
fn bodies(spec: &RouteSpec) -> (Option<&'static str>, &'static str, Option<&'static str>) {
    let collection = spec.path.trim_end_matches("/{key}").rsplit('/').next().unwrap_or_default();
    let item = if collection == "segments" { "Segment" } else { "Flag" };
    let item_schema = if item == "Segment" { "Segment" } else { "Flag" };
    match (spec.method.clone(), spec.path) {
        (Method::POST, "/v1/flags/{key}/evaluate") => (Some("EvaluationRequest"), "200", Some("EvaluationResult")),
        (Method::GET, "/v1/evaluate") => (None, "200", Some("EvaluationResult")),
        (Method::POST, "/v1/evaluate") => (Some("BatchEvaluationRequest"), "200", Some("BatchEvaluationResult")),
        (Method::POST, "/ofrep/v1/evaluate/flags/{key}") => (Some("OfrepRequest"), "200", Some("OfrepSuccess")),
        (Method::POST, "/ofrep/v1/evaluate/flags") => (Some("OfrepRequest"), "200", Some("OfrepBulkSuccess")),
        (Method::GET, "/v1/sdk/flags" | "/v1/admin/export") => (None, "200", Some("FlagsDocument")),
        (Method::GET, "/v1/sdk/stream" | "/ofrep/v1/event-stream" | "/v1/admin/stream") => (None, "200", None),
        (Method::GET, "/v1/admin/flags/{key}/evaluation") => (None, "200", Some("EvaluationResult")),
        (Method::POST, "/v1/events/evaluation-counts") => {
            (Some("EvaluationCounts"), "200", Some("EvaluationCountsResult"))
        }
        (Method::POST, "/v1/admin/import") => (Some("FlagsDocument"), "200", Some("ImportReport")),
        (Method::POST, "/v1/admin/keys") => (Some("NewKey"), "201", Some("CreatedKey")),
        (Method::GET, "/v1/admin/keys") => (None, "200", Some("KeyList")),
        (Method::DELETE, "/v1/admin/keys/{id}") => (None, "200", Some("Key")),
        (Method::POST, "/v1/admin/users") => (Some("NewUser"), "201", Some("User")),
        (Method::GET, "/v1/admin/users") => (None, "200", Some("UserList")),
        (Method::PUT, "/v1/admin/users/{username}") => (Some("UserChange"), "200", Some("User")),
        (Method::POST, SESSION_PATH) => (Some("Credentials"), "200", Some("Session")),
        (Method::GET, SESSION_PATH) => (None, "200", Some("Session")),
        (Method::DELETE, SESSION_PATH) => (None, "204", None),
        (Method::GET, "/v1/admin/audit") => (None, "200", Some("AuditRecords")),
        (Method::GET, "/v1/stats/event-names") => (None, "200", Some("EventNames")),
        (Method::GET, "/v1/admin/rollout-plans") => (None, "200", Some("RolloutPlanList")),
        (Method::GET, "/v1/admin/emergency-stop/preview") => (None, "200", Some("StopPreview")),
        (Method::GET, "/v1/admin/environments") => (None, "200", Some("EnvironmentList")),
        (Method::POST, "/v1/admin/environments/{env}/promote") => (Some("Promotion"), "200", Some("PromotionResult")),
        (Method::GET, "/v1/admin/flags/{key}/environments") => (None, "200", Some("FlagEnvironments")),
        (Method::GET, "/v1/admin/change-requests") => (None, "200", Some("ChangeRequestList")),
        (_, p) if p.starts_with("/v1/admin/change-requests/") => (None, "200", Some("ChangeRequest")),
        (_, p) if p.starts_with("/v1/admin/environments") && spec.method != Method::DELETE => {
            let request = matches!(spec.method, Method::POST | Method::PUT).then_some("Environment");
            (request, if spec.method == Method::POST { "201" } else { "200" }, Some("Environment"))
        }
        (Method::GET, "/v1/admin/flags" | "/v1/admin/segments") => (None, "200", Some("DocumentList")),
        (Method::POST, "/v1/admin/experiments/{key}/complete") => (Some("Completion"), "200", Some("Object")),
        (Method::POST, p) if p.starts_with("/v1/admin/experiments/{key}/") => (None, "200", Some("Object")),
        (Method::POST, "/v1/admin/flags/{key}/rollout-plan/{action}") => (None, "200", Some("Object")),
        (Method::POST, "/v1/admin/emergency-stop/resume" | "/v1/admin/dlq/replay") => (None, "200", Some("Object")),
        (Method::POST, "/v1/admin/emergency-stop") => (Some("Object"), "201", Some("Object")),
        (Method::POST, "/v1/admin/budgets") => (Some("Object"), "201", Some("Object")),
        (Method::POST, "/v1/assign") => (Some("Object"), "200", Some("Object")),
        (Method::POST, "/v1/events" | "/v1/events/kinesis") => (Some("Object"), "200", Some("Object")),
        (Method::DELETE, "/v1/admin/dlq") => (None, "200", Some("Object")),
        (Method::POST, _) => (Some(item_schema), "201", Some(item_schema)),
        (Method::GET, p) if p.starts_with("/v1/admin/") => (None, "200", Some(item_schema)),
        (Method::PUT, _) => (Some(item_schema), "200", Some(item_schema)),
        (Method::DELETE, _) => (None, "204", None),
        _ => (None, "200", Some("Object")),
    }
}

/// Whether a person's session cookie may authenticate the route: any that takes a key, and the
/// session's own.
fn signed_in(spec: &RouteSpec) -> bool {
    spec.access.is_some() || (spec.path == SESSION_PATH && spec.method != Method::POST)
}

/// Whether an editor's call of the route may be held as a change request (202): the routes the
/// protection middleware holds, and promotion, which holds by its target in the path.
fn held(spec: &RouteSpec) -> bool {
    crate::http::routes::change_requests::is_held_route(&spec.method, spec.path)
        || spec.path == "/v1/admin/environments/{env}/promote"
}

fn operation(spec: &RouteSpec) -> Value {
    let (request, status, response) = bodies(spec);
    let mut parameters: Vec<Value> = spec
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| name.trim_start_matches('*'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    parameters.extend(query_parameters(spec.path).iter().map(|(name, schema, required, description)| {
        json!({"name": name, "in": "query", "required": required, "schema": schema, "description": description})
    }));
    let header = |name: &str, description: &str| json!({"name": name, "in": "header", "required": false, "schema": {"type": "string"}, "description": description});
    let versioned = !spec.path.starts_with("/v1/admin/users") && spec.path != SESSION_PATH;
    match spec.method {
        Method::PUT | Method::DELETE if versioned => {
            parameters.push(header("If-Match", "The version the change applies to; 409 version_mismatch otherwise."))
        }
        Method::GET if matches!(spec.path, "/v1/sdk/flags" | "/" | CONSOLE_FILES) => {
            parameters.push(header("If-None-Match", "The ETag held; 304 when current."))
        }
        Method::POST if spec.path == "/ofrep/v1/evaluate/flags" => {
            parameters.push(header("If-None-Match", "The ETag held; 304 when current."));
            parameters.push(
                json!({"name": "flagConfigEtag", "in": "query", "required": false, "schema": {"type": "string"},
                "description": "The etag of the refetchEvaluation event that triggered this re-fetch (\"<revision>\"); \
                    a node that has not loaded that revision yet catches up before answering. \
                    Not a conditional request: If-None-Match decides 304. Anything but a revision is 400 GENERAL."}),
            );
            parameters.push(
                json!({"name": "flagConfigLastModified", "in": "query", "required": false, "schema": {"type": "string"},
                "description": "Accepted and ignored: vexil's events carry no lastModified."}),
            );
        }
        Method::GET if spec.path == "/v1/admin/stream" => parameters.push(header(
            "Last-Event-ID",
            "The id (a revision) of the last event received; when current, the stream does not start with a message. \
             400 invalid_header when not a revision number.",
        )),
        Method::GET if spec.path == "/ofrep/v1/event-stream" => {
            parameters.push(header(
                "Last-Event-ID",
                "The id (a revision) of the last event received; when current, the stream does not start with a message. \
                 400 invalid_header when not a revision number.",
            ));
            parameters.push(json!({"name": "key", "in": "query", "required": false, "schema": {"type": "string"},
                "description": "A client key, for clients that cannot send headers (a browser's EventSource); the bulk \
                    answer's eventStreams carries it for client keys. A server or admin key here is 403."}));
        }
        _ => {}
    }
    if spec.access == Some(Access::Admin) && spec.method != Method::GET {
        parameters.push(header("X-Vexil-Reason", "Why: recorded in the audit log (also ?reason=)."));
    }
    if signed_in(spec) && writes(&spec.method) {
        parameters.push(header(
            "X-CSRF-Token",
            "With the session cookie: the session's csrf_token (403 csrf_required without it). Not needed with a key.",
        ));
    }
    if spec.access.is_some() {
        parameters.push(header(
            "X-Vexil-Env",
            "The environment (also ?env=): admin keys name theirs, the default one otherwise; server and \
             client keys act only in their own (403 for another). The answer's X-Vexil-Env header names the one used.",
        ));
        parameters.push(json!({"name": "env", "in": "query", "required": false, "schema": {"type": "string"},
            "description": "The environment, as X-Vexil-Env."}));
    }
    let content =
        |schema: &str| json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}});
    let mut responses = Map::new();
    let success = match (response, spec.path) {
        (_, "/v1/sdk/stream") => json!({"description": "An event stream", "content": {"text/event-stream": {"schema": {
            "type": "object", "description": "One server-sent event; its data is JSON text.",
            "properties": {"event": {"type": "string", "enum": ["put", "patch", "delete"]}, "data": {"type": "string"},
                           "id": {"type": "string"}}}}}}),
        (_, "/ofrep/v1/event-stream") => json!({
            "description": "An event stream of `id: <revision>`, `event: message`, `data: OfrepRefetchEvent` \
                (and `: heartbeat` comments)",
            "content": {"text/event-stream": {"schema": {
                "type": "object", "description": "One server-sent event; its data is an OfrepRefetchEvent as JSON text.",
                "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}}},
                "x-data-schema": {"$ref": "#/components/schemas/OfrepRefetchEvent"}}}
        }),
        (_, "/") => json!({"description": "The console's page",
            "content": {"text/html": {"schema": {"type": "string"}}}}),
        (_, CONSOLE_FILES) => json!({"description": "A file of the console",
            "content": {"text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}},
                        "text/html": {"schema": {"type": "string"}}}}),
        (_, "/v1/admin/stream") => json!({
            "description": "An event stream of `id: <revision>`, `event: revision`, `data: {\"revision\": N}` \
                (and `: heartbeat` comments)",
            "content": {"text/event-stream": {"schema": {
                "type": "object", "description": "One server-sent event; its data is {\"revision\": N} as JSON text.",
                "properties": {"event": {"type": "string", "enum": ["revision"]}, "data": {"type": "string"},
                               "id": {"type": "string"}}}}}
        }),
        (_, "/metrics") => {
            json!({"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}})
        }
        (Some(schema), _) => json!({"description": "Success", "content": content(schema)}),
        (None, _) => json!({"description": "Success"}),
    };
    responses.insert(status.into(), success);
    if held(spec) {
        responses.insert(
            "202".into(),
            json!({"description": "Held for approval: an editor's change in a protected environment",
                   "content": content("HeldChange")}),
        );
    }
    let error = |description: &str| json!({"description": description, "content": content("Error")});
    if spec.path == "/ofrep/v1/event-stream" {
        responses.insert("400".into(), error("Last-Event-ID is not a revision number (invalid_header)"));
        responses.insert("404".into(), error("The environment named by ?env= or X-Vexil-Env does not exist"));
    } else if spec.path.starts_with("/ofrep/") {
        responses.insert("400".into(), json!({"description": "PARSE_ERROR, INVALID_CONTEXT or TARGETING_KEY_MISSING", "content": content("OfrepFailure")}));
        // The flag is OFREP's to report; the environment is checked with the key, before OFREP.
        responses.insert(
            "404".into(),
            json!({
            "description": "FLAG_NOT_FOUND (OFREP's shape), or environment_not_found (the API's error shape)",
            "content": {"application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/OfrepFailure"}, {"$ref": "#/components/schemas/Error"}]}}}}),
        );
    } else if spec.access.is_some() {
        responses.insert("400".into(), error("Invalid input"));
        responses.insert("404".into(), error("Unknown flag, document or route"));
    }
    let retry_after = json!({"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}});
    if spec.access.is_some() {
        responses.insert("401".into(), error("Missing or invalid API key or session"));
        responses.insert(
            "403".into(),
            error(
                "The key's (or person's) kind or role may not call this route, or may not act in the environment; \
                 csrf_required: a write with the session cookie lacks X-CSRF-Token",
            ),
        );
        let mut limited = error("The key is over its rate limit (see Retry-After)");
        limited["headers"] = retry_after.clone();
        responses.insert("429".into(), limited);
    } else if spec.path == SESSION_PATH {
        responses.insert(
            "401".into(),
            match spec.method {
                Method::POST => error("invalid_credentials: wrong username or password"),
                _ => error("unauthenticated: no live session"),
            },
        );
        if spec.method == Method::POST {
            responses.insert("400".into(), error("Invalid input"));
            let mut throttled = error("too_many_attempts: too many failed sign-ins lately (see Retry-After)");
            throttled["headers"] = retry_after;
            responses.insert("429".into(), throttled);
            responses["200"]["headers"] = json!({"Set-Cookie": {
                "description": "vexil_session=<token>; HttpOnly; SameSite=Strict; Path=/ (and Secure over TLS)",
                "schema": {"type": "string"}}});
        }
        if spec.method == Method::DELETE {
            responses.insert("403".into(), error("csrf_required: X-CSRF-Token is missing or wrong"));
            responses["204"]["headers"] = json!({"Set-Cookie": {
                "description": "The session cookie, cleared", "schema": {"type": "string"}}});
        }
    } else if spec.path == "/metrics" {
        responses.insert("401".into(), error("metrics_key is configured and was not presented"));
    }
    // The edge answers these on every route (http::edge).
    responses.insert("408".into(), error("Headers or body not received in time"));
    responses.insert("414".into(), error("Request target over the limit"));
    responses.insert("431".into(), error("Request headers over the limit"));
    if matches!(spec.method, Method::POST | Method::PUT) && request.is_some() {
        responses.insert("413".into(), error("Body over the size limit"));
        responses.insert("415".into(), error("Body is not JSON"));
    }
    if matches!(spec.method, Method::POST | Method::PUT | Method::DELETE) && spec.path.starts_with("/v1/admin/") {
        responses.insert("409".into(), error("Conflict: exists, version mismatch, or still referenced"));
    }
    if matches!(
        spec.path,
        "/v1/events" | "/v1/events/kinesis" | "/v1/events/evaluation-counts" | "/v1/admin/dlq/replay"
    ) {
        responses.insert("503".into(), error("The event pipeline cannot take events now"));
    }
    if spec.path == "/v1/experiments/{key}/power" {
        responses.insert("409".into(), error("not_enough_data: the control variant has no data for the metric yet"));
    }
    if spec.path == "/v1/events/evaluation-counts" {
        responses.insert("409".into(), error("report_id_reused: the report_id was counted with other counts"));
    }
    if matches!(spec.path, "/" | CONSOLE_FILES) {
        responses.insert("304".into(), json!({"description": "Not modified: If-None-Match names the file's ETag"}));
    }
    if spec.path == CONSOLE_FILES {
        responses.insert("404".into(), error("The console has no such file"));
    }
    if spec.path == "/ready" {
        responses.insert("503".into(), error("Not ready"));
    }
    if matches!(spec.path, "/v1/sdk/flags" | "/ofrep/v1/evaluate/flags") {
        responses.insert("304".into(), json!({"description": "Not modified"}));
    }
    let mut security = match spec.access {
        Some(access) if spec.key_in_query => {
            json!([{"bearer": [access.name()]}, {"apiKey": [access.name()]}, {"queryKey": ["client"]}])
        }
        Some(access) if spec.path.starts_with("/ofrep/") => {
            json!([{"bearer": [access.name()]}, {"apiKey": [access.name()]}])
        }
        Some(access) => json!([{"bearer": [access.name()]}]),
        None => json!([]),
    };
    if signed_in(spec) {
        security.as_array_mut().expect("security is a list").push(json!({"session": []}));
    }
    let mut op = json!({
        "summary": spec.summary,
        "tags": [spec.tag],
        "operationId": format!("{} {}", spec.method, spec.path),
        "parameters": parameters,
        "responses": responses,
        "security": security,
    });
    if let Some(schema) = request {
        // The winner of a completion is optional, and so is its body.
        let required = spec.method != Method::GET && !spec.path.ends_with("/complete");
        op["requestBody"] = json!({"required": required, "content": content(schema)});
    }
    op
}

/// The query parameters a route reads: (name, schema, required, description). The handlers
/// validate them (400 naming the parameter), so the schemas only say what a valid value looks
/// like.
fn query_parameters(path: &str) -> Vec<(&'static str, Value, bool, &'static str)> {
    let string = || json!({"type": "string"});
    let integer = || json!({"type": "integer", "minimum": 0});
    let time = || json!({"type": "string", "format": "date-time"});
    let one_of = |values: &[&str]| json!({"type": "string", "enum": values});
    match path {
        "/v1/evaluate" => {
            vec![("flag_key", string(), true, "The flag to evaluate."), ("user_id", string(), true, "The user.")]
        }
        "/v1/assign" => {
            vec![("experiment_key", string(), true, "The experiment."), ("user_id", string(), true, "The user.")]
        }
        "/v1/admin/flags" | "/v1/admin/segments" | "/v1/admin/experiments" => {
            vec![("tag", string(), false, "Only the documents with this tag.")]
        }
        "/v1/admin/flags/{key}/evaluation" => vec![
            ("user_id", string(), true, "The user."),
            ("context", string(), false, "The context attributes as a JSON object (text)."),
        ],
        "/v1/admin/import" => vec![("dry_run", json!({"type": "boolean"}), false, "Only validate; change nothing.")],
        "/v1/admin/change-requests" => {
            vec![("status", one_of(&["pending", "approved", "rejected"]), false, "Only the requests in this state.")]
        }
        "/v1/admin/audit" => vec![
            ("entity", string(), false, "flag, segment, experiment, key, ..."),
            ("key", string(), false, "The entity's key."),
            ("limit", integer(), false, "Records at most."),
            ("before", integer(), false, "Records older than this id."),
        ],
        "/v1/admin/dlq" | "/v1/admin/dlq/replay" => vec![
            ("code", string(), false, "Only letters with this error code."),
            ("stage", string(), false, "Only letters rejected at this stage."),
            ("since", time(), false, "Only letters since this time."),
            ("after_id", integer(), false, "Letters after this id (paging)."),
            ("ids", string(), false, "Comma-separated ids."),
            ("limit", integer(), false, "Letters at most."),
        ],
        "/v1/stats/events" => vec![
            ("event", string(), true, "The event name."),
            ("window", one_of(&["hour", "day"]), false, "Counter granularity."),
            ("from", time(), false, "Start of the range."),
            ("to", time(), false, "End of the range."),
            ("experiment", string(), false, "Only this experiment's exposures."),
        ],
        "/v1/admin/emergency-stop/preview" => vec![
            ("scope", one_of(&["all", "tag", "flags"]), true, "What the stop covers."),
            ("tag", string(), false, "The tag (scope tag)."),
            ("flags", string(), false, "Comma-separated flag keys (scope flags)."),
        ],
        "/v1/stats/event-names" => vec![
            ("from", time(), false, "Start of the range (default 30 days before to)."),
            ("to", time(), false, "End of the range (default now)."),
        ],
        "/v1/experiments/{key}/results" => vec![
            ("method", one_of(&["frequentist", "sequential", "bayesian"]), false, "Analysis method."),
            ("correction", one_of(&["holm", "bh", "none"]), false, "Multiple-comparison correction."),
        ],
        "/v1/experiments/{key}/power" => vec![
            ("metric", string(), false, "The metric to plan for."),
            ("mde", json!({"type": "number"}), false, "Relative minimum detectable effect."),
            ("users", integer(), false, "Users per variant."),
            ("alpha", json!({"type": "number"}), false, "Significance level."),
            ("power", json!({"type": "number"}), false, "Statistical power."),
        ],
        _ => Vec::new(),
    }
}

/// The document for these routes.
pub fn document(specs: &[RouteSpec]) -> Value {
    let mut paths = Map::new();
    for spec in specs {
        // OpenAPI writes a path parameter `{name}` whether it matches one segment or the rest.
        let path = paths.entry(spec.path.replace("{*", "{")).or_insert_with(|| json!({}));
        path[spec.method.as_str().to_ascii_lowercase()] = operation(spec);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "vexil", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Feature flags and experimentation. Errors are {\"error\": {\"code\", \"message\", \"field\"}}."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "queryKey": {"type": "apiKey", "in": "query", "name": "key",
                             "description": "A client key in the URL, on the routes that allow it (the OFREP event stream)"},
                "session": {"type": "apiKey", "in": "cookie", "name": "vexil_session",
                            "description": "A person's session (POST /v1/session): acts with the person's role and \
                                environments as an admin key would; writes also need X-CSRF-Token"}
            },
            "schemas": schemas()
        }
    })
}
