//! Progress of a shared pull, delivered to every caller that joined it.
//!
//! The pull emits events into one log: milestones (everything but `Blob` byte counts) are
//! kept, so a caller that joins late first replays them; everything goes out live through a
//! broadcast channel. Each caller forwards events to its own callback on its own task.

use std::sync::Mutex;

use tokio::sync::broadcast;

use super::flight::Flight;
use super::{PullError, PullProgress};
use crate::ImageRecord;

/// Live events a slow caller may fall behind by before it misses byte counts.
const LIVE_EVENTS: usize = 1024;

pub(crate) struct PullEvents {
    state: Mutex<State>,
}

struct State {
    milestones: Vec<PullProgress>,
    live: broadcast::Sender<PullProgress>,
}

impl Default for PullEvents {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                milestones: Vec::new(),
                live: broadcast::channel(LIVE_EVENTS).0,
            }),
        }
    }
}

impl PullEvents {
    pub(crate) fn emit(&self, event: PullProgress) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(event, PullProgress::Blob { .. }) {
            state.milestones.push(event.clone());
        }
        // No receiver is fine: no caller is listening right now.
        let _ = state.live.send(event);
    }

    /// Awaits `flight`, passing its events (milestones so far first) to `callback`.
    pub(crate) async fn follow(
        &self,
        flight: Flight<Result<ImageRecord, PullError>>,
        callback: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<ImageRecord, PullError> {
        let (past, mut live) = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            (state.milestones.clone(), state.live.subscribe())
        };
        for event in past {
            callback(event);
        }
        let mut flight = flight;
        loop {
            tokio::select! {
                biased;
                event = live.recv() => match event {
                    Ok(event) => callback(event),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "pull progress receiver lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return flight.await,
                },
                result = &mut flight => {
                    // The events emitted before the result are still queued.
                    loop {
                        match live.try_recv() {
                            Ok(event) => callback(event),
                            Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                            Err(_) => return result,
                        }
                    }
                }
            }
        }
    }
}
