//! Tests of the status-code mapping and of the kinds the agent sees.

use dash_core::link::{LinkError, with_causes};
use tonic::{Code, Status};

use super::*;

fn blob() -> Call {
    Call::FetchBlob {
        digest: "sha256:ab".into(),
    }
}

fn manifest() -> Call {
    Call::ImageManifest {
        reference: "app:1".into(),
    }
}

/// The variant's name, for the table.
fn kind(e: &MasterLinkError) -> &'static str {
    match e {
        MasterLinkError::Unreachable { .. } => "unreachable",
        MasterLinkError::Refused { .. } => "refused",
        MasterLinkError::NotHeld { .. } => "not held",
        MasterLinkError::Failed { .. } => "failed",
        MasterLinkError::JoinRefused { .. } => "join refused",
        other => panic!("not a call's error: {other:?}"),
    }
}

#[test]
fn status_codes_map_to_what_they_mean_for_the_call() {
    let table = [
        (Code::Unauthenticated, blob(), "refused"),
        (Code::PermissionDenied, Call::Renew, "refused"),
        (Code::Unavailable, blob(), "unreachable"),
        (Code::DeadlineExceeded, Call::Renew, "unreachable"),
        (Code::Cancelled, manifest(), "unreachable"),
        // NotFound is "the masters do not hold it" only where something is asked for.
        (Code::NotFound, manifest(), "not held"),
        (Code::NotFound, blob(), "not held"),
        (Code::NotFound, Call::Renew, "failed"),
        (Code::NotFound, Call::Join, "failed"),
        (Code::Internal, blob(), "failed"),
        (Code::InvalidArgument, Call::Renew, "failed"),
        (Code::OutOfRange, blob(), "failed"),
        // Sent by the masters (no cause): an error like any other.
        (Code::Unknown, manifest(), "failed"),
    ];
    for (code, call, want) in table {
        let e = MasterLinkError::from_status(call.clone(), Status::new(code, "m"));
        assert_eq!(kind(&e), want, "{code:?} for {call}");
    }
}

#[test]
fn a_connection_broken_under_a_call_is_unreachable() {
    // tonic turns a broken connection's error into Unknown with that error as the cause.
    let s = Status::from_error(Box::new(std::io::Error::other("connection reset")));
    assert_eq!(s.code(), Code::Unknown);
    let e = MasterLinkError::from_status(blob(), s);
    assert_eq!(kind(&e), "unreachable");
    assert!(e.to_string().contains("connection reset"), "{e}");
}

#[test]
fn a_join_is_refused_with_the_masters_message_unless_it_did_not_get_through() {
    for code in [
        Code::Unauthenticated,
        Code::InvalidArgument,
        Code::AlreadyExists,
        Code::ResourceExhausted,
        Code::Internal,
    ] {
        let e = MasterLinkError::from_join_status("10.0.0.1:7071", Status::new(code, "why"));
        assert_eq!(kind(&e), "join refused", "{code:?}");
    }
    let e = MasterLinkError::from_join_status(
        "10.0.0.1:7071",
        Status::unauthenticated("join refused: token abc expired"),
    );
    assert_eq!(
        e.to_string(),
        "the master refused the join: join refused: token abc expired"
    );
    let e = MasterLinkError::from_join_status("10.0.0.1:7071", Status::unavailable("down"));
    assert_eq!(kind(&e), "unreachable");
    assert_eq!(e.to_string(), "sending the join request: down");
}

#[test]
fn a_call_names_itself_and_the_status_with_its_causes() {
    let e = MasterLinkError::from_status(Call::Renew, Status::unauthenticated("node w1 removed"));
    assert_eq!(e.to_string(), "renewing the certificate: node w1 removed");
    let e = MasterLinkError::from_status(manifest(), Status::internal("store down"));
    assert_eq!(e.to_string(), "asking the masters for app:1: store down");
    // describe adds what caused a status.
    let mut s = Status::unavailable("transport error");
    s.set_source(std::sync::Arc::new(std::io::Error::other(
        "connection refused",
    )));
    let e = MasterLinkError::from_status(blob(), s);
    assert_eq!(
        e.to_string(),
        "streaming blob sha256:ab from the masters: transport error: connection refused"
    );
}

#[test]
fn the_agent_sees_the_kind_and_the_whole_error_below_it() {
    let link = |e: MasterLinkError| LinkError::from(e);
    let e = link(MasterLinkError::from_status(
        manifest(),
        Status::unavailable("transport error"),
    ));
    assert!(matches!(e, LinkError::Unreachable(_)), "{e:?}");
    assert_eq!(
        with_causes(&e),
        "the masters are unreachable: asking the masters for app:1: transport error"
    );
    let e = link(MasterLinkError::from_status(
        blob(),
        Status::permission_denied("no"),
    ));
    assert!(matches!(e, LinkError::Refused(_)), "{e:?}");
    let e = link(MasterLinkError::from_status(
        blob(),
        Status::not_found("gone"),
    ));
    assert!(matches!(e, LinkError::BadAnswer(_)), "{e:?}");

    // A blob's last try decides the kind.
    let e = link(MasterLinkError::Blob {
        digest: "sha256:ab".into(),
        tries: 3,
        last: Box::new(MasterLinkError::from_status(
            blob(),
            Status::unavailable("down"),
        )),
    });
    assert!(matches!(e, LinkError::Unreachable(_)), "{e:?}");
    assert_eq!(
        with_causes(&e),
        "the masters are unreachable: fetching blob sha256:ab from the masters (3 tries): \
         streaming blob sha256:ab from the masters: down"
    );
    let e = link(MasterLinkError::Write {
        path: "/data/images/fetch/ab.partial".into(),
        source: std::io::Error::other("disk full"),
    });
    assert!(matches!(e, LinkError::ImageStore(_)), "{e:?}");
    assert_eq!(
        with_causes(&e),
        "this node's image store: writing /data/images/fetch/ab.partial: disk full"
    );
    let e = link(MasterLinkError::Manifest {
        reference: "app:1".into(),
        source: serde_json::from_str::<serde_json::Value>("{").unwrap_err(),
    });
    assert!(matches!(e, LinkError::BadAnswer(_)), "{e:?}");
}
