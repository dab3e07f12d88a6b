//! Port mapping shorthands for the unit tests of `ports` (`src/ports_test.rs`) and the sysnet
//! integration tests, each of which includes this file with `#[path]`. The including module
//! imports `PortMapping` and `Protocol`.

use super::{PortMapping, Protocol};

/// tcp `host_port` → `container_port`.
pub fn tcp(host_port: u16, container_port: u16) -> PortMapping {
    PortMapping {
        host_port,
        container_port,
        protocol: Protocol::Tcp,
    }
}

/// udp `host_port` → `container_port`.
pub fn udp(host_port: u16, container_port: u16) -> PortMapping {
    PortMapping {
        host_port,
        container_port,
        protocol: Protocol::Udp,
    }
}
