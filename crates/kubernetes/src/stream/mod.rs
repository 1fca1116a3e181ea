//! Running stages in a pod (design decision 6): opening the WebSockets ([`upgrade`]), the
//! connections ([`conn`]), the launcher
//! that starts each stage at most once and records its exit code ([`launcher`]), and the job log as
//! `glrunner helper read-logs` streams it, with its markers ([`logs`]).

pub mod conn;
pub mod launcher;
pub mod logs;
pub mod upgrade;
