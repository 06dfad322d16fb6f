//! The evaluation context: who is asking (`user_id`) and what we know about them.

use serde_json::{Map, Value};
use std::fmt::Write;

/// A user and their attributes. Borrowed, so building one costs nothing.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    user_id: &'a str,
    attributes: Option<&'a Map<String, Value>>,
}

static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();

impl<'a> Context<'a> {
    pub fn new(user_id: &'a str, attributes: &'a Map<String, Value>) -> Self {
        Self { user_id, attributes: Some(attributes) }
    }

    /// A context that knows only the user id.
    pub fn user(user_id: &'a str) -> Self {
        Self { user_id, attributes: None }
    }

    pub fn user_id(&self) -> &'a str {
        self.user_id
    }

    pub fn attributes(&self) -> &'a Map<String, Value> {
        self.attributes.unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// Looks up an attribute. `user_id` is always the context's user id; other paths walk
    /// nested objects by their dot-separated names. JSON `null` counts as missing.
    pub fn lookup(&self, path: &AttributePath) -> Option<Attribute<'a>> {
        if path.is_user_id {
            return Some(Attribute::Str(self.user_id));
        }
        let mut names = path.names.iter();
        let mut current = self.attributes?.get(names.next()?.as_ref())?;
        for name in names {
            current = current.as_object()?.get(name.as_ref())?;
        }
        (!current.is_null()).then_some(Attribute::Json(current))
    }
}

/// A dotted attribute path split once at compile time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributePath {
    names: Box<[Box<str>]>,
    is_user_id: bool,
}

impl AttributePath {
    pub fn parse(path: &str) -> Self {
        Self { names: path.split('.').map(Into::into).collect(), is_user_id: path == "user_id" }
    }
}

/// An attribute value as found in the context.
#[derive(Clone, Copy, Debug)]
pub enum Attribute<'a> {
    Str(&'a str),
    Json(&'a Value),
}

impl<'a> Attribute<'a> {
    pub fn as_str(self) -> Option<&'a str> {
        match self {
            Attribute::Str(s) => Some(s),
            Attribute::Json(v) => v.as_str(),
        }
    }

    /// Numbers, and strings that parse as finite numbers (`"30"` is 30).
    pub fn as_number(self) -> Option<f64> {
        let n = match self {
            Attribute::Json(Value::Number(n)) => n.as_f64()?,
            other => other.as_str()?.parse::<f64>().ok()?,
        };
        n.is_finite().then_some(n)
    }

    /// Booleans, and the strings `"true"` and `"false"`.
    pub fn as_bool(self) -> Option<bool> {
        match self {
            Attribute::Json(Value::Bool(b)) => Some(*b),
            other => match other.as_str()? {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
        }
    }

    /// The elements when the attribute is a JSON array.
    pub fn as_array(self) -> Option<&'a [Value]> {
        match self {
            Attribute::Json(Value::Array(items)) => Some(items),
            _ => None,
        }
    }
}

/// The bucketing unit as bytes: strings as they are, numbers and booleans as JSON writes them.
/// Formats into the caller's stack buffer so evaluation does not allocate.
pub(crate) fn unit_bytes<'b>(attr: Attribute<'b>, buf: &'b mut [u8; 40]) -> Option<&'b [u8]> {
    match attr {
        Attribute::Str(s) => Some(s.as_bytes()),
        Attribute::Json(Value::String(s)) => Some(s.as_bytes()),
        Attribute::Json(Value::Bool(b)) => Some(if *b { b"true" } else { b"false" }),
        Attribute::Json(Value::Number(n)) => {
            let mut writer = StackWriter { buf, len: 0 };
            write!(writer, "{n}").ok()?;
            let len = writer.len;
            Some(&buf[..len])
        }
        Attribute::Json(_) => None,
    }
}

/// Formats into a fixed buffer; fails (rather than allocating) when the text does not fit.
struct StackWriter<'b> {
    buf: &'b mut [u8; 40],
    len: usize,
}

impl Write for StackWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Attributes a context may carry at most.
pub const MAX_CONTEXT_ATTRIBUTES: usize = 256;
/// Longest string in a context, in bytes: evaluation cost grows with string length times the
/// rules that read it (a 1 MB string against 2,000 `matches` rules took 10 s).
pub const MAX_ATTRIBUTE_BYTES: usize = 4096;
/// Values (strings, numbers, list items, nested members) a context may hold at most.
pub const MAX_CONTEXT_VALUES: usize = 4096;

/// Whether `value` and what it holds stay within the string bound and `budget` values; runs on
/// every request, so it allocates nothing (paths are only built for an answer that fails).
fn within(value: &Value, budget: &mut usize) -> bool {
    let Some(left) = budget.checked_sub(1) else { return false };
    *budget = left;
    match value {
        Value::String(s) => s.len() <= MAX_ATTRIBUTE_BYTES,
        Value::Array(items) => items.iter().all(|v| within(v, budget)),
        Value::Object(members) => members.values().all(|v| within(v, budget)),
        _ => true,
    }
}

/// The first way `attributes` exceeds the context bounds, as (path, message), if any.
pub fn context_bounds_problem(attributes: &Map<String, Value>) -> Option<(String, String)> {
    let mut budget = MAX_CONTEXT_VALUES;
    if attributes.len() <= MAX_CONTEXT_ATTRIBUTES && attributes.values().all(|v| within(v, &mut budget)) {
        return None;
    }
    if attributes.len() > MAX_CONTEXT_ATTRIBUTES {
        return Some(("context".into(), format!("must have at most {MAX_CONTEXT_ATTRIBUTES} attributes")));
    }
    let mut budget = MAX_CONTEXT_VALUES;
    let mut pending: Vec<(String, &Value)> = attributes.iter().map(|(k, v)| (format!("context.{k}"), v)).collect();
    while let Some((path, value)) = pending.pop() {
        let Some(left) = budget.checked_sub(1) else {
            return Some(("context".into(), format!("must hold at most {MAX_CONTEXT_VALUES} values")));
        };
        budget = left;
        match value {
            Value::String(s) if s.len() > MAX_ATTRIBUTE_BYTES => {
                return Some((path, format!("must be at most {MAX_ATTRIBUTE_BYTES} bytes long")));
            }
            Value::Array(items) => pending.extend(items.iter().enumerate().map(|(i, v)| (format!("{path}[{i}]"), v))),
            Value::Object(members) => pending.extend(members.iter().map(|(k, v)| (format!("{path}.{k}"), v))),
            _ => {}
        }
    }
    None
}
