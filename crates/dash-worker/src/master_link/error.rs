//! The errors of the worker's side of master_api, and what a failed call's status code means
//! here: the one place statuses from the masters are classified.

use std::error::Error as _;
use std::path::PathBuf;

use dash_core::link::{Cause, LinkError};
use dash_image::ImageError;
use dash_rpc::pki::PkiError;

/// A call to the masters, as the errors of a failed one name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Join,
    ImageManifest { reference: String },
    FetchBlob { digest: String },
    Renew,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Join => write!(f, "sending the join request"),
            Call::ImageManifest { reference } => write!(f, "asking the masters for {reference}"),
            Call::FetchBlob { digest } => write!(f, "streaming blob {digest} from the masters"),
            Call::Renew => write!(f, "renewing the certificate"),
        }
    }
}

impl Call {
    /// Whether the call asks for something the masters may simply not hold (an image, a
    /// blob): there NotFound means just that. Elsewhere it is an error like any other.
    fn asks_for_content(&self) -> bool {
        matches!(self, Call::ImageManifest { .. } | Call::FetchBlob { .. })
    }
}

/// Why joining, talking to the masters, fetching an image from them or renewing the node's
/// certificate failed. A status from the masters is kept whole (boxed: it is large) and shown
/// as [`dash_rpc::describe`] shows it, its message and what caused it; it is not a `#[source]`
/// because tonic's own Display of a status is a debug dump.
#[derive(Debug, thiserror::Error)]
pub enum MasterLinkError {
    // The join.
    /// The token given to join is not a join token.
    #[error("not a valid join token")]
    BadToken(#[source] PkiError),
    /// The join's TLS connection failed, including a master whose chain does not hold the CA
    /// the token pins (`reason` is dash-rpc's text, with its causes).
    #[error("connecting to the master at {master}: {reason}")]
    Connect { master: String, reason: String },
    /// The master answered the join with an error: a bad, expired or revoked token, a name or
    /// address it refuses, no free subnet. Its message says which.
    #[error("the master refused the join: {}", dash_rpc::describe(status))]
    JoinRefused {
        master: String,
        status: Box<tonic::Status>,
    },
    /// The master's answer names a CA other than the one the token pins.
    #[error(
        "the master answered with a CA other than the token's (the token pins {expected}, the \
         master sent {got})"
    )]
    CaMismatch { expected: String, got: String },
    /// The CA certificate in the master's answer is unreadable.
    #[error("the CA certificate from the master")]
    BadCa(#[source] PkiError),
    /// Making this node's key pair and certificate request (at a join or a renewal).
    #[error("making the node's key and certificate request")]
    Csr(#[source] PkiError),
    #[error("encoding the node's {what} as JSON")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    // The channel.
    #[error("master address {addr:?}")]
    Address {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The node's certificate, key or CA do not make a TLS configuration.
    #[error("TLS setup")]
    Tls(#[source] tonic::transport::Error),

    // Files.
    #[error("creating {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    // Calls to the masters, by what their status code means (`from_status`).
    /// The call did not get through: Unavailable, DeadlineExceeded, Cancelled (tonic's codes
    /// for a refused, broken or timed-out connection), or Unknown with a transport cause.
    #[error("{call}: {}", dash_rpc::describe(status))]
    Unreachable {
        call: Call,
        status: Box<tonic::Status>,
    },
    /// Unauthenticated or PermissionDenied: the masters do not let this node in (removed from
    /// the cluster, or a replaced certificate).
    #[error("{call}: {}", dash_rpc::describe(status))]
    Refused {
        call: Call,
        status: Box<tonic::Status>,
    },
    /// NotFound for an image or a blob: the masters do not hold it.
    #[error("{call}: {}", dash_rpc::describe(status))]
    NotHeld {
        call: Call,
        status: Box<tonic::Status>,
    },
    /// Any other status: the masters answered with an error.
    #[error("{call}: {}", dash_rpc::describe(status))]
    Failed {
        call: Call,
        status: Box<tonic::Status>,
    },

    // The image fetch.
    #[error("manifest of {reference} from the masters")]
    Manifest {
        reference: String,
        #[source]
        source: serde_json::Error,
    },
    /// A fetched blob failed its digest check (the partial file was thrown away).
    #[error("blob {digest} from the masters does not match its digest")]
    DigestMismatch {
        digest: String,
        #[source]
        source: ImageError,
    },
    /// The image store could not give a place to a fetched blob, or keep it.
    #[error("keeping blob {digest} in the image store")]
    BlobFile {
        digest: String,
        #[source]
        source: ImageError,
    },
    /// Every try at a blob failed; `last` is why the last one did.
    #[error("fetching blob {digest} from the masters ({tries} tries)")]
    Blob {
        digest: String,
        tries: u32,
        #[source]
        last: Box<MasterLinkError>,
    },
    #[error("importing {reference} fetched from the masters")]
    Import {
        reference: String,
        #[source]
        source: ImageError,
    },
    /// A blocking image store task of the fetch panicked.
    #[error("an image store task")]
    Task(#[source] tokio::task::JoinError),
}

impl MasterLinkError {
    /// A failed `call`, by what its status code means here: Unauthenticated and
    /// PermissionDenied are the masters refusing this node; Unavailable, DeadlineExceeded and
    /// Cancelled are a call that did not get through, and so is Unknown with a cause (tonic
    /// wraps a connection broken under a call so; a status the masters send has no cause);
    /// NotFound for an image or blob is the masters not holding it; anything else is an error
    /// the masters answered with.
    pub fn from_status(call: Call, status: tonic::Status) -> MasterLinkError {
        let status = Box::new(status);
        if refused(&status) {
            MasterLinkError::Refused { call, status }
        } else if unreachable(&status) {
            MasterLinkError::Unreachable { call, status }
        } else if status.code() == tonic::Code::NotFound && call.asks_for_content() {
            MasterLinkError::NotHeld { call, status }
        } else {
            MasterLinkError::Failed { call, status }
        }
    }

    /// A failed join: a call that did not get through as in [`Self::from_status`]; any status
    /// the master answered with is its refusal, whose message says why (a bad, expired or
    /// revoked token is Unauthenticated, a name it refuses InvalidArgument or AlreadyExists,
    /// no free subnet ResourceExhausted).
    pub fn from_join_status(master: &str, status: tonic::Status) -> MasterLinkError {
        if unreachable(&status) {
            MasterLinkError::from_status(Call::Join, status)
        } else {
            MasterLinkError::JoinRefused {
                master: master.to_string(),
                status: Box::new(status),
            }
        }
    }

    /// The [`LinkError`] kind this error is, for the [`MasterLink`](dash_core::link::MasterLink) calls.
    fn link_kind(&self) -> fn(Cause) -> LinkError {
        use MasterLinkError::*;
        match self {
            Unreachable { .. } | Connect { .. } => LinkError::Unreachable,
            Refused { .. } | JoinRefused { .. } => LinkError::Refused,
            NotHeld { .. } | Failed { .. } | Manifest { .. } | DigestMismatch { .. } => {
                LinkError::BadAnswer
            }
            CaMismatch { .. } | BadCa(_) => LinkError::BadAnswer,
            Blob { last, .. } => last.link_kind(),
            // The only files a MasterLink call touches are the image store's (a blob's
            // partial file).
            BlobFile { .. } | Open { .. } | Write { .. } | Import { .. } | Task(_) => {
                LinkError::ImageStore
            }
            BadToken(_) | Csr(_) | Encode { .. } | Address { .. } | Tls(_) | CreateDir { .. } => {
                LinkError::Setup
            }
        }
    }
}

/// The kind of a failure is what the agent sees; the whole error stays as its source.
impl From<MasterLinkError> for LinkError {
    fn from(e: MasterLinkError) -> LinkError {
        e.link_kind()(Box::new(e))
    }
}

/// The masters refuse this node.
fn refused(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
    )
}

/// The call did not get through (see [`MasterLinkError::from_status`]).
fn unreachable(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => true,
        tonic::Code::Unknown => status.source().is_some(),
        _ => false,
    }
}

#[cfg(test)]
#[path = "error_test.rs"]
mod tests;
