//! Container log files in the CRI format the kubelet reads (`<RFC 3339 nano> stdout F text`, `P`
//! for a line continued in the next entry), one file per container start, and the reading side
//! of `pods/log`: `sinceTime`, `tailLines`, `timestamps`, `limitBytes`.

use crate::MutexExt as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::sync::watch;

/// Which stream a log entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// `2024-05-01T10:00:00.123456789Z`: the CRI log timestamp (always nine fraction digits).
pub(crate) fn cri_timestamp(t: jiff::Timestamp) -> String {
    let secs = t.as_second();
    let nanos = t.subsec_nanosecond();
    let whole = jiff::Timestamp::from_second(secs)
        .map(|w| w.to_string())
        .unwrap_or_default();
    // `whole` ends in `Z`; put the fraction before it.
    let base = whole.trim_end_matches('Z');
    format!("{base}.{nanos:09}Z")
}

/// The same instant as Go's RFC3339Nano prints it (trailing zeros trimmed), for `timestamps=true`.
pub(crate) fn rfc3339_nano(cri: &str) -> String {
    match cri.strip_suffix('Z').and_then(|b| b.split_once('.')) {
        Some((base, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{base}Z")
            } else {
                format!("{base}.{frac}Z")
            }
        }
        None => cri.to_owned(),
    }
}

/// Appends a container's output to its log file and tells followers how far it got.
pub(crate) struct LogWriter {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    written: watch::Sender<u64>,
}

impl LogWriter {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
            written: watch::Sender::new(len),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A receiver that changes whenever bytes are appended.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.written.subscribe()
    }

    /// Append one chunk of output: every complete line is an `F` entry, a trailing partial
    /// line a `P` entry.
    pub fn write(&self, stream: Stream, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let ts = cri_timestamp(jiff::Timestamp::now());
        let mut out = Vec::with_capacity(data.len() + 48);
        let mut rest = data;
        while !rest.is_empty() {
            let (line, tag, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], "F", &rest[i + 1..]),
                None => (rest, "P", &rest[rest.len()..]),
            };
            out.extend_from_slice(ts.as_bytes());
            out.push(b' ');
            out.extend_from_slice(stream.as_str().as_bytes());
            out.push(b' ');
            out.extend_from_slice(tag.as_bytes());
            out.push(b' ');
            out.extend_from_slice(line);
            out.push(b'\n');
            rest = next;
        }
        let mut file = self.file.locked();
        if let Err(e) = file.write_all(&out) {
            tracing::warn!(path = %self.path.display(), error = %e, "container log write failed");
            return;
        }
        drop(file);
        self.written.send_modify(|n| *n += out.len() as u64);
    }
}

/// One parsed log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub timestamp: String,
    pub partial: bool,
    pub content: Vec<u8>,
}

impl Entry {
    pub fn parse(line: &[u8]) -> Option<Self> {
        let mut parts = line.splitn(4, |b| *b == b' ');
        let ts = std::str::from_utf8(parts.next()?).ok()?.to_owned();
        let _stream = parts.next()?;
        let tag = parts.next()?;
        let content = parts.next().unwrap_or_default().to_vec();
        Some(Self {
            timestamp: ts,
            partial: tag == b"P",
            content,
        })
    }

    fn seconds(&self) -> Option<jiff::Timestamp> {
        self.timestamp.parse().ok()
    }

    /// The bytes `pods/log` writes for this entry.
    pub fn render(&self, timestamps: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content.len() + 40);
        if timestamps {
            out.extend_from_slice(rfc3339_nano(&self.timestamp).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.content);
        if !self.partial {
            out.push(b'\n');
        }
        out
    }
}

/// What to read from a log.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadOptions {
    pub since: Option<jiff::Timestamp>,
    pub tail_lines: Option<usize>,
    pub timestamps: bool,
}

/// Complete entries of `bytes` (a trailing unterminated line is left for later), and how many
/// bytes they used.
pub(crate) fn entries(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut out = Vec::new();
    let mut used = 0;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if !line.ends_with(b"\n") {
            break;
        }
        used += line.len();
        if let Some(e) = Entry::parse(&line[..line.len() - 1]) {
            out.push(e);
        }
    }
    (out, used)
}

/// Apply `sinceTime` and `tailLines` to the entries read so far.
pub(crate) fn select(mut list: Vec<Entry>, opts: &ReadOptions) -> Vec<Entry> {
    if let Some(since) = opts.since {
        list.retain(|e| e.seconds().is_none_or(|t| t >= since));
    }
    if let Some(n) = opts.tail_lines
        && list.len() > n
    {
        list.drain(..list.len() - n);
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_and_read_back_in_cri_format() {
        let dir = tempfile::tempdir().expect("tmp");
        let w = LogWriter::create(&dir.path().join("c/0.log")).expect("create");
        w.write(Stream::Stdout, b"one\ntwo\npar");
        w.write(Stream::Stderr, b"tial\n");
        let bytes = std::fs::read(w.path()).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.lines()
                .next()
                .is_some_and(|l| l.ends_with(" stdout F one")),
            "{text}"
        );
        assert!(text.contains(" stdout P par\n"), "{text}");
        let (list, used) = entries(&bytes);
        assert_eq!(used, bytes.len());
        let all: Vec<u8> = list.iter().flat_map(|e| e.render(false)).collect();
        assert_eq!(all, b"one\ntwo\npartial\n");
        let tail = select(
            list,
            &ReadOptions {
                tail_lines: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(tail[0].content, b"tial");
        assert_eq!(*w.subscribe().borrow(), bytes.len() as u64);
    }

    #[test]
    fn timestamps_render_like_go() {
        assert_eq!(
            rfc3339_nano("2024-05-01T10:00:00.120000000Z"),
            "2024-05-01T10:00:00.12Z"
        );
        assert_eq!(
            rfc3339_nano("2024-05-01T10:00:00.000000000Z"),
            "2024-05-01T10:00:00Z"
        );
        let t: jiff::Timestamp = "2024-05-01T10:00:00.5Z".parse().expect("ts");
        assert_eq!(cri_timestamp(t), "2024-05-01T10:00:00.500000000Z");
    }
}
