//! The extractors answer bad requests in the API's error shape, with the statuses the OpenAPI
//! document declares for them.

use axum::extract::FromRequest;
use axum::http::StatusCode;
use dash_core::api::ScaleRequest;

use super::super::nodes::LabelRequest;
use super::{ApiJson, HttpError};

async fn json<T: serde::de::DeserializeOwned>(
    content_type: &str,
    body: &str,
) -> Result<T, HttpError> {
    let req = axum::http::Request::builder()
        .method("POST")
        .header("content-type", content_type)
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap();
    ApiJson::<T>::from_request(req, &())
        .await
        .map(|ApiJson(v)| v)
}

#[tokio::test]
async fn json_bodies_are_objects_of_the_right_shape() {
    let ok: ScaleRequest = json("application/json", r#"{"replicas": 3.0, "extra": 1}"#)
        .await
        .unwrap_or_else(|e| panic!("{}", e.1.message));
    assert_eq!(ok.replicas, 3);
    for (content_type, body, status, needle) in [
        (
            "application/json",
            "[]",
            StatusCode::UNPROCESSABLE_ENTITY,
            "a JSON object",
        ),
        (
            "application/json",
            "[3]",
            StatusCode::UNPROCESSABLE_ENTITY,
            "a JSON object",
        ),
        (
            "application/json",
            "3",
            StatusCode::UNPROCESSABLE_ENTITY,
            "a JSON object",
        ),
        (
            "application/json",
            r#"{"replicas": -1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "replicas",
        ),
        (
            "application/json",
            "{}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "replicas",
        ),
        ("application/json", "{", StatusCode::BAD_REQUEST, "JSON"),
        (
            "text/plain",
            r#"{"replicas": 1}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
    ] {
        let HttpError(got, err) = json::<ScaleRequest>(content_type, body)
            .await
            .err()
            .unwrap();
        assert_eq!(got, status, "{body}: {}", err.message);
        assert_eq!(
            (err.code.as_str(), err.field.as_deref()),
            ("invalid", Some("body"))
        );
        assert!(err.message.contains(needle), "{body}: {}", err.message);
    }
    // A body whose fields all have defaults is not taken from an empty array either.
    assert!(
        json::<LabelRequest>("application/json", "[]")
            .await
            .is_err()
    );
}
