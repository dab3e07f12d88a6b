//! Errors to HTTP: the one place where failures become status codes and `{code, message, field}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dash_core::api::ApiError;

use crate::service_manager::ManagerError;

pub struct HttpError(pub StatusCode, pub ApiError);

impl HttpError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self(
            status,
            ApiError {
                code: code.into(),
                message: message.into(),
                field: None,
                diagnostics: Vec::new(),
            },
        )
    }

    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid", message);
        e.1.field = Some(field.into());
        e
    }

    /// An extractor's rejection (`ApiJson`, `ApiPath`, `ApiQuery`) as `invalid` on `field`.
    pub fn rejected(status: StatusCode, message: String, field: &str) -> Self {
        let mut e = Self::new(status, "invalid", message);
        e.1.field = Some(field.into());
        e
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 `unavailable`: no leader took the write in time (HA masters); nothing was applied.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// A command the state refused: 404 `not_found`, 409 `conflict` or 400 `invalid` (naming the
/// field), with the state's own words.
impl From<dash_store::Rejection> for HttpError {
    fn from(r: dash_store::Rejection) -> Self {
        use dash_store::Rejection;
        match r {
            Rejection::NotFound { what, name } => {
                HttpError::not_found(format!("{what} {name:?} not found"))
            }
            Rejection::Conflict(m) | Rejection::Exhausted(m) => {
                HttpError::new(StatusCode::CONFLICT, "conflict", m)
            }
            Rejection::Invalid { field, message } => HttpError::bad_request(&field, message),
        }
    }
}

impl From<ManagerError> for HttpError {
    fn from(e: ManagerError) -> Self {
        match e {
            ManagerError::Invalid(diags) => {
                let first = diags.first().cloned();
                let mut err = HttpError::new(StatusCode::BAD_REQUEST, "invalid", diags.to_string());
                err.1.field = first.map(|d| d.field).filter(|f| !f.is_empty());
                err.1.diagnostics = diags.0.iter().map(ToString::to_string).collect();
                err
            }
            ManagerError::NotFound(name) => HttpError::not_found(format!(
                "service {name:?} not found; `dash service ls` lists services"
            )),
            ManagerError::BadRequest { field, message } => HttpError::bad_request(&field, message),
            ManagerError::Conflict(m) => HttpError::new(StatusCode::CONFLICT, "conflict", m),
            ManagerError::Store(e) => e.into(),
        }
    }
}

/// No leader took the write in time: 503 `unavailable`; anything else is the master's fault.
impl From<dash_store::StoreError> for HttpError {
    fn from(e: dash_store::StoreError) -> Self {
        match e {
            dash_store::StoreError::Unavailable(m) => HttpError::unavailable(m),
            e => {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), "store error");
                HttpError::internal(e)
            }
        }
    }
}

/// `Json<T>` whose rejections (bad JSON, wrong types, wrong content type) answer in the API's
/// error shape instead of axum's plain text. Every request body is a JSON object: serde would
/// also take a struct from an array of its fields (`[]` for a body whose fields all have
/// defaults), which the document does not allow, so anything else is refused with 422 first.
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let body_error =
            |status: StatusCode, message: String| HttpError::rejected(status, message, "body");
        // Content type, size limit and syntax first, with axum's statuses and messages.
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(rejection) => return Err(body_error(rejection.status(), rejection.body_text())),
        };
        if !value.is_object() {
            return Err(body_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Failed to deserialize the JSON body into the target type: expected a JSON object"
                    .into(),
            ));
        }
        // From bytes again rather than `from_value`, for axum's messages that name the field.
        let bytes = serde_json::to_vec(&value).map_err(HttpError::internal)?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(body_error(rejection.status(), rejection.body_text())),
        }
    }
}

/// An axum extractor of request parts whose rejections answer in the API's error shape, naming
/// `$field` (the part of the request that was wrong).
macro_rules! api_extractor {
    ($(#[$doc:meta])* $name:ident, $inner:ident, $field:literal) => {
        $(#[$doc])*
        pub struct $name<T>(pub T);

        impl<S, T> axum::extract::FromRequestParts<S> for $name<T>
        where
            T: serde::de::DeserializeOwned + Send,
            S: Send + Sync,
        {
            type Rejection = HttpError;

            async fn from_request_parts(
                parts: &mut axum::http::request::Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                match axum::extract::$inner::<T>::from_request_parts(parts, state).await {
                    Ok(axum::extract::$inner(v)) => Ok($name(v)),
                    Err(rejection) => Err(HttpError::rejected(
                        rejection.status(),
                        rejection.body_text(),
                        $field,
                    )),
                }
            }
        }
    };
}

api_extractor!(
    /// `Path<T>` with rejections in the API's error shape (a segment that is not UTF-8 once
    /// percent-decoded is 400).
    ApiPath,
    Path,
    "path"
);

api_extractor!(
    /// `Query<T>` with rejections in the API's error shape.
    ApiQuery,
    Query,
    "query"
);

/// Any route that does not exist.
pub async fn no_route(uri: axum::http::Uri) -> HttpError {
    HttpError::not_found(format!("no such route {uri}; see /openapi.json"))
}

#[cfg(test)]
#[path = "error_test.rs"]
mod tests;
