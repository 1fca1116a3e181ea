//! The trace's look: ANSI colours, runner message lines and collapsible sections, as gitlab-runner writes them.
//!
//! This module is the one place that knows the escape codes; script generation uses the `*_text`
//! builders and the constants, runner code uses the writers.

use crate::spool::Trace;
use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

/// Reset all attributes.
pub const RESET: &str = "\x1b[0;m";
/// Erase to the end of the line (gitlab-runner starts plain lines and ends section markers with it).
pub const CLEAR_LINE: &str = "\x1b[0K";
/// Notices and command echoes.
pub const BOLD_GREEN: &str = "\x1b[32;1m";
/// Section headers.
pub const BOLD_CYAN: &str = "\x1b[36;1m";
/// Warnings.
pub const YELLOW: &str = "\x1b[0;33m";
/// The output limit notice.
pub const BOLD_YELLOW: &str = "\x1b[33;1m";
/// Errors.
pub const BOLD_RED: &str = "\x1b[31;1m";

/// `\x1b[0K<text>\x1b[0;m\n`: a plain runner line.
pub fn line(trace: &Trace, text: &str) {
    trace.runner_write(line_text(text).as_bytes());
}

/// A notice in bold green.
pub fn info(trace: &Trace, text: &str) {
    trace.runner_write(info_text(text).as_bytes());
}

/// `WARNING: …` in yellow.
pub fn warning(trace: &Trace, text: &str) {
    trace.runner_write(warning_text(text).as_bytes());
}

/// `ERROR: …` in bold red.
pub fn error(trace: &Trace, text: &str) {
    trace.runner_write(error_text(text).as_bytes());
}

/// The echo of a script command: bold green `$ cmd`.
pub fn command(trace: &Trace, cmd: &str) {
    trace.runner_write(command_text(cmd).as_bytes());
}

/// Open a collapsible section `name` with a bold cyan `header`, stamped now.
pub fn section_start(trace: &Trace, name: &str, header: &str) {
    trace.runner_write(section_start_text(unix_now(), name, header, false).as_bytes());
}

/// Like [`section_start`], shown collapsed in GitLab's log view.
pub fn section_start_collapsed(trace: &Trace, name: &str, header: &str) {
    trace.runner_write(section_start_text(unix_now(), name, header, true).as_bytes());
}

/// Close section `name`, stamped now.
pub fn section_end(trace: &Trace, name: &str) {
    trace.runner_write(section_end_text(unix_now(), name).as_bytes());
}

pub fn line_text(text: &str) -> String {
    format!("{CLEAR_LINE}{text}{RESET}\n")
}

pub fn info_text(text: &str) -> String {
    format!("{BOLD_GREEN}{text}{RESET}\n")
}

pub fn warning_text(text: &str) -> String {
    format!("{YELLOW}WARNING: {text}{RESET}\n")
}

pub fn error_text(text: &str) -> String {
    format!("{BOLD_RED}ERROR: {text}{RESET}\n")
}

pub fn command_text(cmd: &str) -> String {
    format!("{BOLD_GREEN}$ {cmd}{RESET}\n")
}

/// `section_start:<unix secs>:<name>[collapsed=true]\r\x1b[0K` + the header, a plain line in bold cyan
/// (gitlab-runner prints it with `Println`, hence the doubled clear and reset).
pub fn section_start_text(unix_secs: u64, name: &str, header: &str, collapsed: bool) -> String {
    let options = if collapsed { "[collapsed=true]" } else { "" };
    format!(
        "section_start:{unix_secs}:{}{options}\r{CLEAR_LINE}{}",
        section_name(name),
        line_text(&format!("{BOLD_CYAN}{header}{RESET}"))
    )
}

/// `section_end:<unix secs>:<name>\r\x1b[0K`.
pub fn section_end_text(unix_secs: u64, name: &str) -> String {
    format!(
        "section_end:{unix_secs}:{}\r{CLEAR_LINE}",
        section_name(name)
    )
}

