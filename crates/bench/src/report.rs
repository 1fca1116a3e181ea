//! BENCHMARKS.md: each benchmark owns the section between its markers and rewrites only that.

use std::path::Path;

/// Bytes as (decimal) megabytes, the unit every table uses.
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

/// The last `n` lines of `text`, to explain a failed run.
pub fn last_lines(text: &str, n: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..].join("\n")
}

pub fn write_section(file: &Path, name: &str, body: &str) -> std::io::Result<()> {
    let start = format!("<!-- bench:{name}:start -->");
    let end = format!("<!-- bench:{name}:end -->");
    let current = std::fs::read_to_string(file).unwrap_or_else(|_| {
        "# glrunner benchmarks\n\nEvery figure here was produced by the command shown with it; \
         benchmarks measure, they never assert.\n"
            .to_owned()
    });
    let section = format!("{start}\n{body}\n{end}");
    let updated = match (current.find(&start), current.find(&end)) {
        (Some(s), Some(e)) if e > s => {
            format!("{}{}{}", &current[..s], section, &current[e + end.len()..])
        }
        _ => format!("{}\n{}\n", current.trim_end(), section),
    };
    std::fs::write(file, updated)
}
