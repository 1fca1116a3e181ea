//! The job log as `glrunner helper read-logs` streams it: records with file offsets (so a new exec
//! resumes at the exact byte), turned back into the log's bytes for the trace, minus the stage
//! markers the launcher writes (`{"script": "<path>"}` when a stage starts,
//! `{"command_exit_code": N, "script": "<path>"}` when it ends), which come out as events instead.

use glrunner_helper::logs::record::{DecodeError, Decoder};

/// A line longer than this is never a marker, so it is passed on without waiting for its end.
const MAX_MARKER: usize = 1024;

/// What the log said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Bytes for the trace.
    Output(Vec<u8>),
    /// The stage whose script is at this path started.
    Started(String),
    /// It ended with this exit code.
    Exited { script: String, code: i32 },
}

/// Turns read-logs output into [`Item`]s, across reconnections.
#[derive(Debug, Default)]
pub struct LogStream {
    decoder: Decoder,
    /// The file offset after the last record received: where a new read-logs starts.
    offset: u64,
    /// The start of a line that may be a marker.
    line: Vec<u8>,
    /// The last byte passed on to the trace.
    last: Option<u8>,
    /// An empty line held back: the launcher writes one before an end marker.
    held_newline: bool,
}

impl LogStream {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// A new connection starts: anything half-received on the old one is dropped (read-logs sends
    /// it again from [`LogStream::offset`]).
    pub fn reconnected(&mut self) {
        self.decoder = Decoder::new();
    }

    /// Feed read-logs' stdout; items go to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Item>) -> Result<(), DecodeError> {
        self.decoder.push(bytes);
        while let Some(record) = self.decoder.next_record() {
            let record = record?;
            self.offset = record.end;
            self.data(&record.data, out);
        }
        Ok(())
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<Item>) {
        if bytes.is_empty() {
            return;
        }
        if self.held_newline {
            self.held_newline = false;
            push_output(out, b"\n");
        }
        self.last = bytes.last().copied();
        push_output(out, bytes);
    }

    fn data(&mut self, mut data: &[u8], out: &mut Vec<Item>) {
        while !data.is_empty() {
            let newline = data.iter().position(|b| *b == b'\n');
            let (piece, rest) = data.split_at(newline.map_or(data.len(), |i| i + 1));
            data = rest;
            // A line that can be neither a marker nor the launcher's blank line goes out unbuffered.
            if self.line.is_empty() && !piece.starts_with(b"{") && piece != b"\n" {
                self.emit(piece, out);
                continue;
            }
            self.line.extend_from_slice(piece);
            if newline.is_some() {
                let line = std::mem::take(&mut self.line);
                self.complete_line(line, out);
            } else if !self.line.starts_with(b"{") || self.line.len() > MAX_MARKER {
                // Only what may become a marker waits for its newline.
                let line = std::mem::take(&mut self.line);
                self.emit(&line, out);
            }
        }
    }

    fn complete_line(&mut self, line: Vec<u8>, out: &mut Vec<Item>) {
        if line == b"\n" && matches!(self.last, None | Some(b'\n')) && !self.held_newline {
            self.held_newline = true;
            return;
        }
        match marker(&line[..line.len() - 1]) {
            Some(item @ Item::Exited { .. }) => {
                // The launcher's empty line before it is not the job's.
                self.held_newline = false;
                out.push(item);
            }
            Some(item) => {
                if self.held_newline {
                    self.held_newline = false;
                    push_output(out, b"\n");
                    self.last = Some(b'\n');
                }
                out.push(item);
            }
            None => self.emit(&line, out),
        }
    }
}

fn push_output(out: &mut Vec<Item>, bytes: &[u8]) {
    if let Some(Item::Output(prev)) = out.last_mut() {
        prev.extend_from_slice(bytes);
    } else {
        out.push(Item::Output(bytes.to_vec()));
    }
}

