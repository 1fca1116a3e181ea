//! `glrunner helper read-logs`: streams a job's log file from a byte offset, following it as stages
//! append to it, so the Kubernetes executor can read a pod's job log through one long-lived exec and
//! resume at the exact byte after a dropped connection (design decision 6).
//!
//! Output (stdout) is a sequence of [`record`]s, each naming the file offset after its bytes. With
//! `--files-dir`, the same process also takes files on stdin (`write <name> <size>\n` then the
//! bytes), writes each atomically into that directory and acknowledges it on stderr as a JSON line;
//! the executor sends stage scripts this way. The command ends when told (stdin closes or says
//! `exit`: exit code 0, after the rest of the file was sent), when the file disappears (100), or when
//! it cannot read the file (1). Every wait is bounded: the file is polled at `--poll-interval`, its
//! appearance awaited at most `--wait-file-timeout`.

use crate::Exit;
use clap::Args;
use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt,
};
use tokio::sync::{mpsc, watch};

/// The largest file `write` accepts on stdin (a stage script with all of a job's variables, or the
/// project's sources for `glrunner exec`).
pub const MAX_FILE_SIZE: u64 = 256 * 1024 * 1024;

/// `glrunner helper read-logs`.
#[derive(Debug, Clone, Args)]
pub struct ReadLogsArgs {
    /// The log file to stream.
    #[arg(long, value_name = "FILE")]
    pub path: PathBuf,
    /// Start at this byte of the file (the offset of the last record received).
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// How long to wait for the file to appear.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = crate::args::parse_timeout)]
    pub wait_file_timeout: Duration,
    /// How often the file is checked for new bytes once everything was sent.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_interval)]
    pub poll_interval: Duration,
    /// Take files on stdin into this directory; closing stdin (or `exit`) ends the command.
    #[arg(long, value_name = "DIR")]
    pub files_dir: Option<PathBuf>,
}

fn parse_interval(value: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(value.trim())
        .map_err(|e| format!("{e} (write e.g. 100ms or 1s)"))?;
    if d.is_zero() || d > Duration::from_secs(10) {
        return Err("the interval must be between 1ms and 10s".to_owned());
    }
    Ok(d)
}

/// The stdout format: one line per record, `<end offset><sep><bytes>\n`. `sep` is a space when the
/// bytes were followed by a newline in the file (the newline is not repeated), `+` when they were not
/// (a partial line, or a long line cut into pieces). Concatenating the records' bytes gives the file
/// exactly, so a reader that lost the connection resumes at the `end` of the last record it has.
pub mod record {
    use std::io::Write;

    /// The most bytes of the file one record carries.
    pub const MAX_DATA: usize = 16 * 1024;

    /// One record: the file's bytes ending at offset `end` (newline included when there was one).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Record {
        pub end: u64,
        pub data: Vec<u8>,
    }

    /// Append the records for `data` (the bytes of the file ending at `end`) to `out`.
    pub fn encode(end: u64, data: &[u8], out: &mut Vec<u8>) {
        let start = end - data.len() as u64;
        let mut at = 0usize;
        while at < data.len() {
            let rest = &data[at..];
            let (len, complete) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) if i <= MAX_DATA => (i, true),
                _ => (rest.len().min(MAX_DATA), false),
            };
            let piece_end = start + (at + len + usize::from(complete)) as u64;
            // Writing into a Vec cannot fail; no String per record.
            let _ = write!(out, "{piece_end}");
            out.push(if complete { b' ' } else { b'+' });
            out.extend_from_slice(&rest[..len]);
            out.push(b'\n');
            at += len + usize::from(complete);
        }
    }

    /// A line that is not a record.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error(
        "read-logs sent a line that is not a record ({0:?}); the glrunner helper in the pod is probably \
         a different version than the manager: use the same glrunner image for both"
    )]
    pub struct DecodeError(pub String);

    /// Splits a byte stream into records.
    #[derive(Debug, Default)]
    pub struct Decoder {
        buf: Vec<u8>,
    }

    impl Decoder {
        pub fn new() -> Self {
            Self::default()
        }

        pub fn push(&mut self, bytes: &[u8]) {
            self.buf.extend_from_slice(bytes);
        }

        /// Bytes held that do not make a whole record yet.
        pub fn pending(&self) -> usize {
            self.buf.len()
        }

        /// The next whole record, if one has arrived.
        pub fn next_record(&mut self) -> Option<Result<Record, DecodeError>> {
            let nl = self.buf.iter().position(|b| *b == b'\n')?;
            // The record's bytes are the line itself, less its prefix (one allocation per record).
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            let text_len = line.len() - 1;
            let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
            let parsed = std::str::from_utf8(&line[..digits])
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            let result = match (parsed, line[..text_len].get(digits)) {
                (Some(end), Some(b' ')) => {
                    // The newline the file had is the line's own.
                    line.drain(..=digits);
                    Ok(Record { end, data: line })
                }
                (Some(end), Some(b'+')) if text_len > digits + 1 => {
                    line.truncate(text_len);
                    line.drain(..=digits);
                    Ok(Record { end, data: line })
                }
                _ => Err(DecodeError(
                    String::from_utf8_lossy(&line[..text_len.min(80)]).into_owned(),
                )),
            };
            Some(result)
        }
    }
}

