//! `vexil flags diff` and `vexil flags promote`: flags and segments from one environment to
//! another (SPEC 9). Through a server they call `POST /v1/admin/environments/{to}/promote`
//! (a dry run, then the apply with the versions the dry run showed, so what is printed is
//! exactly what applies); on a data directory they run the same service functions.

use super::target::{form_encode, Connection, CLI_ACTOR};
use super::{print_line, Outcome};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::Arc;
use vexil_server::service::changes::PlannedChange;
use vexil_server::service::promotion::{self, Selection};
use vexil_store::{ChangeMeta, ConfigStore, EntityKind, Scoped};

/// What to promote: the named flags and segments, or (`all`) every one of the source.
pub struct Promotion<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub flags: Vec<String>,
    pub segments: Vec<String>,
    pub all: bool,
    pub reason: Option<String>,
}

/// Prints what promoting would change, changing nothing.
pub async fn diff(promotion: Promotion<'_>, connection: &Connection) -> Outcome {
    let (changes, _) = plan(&promotion, connection).await?;
    print_changes(&promotion, &changes);
    Ok(ExitCode::SUCCESS)
}

/// Prints the changes, then applies them (or, with `dry_run`, only prints them).
pub async fn promote(promotion: Promotion<'_>, dry_run: bool, connection: &Connection) -> Outcome {
    let (changes, expected) = plan(&promotion, connection).await?;
    print_changes(&promotion, &changes);
    if dry_run || !promotion::changes_anything(&changes) {
        return Ok(ExitCode::SUCCESS);
    }
    let (from, to) = (promotion.from, promotion.to);
    match connection {
        Connection::Server { .. } => {
            let mut body = selection_body(&promotion, &changes);
            body["expected_versions"] = expected;
            let headers: Vec<(&str, String)> = promotion.reason.iter().map(|r| ("X-Vexil-Reason", r.clone())).collect();
            let path = format!("/v1/admin/environments/{to}/promote");
            let answer = connection.call_with(reqwest::Method::POST, &path, Some(&body), &headers).await?;
            if let Some(request) = answer.get("change_request") {
                super::changes::print_held(request);
                return Ok(ExitCode::SUCCESS);
            }
        }
        Connection::Store(store) => {
            let target = Scoped::new(store.backend().clone(), to);
            let meta = ChangeMeta { actor: CLI_ACTOR.to_owned(), reason: promotion.reason.clone() };
            promotion::apply(&target, from, &changes, &meta).await.map_err(|e| e.to_string())?;
        }
    }
    print_line(&format!("promoted from {from} to {to}"));
    Ok(ExitCode::SUCCESS)
}

/// The planned changes and the target versions they were planned against.
async fn plan(promotion: &Promotion<'_>, connection: &Connection) -> Result<(Vec<PlannedChange>, Value), String> {
    let (flags, segments) = selected(promotion, connection).await?;
    let selected = Promotion { flags, segments, reason: None, ..*promotion };
    match connection {
        Connection::Server { .. } => {
            let mut body = selection_body(&selected, &[]);
            body["dry_run"] = json!(true);
            let path = format!("/v1/admin/environments/{}/promote", promotion.to);
            let answer = connection.call(reqwest::Method::POST, &path, Some(&body)).await?;
            let changes = serde_json::from_value(answer["changes"].clone())
                .map_err(|e| format!("the server's answer is not a list of changes: {e}"))?;
            Ok((changes, answer["expected_versions"].clone()))
        }
        Connection::Store(store) => {
            let (source, target) = (scoped(store, promotion.from).await?, scoped(store, promotion.to).await?);
            let selection = Selection { flags: selected.flags, segments: selected.segments, expected_versions: None };
            let changes = promotion::plan(&source, &target, (promotion.from, promotion.to), &selection)
                .await
                .map_err(|e| e.to_string())?;
            let expected = promotion::expected_versions(&changes);
            Ok((changes, expected))
        }
    }
}

async fn scoped(store: &Arc<Scoped>, environment: &str) -> Result<Scoped, String> {
    if !super::target::environment_exists(store.backend().as_ref(), environment).await? {
        return Err(format!("environment \"{environment}\" does not exist"));
    }
    Ok(Scoped::new(store.backend().clone(), environment))
}

