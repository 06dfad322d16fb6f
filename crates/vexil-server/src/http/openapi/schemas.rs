//! The schemas of the bodies, which the operations name by `#/components/schemas/<name>`.

use serde_json::{json, Value};

/// The body schemas the operations name.
pub(super) fn schemas() -> Value {
    let object = |description: &str| json!({"type": "object", "description": description});
    let mut schemas = json!({
        "Object": object("A JSON object."),
        "Error": {"type": "object", "required": ["error"], "properties": {
            "error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}},
            "errors": {"type": "array", "description": "Every validation problem", "items": {"type": "object", "properties": {
                "path": {"type": "string"}, "message": {"type": "string"}}}}}},
        "Flag": object("A flag (SPEC 1.1); id, version, created_at and updated_at are added by the server."),
        "Segment": object("A segment {\"key\", \"when\", \"description\", \"tags\"} (SPEC 1.2)."),
        "DocumentList": object("{\"flags\": [Flag]} or {\"segments\": [Segment]}."),
        "FlagsDocument": {"type": "object", "properties": {
            "flags": {"type": "array", "items": {"$ref": "#/components/schemas/Flag"}},
            "segments": {"type": "array", "items": {"$ref": "#/components/schemas/Segment"}}}},
        "ImportReport": object("{\"dry_run\", \"flags\": {\"created\", \"updated\", \"unchanged\"}, \"segments\": {...}}."),
        "EvaluationRequest": {"type": "object", "required": ["user_id"], "properties": {
            "user_id": {"type": "string"}, "context": {"type": "object"}}},
        "BatchEvaluationRequest": {"type": "object", "required": ["user_id"], "properties": {
            "user_id": {"type": "string"}, "context": {"type": "object"},
            "flag_keys": {"type": "array", "items": {"type": "string"}}}},
        "EvaluationResult": {"type": "object", "properties": {
            "flag_key": {"type": "string"}, "flag_id": {"type": "string"}, "flag_version": {"type": "integer"},
            "user_id": {"type": "string"}, "value": {}, "variant": {"type": "string"},
            "reason": {"type": "string", "enum": vexil_core::Reason::ALL.map(|r| r.name())},
            "rule_id": {"type": "string"}, "enabled": {"type": "boolean"}}},
        "BatchEvaluationResult": {"type": "object", "properties": {
            "flags": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/EvaluationResult"}},
            "errors": {"type": "object", "additionalProperties": {"type": "object"}}}},
        "OfrepRequest": {"type": "object", "properties": {"context": {"type": "object", "description": "targetingKey is the user id"}}},
        "OfrepSuccess": {"type": "object", "properties": {
            "key": {"type": "string"}, "value": {}, "reason": {"type": "string"}, "variant": {"type": "string"},
            "metadata": {"type": "object"}}},
        "OfrepBulkSuccess": {"type": "object", "properties": {
            "flags": {"type": "array", "items": {"type": "object"}},
            "eventStreams": {"type": "array", "items": {"$ref": "#/components/schemas/OfrepEventStream"}}}},
        "OfrepFailure": {"type": "object", "required": ["errorCode"], "properties": {
            "key": {"type": "string"}, "errorCode": {"type": "string"}, "errorDetails": {"type": "string"}}}
    });
    // Apart from the rest: one `json!` of every schema exceeds the macro's recursion limit.
    let Value::Object(more) = json!({
        "Completion": {"type": "object", "properties": {"winner": {"type": "string", "description": "A variant key"}}},
        "NewKey": {"type": "object", "required": ["kind", "name"], "properties": {
            "kind": {"type": "string", "enum": ["admin", "server", "client"]}, "name": {"type": "string"},
            "environment": {"type": "string", "description": "Server and client keys: the environment they act in (default: the default one)."},
            "role": {"type": "string", "enum": ["owner", "editor", "viewer"], "description": "Admin keys (default owner)."},
            "environments": {"type": ["array", "null"], "items": {"type": "string"}, "description": "Admin keys: where they may act (null: every environment)."}}},
        "Key": {"type": "object", "properties": {
            "id": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"},
            "environment": {"type": ["string", "null"]}, "role": {"type": "string"},
            "environments": {"type": ["array", "null"], "items": {"type": "string"}},
            "created_at": {"type": "string"}, "revoked_at": {"type": ["string", "null"]}}},
        "CreatedKey": object("A new key with its secret in \"key\", shown only here."),
        "EventNames": {"type": "object", "required": ["from", "to", "events"], "properties": {
            "from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"},
            "events": {"type": "array", "items": {"type": "object", "required": ["event", "count", "sum"], "properties": {
                "event": {"type": "string"}, "count": {"type": "integer", "minimum": 0}, "sum": {"type": "number"}}}}}},
        "RolloutPlanList": {"type": "object", "required": ["environment", "plans"], "properties": {
            "environment": {"type": "string"},
            "plans": {"type": "array", "items": {"$ref": "#/components/schemas/Object"}}}},
        "StopPreview": {"type": "object", "required": ["scope", "flags", "experiments"], "properties": {
            "scope": {"type": "string", "enum": ["all", "tag", "flags"]},
            "flags": {"type": "array", "items": {"type": "string"}},
            "experiments": {"type": "array", "items": {"type": "string"}}}},
        "KeyList": {"type": "object", "properties": {"keys": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}}},
        "AuditRecords": {"type": "object", "properties": {"environment": {"type": "string"}, "records": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "at": {"type": "string"}, "environment": {"type": ["string", "null"]},
            "actor": {"type": "string"}, "action": {"type": "string"},
            "entity": {"type": "string"}, "key": {"type": "string"}, "before": {}, "after": {}, "reason": {"type": ["string", "null"]}}}}}}
    }) else {
        unreachable!("json! of an object is an object")
    };
    schemas.as_object_mut().expect("json! of an object is an object").extend(more);
    schemas["Environment"] = json!({"type": "object", "required": ["key"], "properties": {
        "key": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$"}, "name": {"type": "string"},
        "description": {"type": "string"}, "protected": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}}, "id": {"type": "string"}, "version": {"type": "integer"},
        "created_at": {"type": "string"}, "updated_at": {"type": "string"}}});
    schemas["EnvironmentList"] = json!({"type": "object", "properties": {
        "environments": {"type": "array", "items": {"$ref": "#/components/schemas/Environment"}},
        "default": {"type": "string"}}});
    if let (Some(all), Value::Object(more)) = (schemas.as_object_mut(), more_schemas()) {
        all.extend(more);
    }
    if let (Some(all), Value::Object(more)) = (schemas.as_object_mut(), change_schemas()) {
        all.extend(more);
    }
    if let (Some(all), Value::Object(more)) = (schemas.as_object_mut(), people_schemas()) {
        all.extend(more);
    }
    schemas
}

