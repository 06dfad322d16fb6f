//! The scanner: reads an event's top-level fields in one pass over its text.
//!
//! Ingest is the hot path (SPEC 5 asks for 300,000 events/s on two cores), so an event is read
//! without building a `serde_json::Value` tree: strings stay borrowed from the request body and
//! `properties` is copied as compact JSON. The text is still parsed through `serde_json`'s
//! `deserialize_any`, so exactly the events a `Value` parse refuses are refused, with the same
//! messages.

use super::record::{write_json, write_plain};
use chrono::{DateTime, Utc};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// `text` after the whitespace JSON allows between values.
pub(crate) fn skip_whitespace(text: &str) -> &str {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
}

/// The top-level fields of an event as its JSON text holds them, each judged later on its own.
/// An absent field reads as `null`, as it always meant the same.
#[derive(Default)]
pub(super) struct Fields<'a> {
    pub(super) event_id: Json<'a>,
    pub(super) event: Json<'a>,
    pub(super) kind: Json<'a>,
    pub(super) user_id: Json<'a>,
    pub(super) timestamp: Json<'a>,
    pub(super) value: Json<'a>,
    pub(super) properties: Json<'a>,
    /// `properties` as compact JSON when it is an object.
    pub(super) properties_json: Vec<u8>,
    pub(super) experiment_key: Json<'a>,
    pub(super) variant: Json<'a>,
    /// The first unknown field in byte order, the order a `serde_json::Map` lists its keys in.
    pub(super) unknown: Option<Cow<'a, str>>,
}

/// A field's JSON value, as much of it as validation looks at.
#[derive(Default)]
pub(super) enum Json<'a> {
    #[default]
    Null,
    Bool,
    Number(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
    /// A time the server built an event with (see `validate_event`); never read from text.
    Time(DateTime<Utc>),
}

impl<'a> Fields<'a> {
    /// Reads the fields in one pass over the text; `None` when it is JSON but not an object.
    /// Every value is parsed through `deserialize_any`, so the text is refused exactly when
    /// parsing it into a `serde_json::Value` would fail (nesting limit, number range, escapes,
    /// trailing characters), with the same messages.
    pub(super) fn read(raw: &'a str) -> serde_json::Result<Option<Fields<'a>>> {
        let mut de = serde_json::Deserializer::from_str(raw);
        let fields = if skip_whitespace(raw).starts_with('{') {
            Some(Fields::deserialize(&mut de)?)
        } else {
            NotAnObject::deserialize(&mut de)?;
            None
        };
        de.end()?;
        Ok(fields)
    }

    /// Reads the value that starts `text` as [`Fields::read`] reads a whole text, and where it
    /// ends; `None` when no value parses there.
    pub(super) fn read_prefix(text: &'a str) -> Option<(Option<Fields<'a>>, usize)> {
        fn first<'a, T: Deserialize<'a>>(text: &'a str) -> Option<(T, usize)> {
            let mut stream = serde_json::Deserializer::from_str(text).into_iter::<T>();
            let value = stream.next()?.ok()?;
            Some((value, stream.byte_offset()))
        }
        if skip_whitespace(text).starts_with('{') {
            first::<Fields>(text).map(|(fields, end)| (Some(fields), end))
        } else {
            first::<NotAnObject>(text).map(|(NotAnObject, end)| (None, end))
        }
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// Any JSON value, parsed in full (see [`FieldSeed`]) and dropped: an event that is not an
/// object is read as this.
struct NotAnObject;

impl<'de> Deserialize<'de> for NotAnObject {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        FieldSeed(&mut Vec::new()).deserialize(deserializer).map(|_| NotAnObject)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        // Values that are not kept (unknown fields, arrays and objects where a scalar belongs)
        // are still parsed in full, so they are refused exactly as a `Value` would refuse them.
        let mut scratch = Vec::new();
        // A repeated key keeps its last value, as in a `serde_json::Map`.
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let slot = match key.as_ref() {
                "event_id" => &mut fields.event_id,
                "event" => &mut fields.event,
                "type" => &mut fields.kind,
                "user_id" => &mut fields.user_id,
                "timestamp" => &mut fields.timestamp,
                "value" => &mut fields.value,
                "properties" => {
                    // Room for typical properties at once, rather than growing from a few bytes.
                    fields.properties_json.clear();
                    fields.properties_json.reserve(128);
                    fields.properties = map.next_value_seed(FieldSeed(&mut fields.properties_json))?;
                    continue;
                }
                "experiment_key" => &mut fields.experiment_key,
                "variant" => &mut fields.variant,
                _ => {
                    if fields.unknown.as_ref().is_none_or(|first| key < *first) {
                        fields.unknown = Some(key);
                    }
                    scratch.clear();
                    map.next_value_seed(FieldSeed(&mut scratch))?;
                    continue;
                }
            };
            scratch.clear();
            *slot = map.next_value_seed(FieldSeed(&mut scratch))?;
        }
        Ok(fields)
    }
}

/// An object key, borrowed from the text unless it had escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// Reads a field's value: a scalar as [`Json`]; an array or object is copied into the buffer
/// (see [`CopyJson`]) and only its kind is returned.
struct FieldSeed<'b>(&'b mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Json<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool)
    }

    // As `serde_json::Number::as_f64` reads each kind of number.
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(v as f64))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(v as f64))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Number(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        CopyJson(self.0).visit_seq(seq).map(|()| Json::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        CopyJson(self.0).visit_map(map).map(|()| Json::Object)
    }
}

/// Copies a JSON value into the buffer as compact JSON, written as `serde_json` writes the
/// `Value` it would parse to (numbers and string escapes through `serde_json` itself; keys stay
/// in text order, which decodes to the same map).
///
/// Hand-written rather than `serde_transcode` so that a parse error surfaces as the parser's own
/// error, with its position in the event's text.
struct CopyJson<'b>(&'b mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for CopyJson<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CopyJson<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        write_json(self.0, &v);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        write_json(self.0, &v);
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        write_json(self.0, &v);
        Ok(())
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        write_plain(self.0, v);
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        write_json(self.0, v);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        copy_items(self.0, b'[', b']', |out| Ok(seq.next_element_seed(CopyJson(out))?.is_some()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        copy_items(self.0, b'{', b'}', |out| {
            if map.next_key_seed(CopyJson(out))?.is_none() {
                return Ok(false);
            }
            out.push(b':');
            map.next_value_seed(CopyJson(out))?;
            Ok(true)
        })
    }
}

/// Writes `open`, the items `copy_next` copies (until it says there are no more) separated by
/// commas, and `close`.
fn copy_items<E>(
    out: &mut Vec<u8>,
    open: u8,
    close: u8,
    mut copy_next: impl FnMut(&mut Vec<u8>) -> Result<bool, E>,
) -> Result<(), E> {
    out.push(open);
    let mut first = true;
    loop {
        let mark = out.len();
        if !first {
            out.push(b',');
        }
        if !copy_next(out)? {
            out.truncate(mark);
            break;
        }
        first = false;
    }
    out.push(close);
    Ok(())
}
