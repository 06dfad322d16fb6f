//! Turns JSON values (parsed from JSON or YAML) into the [`crate::model`] types.
//!
//! Hand-written rather than derived with serde because a derived deserializer stops at the first
//! error, and users fixing a flags file need every problem with its path at once
//! (`rules[1].when.op: unknown operator "equal"`). Unknown fields are errors, never ignored.

use crate::error::{index, join, ValidationErrors};
use crate::model::*;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Keys of flags, segments, experiments and metrics: `^[a-z][a-z0-9_]*$`, at most 128 chars.
pub fn is_valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && key.len() <= 128
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

pub const KEY_RULE: &str = "must match ^[a-z][a-z0-9_]*$ and be at most 128 characters";

/// Decodes a whole flags document `{"flags": [...], "segments": [...]}`.
pub fn decode_document(value: &Value) -> Result<FlagsDocument, ValidationErrors> {
    let partial = decode_document_partially(value);
    partial.errors.into_result(partial.document)
}

/// A document decoded as far as possible: the items that decoded, every problem found, and the
/// keys of items too broken to decode (so references to them are not reported as unknown).
pub(crate) struct PartialDocument {
    pub(crate) document: FlagsDocument,
    pub(crate) errors: ValidationErrors,
    pub(crate) broken_keys: Vec<String>,
}

pub(crate) fn decode_document_partially(value: &Value) -> PartialDocument {
    let mut r = Reader::default();
    let mut broken_keys = Vec::new();
    let mut document = FlagsDocument::default();
    if let Some(obj) = r.object(value, "", &["flags", "segments"]) {
        document.flags = r.list(obj.get("flags"), "flags", |r, v, path| {
            let flag = r.flag(v, path, true);
            if flag.is_none() {
                broken_keys.extend(v.get("key").and_then(Value::as_str).map(str::to_string));
            }
            flag
        });
        document.segments = r.list(obj.get("segments"), "segments", |r, v, path| {
            let segment = r.segment(v, path, true);
            if segment.is_none() {
                broken_keys.extend(v.get("key").and_then(Value::as_str).map(str::to_string));
            }
            segment
        });
    }
    PartialDocument { document, errors: r.errors, broken_keys }
}

/// Decodes one flag, with paths relative to the flag (`rules[0].serve`).
pub fn decode_flag(value: &Value) -> Result<Flag, ValidationErrors> {
    let mut r = Reader::default();
    let flag = r.flag(value, "", false);
    r.finish(flag)
}

/// Decodes one segment, with paths relative to the segment.
pub fn decode_segment(value: &Value) -> Result<Segment, ValidationErrors> {
    let mut r = Reader::default();
    let segment = r.segment(value, "", false);
    r.finish(segment)
}

/// Decodes one condition, with paths relative to it.
pub fn decode_condition(value: &Value) -> Result<Condition, ValidationErrors> {
    let mut r = Reader::default();
    let condition = r.condition(value, "");
    r.finish(condition)
}

/// Fields every stored object has (SPEC 1): its key and the meta fields.
const STORED_FIELDS: &[&str] = &["key", "id", "version", "created_at", "updated_at", "description", "tags"];
const FLAG_FIELDS: &[&str] = &[
    "type",
    "enabled",
    "variants",
    "off_variant",
    "overrides",
    "rules",
    "default",
    "bucket_by",
    "salt",
    "schedule",
    "prerequisites",
    "track_events",
];
const SEGMENT_FIELDS: &[&str] = &["when"];

/// Reads JSON values into model types, collecting every problem instead of stopping at one.
#[derive(Default)]
pub(crate) struct Reader {
    pub(crate) errors: ValidationErrors,
}

pub(crate) type Obj<'a> = &'a Map<String, Value>;

