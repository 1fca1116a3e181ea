//! `read-logs` against real files: it follows appends, resumes at an offset, takes files on stdin,
//! ends when told (after sending the rest) or when the file is deleted, and gives up on a file that
//! never appears.

use glrunner_helper::Exit;
use glrunner_helper::logs::record::{Decoder, Record};
use glrunner_helper::logs::{ReadLogsArgs, read_logs};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

fn args(path: &Path, offset: u64) -> ReadLogsArgs {
    ReadLogsArgs {
        path: path.to_owned(),
        offset,
        wait_file_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(20),
        files_dir: None,
    }
}

struct Running {
    stdin: Option<DuplexStream>,
    stdout: DuplexStream,
    stderr: DuplexStream,
    task: JoinHandle<Exit>,
    decoder: Decoder,
    records: Vec<Record>,
}

fn start(args: ReadLogsArgs) -> Running {
    let (stdin_w, stdin_r) = tokio::io::duplex(1 << 20);
    let (stdout_w, stdout_r) = tokio::io::duplex(1 << 20);
    let (stderr_w, stderr_r) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(async move { read_logs(&args, stdin_r, stdout_w, stderr_w).await });
    Running {
        stdin: Some(stdin_w),
        stdout: stdout_r,
        stderr: stderr_r,
        task,
        decoder: Decoder::new(),
        records: Vec::new(),
    }
}

impl Running {
    /// Read records until the bytes received so far end with `suffix`.
    async fn until(&mut self, suffix: &[u8]) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        loop {
            let text = self.text();
            if text.ends_with(suffix) {
                return text;
            }
            let n = tokio::time::timeout_at(deadline, self.stdout.read(&mut buf))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "never saw {:?}; got {:?}",
                        String::from_utf8_lossy(suffix),
                        String::from_utf8_lossy(&text)
                    )
                })
                .expect("read stdout");
            assert!(
                n > 0,
                "stdout ended; got {:?}",
                String::from_utf8_lossy(&text)
            );
            self.decoder.push(&buf[..n]);
            while let Some(r) = self.decoder.next_record() {
                self.records.push(r.expect("only records on stdout"));
            }
        }
    }

    fn text(&self) -> Vec<u8> {
        self.records.iter().flat_map(|r| r.data.clone()).collect()
    }

    fn last_offset(&self) -> u64 {
        self.records.last().map_or(0, |r| r.end)
    }

    async fn exit(self) -> (Exit, String) {
        let Running {
            stdin,
            mut stderr,
            task,
            ..
        } = self;
        let exit = tokio::time::timeout(WAIT, task)
            .await
            .expect("read-logs ends in time")
            .expect("no panic");
        drop(stdin);
        let mut err = String::new();
        let _ = tokio::time::timeout(WAIT, stderr.read_to_string(&mut err)).await;
        (exit, err)
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open the log");
    f.write_all(bytes).expect("append");
}

#[tokio::test]
async fn follows_appends_and_ends_when_the_file_is_deleted() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("output.log");
    append(&log, b"first line\npartial");
    let mut r = start(args(&log, 0));
    r.until(b"first line\npartial").await;
    append(&log, b" line\n");
    append(&log, "ünïcode \x1b[31mred\x1b[0m\n".as_bytes());
    let text = r.until(b"red\x1b[0m\n").await;
    assert_eq!(text, std::fs::read(&log).expect("read back"));
    assert_eq!(r.last_offset(), text.len() as u64);
    std::fs::remove_file(&log).expect("delete");
    let (exit, err) = r.exit().await;
    assert_eq!(exit, Exit::LogFileGone);
    assert_eq!(exit.code(), 100);
    assert!(err.contains("was deleted"), "{err}");
}

#[tokio::test]
async fn resumes_exactly_at_an_offset() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("output.log");
    append(&log, b"aaa\nbbb\nccc\n");
    let mut r = start(args(&log, 4));
    let text = r.until(b"ccc\n").await;
    assert_eq!(text, b"bbb\nccc\n");
    assert_eq!(r.records[0].end, 8);
    std::fs::remove_file(&log).expect("delete");
    assert_eq!(r.exit().await.0, Exit::LogFileGone);

    append(&log, b"short\n");
    let r = start(args(&log, 100));
    let (exit, err) = r.exit().await;
    assert_eq!(exit, Exit::Failure);
    assert!(err.contains("past the end"), "{err}");
}

#[tokio::test]
async fn takes_files_on_stdin_and_sends_the_rest_when_told_to_exit() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("output.log");
    let files = dir.path().join("scripts");
    std::fs::create_dir(&files).expect("mkdir");
    append(&log, b"start\n");
    let mut a = args(&log, 0);
    a.files_dir = Some(files.clone());
    let mut r = start(a);
    r.until(b"start\n").await;

    let script = b"#!/usr/bin/env bash\necho 'hi'\n";
    let mut stdin = r.stdin.take().expect("stdin");
    stdin
        .write_all(format!("write step_script {}\n", script.len()).as_bytes())
        .await
        .expect("command");
    stdin.write_all(script).await.expect("file");
    stdin
        .write_all(b"write ../escape 2\nno")
        .await
        .expect("command");
    let mut acks = Vec::new();
    let mut buf = [0u8; 1024];
    while acks.iter().filter(|b| **b == b'\n').count() < 2 {
        let n = tokio::time::timeout(WAIT, r.stderr.read(&mut buf))
            .await
            .expect("acks in time")
            .expect("read stderr");
        assert!(n > 0, "stderr ended");
        acks.extend_from_slice(&buf[..n]);
    }
    let acks = String::from_utf8(acks).expect("utf-8");
    let mut lines = acks.lines();
    let ok: serde_json::Value = serde_json::from_str(lines.next().expect("ack")).expect("json");
    assert_eq!(ok["wrote"], "step_script");
    assert_eq!(ok["size"], script.len());
    assert_eq!(
        std::fs::read(files.join("step_script")).expect("written"),
        script
    );
    let refused: serde_json::Value =
        serde_json::from_str(lines.next().expect("ack")).expect("json");
    assert_eq!(refused["name"], "../escape");
    assert!(!dir.path().join("escape").exists());

    // Appended just before `exit`: still sent.
    append(&log, b"last words\n");
    stdin.write_all(b"exit\n").await.expect("exit");
    let text = r.until(b"last words\n").await;
    assert_eq!(text, b"start\nlast words\n");
    let (exit, _) = r.exit().await;
    assert_eq!(exit, Exit::Success);
}

#[tokio::test]
async fn closing_stdin_mid_file_writes_nothing_and_ends() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("output.log");
    append(&log, b"x\n");
    let mut a = args(&log, 0);
    a.files_dir = Some(dir.path().to_owned());
    let mut r = start(a);
    let mut stdin = r.stdin.take().expect("stdin");
    stdin
        .write_all(b"write half 100\nonly some")
        .await
        .expect("write");
    drop(stdin);
    let (exit, _) = r.exit().await;
    assert_eq!(exit, Exit::Success);
    assert!(!dir.path().join("half").exists());
}

#[tokio::test]
async fn a_file_that_never_appears_is_an_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut a = args(&dir.path().join("missing.log"), 0);
    a.wait_file_timeout = Duration::from_millis(200);
    let r = start(a);
    let (exit, err) = r.exit().await;
    assert_eq!(exit, Exit::Failure);
    assert!(err.contains("did not appear"), "{err}");
}
