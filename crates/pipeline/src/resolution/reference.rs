//! `!reference [name, key, …]`, resolved after `extends` as GitLab does: the path is looked up from the
//! top level of the merged document (so a job's inherited keys can be referenced), and what it finds
//! is resolved in turn, so references may nest up to [`MAX_NESTING`] levels. A reference inside a list
//! puts a list in the list; the keys that take lists of commands or rules flatten it.

use super::REFERENCE_TAG;
use crate::document::{Mapping, Mark, Node, Source, Value};
use crate::error::PipelineError;

/// How deep references may nest.
pub const MAX_NESTING: usize = 10;

/// Replace every `!reference` in `root`.
pub fn resolve(source: &Source, root: Mapping) -> Result<Mapping, PipelineError> {
    let lookup = root.clone();
    let mut out = Mapping::default();
    for entry in root {
        let value = resolve_node(source, &lookup, &entry.value, &mut Vec::new())?;
        out.assign(crate::document::Entry { value, ..entry });
    }
    Ok(out)
}

fn resolve_node(
    source: &Source,
    root: &Mapping,
    node: &Node,
    stack: &mut Vec<Mark>,
) -> Result<Node, PipelineError> {
    let value = match &node.value {
        Value::Tagged(tag, inner) if tag == REFERENCE_TAG => {
            return reference(source, root, node, inner, stack);
        }
        Value::Tagged(_, inner) => return resolve_node(source, root, inner, stack),
        Value::Seq(items) => Value::Seq(
            items
                .iter()
                .map(|i| resolve_node(source, root, i, stack))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(map) => {
            let mut out = Mapping::default();
            for entry in map.iter() {
                out.assign(crate::document::Entry {
                    key: entry.key.clone(),
                    key_mark: entry.key_mark,
                    value: resolve_node(source, root, &entry.value, stack)?,
                });
            }
            Value::Map(out)
        }
        other => other.clone(),
    };
    Ok(Node {
        value,
        mark: node.mark,
    })
}

fn reference(
    source: &Source,
    root: &Mapping,
    node: &Node,
    inner: &Node,
    stack: &mut Vec<Mark>,
) -> Result<Node, PipelineError> {
    let path: Option<Vec<String>> = match &inner.value {
        Value::Seq(items) if !items.is_empty() => items
            .iter()
            .map(|i| i.value.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    };
    let Some(path) = path else {
        return Err(PipelineError::invalid(
            source.at(node.mark),
            format!(
                "`{REFERENCE_TAG}` needs a list of names, not {}",
                inner.value.kind()
            ),
            format!("write `{REFERENCE_TAG} [.template, script]`"),
        ));
    };
    let shown = format!("{REFERENCE_TAG} [{}]", path.join(", "));
    if stack.contains(&node.mark) {
        return Err(PipelineError::invalid(
            source.at(node.mark),
            format!("`{shown}` is part of a circular chain of references"),
            "make one of the referenced values a plain value instead of another `!reference`",
        ));
    }
    if stack.len() >= MAX_NESTING {
        return Err(PipelineError::invalid(
            source.at(node.mark),
            format!("`{shown}` nests references more than {MAX_NESTING} levels deep"),
            "reference the final values directly",
        ));
    }
    stack.push(node.mark);
    let result = dig(source, root, &path, stack).and_then(|found| match found {
        Some(target) => resolve_node(source, root, &target, stack),
        None => Err(PipelineError::invalid(
            source.at(node.mark),
            format!("`{shown}` could not be found"),
            format!(
                "define `{}` under `{}` (in this file or an included one), or fix the path: the first \
                 name is a job or template, the rest are keys inside it",
                path.last().map_or("", String::as_str),
                path.first().map_or("", String::as_str)
            ),
        )),
    });
    stack.pop();
    result
}

/// The node at `path`, following references met on the way.
fn dig(
    source: &Source,
    root: &Mapping,
    path: &[String],
    stack: &mut Vec<Mark>,
) -> Result<Option<Node>, PipelineError> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(None);
    };
    let Some(mut current) = root.get(first).cloned() else {
        return Ok(None);
    };
    for key in rest {
        if matches!(current.value, Value::Tagged(..)) {
            current = resolve_node(source, root, &current, stack)?;
        }
        let Value::Map(map) = &current.value else {
            return Ok(None);
        };
        let Some(next) = map.get(key).cloned() else {
            return Ok(None);
        };
        current = next;
    }
    Ok(Some(current))
}
