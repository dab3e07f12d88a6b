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
//!
//! `node` composes the node side of both daemons (image store, runtime, network, proxy,
//! measurements, peer routes, agent) as a staged builder; `node::member` adds what a joined
//! `dash worker` runs against its masters. Depends on dash-core, dash-store, dash-runtime,
//! dash-net, dash-proxy and dash-rpc; never on dash-master.

pub mod agent;
pub mod exec;
pub mod master_link;
pub mod node;
pub mod sentry;
pub mod stats;
pub mod worker_api;

pub use agent::{Agent, AgentConfig};
pub use node::{Node, NodeConfig, NodeError, ReadyNode};
