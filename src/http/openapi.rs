//! The OpenAPI 3.1 document is generated from the handlers themselves: each route is
//! registered through `routes!`, which records its `#[utoipa::path]` at the same
//! time, so a route cannot exist without its documentation.

use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use axum::extract::DefaultBodyLimit;

use super::limits::DEFAULT_BODY_LIMIT;
use super::routes::{
    admin, api_keys, approvals, assets, audit, auth, ci, dashboard, finding_list, findings, scans,
    settings, ws,
};
use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vulnledger",
        description = "Event-sourced vulnerability management. Errors are RFC 7807 problems (application/problem+json)."
    ),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Sessions for people"),
        (name = "api-keys", description = "Keys for scanners and CI"),
        (name = "admin", description = "Tenant administration"),
        (name = "scans", description = "Scans and their results"),
        (name = "ci", description = "Pipelines: start, poll, gate"),
        (name = "findings", description = "Findings and their triage"),
        (name = "approvals", description = "Risk-acceptance approvals"),
        (name = "dashboard", description = "KPIs, trends and SLA from the read models"),
        (name = "assets", description = "Assets and vulnerabilities across them"),
        (name = "settings", description = "Tenant settings"),
        (name = "audit", description = "The event store as the audit log"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or vlk_ API key")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// The `/api/v1` routes, the document describing them, and the document and UI
/// routes (`/api/openapi.json`, `/api/docs`, assets served by us, no CDN).
pub fn routes(report_max_bytes: usize) -> (Router<AppState>, Document) {
    // Reports may be far larger than the 1 MiB every other body is held to.
    let uploads = OpenApiRouter::new()
        .routes(routes!(scans::results))
        .routes(routes!(ci::start))
        .layer(DefaultBodyLimit::max(report_max_bytes));
    let v1 = OpenApiRouter::new()
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(auth::change_password))
        .routes(routes!(api_keys::create, api_keys::list))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(admin::list_users, admin::create_user))
        .routes(routes!(admin::update_user))
        .routes(routes!(audit::list))
        .routes(routes!(audit::export_csv))
        .routes(routes!(audit::export_ndjson))
        .routes(routes!(scans::launch, scans::list))
        .routes(routes!(scans::detail))
        .routes(routes!(scans::progress))
        .routes(routes!(scans::stop))
        .routes(routes!(scans::fail))
        .routes(routes!(ci::status))
        .routes(routes!(ci::results))
        .routes(routes!(finding_list::list_findings))
        .routes(routes!(finding_list::asset_findings))
        .routes(routes!(finding_list::cve_findings))
        .routes(routes!(assets::list))
        .routes(routes!(dashboard::kpis))
        .routes(routes!(dashboard::trends))
        .routes(routes!(dashboard::severity_breakdown))
        .routes(routes!(dashboard::sla))
        .routes(routes!(settings::get_sla, settings::put_sla))
        .routes(routes!(findings::detail))
        .routes(routes!(findings::history))
        .routes(routes!(findings::change_status))
        .routes(routes!(findings::accept_risk))
        .routes(routes!(findings::revoke_risk))
        .routes(routes!(approvals::list))
        .routes(routes!(approvals::detail))
        .routes(routes!(approvals::transition))
        .merge(uploads);
    // api.md names the socket without the /api/v1 prefix; serve it at both.
    let sockets = OpenApiRouter::new().routes(routes!(ws::scan_progress));
    let legacy_socket =
        Router::new().route("/ws/scans/{id}", axum::routing::get(ws::scan_progress));
    let v1 = v1.merge(sockets);
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .split_for_parts();
    let ui = SwaggerUi::new("/api/docs").url("/api/openapi.json", document.clone());
    (router.merge(ui).merge(legacy_socket), document)
}

/// The document alone, for `vulnledger openapi` and tests.
pub fn document() -> Document {
    routes(DEFAULT_BODY_LIMIT).1
}
