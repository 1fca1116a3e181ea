//! `Trace`: the masked, limited, CRC-32'd spool of one job's log.
//!
//! Every write goes masker → output limit → spool file (an anonymous temp file) → CRC-32 and length →
//! mirror. The uploader reads the spool back by offset, so the log itself never sits in memory.

use crate::format;
use crate::mask::{MaskRules, Masker};
use glrunner_protocol::request::checksum_string;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// gitlab-runner's `output_limit` default (4096 KiB); also used when `limit_bytes` is 0.
pub const DEFAULT_LIMIT_BYTES: u64 = 4 * 1024 * 1024;

/// How to build a trace.
#[derive(Default)]
pub struct TraceConfig {
    /// Values of `masked: true` variables; each occurrence becomes `[MASKED]`.
    pub masked_values: Vec<String>,
    /// Token prefixes whose token body is masked (`glpat-[MASKED]`); the defaults plus the payload's
    /// `features.token_mask_prefixes`.
    pub token_prefixes: Vec<String>,
    /// `output_limit` in bytes; job output beyond it is dropped after one notice. 0 means
    /// [`DEFAULT_LIMIT_BYTES`], as an unset `output_limit` does in gitlab-runner.
    pub limit_bytes: u64,
    /// Also copy every masked byte here (the terminal for `glrunner exec`).
    pub mirror: Option<Box<dyn io::Write + Send>>,
}

impl fmt::Debug for TraceConfig {
    // Counts only: the masked values are secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceConfig")
            .field("masked_values", &self.masked_values.len())
            .field("token_prefixes", &self.token_prefixes)
            .field("limit_bytes", &self.limit_bytes)
            .field("mirror", &self.mirror.is_some())
            .finish()
    }
}

/// Length and CRC-32 of the spool, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub len: u64,
    pub crc32: u32,
}

impl Snapshot {
    /// `crc32:%08x`, the final update's checksum format.
    pub fn checksum(&self) -> String {
        checksum_string(self.crc32)
    }
}

/// A job's trace. Cheap to clone; all clones write to the same spool.
#[derive(Clone)]
pub struct Trace {
    inner: Arc<Inner>,
}

struct Inner {
    /// Written only under `state`'s lock (at `state.len`); read with positioned reads from any thread.
    file: File,
    limit: u64,
    state: Mutex<State>,
}

struct State {
    /// Job output and runner lines are masked separately, so a runner line written while job output
    /// holds back the start of a secret cannot split that secret.
    output: Masker,
    runner: Masker,
    len: u64,
    crc: crc32fast::Hasher,
    truncated: bool,
    mirror: Option<Box<dyn io::Write + Send>>,
    /// The spool could not be written; later bytes are dropped so `len` and the CRC stay true to the file.
    failed: bool,
    scratch: Vec<u8>,
}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Trace")
            .field("len", &st.len)
            .field("limit", &self.inner.limit)
            .field("truncated", &st.truncated)
            .finish()
    }
}

/// Scratch space above this is released after a write.
const SCRATCH_KEEP: usize = 16 * 1024;

