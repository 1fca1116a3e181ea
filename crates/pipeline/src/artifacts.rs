//! `artifacts:` of a job (or `default:`), and the payload entries GitLab builds from it: one `archive`
//! entry (zip) for `paths`/`untracked`, then one entry per report with the report's type, format and
//! file name from GitLab's artifact type table, uploaded whatever the job's outcome (`when: always`).

use crate::document::{Node, Value};
use crate::duration;
use crate::error::PipelineError;
use crate::reader::Reader;
use glrunner_protocol::{Artifact, When};

/// Report types GitLab knows: (type, format, default file name).
const REPORTS: &[(&str, &str, &str)] = &[
    ("junit", "gzip", "junit.xml"),
    ("metrics", "gzip", "metrics.txt"),
    ("dotenv", "gzip", ".env"),
    ("cobertura", "gzip", "cobertura-coverage.xml"),
    ("jacoco", "gzip", "jacoco-coverage.xml"),
    ("lsif", "zip", "lsif.json"),
    ("cyclonedx", "gzip", "gl-sbom.cdx.json"),
    ("annotations", "gzip", "gl-annotations.json"),
    ("repository_xray", "gzip", "gl-repository-xray.json"),
    ("sast", "raw", "gl-sast-report.json"),
    ("secret_detection", "raw", "gl-secret-detection-report.json"),
    (
        "dependency_scanning",
        "raw",
        "gl-dependency-scanning-report.json",
    ),
    (
        "container_scanning",
        "raw",
        "gl-container-scanning-report.json",
    ),
    (
        "cluster_image_scanning",
        "raw",
        "gl-cluster-image-scanning-report.json",
    ),
    ("dast", "raw", "gl-dast-report.json"),
    ("license_scanning", "raw", "gl-license-scanning-report.json"),
    ("accessibility", "raw", "gl-accessibility.json"),
    ("codequality", "raw", "gl-code-quality-report.json"),
    ("performance", "raw", "performance.json"),
    ("browser_performance", "raw", "browser-performance.json"),
    ("load_performance", "raw", "load-performance.json"),
    ("terraform", "raw", "tfplan.json"),
    ("requirements", "raw", "requirements.json"),
    ("requirements_v2", "raw", "requirements_v2.json"),
    ("coverage_fuzzing", "raw", "gl-coverage-fuzzing.json"),
    ("api_fuzzing", "raw", "gl-api-fuzzing-report.json"),
    ("sarif", "raw", "gl-sarif-report.sarif"),
];

/// `artifacts:` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Artifacts {
    pub name: Option<String>,
    pub paths: Option<Vec<String>>,
    pub exclude: Vec<String>,
    pub untracked: Option<bool>,
    pub when: Option<When>,
    pub expire_in: Option<String>,
    /// (artifact type, paths) in the order written; `coverage_report` already turned into its format.
    pub reports: Vec<(String, Vec<String>)>,
}

/// Read `artifacts:`; `owner` names it in errors.
pub fn read(reader: &Reader<'_>, node: &Node, owner: &str) -> Result<Artifacts, PipelineError> {
    let what = format!("`artifacts` of {owner}");
    let map = reader.mapping(
        node,
        &what,
        "`artifacts: {paths: [dist/], expire_in: 1 week}`",
    )?;
    reader.known_keys(
        map,
        &[
            "paths",
            "exclude",
            "untracked",
            "when",
            "expire_in",
            "name",
            "reports",
            "expose_as",
            "public",
            "access",
        ],
        &what,
    )?;
    let mut artifacts = Artifacts::default();
    for entry in map.iter() {
        let value = &entry.value;
        let label = format!("`artifacts:{}` of {owner}", entry.key);
        match entry.key.as_str() {
            "paths" => {
                artifacts.paths =
                    Some(reader.string_list(value, &label, "`paths: [dist/, \"*.log\"]`")?)
            }
            "exclude" => {
                artifacts.exclude =
                    reader.string_list(value, &label, "`exclude: [\"dist/**/*.map\"]`")?
            }
            "untracked" => artifacts.untracked = Some(reader.boolean(value, &label)?),
            "name" => {
                artifacts.name = Some(reader.string(value, &label, "`name: \"$CI_JOB_NAME\"`")?)
            }
            "when" => artifacts.when = Some(reader.transfer_when(value, &label)?),
            "expire_in" => {
                let text = reader.string(value, &label, "`expire_in: 1 week`")?;
                if text != "never" {
                    duration::parse_unbounded(&text).map_err(|e| {
                        reader.invalid(
                            value,
                            format!("{label}: {e}"),
                            "write a duration such as `1 week` or `never`",
                        )
                    })?;
                }
                artifacts.expire_in = Some(text);
            }
            "reports" => artifacts.reports = reports(reader, value, &label)?,
            // Only change how GitLab's web pages show the artifacts.
            _ => {}
        }
    }
    Ok(artifacts)
}

