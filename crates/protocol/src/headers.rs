//! Header names and the `Content-Range`/`Range` formats of the trace endpoint.

pub const RUNNER_TOKEN: &str = "Runner-Token";
pub const JOB_TOKEN: &str = "Job-Token";
pub const PRIVATE_TOKEN: &str = "Private-Token";
pub const LAST_UPDATE: &str = "X-GitLab-Last-Update";
pub const TRACE_UPDATE_INTERVAL: &str = "X-GitLab-Trace-Update-Interval";
pub const JOB_STATUS: &str = "Job-Status";
pub const RATE_LIMIT_RESET_TIME: &str = "RateLimit-ResetTime";
pub const REQUEST_ID: &str = "X-Request-Id";
pub const BUILDS_POLLING: &str = "Gitlab-Ci-Builds-Polling";

/// `Content-Range` for a PATCH of `len` bytes (> 0) at `start`: `"<start>-<end>"`, end inclusive, no
/// `bytes ` prefix — the form gitlab-runner sends and GitLab accepts.
pub fn content_range(start: u64, len: u64) -> String {
    format!("{}-{}", start, start + len.saturating_sub(1))
}

/// The start offset of a `Content-Range` value (`a-b` or `a-b/total`); GitLab uses only the start.
pub fn content_range_start(value: &str) -> Option<u64> {
    let value = value.trim().strip_prefix("bytes ").unwrap_or(value.trim());
    let (start, _) = value.split_once('-')?;
    start.trim().parse().ok()
}

/// The number after the `-` in a `Range: 0-<size>` response header: the server's trace length.
pub fn range_end(value: &str) -> Option<u64> {
    let (_, end) = value.trim().split_once('-')?;
    end.split('/').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_inclusive_without_prefix() {
        assert_eq!(content_range(0, 1024), "0-1023");
        assert_eq!(content_range(1024, 1), "1024-1024");
        assert_eq!(content_range_start("15-20/6"), Some(15));
        assert_eq!(content_range_start("bytes 7-9"), Some(7));
        assert_eq!(content_range_start("x"), None);
    }

    #[test]
    fn range_end_reads_server_size() {
        assert_eq!(range_end("0-2048"), Some(2048));
        assert_eq!(range_end("0-11/12"), Some(11));
        assert_eq!(range_end("garbage"), None);
    }
}
