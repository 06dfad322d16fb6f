//! The flag document model of SPEC 1.1, 1.2 and 1.5 as plain data.
//!
//! These types are what users write (JSON or YAML) and what the service stores and exports.
//! They are produced only by [`crate::decode`], which checks shapes and reports every problem
//! with its path; [`crate::compile`] then checks meaning (references, cycles, regexes) and builds
//! the fast form used for evaluation.

use chrono::{DateTime, Utc};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The value type a flag serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagType {
    Boolean,
    String,
    Number,
    Json,
}

impl FlagType {
    pub fn name(self) -> &'static str {
        match self {
            FlagType::Boolean => "boolean",
            FlagType::String => "string",
            FlagType::Number => "number",
            FlagType::Json => "json",
        }
    }

    /// Whether `value` is a legal variant value for this type.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            FlagType::Boolean => value.is_boolean(),
            FlagType::String => value.is_string(),
            FlagType::Number => value.is_number(),
            FlagType::Json => true,
        }
    }
}

/// Server-managed and descriptive fields every stored object carries (SPEC 1).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Meta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    pub description: String,
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Flag {
    pub key: String,
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(rename = "type")]
    pub kind: FlagType,
    pub enabled: bool,
    pub variants: BTreeMap<String, Value>,
    pub off_variant: String,
    pub overrides: Overrides,
    pub rules: Vec<Rule>,
    pub default: Serve,
    pub bucket_by: String,
    pub salt: String,
    pub schedule: Schedule,
    pub prerequisites: Vec<Prerequisite>,
    pub track_events: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Overrides {
    pub disabled_for: Vec<String>,
    pub enabled_for: Vec<String>,
    pub variants: BTreeMap<String, String>,
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.disabled_for.is_empty() && self.enabled_for.is_empty() && self.variants.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    pub id: String,
    pub when: Condition,
    pub serve: Serve,
}

impl Flag {
    /// What the flag can serve: each rule's serve in order, then the default.
    pub fn serves(&self) -> impl Iterator<Item = &Serve> {
        self.rules.iter().map(|r| &r.serve).chain([&self.default])
    }

    /// Whether a rule or the default serves an experiment's variant.
    pub fn serves_experiment(&self) -> bool {
        self.serves().any(|s| matches!(s, Serve::Experiment(_)))
    }

    /// Whether `found` holds for a segment a rule refers to (directly, not through another
    /// segment), asked rule by rule in the order written until one answers true.
    pub fn any_segment<'a>(&'a self, found: &mut impl FnMut(&'a str) -> bool) -> bool {
        self.rules.iter().any(|r| r.when.any_segment(found))
    }

    /// Whether a rule refers to segment `key` (directly, not through another segment).
    pub fn uses_segment(&self, key: &str) -> bool {
        self.any_segment(&mut |segment| segment == key)
    }
}

/// What a rule or the default serves.
#[derive(Clone, Debug, PartialEq)]
pub enum Serve {
    Variant(String),
    /// Weighted split over variant names, covering `rollout` of the users.
    Split {
        weights: BTreeMap<String, u32>,
        rollout: Percent,
    },
    /// The value of the user's variant in an experiment.
    Experiment(String),
}

impl Serialize for Serve {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Serve::Variant(v) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("variant", v)?;
                m.end()
            }
            Serve::Split { weights, rollout } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("split", weights)?;
                m.serialize_entry("rollout", rollout)?;
                m.end()
            }
            Serve::Experiment(k) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("experiment", k)?;
                m.end()
            }
        }
    }
}

/// A percentage with at most two decimals, held exactly as basis points (0 ..= 10000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u16);

impl Percent {
    pub const ALL: Percent = Percent(10_000);

    pub fn from_basis_points(bp: u16) -> Option<Self> {
        (bp <= 10_000).then_some(Percent(bp))
    }

    /// Accepts 0–100 with at most two decimals (`12.5`, `0.01`), as SPEC 1.1 allows.
    pub fn from_percent(p: f64) -> Option<Self> {
        if !(0.0..=100.0).contains(&p) {
            return None;
        }
        let scaled = p * 100.0;
        let bp = scaled.round();
        ((scaled - bp).abs() < 1e-6).then_some(Percent(bp as u16))
    }

