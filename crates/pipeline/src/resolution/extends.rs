//! `extends:` as GitLab applies it: a job (or template) names one or more top-level entries; each is
//! extended first, the bases are deep-merged in the order listed (later wins), and the job's own keys
//! are merged on top. Mappings merge key by key, lists and scalars are replaced. A chain deeper than
//! [`MAX_NESTING_LEVELS`] ancestors, a cycle, an unknown name or a base that is not a mapping is an
//! error at the `extends:` that caused it.

use super::GLOBAL_KEYWORDS;
use crate::document::{Mapping, Node, Source, Value};
use crate::error::PipelineError;

/// GitLab's limit on `extends` ancestors.
pub const MAX_NESTING_LEVELS: usize = 10;

/// Apply `extends:` to every job and template of `root`.
pub fn apply(source: &Source, mut root: Mapping) -> Result<Mapping, PipelineError> {
    let keys: Vec<String> = root
        .keys()
        .filter(|k| !GLOBAL_KEYWORDS.contains(k))
        .map(str::to_owned)
        .collect();
    // Like GitLab, bases are extended again on every path through them, so the nesting limit counts
    // the whole chain of ancestors.
    for key in keys {
        extend(source, &mut root, &key, &mut Vec::new())?;
    }
    Ok(root)
}

fn extend(
    source: &Source,
    root: &mut Mapping,
    key: &str,
    ancestors: &mut Vec<String>,
) -> Result<(), PipelineError> {
    let Some(Node {
        value: Value::Map(own),
        ..
    }) = root.get(key)
    else {
        return Ok(());
    };
    let Some(extends) = own.get("extends") else {
        return Ok(());
    };
    let invalid = |problem: String, fix: &str| {
        PipelineError::invalid(source.at(extends.mark), problem, fix.to_owned())
    };
    let bases: Vec<String> = match &extends.value {
        Value::Str(s) => vec![s.clone()],
        Value::Seq(items) => items
            .iter()
            .map(|i| i.value.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                invalid(
                    format!("`{key}`: `extends` must list names of jobs or templates"),
                    "write `extends: .template` or `extends: [.base, .tests]`",
                )
            })?,
        other => {
            return Err(invalid(
                format!(
                    "`{key}`: `extends` is {}, not a name or a list of names",
                    other.kind()
                ),
                "write `extends: .template` or `extends: [.base, .tests]`",
            ));
        }
    };
    let unknown: Vec<&str> = bases
        .iter()
        .filter(|b| root.get(b).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(invalid(
            format!(
                "`{key}`: unknown keys in `extends` ({})",
                unknown.join(", ")
            ),
            "define the template (in this file or an included one) or fix the name; templates usually \
             start with `.`",
        ));
    }
    let invalid_bases: Vec<&str> = bases
        .iter()
        .filter(|b| !matches!(root.get(b).map(|n| &n.value), Some(Value::Map(_))))
        .map(String::as_str)
        .collect();
    if !invalid_bases.is_empty() {
        return Err(invalid(
            format!(
                "`{key}`: invalid base hashes in `extends` ({})",
                invalid_bases.join(", ")
            ),
            "extend only jobs and templates, which are mappings of keys",
        ));
    }
    if ancestors.len() > MAX_NESTING_LEVELS {
        return Err(invalid(
            format!(
                "`{key}`: nesting too deep in `extends` ({}: more than {MAX_NESTING_LEVELS} levels)",
                ancestors.join(" → ")
            ),
            "flatten the chain of templates",
        ));
    }
    if ancestors.iter().any(|a| a == key) {
        return Err(invalid(
            format!(
                "`{key}`: circular dependency detected in `extends` ({} → {key})",
                ancestors.join(" → ")
            ),
            "remove one `extends:` so that no template extends itself through others",
        ));
    }
    let own = own.clone();
    let own_mark = root.get(key).map(|n| n.mark).unwrap_or_default();
    ancestors.push(key.to_owned());
    for base in &bases {
        extend(source, root, base, ancestors)?;
    }
    ancestors.pop();
    let mut merged = Mapping::default();
    for base in &bases {
        if let Some(Node {
            value: Value::Map(m),
            ..
        }) = root.get(base)
        {
            merged.deep_merge(m.clone());
        }
    }
    merged.deep_merge(own);
    if let Some(node) = root.get_mut(key) {
        *node = Node {
            value: Value::Map(merged),
            mark: own_mark,
        };
    }
    Ok(())
}