/// What the stdin side tells the follower.
#[derive(Debug)]
enum Control {
    /// Send what is left of the file, then end.
    Exit,
    /// Stdin could not be read or spoke nonsense: end with this message.
    Broken(String),
}

/// Run `read-logs`: follow `args.path`, records to `stdout`, acknowledgements and diagnostics to
/// `stderr`; `stdin` is read only with `--files-dir`.
pub async fn read_logs<I, O, E>(args: &ReadLogsArgs, stdin: I, mut stdout: O, stderr: E) -> Exit
where
    I: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin + Send + 'static,
{
    let (stderr_tx, stderr_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let stderr_task = tokio::spawn(write_stderr(stderr, stderr_rx));
    let (control_tx, control_rx) = watch::channel(None::<Control>);
    let stdin_task = args.files_dir.clone().map(|dir| {
        let acks = stderr_tx.clone();
        tokio::spawn(async move {
            let end = receive_files(stdin, &dir, &acks).await;
            let _ = control_tx.send(Some(end));
        })
    });
    let code = follow(args, &mut stdout, control_rx, &stderr_tx).await;
    let _ = stdout.flush().await;
    if let Some(t) = stdin_task {
        t.abort();
    }
    drop(stderr_tx);
    let _ = stderr_task.await;
    code
}

async fn write_stderr<E: AsyncWrite + Unpin>(
    mut stderr: E,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    while let Some(line) = rx.recv().await {
        if stderr.write_all(&line).await.is_err() || stderr.flush().await.is_err() {
            return;
        }
    }
}

fn say(stderr: &mpsc::UnboundedSender<Vec<u8>>, text: &str) {
    let _ = stderr.send(format!("read-logs: {text}\n").into_bytes());
}

/// Follow the file until told to stop or it disappears.
async fn follow<O: AsyncWrite + Unpin>(
    args: &ReadLogsArgs,
    stdout: &mut O,
    mut control: watch::Receiver<Option<Control>>,
    stderr: &mpsc::UnboundedSender<Vec<u8>>,
) -> Exit {
    let path = &args.path;
    let deadline = tokio::time::Instant::now() + args.wait_file_timeout;
    let mut file = loop {
        match tokio::fs::File::open(path).await {
            Ok(f) => break f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if tokio::time::Instant::now() >= deadline {
                    say(
                        stderr,
                        &format!(
                            "{} did not appear within {:?}; the pod's init container creates it, so check that it ran",
                            path.display(),
                            args.wait_file_timeout
                        ),
                    );
                    return Exit::Failure;
                }
                if wait(&mut control, args.poll_interval).await {
                    return Exit::Success;
                }
            }
            Err(e) => {
                say(stderr, &format!("cannot open {}: {e}", path.display()));
                return Exit::Failure;
            }
        }
    };
    let identity = match file.metadata().await {
        Ok(m) => (m.dev(), m.ino()),
        Err(e) => {
            say(stderr, &format!("cannot read {}: {e}", path.display()));
            return Exit::Failure;
        }
    };
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    if args.offset > size {
        say(
            stderr,
            &format!(
                "offset {} is past the end of {} ({size} bytes); the file was replaced, so the log cannot be resumed",
                args.offset,
                path.display()
            ),
        );
        return Exit::Failure;
    }
    if let Err(e) = file.seek(SeekFrom::Start(args.offset)).await {
        say(stderr, &format!("cannot seek in {}: {e}", path.display()));
        return Exit::Failure;
    }
    let mut offset = args.offset;
    let mut buf = vec![0u8; record::MAX_DATA];
    let mut out = Vec::with_capacity(record::MAX_DATA + 64);
    loop {
        // Send everything there is.
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    say(stderr, &format!("cannot read {}: {e}", path.display()));
                    return Exit::Failure;
                }
            };
            if n == 0 {
                break;
            }
            offset += n as u64;
            out.clear();
            record::encode(offset, &buf[..n], &mut out);
            if stdout.write_all(&out).await.is_err() || stdout.flush().await.is_err() {
                // Nobody reads any more: the exec was closed.
                return Exit::Success;
            }
        }
        let stop = {
            let c = control.borrow();
            match &*c {
                Some(Control::Exit) => Some(Exit::Success),
                Some(Control::Broken(why)) => {
                    say(stderr, why);
                    Some(Exit::Failure)
                }
                None => None,
            }
        };
        if let Some(code) = stop {
            return code;
        }
        if !same_file(path, identity) {
            say(
                stderr,
                &format!("{} was deleted; the job's log ends here", path.display()),
            );
            return Exit::LogFileGone;
        }
        // Told to stop: go round once more to send what was appended meanwhile.
        let _ = wait(&mut control, args.poll_interval).await;
    }
}

/// Wait one poll interval or until the stdin side says something; true when it did.
async fn wait(control: &mut watch::Receiver<Option<Control>>, interval: Duration) -> bool {
    if control.borrow().is_some() {
        return true;
    }
    tokio::select! {
        changed = control.changed() => changed.is_ok(),
        () = tokio::time::sleep(interval) => false,
    }
}

