//! The OpenAPI document and the router agree both ways: every route api.md names is
//! documented, and every documented operation is really routed. The docs UI is
//! served from this process, never from a CDN.

mod common;

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

/// Every operation api.md lists under "Authentication and tenancy". Later sections
/// (scans, CI, findings, approvals, read models, audit) add their rows here.
const DOCUMENTED: &[(&str, &str)] = &[
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    ("get", "/api/v1/auth/me"),
    ("post", "/api/v1/auth/change-password"),
    ("post", "/api/v1/api-keys"),
    ("get", "/api/v1/api-keys"),
    ("delete", "/api/v1/api-keys/{id}"),
    ("get", "/api/v1/admin/users"),
    ("post", "/api/v1/admin/users"),
    ("patch", "/api/v1/admin/users/{id}"),
    // Scans
    ("post", "/api/v1/scans"),
    ("get", "/api/v1/scans"),
    ("get", "/api/v1/scans/{id}"),
    ("post", "/api/v1/scans/{id}/progress"),
    ("post", "/api/v1/scans/{id}/results"),
    ("post", "/api/v1/scans/{id}/stop"),
    ("post", "/api/v1/scans/{id}/fail"),
    ("get", "/api/v1/ws/scans/{id}"),
    // CI
    ("post", "/api/v1/ci/scans"),
    ("get", "/api/v1/ci/scans/{id}/status"),
    ("get", "/api/v1/ci/scans/{id}/results"),
    // Findings
    ("get", "/api/v1/findings/{id}"),
    ("get", "/api/v1/findings/{id}/history"),
    ("patch", "/api/v1/findings/{id}/status"),
    ("post", "/api/v1/findings/{id}/accept-risk"),
    ("post", "/api/v1/findings/{id}/revoke-risk"),
    // Approvals
    ("get", "/api/v1/approvals"),
    ("get", "/api/v1/approvals/{id}"),
    ("patch", "/api/v1/approvals/{id}/transition"),
    // Read models
    ("get", "/api/v1/findings"),
    ("get", "/api/v1/dashboard/kpis"),
    ("get", "/api/v1/dashboard/trends"),
    ("get", "/api/v1/dashboard/severity-breakdown"),
    ("get", "/api/v1/dashboard/sla"),
    ("get", "/api/v1/settings/sla"),
    ("put", "/api/v1/settings/sla"),
    ("get", "/api/v1/assets"),
    ("get", "/api/v1/assets/{asset}/findings"),
    ("get", "/api/v1/vulnerabilities/cve/{cve}"),
    // Audit
    ("get", "/api/v1/admin/audit"),
    ("get", "/api/v1/admin/audit/export.csv"),
    ("get", "/api/v1/admin/audit/export.ndjson"),
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// What the router's fallback says; a handler's own 404 says something else.
const NO_ROUTE: &str = "no such resource or route";

async fn document(app: &common::TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    response.json().await.unwrap()
}

/// `{name}` path parameters filled with a random UUID.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("a closed parameter") + start;
        out.push_str(&rest[..start]);
        out.push_str(&Uuid::new_v4().to_string());
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_both_credential_schemes() {
    let app = common::spawn_app().await;
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3.1"), "openapi {version}");
    assert!(doc["info"]["title"].is_string());
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["apiKey"]["type"], "apiKey");
    assert_eq!(schemes["apiKey"]["in"], "header");
    assert_eq!(schemes["apiKey"]["name"], "X-API-Key");
}

#[tokio::test]
async fn every_route_api_md_lists_is_in_the_document_with_its_method() {
    let app = common::spawn_app().await;
    let doc = document(&app).await;
    let paths = doc["paths"].as_object().expect("paths");
    let missing: Vec<String> = DOCUMENTED
        .iter()
        .filter(|(method, path)| {
            paths
                .get(*path)
                .and_then(|item| item.get(*method))
                .is_none_or(|op| !op.is_object())
        })
        .map(|(method, path)| format!("{} {path}", method.to_uppercase()))
        .collect();
    assert!(
        missing.is_empty(),
        "api.md routes missing from /api/openapi.json: {missing:?}; documented: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    // Each documented operation says what it answers.
    for (method, path) in DOCUMENTED {
        let op = &paths[*path][*method];
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} documents its responses"
        );
    }
}

#[tokio::test]
async fn every_documented_operation_is_really_routed() {
    let app = common::spawn_app().await;
    let doc = document(&app).await;
    let paths = doc["paths"].as_object().expect("paths");
    assert!(!paths.is_empty());
    let mut checked = 0;
    for (path, item) in paths {
        let item = item.as_object().expect("a path item");
        for method in METHODS.iter().filter(|m| item.contains_key(**m)) {
            let url = concrete(path);
            let response = app
                .client
                .request(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    app.url(&url),
                )
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert_ne!(
                status, 405,
                "{method} {path} is documented but the router refuses the method: {text}"
            );
            assert!(
                !(status == 404 && text.contains(NO_ROUTE)),
                "{method} {path} is documented but not routed: {text}"
            );
            checked += 1;
        }
    }
    assert!(checked >= DOCUMENTED.len(), "checked {checked} operations");
}

#[tokio::test]
async fn an_undocumented_path_is_the_routers_404() {
    // The check above relies on the fallback's wording; make sure it holds.
    let app = common::spawn_app().await;
    let response = app
        .client
        .get(app.url(&concrete("/api/v1/no-such-thing/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains(NO_ROUTE));
}

#[tokio::test]
async fn the_docs_ui_is_served_from_this_process_and_points_at_our_document() {
    let app = common::spawn_app().await;
    let response = app.client.get(app.url("/api/docs/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for attribute in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "src=\"//",
    ] {
        assert!(
            !html.contains(attribute),
            "the docs page loads something from elsewhere ({attribute}): {html}"
        );
    }
    // Every script and stylesheet it names is served here.
    let mut assets = Vec::new();
    for marker in ["src=\"", "href=\""] {
        for piece in html.split(marker).skip(1) {
            let target = piece.split('"').next().unwrap();
            if target.ends_with(".js") || target.ends_with(".css") {
                assets.push(target.trim_start_matches("./").to_owned());
            }
        }
    }
    assert!(!assets.is_empty(), "the page names its assets: {html}");
    for asset in &assets {
        let url = if asset.starts_with('/') {
            asset.clone()
        } else {
            format!("/api/docs/{asset}")
        };
        let response = app.client.get(app.url(&url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let body = response.text().await.unwrap();
        assert!(!body.is_empty(), "{url}");
        if url.ends_with("swagger-initializer.js") {
            assert!(body.contains("/api/openapi.json"), "{body}");
            assert!(!body.contains("petstore"), "{body}");
        }
    }
}

#[tokio::test]
async fn the_docs_ui_answers_without_the_trailing_slash_too() {
    let app = common::spawn_app().await;
    let response = app.client.get(app.url("/api/docs")).send().await.unwrap();
    let status = response.status();
    if status.is_redirection() {
        let location = response.headers()["location"].to_str().unwrap();
        assert!(location.ends_with("/api/docs/"), "{location}");
    } else {
        assert_eq!(status, 200);
        assert!(response.text().await.unwrap().contains("swagger-ui"));
    }
}