fn reports(
    reader: &Reader<'_>,
    node: &Node,
    what: &str,
) -> Result<Vec<(String, Vec<String>)>, PipelineError> {
    let map = reader.mapping(node, what, "`reports: {junit: rspec.xml}`")?;
    let mut known: Vec<&str> = REPORTS
        .iter()
        .map(|(t, _, _)| *t)
        .filter(|t| *t != "cobertura" && *t != "jacoco")
        .collect();
    known.push("coverage_report");
    reader.known_keys(map, &known, what)?;
    map.iter()
        .map(|entry| {
            let label = format!("`{}` in {what}", entry.key);
            if entry.key == "coverage_report" {
                let m = reader.mapping(
                    &entry.value,
                    &label,
                    "`coverage_report: {coverage_format: cobertura, path: coverage.xml}`",
                )?;
                reader.known_keys(m, &["coverage_format", "path"], &label)?;
                let format = m
                    .get("coverage_format")
                    .map(|n| reader.string(n, &label, "`coverage_format: cobertura`"))
                    .transpose()?
                    .filter(|f| f == "cobertura" || f == "jacoco")
                    .ok_or_else(|| {
                        reader.invalid(
                            &entry.value,
                            format!("{label} needs `coverage_format: cobertura` or `jacoco`"),
                            "add `coverage_format: cobertura`",
                        )
                    })?;
                let path = m
                    .get("path")
                    .map(|n| reader.string(n, &label, "`path: coverage/cobertura.xml`"))
                    .transpose()?
                    .ok_or_else(|| {
                        reader.invalid(
                            &entry.value,
                            format!("{label} has no `path`"),
                            "add `path: coverage/cobertura.xml`",
                        )
                    })?;
                Ok((format, vec![path]))
            } else {
                let paths = match &entry.value.value {
                    Value::Seq(_) => {
                        reader.string_list(&entry.value, &label, "`junit: [rspec.xml]`")?
                    }
                    _ => vec![reader.string(&entry.value, &label, "`junit: rspec.xml`")?],
                };
                Ok((entry.key.clone(), paths))
            }
        })
        .collect()
}

/// The payload's `artifacts` entries, or `None` when nothing is uploaded.
pub fn payload(artifacts: &Artifacts) -> Option<Vec<Artifact>> {
    let mut list = Vec::new();
    if artifacts.untracked == Some(true) || artifacts.paths.is_some() {
        list.push(Artifact {
            name: artifacts.name.clone().unwrap_or_default(),
            untracked: artifacts.untracked,
            paths: artifacts.paths.clone().unwrap_or_default(),
            exclude: artifacts.exclude.clone(),
            when: artifacts.when.unwrap_or_default(),
            expire_in: artifacts.expire_in.clone().unwrap_or_default(),
            artifact_type: "archive".into(),
            artifact_format: "zip".into(),
        });
    }
    for (kind, paths) in &artifacts.reports {
        let Some((_, format, file)) = REPORTS.iter().find(|(t, _, _)| t == kind) else {
            continue;
        };
        list.push(Artifact {
            name: (*file).to_owned(),
            untracked: None,
            paths: paths.clone(),
            exclude: Vec::new(),
            when: When::Always,
            expire_in: artifacts.expire_in.clone().unwrap_or_default(),
            artifact_type: kind.clone(),
            artifact_format: (*format).to_owned(),
        });
    }
    (!list.is_empty()).then_some(list)
}
