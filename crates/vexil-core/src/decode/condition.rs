//! Decoding of conditions (SPEC 1.5) and of segments (SPEC 1.2), which are named, stored
//! conditions. Only shapes are checked here; regexes, semvers, CIDRs and dates parse at compile.

use super::reader::{kind_of, Obj, Reader};
use crate::error::FieldPath;
use crate::model::*;
use serde_json::Value;

const SEGMENT_FIELDS: &[&str] = &["when"];

impl Reader {
    pub(super) fn segment(&mut self, v: &Value, path: &FieldPath<'_>, in_document: bool) -> Option<Segment> {
        let path = &Self::item_path(v, path, in_document);
        let obj = self.stored_object(v, path, SEGMENT_FIELDS)?;
        let key = self.key(obj.get("key"), &path.field("key"));
        let meta = self.meta(obj, path);
        let when = self.required(obj.get("when"), &path.field("when"), Self::condition);
        Some(Segment { key: key?, meta, when: when? })
    }

    pub(crate) fn condition(&mut self, v: &Value, path: &FieldPath<'_>) -> Option<Condition> {
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
                let inner_path = path.field(combinator);
                return match combinator {
                    "all" | "any" => {
                        let Some(items) = inner.as_array() else {
                            self.error(inner_path, format!("must be an array of conditions, found {}", kind_of(inner)));
                            return None;
                        };
                        let before = self.errors.0.len();
                        let conditions: Vec<Condition> = items
                            .iter()
                            .enumerate()
                            .filter_map(|(i, c)| self.condition(c, &inner_path.index(i)))
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

    fn comparison(&mut self, o: Obj<'_>, path: &FieldPath<'_>) -> Option<Condition> {
        for field in o.keys() {
            if !["attr", "op", "value", "values", "ignore_case"].contains(&field.as_str()) {
                self.error(path.field(field), "unknown field");
            }
        }
        let attr = self.required_string(o.get("attr"), &path.field("attr"));
        if attr.as_deref().is_some_and(|a| a.is_empty() || a.split('.').any(str::is_empty)) {
            self.error(path.field("attr"), "must be an attribute name, with dots between nested names");
        }
        let op_path = path.field("op");
        let op = self.required_string(o.get("op"), &op_path).and_then(|name| {
            let op = Operator::parse(&name);
            if op.is_none() {
                self.error(op_path, format!("unknown operator \"{name}\""));
            }
            op
        });
        let ignore_case = self.bool(o.get("ignore_case"), &path.field("ignore_case")).unwrap_or(false);
        let operand = match (o.get("value"), o.get("values")) {
            (Some(_), Some(_)) => {
                self.error(path, "give either value or values, not both");
                None
            }
            (Some(v), None) => Some(Operand::One(v.clone())),
            (None, Some(Value::Array(vs))) => Some(Operand::Many(vs.clone())),
            (None, Some(other)) => {
                self.error(path.field("values"), format!("must be an array, found {}", kind_of(other)));
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
    fn check_operand(&mut self, op: Operator, operand: &Operand, path: &FieldPath<'_>) {
        use Operator::*;
        let name = op.name();
        match (op, operand) {
            (Exists | NotExists, Operand::None) => {}
            (Exists | NotExists, _) => self.error(path, format!("\"{name}\" takes no value")),
            (_, Operand::None) => {
                let wanted = if matches!(op, In | NotIn) { "values" } else { "value" };
                self.error(path.field(wanted), format!("is required for \"{name}\""));
            }
            (In | NotIn, Operand::One(_)) => {
                self.error(path.field("values"), format!("\"{name}\" takes a list in values"))
            }
            (_, Operand::Many(vs)) if vs.is_empty() => self.error(path.field("values"), "must not be empty"),
            (_, Operand::One(v)) => self.check_scalar(op, v, &path.field("value")),
            (_, Operand::Many(vs)) => {
                for (i, v) in vs.iter().enumerate() {
                    self.check_scalar(op, v, &path.field("values").index(i));
                }
            }
        }
    }

    fn check_scalar(&mut self, op: Operator, v: &Value, path: &FieldPath<'_>) {
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
