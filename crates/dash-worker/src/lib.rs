//! dash-worker
