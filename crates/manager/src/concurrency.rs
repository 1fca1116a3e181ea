//! Adaptive request concurrency: how many `POST /jobs/request` may be in flight for one runner entry.
//!
//! gitlab-runner's `FF_USE_ADAPTIVE_REQUEST_CONCURRENCY` (on by default): `request_concurrency` is a
//! maximum, and an AIMD value moves between 1 and that maximum — ×1.1 when a request brought a job,
//! ×0.95 when it came back empty or failed, ×0.5 when GitLab answered with a retriable status (429/5xx).

use std::sync::Mutex;

/// What one job request ended with, as far as concurrency is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestResult {
    GotJob,
    Empty,
    /// GitLab pushed back (429, 5xx): halve.
    Throttled,
}

#[derive(Debug)]
pub struct AdaptiveConcurrency {
    max: usize,
    adaptive: bool,
    value: Mutex<f64>,
}

impl AdaptiveConcurrency {
    pub fn new(max: usize, adaptive: bool) -> Self {
        Self {
            max: max.max(1),
            adaptive,
            value: Mutex::new(1.0),
        }
    }

    /// How many requests may be in flight now.
    pub fn limit(&self) -> usize {
        if !self.adaptive {
            return self.max;
        }
        let v = *self.value.lock().unwrap_or_else(|e| e.into_inner());
        (v.ceil() as usize).clamp(1, self.max)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn record(&self, result: RequestResult) {
        let mut v = self.value.lock().unwrap_or_else(|e| e.into_inner());
        let factor = match result {
            RequestResult::GotJob => 1.1,
            RequestResult::Empty => 0.95,
            RequestResult::Throttled => 0.5,
        };
        *v = (*v * factor).clamp(1.0, self.max as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jobs_shrinks_on_throttling_and_stays_in_bounds() {
        let c = AdaptiveConcurrency::new(4, true);
        assert_eq!(c.limit(), 1);
        for _ in 0..30 {
            c.record(RequestResult::GotJob);
        }
        assert_eq!(c.limit(), 4);
        c.record(RequestResult::Throttled);
        assert_eq!(c.limit(), 2);
        for _ in 0..100 {
            c.record(RequestResult::Empty);
        }
        assert_eq!(c.limit(), 1);
    }

    #[test]
    fn fixed_when_not_adaptive() {
        let c = AdaptiveConcurrency::new(3, false);
        c.record(RequestResult::Throttled);
        assert_eq!(c.limit(), 3);
    }
}