impl Reader {
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, ValidationErrors> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => Err(self.errors),
        }
    }

    pub(crate) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(path, message);
    }

    pub(crate) fn object<'a>(&mut self, v: &'a Value, path: &str, allowed: &[&str]) -> Option<Obj<'a>> {
        self.object_with(v, path, |field| allowed.contains(&field))
    }

    /// An object of a stored kind: the fields every stored object has, plus `own`.
    pub(crate) fn stored_object<'a>(&mut self, v: &'a Value, path: &str, own: &[&str]) -> Option<Obj<'a>> {
        self.object_with(v, path, |field| STORED_FIELDS.contains(&field) || own.contains(&field))
    }

    fn object_with<'a>(&mut self, v: &'a Value, path: &str, allowed: impl Fn(&str) -> bool) -> Option<Obj<'a>> {
        let Some(map) = v.as_object() else {
            self.error(path, format!("must be an object, found {}", kind_of(v)));
            return None;
        };
        for field in map.keys() {
            if !allowed(field) {
                self.error(&join(path, field), "unknown field");
            }
        }
        Some(map)
    }

    /// Decodes an optional array field; each element by `item`, keeping the ones that decode.
    pub(crate) fn list<T>(
        &mut self,
        v: Option<&Value>,
        path: &str,
        mut item: impl FnMut(&mut Self, &Value, &str) -> Option<T>,
    ) -> Vec<T> {
        match v {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                items.iter().enumerate().filter_map(|(i, v)| item(self, v, &index(path, i))).collect()
            }
            Some(other) => {
                self.error(path, format!("must be an array, found {}", kind_of(other)));
                Vec::new()
            }
        }
    }

    pub(crate) fn string(&mut self, v: Option<&Value>, path: &str) -> Option<String> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.error(path, format!("must be a string, found {}", kind_of(other)));
                None
            }
        }
    }

    pub(crate) fn required_string(&mut self, v: Option<&Value>, path: &str) -> Option<String> {
        if v.is_none_or(Value::is_null) {
            self.error(path, "is required");
            return None;
        }
        self.string(v, path)
    }

    pub(crate) fn key(&mut self, v: Option<&Value>, path: &str) -> Option<String> {
        let key = self.required_string(v, path)?;
        if is_valid_key(&key) {
            Some(key)
        } else {
            self.error(path, format!("\"{key}\" {KEY_RULE}"));
            None
        }
    }

    pub(crate) fn bool(&mut self, v: Option<&Value>, path: &str) -> Option<bool> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.error(path, format!("must be true or false, found {}", kind_of(other)));
                None
            }
        }
    }

    pub(crate) fn strings(&mut self, v: Option<&Value>, path: &str) -> Vec<String> {
        self.list(v, path, |r, v, p| r.required_string(Some(v), p))
    }

    pub(crate) fn timestamp(&mut self, v: Option<&Value>, path: &str) -> Option<DateTime<Utc>> {
        let s = self.string(v, path)?;
        match DateTime::parse_from_rfc3339(&s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(e) => {
                self.error(path, format!("\"{s}\" is not an RFC 3339 date-time ({e})"));
                None
            }
        }
    }

    pub(crate) fn meta(&mut self, obj: Obj<'_>, path: &str) -> Meta {
        let version = match obj.get("version") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) => Some(n),
                None => {
                    self.error(&join(path, "version"), "must be a non-negative integer");
                    None
                }
            },
        };
        Meta {
            id: self.string(obj.get("id"), &join(path, "id")),
            version,
            created_at: self.timestamp(obj.get("created_at"), &join(path, "created_at")),
            updated_at: self.timestamp(obj.get("updated_at"), &join(path, "updated_at")),
            description: self.string(obj.get("description"), &join(path, "description")).unwrap_or_default(),
            tags: self.strings(obj.get("tags"), &join(path, "tags")),
        }
    }

    /// In a document, an item is addressed by its key once it has one (`flags.new_checkout`).
    pub(crate) fn item_path(v: &Value, path: &str, in_document: bool) -> String {
        match v.get("key").and_then(Value::as_str) {
            Some(key) if in_document && is_valid_key(key) => {
                let collection = path.rsplit_once('[').map_or(path, |(c, _)| c);
                join(collection, key)
            }
            _ => path.to_string(),
        }
    }

    fn flag(&mut self, v: &Value, path: &str, in_document: bool) -> Option<Flag> {
        let path = &Self::item_path(v, path, in_document);
        let obj = self.stored_object(v, path, FLAG_FIELDS)?;
        let at = |field: &str| join(path, field);
        let key = self.key(obj.get("key"), &at("key"));
        let meta = self.meta(obj, path);
        let kind = match obj.get("type") {
            None | Some(Value::Null) => Some(FlagType::Boolean),
            Some(Value::String(s)) => match s.as_str() {
                "boolean" => Some(FlagType::Boolean),
                "string" => Some(FlagType::String),
                "number" => Some(FlagType::Number),
                "json" => Some(FlagType::Json),
                other => {
                    self.error(&at("type"), format!("unknown type \"{other}\" (boolean, string, number or json)"));
                    None
                }
            },
            Some(other) => {
                self.error(&at("type"), format!("must be a string, found {}", kind_of(other)));
                None
            }
        };
        let enabled = self.bool(obj.get("enabled"), &at("enabled")).unwrap_or(false);
        let variants = match obj.get("variants") {
            None | Some(Value::Null) if kind == Some(FlagType::Boolean) => {
                Some(BTreeMap::from([("off".to_string(), Value::Bool(false)), ("on".to_string(), Value::Bool(true))]))
            }
            None | Some(Value::Null) => {
                if kind.is_some() {
                    self.error(&at("variants"), "is required for non-boolean flags");
                }
                None
            }
            Some(Value::Object(m)) => Some(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            Some(other) => {
                self.error(&at("variants"), format!("must be an object of name to value, found {}", kind_of(other)));
                None
            }
        };
        let off_variant = match self.string(obj.get("off_variant"), &at("off_variant")) {
            Some(v) => Some(v),
            None if kind == Some(FlagType::Boolean) => Some("off".to_string()),
            None => {
                if kind.is_some() && obj.get("off_variant").is_none_or(Value::is_null) {
                    self.error(&at("off_variant"), "is required for non-boolean flags");
                }
                None
            }
        };
        let overrides = match obj.get("overrides") {
            None | Some(Value::Null) => Some(Overrides::default()),
            Some(v) => self.overrides(v, &at("overrides")),
        };
        let rules = self.list(obj.get("rules"), &at("rules"), Self::rule);
        let default = match obj.get("default") {
            None | Some(Value::Null) => off_variant.clone().map(Serve::Variant),
            Some(v) => self.serve(v, &at("default")),
        };
        let bucket_by = self.string(obj.get("bucket_by"), &at("bucket_by")).unwrap_or_else(|| "user_id".into());
        if bucket_by.trim().is_empty() {
            self.error(&at("bucket_by"), "must name a context attribute");
        }
        let salt = self.string(obj.get("salt"), &at("salt"));
        let schedule = match obj.get("schedule") {
            None | Some(Value::Null) => Some(Schedule::default()),
            Some(v) => self.object(v, &at("schedule"), &["enable_at", "disable_at"]).map(|s| Schedule {
                enable_at: self.timestamp(s.get("enable_at"), &join(&at("schedule"), "enable_at")),
                disable_at: self.timestamp(s.get("disable_at"), &join(&at("schedule"), "disable_at")),
            }),
        };
        let prerequisites = self.list(obj.get("prerequisites"), &at("prerequisites"), |r, v, p| {
            let o = r.object(v, p, &["flag", "variants"])?;
            let flag = r.key(o.get("flag"), &join(p, "flag"));
            let variants = r.strings(o.get("variants"), &join(p, "variants"));
            if variants.is_empty() {
                r.error(&join(p, "variants"), "must list at least one variant");
            }
            Some(Prerequisite { flag: flag?, variants })
        });
        let track_events = self.bool(obj.get("track_events"), &at("track_events")).unwrap_or(false);
        let key = key?;
        Some(Flag {
            salt: salt.unwrap_or_else(|| key.clone()),
            key,
            meta,
            kind: kind?,
            enabled,
            variants: variants?,
            off_variant: off_variant?,
            overrides: overrides?,
            rules,
            default: default?,
            bucket_by,
            schedule: schedule?,
            prerequisites,
            track_events,
        })
    }

    fn overrides(&mut self, v: &Value, path: &str) -> Option<Overrides> {
        let o = self.object(v, path, &["disabled_for", "enabled_for", "variants"])?;
        let variants = match o.get("variants") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(m)) => m
                .iter()
                .filter_map(|(user, variant)| {
                    let variant = self.required_string(Some(variant), &join(&join(path, "variants"), user))?;
                    Some((user.clone(), variant))
                })
                .collect(),
            Some(other) => {
                self.error(
                    &join(path, "variants"),
                    format!("must be an object of user to variant, found {}", kind_of(other)),
                );
                BTreeMap::new()
            }
        };
        Some(Overrides {
            disabled_for: self.strings(o.get("disabled_for"), &join(path, "disabled_for")),
            enabled_for: self.strings(o.get("enabled_for"), &join(path, "enabled_for")),
            variants,
        })
    }

    fn rule(&mut self, v: &Value, path: &str) -> Option<Rule> {
        let o = self.object(v, path, &["id", "when", "serve"])?;
        let id = self.required_string(o.get("id"), &join(path, "id"));
        let when = match o.get("when") {
            None | Some(Value::Null) => {
                self.error(&join(path, "when"), "is required");
                None
            }
            Some(w) => self.condition(w, &join(path, "when")),
        };
        let serve = match o.get("serve") {
            None | Some(Value::Null) => {
                self.error(&join(path, "serve"), "is required");
                None
            }
            Some(s) => self.serve(s, &join(path, "serve")),
        };
        Some(Rule { id: id?, when: when?, serve: serve? })
    }

    pub(crate) fn serve(&mut self, v: &Value, path: &str) -> Option<Serve> {
        let o = self.object(v, path, &["variant", "split", "rollout", "experiment"])?;
        let forms = ["variant", "split", "experiment"].iter().filter(|f| o.contains_key(**f)).count();
        if forms != 1 {
            self.error(path, "must have exactly one of variant, split or experiment");
            return None;
        }
        if o.contains_key("rollout") && !o.contains_key("split") {
            self.error(&join(path, "rollout"), "is only allowed with split");
        }
        if let Some(v) = o.get("variant") {
            return self.required_string(Some(v), &join(path, "variant")).map(Serve::Variant);
        }
        if let Some(e) = o.get("experiment") {
            return self.key(Some(e), &join(path, "experiment")).map(Serve::Experiment);
        }
        let split_path = join(path, "split");
        let weights = match o.get("split") {
            Some(Value::Object(m)) => {
                let mut weights = BTreeMap::new();
                for (name, w) in m {
                    match w.as_u64().and_then(|w| u32::try_from(w).ok()) {
                        Some(w) => {
                            weights.insert(name.clone(), w);
                        }
                        None => self.error(&join(&split_path, name), "weight must be a non-negative integer"),
                    }
                }
                if weights.len() == m.len() && weights.values().all(|w| *w == 0) {
                    self.error(&split_path, "weights must not all be zero");
                }
                Some(weights)
            }
            other => {
                let found = other.map_or("nothing", kind_of);
                self.error(&split_path, format!("must be an object of variant to weight, found {found}"));
                None
            }
        };
        let rollout = self.percent(o.get("rollout"), &join(path, "rollout"));
        Some(Serve::Split { weights: weights?, rollout: rollout? })
    }

    /// A percentage 0–100 with at most two decimals; 100 when absent.
    pub(crate) fn percent(&mut self, v: Option<&Value>, path: &str) -> Option<Percent> {
        match v {
            None | Some(Value::Null) => Some(Percent::ALL),
            Some(r) => {
                let percent = r.as_f64().and_then(Percent::from_percent);
                if percent.is_none() {
                    self.error(
                        path,
                        format!("must be a percentage from 0 to 100 with at most two decimals, found {r}"),
                    );
                }
                percent
            }
        }
    }

    fn segment(&mut self, v: &Value, path: &str, in_document: bool) -> Option<Segment> {
        let path = &Self::item_path(v, path, in_document);
        let obj = self.stored_object(v, path, SEGMENT_FIELDS)?;
        let key = self.key(obj.get("key"), &join(path, "key"));
        let meta = self.meta(obj, path);
        let when = match obj.get("when") {
            None | Some(Value::Null) => {
                self.error(&join(path, "when"), "is required");
                None
            }
            Some(w) => self.condition(w, &join(path, "when")),
        };
        Some(Segment { key: key?, meta, when: when? })
    }

    pub(crate) fn condition(&mut self, v: &Value, path: &str) -> Option<Condition> {
        let Some(o) = v.as_object() else {
            self.error(path, format!("must be a condition object, found {}", kind_of(v)));
            return None;
        };
        for combinator in ["all", "any", "not", "segment"] {
            if let Some(inner) = o.get(combinator) {
                if o.len() != 1 {
                    self.error(path, format!("a \"{combinator}\" condition must have no other fields"));
                    return None;
                }
                let inner_path = join(path, combinator);
                return match combinator {
                    "all" | "any" => {
                        let Some(items) = inner.as_array() else {
                            self.error(
                                &inner_path,
                                format!("must be an array of conditions, found {}", kind_of(inner)),
                            );
                            return None;
                        };
                        let before = self.errors.0.len();
                        let conditions: Vec<Condition> = items
                            .iter()
                            .enumerate()
                            .filter_map(|(i, c)| self.condition(c, &index(&inner_path, i)))
                            .collect();
                        if self.errors.0.len() != before {
                            return None;
                        }
                        Some(if combinator == "all" { Condition::All(conditions) } else { Condition::Any(conditions) })
                    }
                    "not" => self.condition(inner, &inner_path).map(|c| Condition::Not(Box::new(c))),
                    _ => self.key(Some(inner), &inner_path).map(Condition::Segment),
                };
            }
        }
        self.comparison(o, path)
    }

    fn comparison(&mut self, o: Obj<'_>, path: &str) -> Option<Condition> {
        for field in o.keys() {
            if !["attr", "op", "value", "values", "ignore_case"].contains(&field.as_str()) {
                self.error(&join(path, field), "unknown field");
            }
        }
        let attr = self.required_string(o.get("attr"), &join(path, "attr"));
        if attr.as_deref().is_some_and(|a| a.is_empty() || a.split('.').any(str::is_empty)) {
            self.error(&join(path, "attr"), "must be an attribute name, with dots between nested names");
        }
        let op_path = join(path, "op");
        let op = self.required_string(o.get("op"), &op_path).and_then(|name| {
            let op = Operator::parse(&name);
            if op.is_none() {
                self.error(&op_path, format!("unknown operator \"{name}\""));
            }
            op
        });
        let ignore_case = self.bool(o.get("ignore_case"), &join(path, "ignore_case")).unwrap_or(false);
        let operand = match (o.get("value"), o.get("values")) {
            (Some(_), Some(_)) => {
                self.error(path, "give either value or values, not both");
                None
            }
            (Some(v), None) => Some(Operand::One(v.clone())),
            (None, Some(Value::Array(vs))) => Some(Operand::Many(vs.clone())),
            (None, Some(other)) => {
                self.error(&join(path, "values"), format!("must be an array, found {}", kind_of(other)));
                None
            }
            (None, None) => Some(Operand::None),
        };
        let (op, operand) = (op?, operand?);
        let before = self.errors.0.len();
        self.check_operand(op, &operand, path);
        if self.errors.0.len() != before {
            return None;
        }
        Some(Condition::Compare(Comparison { attr: attr?, op, operand, ignore_case }))
    }

    /// Shape checks of an operand; parsing regexes, semvers, CIDRs and dates happens at compile.
    fn check_operand(&mut self, op: Operator, operand: &Operand, path: &str) {
        use Operator::*;
        let name = op.name();
        match (op, operand) {
            (Exists | NotExists, Operand::None) => {}
            (Exists | NotExists, _) => self.error(path, format!("\"{name}\" takes no value")),
            (_, Operand::None) => {
                let wanted = if matches!(op, In | NotIn) { "values" } else { "value" };
                self.error(&join(path, wanted), format!("is required for \"{name}\""));
            }
            (In | NotIn, Operand::One(_)) => {
                self.error(&join(path, "values"), format!("\"{name}\" takes a list in values"))
            }
            (_, Operand::Many(vs)) if vs.is_empty() => self.error(&join(path, "values"), "must not be empty"),
            (_, Operand::One(v)) => self.check_scalar(op, v, &join(path, "value")),
            (_, Operand::Many(vs)) => {
                for (i, v) in vs.iter().enumerate() {
                    self.check_scalar(op, v, &index(&join(path, "values"), i));
                }
            }
        }
    }

    fn check_scalar(&mut self, op: Operator, v: &Value, path: &str) {
        use Operator::*;
        let ok = match op {
            Eq | Neq | In | NotIn => v.is_string() || v.is_number() || v.is_boolean(),
            Gt | Gte | Lt | Lte => v.is_number(),
            Before | After => v.is_string() || v.is_number(),
            _ => v.is_string(),
        };
        if !ok {
            let wanted = match op {
                Eq | Neq | In | NotIn => "a string, number or boolean",
                Gt | Gte | Lt | Lte => "a number",
                Before | After => "an RFC 3339 date-time or a Unix time in milliseconds",
                _ => "a string",
            };
            self.error(path, format!("\"{}\" needs {wanted}, found {}", op.name(), kind_of(v)));
        }
    }
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
