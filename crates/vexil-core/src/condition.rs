//! Compiled targeting conditions (SPEC 1.2) and how they match a context.
//!
//! Operands are parsed once (regexes, semvers, CIDRs, dates, sets for `in`) so matching is
//! cheap and never fails. The rules every operator follows:
//! - the operand's type decides the coercion: a number accepts numeric strings, a string only
//!   strings, a boolean also `"true"`/`"false"`; in `in`/`not_in` each listed value coerces alone;
//! - a missing (or `null`) attribute makes every condition false except `not_exists`;
//! - an attribute that cannot be coerced makes the condition false, negative operators included;
//! - an array attribute matches a positive operator when any element does, and a negative
//!   operator when no element matches the positive one (and at least one element coerces);
//! - `values` means "any of" (for negative operators: "none of").

use crate::context::{Attribute, AttributePath, Context};
use crate::error::{FieldPath, ValidationErrors};
use crate::model::{Comparison, Condition, Operand, Operator};
use chrono::DateTime;
use ipnet::IpNet;
use regex::{Regex, RegexBuilder};
use rustc_hash::FxHashSet;
use semver::Version;
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::net::IpAddr;
use std::sync::Arc;

/// Upper bound on a compiled regex, so a hostile pattern cannot take the server's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug)]
pub(crate) enum Matcher {
    All(Box<[Matcher]>),
    Any(Box<[Matcher]>),
    Not(Box<Matcher>),
    Segment(Arc<Matcher>),
    Test { path: AttributePath, test: Test, negate: bool },
}

#[derive(Debug)]
pub(crate) enum Test {
    Exists,
    Equals(ScalarSet),
    Text { kind: TextOp, needles: Box<[Box<str>]>, ignore_case: bool },
    Matches(Box<[Regex]>),
    Number { cmp: Ordering, or_equal: bool, targets: Box<[f64]> },
    Time { after: bool, targets: Box<[i64]> },
    Semver { cmp: Ordering, or_equal: bool, targets: Box<[Version]> },
    Cidr(Box<[IpNet]>),
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// The listed values of `eq`/`in`, split by type so each coerces on its own.
#[derive(Debug, Default)]
pub(crate) struct ScalarSet {
    strings: FxHashSet<Box<str>>,
    numbers: Vec<f64>,
    bools: [bool; 2],
    has_bools: bool,
    ignore_case: bool,
}

impl ScalarSet {
    fn test(&self, attr: Attribute<'_>) -> Option<bool> {
        let mut coercible = false;
        if !self.strings.is_empty() {
            if let Some(s) = attr.as_str() {
                coercible = true;
                let s = if self.ignore_case { lowercase(s) } else { Cow::Borrowed(s) };
                if self.strings.contains(s.as_ref()) {
                    return Some(true);
                }
            }
        }
        if !self.numbers.is_empty() {
            if let Some(n) = attr.as_number() {
                coercible = true;
                if self.numbers.contains(&n) {
                    return Some(true);
                }
            }
        }
        if self.has_bools {
            if let Some(b) = attr.as_bool() {
                coercible = true;
                if self.bools[usize::from(b)] {
                    return Some(true);
                }
            }
        }
        coercible.then_some(false)
    }
}

/// Lower-cases without allocating when the text has no upper-case letters (the common case).
fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// A condition compiled for matching, e.g. an experiment's targeting or a metric's filter over
/// event properties (pass the properties as the context's attributes).
#[derive(Debug)]
pub struct CompiledCondition(pub(crate) Matcher);

impl CompiledCondition {
    pub fn matches(&self, ctx: &Context<'_>) -> bool {
        self.0.matches(ctx)
    }
}

impl Matcher {
    pub(crate) fn matches(&self, ctx: &Context<'_>) -> bool {
        match self {
            Matcher::All(ms) => ms.iter().all(|m| m.matches(ctx)),
            Matcher::Any(ms) => ms.iter().any(|m| m.matches(ctx)),
            Matcher::Not(m) => !m.matches(ctx),
            Matcher::Segment(m) => m.matches(ctx),
            Matcher::Test { path, test, negate } => {
                let Some(attr) = ctx.lookup(path) else {
                    // Missing attribute: false for everything but `not_exists`.
                    return matches!(test, Test::Exists) && *negate;
                };
                match test.test_any_element(attr) {
                    Some(positive) => positive != *negate,
                    None => false,
                }
            }
        }
    }
}

impl Test {
    /// `Some(true)` match, `Some(false)` comparable but no match, `None` not comparable.
    fn test_any_element(&self, attr: Attribute<'_>) -> Option<bool> {
        if matches!(self, Test::Exists) {
            return Some(true);
        }
        let Some(items) = attr.as_array() else {
            return self.test(attr);
        };
        let mut outcome = None;
        for item in items {
            match self.test(Attribute::Json(item)) {
                Some(true) => return Some(true),
                Some(false) => outcome = Some(false),
                None => {}
            }
        }
        outcome
    }

