//! The YAML document: a `.gitlab-ci.yml` parsed into an owned tree of [`Node`]s that keep their line and
//! column and their custom tags (`!reference`), with aliases expanded and merge keys (`<<`) applied.
//!
//! YAML crate choice: `saphyr` (the maintained successor of yaml-rust/yaml-rust2). Its `MarkedYaml` gives
//! every node a position and keeps user tags as `Tagged` nodes, which `!reference` needs; aliases are
//! expanded with a node budget (no "billion laughs"). `serde_yaml` is deprecated, and `serde-saphyr`
//! deserialises into typed structs, which would drop tags and the untyped tree that `extends`,
//! `!reference` and `include` must work on.
//!
//! saphyr implements YAML 1.2, which has no merge keys, so `<<` is applied here with the semantics of
//! Ruby's Psych, which GitLab uses: merged keys are assigned in place of the `<<` entry, so a key written
//! after `<<` overrides the merged one; in `<<: [*a, *b]` the earlier mapping wins.
//!
//! A pipeline can span several files (`include: local`), so every [`Mark`] names its file by an index
//! into the [`Source`]'s file table, and errors point into the file the value was written in.

use crate::error::{Location, PipelineError};
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use std::fmt;
use std::path::{Path, PathBuf};

/// Nesting deeper than this is refused instead of risking the stack.
const MAX_DEPTH: usize = 200;

/// A 1-based line and column in one of the pipeline's files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
    /// Index into the [`Source`]'s files; 0 is the main pipeline file.
    pub file: u32,
}

impl Mark {
    /// A position in the main file.
    pub fn new(line: usize, column: usize) -> Self {
        Self {
            line,
            column,
            file: 0,
        }
    }

    fn from_saphyr(m: saphyr::Marker, file: u32) -> Self {
        Self {
            line: m.line(),
            // saphyr counts columns from 0, editors from 1.
            column: m.col() + 1,
            file,
        }
    }
}

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Mapping),
    /// A node with a custom tag such as `!reference`; the tag includes its `!`.
    Tagged(String, Box<Node>),
}

/// A mapping in document order. Keys are strings, as GitLab symbolises them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_mark: Mark,
    pub value: Node,
}

impl Mapping {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries
            .iter_mut()
            .find(|e| e.key == key)
            .map(|e| &mut e.value)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Entry> {
        self.entries.iter()
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Entry> {
        self.entries.iter_mut()
    }

    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        let index = self.entries.iter().position(|e| e.key == key)?;
        Some(self.entries.remove(index))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Insert or overwrite in place, like assigning to a Ruby hash.
    pub fn assign(&mut self, entry: Entry) {
        match self.entries.iter_mut().find(|e| e.key == entry.key) {
            Some(existing) => existing.value = entry.value,
            None => self.entries.push(entry),
        }
    }

    /// ActiveSupport's `deep_merge!`, which GitLab uses for `include` and `extends`: mappings merge key
    /// by key, anything else (lists included) from `other` replaces the value. Keys keep their first
    /// position; new keys go last. A replaced key takes the position mark of the value that won.
    pub fn deep_merge(&mut self, other: Mapping) {
        for entry in other.entries {
            match self.entries.iter_mut().find(|e| e.key == entry.key) {
                Some(existing) => match (&mut existing.value.value, entry.value.value) {
                    (Value::Map(mine), Value::Map(theirs)) => mine.deep_merge(theirs),
                    (_, value) => {
                        existing.key_mark = entry.key_mark;
                        existing.value = Node {
                            value,
                            mark: entry.value.mark,
                        };
                    }
                },
                None => self.entries.push(entry),
            }
        }
    }
}

impl IntoIterator for Mapping {
    type Item = Entry;
    type IntoIter = std::vec::IntoIter<Entry>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl FromIterator<Entry> for Mapping {
    fn from_iter<T: IntoIterator<Item = Entry>>(iter: T) -> Self {
        let mut mapping = Mapping::default();
        iter.into_iter().for_each(|e| mapping.assign(e));
        mapping
    }
}

impl Value {
    /// How the value reads in an error message ("a list", "a string", …).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "empty (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Tagged(..) => "a tagged value",
        }
    }

    /// A scalar as the string GitLab would see (numbers as Ruby prints them); `None` for anything else.
    pub fn scalar_string(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(ruby_float(*f)),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) | Value::Tagged(..) => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Ruby's `Float#to_s` for ordinary values: `1.0` stays `1.0`, `3.10` becomes `3.1`.
fn ruby_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        f.to_string()
    }
}

/// The files a pipeline was read from (the main file first, then each included one), to turn
/// [`Mark`]s into [`Location`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    files: Vec<PathBuf>,
}

impl Source {
    pub fn new(file: impl Into<PathBuf>) -> Self {
        Self {
            files: vec![file.into()],
        }
    }

    pub fn at(&self, mark: Mark) -> Location {
        Location {
            file: self.file(mark.file).to_path_buf(),
            line: mark.line,
            column: mark.column,
        }
    }

    /// The main pipeline file.
    pub fn path(&self) -> &Path {
        &self.files[0]
    }

