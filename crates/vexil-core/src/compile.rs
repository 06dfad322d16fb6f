//! Checks the meaning of a flags document and builds its compiled form.
//!
//! [`crate::decode`] has already checked shapes; here we check what needs the whole document
//! (unknown variants and segments, prerequisite cycles and depth, duplicate keys and rule ids)
//! and prepare everything evaluation needs: regexes, sets and dates parsed, segments resolved,
//! split ranges computed and each flag's salt pre-hashed.

use crate::allocation::Allocation;
use crate::condition::{self, Matcher};
use crate::context::AttributePath;
use crate::error::{join, FieldPath, ValidationErrors};
use crate::hash::SaltedHasher;
use crate::model::{Flag, FlagType, FlagsDocument, Segment, Serve};
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

/// Longest allowed chain of prerequisites (SPEC 3 step 4).
pub const MAX_PREREQUISITE_DEPTH: usize = 8;

static OVERRIDE_VARIANTS: FieldPath<'static> = FieldPath::Text("overrides.variants");
static SEGMENTS: FieldPath<'static> = FieldPath::Text("segments");
static RULES: FieldPath<'static> = FieldPath::Text("rules");
static PREREQUISITES: FieldPath<'static> = FieldPath::Text("prerequisites");

#[derive(Debug)]
pub(crate) struct CompiledFlag {
    pub(crate) source: Flag,
    pub(crate) variant_names: Box<[Box<str>]>,
    pub(crate) variant_values: Box<[Value]>,
    pub(crate) off: usize,
    pub(crate) salt: SaltedHasher,
    pub(crate) bucket_by: AttributePath,
    pub(crate) schedule: Option<(Option<i64>, Option<i64>)>,
    pub(crate) prerequisites: Box<[CompiledPrerequisite]>,
    pub(crate) disabled_for: FxHashSet<Box<str>>,
    pub(crate) pinned: FxHashMap<Box<str>, usize>,
    pub(crate) rules: Box<[CompiledRule]>,
    pub(crate) default: CompiledServe,
    /// No rules and no overrides: a fixed default is then reported as `STATIC`.
    pub(crate) is_static: bool,
}

/// A compiled flag as a set holds it: shared by the sets of successive snapshots (a write
/// recompiles the flags it touches and shares the others), with the emergency stop beside it.
#[derive(Debug, Clone)]
pub(crate) struct FlagEntry {
    pub(crate) compiled: Arc<CompiledFlag>,
    /// Under an emergency stop: evaluates as disabled whatever `enabled` says.
    pub(crate) stopped: bool,
    /// The [`segment_bit`]s of the segments the flag's rules refer to. A segment's write looks
    /// into the rules of the flags whose mask has its bit, not of every flag: at 10,000 flags,
    /// following each flag's rules to their segments was most of a segment write's time.
    segments_mask: u32,
}

impl FlagEntry {
    fn new(compiled: CompiledFlag, stopped: bool) -> FlagEntry {
        let segments_mask = segments_mask(&compiled.source);
        FlagEntry { compiled: Arc::new(compiled), stopped, segments_mask }
    }

    /// Whether the flag's rules refer to one of the segments `keys`, whose bits are `bits`.
    pub(crate) fn uses_any_segment(&self, bits: u32, keys: &impl Fn(&str) -> bool) -> bool {
        self.segments_mask & bits != 0 && self.compiled.source.any_segment(&mut |segment| keys(segment))
    }
}

// See `segment_bit`: the mask fits in the entry's padding.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<FlagEntry>() == 16);

/// The bit that stands for segment `key` in a [`FlagEntry`]'s mask: one of 32, by the key's hash
/// (its top bits, the best mixed). 32 bits fit in the padding of an entry, which every write
/// copies for every flag.
pub(crate) fn segment_bit(key: &str) -> u32 {
    1 << (FxBuildHasher.hash_one(key) >> 59)
}

fn segments_mask(flag: &Flag) -> u32 {
    let mut mask = 0;
    flag.any_segment(&mut |segment| {
        mask |= segment_bit(segment);
        false
    });
    mask
}

