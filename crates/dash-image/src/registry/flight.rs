//! Single-flight: callers asking for the same key while a job for it runs share that job and
//! its result instead of starting another.
//!
//! ```text
//!  join(key) ──► live job for key? ──yes──► its Shared future + progress channel
//!                      │ no
//!                      ▼
//!                start(progress) → Shared future; the map keeps only a weak handle
//! ```
//!
//! The job runs while at least one caller awaits it: the map holds a `WeakShared`, so when
//! every caller has gone (their futures dropped), the job is dropped too, which cancels it.
//! A finished job removes itself from the map before it hands out its result, so a caller
//! arriving later starts a fresh one instead of receiving an old result (or an old error).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared, WeakShared};

/// A running job that callers await together.
pub(crate) type Flight<T> = Shared<BoxFuture<'static, T>>;

struct Entry<T, P> {
    id: u64,
    future: WeakShared<BoxFuture<'static, T>>,
    progress: Arc<P>,
}

type Map<T, P> = Mutex<HashMap<String, Entry<T, P>>>;

/// The running jobs, by key. `P` is what a job reports progress through.
pub(crate) struct Flights<T, P> {
    map: Arc<Map<T, P>>,
    next_id: AtomicU64,
}

impl<T, P> Default for Flights<T, P> {
    fn default() -> Self {
        Self {
            map: Arc::default(),
            next_id: AtomicU64::new(0),
        }
    }
}

impl<T, P> Flights<T, P>
where
    T: Clone + Send + Sync + 'static,
    P: Send + Sync + 'static,
{
    /// Joins the running job for `key`, or starts one with `start` (given the progress
    /// channel that `progress` creates). Returns the job, its progress channel, and whether
    /// it was already running.
    pub(crate) fn join<F>(
        &self,
        key: &str,
        progress: impl FnOnce() -> P,
        start: impl FnOnce(Arc<P>) -> F,
    ) -> (Flight<T>, Arc<P>, bool)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get(key)
            && let Some(flight) = entry.future.upgrade()
        {
            return (flight, entry.progress.clone(), true);
        }
        // Forget jobs every caller abandoned.
        map.retain(|_, e| e.future.upgrade().is_some());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let progress = Arc::new(progress());
        let job = start(progress.clone());
        let weak_map: Weak<Map<T, P>> = Arc::downgrade(&self.map);
        let owned_key = key.to_owned();
        let flight: Flight<T> = async move {
            let out = job.await;
            if let Some(map) = weak_map.upgrade() {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                if map.get(&owned_key).is_some_and(|e| e.id == id) {
                    map.remove(&owned_key);
                }
            }
            out
        }
        .boxed()
        .shared();
        let future = flight
            .downgrade()
            .expect("a job that was never polled has not finished");
        map.insert(
            key.to_owned(),
            Entry {
                id,
                future,
                progress: progress.clone(),
            },
        );
        (flight, progress, false)
    }

    /// How many jobs are running.
    pub(crate) fn running(&self) -> usize {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.values()
            .filter(|e| e.future.upgrade().is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn callers_share_one_job_and_a_finished_job_is_not_reused() {
        let flights: Flights<u32, ()> = Flights::default();
        let started = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let s = started.clone();
        let (a, _, joined_a) = flights.join(
            "k",
            || (),
            move |_| async move {
                s.fetch_add(1, Ordering::SeqCst);
                rx.await.unwrap_or(0)
            },
        );
        let (b, _, joined_b) = flights.join("k", || (), |_| async { 99 });
        assert!(!joined_a && joined_b);
        assert_eq!(flights.running(), 1);
        tx.send(7).unwrap();
        let (ra, rb) = tokio::join!(a, b);
        assert_eq!((ra, rb), (7, 7));
        assert_eq!(started.load(Ordering::SeqCst), 1);
        assert_eq!(flights.running(), 0);
        let (c, _, joined_c) = flights.join("k", || (), |_| async { 8 });
        assert!(!joined_c);
        assert_eq!(c.await, 8);
    }

    #[tokio::test]
    async fn a_job_every_caller_dropped_is_cancelled() {
        let flights: Flights<u32, ()> = Flights::default();
        let dropped = Arc::new(AtomicUsize::new(0));
        struct Guard(Arc<AtomicUsize>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let d = dropped.clone();
        let (a, _, _) = flights.join(
            "k",
            || (),
            move |_| async move {
                let _guard = Guard(d);
                std::future::pending::<u32>().await
            },
        );
        // Poll once so the job starts and holds its guard.
        assert!(a.clone().now_or_never().is_none());
        drop(a);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert_eq!(flights.running(), 0);
        let (b, _, joined) = flights.join("k", || (), |_| async { 5 });
        assert!(!joined);
        assert_eq!(b.await, 5);
    }
}