fn same_file(path: &Path, identity: (u64, u64)) -> bool {
    std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == identity)
}

/// A name `write` accepts: a plain file name in the directory.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Read `write <name> <size>` commands from stdin until it closes or says `exit`.
async fn receive_files<I: AsyncRead + Unpin>(
    stdin: I,
    dir: &Path,
    acks: &mpsc::UnboundedSender<Vec<u8>>,
) -> Control {
    let mut reader = tokio::io::BufReader::new(stdin);
    let mut line = Vec::new();
    loop {
        line.clear();
        // A command line is short; a longer one is not ours.
        let read = (&mut reader).take(512).read_until(b'\n', &mut line).await;
        match read {
            Ok(0) => return Control::Exit,
            Ok(_) => {}
            Err(e) => return Control::Broken(format!("reading stdin failed: {e}")),
        }
        if line.last() != Some(&b'\n') {
            return Control::Broken("stdin ended in the middle of a command".to_owned());
        }
        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        let words: Vec<&str> = text.split(' ').collect();
        match words.as_slice() {
            ["exit"] => return Control::Exit,
            ["write", name, size] => {
                let Ok(size) = size.parse::<u64>() else {
                    return Control::Broken(format!("bad size in command {text:?}"));
                };
                if size > MAX_FILE_SIZE {
                    return Control::Broken(format!(
                        "file {name} is {size} bytes, more than the {MAX_FILE_SIZE} read-logs accepts"
                    ));
                }
                let mut data = Vec::with_capacity(usize::try_from(size.min(1 << 20)).unwrap_or(0));
                match (&mut reader).take(size).read_to_end(&mut data).await {
                    Ok(n) if n as u64 == size => {}
                    // The sender went away mid-file: nothing is written.
                    Ok(_) => return Control::Exit,
                    Err(e) => return Control::Broken(format!("reading stdin failed: {e}")),
                }
                let ack = if valid_name(name) {
                    match write_atomically(dir, name, &data).await {
                        Ok(()) => serde_json::json!({"wrote": name, "size": size}),
                        Err(e) => serde_json::json!({"name": name, "error": e.to_string()}),
                    }
                } else {
                    serde_json::json!({"name": name, "error": "not a plain file name"})
                };
                let mut line = ack.to_string().into_bytes();
                line.push(b'\n');
                let _ = acks.send(line);
            }
            _ => return Control::Broken(format!("unknown command {text:?}")),
        }
    }
}

/// Write `dir/name` through a temporary file and a rename, so a reader never sees half of it.
async fn write_atomically(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.partial"));
    let target = dir.join(name);
    let mut f = tokio::fs::File::create(&tmp).await?;
    f.write_all(data).await?;
    f.sync_all().await?;
    drop(f);
    tokio::fs::rename(&tmp, &target).await
}

#[cfg(test)]
mod tests {
    use super::record::{Decoder, Record, encode};
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Record> {
        let mut d = Decoder::new();
        d.push(bytes);
        let mut out = Vec::new();
        while let Some(r) = d.next_record() {
            out.push(r.expect("a record"));
        }
        assert_eq!(d.pending(), 0);
        out
    }

    #[test]
    fn records_give_back_the_exact_bytes_and_offsets() {
        let long = vec![b'x'; record::MAX_DATA + 10];
        let mut file = b"one\n\ntwo no newline".to_vec();
        let mut encoded = Vec::new();
        encode(file.len() as u64, &file, &mut encoded);
        let mut more = long.clone();
        more.extend_from_slice(b"\nend\n");
        let start = file.len();
        file.extend_from_slice(&more);
        encode(file.len() as u64, &file[start..], &mut encoded);
        let text = String::from_utf8_lossy(&encoded);
        assert!(text.starts_with("4 one\n5 \n"), "{text}");
        assert!(text.contains("19+two no newline\n"), "{text}");
        let records = decode_all(&encoded);
        let joined: Vec<u8> = records.iter().flat_map(|r| r.data.clone()).collect();
        assert_eq!(joined, file);
        let mut at = 0u64;
        for r in &records {
            at += r.data.len() as u64;
            assert_eq!(r.end, at, "each record names the offset after its bytes");
            assert!(r.data.len() <= record::MAX_DATA + 1);
        }
    }

    #[test]
    fn garbage_is_reported_not_guessed() {
        let mut d = Decoder::new();
        d.push(b"hello world\n12 ok\n");
        assert!(d.next_record().expect("a line").is_err());
        assert_eq!(
            d.next_record().expect("a line").expect("a record"),
            Record {
                end: 12,
                data: b"ok\n".to_vec()
            }
        );
        d.push(b"7+");
        assert!(d.next_record().is_none(), "no newline yet");
        d.push(b"\n");
        assert!(d.next_record().expect("a line").is_err(), "empty partial");
    }

    #[test]
    fn file_names_stay_in_the_directory() {
        for ok in ["step_script", "launch", "a.b-c_d"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "x y"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
