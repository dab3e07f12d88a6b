//! The client commands, one file per group: its clap arguments and the function that runs it
//! against the admin API. `lib.rs` parses the command line and dispatches here.

pub mod audit;
pub mod backup;
pub mod cluster;
pub mod events;
pub mod exec;
pub mod image;
pub mod job;
pub mod login;
pub mod logs;
pub mod network;
pub mod node;
pub mod registry;
pub mod replica;
pub mod route;
pub mod secret;
pub mod service;
pub mod sim;
pub mod token;
pub mod top;
