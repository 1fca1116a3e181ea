//! The job trace (design decision 4): output is masked as it streams (across chunk boundaries), limited
//! to `output_limit`, appended to a per-job spool file and CRC-32'd as it goes; the uploader PATCHes from
//! the spool by offset on the server's interval, resyncs on 416, and sends the final update. Memory per
//! job stays in the kilobytes whatever the log size.

pub mod control;
pub mod format;
pub mod mask;
pub mod spool;
pub mod upload;

pub use control::JobControl;
pub use mask::{MaskRules, Masker};
pub use spool::{Snapshot, Trace, TraceConfig};
pub use upload::{FinalUpdate, TraceApi, UploadError, UploadJob, UploadSettings, Uploader};