/// The flags and segments named, or with `all` every one the source holds.
async fn selected(promotion: &Promotion<'_>, connection: &Connection) -> Result<(Vec<String>, Vec<String>), String> {
    if !promotion.all {
        if promotion.flags.is_empty() && promotion.segments.is_empty() {
            return Err("name the flags (--flag) or segments (--segment) to promote, or --all".to_owned());
        }
        return Ok((promotion.flags.clone(), promotion.segments.clone()));
    }
    let mut keys = Vec::new();
    for kind in [EntityKind::Flag, EntityKind::Segment] {
        let listed: Vec<String> = match connection {
            Connection::Server { .. } => {
                let path = format!("/v1/admin/{kind}s?env={}", form_encode(promotion.from));
                let answer = connection.call(reqwest::Method::GET, &path, None).await?;
                let items = answer[format!("{kind}s")].as_array().cloned().unwrap_or_default();
                items.iter().filter_map(|d| d["key"].as_str().map(str::to_owned)).collect()
            }
            Connection::Store(store) => {
                let source = scoped(store, promotion.from).await?;
                source.list(kind).await.map_err(|e| e.to_string())?.into_iter().map(|d| d.key).collect()
            }
        };
        keys.push(listed);
    }
    let segments = keys.pop().unwrap_or_default();
    let flags = keys.pop().unwrap_or_default();
    if flags.is_empty() && segments.is_empty() {
        return Err(format!("environment \"{}\" has no flags or segments", promotion.from));
    }
    Ok((flags, segments))
}

fn selection_body(promotion: &Promotion<'_>, changes: &[PlannedChange]) -> Value {
    let of = |kind: EntityKind, named: &[String]| -> Vec<String> {
        if changes.is_empty() {
            named.to_vec()
        } else {
            changes.iter().filter(|c| c.entity == kind).map(|c| c.key.clone()).collect()
        }
    };
    json!({"from": promotion.from, "flags": of(EntityKind::Flag, &promotion.flags),
           "segments": of(EntityKind::Segment, &promotion.segments)})
}

/// One line per change (`+ create`, `~ update`, `= unchanged`), and under an update each field
/// that differs, as `path: before → after`.
fn print_changes(promotion: &Promotion<'_>, changes: &[PlannedChange]) {
    use vexil_server::service::changes::Action;
    print_line(&format!("{} → {}:", promotion.from, promotion.to));
    for change in changes {
        let (sign, word) = match change.action {
            Action::Create => ('+', "create"),
            Action::Update => ('~', "update"),
            Action::Delete => ('-', "delete"),
            Action::Unchanged => ('=', "unchanged"),
        };
        print_line(&format!("{sign} {} {} ({word})", change.entity, change.key));
        if change.action == Action::Update {
            let mut before = change.before.clone().unwrap_or_default();
            if let Value::Object(fields) = &mut before {
                for field in ["id", "version", "created_at", "updated_at"] {
                    fields.remove(field);
                }
            }
            let mut lines = Vec::new();
            differences("", &before, change.after.as_ref().unwrap_or(&Value::Null), &mut lines);
            for line in lines {
                print_line(&format!("    {line}"));
            }
        }
    }
}

/// The leaves that differ between two JSON values, as `path: before → after`.
fn differences(path: &str, before: &Value, after: &Value, lines: &mut Vec<String>) {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let (x, y) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
                differences(&join(key), x, y, lines);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}[{i}]"), x, y, lines);
            }
        }
        (a, b) if a != b => lines.push(format!("{path}: {a} → {b}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_changed_leaf() {
        let mut lines = Vec::new();
        let before = json!({"enabled": true, "default": {"rollout": 10}, "tags": ["a"], "gone": 1});
        let after = json!({"enabled": true, "default": {"rollout": 50}, "tags": ["a", "b"]});
        differences("", &before, &after, &mut lines);
        assert_eq!(lines, ["default.rollout: 10 → 50", "gone: 1 → null", "tags: [\"a\"] → [\"a\",\"b\"]"]);
    }
}
