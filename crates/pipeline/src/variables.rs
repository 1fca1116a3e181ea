//! `variables:` blocks (top level and per job): `KEY: value` or `KEY: {value, description, expand,
//! options}`, numbers and booleans read as the strings GitLab sends, and the job's block laid over the
//! top-level one as GitLab merges them.

use crate::document::{Entry, Node, Source, Value};
use crate::error::PipelineError;

/// One variable from the YAML, as it goes into the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlVariable {
    pub key: String,
    pub value: String,
    /// `expand: false`: the runner must not expand `$REFERENCES` in the value.
    pub raw: bool,
}

/// Read a `variables:` mapping; `owner` names it in errors (e.g. "job `build`").
pub fn parse(
    source: &Source,
    node: &Node,
    owner: &str,
) -> Result<Vec<YamlVariable>, PipelineError> {
    let Value::Map(map) = &node.value else {
        return Err(PipelineError::invalid(
            source.at(node.mark),
            format!(
                "`variables:` of {owner} is {}, not a mapping",
                node.value.kind()
            ),
            "write one `NAME: value` per line under `variables:`",
        ));
    };
    map.iter()
        .map(|entry| {
            let (value, raw) = variable_value(source, entry, owner)?;
            Ok(YamlVariable {
                key: entry.key.clone(),
                value,
                raw,
            })
        })
        .collect()
}

fn variable_value(
    source: &Source,
    entry: &Entry,
    owner: &str,
) -> Result<(String, bool), PipelineError> {
    let (key, node) = (entry.key.as_str(), &entry.value);
    if let Some(value) = node.value.scalar_string() {
        return Ok((value, false));
    }
    let Value::Map(fields) = &node.value else {
        // At the key: an empty value has no position of its own worth showing.
        return Err(PipelineError::invalid(
            source.at(entry.key_mark),
            format!("variable `{key}` of {owner} is {}", node.value.kind()),
            format!(
                "give it a value: `{key}: \"…\"` or `{key}: {{value: \"…\", description: \"…\"}}`"
            ),
        ));
    };
    let mut value = String::new();
    let mut raw = false;
    for field in fields.iter() {
        match field.key.as_str() {
            "value" => {
                value = field.value.value.scalar_string().ok_or_else(|| {
                    PipelineError::invalid(
                        source.at(field.value.mark),
                        format!(
                            "`value` of variable `{key}` is {}",
                            field.value.value.kind()
                        ),
                        "write the value as a string: `value: \"…\"`",
                    )
                })?;
            }
            "expand" => match field.value.value {
                Value::Bool(expand) => raw = !expand,
                ref other => {
                    return Err(PipelineError::invalid(
                        source.at(field.value.mark),
                        format!("`expand` of variable `{key}` is {}", other.kind()),
                        "write `expand: true` or `expand: false`",
                    ));
                }
            },
            // Shown in GitLab's "Run pipeline" form only.
            "description" | "options" => {}
            other => {
                return Err(PipelineError::invalid(
                    source.at(field.key_mark),
                    format!("variable `{key}` of {owner} has the unknown key `{other}`"),
                    "use only `value`, `description`, `expand` and `options`",
                ));
            }
        }
    }
    Ok((value, raw))
}

/// The job's variables laid over the top-level ones: top-level order first, a job value replacing the
/// top-level one in place, then the job's own additions (a Ruby `Hash#merge`, as GitLab does).
pub fn merge(top_level: &[YamlVariable], job: &[YamlVariable]) -> Vec<YamlVariable> {
    let mut merged = top_level.to_vec();
    for var in job {
        match merged.iter_mut().find(|v| v.key == var.key) {
            Some(existing) => *existing = var.clone(),
            None => merged.push(var.clone()),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Document;

    fn vars(yaml: &str) -> Result<Vec<YamlVariable>, PipelineError> {
        let doc = Document::parse(yaml, "ci.yml").unwrap();
        parse(&doc.source, doc.root.get("variables").unwrap(), "the file")
    }

    fn var(key: &str, value: &str, raw: bool) -> YamlVariable {
        YamlVariable {
            key: key.into(),
            value: value.into(),
            raw,
        }
    }

    #[test]
    fn scalars_and_long_form() {
        let got = vars(
            "variables:\n  A: text\n  B: 42\n  C: 1.50\n  D: true\n  \
             E: {value: '$X', expand: false}\n  F:\n    value: prod\n    description: where\n    \
             options: [prod, staging]\n",
        )
        .unwrap();
        assert_eq!(
            got,
            [
                var("A", "text", false),
                var("B", "42", false),
                var("C", "1.5", false),
                var("D", "true", false),
                var("E", "$X", true),
                var("F", "prod", false),
            ]
        );
    }

    #[test]
    fn null_and_unknown_fields_are_errors() {
        let err = vars("variables:\n  A:\n").unwrap_err().to_string();
        assert!(
            err.contains("variable `A`") && err.contains("A: \""),
            "{err}"
        );
        let err = vars("variables:\n  A: {value: x, secret: y}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`secret`"), "{err}");
    }

    #[test]
    fn job_values_replace_in_place_and_additions_follow() {
        let top = [var("A", "1", false), var("B", "1", false)];
        let job = [var("C", "2", false), var("A", "2", true)];
        assert_eq!(
            merge(&top, &job),
            [
                var("A", "2", true),
                var("B", "1", false),
                var("C", "2", false)
            ]
        );
    }
}
