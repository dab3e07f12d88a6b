//! dash-cli