    fn test(&self, attr: Attribute<'_>) -> Option<bool> {
        match self {
            Test::Exists => Some(true),
            Test::Equals(set) => set.test(attr),
            Test::Text { kind, needles, ignore_case } => {
                let s = attr.as_str()?;
                let s = if *ignore_case { lowercase(s) } else { Cow::Borrowed(s) };
                Some(needles.iter().any(|n| match kind {
                    TextOp::Contains => s.contains(n.as_ref()),
                    TextOp::StartsWith => s.starts_with(n.as_ref()),
                    TextOp::EndsWith => s.ends_with(n.as_ref()),
                }))
            }
            Test::Matches(regexes) => {
                let s = attr.as_str()?;
                Some(regexes.iter().any(|r| r.is_match(s)))
            }
            Test::Number { cmp, or_equal, targets } => {
                let n = attr.as_number()?;
                Some(targets.iter().any(|t| ordering_holds(n.partial_cmp(t), *cmp, *or_equal)))
            }
            Test::Time { after, targets } => {
                let t = attribute_millis(attr)?;
                Some(targets.iter().any(|target| if *after { t > *target } else { t < *target }))
            }
            Test::Semver { cmp, or_equal, targets } => {
                let v = parse_semver(attr.as_str()?)?;
                Some(targets.iter().any(|t| ordering_holds(Some(v.cmp_precedence(t)), *cmp, *or_equal)))
            }
            Test::Cidr(nets) => {
                let ip: IpAddr = attr.as_str()?.trim().parse().ok()?;
                Some(nets.iter().any(|n| n.contains(&ip)))
            }
        }
    }
}

fn ordering_holds(actual: Option<Ordering>, wanted: Ordering, or_equal: bool) -> bool {
    actual.is_some_and(|o| o == wanted || (or_equal && o == Ordering::Equal))
}

/// RFC 3339 strings, or numbers as Unix milliseconds.
fn attribute_millis(attr: Attribute<'_>) -> Option<i64> {
    match attr {
        Attribute::Json(Value::Number(n)) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        }
        other => DateTime::parse_from_rfc3339(other.as_str()?.trim()).ok().map(|t| t.timestamp_millis()),
    }
}

/// Semantic versions, leniently: a leading `v` is ignored and `1` or `1.2` mean `1.0.0`, `1.2.0`.
pub(crate) fn parse_semver(s: &str) -> Option<Version> {
    let s = s.trim();
    let s = s.strip_prefix('v').unwrap_or(s);
    if let Ok(v) = Version::parse(s) {
        return Some(v);
    }
    let core_end = s.find(['-', '+']).unwrap_or(s.len());
    let (core, rest) = s.split_at(core_end);
    let parts = core.split('.').count();
    if !(1..=2).contains(&parts) || !core.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let padding = if parts == 1 { ".0.0" } else { ".0" };
    Version::parse(&format!("{core}{padding}{rest}")).ok()
}

