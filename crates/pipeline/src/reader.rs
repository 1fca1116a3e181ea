//! Typed reads of YAML nodes with GitLab-style errors: each failure names the key, where it is, what
//! was found and what to write instead.

use crate::document::{Mapping, Node, Source, Value};
use crate::error::PipelineError;
use glrunner_protocol::When;

/// Lists nested by `!reference` are flattened up to this depth, as GitLab does for scripts and rules.
pub const MAX_LIST_NESTING: usize = 10;

/// Reads nodes of one pipeline, turning marks into locations.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    pub source: &'a Source,
}

impl<'a> Reader<'a> {
    pub fn new(source: &'a Source) -> Self {
        Self { source }
    }

    pub fn invalid(
        &self,
        node: &Node,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> PipelineError {
        PipelineError::invalid(self.source.at(node.mark), problem, fix)
    }

    /// A scalar as a string (numbers and booleans as GitLab prints them).
    pub fn string(&self, node: &Node, what: &str, example: &str) -> Result<String, PipelineError> {
        node.value.scalar_string().ok_or_else(|| {
            self.invalid(
                node,
                format!("{what} is {}, not a string", node.value.kind()),
                format!("write {example}"),
            )
        })
    }

    /// A string, or a list of strings (nested lists flattened).
    pub fn strings(
        &self,
        node: &Node,
        what: &str,
        example: &str,
    ) -> Result<Vec<String>, PipelineError> {
        match &node.value {
            Value::Seq(_) => self
                .flat_list(node, what)?
                .into_iter()
                .map(|item| self.string(item, &format!("an entry of {what}"), example))
                .collect(),
            _ => Ok(vec![self.string(node, what, example)?]),
        }
    }

    /// A list only (nested lists flattened); a single string is refused.
    pub fn string_list(
        &self,
        node: &Node,
        what: &str,
        example: &str,
    ) -> Result<Vec<String>, PipelineError> {
        if !matches!(node.value, Value::Seq(_)) {
            return Err(self.invalid(
                node,
                format!("{what} is {}, not a list", node.value.kind()),
                format!("write {example}"),
            ));
        }
        self.strings(node, what, example)
    }

    pub fn boolean(&self, node: &Node, what: &str) -> Result<bool, PipelineError> {
        match node.value {
            Value::Bool(b) => Ok(b),
            ref other => Err(self.invalid(
                node,
                format!("{what} is {}, not true or false", other.kind()),
                "write `true` or `false` (unquoted)",
            )),
        }
    }

    /// `when:` of artifacts or a cache: on_success, on_failure or always.
    pub fn transfer_when(&self, node: &Node, what: &str) -> Result<When, PipelineError> {
        let text = self.string(node, what, "`when: on_success`")?;
        match text.as_str() {
            "on_success" => Ok(When::OnSuccess),
            "on_failure" => Ok(When::OnFailure),
            "always" => Ok(When::Always),
            _ => Err(self.invalid(
                node,
                format!("{what} is `{text}`"),
                "write on_success, on_failure or always",
            )),
        }
    }

    pub fn mapping<'n>(
        &self,
        node: &'n Node,
        what: &str,
        example: &str,
    ) -> Result<&'n Mapping, PipelineError> {
        match &node.value {
            Value::Map(m) => Ok(m),
            other => Err(self.invalid(
                node,
                format!("{what} is {}, not a mapping", other.kind()),
                format!("write {example}"),
            )),
        }
    }

    /// The items of a list, with nested lists (from `!reference`) spliced in.
    pub fn flat_list<'n>(
        &self,
        node: &'n Node,
        what: &str,
    ) -> Result<Vec<&'n Node>, PipelineError> {
        fn walk<'n>(
            reader: &Reader<'_>,
            node: &'n Node,
            what: &str,
            depth: usize,
            out: &mut Vec<&'n Node>,
        ) -> Result<(), PipelineError> {
            let Value::Seq(items) = &node.value else {
                out.push(node);
                return Ok(());
            };
            if depth > MAX_LIST_NESTING {
                return Err(reader.invalid(
                    node,
                    format!("{what} nests lists more than {MAX_LIST_NESTING} levels deep"),
                    "flatten the list",
                ));
            }
            items
                .iter()
                .try_for_each(|item| walk(reader, item, what, depth + 1, out))
        }
        let mut out = Vec::new();
        walk(self, node, what, 0, &mut out)?;
        Ok(out)
    }

    /// Refuse keys outside `allowed`, naming them and the allowed set.
    pub fn known_keys(
        &self,
        map: &Mapping,
        allowed: &[&str],
        what: &str,
    ) -> Result<(), PipelineError> {
        for entry in map.iter() {
            if !allowed.contains(&entry.key.as_str()) {
                return Err(PipelineError::invalid(
                    self.source.at(entry.key_mark),
                    format!("{what} has the unknown key `{}`", entry.key),
                    format!("use only {}", allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }
}
