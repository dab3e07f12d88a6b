//! dash-e2e: end-to-end test harness
