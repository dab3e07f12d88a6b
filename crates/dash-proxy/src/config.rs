//! proxy config: the listener address, the balancing policy and the timeouts.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::balance::Balance;
use crate::error::ConfigError;

/// How the proxy listens, balances and gives up. [`ProxyConfig::default`] holds the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Where clients connect: 127.0.0.1:8080 by default.
    pub listen: SocketAddr,
    /// How a request picks one of its route's upstreams.
    pub balance: Balance,
    /// How long a TCP connect to an upstream may take (2 s). A connect that times out counts as
    /// refused: it is a failure for ejection, and GET/HEAD/OPTIONS are retried elsewhere.
    pub connect_timeout: Duration,
    /// How long an upstream may take to send its response headers once the request is sent
    /// (30 s); past it the client gets 504.
    pub header_timeout: Duration,
    /// How long a keep-alive connection may sit idle (60 s): an HTTP/1 client that sends no new
    /// request head within it is closed, and pooled upstream connections older than it are
    /// dropped. HTTP/2 clients get a PING at this interval instead.
    pub idle_timeout: Duration,
    /// Consecutive failures (connect refused or timed out, transport error, 5xx response) after
    /// which an upstream is ejected (3).
    pub eject_after: u32,
    /// How long an ejected upstream gets no traffic (10 s).
    pub eject_for: Duration,
    /// Worker threads of the proxy's own, each with a single-threaded runtime and its own
    /// `SO_REUSEPORT` listener (default: one per core). 0 serves on the runtime that calls
    /// [`crate::Proxy::serve`] instead, from one listener.
    pub threads: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            balance: Balance::RoundRobin,
            connect_timeout: Duration::from_secs(2),
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            eject_after: 3,
            eject_for: Duration::from_secs(10),
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

impl ProxyConfig {
    /// Checks every field and reports the first one out of range with its value.
    pub fn validate(self) -> Result<ProxyConfig, ConfigError> {
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration { field });
            }
        }
        if self.eject_after == 0 {
            return Err(ConfigError::EjectAfter);
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let cfg = ProxyConfig::default().validate().unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.eject_after, 3);
    }

    #[test]
    fn zero_values_are_rejected() {
        let cfg = ProxyConfig {
            header_timeout: Duration::ZERO,
            ..ProxyConfig::default()
        };
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "header_timeout = 0s: must be more than zero"
        );
        let cfg = ProxyConfig {
            eject_after: 0,
            ..ProxyConfig::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::EjectAfter)));
    }
}
