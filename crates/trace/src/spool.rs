//! `Trace`: the masked, limited, CRC-32'd spool of one job's log.

use std::io;

/// How to build a trace.
#[derive(Default)]
pub struct TraceConfig {
    /// Values of `masked: true` variables; each occurrence becomes `[MASKED]`.
    pub masked_values: Vec<String>,
    /// Token prefixes whose token body is masked (`glpat-[MASKED]`); the defaults plus the payload's
    /// `features.token_mask_prefixes`.
    pub token_prefixes: Vec<String>,
    /// `output_limit` in bytes; job output beyond it is dropped after one notice.
    pub limit_bytes: u64,
    /// Also copy every masked byte here (the terminal for `glrunner exec`).
    pub mirror: Option<Box<dyn io::Write + Send>>,
}

/// A job's trace. Cheap to clone; all clones write to the same spool.
#[derive(Clone)]
pub struct Trace {
    _private: (),
}

impl Trace {
    pub fn new(config: TraceConfig) -> io::Result<Self> {
        let _ = config;
        todo!()
    }

    /// Job output (script stdout/stderr), subject to masking and the output limit.
    pub fn write(&self, data: &[u8]) {
        let _ = data;
        todo!()
    }

    /// A runner message line: masked, and still written after the output limit so the user always sees
    /// why a job ended.
    pub fn runner_line(&self, line: &str) {
        let _ = line;
        todo!()
    }

    /// Flush bytes the masker holds back; call once the job's output has ended.
    pub fn finish(&self) {
        todo!()
    }

    /// Bytes in the spool.
    pub fn len(&self) -> u64 {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// CRC-32 (IEEE) of every byte in the spool.
    pub fn crc32(&self) -> u32 {
        todo!()
    }

    /// Up to `max` bytes of the spool starting at `offset`.
    pub fn read_at(&self, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let _ = (offset, max);
        todo!()
    }
}
