//! The resolved document: the layer between the YAML tree and typed jobs. GitLab applies its
//! document-level features here, in this order: `include` (merge other files into the root mapping),
//! `extends` (deep-merge templates into jobs), then `!reference` (splice in values from elsewhere).
//! Each works on untyped [`Mapping`]s and hands the next step a plain tree, so the typed layer
//! (`config`, `job`) never sees them.
//!
//! glrunner does not resolve them yet: `include` is refused here for the whole file, while `extends`
//! and `!reference` are reported per job by the typed layer (see [`first_reference`]), so other jobs of
//! the same file still run. Tags other than `!reference` are errors, as in GitLab.

use crate::document::{Document, Mapping, Mark, Node, Source, Value};
use crate::error::{PipelineError, UnsupportedKey};

/// The tag GitLab defines for splicing values: `!reference [job, key, …]`.
pub const REFERENCE_TAG: &str = "!reference";

/// A document after the document-level features are applied.
#[derive(Debug, Clone)]
pub struct ResolvedDocument {
    pub source: Source,
    pub root: Mapping,
}

/// Apply (today: check) the document-level features of `doc`.
pub fn resolve(doc: Document) -> Result<ResolvedDocument, PipelineError> {
    if let Some(include) = doc.root.entry("include") {
        return Err(PipelineError::Unsupported(UnsupportedKey {
            at: doc.source.at(include.key_mark),
            key: "include".into(),
            job: None,
            fix: "paste the content of the included files into this file and delete `include:`"
                .into(),
        }));
    }
    for entry in doc.root.iter() {
        check_tags(&doc.source, &entry.value)?;
    }
    Ok(ResolvedDocument {
        source: doc.source,
        root: doc.root,
    })
}

/// Refuse tags GitLab does not know, as GitLab does.
fn check_tags(source: &Source, node: &Node) -> Result<(), PipelineError> {
    match &node.value {
        Value::Tagged(tag, inner) => {
            if tag != REFERENCE_TAG {
                return Err(PipelineError::invalid(
                    source.at(node.mark),
                    format!("unknown YAML tag `{tag}`; GitLab only knows `{REFERENCE_TAG}`"),
                    format!("remove `{tag}` (write the plain value)"),
                ));
            }
            check_tags(source, inner)
        }
        Value::Seq(items) => items.iter().try_for_each(|n| check_tags(source, n)),
        Value::Map(m) => m.iter().try_for_each(|e| check_tags(source, &e.value)),
        _ => Ok(()),
    }
}

/// Where the first `!reference` under `node` is, if any.
pub fn first_reference(node: &Node) -> Option<Mark> {
    match &node.value {
        Value::Tagged(tag, _) if tag == REFERENCE_TAG => Some(node.mark),
        Value::Tagged(_, inner) => first_reference(inner),
        Value::Seq(items) => items.iter().find_map(first_reference),
        Value::Map(m) => m.iter().find_map(|e| first_reference(&e.value)),
        _ => None,
    }
}

/// The fix for a `!reference` glrunner cannot resolve yet.
pub const REFERENCE_FIX: &str = "replace `!reference [...]` with the values it points to (copy them from the named job or template)";
