//! What the helper prints: gitlab-runner's job-log lines (`glrunner_archive::Message`s, rendered as
//! `WARNING: …`, `ERROR: …` or plain text), one per line, flushed at once so they interleave with the
//! script's own output in order.

use glrunner_archive::Message;
use std::io::Write;

/// A line sink (stdout for the binary, a buffer in tests). Write failures are ignored: a closed stdout
/// must not turn a finished upload into a failure.
pub struct Output<'a> {
    out: &'a mut (dyn Write + Send),
}

impl<'a> Output<'a> {
    pub fn new(out: &'a mut (dyn Write + Send)) -> Self {
        Self { out }
    }

    pub fn message(&mut self, message: &Message) {
        let _ = writeln!(self.out, "{message}");
        let _ = self.out.flush();
    }

    pub fn messages<'m>(&mut self, messages: impl IntoIterator<Item = &'m Message>) {
        for m in messages {
            self.message(m);
        }
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.message(&Message::info(text));
    }

    pub fn warning(&mut self, text: impl Into<String>) {
        self.message(&Message::warning(text));
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.message(&Message::error(text));
    }
}
