//! Bounds on what a written flag, segment or experiment may hold, checked when it is written
//! (the API and imports), not when stored documents are read, so that a configuration stored
//! before the bounds existed keeps loading. SPEC 1 leaves sizes open; without bounds one
//! request stored 1 MB tags, 100,000 tags or a 60 KB description full of control characters,
//! which the admin API, the audit log and the CLI then print back to people.

use crate::error::ValidationError;
use serde_json::Value;

/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Most tags on one document.
pub const MAX_TAGS: usize = 50;
/// Longest tag, variant name or rule id, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Most variants of a flag or experiment.
pub const MAX_VARIANTS: usize = 100;
/// Most rules of a flag: evaluation reads them in order for every request.
pub const MAX_RULES: usize = 500;
/// Longest reason of a change (audit log, emergency stops), in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// Every way `document` exceeds the bounds, each with its path.
pub fn document_problems(document: &Value) -> Vec<ValidationError> {
    let mut problems = Vec::new();
    if let Some(description) = document.get("description").and_then(Value::as_str) {
        text_problem(description, "description", MAX_DESCRIPTION_CHARS, true, &mut problems);
    }
    if let Some(tags) = document.get("tags").and_then(Value::as_array) {
        count_problem(tags.len(), "tags", MAX_TAGS, &mut problems);
        for (i, tag) in tags.iter().enumerate().take(MAX_TAGS) {
            if let Some(tag) = tag.as_str() {
                text_problem(tag, &format!("tags[{i}]"), MAX_NAME_CHARS, false, &mut problems);
            }
        }
    }
    // A flag names its variants by the keys of an object, an experiment by their `key`s.
    match document.get("variants") {
        Some(Value::Object(variants)) => {
            count_problem(variants.len(), "variants", MAX_VARIANTS, &mut problems);
            for name in variants.keys().take(MAX_VARIANTS) {
                text_problem(name, &format!("variants.{name}"), MAX_NAME_CHARS, false, &mut problems);
            }
        }
        Some(Value::Array(variants)) => count_problem(variants.len(), "variants", MAX_VARIANTS, &mut problems),
        _ => {}
    }
    if let Some(rules) = document.get("rules").and_then(Value::as_array) {
        count_problem(rules.len(), "rules", MAX_RULES, &mut problems);
        for (i, rule) in rules.iter().enumerate().take(MAX_RULES) {
            if let Some(id) = rule.get("id").and_then(Value::as_str) {
                text_problem(id, &format!("rules[{i}].id"), MAX_NAME_CHARS, false, &mut problems);
            }
        }
    }
    problems
}

/// Why a change's reason is refused, if it is: too long, or with control characters.
pub fn reason_problem(reason: &str) -> Option<String> {
    let mut problems = Vec::new();
    text_problem(reason, "reason", MAX_REASON_CHARS, false, &mut problems);
    problems.pop().map(|p| p.message)
}

fn count_problem(count: usize, path: &str, max: usize, problems: &mut Vec<ValidationError>) {
    if count > max {
        problems.push(ValidationError::new(path, format!("must have at most {max} entries, found {count}")));
    }
}

/// Text read back by people: at most `max_chars`, and no control characters (line breaks and
/// tabs allowed where the text may span lines).
fn text_problem(text: &str, path: &str, max_chars: usize, multiline: bool, problems: &mut Vec<ValidationError>) {
    if text.len() > max_chars && text.chars().count() > max_chars {
        problems.push(ValidationError::new(path, format!("must be at most {max_chars} characters")));
    } else if text.chars().any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\t'))) {
        problems.push(ValidationError::new(path, "must not contain control characters"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(document: Value) -> Vec<String> {
        document_problems(&document).into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn every_bound_names_its_path() {
        let many_tags: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(paths(json!({"tags": many_tags})), ["tags"]);
        assert_eq!(paths(json!({"tags": ["ok", "x".repeat(MAX_NAME_CHARS + 1)]})), ["tags[1]"]);
        assert_eq!(paths(json!({"description": "line one\nline two\ttabbed"})), Vec::<String>::new());
        assert_eq!(paths(json!({"description": "bell\u{7}"})), ["description"]);
        assert_eq!(paths(json!({"variants": {"on\u{1b}[31m": true}})), ["variants.on\u{1b}[31m"]);
        let rules: Vec<Value> = (0..=MAX_RULES).map(|i| json!({"id": format!("r{i}")})).collect();
        assert_eq!(paths(json!({"rules": rules})), ["rules"]);
        assert_eq!(paths(json!({"rules": [{"id": "r".repeat(10_000)}]})), ["rules[0].id"]);
        assert_eq!(paths(json!({"tags": ["é".repeat(MAX_NAME_CHARS)]})), Vec::<String>::new(), "characters, not bytes");
    }

    #[test]
    fn reasons_are_short_single_lines() {
        assert_eq!(reason_problem("incident 42"), None);
        assert!(reason_problem("a\nb").is_some());
        assert!(reason_problem(&"x".repeat(MAX_REASON_CHARS + 1)).is_some());
    }
}
