//! The OpenAPI 3 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Dash admin API", description = "Services, replicas, nodes, images, events and logs of a Dash cluster."),
    paths(
        super::services::apply, super::services::list, super::services::inspect, super::services::remove,
        super::services::scale, super::services::rollback, super::services::explain, super::services::replicas, super::exec::exec, super::nodes::list, super::nodes::inspect, super::nodes::remove, super::nodes::drain, super::nodes::activate, super::nodes::label, super::nodes::create_token, super::nodes::list_tokens, super::nodes::revoke_token, super::images::list,
        super::images::import, super::images::remove, super::images::pull, super::images::inspect,
        super::images::prune, super::registries::login, super::registries::logout, super::routes::list, super::stats::list, super::events::stream, super::logs::stream,
    ),
    modifiers(&BearerAuth),
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

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