    pub fn basis_points(self) -> u16 {
        self.0
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_multiple_of(100) {
            s.serialize_u64(u64::from(self.0 / 100))
        } else {
            s.serialize_f64(f64::from(self.0) / 100.0)
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Schedule {
    pub enable_at: Option<DateTime<Utc>>,
    pub disable_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Prerequisite {
    pub flag: String,
    pub variants: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    pub key: String,
    #[serde(flatten)]
    pub meta: Meta,
    pub when: Condition,
}

/// A targeting condition (SPEC 1.2).
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Segment(String),
    Compare(Comparison),
}

impl Condition {
    /// Whether `found` holds for a segment this condition refers to (directly, not through
    /// another segment), asked in the order they are written until one answers true.
    pub fn any_segment<'a>(&'a self, found: &mut impl FnMut(&'a str) -> bool) -> bool {
        match self {
            Condition::Segment(key) => found(key),
            Condition::All(items) | Condition::Any(items) => items.iter().any(|c| c.any_segment(found)),
            Condition::Not(inner) => inner.any_segment(found),
            Condition::Compare(_) => false,
        }
    }

    /// Whether this condition refers to segment `key` (directly, not through another segment).
    pub fn mentions_segment(&self, key: &str) -> bool {
        self.any_segment(&mut |segment| segment == key)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub attr: String,
    pub op: Operator,
    pub operand: Operand,
    pub ignore_case: bool,
}

/// The right-hand side of a comparison: none (`exists`), `value`, or `values` (any of).
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    None,
    One(Value),
    Many(Vec<Value>),
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Condition::All(c) => single_entry(s, "all", c),
            Condition::Any(c) => single_entry(s, "any", c),
            Condition::Not(c) => single_entry(s, "not", c),
            Condition::Segment(k) => single_entry(s, "segment", k),
            Condition::Compare(c) => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("attr", &c.attr)?;
                m.serialize_entry("op", c.op.name())?;
                match &c.operand {
                    Operand::None => {}
                    Operand::One(v) => m.serialize_entry("value", v)?,
                    Operand::Many(v) => m.serialize_entry("values", v)?,
                }
                if c.ignore_case {
                    m.serialize_entry("ignore_case", &true)?;
                }
                m.end()
            }
        }
    }
}

fn single_entry<S: Serializer, T: Serialize + ?Sized>(s: S, key: &str, value: &T) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(1))?;
    m.serialize_entry(key, value)?;
    m.end()
}

macro_rules! operators {
    ($($variant:ident => $name:literal $(| $alias:literal)*,)*) => {
        /// Comparison operators of SPEC 1.2; aliases are accepted on input, canonical names stored.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Operator { $($variant,)* }

        impl Operator {
            pub const ALL: &'static [Operator] = &[$(Operator::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(Operator::$variant => $name,)* }
            }

            pub fn parse(s: &str) -> Option<Operator> {
                match s {
                    $($name $(| $alias)* => Some(Operator::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

operators! {
    Eq => "eq" | "equals",
    Neq => "neq" | "not_equals",
    In => "in",
    NotIn => "not_in",
    Contains => "contains",
    NotContains => "not_contains",
    StartsWith => "starts_with",
    EndsWith => "ends_with",
    Matches => "matches",
    Gt => "gt" | "greater_than",
    Gte => "gte",
    Lt => "lt" | "less_than",
    Lte => "lte",
    Before => "before",
    After => "after",
    SemverEq => "semver_eq",
    SemverGt => "semver_gt",
    SemverGte => "semver_gte",
    SemverLt => "semver_lt",
    SemverLte => "semver_lte",
    InCidr => "in_cidr",
    Exists => "exists",
    NotExists => "not_exists",
}

/// A flags file (SPEC 1.5): the document `vexil flags export` writes and the loaders read.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FlagsDocument {
    pub flags: Vec<Flag>,
    pub segments: Vec<Segment>,
}
