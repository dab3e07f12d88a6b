//! The OpenAPI 3 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Dash admin API", description = "Services, replicas, nodes, images, events and logs of a Dash cluster."),
    paths(
        super::services::apply, super::services::list, super::services::inspect, super::services::remove,
        super::services::scale, super::services::rollback, super::services::explain, super::services::replicas, super::jobs::list, super::jobs::inspect, super::jobs::runs, super::jobs::run, super::jobs::suspend, super::jobs::resume, super::exec::exec, super::nodes::list, super::cluster::status, super::cluster::backup, super::nodes::inspect, super::nodes::remove, super::nodes::drain, super::nodes::activate, super::nodes::label, super::nodes::create_token, super::nodes::list_tokens, super::nodes::revoke_token, super::audit::list, super::audit::whoami, super::login::login, super::login::device, super::login::token, super::secrets::create_secret, super::secrets::create_config, super::secrets::update_secret, super::secrets::update_config, super::secrets::list_secrets, super::secrets::list_configs, super::secrets::inspect_secret, super::secrets::inspect_config, super::secrets::remove_secret, super::secrets::remove_config, super::secrets::rotate_key, super::images::list,
        super::images::import, super::images::remove, super::images::pull, super::images::inspect,
        super::images::prune, super::registries::login, super::registries::logout, super::routes::list, super::networks::list, super::networks::inspect, super::stats::list, super::stats::history, super::metrics::scrape, super::events::stream, super::logs::stream,
    ),
    modifiers(&BearerAuth, &Roles, &CommonResponses, &JsonQueryParameters),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The role each operation needs (`auth::required`, the one table): `x-dash-role` on the
/// operation, and its 403 where a lower role is refused.
struct Roles;

impl utoipa::Modify for Roles {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use axum::http::Method;
        for (path, item) in doc.paths.paths.iter_mut() {
            let methods = [
                (Method::GET, &mut item.get),
                (Method::PUT, &mut item.put),
                (Method::POST, &mut item.post),
                (Method::DELETE, &mut item.delete),
                (Method::PATCH, &mut item.patch),
            ];
            for (method, op) in methods {
                let Some(op) = op else { continue };
                if super::auth::PUBLIC.contains(&path.as_str()) {
                    op.extensions
                        .get_or_insert_with(Default::default)
                        .insert("x-dash-role".into(), "none".into());
                    continue;
                }
                let role = super::auth::required(&method, path);
                op.extensions
                    .get_or_insert_with(Default::default)
                    .insert("x-dash-role".into(), role.as_str().into());
                if role > super::auth::Access::Read {
                    let why = format!(
                        "`forbidden`: the caller's token has a role below {}",
                        role.as_str()
                    );
                    op.responses
                        .responses
                        .insert("403".into(), error_response(&why).into());
                }
            }
        }
    }
}

/// The answers every route can give, declared once instead of on each handler: 401 (every
/// route is behind the bearer token), 500, and the answers of the extractors in `error.rs`:
/// for a JSON body (`ApiJson`) 400 for malformed JSON, 413 for a body over the limit, 415 for
/// another content type, 422 for JSON of the wrong shape; 400 for a query string (`ApiQuery`)
/// or a path segment (`ApiPath`) that does not parse, and for a body of another kind (the
/// image import) that breaks off. All carry the `ApiError` body. When a handler declares the
/// same status for reasons of its own, these reasons are added to its description.
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::path::ParameterIn;
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                // A path parameter is required (OpenAPI says it must be); utoipa leaves that
                // out for a `schema_with` one.
                for p in op.parameters.iter_mut().flatten() {
                    if p.parameter_in == ParameterIn::Path {
                        p.required = utoipa::openapi::Required::True;
                    }
                }
                let body = op.request_body.as_ref();
                let json_body = body.is_some_and(|b| b.content.contains_key("application/json"));
                let params = op.parameters.iter().flatten();
                let has_query = params.clone().any(|p| p.parameter_in == ParameterIn::Query);
                let has_path = params.clone().any(|p| p.parameter_in == ParameterIn::Path);
                // (status, code, reason)
                let mut common = vec![
                    (
                        "401",
                        "unauthorized",
                        "no bearer token, or one that is wrong, revoked, expired or for joining nodes",
                    ),
                    ("500", "internal", "the server failed; its log says why"),
                ];
                if json_body {
                    common.extend([
                        ("400", "invalid", "the body is not valid JSON"),
                        (
                            "413",
                            "invalid",
                            "the body is larger than the limit (2 MiB)",
                        ),
                        ("415", "invalid", "the content type is not application/json"),
                        (
                            "422",
                            "invalid",
                            "the JSON is not an object of the expected shape and types",
                        ),
                    ]);
                } else if body.is_some() {
                    common.push(("400", "invalid", "the body could not be read"));
                }
                if has_query {
                    common.push((
                        "400",
                        "invalid",
                        "a query parameter is missing or malformed",
                    ));
                }
                if has_path {
                    common.push((
                        "400",
                        "invalid",
                        "a path segment is not UTF-8 once percent-decoded",
                    ));
                }
                for (status, code, reason) in common {
                    match op.responses.responses.get_mut(status) {
                        Some(RefOr::T(declared)) => {
                            declared.description = format!("{}; {reason}", declared.description);
                        }
                        Some(RefOr::Ref(_)) => {}
                        None => {
                            let response = error_response(&format!("`{code}`: {reason}"));
                            op.responses
                                .responses
                                .insert(status.to_owned(), response.into());
                        }
                    }
                }
            }
        }
    }
}

/// Query parameters whose value is JSON: the document says so with `content` (which utoipa's
/// `IntoParams` cannot), so clients encode them and the checker sends valid ones. utoipa's
/// `Parameter` has no `content` field; its flattened extensions carry it.
struct JsonQueryParameters;

impl utoipa::Modify for JsonQueryParameters {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let exec_command = serde_json::json!({
            "application/json": {"schema": {
                "type": "array", "items": {"type": "string"}, "minItems": 1,
                "description": "the command and its arguments, e.g. [\"sh\", \"-c\", \"ls /\"]"
            }}
        });
        let Some(op) = doc
            .paths
            .paths
            .get_mut("/v1/replicas/{id}/exec")
            .and_then(|item| item.get.as_mut())
        else {
            return;
        };
        for p in op.parameters.iter_mut().flatten() {
            if p.name == "command" {
                p.schema = None;
                p.extensions
                    .get_or_insert_with(Default::default)
                    .insert("content".into(), exec_command.clone());
            }
        }
    }
}

/// The operations of a path item (the methods the API uses).
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

/// A `u64` query parameter: 0 to u64::MAX. utoipa would say `format: int64`, which is signed
/// (a checker then takes 2^63 for too large, and the server does not).
pub(super) fn unsigned_64() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(0))
        .maximum(Some(u64::MAX))
        .build()
}

/// A response carrying the API's error body.
fn error_response(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ApiError")))
                .build(),
        )
        .build()
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
#[path = "openapi_test.rs"]
mod tests;
