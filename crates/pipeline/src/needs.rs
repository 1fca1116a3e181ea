//! `needs:` entries: `name`, `{job, artifacts, optional}` and `{job, parallel: {matrix: […]}}`.
//! Needs on other pipelines or projects are refused: a local run has only this pipeline.

use crate::document::{Node, Value};
use crate::error::{Location, PipelineError, UnsupportedKey};
use crate::parallel::{self, MatrixEntry};
use crate::reader::Reader;

/// GitLab's default limit on `needs` per job.
pub const MAX_NEEDS: usize = 50;

/// One entry of `needs:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// The job as written (a parallel job's base name matches all its instances).
    pub job: String,
    /// Download the needed job's artifacts (default true).
    pub artifacts: bool,
    /// A need on a job that is not in the pipeline is dropped instead of failing the pipeline.
    pub optional: bool,
    /// `parallel: {matrix: …}`: only these instances of a matrix job.
    pub matrix: Option<Vec<MatrixEntry>>,
    pub at: Location,
}

/// Read `needs:` of `job`.
pub fn read(reader: &Reader<'_>, node: &Node, job: &str) -> Result<Vec<Need>, PipelineError> {
    let what = format!("`needs` of job `{job}`");
    let example = "`needs: [build]` or `needs: [{job: build, artifacts: false}]`";
    let items = match &node.value {
        Value::Seq(_) => reader.flat_list(node, &what)?,
        // GitLab also accepts one need written as a mapping.
        Value::Map(_) => vec![node],
        other => {
            return Err(reader.invalid(
                node,
                format!("{what} is {}, not a list", other.kind()),
                format!("write {example}"),
            ));
        }
    };
    if items.len() > MAX_NEEDS {
        return Err(reader.invalid(
            node,
            format!(
                "{what} lists {} jobs; GitLab allows at most {MAX_NEEDS}",
                items.len()
            ),
            "depend on fewer jobs (a job in an earlier stage already waits for the whole stage)",
        ));
    }
    let mut needs: Vec<Need> = Vec::new();
    for item in items {
        let need = read_one(reader, item, job, &what, example)?;
        if needs
            .iter()
            .any(|n| n.job == need.job && n.matrix == need.matrix)
        {
            return Err(reader.invalid(
                item,
                format!(
                    "job `{job}` has the following needs duplicated: {}",
                    need.job
                ),
                "list each needed job once",
            ));
        }
        needs.push(need);
    }
    Ok(needs)
}

fn read_one(
    reader: &Reader<'_>,
    node: &Node,
    job: &str,
    what: &str,
    example: &str,
) -> Result<Need, PipelineError> {
    let at = reader.source.at(node.mark);
    let map = match &node.value {
        Value::Map(m) => m,
        _ => {
            return Ok(Need {
                job: reader.string(node, &format!("an entry of {what}"), example)?,
                artifacts: true,
                optional: false,
                matrix: None,
                at,
            });
        }
    };
    for key in ["pipeline", "project"] {
        if let Some(entry) = map.entry(key) {
            return Err(PipelineError::Unsupported(UnsupportedKey {
                at: reader.source.at(entry.key_mark),
                key: format!("needs:{key}"),
                job: Some(job.to_owned()),
                fix: format!(
                    "a local run has no other pipelines or projects: delete this entry of `needs:` and \
                     provide what the `{}` job would have produced yourself",
                    map.get("job")
                        .and_then(|j| j.value.scalar_string())
                        .unwrap_or_default()
                ),
            }));
        }
    }
    reader.known_keys(
        map,
        &["job", "artifacts", "optional", "parallel"],
        &format!("an entry of {what}"),
    )?;
    let job_node = map.get("job").ok_or_else(|| {
        reader.invalid(
            node,
            format!("an entry of {what} has no `job`"),
            format!("write {example}"),
        )
    })?;
    let matrix = match map.get("parallel") {
        Some(p) => {
            let p = reader.mapping(
                p,
                "`needs:parallel`",
                "`parallel: {matrix: [{PROVIDER: aws}]}`",
            )?;
            reader.known_keys(p, &["matrix"], "`needs:parallel`")?;
            let m = p.get("matrix").ok_or_else(|| {
                reader.invalid(
                    job_node,
                    "`needs:parallel` has no `matrix`",
                    "write `parallel: {matrix: [{PROVIDER: aws}]}`",
                )
            })?;
            Some(parallel::read_matrix(reader, m, job)?)
        }
        None => None,
    };
    Ok(Need {
        job: reader.string(job_node, &format!("`job` in {what}"), example)?,
        artifacts: match map.get("artifacts") {
            Some(n) => reader.boolean(n, &format!("`artifacts` in {what}"))?,
            None => true,
        },
        optional: match map.get("optional") {
            Some(n) => reader.boolean(n, &format!("`optional` in {what}"))?,
            None => false,
        },
        matrix,
        at,
    })
}
