//! `parallel: N` and `parallel: {matrix: […]}`: one job becomes several, named as GitLab names them
//! (`test 2/4`, `deploy: [aws, eu]`), each with `CI_NODE_INDEX`/`CI_NODE_TOTAL` and, for a matrix, its
//! combination's variables.

use crate::document::{Node, Value};
use crate::error::PipelineError;
use crate::reader::Reader;

/// GitLab's limit on the jobs one `parallel:` may create.
pub const PARALLEL_LIMIT: usize = 200;

/// GitLab's limit on a job name.
pub const MAX_NAME_LENGTH: usize = 255;

/// One mapping of a matrix: variable names in order, each with its values.
pub type MatrixEntry = Vec<(String, Vec<String>)>;

#[derive(Debug, Clone, PartialEq)]
pub enum Parallel {
    Number(usize),
    Matrix(Vec<MatrixEntry>),
}

/// One job created by `parallel:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    /// `CI_NODE_INDEX`, from 1.
    pub index: usize,
    /// `CI_NODE_TOTAL`.
    pub total: usize,
    /// The matrix combination's variables (none for `parallel: N`).
    pub variables: Vec<(String, String)>,
}

/// Read `parallel:` of `job`.
pub fn read(reader: &Reader<'_>, node: &Node, job: &str) -> Result<Parallel, PipelineError> {
    let what = format!("`parallel` of job `{job}`");
    let parallel = match &node.value {
        Value::Int(n) => {
            let n = usize::try_from(*n).unwrap_or(0);
            if !(1..=PARALLEL_LIMIT).contains(&n) {
                return Err(reader.invalid(
                    node,
                    format!("{what} must be between 1 and {PARALLEL_LIMIT}"),
                    "write `parallel: 4`",
                ));
            }
            Parallel::Number(n)
        }
        Value::Map(map) => {
            reader.known_keys(map, &["matrix"], &what)?;
            let matrix = map.get("matrix").ok_or_else(|| {
                reader.invalid(
                    node,
                    format!("{what} has no `matrix`"),
                    "write `parallel: {matrix: [{PROVIDER: [aws, gcp]}]}`",
                )
            })?;
            Parallel::Matrix(read_matrix(reader, matrix, job)?)
        }
        other => {
            return Err(reader.invalid(
                node,
                format!(
                    "{what} is {}, but it must be a number or `matrix:`",
                    other.kind()
                ),
                "write `parallel: 4` or `parallel: {matrix: [{PROVIDER: [aws, gcp]}]}`",
            ));
        }
    };
    let total = count(&parallel);
    if total > PARALLEL_LIMIT {
        return Err(reader.invalid(
            node,
            format!("{what} generates too many jobs ({total}; the maximum is {PARALLEL_LIMIT})"),
            "use fewer values per variable, or split the matrix into several jobs",
        ));
    }
    Ok(parallel)
}

/// Read a `matrix:` list (also used by `needs:parallel:matrix`).
pub fn read_matrix(
    reader: &Reader<'_>,
    node: &Node,
    job: &str,
) -> Result<Vec<MatrixEntry>, PipelineError> {
    let what = format!("`parallel:matrix` of job `{job}`");
    let example = "`matrix:` followed by `- PROVIDER: [aws, gcp]` entries";
    let Value::Seq(items) = &node.value else {
        return Err(reader.invalid(
            node,
            format!("{what} is {}, not a list", node.value.kind()),
            format!("write {example}"),
        ));
    };
    items
        .iter()
        .map(|item| {
            let map = reader.mapping(item, &format!("an entry of {what}"), example)?;
            if map.is_empty() {
                return Err(reader.invalid(
                    item,
                    format!("an entry of {what} has no variables"),
                    format!("write {example}"),
                ));
            }
            map.iter()
                .map(|e| {
                    let values = match &e.value.value {
                        Value::Seq(values) => values
                            .iter()
                            .map(|v| {
                                reader.string(
                                    v,
                                    &format!("a value of `{}` in {what}", e.key),
                                    "`[aws, gcp]`",
                                )
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                        _ => vec![reader.string(
                            &e.value,
                            &format!("`{}` in {what}", e.key),
                            "`PROVIDER: aws`",
                        )?],
                    };
                    if values.is_empty() {
                        return Err(reader.invalid(
                            &e.value,
                            format!("`{}` in {what} has no values", e.key),
                            "give at least one value",
                        ));
                    }
                    Ok((e.key.clone(), values))
                })
                .collect()
        })
        .collect()
}

fn count(parallel: &Parallel) -> usize {
    match parallel {
        Parallel::Number(n) => *n,
        Parallel::Matrix(entries) => entries
            .iter()
            .map(|e| e.iter().map(|(_, v)| v.len()).product::<usize>())
            .sum(),
    }
}

/// Every combination of each entry, in order (the first variable varies slowest, like Ruby's
/// `Array#product`).
pub fn combinations(entries: &[MatrixEntry]) -> Vec<Vec<(String, String)>> {
    let mut all = Vec::new();
    for entry in entries {
        let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for (key, values) in entry {
            combos = combos
                .into_iter()
                .flat_map(|combo| {
                    values.iter().map(move |v| {
                        let mut next = combo.clone();
                        next.push((key.clone(), v.clone()));
                        next
                    })
                })
                .collect();
        }
        all.extend(combos);
    }
    all
}

/// The instances of job `name`.
pub fn instances(name: &str, parallel: &Parallel) -> Vec<Instance> {
    match parallel {
        Parallel::Number(total) => (1..=*total)
            .map(|index| Instance {
                name: format!("{name} {index}/{total}"),
                index,
                total: *total,
                variables: Vec::new(),
            })
            .collect(),
        Parallel::Matrix(entries) => {
            let combos = combinations(entries);
            let total = combos.len();
            combos
                .into_iter()
                .enumerate()
                .map(|(i, variables)| Instance {
                    name: matrix_name(name, &variables),
                    index: i + 1,
                    total,
                    variables,
                })
                .collect()
        }
    }
}

/// `name: [v1, v2]`, the values in the order the variables are written.
pub fn matrix_name(name: &str, variables: &[(String, String)]) -> String {
    let values: Vec<&str> = variables.iter().map(|(_, v)| v.as_str()).collect();
    format!("{name}: [{}]", values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &[&str])]) -> MatrixEntry {
        pairs
            .iter()
            .map(|(k, vs)| {
                (
                    (*k).to_owned(),
                    vs.iter().map(|v| (*v).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn numbered_instances() {
        let names: Vec<String> = instances("rspec", &Parallel::Number(3))
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["rspec 1/3", "rspec 2/3", "rspec 3/3"]);
    }

    #[test]
    fn matrix_product_order_names_and_totals() {
        let matrix = Parallel::Matrix(vec![
            entry(&[("PROVIDER", &["aws"]), ("STACK", &["monitoring", "app1"])]),
            entry(&[("PROVIDER", &["gcp", "vultr"]), ("STACK", &["data"])]),
        ]);
        let got = instances("deploy", &matrix);
        let names: Vec<&str> = got.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "deploy: [aws, monitoring]",
                "deploy: [aws, app1]",
                "deploy: [gcp, data]",
                "deploy: [vultr, data]"
            ]
        );
        assert!(got.iter().all(|i| i.total == 4));
        assert_eq!(got[2].index, 3);
        assert_eq!(
            got[3].variables,
            [
                ("PROVIDER".to_owned(), "vultr".to_owned()),
                ("STACK".to_owned(), "data".to_owned())
            ]
        );
    }
}