    /// File `id`, or the main file for an id this table never handed out.
    pub fn file(&self, id: u32) -> &Path {
        self.files
            .get(id as usize)
            .unwrap_or(&self.files[0])
            .as_path()
    }

    /// Register another file of the pipeline; its marks carry the returned id.
    pub fn add(&mut self, file: impl Into<PathBuf>) -> u32 {
        self.files.push(file.into());
        u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX)
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// A parsed pipeline file: its source and its top-level mapping.
#[derive(Debug, Clone)]
pub struct Document {
    pub source: Source,
    pub root: Mapping,
    pub root_mark: Mark,
}

impl Document {
    /// Parse `text`, which was read from `file` (used in error locations only).
    pub fn parse(text: &str, file: impl Into<PathBuf>) -> Result<Self, PipelineError> {
        let source = Source::new(file);
        let (root, root_mark) = parse_file(text, &source, 0)?;
        Ok(Self {
            source,
            root,
            root_mark,
        })
    }
}

/// Parse the text of file `file` of `source` into its top-level mapping.
pub fn parse_file(
    text: &str,
    source: &Source,
    file: u32,
) -> Result<(Mapping, Mark), PipelineError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| syntax_error(source, &e, file))?;
    let mut docs: Vec<MarkedYaml<'_>> = docs.into_iter().filter(|d| !is_empty_doc(d)).collect();
    let first = match docs.len() {
        0 => {
            return Err(PipelineError::invalid(
                source.at(Mark {
                    line: 1,
                    column: 1,
                    file,
                }),
                "the pipeline file is empty",
                "add at least one job, e.g.\n    test:\n      script:\n        - echo hello",
            ));
        }
        1 => docs.remove(0),
        _ => {
            let second = docs.remove(1);
            let header = docs.remove(0);
            let at = source.at(Mark::from_saphyr(second.span.start, file));
            return Err(multi_document_error(source, header, at, file));
        }
    };
    let Node { value, mark } = convert(source, first, 0, file)?;
    match value {
        Value::Map(root) => Ok((root, mark)),
        other => Err(PipelineError::invalid(
            source.at(mark),
            format!(
                "the top level of the pipeline file is {}, not a mapping",
                other.kind()
            ),
            "write jobs and keywords as `name:` entries at the top level, e.g.\n    stages: [build]\n    \
                 build:\n      script: make",
        )),
    }
}

fn is_empty_doc(doc: &MarkedYaml<'_>) -> bool {
    matches!(doc.data, YamlData::BadValue | YamlData::Value(Scalar::Null))
}

fn multi_document_error(
    source: &Source,
    header: MarkedYaml<'_>,
    at: Location,
    file: u32,
) -> PipelineError {
    let has_spec = convert(source, header, 0, file)
        .ok()
        .and_then(|n| match n.value {
            Value::Map(m) => m.entry("spec").map(|e| e.key_mark),
            _ => None,
        });
    match has_spec {
        Some(mark) => PipelineError::Unsupported(crate::error::UnsupportedKey {
            at: source.at(mark),
            key: "spec:inputs".into(),
            job: None,
            fix: "delete the `spec:` header and the `---` line after it, and write each input's value \
                  where `$[[ inputs.… ]]` is used"
                .into(),
        }),
        None => PipelineError::invalid(
            at,
            "the file holds more than one YAML document (a second `---`)",
            "keep one document; only a `spec:` header may precede the `---` in GitLab",
        ),
    }
}

fn syntax_error(source: &Source, e: &saphyr::ScanError, file: u32) -> PipelineError {
    let mark = Mark::from_saphyr(*e.marker(), file);
    let message = if e.info().contains("duplicated key") {
        "the same key appears twice in one mapping (GitLab would silently keep only the last one); \
         rename or remove one of them"
            .to_owned()
    } else {
        e.info().to_owned()
    };
    PipelineError::Syntax {
        at: source.at(mark),
        message,
    }
}

fn convert(
    source: &Source,
    node: MarkedYaml<'_>,
    depth: usize,
    file: u32,
) -> Result<Node, PipelineError> {
    let mark = Mark::from_saphyr(node.span.start, file);
    if depth > MAX_DEPTH {
        return Err(PipelineError::invalid(
            source.at(mark),
            format!("the YAML is nested more than {MAX_DEPTH} levels deep"),
            "flatten the structure; GitLab keywords never need this depth",
        ));
    }
    let value = match node.data {
        YamlData::Value(scalar) => match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(b),
            Scalar::Integer(i) => Value::Int(i),
            Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
            Scalar::String(s) => Value::Str(s.into_owned()),
        },
        YamlData::Representation(text, ..) => Value::Str(text.into_owned()),
        YamlData::Sequence(items) => Value::Seq(
            items
                .into_iter()
                .map(|item| convert(source, item, depth + 1, file))
                .collect::<Result<_, _>>()?,
        ),
        YamlData::Mapping(map) => {
            let mut mapping = Mapping::default();
            for (key, value) in map {
                let key_mark = Mark::from_saphyr(key.span.start, file);
                let is_merge = matches!(&key.data, YamlData::Value(Scalar::String(s)) if s == "<<");
                let value = convert(source, value, depth + 1, file)?;
                if is_merge {
                    merge_into(source, &mut mapping, value)?;
                    continue;
                }
                let key = key_string(source, key, key_mark, file)?;
                mapping.assign(Entry {
                    key,
                    key_mark,
                    value,
                });
            }
            Value::Map(mapping)
        }
        YamlData::Tagged(tag, inner) => {
            let inner = convert(source, *inner, depth + 1, file)?;
            Value::Tagged(tag.to_string(), Box::new(inner))
        }
        YamlData::Alias(_) | YamlData::BadValue => {
            return Err(PipelineError::invalid(
                source.at(mark),
                "this value cannot be read: an alias to an unknown anchor, or a value that does not \
                 match its `!!` type tag",
                "define the anchor (`&name`) before using `*name`, or fix the tagged value",
            ));
        }
    };
    Ok(Node { value, mark })
}

