//! Typed identifiers: a service name, a replica id and a node id are never bare strings.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {what}: {reason}")]
pub struct IdError {
    pub what: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// A service name: a DNS label (`[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 48 characters so that
/// replica ids and interface names derived from it stay short).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName(String);

/// Names the built-in DNS gives a meaning of its own (`tasks.<service>`, the search domain
/// `dash`): no service may be called so.
pub const RESERVED_SERVICE_NAMES: [&str; 2] = ["tasks", "dash"];

/// Checks that `value` is a DNS label of at most `max_len` characters
/// (`[a-z0-9]([a-z0-9-]*[a-z0-9])?`), naming it `what` in the error.
pub fn check_dns_label(what: &'static str, value: &str, max_len: usize) -> Result<(), IdError> {
    let err = |reason| {
        Err(IdError {
            what,
            value: value.to_string(),
            reason,
        })
    };
    if value.is_empty() {
        return err("it is empty");
    }
    if value.len() > max_len {
        return err(if max_len == 48 {
            "it is longer than 48 characters"
        } else {
            "it is longer than 63 characters"
        });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return err("use only lowercase letters, digits and '-'");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return err("it must start and end with a letter or digit");
    }
    Ok(())
}

impl ServiceName {
    pub const MAX_LEN: usize = 48;

    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        check_dns_label("service name", &value, Self::MAX_LEN)?;
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServiceName {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ServiceName> for String {
    fn from(v: ServiceName) -> String {
        v.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn from_raw(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A replica: `<service>-<10 hex>`, unique for the cluster's lifetime. A replacement
    /// (rolling update) gets a new id; a restart in place keeps it.
    ReplicaId
);
string_id!(
    /// A node of the cluster; on a single node, its host name.
    NodeId
);

impl NodeId {
    /// Longest node name: a host name label.
    pub const MAX_LEN: usize = 63;

    /// A node name as given (`--node-name`, a joining node's request): 1 to 63 letters, digits
    /// and '-', neither first nor last (a host name label; it names nodes in placement
    /// constraints and certificates).
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        let err = |reason| {
            Err(IdError {
                what: "node name",
                value: value.clone(),
                reason,
            })
        };
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return err("use 1 to 63 characters");
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return err("use only letters, digits and '-'");
        }
        if value.starts_with('-') || value.ends_with('-') {
            return err("it must not start or end with '-'");
        }
        Ok(Self(value))
    }
}

/// Hex digits after the service's name and a '-' in a replica's id.
const REPLICA_SUFFIX: usize = 10;

/// The service a replica id belongs to: ids are `<service>-<10 hex digits>` (None for
/// anything else).
pub fn service_of_replica(id: &str) -> Option<&str> {
    let cut = id.len().checked_sub(REPLICA_SUFFIX + 1)?;
    let (service, suffix) = (id.get(..cut)?, id.get(cut..)?);
    let hex = suffix.strip_prefix('-')?;
    (!service.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(service)
}

impl ReplicaId {
    /// A fresh id for a replica of `service`.
    pub fn generate(service: &ServiceName) -> Self {
        let hex = uuid::Uuid::new_v4().simple().to_string();
        Self(format!("{}-{}", service, &hex[..REPLICA_SUFFIX]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert!(ServiceName::new("web").is_ok());
        assert!(ServiceName::new("web-2").is_ok());
        for bad in ["", "Web", "-web", "web-", "we_b", &"a".repeat(49)] {
            assert!(ServiceName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn replica_ids_are_unique_and_prefixed() {
        let s = ServiceName::new("web").unwrap();
        let a = ReplicaId::generate(&s);
        let b = ReplicaId::generate(&s);
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("web-"));
        assert_eq!(a.as_str().len(), "web-".len() + 10);
        let two = ReplicaId::generate(&ServiceName::new("web-2").unwrap());
        assert_eq!(service_of_replica(two.as_str()), Some("web-2"));
        for bad in ["web", "web-123", "-0123456789", "web-012345678g", ""] {
            assert_eq!(service_of_replica(bad), None, "{bad}");
        }
    }
}