#[derive(Debug)]
pub(crate) struct CompiledPrerequisite {
    pub(crate) flag: usize,
    pub(crate) variants: Box<[Box<str>]>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) id: Box<str>,
    pub(crate) when: Matcher,
    pub(crate) serve: CompiledServe,
}

#[derive(Debug)]
pub(crate) enum CompiledServe {
    Variant(usize),
    /// Allocation over indices into the flag's variants.
    Split(Allocation, Box<[usize]>),
    Experiment(Box<str>),
}

/// The compiled flags and segments of one document, in key order.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub(crate) flags: Vec<FlagEntry>,
    pub(crate) segments: Vec<Segment>,
    /// Compiled segment conditions, for experiments' targeting.
    pub(crate) segment_matchers: FxHashMap<String, Arc<Matcher>>,
    /// How many flags have prerequisites: with none, a write needs neither the positions of the
    /// flags by key nor a look at any flag it does not change.
    pub(crate) with_prerequisites: usize,
    /// The positions of the flags that serve an experiment, ascending: the checks of the
    /// experiments they serve need only these, not a look at every flag.
    pub(crate) serving_experiments: Vec<usize>,
}

/// `broken_keys` name items that failed to decode: references to them are not reported again.
pub(crate) fn compile(doc: FlagsDocument, broken_keys: &[String]) -> Result<Compiled, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let FlagsDocument { mut flags, mut segments } = doc;
    flags.sort_by(|a, b| a.key.cmp(&b.key));
    segments.sort_by(|a, b| a.key.cmp(&b.key));
    report_duplicates(flags.iter().map(|f| f.key.as_str()), "flags", "flag", &mut errors);
    report_duplicates(segments.iter().map(|s| s.key.as_str()), "segments", "segment", &mut errors);

    let mut segment_table = SegmentTable::new(&segments, broken_keys);
    for s in &segments {
        segment_table.resolve(&s.key, &SEGMENTS.field(&s.key), &mut errors);
    }

    let with_prerequisites = flags.iter().filter(|f| !f.prerequisites.is_empty()).count();
    let serving_experiments = (0..flags.len()).filter(|&i| flags[i].serves_experiment()).collect();
    let sources: Vec<&Flag> = flags.iter().collect();
    let flag_index: HashMap<&str, usize> = flags.iter().enumerate().map(|(i, f)| (f.key.as_str(), i)).collect();
    check_prerequisite_graph(&sources, &flag_index, &mut errors);

    let mut compiled = Vec::with_capacity(flags.len());
    for flag in &flags {
        let path = join("flags", &flag.key);
        let mut flag_errors = ValidationErrors::default();
        let result = compile_flag(flag, &sources, &flag_index, broken_keys, &mut segment_table, &mut flag_errors);
        errors.extend_within(&path, flag_errors);
        compiled.extend(result);
    }
    let segment_matchers = segment_table.into_compiled();
    errors.into_result(())?;
    drop(sources);
    // Every flag compiled (any error returned above), so the two lists line up; each source moves
    // into its compiled flag instead of being copied there.
    let flags = compiled
        .into_iter()
        .zip(flags)
        .map(|(with_source, source)| FlagEntry::new(with_source(source), false))
        .collect();
    Ok(Compiled { flags, segments, segment_matchers, with_prerequisites, serving_experiments })
}

