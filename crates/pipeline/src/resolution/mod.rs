//! The resolved document: the layer between the YAML tree and typed jobs. GitLab applies its
//! document-level features here, in this order: `include` (merge other files into the root mapping,
//! [`include`]), `extends` (deep-merge templates into jobs, [`extends`]), then `!reference` (splice in
//! values from elsewhere, [`reference`]). Each works on untyped [`Mapping`]s and hands the next step a
//! plain tree, so the typed layer (`config`, `job`) never sees them.

pub mod extends;
pub mod include;
pub mod reference;

use crate::document::{Document, Mapping, Node, Source, Value};
use crate::error::PipelineError;
pub use include::IncludeContext;

/// The tag GitLab defines for splicing values: `!reference [job, key, …]`.
pub const REFERENCE_TAG: &str = "!reference";

/// A document after the document-level features are applied.
#[derive(Debug, Clone)]
pub struct ResolvedDocument {
    pub source: Source,
    pub root: Mapping,
}

/// Apply `include`, `extends` and `!reference` to `doc`.
pub fn resolve(
    doc: Document,
    includes: &IncludeContext<'_>,
) -> Result<ResolvedDocument, PipelineError> {
    let Document {
        mut source, root, ..
    } = doc;
    check_tags(&source, &root)?;
    let root = include::expand(&mut source, root, includes)?;
    let root = extends::apply(&source, root)?;
    let root = reference::resolve(&source, root)?;
    Ok(ResolvedDocument { source, root })
}

/// Refuse tags GitLab does not know, as GitLab does.
pub fn check_tags(source: &Source, root: &Mapping) -> Result<(), PipelineError> {
    fn walk(source: &Source, node: &Node) -> Result<(), PipelineError> {
        match &node.value {
            Value::Tagged(tag, inner) => {
                if tag != REFERENCE_TAG {
                    return Err(PipelineError::invalid(
                        source.at(node.mark),
                        format!("unknown YAML tag `{tag}`; GitLab only knows `{REFERENCE_TAG}`"),
                        format!("remove `{tag}` (write the plain value)"),
                    ));
                }
                walk(source, inner)
            }
            Value::Seq(items) => items.iter().try_for_each(|n| walk(source, n)),
            Value::Map(m) => m.iter().try_for_each(|e| walk(source, &e.value)),
            _ => Ok(()),
        }
    }
    root.iter().try_for_each(|e| walk(source, &e.value))
}

/// Top-level keys that are GitLab keywords, never jobs or templates.
pub const GLOBAL_KEYWORDS: &[&str] = &[
    "stages",
    "variables",
    "default",
    "include",
    "workflow",
    "spec",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
];
