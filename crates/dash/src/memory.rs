//! Giving memory back: a daemon's heap after a burst (hundreds of replicas started and removed
//! at once) should shrink back towards idle instead of staying at its high-water mark.
//!
//! Two glibc behaviours keep it high otherwise (measured with `bench/leak.sh`): every thread
//! that allocates while the others hold their arenas gets an arena of its own (up to 8 per
//! core), and the blocking pool's threads (one per concurrent `spawn_blocking`: container
//! starts, image reads) come and go, leaving their arenas' freed pages mapped; and freed memory
//! in the middle of a heap goes back to the kernel only through `malloc_trim`. So the daemons
//! cap the arenas at start and trim every 30 s. Both are no-ops on other C libraries.

use std::time::Duration;

use tokio::sync::watch;

/// How often freed heap pages are handed back to the kernel.
const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Caps glibc's malloc arenas (must run before other threads start allocating).
#[allow(unsafe_code, reason = "mallopt: the C library's allocator setting")]
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Trims the heap every [`TRIM_EVERY`] until `shutdown` turns true.
pub fn spawn_trim(mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // On the blocking pool: a large heap takes a while to walk.
                _ = tick.tick() => {
                    let _ = tokio::task::spawn_blocking(trim).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    })
}

#[allow(unsafe_code, reason = "malloc_trim: the C library's allocator")]
fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes the arenas' own locks; safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
