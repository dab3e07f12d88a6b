use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// A command the master's state refuses (inside the state machine only: it becomes
    /// `Applied::rejected`).
    #[error(transparent)]
    Rejected(#[from] crate::Rejection),
    /// The log could not take the write: no leader was reachable in time (HA masters). The
    /// message names what was tried; nothing was applied.
    #[error("{0}")]
    Unavailable(String),
    /// A file offered as a master's state that is not one (a restore of a foreign backup).
    #[error("{path}: {problem}")]
    NotAState { path: PathBuf, problem: String },
    #[error("no free address left in {subnet}")]
    SubnetFull { subnet: String },
    #[error("every user namespace range of this node is taken (16,383 replicas with one)")]
    UsernsFull,
}

pub(crate) fn corrupt(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}
