//! The seam between a worker and its masters. On a single node the master implements it in
//! process; in a cluster, master_api's gRPC client does. The worker codes against this only.
//!
//! A failed call is a [`LinkError`]: its variant says what kind of failure it was (the masters
//! unreachable, refusing, answering wrongly; a store on this side), the implementation's own
//! error is its source. Shown with [`with_causes`], it reads `kind: what was done: why`.

use std::error::Error;
use std::future::Future;

use crate::api::Assignment;
use crate::command::ReplicaStatus;

pub trait MasterLink: Send + Sync + 'static {
    /// Everything assigned to `node`, including replicas it must remove.
    fn assignments(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<Vec<Assignment>, LinkError>> + Send;
    /// Resolves when the assignments may have changed since the last call (or after a while).
    fn changed(&self) -> impl Future<Output = ()> + Send;
    /// A replica's new status.
    fn report(&self, node: &str, status: ReplicaStatus) -> impl Future<Output = ()> + Send;
    /// A replica was stopped and everything it held released.
    fn removed(&self, node: &str, replica: &str) -> impl Future<Output = ()> + Send;
    /// The secret and config files of `replica` (assigned to `node`), at the versions its
    /// spec has.
    fn replica_files(
        &self,
        node: &str,
        replica: &str,
    ) -> impl Future<Output = Result<Vec<crate::api::ReplicaFile>, LinkError>> + Send;
    /// Fetches image `reference` from the masters into the local store. Ok(false): the masters
    /// do not hold it (pull it from its registry instead). In process there is nothing to
    /// fetch: master and worker share one store.
    fn fetch_image(&self, reference: &str) -> impl Future<Output = Result<bool, LinkError>> + Send {
        let _ = reference;
        async { Ok(false) }
    }
}

/// The error of an implementation, kept as a [`LinkError`]'s source (dash-core cannot name
/// the gRPC or store errors under it).
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// Why a [`MasterLink`] call failed. The variant is the kind of failure; the source says what
/// was being done and why it failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No assignment list has come from the masters yet (a worker that just started, or one
    /// whose watch has not delivered since).
    #[error("no assignments from the masters yet")]
    NoAssignmentsYet,
    /// The call did not get through: no connection, a broken one, no answer in time.
    #[error("the masters are unreachable")]
    Unreachable(#[source] Cause),
    /// The masters answered no: this node is not (or no longer) let in.
    #[error("the masters refused this node")]
    Refused(#[source] Cause),
    /// The masters answered, but not with what was asked: an error status other than a
    /// refusal, an unreadable manifest, a blob that does not match its digest.
    #[error("bad answer from the masters")]
    BadAnswer(#[source] Cause),
    /// The store the assignments are read from failed (in process: the masters' own store).
    #[error("reading the store")]
    Store(#[source] Cause),
    /// This node's image store failed: keeping a fetched blob, importing the image.
    #[error("this node's image store")]
    ImageStore(#[source] Cause),
    /// The link itself could not be set up (TLS material, a key, an encoding).
    #[error("setting up the link to the masters")]
    Setup(#[source] Cause),
    /// A replica is assigned a version of its service that the store does not hold.
    #[error("replica {replica}: version {version} of {service} not stored")]
    VersionNotStored {
        replica: String,
        service: String,
        version: u64,
    },
}

/// `err` and its causes on one line, `error: cause: cause` (as anyhow's `{:#}` shows an error),
/// for logs and replica messages, where Display alone would drop the causes. A cause whose
/// text is already there (an error that prints its source too) is not repeated.
pub fn with_causes(err: &(dyn Error + 'static)) -> String {
    join_causes(err.to_string(), err.source())
}

/// `text` followed by `source` and its causes (`text: cause: cause`), each cause left out when
/// its text is already there. [`with_causes`] and `dash_rpc::describe` (a gRPC status) both
/// use it.
pub fn join_causes(mut text: String, mut source: Option<&(dyn Error + 'static)>) -> String {
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("asking the masters for app:1")]
    struct Ask(#[source] std::io::Error);

    #[test]
    fn with_causes_shows_the_kind_what_was_done_and_why() {
        let e = LinkError::Unreachable(Box::new(Ask(std::io::Error::other("connection refused"))));
        assert_eq!(e.to_string(), "the masters are unreachable");
        assert_eq!(
            with_causes(&e),
            "the masters are unreachable: asking the masters for app:1: connection refused"
        );
        // Data-only variants need no cause.
        let e = LinkError::VersionNotStored {
            replica: "web-1".into(),
            service: "web".into(),
            version: 3,
        };
        assert_eq!(
            with_causes(&e),
            "replica web-1: version 3 of web not stored"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn with_causes_does_not_repeat_a_cause_already_shown() {
        let e = Repeats(std::io::Error::other("disk full"));
        assert_eq!(with_causes(&e), "outer: disk full");
    }
}
