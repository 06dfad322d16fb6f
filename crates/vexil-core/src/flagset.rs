//! A validated, compiled set of flags and segments that answers evaluations.

use crate::compile;
use crate::condition::{self, CompiledCondition};
use crate::context::Context;
use crate::decode;
use crate::error::{FieldPath, ValidationError, ValidationErrors};
use crate::evaluate::{self, validate_user_id, EvalEnv, EvalError, Evaluation};
use crate::model::Condition;
use crate::model::{Flag, FlagsDocument, Segment};
use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap};
use serde_json::Value;
use std::hash::BuildHasher;
use std::sync::Arc;

/// Text formats of a flags file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// Guesses from a file name: `.yaml`/`.yml` are YAML, everything else JSON.
    pub fn from_file_name(name: &str) -> Format {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else {
            Format::Json
        }
    }
}

/// Parses JSON or YAML text into a JSON value, reporting syntax errors as a validation problem.
pub fn parse_text(text: &str, format: Format) -> Result<Value, ValidationErrors> {
    let parsed = match format {
        Format::Json => serde_json::from_str::<Value>(text).map_err(|e| format!("invalid JSON: {e}")),
        Format::Yaml => serde_yaml_ng::from_str::<Value>(text).map_err(|e| format!("invalid YAML: {e}")),
    };
    parsed.map_err(|message| ValidationErrors(vec![ValidationError::new("", message)]))
}

/// Flags and segments, validated as a whole and compiled for evaluation. Each compiled flag is
/// shared (`Arc`): a clone, or a set made by [`FlagSet::with_changes`], copies pointers, not
/// flags.
#[derive(Debug, Clone)]
pub struct FlagSet {
    compiled: compile::Compiled,
    /// Position of each flag by key; shared while the keys stay the same.
    index: Arc<KeyIndex>,
}

/// The position of each flag of a set by key. It holds positions only, hashed by the flags' own
/// keys: a set with a flag created or removed builds it again without copying or freeing a key
/// (at 10,000 flags, an index owning its keys was most of a flag creation's time).
#[derive(Debug)]
struct KeyIndex(HashTable<usize>);

impl KeyIndex {
    fn of(flags: &[compile::FlagEntry]) -> KeyIndex {
        let key_at = |position: usize| flags[position].compiled.source.key.as_str();
        let mut positions = HashTable::with_capacity(flags.len());
        for position in 0..flags.len() {
            positions.insert_unique(key_hash(key_at(position)), position, |&other| key_hash(key_at(other)));
        }
        KeyIndex(positions)
    }

    fn position(&self, flags: &[compile::FlagEntry], key: &str) -> Option<usize> {
        self.0.find(key_hash(key), |&position| flags[position].compiled.source.key == key).copied()
    }
}

fn key_hash(key: &str) -> u64 {
    FxBuildHasher.hash_one(key)
}

impl FlagSet {
    /// Validates a document as a whole and compiles it; reports every problem found.
    pub fn compile(doc: FlagsDocument) -> Result<FlagSet, ValidationErrors> {
        compile::compile(doc, &[]).map(FlagSet::from_compiled)
    }

    fn from_compiled(compiled: compile::Compiled) -> FlagSet {
        let index = Arc::new(KeyIndex::of(&compiled.flags));
        FlagSet { compiled, index }
    }

    /// This set with stored flags and segments created or replaced (`Some` document, as stored:
    /// server-managed fields allowed) or removed (`None`), by key, validated as a whole like
    /// [`FlagSet::from_items`] (problems carry document paths, `flags.KEY.rules[0]`) but
    /// compiling only what the changes can affect; every other compiled flag is shared with
    /// `self`. Stops carry over to the flags that stay; set them again after.
    pub fn with_changes(
        &self,
        flags: impl IntoIterator<Item = (String, Option<Value>)>,
        segments: impl IntoIterator<Item = (String, Option<Value>)>,
    ) -> Result<FlagSet, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let flags = decode_changes(flags, "flags", decode::decode_stored_flag, |f| &f.key, &mut errors);
        let segments = decode_changes(segments, "segments", decode::decode_stored_segment, |s| &s.key, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        let (compiled, keys_changed) = compile::recompile(&self.compiled, flags, segments)?;
        if keys_changed {
            return Ok(FlagSet::from_compiled(compiled));
        }
        Ok(FlagSet { compiled, index: self.index.clone() })
    }

