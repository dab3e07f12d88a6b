//! proxy body: the response body a client gets, and the lease on the upstream that produced it.
//!
//! The lease counts the request as in flight until the body is done (for least-requests), and
//! hands the connection back to the pool as soon as the last frame has passed, before hyper has
//! even written it out.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::balance::UpstreamState;
use crate::pool::Sender;

/// One request's claim on an upstream: in flight while it lives.
#[derive(Debug)]
pub(crate) struct Lease {
    upstream: Arc<UpstreamState>,
    /// The connection, once the request got one; it goes back to the pool only through
    /// [`Lease::release`].
    pub(crate) sender: Option<Sender>,
}

impl Lease {
    pub(crate) fn new(upstream: &Arc<UpstreamState>) -> Self {
        upstream.in_flight.fetch_add(1, Relaxed);
        upstream.count_request();
        Lease {
            upstream: Arc::clone(upstream),
            sender: None,
        }
    }

    /// The response was read to the end: the connection can carry another request.
    fn release(mut self) {
        if let Some(sender) = self.sender.take() {
            self.upstream.pool.put(sender);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.upstream.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A response body: streamed from an upstream, or one the proxy wrote itself.
#[derive(Debug)]
pub(crate) enum ProxyBody {
    Full(Option<Bytes>),
    Upstream {
        body: Incoming,
        lease: Option<Lease>,
    },
}

impl ProxyBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(bytes.into()))
    }

    pub(crate) fn empty() -> Self {
        ProxyBody::Full(None)
    }

    pub(crate) fn upstream(body: Incoming, lease: Lease) -> Self {
        let mut this = ProxyBody::Upstream {
            body,
            lease: Some(lease),
        };
        this.release_if_done();
        this
    }

    /// Gives the connection back once the upstream body has ended.
    fn release_if_done(&mut self) {
        if let ProxyBody::Upstream { body, lease } = self
            && body.is_end_stream()
            && let Some(lease) = lease.take()
        {
            lease.release();
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream { body, lease } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                let done = match &polled {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
                    // The connection is broken: drop it with the lease.
                    Poll::Ready(Some(Err(_))) => {
                        if let Some(lease) = lease.as_mut() {
                            lease.sender = None;
                        }
                        false
                    }
                    Poll::Pending => false,
                };
                if done && let Some(lease) = lease.take() {
                    lease.release();
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ProxyBody::Upstream { body, .. } => body.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper stops polling once `is_end_stream` says so; the last frame may not have been
        // followed by a `None`.
        self.release_if_done();
    }
}