/// A compiled set with some flags and segments replaced (`Some`) or removed (`None`), checked as
/// [`compile`] checks a whole document. Only what a change can affect is compiled again: the
/// changed items, the segments that refer to a changed segment (transitively), the flags whose
/// rules use one of those, the flags with a changed flag as a prerequisite and, when flags were
/// added or removed (positions move), every flag with prerequisites. The other flags are shared
/// with `base`. The prerequisite graph (cycles, depth) is checked whole: it is a walk over keys.
pub(crate) fn recompile(
    base: &Compiled,
    flag_changes: BTreeMap<String, Option<Flag>>,
    segment_changes: BTreeMap<String, Option<Segment>>,
) -> Result<(Compiled, bool), ValidationErrors> {
    let mut errors = ValidationErrors::default();

    let mut segments: BTreeMap<&str, &Segment> = base.segments.iter().map(|s| (s.key.as_str(), s)).collect();
    for (key, change) in &segment_changes {
        match change {
            Some(segment) => segments.insert(key, segment),
            None => segments.remove(key.as_str()),
        };
    }
    let segments: Vec<Segment> = segments.into_values().cloned().collect();
    let mut dirty_segments: FxHashSet<&str> = segment_changes.keys().map(String::as_str).collect();
    loop {
        let before = dirty_segments.len();
        for s in &segments {
            if !dirty_segments.contains(s.key.as_str()) && s.when.any_segment(&mut |k| dirty_segments.contains(k)) {
                dirty_segments.insert(&s.key);
            }
        }
        if dirty_segments.len() == before {
            break;
        }
    }
    let mut segment_table = SegmentTable::new(&segments, &[]);
    for (key, matcher) in &base.segment_matchers {
        if !dirty_segments.contains(key.as_str()) {
            segment_table.compiled.insert(key.clone(), Some(matcher.clone()));
        }
    }
    for s in &segments {
        if dirty_segments.contains(s.key.as_str()) {
            segment_table.resolve(&s.key, &SEGMENTS.field(&s.key), &mut errors);
        }
    }

    // Merge the changes into the base flags, both in key order. Each change's place is found by
    // binary search and the flags between changes are taken as they are: reading every flag's
    // key (a pointer to follow and a comparison each) cost more at 10,000 flags than compiling
    // the flag written.
    enum Slot {
        /// The base flag at this position.
        Kept(usize),
        New(Box<Flag>),
    }
    let mut keys_changed = false;
    let mut with_prerequisites = base.with_prerequisites;
    let mut slots: Vec<Slot> = Vec::with_capacity(base.flags.len() + flag_changes.len());
    let changed_flags: FxHashSet<String> = flag_changes.keys().cloned().collect();
    // The base flags from here on are not placed yet.
    let mut next = 0;
    for (key, change) in flag_changes {
        let at = next + base.flags[next..].partition_point(|entry| entry.compiled.source.key < key);
        slots.extend((next..at).map(Slot::Kept));
        let replaced = base.flags.get(at).filter(|entry| entry.compiled.source.key == key);
        if let Some(old) = replaced {
            with_prerequisites -= usize::from(!old.compiled.source.prerequisites.is_empty());
        }
        next = at + usize::from(replaced.is_some());
        keys_changed |= replaced.is_some() != change.is_some();
        if let Some(flag) = change {
            with_prerequisites += usize::from(!flag.prerequisites.is_empty());
            slots.push(Slot::New(Box::new(flag)));
        }
    }
    slots.extend((next..base.flags.len()).map(Slot::Kept));

    let sources: Vec<&Flag> = slots
        .iter()
        .map(|slot| match slot {
            Slot::Kept(at) => &base.flags[*at].compiled.source,
            Slot::New(flag) => flag,
        })
        .collect();
    // Positions by key are needed only for prerequisites; most configurations have few or none.
    let mut flag_index: HashMap<&str, usize> = HashMap::new();
    if with_prerequisites > 0 {
        flag_index = sources.iter().enumerate().map(|(i, f)| (f.key.as_str(), i)).collect();
        check_prerequisite_graph(&sources, &flag_index, &mut errors);
    }

    let dirty_bits = dirty_segments.iter().fold(0, |bits, key| bits | segment_bit(key));
    let mut flags = Vec::with_capacity(slots.len());
    let mut serving_experiments = Vec::new();
    // The base's positions of flags serving an experiment, walked beside the kept flags.
    let mut base_serving = base.serving_experiments.iter().copied().peekable();
    for (position, (slot, source)) in slots.iter().zip(&sources).enumerate() {
        let serves = match slot {
            Slot::Kept(at) => {
                while base_serving.next_if(|serving| serving < at).is_some() {}
                base_serving.next_if_eq(at).is_some()
            }
            Slot::New(flag) => flag.serves_experiment(),
        };
        if serves {
            serving_experiments.push(position);
        }
        let dirty = match slot {
            Slot::New(_) => true,
            Slot::Kept(at) => {
                (with_prerequisites > 0
                    && !source.prerequisites.is_empty()
                    && (keys_changed || source.prerequisites.iter().any(|p| changed_flags.contains(&p.flag))))
                    || (dirty_bits != 0
                        && base.flags[*at].uses_any_segment(dirty_bits, &|k| dirty_segments.contains(k)))
            }
        };
        match slot {
            Slot::Kept(at) if !dirty => flags.push(base.flags[*at].clone()),
            _ => {
                let mut flag_errors = ValidationErrors::default();
                let result = compile_flag(source, &sources, &flag_index, &[], &mut segment_table, &mut flag_errors);
                errors.extend_within(&join("flags", &source.key), flag_errors);
                let stopped = match slot {
                    Slot::Kept(at) => base.flags[*at].stopped,
                    Slot::New(_) => false,
                };
                flags.extend(result.map(|with_source| FlagEntry::new(with_source((*source).clone()), stopped)));
            }
        }
    }
    let segment_matchers = segment_table.into_compiled();
    errors.into_result(())?;
    drop(sources);
    let compiled = Compiled { flags, segments, segment_matchers, with_prerequisites, serving_experiments };
    Ok((compiled, keys_changed))
}