    /// Parses, decodes and compiles a flags file.
    pub fn from_text(text: &str, format: Format) -> Result<FlagSet, ValidationErrors> {
        FlagSet::from_value(&parse_text(text, format)?)
    }

    /// Decodes and compiles a flags document, reporting every problem: the meaning of the items
    /// that decoded is checked even when others did not.
    pub fn from_value(value: &Value) -> Result<FlagSet, ValidationErrors> {
        FlagSet::from_partial(decode::decode_document_partially(value))
    }

    /// [`FlagSet::from_value`] of `{"flags": [...], "segments": [...]}` given item by item
    /// (stored documents), each dropped once decoded; problems carry the same paths.
    pub fn from_items(
        flags: impl IntoIterator<Item = Value>,
        segments: impl IntoIterator<Item = Value>,
    ) -> Result<FlagSet, ValidationErrors> {
        FlagSet::from_partial(decode::decode_items_partially(flags, segments))
    }

    fn from_partial(partial: decode::PartialDocument) -> Result<FlagSet, ValidationErrors> {
        let compiled = compile::compile(partial.document, &partial.broken_keys);
        match (partial.errors, compiled) {
            (errors, Ok(compiled)) if errors.is_empty() => Ok(FlagSet::from_compiled(compiled)),
            (mut errors, compiled) => {
                errors.0.extend(compiled.err().into_iter().flat_map(|e| e.0));
                Err(errors)
            }
        }
    }

    /// Whether `other` has the same flag keys in the same positions because it was made from
    /// this set by [`FlagSet::with_changes`] that created and removed none (shares the index).
    pub fn same_keys(&self, other: &FlagSet) -> bool {
        Arc::ptr_eq(&self.index, &other.index)
    }

    pub fn empty() -> FlagSet {
        FlagSet::from_compiled(compile::Compiled {
            flags: Vec::new(),
            segments: Vec::new(),
            segment_matchers: FxHashMap::default(),
            with_prerequisites: 0,
            serving_experiments: Vec::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.compiled.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.compiled.flags.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Flag> {
        self.position(key).map(|i| &self.compiled.flags[i].compiled.source)
    }

    /// The flags in key order.
    pub fn flags(&self) -> impl ExactSizeIterator<Item = &Flag> {
        self.compiled.flags.iter().map(|f| &f.compiled.source)
    }

    /// The flags that serve an experiment's variant in a rule or by default, in key order.
    pub fn serving_experiments(&self) -> impl ExactSizeIterator<Item = &Flag> {
        self.compiled.serving_experiments.iter().map(|&i| &self.compiled.flags[i].compiled.source)
    }

    /// The flags whose rules refer to segment `key` (directly, not through another segment), in
    /// key order.
    pub fn using_segment<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Flag> {
        let bit = compile::segment_bit(key);
        let flags = self.compiled.flags.iter().filter(move |f| f.uses_any_segment(bit, &|segment| segment == key));
        flags.map(|f| &f.compiled.source)
    }

    /// The segments in key order.
    pub fn segments(&self) -> &[Segment] {
        &self.compiled.segments
    }

    /// The document this set was compiled from (what `vexil flags export` writes).
    pub fn document(&self) -> FlagsDocument {
        FlagsDocument { flags: self.flags().cloned().collect(), segments: self.compiled.segments.clone() }
    }

    /// Compiles a condition (an experiment's targeting, a metric's filter) against this set's
    /// segments; problems are reported with paths relative to `path`.
    pub fn compile_condition(&self, condition: &Condition, path: &str) -> Result<CompiledCondition, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let mut resolve = |key: &str, at: &FieldPath<'_>, errors: &mut ValidationErrors| {
            let found = self.compiled.segment_matchers.get(key).cloned();
            if found.is_none() {
                errors.push(at, format!("unknown segment \"{key}\""));
            }
            found
        };
        let matcher = condition::compile(condition, &FieldPath::Text(path), &mut resolve, &mut errors);
        match matcher {
            Some(m) if errors.is_empty() => Ok(CompiledCondition(m)),
            _ => Err(errors),
        }
    }

    /// Puts flags under an emergency stop (they evaluate as `DISABLED`) or lifts it.
    pub fn set_stopped(&mut self, mut stopped: impl FnMut(&Flag) -> bool) {
        for f in &mut self.compiled.flags {
            f.stopped = stopped(&f.compiled.source);
        }
    }

    /// Evaluates one flag at `now_millis` (Unix milliseconds), with no experiments.
    pub fn evaluate(&self, key: &str, ctx: &Context<'_>, now_millis: i64) -> Result<Evaluation<'_>, EvalError> {
        self.evaluate_in(key, ctx, &EvalEnv::at(now_millis))
    }

    /// Evaluates one flag in `env` (a given time, an experiment resolver).
    pub fn evaluate_in<'a>(
        &'a self,
        key: &str,
        ctx: &Context<'_>,
        env: &EvalEnv<'a>,
    ) -> Result<Evaluation<'a>, EvalError> {
        validate_user_id(ctx.user_id())?;
        let i = self.position(key).ok_or_else(|| EvalError::FlagNotFound(key.to_string()))?;
        Ok(evaluate::evaluate(&self.compiled.flags, i, ctx, env))
    }

