//! proxy errors: bad configuration (public) and why forwarding one request failed (internal).

use std::net::SocketAddr;
use std::time::Duration;

/// A [`crate::ProxyConfig`] field out of range.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{field} = 0s: must be more than zero")]
    ZeroDuration { field: &'static str },
    #[error("eject_after = 0: must be 1 or more")]
    EjectAfter,
}

/// Why one attempt to forward a request to one upstream failed. Mapped to a status in one place,
/// [`ForwardError::status`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("connecting to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {addr}: no connection after {after:?}")]
    ConnectTimeout { addr: SocketAddr, after: Duration },
    #[error("http handshake with {addr}")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("{addr} sent no response headers within {after:?}")]
    HeaderTimeout { addr: SocketAddr, after: Duration },
    #[error("{addr} closed the connection before the request was sent")]
    Closed { addr: SocketAddr },
    #[error("request to {addr}")]
    Upstream {
        addr: SocketAddr,
        #[source]
        source: Option<hyper::Error>,
    },
}

impl ForwardError {
    /// The status the client gets when this was the last attempt.
    pub(crate) fn status(&self) -> hyper::StatusCode {
        match self {
            ForwardError::HeaderTimeout { .. } | ForwardError::ConnectTimeout { .. } => {
                hyper::StatusCode::GATEWAY_TIMEOUT
            }
            _ => hyper::StatusCode::BAD_GATEWAY,
        }
    }
}
