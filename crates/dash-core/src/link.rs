//! The seam between a worker and its masters. On a single node the master implements it in
//! process; in a cluster, master_api's gRPC client does. The worker codes against this only.

use std::future::Future;

use crate::api::Assignment;
use crate::command::ReplicaStatus;

pub trait MasterLink: Send + Sync + 'static {
    /// Everything assigned to `node`, including replicas it must remove.
    fn assignments(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<Vec<Assignment>, String>> + Send;
    /// Resolves when the assignments may have changed since the last call (or after a while).
    fn changed(&self) -> impl Future<Output = ()> + Send;
    /// A replica's new status.
    fn report(&self, node: &str, status: ReplicaStatus) -> impl Future<Output = ()> + Send;
    /// A replica was stopped and everything it held released.
    fn removed(&self, node: &str, replica: &str) -> impl Future<Output = ()> + Send;
    /// Fetches image `reference` from the masters into the local store. Ok(false): the masters
    /// do not hold it (pull it from its registry instead). In process there is nothing to
    /// fetch: master and worker share one store.
    fn fetch_image(&self, reference: &str) -> impl Future<Output = Result<bool, String>> + Send {
        let _ = reference;
        async { Ok(false) }
    }
}
