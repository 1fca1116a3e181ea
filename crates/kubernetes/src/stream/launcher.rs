//! How a stage starts and stops inside a container. Every stage's script is a file in the scripts
//! volume; one line written to the container's shell through its attach runs the launcher on it in
//! the background. The launcher runs a stage **at most once** (an atomic `mkdir` claims it, so a line
//! sent again after a broken connection does nothing), appends its output to the job log, puts it in
//! its own process group (so stopping it reaches everything it started), and records the exit code
//! durably: in `<id>.exit` and as the end marker in the log.

/// The launcher's file name in the scripts directory.
pub const LAUNCHER: &str = "launch";

/// The launcher for a pod whose scripts are in `scripts_dir` and whose log is `log_file`.
pub fn script(scripts_dir: &str, log_file: &str) -> String {
    format!(
        r#"# glrunner stage launcher: `launch <id>` runs the stage script <id> once, `launch --stop <id> <signal>` stops it.
dir={dir}
log={log}
marker() {{ printf '\n{{"command_exit_code": %d, "script": "%s"}}\n' "$2" "$dir/$1" >> "$log"; }}
if [ "${{1:-}}" = --stop ]; then
    id=$2
    if mkdir "$dir/$id.run" 2>/dev/null; then
        # It had not started, and now never will.
        echo 130 > "$dir/$id.exit"
        marker "$id" 130
        exit 0
    fi
    [ -s "$dir/$id.pid" ] || exit 0
    pid=$(cat "$dir/$id.pid")
    kill -s "$3" -- "-$pid" 2>/dev/null || kill -s "$3" "$pid" 2>/dev/null
    exit 0
fi
id=$1
mkdir "$dir/$id.run" 2>/dev/null || exit 0
printf '{{"script": "%s"}}\n' "$dir/$id" >> "$log"
# With bash, the stage gets its own process group.
set -m 2>/dev/null
"${{BASH:-sh}}" "$dir/$id" < /dev/null >> "$log" 2>&1 &
pid=$!
echo "$pid" > "$dir/$id.pid"
wait "$pid"
code=$?
echo "$code" > "$dir/$id.exit"
marker "$id" "$code"
"#,
        dir = sh_quote(scripts_dir),
        log = sh_quote(log_file),
    )
}

/// The line that starts stage `id` (sent to the container's shell).
pub fn run_line(scripts_dir: &str, id: &str) -> String {
    format!(
        "\"${{BASH:-sh}}\" {} {} </dev/null >/dev/null 2>&1 &\n",
        sh_quote(&format!("{scripts_dir}/{LAUNCHER}")),
        sh_quote(id)
    )
}

/// The line that sends `signal` (TERM, KILL) to stage `id`, or keeps it from starting.
pub fn stop_line(scripts_dir: &str, id: &str, signal: &str) -> String {
    format!(
        "\"${{BASH:-sh}}\" {} --stop {} {signal} </dev/null >/dev/null 2>&1\n",
        sh_quote(&format!("{scripts_dir}/{LAUNCHER}")),
        sh_quote(id)
    )
}

/// Where stage `id`'s script is (as its markers name it).
pub fn script_path(scripts_dir: &str, id: &str) -> String {
    format!("{scripts_dir}/{id}")
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::logs::{Item, LogStream};
    use std::process::{Command, Stdio};

    /// Run the launcher with the host's shells, as a container's shell would.
    fn shell(line: &str, shell: &str) {
        let status = Command::new(shell)
            .arg("-c")
            .arg(line.trim_end().trim_end_matches('&'))
            .stdin(Stdio::null())
            .status()
            .expect("run the shell");
        assert!(status.success());
    }

    fn items(log: &std::path::Path) -> Vec<Item> {
        let bytes = std::fs::read(log).expect("log");
        let mut encoded = Vec::new();
        glrunner_helper::logs::record::encode(bytes.len() as u64, &bytes, &mut encoded);
        let mut s = LogStream::new();
        let mut out = Vec::new();
        s.feed(&encoded, &mut out).expect("records");
        out
    }

    #[test]
    fn a_stage_runs_once_with_its_output_and_exit_code_in_the_log() {
        for sh in ["bash", "sh"] {
            let dir = tempfile::tempdir().expect("tmp");
            let scripts = dir.path().join("scripts dir");
            std::fs::create_dir(&scripts).expect("mkdir");
            let scripts = scripts.to_str().expect("utf-8").to_owned();
            let log = dir.path().join("output.log");
            std::fs::write(&log, "").expect("log");
            let log_s = log.to_str().expect("utf-8");
            std::fs::write(format!("{scripts}/{LAUNCHER}"), script(&scripts, log_s))
                .expect("launcher");
            std::fs::write(
                format!("{scripts}/01-step_script"),
                "echo out; echo err >&2; printf 'no newline'; exit 7\n",
            )
            .expect("stage");
            let line = run_line(&scripts, "01-step_script");
            shell(&line, sh);
            // Sent again (say, after a dropped attach): nothing runs twice.
            shell(&line, sh);
            let path = script_path(&scripts, "01-step_script");
            assert_eq!(
                items(&log),
                vec![
                    Item::Started(path.clone()),
                    Item::Output(b"out\nerr\nno newline\n".to_vec()),
                    Item::Exited {
                        script: path,
                        code: 7
                    },
                ],
                "{sh}"
            );
            assert_eq!(
                std::fs::read_to_string(format!("{scripts}/01-step_script.exit"))
                    .expect("exit file")
                    .trim(),
                "7"
            );

            // Stopped before it started: it never runs and says so.
            shell(&stop_line(&scripts, "02-after_script", "TERM"), sh);
            shell(&run_line(&scripts, "02-after_script"), sh);
            let last = items(&log).pop();
            assert_eq!(
                last,
                Some(Item::Exited {
                    script: script_path(&scripts, "02-after_script"),
                    code: 130
                })
            );
        }
    }

    #[test]
    fn stopping_a_stage_reaches_everything_it_started() {
        let dir = tempfile::tempdir().expect("tmp");
        let scripts = dir.path().to_str().expect("utf-8").to_owned();
        let log = dir.path().join("output.log");
        std::fs::write(&log, "").expect("log");
        std::fs::write(
            format!("{scripts}/{LAUNCHER}"),
            script(&scripts, log.to_str().expect("utf-8")),
        )
        .expect("launcher");
        let fifo = dir.path().join("up");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        std::fs::write(
            format!("{scripts}/01-step_script"),
            format!("sleep 300 & echo up > '{}'; wait\n", fifo.display()),
        )
        .expect("stage");
        // The launcher in the background of a shell, as the container's shell runs it.
        let mut bash = Command::new("bash")
            .arg("-c")
            .arg(
                run_line(&scripts, "01-step_script")
                    .trim_end()
                    .trim_end_matches('&'),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("launch");
        // Wait until the stage runs (the FIFO open blocks until it writes).
        let _ = std::fs::read_to_string(&fifo).expect("the stage came up");
        shell(&stop_line(&scripts, "01-step_script", "TERM"), "bash");
        assert!(bash.wait().expect("launcher ends").success());
        let pid: i32 = std::fs::read_to_string(format!("{scripts}/01-step_script.pid"))
            .expect("pid")
            .trim()
            .parse()
            .expect("number");
        // The whole group goes: the stage's shell and its `sleep` (signals arrive asynchronously, so
        // wait for that, bounded).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while glrunner_job::shell::group_alive(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "the stage's process group outlived the stop"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        match items(&log).pop() {
            Some(Item::Exited { code, .. }) => assert_ne!(code, 0),
            other => panic!("no end marker: {other:?}"),
        }
    }
}
