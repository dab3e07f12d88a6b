//! dash-dns: the cluster's DNS, served by the dash process on every node (issue 12).
//!
//! ```text
//!  masters ─ ServiceEndpoints (every second, or at once on a server) ─► Directory
//!  replica ─ query (UDP/TCP 53 on its gateway) ─► server ─► directory::answer
//!                                                            ├─ cluster name: A records
//!                                                            ├─ ours but unknown: NXDOMAIN
//!                                                            └─ anything else: forwarded
//!                                                               to the upstreams (cached)
//! ```
//!
//! Names: `api`, `api.<network>` and `api.dash` are the service's virtual IP (its ready
//! replicas' addresses when it has none: a service without ports), `tasks.api` its ready
//! replicas' addresses (Swarm's convention). A replica sees only the services that share a
//! network with its own. AAAA and other types of a cluster name answer empty, not an error.
//! The wire format is hickory-proto's.

pub mod directory;
pub mod server;

pub use directory::{Answer, Directory};
