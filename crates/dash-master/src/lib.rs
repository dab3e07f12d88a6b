//! dash-master
