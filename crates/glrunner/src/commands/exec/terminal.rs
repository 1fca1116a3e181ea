//! A job's log on the terminal: every line prefixed with the job's name (so the jobs of a pipeline
//! stay apart), GitLab's section markers taken out (the terminal would show them as text), and colours
//! kept only when stdout is a terminal that wants them.

use std::io::{self, IsTerminal, Write};

/// A line longer than this is written out without waiting for its end.
const MAX_PENDING: usize = 16 * 1024;

/// Whether output to stdout gets colours: a terminal, and no `NO_COLOR`.
pub fn colours() -> bool {
    io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The prefix of a job's lines, padded to `width`.
pub fn prefix(name: &str, width: usize, colour: bool) -> String {
    if colour {
        format!("\x1b[34;1m{name:<width$}\x1b[0m │ ")
    } else {
        format!("{name:<width$} │ ")
    }
}

/// The terminal mirror of one job's trace.
pub struct JobLog<W: Write> {
    out: W,
    prefix: String,
    colour: bool,
    pending: Vec<u8>,
    at_line_start: bool,
}

impl<W: Write> JobLog<W> {
    pub fn new(out: W, prefix: String, colour: bool) -> Self {
        Self {
            out,
            prefix,
            colour,
            pending: Vec::new(),
            at_line_start: true,
        }
    }

    /// Write `chunk` (no section markers left in it) line by line with prefixes.
    fn emit(&mut self, chunk: &[u8]) -> io::Result<()> {
        let mut text = strip_markers(chunk, self.at_line_start);
        if !self.colour {
            text = strip_ansi(&text);
        }
        let mut out = Vec::with_capacity(text.len() + self.prefix.len());
        for piece in text.split_inclusive(|b| *b == b'\n') {
            if self.at_line_start {
                out.extend_from_slice(self.prefix.as_bytes());
            }
            out.extend_from_slice(piece);
            self.at_line_start = piece.ends_with(b"\n");
        }
        self.out.write_all(&out)
    }

    /// Everything written so far, including a line without its end.
    fn drain(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let chunk = std::mem::take(&mut self.pending);
            self.emit(&chunk)?;
        }
        self.out.flush()
    }
}

impl<W: Write> Write for JobLog<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        // Whole lines go out at once, so a section marker is never cut in two.
        if let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') {
            let rest = self.pending.split_off(end + 1);
            let lines = std::mem::replace(&mut self.pending, rest);
            self.emit(&lines)?;
        }
        if self.pending.len() > MAX_PENDING {
            let chunk = std::mem::take(&mut self.pending);
            self.emit(&chunk)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // The trace flushes after every write; a partial line waits for its end unless it is a
        // prompt-like tail (no marker can start in it).
        if !self.pending.is_empty() && !contains(&self.pending, b"section_") {
            return self.drain();
        }
        self.out.flush()
    }
}

impl<W: Write> Drop for JobLog<W> {
    fn drop(&mut self) {
        let _ = self.drain();
        if !self.at_line_start {
            let _ = self.out.write_all(b"\n");
            let _ = self.out.flush();
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `chunk` without `section_start:<secs>:<name>[opts]\r\e[0K` and `section_end:<secs>:<name>\r\e[0K`;
/// a marker after text without a line end starts a new line, so headers keep their own line.
fn strip_markers(chunk: &[u8], at_line_start: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut line_start = at_line_start;
    let mut i = 0;
    while i < chunk.len() {
        if let Some(len) = marker_len(&chunk[i..]) {
            if !line_start {
                out.push(b'\n');
                line_start = true;
            }
            i += len;
            continue;
        }
        out.push(chunk[i]);
        line_start = chunk[i] == b'\n';
        i += 1;
    }
    out
}

/// The length of the section marker at the start of `s`, if there is one.
fn marker_len(s: &[u8]) -> Option<usize> {
    let rest = s
        .strip_prefix(b"section_start:")
        .or_else(|| s.strip_prefix(b"section_end:"))?;
    let head = s.len() - rest.len();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || rest.get(digits) != Some(&b':') {
        return None;
    }
    let mut i = digits + 1;
    while rest
        .get(i)
        .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        i += 1;
    }
    if rest.get(i) == Some(&b'[') {
        i += rest[i..].iter().position(|b| *b == b']')? + 1;
    }
    rest[i..]
        .starts_with(b"\r\x1b[0K")
        .then_some(head + i + "\r\x1b[0K".len())
}

/// `text` without ANSI escape sequences (CSI: `ESC [ … final`).
fn strip_ansi(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == 0x1b && text.get(i + 1) == Some(&b'[') {
            let mut j = i + 2;
            while j < text.len() && !(0x40..=0x7e).contains(&text[j]) {
                j += 1;
            }
            i = j + 1;
            continue;
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn render(chunks: &[&str], colour: bool) -> String {
        let shared = Shared::default();
        {
            let mut log = JobLog::new(shared.clone(), "job │ ".to_owned(), colour);
            for c in chunks {
                log.write_all(c.as_bytes()).unwrap();
                log.flush().unwrap();
            }
        }
        let bytes = shared.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn lines_are_prefixed_and_markers_removed() {
        let text = render(
            &[
                "Running with glrunner\n",
                "section_start:1700000000:step_script\r\x1b[0K\x1b[0K\x1b[36;1mExecuting\x1b[0;m\n",
                "hel",
                "lo\nno end",
                "section_end:1700000001:step_script\r\x1b[0K",
                "section_start:1:after_script[collapsed=true]\r\x1b[0K\x1b[36;1mRunning after_script\x1b[0;m\n",
            ],
            false,
        );
        assert_eq!(
            text,
            "job │ Running with glrunner\njob │ Executing\njob │ hello\njob │ no end\njob │ Running after_script\n"
        );
    }

    #[test]
    fn colours_stay_for_terminals_and_a_cut_marker_is_still_found() {
        let text = render(
            &[
                "a\nsection_st",
                "art:1:get_sources\r\x1b[0K\x1b[32;1mok\x1b[0;m\n",
            ],
            true,
        );
        assert_eq!(text, "job │ a\njob │ \x1b[32;1mok\x1b[0;m\n");
    }

    #[test]
    fn a_line_without_an_end_is_closed_when_the_job_ends() {
        assert_eq!(render(&["prompt> "], false), "job │ prompt> \n");
        assert_eq!(
            render(&["not a marker: section_start:x\n"], false),
            "job │ not a marker: section_start:x\n"
        );
    }
}