/// A marker line, if `line` (without its newline) is one.
fn marker(line: &[u8]) -> Option<Item> {
    if !line.starts_with(b"{\"") || line.len() > MAX_MARKER {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let obj = v.as_object()?;
    let script = obj.get("script")?.as_str()?.to_owned();
    match obj.get("command_exit_code") {
        Some(code) if obj.len() == 2 => Some(Item::Exited {
            script,
            code: i32::try_from(code.as_i64()?).ok()?,
        }),
        None if obj.len() == 1 => Some(Item::Started(script)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glrunner_helper::logs::record::encode;

    /// The log file's bytes, encoded as read-logs would, fed in awkward pieces.
    fn run(file: &[u8], piece: usize) -> (Vec<Item>, u64) {
        let mut encoded = Vec::new();
        // Records as read-logs makes them from reads of 7 bytes.
        let mut at = 0;
        while at < file.len() {
            let end = (at + 7).min(file.len());
            encode(end as u64, &file[at..end], &mut encoded);
            at = end;
        }
        let mut s = LogStream::new();
        let mut out = Vec::new();
        for chunk in encoded.chunks(piece) {
            s.feed(chunk, &mut out).expect("records");
        }
        // Merge adjacent outputs so the comparison does not depend on the split.
        let mut merged: Vec<Item> = Vec::new();
        for item in out {
            match (merged.last_mut(), item) {
                (Some(Item::Output(a)), Item::Output(b)) => a.extend(b),
                (_, item) => merged.push(item),
            }
        }
        (merged, s.offset())
    }

    #[test]
    fn markers_become_events_and_output_stays_exact() {
        let file = b"{\"script\": \"/s/01-step_script\"}\n$ echo hi\nhi\nno newline at end\n{\"command_exit_code\": 3, \"script\": \"/s/01-step_script\"}\n{\"script\": \"/s/02-after_script\"}\nafter\n\n{\"command_exit_code\": 0, \"script\": \"/s/02-after_script\"}\n";
        for piece in [1, 3, 64, 4096] {
            let (items, offset) = run(file, piece);
            assert_eq!(offset, file.len() as u64);
            assert_eq!(
                items,
                vec![
                    Item::Started("/s/01-step_script".into()),
                    Item::Output(b"$ echo hi\nhi\nno newline at end\n".to_vec()),
                    Item::Exited {
                        script: "/s/01-step_script".into(),
                        code: 3
                    },
                    Item::Started("/s/02-after_script".into()),
                    Item::Output(b"after\n".to_vec()),
                    Item::Exited {
                        script: "/s/02-after_script".into(),
                        code: 0
                    },
                ],
                "piece size {piece}"
            );
        }
    }

    #[test]
    fn the_launchers_newline_completes_a_partial_line_and_real_blank_lines_stay() {
        let file = b"partial{\n\n\nx\n{\"command_exit_code\": 1, \"script\": \"/s/a\"}\n{\"not\": \"a marker\"}\n{broken\n";
        let (items, _) = run(file, 5);
        assert_eq!(
            items,
            vec![
                Item::Output(b"partial{\n\n\nx\n".to_vec()),
                Item::Exited {
                    script: "/s/a".into(),
                    code: 1
                },
                Item::Output(b"{\"not\": \"a marker\"}\n{broken\n".to_vec()),
            ]
        );
        let file = b"last line without newline\n{\"command_exit_code\": 0, \"script\": \"/s/b\"}\n";
        let (items, _) = run(file, 9);
        assert_eq!(
            items[0],
            Item::Output(b"last line without newline\n".to_vec())
        );
    }

    #[test]
    fn a_reconnection_resumes_from_the_offset() {
        let mut s = LogStream::new();
        let mut out = Vec::new();
        let mut enc = Vec::new();
        encode(6, b"hello\n", &mut enc);
        s.feed(&enc, &mut out).expect("ok");
        // Half a record, then the connection drops.
        s.feed(b"12 wor", &mut out).expect("ok");
        assert_eq!(s.offset(), 6);
        s.reconnected();
        let mut enc = Vec::new();
        encode(12, b"world\n", &mut enc);
        s.feed(&enc, &mut out).expect("ok");
        assert_eq!(out, vec![Item::Output(b"hello\nworld\n".to_vec())]);
        assert!(s.feed(b"junk\n", &mut out).is_err());
    }
}