fn report_duplicates<'a>(
    keys: impl Iterator<Item = &'a str>,
    collection: &str,
    what: &str,
    errors: &mut ValidationErrors,
) {
    let mut seen = FxHashSet::default();
    for key in keys {
        if !seen.insert(key) {
            errors.push(join(collection, key), format!("duplicate {what} key \"{key}\""));
        }
    }
}

/// Compiles segments on demand, detecting cycles between segments that reference each other.
struct SegmentTable<'a> {
    sources: HashMap<&'a str, &'a Segment>,
    broken_keys: &'a [String],
    compiled: HashMap<String, Option<Arc<Matcher>>>,
    in_progress: Vec<String>,
}

impl<'a> SegmentTable<'a> {
    fn new(segments: &'a [Segment], broken_keys: &'a [String]) -> Self {
        Self {
            sources: segments.iter().map(|s| (s.key.as_str(), s)).collect(),
            broken_keys,
            compiled: HashMap::new(),
            in_progress: Vec::new(),
        }
    }

    fn into_compiled(self) -> FxHashMap<String, Arc<Matcher>> {
        self.compiled.into_iter().filter_map(|(k, m)| Some((k, m?))).collect()
    }

    /// The compiled condition of segment `key`, reporting problems at `path` (the reference).
    fn resolve(&mut self, key: &str, path: &FieldPath<'_>, errors: &mut ValidationErrors) -> Option<Arc<Matcher>> {
        if let Some(done) = self.compiled.get(key) {
            return done.clone();
        }
        let Some(segment) = self.sources.get(key).copied() else {
            if !self.broken_keys.iter().any(|k| k == key) {
                errors.push(path, format!("unknown segment \"{key}\""));
            }
            return None;
        };
        if self.in_progress.iter().any(|k| k == key) {
            let cycle = self.in_progress.join(" -> ");
            errors.push(path, format!("segment cycle: {cycle} -> {key}"));
            return None;
        }
        self.in_progress.push(key.to_string());
        let segment_path = SEGMENTS.field(key);
        let when_path = segment_path.field("when");
        let mut own_errors = ValidationErrors::default();
        let matcher =
            condition::compile(&segment.when, &when_path, &mut |k, p, e| self.resolve(k, p, e), &mut own_errors)
                .map(Arc::new);
        self.in_progress.pop();
        // Segments are compiled once, up front, so their own problems are reported once, at
        // their definition; references from flags then only hit the memo.
        errors.0.extend(own_errors.0);
        self.compiled.insert(key.to_string(), matcher.clone());
        matcher
    }
}

