//! dash-master: the master daemon's components.
//!
//! ```text
//!  CLI ─► admin_api ─► service_manager ─► state_log.propose ─► message_queue (events)
//!                                              │                       │
//!                                              ▼                       ▼
//!        worker ◄─ assignments ◄─ reconciler (plan + scheduler) ◄─ wake-ups
//!        worker ─► status ─► service_state ─► state_log.propose ─► events
//! ```
//!
//! Holds admin_api, service_manager, service_state, the reconciler and the message_queue.
//! Business logic stays out of HTTP handlers; pure decisions come from `dash-core`.
//!
//! `master` composes them into a running master (`Master::open`, then `start` with the node
//! of its own process). Depends on dash-core, dash-store, dash-image, dash-net and dash-rpc; never on
//! dash-worker (the binary joins master and node).

pub mod admin_api;
pub mod assignment_feed;
pub mod backup;
pub mod image_sync;
pub mod job_runner;
pub mod jobs;
pub mod leader_election;
pub mod local_link;
pub mod master;
pub mod master_api;
pub mod message_queue;
pub mod metrics;
pub mod node_bouncer;
pub mod oidc;
pub mod raft;
pub mod reconciler;
pub mod registry_logins;
pub mod route_table;
pub mod sealing;
pub mod secrets;
pub mod service_manager;
pub mod service_scaler;
pub mod service_state;
pub mod state_log;
pub mod telemetry;
pub mod tokens;
pub mod worker_clients;

pub use dash_core::clock::now_ms;
pub use dash_store::data_dir;
pub use master::{LocalNode, Master, MasterConfig, MasterError, RunningMaster};