impl Trace {
    pub fn new(config: TraceConfig) -> io::Result<Self> {
        let rules = MaskRules::new(&config.masked_values, &config.token_prefixes)
            .map_err(io::Error::other)?;
        let rules = Arc::new(rules);
        let file = tempfile::tempfile()?;
        let limit = if config.limit_bytes == 0 {
            DEFAULT_LIMIT_BYTES
        } else {
            config.limit_bytes
        };
        Ok(Self {
            inner: Arc::new(Inner {
                file,
                limit,
                state: Mutex::new(State {
                    output: Masker::new(rules.clone()),
                    runner: Masker::new(rules),
                    len: 0,
                    crc: crc32fast::Hasher::new(),
                    truncated: false,
                    mirror: config.mirror,
                    failed: false,
                    scratch: Vec::new(),
                }),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock (e.g. inside a mirror) leaves consistent counters behind.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Job output (script stdout/stderr), subject to masking and the output limit.
    pub fn write(&self, data: &[u8]) {
        let mut st = self.lock();
        if st.truncated || data.is_empty() {
            return;
        }
        let mut out = std::mem::take(&mut st.scratch);
        st.output.write(data, &mut out);
        self.append_output(&mut st, &out);
        recycle(&mut st, out);
    }

    /// A runner message line: masked, and still written after the output limit so the user always sees
    /// why a job ended. A newline is added unless `line` ends with one.
    pub fn runner_line(&self, line: &str) {
        if line.ends_with('\n') {
            self.runner_write(line.as_bytes());
        } else {
            let mut owned = String::with_capacity(line.len() + 1);
            owned.push_str(line);
            owned.push('\n');
            self.runner_write(owned.as_bytes());
        }
    }

    /// Raw runner output (what the [`format`] helpers produce): masked as one complete piece and
    /// written regardless of the output limit.
    pub fn runner_write(&self, data: &[u8]) {
        let mut st = self.lock();
        let mut out = std::mem::take(&mut st.scratch);
        st.runner.mask_all(data, &mut out);
        self.append(&mut st, &out);
        recycle(&mut st, out);
    }

    /// Flush bytes the masker holds back; call once the job's output has ended (and whenever one stream
    /// of job output ends, e.g. after each stage). Writing after it is fine.
    pub fn finish(&self) {
        let mut st = self.lock();
        let mut out = std::mem::take(&mut st.scratch);
        st.output.finish(&mut out);
        if !st.truncated {
            self.append_output(&mut st, &out);
        }
        recycle(&mut st, out);
    }

    /// Bytes in the spool.
    pub fn len(&self) -> u64 {
        self.lock().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// CRC-32 (IEEE) of every byte in the spool.
    pub fn crc32(&self) -> u32 {
        self.lock().crc.clone().finalize()
    }

    /// Length and CRC-32 of the same moment.
    pub fn snapshot(&self) -> Snapshot {
        let st = self.lock();
        Snapshot {
            len: st.len,
            crc32: st.crc.clone().finalize(),
        }
    }

    /// The output limit hit: job output was cut and the notice written.
    pub fn truncated(&self) -> bool {
        self.lock().truncated
    }

    /// The output limit in bytes.
    pub fn limit_bytes(&self) -> u64 {
        self.inner.limit
    }

    /// Up to `max` bytes of the spool starting at `offset` (empty at or past the end).
    pub fn read_at(&self, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let len = self.len();
        if offset >= len {
            return Ok(Vec::new());
        }
        let n = usize::try_from(len - offset).map_or(max, |rest| rest.min(max));
        let mut buf = vec![0; n];
        // Bytes below `len` are written and never change: no lock needed for a positioned read.
        self.inner.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Job output through the limit: the part that fits, then the notice once.
    fn append_output(&self, st: &mut State, bytes: &[u8]) {
        let room = self.inner.limit.saturating_sub(st.len);
        match usize::try_from(room) {
            Ok(room) if bytes.len() > room => {
                self.append(st, &bytes[..room]);
                self.append(st, format::limit_notice(self.inner.limit).as_bytes());
                st.truncated = true;
            }
            _ => self.append(st, bytes),
        }
    }

    fn append(&self, st: &mut State, bytes: &[u8]) {
        if bytes.is_empty() || st.failed {
            return;
        }
        let mut done = 0;
        while done < bytes.len() {
            match self.inner.file.write_at(&bytes[done..], st.len) {
                Ok(0) => {
                    self.spool_failed(st, &io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => {
                    st.crc.update(&bytes[done..done + n]);
                    st.len += n as u64;
                    done += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.spool_failed(st, &e);
                    break;
                }
            }
        }
        if let Some(mirror) = st.mirror.as_mut() {
            let ok = mirror
                .write_all(&bytes[..done])
                .and_then(|()| mirror.flush());
            if ok.is_err() {
                // A closed terminal must not stop the job; the spool is what counts.
                st.mirror = None;
            }
        }
    }

    fn spool_failed(&self, st: &mut State, error: &io::Error) {
        st.failed = true;
        tracing::error!(
            bytes = st.len,
            %error,
            "cannot write the job trace spool (a temporary file); later output is lost. \
             Likely cause: the temporary directory is full. Fix: free space in $TMPDIR or point TMPDIR elsewhere"
        );
    }
}

fn recycle(st: &mut State, mut buf: Vec<u8>) {
    buf.clear();
    if buf.capacity() <= SCRATCH_KEEP {
        st.scratch = buf;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn read_all(t: &Trace) -> Vec<u8> {
        t.read_at(0, usize::MAX).expect("read spool")
    }

    fn trace(limit: u64) -> Trace {
        Trace::new(TraceConfig {
            masked_values: vec!["s3cr3t".into()],
            limit_bytes: limit,
            ..Default::default()
        })
        .expect("trace")
    }

    #[test]
    fn writes_are_masked_across_writes() {
        let t = trace(0);
        t.write(b"password is s3");
        t.write(b"cr3t!\nnext glpat-");
        t.write(b"abc\n");
        t.finish();
        assert_eq!(
            read_all(&t),
            b"password is [MASKED]!\nnext glpat-[MASKED]\n"
        );
        assert_eq!(t.limit_bytes(), DEFAULT_LIMIT_BYTES);
    }

    #[test]
    fn limit_cuts_exactly_and_writes_the_notice_once() {
        let t = trace(10);
        t.write(b"0123456");
        t.write(b"789ABC");
        t.write(b"more output");
        t.finish();
        let notice = "\n\x1b[33;1mJob's log exceeded limit of 10 bytes.\nJob execution will continue but no more output will be collected.\x1b[0;m\n";
        let expected = format!("0123456789{notice}");
        assert_eq!(String::from_utf8_lossy(&read_all(&t)), expected);
        assert!(t.truncated());
        // Runner lines still arrive, masked.
        t.runner_line("Job failed: s3cr3t");
        let expected = format!("{expected}Job failed: [MASKED]\n");
        assert_eq!(String::from_utf8_lossy(&read_all(&t)), expected);
        assert_eq!(t.len(), expected.len() as u64);
    }

    #[test]
    fn output_of_exactly_the_limit_is_not_truncated() {
        let t = trace(5);
        t.write(b"12345");
        assert!(!t.truncated());
        assert_eq!(t.len(), 5);
        t.write(b"6");
        assert!(t.truncated());
        assert!(read_all(&t).starts_with(b"12345\n\x1b[33;1mJob's log exceeded limit of 5 bytes."));
    }

    #[test]
    fn runner_lines_count_towards_the_limit() {
        let t = trace(8);
        t.runner_line("1234567"); // 8 bytes with the newline
        t.write(b"x");
        assert!(t.truncated());
        assert!(read_all(&t).starts_with(b"1234567\n\n\x1b[33;1m"));
    }

    #[test]
    fn held_back_output_is_flushed_on_finish_and_not_split_by_runner_lines() {
        let t = trace(0);
        t.write(b"ends with s3c");
        t.runner_line("runner note");
        assert_eq!(read_all(&t), b"ends with runner note\n");
        t.write(b"r3t.");
        t.finish();
        assert_eq!(read_all(&t), b"ends with runner note\n[MASKED].");
        // A partial secret is released on finish.
        t.write(b" s3c");
        t.finish();
        assert!(read_all(&t).ends_with(b"[MASKED]. s3c"));
    }

    #[test]
    fn crc_and_len_match_the_bytes_read_back() {
        let t = trace(0);
        for i in 0..500 {
            t.write(format!("line {i} with s3cr3t and more\n").as_bytes());
        }
        t.finish();
        let bytes = read_all(&t);
        assert_eq!(t.len(), bytes.len() as u64);
        assert_eq!(t.crc32(), crc32fast::hash(&bytes));
        let snap = t.snapshot();
        assert_eq!((snap.len, snap.crc32), (t.len(), t.crc32()));
        assert_eq!(
            snap.checksum(),
            format!("crc32:{:08x}", crc32fast::hash(&bytes))
        );
        // Positioned reads give the same bytes in pieces.
        let mut pieces = Vec::new();
        let mut off = 0;
        loop {
            let part = t.read_at(off, 777).expect("read");
            if part.is_empty() {
                break;
            }
            off += part.len() as u64;
            pieces.extend(part);
        }
        assert_eq!(pieces, bytes);
        assert!(
            t.read_at(t.len() + 5, 10)
                .expect("read past end")
                .is_empty()
        );
    }

    #[test]
    fn empty_trace_has_the_crc_of_nothing() {
        let t = trace(0);
        assert!(t.is_empty());
        assert_eq!(t.crc32(), 0);
        assert_eq!(t.snapshot().checksum(), "crc32:00000000");
    }

    #[test]
    fn concurrent_writers_keep_every_write_whole() {
        let t = trace(u64::MAX);
        let threads = 8;
        let per_thread = 500;
        std::thread::scope(|scope| {
            for n in 0..threads {
                let t = t.clone();
                scope.spawn(move || {
                    for i in 0..per_thread {
                        if i % 2 == 0 {
                            t.write(format!("<w{n}:{i}:s3cr3t>\n").as_bytes());
                        } else {
                            t.runner_line(&format!("<r{n}:{i}>"));
                        }
                    }
                });
            }
        });
        t.finish();
        let text = String::from_utf8(read_all(&t)).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), threads * per_thread);
        for n in 0..threads {
            for i in 0..per_thread {
                let want = if i % 2 == 0 {
                    format!("<w{n}:{i}:[MASKED]>")
                } else {
                    format!("<r{n}:{i}>")
                };
                assert!(lines.contains(&want.as_str()), "missing {want}");
            }
        }
        assert_eq!(t.crc32(), crc32fast::hash(text.as_bytes()));
    }

    struct Channel(mpsc::Sender<Vec<u8>>);

    impl io::Write for Channel {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.send(buf.to_vec()).map_err(io::Error::other)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn mirror_sees_exactly_the_spool() {
        let (tx, rx) = mpsc::channel();
        let t = Trace::new(TraceConfig {
            masked_values: vec!["s3cr3t".into()],
            limit_bytes: 30,
            mirror: Some(Box::new(Channel(tx))),
            ..Default::default()
        })
        .expect("trace");
        t.write(b"hello s3cr3t world, long enough to pass the limit");
        t.runner_line("done");
        t.finish();
        let mirrored: Vec<u8> = rx.try_iter().flatten().collect();
        assert_eq!(mirrored, read_all(&t));
        assert!(!String::from_utf8_lossy(&mirrored).contains("s3cr3t"));
    }

    #[test]
    fn a_failing_mirror_is_dropped_without_losing_the_spool() {
        let (tx, rx) = mpsc::channel();
        drop(rx);
        let t = Trace::new(TraceConfig {
            mirror: Some(Box::new(Channel(tx))),
            ..Default::default()
        })
        .expect("trace");
        t.write(b"one ");
        t.write(b"two");
        t.finish();
        assert_eq!(read_all(&t), b"one two");
    }

    #[test]
    fn debug_shows_no_content() {
        let t = trace(0);
        t.write(b"visible text");
        let shown = format!("{t:?}");
        assert!(
            shown.contains("len: 12") && !shown.contains("visible"),
            "{shown}"
        );
        let cfg = TraceConfig {
            masked_values: vec!["s3cr3t".into()],
            ..Default::default()
        };
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
    }
}