/// Resolves a segment key to its compiled condition, reporting problems at the given path.
pub(crate) type SegmentResolver<'r> =
    dyn FnMut(&str, &FieldPath<'_>, &mut ValidationErrors) -> Option<Arc<Matcher>> + 'r;

/// Compiles a condition; `segment` resolves a segment key to its compiled condition.
pub(crate) fn compile(
    condition: &Condition,
    path: &FieldPath<'_>,
    segment: &mut SegmentResolver<'_>,
    errors: &mut ValidationErrors,
) -> Option<Matcher> {
    let mut list = |conditions: &[Condition], name: &str, errors: &mut ValidationErrors| {
        let compiled: Vec<_> = conditions
            .iter()
            .enumerate()
            .map(|(i, c)| compile(c, &path.field(name).index(i), segment, errors))
            .collect();
        compiled.into_iter().collect::<Option<Box<[Matcher]>>>()
    };
    match condition {
        Condition::All(cs) => list(cs, "all", errors).map(Matcher::All),
        Condition::Any(cs) => list(cs, "any", errors).map(Matcher::Any),
        Condition::Not(c) => compile(c, &path.field("not"), segment, errors).map(|m| Matcher::Not(Box::new(m))),
        Condition::Segment(key) => segment(key, &path.field("segment"), errors).map(Matcher::Segment),
        Condition::Compare(c) => compile_comparison(c, path, errors),
    }
}

fn compile_comparison(c: &Comparison, path: &FieldPath<'_>, errors: &mut ValidationErrors) -> Option<Matcher> {
    use Operator::*;
    let values: &[Value] = match &c.operand {
        Operand::None => &[],
        Operand::One(v) => std::slice::from_ref(v),
        Operand::Many(vs) => vs,
    };
    // Written out only for a value at fault.
    let value_path = |i: usize| match &c.operand {
        Operand::Many(_) => path.field("values").index(i).to_string(),
        _ => path.field("value").to_string(),
    };
    let before = errors.0.len();
    let strings = || values.iter().filter_map(|v| v.as_str());
    let case = |s: &str| if c.ignore_case { s.to_lowercase() } else { s.to_string() };
    let negate = matches!(c.op, Neq | NotIn | NotContains | NotExists);
    let test = match c.op {
        Exists | NotExists => Test::Exists,
        Eq | Neq | In | NotIn => {
            let mut set = ScalarSet { ignore_case: c.ignore_case, ..ScalarSet::default() };
            for v in values {
                match v {
                    Value::String(s) => {
                        set.strings.insert(case(s).into());
                    }
                    Value::Bool(b) => {
                        set.bools[usize::from(*b)] = true;
                        set.has_bools = true;
                    }
                    other => set.numbers.extend(other.as_f64()),
                }
            }
            Test::Equals(set)
        }
        Contains | NotContains | StartsWith | EndsWith => Test::Text {
            kind: match c.op {
                StartsWith => TextOp::StartsWith,
                EndsWith => TextOp::EndsWith,
                _ => TextOp::Contains,
            },
            needles: strings().map(|s| case(s).into()).collect(),
            ignore_case: c.ignore_case,
        },
        Matches => Test::Matches(
            values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let pattern = v.as_str()?;
                    let built =
                        RegexBuilder::new(pattern).case_insensitive(c.ignore_case).size_limit(REGEX_SIZE_LIMIT).build();
                    built
                        .map_err(|e| {
                            errors.push(value_path(i), format!("invalid regex: {}", first_line(&e.to_string())))
                        })
                        .ok()
                })
                .collect(),
        ),
        Gt | Gte | Lt | Lte => Test::Number {
            cmp: if matches!(c.op, Gt | Gte) { Ordering::Greater } else { Ordering::Less },
            or_equal: matches!(c.op, Gte | Lte),
            targets: values.iter().filter_map(Value::as_f64).collect(),
        },
        Before | After => Test::Time {
            after: c.op == After,
            targets: values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let millis = attribute_millis(Attribute::Json(v));
                    if millis.is_none() {
                        errors.push(value_path(i), format!("{v} is not an RFC 3339 date-time or Unix milliseconds"));
                    }
                    millis
                })
                .collect(),
        },
        SemverEq | SemverGt | SemverGte | SemverLt | SemverLte => Test::Semver {
            cmp: match c.op {
                SemverGt | SemverGte => Ordering::Greater,
                SemverLt | SemverLte => Ordering::Less,
                _ => Ordering::Equal,
            },
            or_equal: matches!(c.op, SemverGte | SemverLte),
            targets: values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let parsed = v.as_str().and_then(parse_semver);
                    if parsed.is_none() {
                        errors.push(value_path(i), format!("{v} is not a semantic version"));
                    }
                    parsed
                })
                .collect(),
        },
        InCidr => Test::Cidr(
            values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let s = v.as_str()?.trim();
                    let net = s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from));
                    if net.is_none() {
                        errors.push(value_path(i), format!("\"{s}\" is not a CIDR block or IP address"));
                    }
                    net
                })
                .collect(),
        ),
    };
    (errors.0.len() == before).then(|| Matcher::Test { path: AttributePath::parse(&c.attr), test, negate })
}

fn first_line(s: &str) -> &str {
    s.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or(s)
}
