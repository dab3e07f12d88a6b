//! dash-bench: benchmarks