fn key_string(
    source: &Source,
    key: MarkedYaml<'_>,
    mark: Mark,
    file: u32,
) -> Result<String, PipelineError> {
    let value = convert(source, key, 0, file)?.value;
    value.scalar_string().ok_or_else(|| {
        PipelineError::invalid(
            source.at(mark),
            format!(
                "a mapping key is {}; GitLab keys are plain names",
                value.kind()
            ),
            "use a plain name as the key, e.g. `build:`",
        )
    })
}

/// Apply `<<: value` to `target` (see the module comment for the semantics).
fn merge_into(source: &Source, target: &mut Mapping, value: Node) -> Result<(), PipelineError> {
    let not_a_mapping = |mark: Mark, kind: &str| {
        PipelineError::invalid(
            source.at(mark),
            format!("the merge key `<<` needs a mapping or a list of mappings, not {kind}"),
            "merge an anchored mapping: `<<: *defaults` or `<<: [*a, *b]`",
        )
    };
    match value.value {
        Value::Map(m) => {
            for e in m.entries {
                target.assign(e);
            }
        }
        Value::Seq(items) => {
            let mut merged = Mapping::default();
            for item in items.into_iter().rev() {
                match item.value {
                    Value::Map(m) => m.entries.into_iter().for_each(|e| merged.assign(e)),
                    other => return Err(not_a_mapping(item.mark, other.kind())),
                }
            }
            merged.entries.into_iter().for_each(|e| target.assign(e));
        }
        other => return Err(not_a_mapping(value.mark, other.kind())),
    }
    Ok(())
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Mapping {
        Document::parse(text, "ci.yml").unwrap().root
    }

    fn keys(m: &Mapping) -> Vec<&str> {
        m.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn merge_key_is_applied_in_place_like_psych() {
        let root = parse(
            "base: &base {a: 1, b: 2}\nother: &other {b: 3, c: 4}\n\
             x:\n  b: 0\n  <<: *base\n  c: 9\n\
             y:\n  <<: [*base, *other]\n",
        );
        let Value::Map(x) = &root.get("x").unwrap().value else {
            panic!()
        };
        assert_eq!(keys(x), ["b", "a", "c"]);
        // Psych assigns merged keys where `<<` stands, so `b` from the anchor overrides the earlier 0.
        assert_eq!(x.get("b").unwrap().value, Value::Int(2));
        assert_eq!(x.get("c").unwrap().value, Value::Int(9));
        let Value::Map(y) = &root.get("y").unwrap().value else {
            panic!()
        };
        // Earlier mappings in a merge list win.
        assert_eq!(y.get("b").unwrap().value, Value::Int(2));
        assert_eq!(y.get("c").unwrap().value, Value::Int(4));
    }

    #[test]
    fn tags_and_positions_are_kept() {
        let root = parse("job:\n  script:\n    - !reference [.setup, script]\n");
        let Value::Map(job) = &root.get("job").unwrap().value else {
            panic!()
        };
        let Value::Seq(script) = &job.get("script").unwrap().value else {
            panic!()
        };
        let Value::Tagged(tag, inner) = &script[0].value else {
            panic!("{:?}", script[0])
        };
        assert_eq!(tag, "!reference");
        assert!(matches!(inner.value, Value::Seq(_)));
        assert_eq!(script[0].mark, Mark::new(3, 7));
        assert_eq!(root.entry("job").unwrap().key_mark, Mark::new(1, 1));
    }

    #[test]
    fn floats_print_like_ruby() {
        assert_eq!(ruby_float(3.10), "3.1");
        assert_eq!(ruby_float(1.0), "1.0");
        assert_eq!(ruby_float(0.25), "0.25");
    }

    #[test]
    fn merging_a_scalar_is_an_error_with_position() {
        let err = Document::parse("x:\n  <<: 3\n", "ci.yml").unwrap_err();
        assert_eq!(err.location().unwrap().line, 2);
        assert!(err.to_string().contains("merge key"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused_with_position() {
        let err = Document::parse("a:\n  script: x\na:\n  script: y\n", "ci.yml").unwrap_err();
        let at = err.location().unwrap();
        assert_eq!((at.line, at.column), (3, 1), "{err}");
        assert!(err.to_string().contains("twice"), "{err}");
    }
}
