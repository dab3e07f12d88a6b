//! dash-worker: the worker daemon's components.
//!
//! ```text
//!  MasterLink ── assignments ──► agent ── one supervisor task per replica ──┐
//!      ▲                                                                   │
//!      └──────────── status (state, ip, restarts, exit code) ◄── sentry ◄──┘
//! ```
//!
//! The agent converges local containers on the master's assignments: it starts what is
//! assigned and removes what is not. Each replica has one supervisor task (its `sentry`):
//! exit detection, the restart policy with back-off, and health checks. Containers outlive the
//! daemon (their monitor holds them); on start the agent re-adopts what its store recorded.

pub mod agent;
pub mod exec;
pub mod master_link;
pub mod sentry;
pub mod stats;
pub mod worker_api;

pub use agent::{Agent, AgentConfig};