fn check_prerequisite_graph(flags: &[&Flag], index_of: &HashMap<&str, usize>, errors: &mut ValidationErrors) {
    // Depth of the longest prerequisite chain below each flag; None while being visited.
    fn depth(
        i: usize,
        flags: &[&Flag],
        index_of: &HashMap<&str, usize>,
        memo: &mut Vec<Option<Option<usize>>>,
        stack: &mut Vec<usize>,
        errors: &mut ValidationErrors,
    ) -> usize {
        match memo[i] {
            Some(Some(d)) => return d,
            Some(None) => {
                let start = stack.iter().position(|s| *s == i).unwrap_or(0);
                let mut names: Vec<&str> = stack[start..].iter().map(|s| flags[*s].key.as_str()).collect();
                names.push(&flags[i].key);
                errors.push(
                    join(&join("flags", &flags[stack[stack.len() - 1]].key), "prerequisites"),
                    format!("prerequisite cycle: {}", names.join(" -> ")),
                );
                return 0;
            }
            None => {}
        }
        memo[i] = Some(None);
        stack.push(i);
        let mut deepest = 0;
        for p in &flags[i].prerequisites {
            if let Some(&j) = index_of.get(p.flag.as_str()) {
                deepest = deepest.max(1 + depth(j, flags, index_of, memo, stack, errors));
            }
        }
        stack.pop();
        memo[i] = Some(Some(deepest));
        deepest
    }
    let mut memo = vec![None; flags.len()];
    for i in 0..flags.len() {
        let d = depth(i, flags, index_of, &mut memo, &mut Vec::new(), errors);
        if d > MAX_PREREQUISITE_DEPTH {
            errors.push(
                join(&join("flags", &flags[i].key), "prerequisites"),
                format!("prerequisite chain is {d} deep; at most {MAX_PREREQUISITE_DEPTH} is allowed"),
            );
        }
    }
}

/// Compiles `flag`, or reports its errors and returns `None`. What it returns completes the
/// compiled flag with its source, which the caller moves in when it owns the flag.
fn compile_flag(
    flag: &Flag,
    flags: &[&Flag],
    index_of: &HashMap<&str, usize>,
    broken_keys: &[String],
    segments: &mut SegmentTable<'_>,
    errors: &mut ValidationErrors,
) -> Option<impl FnOnce(Flag) -> CompiledFlag> {
    let before = errors.0.len();
    check_variants(flag, errors);
    let names: Vec<&str> = flag.variants.keys().map(String::as_str).collect();
    let variant_index = |name: &str| names.binary_search(&name).ok();
    let lookup = |name: &str, path: &FieldPath<'_>, errors: &mut ValidationErrors| {
        let found = variant_index(name);
        if found.is_none() {
            errors.push(path, format!("unknown variant \"{name}\""));
        }
        found
    };

    let off = lookup(&flag.off_variant, &FieldPath::Text("off_variant"), errors);

    let overrides = &flag.overrides;
    if flag.kind != FlagType::Boolean && !overrides.enabled_for.is_empty() {
        errors.push("overrides.enabled_for", "is only for boolean flags; pin users with overrides.variants");
    }
    let mut pinned = FxHashMap::default();
    if flag.kind == FlagType::Boolean {
        if let Some(on) = variant_index("on") {
            pinned.extend(overrides.enabled_for.iter().map(|u| (Box::<str>::from(u.as_str()), on)));
        }
    }
    for (user, variant) in &overrides.variants {
        let path = OVERRIDE_VARIANTS.field(user);
        if let Some(i) = lookup(variant, &path, errors) {
            if pinned.get(user.as_str()).is_some_and(|on| *on != i) {
                errors.push(path, format!("user \"{user}\" is also in enabled_for"));
            }
            pinned.insert(user.as_str().into(), i);
        }
    }

    let mut rule_ids = FxHashSet::default();
    let mut rules = Vec::with_capacity(flag.rules.len());
    for (i, rule) in flag.rules.iter().enumerate() {
        let path = RULES.index(i);
        if rule.id.trim().is_empty() {
            errors.push(path.field("id"), "must not be empty");
        } else if !rule_ids.insert(rule.id.as_str()) {
            errors.push(path.field("id"), format!("duplicate rule id \"{}\"", rule.id));
        }
        let when =
            condition::compile(&rule.when, &path.field("when"), &mut |k, p, e| segments.resolve(k, p, e), errors);
        let serve = compile_serve(&rule.serve, &path.field("serve"), &lookup, errors);
        if let (Some(when), Some(serve)) = (when, serve) {
            rules.push(CompiledRule { id: rule.id.as_str().into(), when, serve });
        }
    }
    let default = compile_serve(&flag.default, &FieldPath::Text("default"), &lookup, errors);

    if let (Some(enable), Some(disable)) = (flag.schedule.enable_at, flag.schedule.disable_at) {
        if enable >= disable {
            errors.push("schedule.disable_at", "must be after schedule.enable_at");
        }
    }

    let mut prerequisites = Vec::new();
    for (i, p) in flag.prerequisites.iter().enumerate() {
        let path = PREREQUISITES.index(i);
        if p.flag == flag.key {
            errors.push(path.field("flag"), "a flag cannot be its own prerequisite");
            continue;
        }
        let Some(&target) = index_of.get(p.flag.as_str()) else {
            if broken_keys.contains(&p.flag) {
                errors.push(path.field("flag"), format!("flag \"{}\" is invalid", p.flag));
            } else {
                errors.push(path.field("flag"), format!("unknown flag \"{}\"", p.flag));
            }
            continue;
        };
        for (j, v) in p.variants.iter().enumerate() {
            if !flags[target].variants.contains_key(v) {
                errors.push(path.field("variants").index(j), format!("flag \"{}\" has no variant \"{v}\"", p.flag));
            }
        }
        prerequisites.push(CompiledPrerequisite {
            flag: target,
            variants: p.variants.iter().map(|v| v.as_str().into()).collect(),
        });
    }

    if errors.0.len() != before {
        return None;
    }
    let schedule = (flag.schedule.enable_at.is_some() || flag.schedule.disable_at.is_some()).then(|| {
        (flag.schedule.enable_at.map(|t| t.timestamp_millis()), flag.schedule.disable_at.map(|t| t.timestamp_millis()))
    });
    let variant_names: Box<[Box<str>]> = names.iter().map(|n| Box::<str>::from(*n)).collect();
    let variant_values: Box<[Value]> = flag.variants.values().cloned().collect();
    let (off, default) = (off?, default?);
    let salt = SaltedHasher::new(&flag.salt);
    let bucket_by = AttributePath::parse(&flag.bucket_by);
    let disabled_for = overrides.disabled_for.iter().map(|u| u.as_str().into()).collect();
    let is_static = flag.rules.is_empty() && overrides.is_empty();
    Some(move |source| CompiledFlag {
        source,
        variant_names,
        variant_values,
        off,
        salt,
        bucket_by,
        schedule,
        prerequisites: prerequisites.into(),
        disabled_for,
        pinned,
        rules: rules.into(),
        default,
        is_static,
    })
}