    /// The position of the flag `key` in key order, for [`FlagSet::evaluate_at`]: a caller
    /// that keeps something per flag (an SDK's evaluation counts) looks the key up once.
    pub fn position(&self, key: &str) -> Option<usize> {
        self.index.position(&self.compiled.flags, key)
    }

    /// Evaluates the flag at `position` (of [`FlagSet::position`]) in `env`.
    pub fn evaluate_at<'a>(
        &'a self,
        position: usize,
        ctx: &Context<'_>,
        env: &EvalEnv<'a>,
    ) -> Result<Evaluation<'a>, EvalError> {
        validate_user_id(ctx.user_id())?;
        if position >= self.compiled.flags.len() {
            return Err(EvalError::FlagNotFound(format!("#{position}")));
        }
        Ok(evaluate::evaluate(&self.compiled.flags, position, ctx, env))
    }

    /// Evaluates every flag at `now_millis`, in key order.
    pub fn evaluate_all(&self, ctx: &Context<'_>, now_millis: i64) -> Result<Vec<Evaluation<'_>>, EvalError> {
        self.evaluate_all_in(ctx, &EvalEnv::at(now_millis))
    }

    pub fn evaluate_all_in<'a>(
        &'a self,
        ctx: &Context<'_>,
        env: &EvalEnv<'a>,
    ) -> Result<Vec<Evaluation<'a>>, EvalError> {
        validate_user_id(ctx.user_id())?;
        Ok((0..self.compiled.flags.len()).map(|i| evaluate::evaluate(&self.compiled.flags, i, ctx, env)).collect())
    }
}

/// The changes of [`FlagSet::with_changes`] decoded, by key; problems are added to `errors`.
fn decode_changes<T>(
    changes: impl IntoIterator<Item = (String, Option<Value>)>,
    collection: &str,
    decode: fn(&Value) -> Result<T, ValidationErrors>,
    key_of: fn(&T) -> &str,
    errors: &mut ValidationErrors,
) -> std::collections::BTreeMap<String, Option<T>> {
    let mut decoded = std::collections::BTreeMap::new();
    for (key, value) in changes {
        let item = match value.as_ref().map(decode) {
            None => None,
            Some(Ok(item)) if key_of(&item) == key => Some(item),
            Some(Ok(item)) => {
                let message = format!("the document's key is \"{}\"", key_of(&item));
                errors.push(crate::error::join(collection, &key), message);
                continue;
            }
            Some(Err(problems)) => {
                errors.0.extend(problems.0);
                continue;
            }
        };
        decoded.insert(key, item);
    }
    decoded
}
