//! Decoding of flags (SPEC 1.1): type and variants, overrides, rules, how a flag serves a
//! variant (fixed, split or experiment), schedule and prerequisites.

use super::reader::{kind_of, Reader};
use crate::error::FieldPath;
use crate::model::*;
use serde_json::Value;
use std::collections::BTreeMap;

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

impl Reader {
    pub(super) fn flag(&mut self, v: &Value, path: &FieldPath<'_>, in_document: bool) -> Option<Flag> {
        let path = &Self::item_path(v, path, in_document);
        let obj = self.stored_object(v, path, FLAG_FIELDS)?;
        let at = |field: &'static str| path.field(field);
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
                    self.error(at("type"), format!("unknown type \"{other}\" (boolean, string, number or json)"));
                    None
                }
            },
            Some(other) => {
                self.error(at("type"), format!("must be a string, found {}", kind_of(other)));
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
                    self.error(at("variants"), "is required for non-boolean flags");
                }
                None
            }
            Some(Value::Object(m)) => Some(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            Some(other) => {
                self.error(at("variants"), format!("must be an object of name to value, found {}", kind_of(other)));
                None
            }
        };
        let off_variant = match self.string(obj.get("off_variant"), &at("off_variant")) {
            Some(v) => Some(v),
            None if kind == Some(FlagType::Boolean) => Some("off".to_string()),
            None => {
                if kind.is_some() && obj.get("off_variant").is_none_or(Value::is_null) {
                    self.error(at("off_variant"), "is required for non-boolean flags");
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
        let bucket_by = self.bucket_by(obj.get("bucket_by"), &at("bucket_by"));
        let salt = self.string(obj.get("salt"), &at("salt"));
        let schedule = match obj.get("schedule") {
            None | Some(Value::Null) => Some(Schedule::default()),
            Some(v) => self.object(v, &at("schedule"), &["enable_at", "disable_at"]).map(|s| Schedule {
                enable_at: self.timestamp(s.get("enable_at"), &at("schedule").field("enable_at")),
                disable_at: self.timestamp(s.get("disable_at"), &at("schedule").field("disable_at")),
            }),
        };
        let prerequisites = self.list(obj.get("prerequisites"), &at("prerequisites"), |r, v, p| {
            let o = r.object(v, p, &["flag", "variants"])?;
            let flag = r.key(o.get("flag"), &p.field("flag"));
            let variants = r.strings(o.get("variants"), &p.field("variants"));
            if variants.is_empty() {
                r.error(p.field("variants"), "must list at least one variant");
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

    fn overrides(&mut self, v: &Value, path: &FieldPath<'_>) -> Option<Overrides> {
        let o = self.object(v, path, &["disabled_for", "enabled_for", "variants"])?;
        let variants = match o.get("variants") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(m)) => m
                .iter()
                .filter_map(|(user, variant)| {
                    let variant = self.required_string(Some(variant), &path.field("variants").field(user))?;
                    Some((user.clone(), variant))
                })
                .collect(),
            Some(other) => {
                self.error(
                    path.field("variants"),
                    format!("must be an object of user to variant, found {}", kind_of(other)),
                );
                BTreeMap::new()
            }
        };
        Some(Overrides {
            disabled_for: self.strings(o.get("disabled_for"), &path.field("disabled_for")),
            enabled_for: self.strings(o.get("enabled_for"), &path.field("enabled_for")),
            variants,
        })
    }

    fn rule(&mut self, v: &Value, path: &FieldPath<'_>) -> Option<Rule> {
        let o = self.object(v, path, &["id", "when", "serve"])?;
        let id = self.required_string(o.get("id"), &path.field("id"));
        let when = self.required(o.get("when"), &path.field("when"), Self::condition);
        let serve = self.required(o.get("serve"), &path.field("serve"), Self::serve);
        Some(Rule { id: id?, when: when?, serve: serve? })
    }

    pub(crate) fn serve(&mut self, v: &Value, path: &FieldPath<'_>) -> Option<Serve> {
        let o = self.object(v, path, &["variant", "split", "rollout", "experiment"])?;
        let forms = ["variant", "split", "experiment"].iter().filter(|f| o.contains_key(**f)).count();
        if forms != 1 {
            self.error(path, "must have exactly one of variant, split or experiment");
            return None;
        }
        if o.contains_key("rollout") && !o.contains_key("split") {
            self.error(path.field("rollout"), "is only allowed with split");
        }
        if let Some(v) = o.get("variant") {
            return self.required_string(Some(v), &path.field("variant")).map(Serve::Variant);
        }
        if let Some(e) = o.get("experiment") {
            return self.key(Some(e), &path.field("experiment")).map(Serve::Experiment);
        }
        let split_path = path.field("split");
        let weights = match o.get("split") {
            Some(Value::Object(m)) => {
                let mut weights = BTreeMap::new();
                for (name, w) in m {
                    match w.as_u64().and_then(|w| u32::try_from(w).ok()) {
                        Some(w) => {
                            weights.insert(name.clone(), w);
                        }
                        None => self.error(split_path.field(name), "weight must be a non-negative integer"),
                    }
                }
                if weights.len() == m.len() && weights.values().all(|w| *w == 0) {
                    self.error(split_path, "weights must not all be zero");
                }
                Some(weights)
            }
            other => {
                let found = other.map_or("nothing", kind_of);
                self.error(split_path, format!("must be an object of variant to weight, found {found}"));
                None
            }
        };
        let rollout = self.percent(o.get("rollout"), &path.field("rollout"));
        Some(Serve::Split { weights: weights?, rollout: rollout? })
    }
}