fn check_variants(flag: &Flag, errors: &mut ValidationErrors) {
    if flag.variants.is_empty() {
        errors.push("variants", "must define at least one variant");
    }
    if flag.kind == FlagType::Boolean {
        let expected = [("off", false), ("on", true)];
        let exact = flag.variants.len() == 2
            && expected.iter().all(|(name, value)| flag.variants.get(*name) == Some(&Value::Bool(*value)));
        if !exact {
            errors.push("variants", "a boolean flag has exactly the variants on (true) and off (false)");
        }
        return;
    }
    for (name, value) in &flag.variants {
        if name.is_empty() {
            errors.push("variants", "variant names must not be empty");
        } else if !flag.kind.accepts(value) {
            errors
                .push(join("variants", name), format!("value {value} is not of the flag's type {}", flag.kind.name()));
        }
    }
}

fn compile_serve(
    serve: &Serve,
    path: &FieldPath<'_>,
    lookup: &dyn Fn(&str, &FieldPath<'_>, &mut ValidationErrors) -> Option<usize>,
    errors: &mut ValidationErrors,
) -> Option<CompiledServe> {
    match serve {
        Serve::Variant(name) => lookup(name, &path.field("variant"), errors).map(CompiledServe::Variant),
        Serve::Experiment(key) => Some(CompiledServe::Experiment(key.as_str().into())),
        Serve::Split { weights, rollout } => {
            let split_path = path.field("split");
            let indices: Vec<Option<usize>> =
                weights.keys().map(|name| lookup(name, &split_path.field(name), errors)).collect();
            let indices: Option<Box<[usize]>> = indices.into_iter().collect();
            let weight_list: Vec<u32> = weights.values().copied().collect();
            let allocation = Allocation::new(&weight_list, rollout.basis_points());
            if allocation.is_none() {
                errors.push(split_path, "weights must have a positive sum");
            }
            Some(CompiledServe::Split(allocation?, indices?))
        }
    }
}
