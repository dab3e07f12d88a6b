//! dash-core: the pure heart of Dash.
//!
//! Domain types (ids, service specs, nodes, replicas), the `config_parser` for service files,
//! validation, the scheduler, reconcile planning, events, the state-machine commands and the
//! admin API's types. No I/O and no async runtime live here: every function is a function of its
//! arguments, so all of it is unit- and property-tested without a machine.
//!
//! Must not depend on tokio, sqlx, axum, hyper, tonic or nix (`.ci/run` checks it).

pub mod api;
pub mod autoscale;
pub mod civil;
pub mod clock;
pub mod command;
pub mod config_parser;
pub mod event;
pub mod ids;
pub mod image_ref;
pub mod job;
pub mod link;
pub mod oidc;
pub mod reconcile;
pub mod scheduler;
pub mod seccomp;
pub mod secret;
pub mod sim;
pub mod spec;
pub mod subnet;
pub mod units;

pub use ids::{NodeId, ReplicaId, ServiceName};
pub use spec::ServiceSpec;
