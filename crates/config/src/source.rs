//! Where things are in config.toml: byte spans from the TOML parser turned into `file:line:column`,
//! and key paths (`runners[0].kubernetes.image`) looked up in, or found from, those spans.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A position in a file, 1-based; the column counts characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Renders a key path the way messages show it: `runners[0].cache.s3.BucketName`.
pub fn display_path(path: &[Segment]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Segment::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                let bare = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if bare {
                    s.push_str(k);
                } else {
                    s.push_str(&format!("{k:?}"));
                }
            }
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The parsed text of one config file, for locating keys and values.
pub(crate) struct SourceMap<'a> {
    file: &'a Path,
    text: &'a str,
    root: Spanned<DeTable<'a>>,
}

/// What a key path points at: the key's span (absent for array elements) and the value's span.
pub(crate) struct Found<'t, 'a> {
    pub key: Option<Range<usize>>,
    pub value: Range<usize>,
    pub node: &'t DeValue<'a>,
}

impl<'a> SourceMap<'a> {
    pub fn new(file: &'a Path, text: &'a str, root: Spanned<DeTable<'a>>) -> Self {
        Self { file, text, root }
    }

    /// Line and column of a byte offset.
    pub fn location(&self, offset: usize) -> Location {
        location_in(self.file, self.text, offset)
    }

    /// Finds a key path (array indices included). `[]` is the whole document.
    pub fn find(&self, path: &[Segment]) -> Option<Found<'_, 'a>> {
        let mut table: &DeTable<'a> = self.root.get_ref();
        let mut found: Option<Found<'_, 'a>> = None;
        for seg in path {
            found = match (seg, found.as_ref().map(|f| f.node)) {
                (Segment::Key(k), None) => lookup(table, k),
                (Segment::Key(k), Some(DeValue::Table(t))) => {
                    table = t;
                    lookup(table, k)
                }
                (Segment::Index(i), Some(DeValue::Array(a))) => a.get(*i).map(|v| Found {
                    key: None,
                    value: v.span(),
                    node: v.get_ref(),
                }),
                _ => None,
            };
            found.as_ref()?;
        }
        found
    }

    /// Where to point for a key path: the key if there is one, else the value (a `[[runners]]` header).
    pub fn location_of(&self, path: &[Segment]) -> Option<Location> {
        let f = self.find(path)?;
        Some(self.location(f.key.unwrap_or(f.value).start))
    }

    /// Where to point for the value at a key path.
    pub fn value_location(&self, path: &[Segment]) -> Option<Location> {
        let f = self.find(path)?;
        Some(self.location(f.value.start))
    }

    /// The key path of the value at `span` (the value a serde error names): an exact span match, else
    /// the smallest value covering it. Table spans cover only their header, so the whole tree is searched.
    pub fn path_at(&self, span: &Range<usize>) -> (Vec<Segment>, Option<&DeValue<'a>>) {
        let mut best: Option<(usize, Vec<Segment>, &DeValue<'a>)> = None;
        let mut path = Vec::new();
        search_table(self.root.get_ref(), span, &mut path, &mut best);
        match best {
            Some((_, p, node)) => (p, Some(node)),
            None => (Vec::new(), None),
        }
    }
}

type Best<'t, 'a> = Option<(usize, Vec<Segment>, &'t DeValue<'a>)>;

fn search_table<'t, 'a>(
    table: &'t DeTable<'a>,
    span: &Range<usize>,
    path: &mut Vec<Segment>,
    best: &mut Best<'t, 'a>,
) {
    for (k, v) in table.iter() {
        path.push(Segment::Key(k.get_ref().to_string()));
        search_value(v, span, path, best);
        path.pop();
    }
}

fn search_value<'t, 'a>(
    v: &'t Spanned<DeValue<'a>>,
    span: &Range<usize>,
    path: &mut Vec<Segment>,
    best: &mut Best<'t, 'a>,
) {
    let s = v.span();
    if s.start <= span.start && span.end <= s.end {
        let width = s.end - s.start;
        if best.as_ref().is_none_or(|(w, _, _)| width < *w) {
            *best = Some((width, path.clone(), v.get_ref()));
        }
    }
    match v.get_ref() {
        DeValue::Table(t) => search_table(t, span, path, best),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                path.push(Segment::Index(i));
                search_value(item, span, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

fn lookup<'t, 'a>(table: &'t DeTable<'a>, key: &str) -> Option<Found<'t, 'a>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(k, v)| Found {
            key: Some(k.span()),
            value: v.span(),
            node: v.get_ref(),
        })
}

/// Line and column (1-based, columns in characters) of a byte offset in `text`.
pub fn location_in(file: &Path, text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        file: file.to_path_buf(),
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// The TOML type name of a value, for "found a string, expected an integer".
pub(crate) fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nb = \"ü\" # x\n";
        let p = Path::new("c.toml");
        assert_eq!(location_in(p, text, 0).to_string(), "c.toml:1:1");
        let hash = text.find('#').unwrap();
        let loc = location_in(p, text, hash);
        assert_eq!((loc.line, loc.column), (2, 9));
    }

    #[test]
    fn finds_keys_in_arrays_of_tables() {
        let text = "concurrent = 2\n[[runners]]\n  name = \"a\"\n[[runners]]\n  name = \"b\"\n  [runners.kubernetes]\n    image = \"alpine\"\n";
        let root = DeTable::parse(text).unwrap();
        let map = SourceMap::new(Path::new("c.toml"), text, root);
        let path = [
            Segment::Key("runners".into()),
            Segment::Index(1),
            Segment::Key("kubernetes".into()),
            Segment::Key("image".into()),
        ];
        let loc = map.location_of(&path).unwrap();
        assert_eq!((loc.line, loc.column), (7, 5));
        let runner = map.location_of(&path[..2]).unwrap();
        assert_eq!((runner.line, runner.column), (4, 1));
        let value = map.find(&path).unwrap().value;
        let (found, node) = map.path_at(&value);
        assert_eq!(display_path(&found), "runners[1].kubernetes.image");
        assert_eq!(type_name(node.unwrap()), "a string");
    }
}
