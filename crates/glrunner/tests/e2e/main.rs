//! End-to-end tests: the real `glrunner` binary against an in-process GitLab test coordinator on
//! 127.0.0.1. One test binary, so the tests share the machine's threads instead of running file by file.

#[path = "../support/mod.rs"]
mod support;

mod cancel;
mod cli;
mod concurrency;
mod config_errors;
mod jobs;
mod network;
mod registration;
mod state;
mod tokens;
mod trace;
