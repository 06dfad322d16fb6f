//! Validation problems, each tied to the path of the field at fault.
//!
//! Loading a flags document reports *every* problem it finds rather than stopping at the first,
//! so a user fixing a file sees the whole list at once.

use serde::Serialize;
use std::fmt;

/// One problem in a document: where (`rules[1].when.op`) and what (`unknown operator "equal"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    pub path: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }

    /// The same problem seen from an enclosing document (`flags.new_checkout` + `rules[0]`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.path = join(prefix, &self.path);
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one document, in the order they were found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ValidationError> {
        self.0.iter()
    }

    pub fn first(&self) -> Option<&ValidationError> {
        self.0.first()
    }

    pub(crate) fn push(&mut self, path: impl fmt::Display, message: impl Into<String>) {
        self.0.push(ValidationError::new(path.to_string(), message));
    }

    pub(crate) fn extend_within(&mut self, prefix: &str, other: ValidationErrors) {
        self.0.extend(other.0.into_iter().map(|e| e.within(prefix)));
    }

    pub(crate) fn into_result<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Joins a field path: `join("rules[1]", "when")` is `rules[1].when`; an empty side disappears.
pub(crate) fn join(prefix: &str, field: &str) -> String {
    FieldPath::Text(prefix).field(field).to_string()
}

/// Where a field is (`rules[1].when.op`), built on the stack from borrowed names as decoding
/// and compiling descend, and written out only when a problem is reported there. Formatting
/// the path of every field of every flag took about a tenth of loading ten thousand valid flags.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FieldPath<'a> {
    /// A path given as text: `""` at the top of a document, or a prefix such as `flags`.
    Text(&'a str),
    Field(&'a FieldPath<'a>, &'a str),
    Index(&'a FieldPath<'a>, usize),
}

impl<'a> FieldPath<'a> {
    /// The top of the document or item being read.
    pub(crate) const ROOT: FieldPath<'static> = FieldPath::Text("");

    /// `name` within this path: `rules[1]` and `when` make `rules[1].when`.
    pub(crate) fn field(&'a self, name: &'a str) -> FieldPath<'a> {
        FieldPath::Field(self, name)
    }

    /// Element `i` of the list at this path: `rules` and 1 make `rules[1]`.
    pub(crate) fn index(&'a self, i: usize) -> FieldPath<'a> {
        FieldPath::Index(self, i)
    }

    fn is_empty(&self) -> bool {
        match self {
            FieldPath::Text(text) => text.is_empty(),
            FieldPath::Field(parent, name) => parent.is_empty() && name.is_empty(),
            FieldPath::Index(..) => false,
        }
    }
}

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Text(text) => f.write_str(text),
            FieldPath::Field(parent, name) => {
                parent.fmt(f)?;
                if !parent.is_empty() && !name.is_empty() && !name.starts_with('[') {
                    f.write_str(".")?;
                }
                f.write_str(name)
            }
            FieldPath::Index(parent, i) => {
                parent.fmt(f)?;
                write!(f, "[{i}]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_written_out_as_join_joins_them() {
        let rules = FieldPath::Text("rules");
        let rule = rules.index(1);
        assert_eq!(rule.field("when").field("op").to_string(), "rules[1].when.op");
        assert_eq!(FieldPath::ROOT.field("variants").to_string(), "variants");
        assert_eq!(FieldPath::Text("flags").field("").to_string(), "flags");
        assert_eq!(FieldPath::ROOT.index(0).to_string(), "[0]");
        assert_eq!(FieldPath::Text("split").field("[x]").to_string(), "split[x]");
        assert_eq!(join("overrides.variants", "beta_1"), "overrides.variants.beta_1");
        assert_eq!(join("", "when"), "when");
    }
}
