//! dash-rpc: the gRPC contracts between Dash's nodes and the PKI under them.
//!
//! - [`proto`]: master_api (workers → masters) and worker_api (masters → workers), generated
//!   from `proto/dash.proto` at build time.
//! - [`pki`]: the cluster CA, node certificates from CSRs, join tokens that pin the CA.
//! - [`exposition`]: /metrics in the Prometheus text format, on masters and nodes alike.

pub mod acceptor;
pub mod exposition;
pub mod https;
pub mod pki;
pub mod tls;

#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod proto {
    tonic::include_proto!("dash.v1");
}

/// A status as one line with what caused it: tonic's "transport error" alone does not say
/// whether the connection was refused, timed out or failed its TLS handshake.
pub fn describe(status: &tonic::Status) -> String {
    use std::error::Error as _;
    dash_core::link::join_causes(status.message().to_string(), status.source())
}