/// OFREP's event stream (the `eventStreams` entry and the JSON data of each event), and the
/// SDK's evaluation-count reports.
fn more_schemas() -> Value {
    json!({
        "EvaluationCounts": {"type": "object", "required": ["counts"], "properties": {
            "report_id": {"type": "string", "minLength": 1, "maxLength": 128,
                "description": "The sender's id of this report (visible ASCII), sent unchanged with the same counts when \
                    the report is sent again; a report_id this node counted recently is not counted again."},
            "counts": {"type": "array", "maxItems": 10000, "items": {"type": "object", "required": ["flag", "variant", "count"],
                "properties": {"flag": {"type": "string"}, "variant": {"type": "string"}, "count": {"type": "integer", "minimum": 1}}}}}},
        "EvaluationCountsResult": {"type": "object", "properties": {
            "accepted": {"type": "integer", "description": "Entries counted (0 for a duplicate)"},
            "duplicate": {"type": "boolean", "description": "The report_id was counted already; nothing was counted now"}}},
        "OfrepEventStream": {"type": "object", "required": ["type", "endpoint"],
            "description": "Where live updates come from: connect to the provider's OFREP origin + endpoint.requestUri.",
            "properties": {
                "type": {"type": "string", "enum": ["sse"]},
                "endpoint": {"type": "object", "required": ["requestUri"], "properties": {
                    "requestUri": {"type": "string", "pattern": "^/ofrep/v1/event-stream(\\?key=.+)?$",
                        "description": "/ofrep/v1/event-stream, with ?key=<client key> when the caller used a client key"}}}}},
        "OfrepRefetchEvent": {"type": "object", "required": ["type", "etag"],
            "description": "The JSON data of each event: re-fetch the bulk evaluation with ?flagConfigEtag=<etag>.",
            "properties": {
                "type": {"type": "string", "enum": ["refetchEvaluation"]},
                "etag": {"type": "string", "description": "The configuration's tag, \"<revision>\""}}}
    })
}

