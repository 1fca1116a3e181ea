//! The state shared by the HTTP handlers, the admin API and the timer task: one lock, a change counter
//! that wakes waiters, and a wake-up for the timer when deadlines move.

use crate::state::State;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Bumped after every change; waiters re-check their condition when it moves.
    changes: watch::Sender<u64>,
    /// Wakes the timer task so it recomputes the next deadline.
    pub(crate) timers: Notify,
    /// Where served projects' bare repositories live (`GIT_PROJECT_ROOT`).
    pub(crate) git_root: PathBuf,
}

impl Shared {
    pub(crate) fn new(state: State, git_root: PathBuf) -> Self {
        Self {
            state: Mutex::new(state),
            changes: watch::Sender::new(0),
            timers: Notify::new(),
            git_root,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data behind (no multi-step invariants span
        // a panic point), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Change the state and wake everyone waiting on a change.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        self.timers.notify_one();
        r
    }

    /// Wait until `check` returns `Some`, re-checking after every change, for at most `timeout`.
    pub(crate) async fn wait_until<R>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&State) -> Option<R>,
    ) -> Option<R> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.changes.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(r) = self.read(&mut check) {
                return Some(r);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.read(&mut check),
            }
        }
    }
}
