//! sentry: watches one replica: exit detection, restarts with back-off, health checks.

pub mod health;
pub mod machine;
pub mod restart;