/// GitLab recognises section names of `[a-zA-Z0-9_.-]` only; anything else becomes `_` so the marker
/// still parses instead of showing up as text.
pub fn section_name(name: &str) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !name.is_empty() && name.chars().all(ok) {
        Cow::Borrowed(name)
    } else if name.is_empty() {
        Cow::Borrowed("section")
    } else {
        Cow::Owned(name.chars().map(|c| if ok(c) { c } else { '_' }).collect())
    }
}

/// The notice written once when job output passes the output limit.
pub fn limit_notice(limit_bytes: u64) -> String {
    format!(
        "\n{BOLD_YELLOW}Job's log exceeded limit of {limit_bytes} bytes.\n\
         Job execution will continue but no more output will be collected.{RESET}\n"
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::TraceConfig;

    fn new_trace() -> Trace {
        Trace::new(TraceConfig {
            masked_values: vec!["hunter2".into()],
            ..Default::default()
        })
        .expect("trace")
    }

    fn text(t: &Trace) -> String {
        String::from_utf8(t.read_at(0, usize::MAX).expect("read")).expect("utf-8")
    }

    #[test]
    fn lines_have_gitlab_runner_escape_codes() {
        let t = new_trace();
        line(&t, "Running with glrunner 0.1.0");
        info(&t, "Job succeeded");
        warning(&t, "cache not found");
        error(&t, "Job failed: exit code 1");
        command(&t, "make test");
        assert_eq!(
            text(&t),
            "\x1b[0KRunning with glrunner 0.1.0\x1b[0;m\n\
             \x1b[32;1mJob succeeded\x1b[0;m\n\
             \x1b[0;33mWARNING: cache not found\x1b[0;m\n\
             \x1b[31;1mERROR: Job failed: exit code 1\x1b[0;m\n\
             \x1b[32;1m$ make test\x1b[0;m\n"
        );
    }

    #[test]
    fn sections_have_markers_and_cyan_headers() {
        assert_eq!(
            section_start_text(
                1_700_000_000,
                "get_sources",
                "Getting source from Git repository",
                false
            ),
            "section_start:1700000000:get_sources\r\x1b[0K\x1b[0K\x1b[36;1mGetting source from Git repository\x1b[0;m\x1b[0;m\n"
        );
        assert_eq!(
            section_start_text(5, "step_script", "Executing", true),
            "section_start:5:step_script[collapsed=true]\r\x1b[0K\x1b[0K\x1b[36;1mExecuting\x1b[0;m\x1b[0;m\n"
        );
        assert_eq!(
            section_end_text(7, "get_sources"),
            "section_end:7:get_sources\r\x1b[0K"
        );
        assert_eq!(
            section_name("upload artifacts/on:failure"),
            "upload_artifacts_on_failure"
        );
        assert_eq!(section_name(""), "section");
    }

    #[test]
    fn section_writers_stamp_the_current_time() {
        let t = new_trace();
        let before = unix_now();
        section_start(&t, "prepare_executor", "Preparing");
        section_end(&t, "prepare_executor");
        let after = unix_now();
        let out = text(&t);
        let stamp = |marker: &str| -> u64 {
            let rest = &out[out.find(marker).expect("marker") + marker.len()..];
            rest[..rest.find(':').expect("colon")]
                .parse()
                .expect("number")
        };
        for marker in ["section_start:", "section_end:"] {
            let s = stamp(marker);
            assert!(
                (before..=after).contains(&s),
                "{s} not in {before}..={after}"
            );
        }
    }

    #[test]
    fn runner_lines_are_masked() {
        let t = new_trace();
        error(&t, "login failed for password hunter2");
        command(
            &t,
            "curl -H 'PRIVATE-TOKEN: glpat-xyz' https://h/api?private_token=abc",
        );
        let out = text(&t);
        assert!(
            !out.contains("hunter2") && !out.contains("xyz") && !out.contains("abc"),
            "{out}"
        );
        assert!(
            out.contains("password [MASKED]") && out.contains("glpat-[MASKED]"),
            "{out}"
        );
    }
}