/// People and their sessions (SPEC 9).
fn people_schemas() -> Value {
    let role = json!({"type": "string", "enum": ["owner", "editor", "viewer"]});
    let environments = json!({"type": ["array", "null"], "items": {"type": "string"},
        "description": "Where the person may act (null: every environment)."});
    json!({
        "NewUser": {"type": "object", "required": ["username", "password", "role"], "properties": {
            "username": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._@-]{0,63}$"},
            "password": {"type": "string", "minLength": 8, "description": "Never answered nor logged"},
            "role": role.clone(), "environments": environments.clone()}},
        "UserChange": {"type": "object", "minProperties": 1, "properties": {
            "role": role.clone(), "environments": environments.clone(), "disabled": {"type": "boolean"},
            "password": {"type": "string", "minLength": 8}}},
        "User": {"type": "object", "required": ["username", "role", "environments", "disabled", "created_at"], "properties": {
            "username": {"type": "string"}, "role": role.clone(), "environments": environments.clone(),
            "disabled": {"type": "boolean"}, "created_at": {"type": "string"}}},
        "UserList": {"type": "object", "properties": {"users": {"type": "array", "items": {"$ref": "#/components/schemas/User"}}}},
        "Credentials": {"type": "object", "required": ["username", "password"], "properties": {
            "username": {"type": "string"}, "password": {"type": "string"}}},
        "Session": {"type": "object", "required": ["username", "role", "environments", "csrf_token"], "properties": {
            "username": {"type": "string"}, "role": role, "environments": environments,
            "csrf_token": {"type": "string", "description": "Send it as X-CSRF-Token with every write"}}}
    })
}

/// Promotion, a flag across environments, and change requests (SPEC 9).
fn change_schemas() -> Value {
    let versions = json!({"type": "object", "additionalProperties": {"type": ["integer", "null"]}});
    json!({
        "Promotion": {"type": "object", "required": ["from"], "properties": {
            "from": {"type": "string", "description": "The source environment."},
            "flags": {"type": "array", "items": {"type": "string"}},
            "segments": {"type": "array", "items": {"type": "string"}},
            "dry_run": {"type": "boolean", "description": "Only show the changes."},
            "expected_versions": {"type": "object", "description": "The target's versions the changes were reviewed \
                against (a dry run's expected_versions; null: absent); 409 version_mismatch otherwise.",
                "properties": {"flags": versions.clone(), "segments": versions.clone()}}}},
        "PlannedChange": {"type": "object", "required": ["entity", "key", "action"], "properties": {
            "entity": {"type": "string"}, "key": {"type": "string"},
            "action": {"type": "string", "enum": ["create", "update", "delete", "unchanged"]},
            "before": {"description": "The stored document, or null"},
            "after": {"description": "The body it will have, or null"}}},
        "PromotionResult": {"type": "object", "properties": {
            "from": {"type": "string"}, "to": {"type": "string"}, "dry_run": {"type": "boolean"},
            "applied": {"type": "boolean"},
            "expected_versions": {"type": "object", "properties": {"flags": versions.clone(), "segments": versions}},
            "changes": {"type": "array", "items": {"$ref": "#/components/schemas/PlannedChange"}}}},
        "FlagEnvironments": {"type": "object", "properties": {
            "flag": {"type": "string"},
            "environments": {"type": "object", "additionalProperties": {"type": ["object", "null"]}}}},
        "ChangeRequest": {"type": "object", "properties": {
            "id": {"type": "string"}, "environment": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "approved", "rejected"]},
            "author": {"type": "string"}, "reason": {"type": ["string", "null"]}, "source": {"type": ["string", "null"]},
            "changes": {"type": "array", "items": {"$ref": "#/components/schemas/PlannedChange"}},
            "decided_by": {"type": ["string", "null"]}, "decision_reason": {"type": ["string", "null"]},
            "version": {"type": "integer"}, "created_at": {"type": "string"}, "updated_at": {"type": "string"}}},
        "ChangeRequestList": {"type": "object", "properties": {
            "environment": {"type": "string"},
            "change_requests": {"type": "array", "items": {"$ref": "#/components/schemas/ChangeRequest"}}}},
        "HeldChange": {"type": "object", "required": ["change_request"], "properties": {
            "change_request": {"$ref": "#/components/schemas/ChangeRequest"}}}
    })
}
