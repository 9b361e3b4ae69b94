//! A pipeline with one API key: start a scan with its report, poll, gate.

mod common;

use serde_json::{json, Value};
use vulnledger_aggregates::Role;

const REPORTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/reports");

async fn call(
    app: &common::TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_pipeline_uploads_inline_and_the_gate_follows_open_findings() {
    let app = common::spawn_app().await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let key = app.api_key(&analyst, &["scans:write"]).await;
    let report: Value = serde_json::from_slice(
        &std::fs::read(format!("{REPORTS}/grype/check_all_fields.json")).unwrap(),
    )
    .unwrap();

    let response = app
        .client
        .post(app.url("/api/v1/ci/scans"))
        .header("x-api-key", &key)
        .json(&json!({ "target": "api:1", "scanner": "grype", "branch": "main", "report": report }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let position = response.headers().get("x-event-position").cloned();
    let started: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{started}");
    // Like every command's answer, the position of its last event, also as a header.
    assert_eq!(
        position.map(|p| p.to_str().unwrap().to_owned()),
        Some(started["position"].to_string())
    );
    assert_eq!(started["status"], "COMPLETED");
    assert_eq!(started["findings"]["new"], 5);
    let scan = started["scanId"].as_str().unwrap().to_owned();

    let (status, polled) = call(
        &app,
        &key,
        reqwest::Method::GET,
        &format!("/api/v1/ci/scans/{scan}/status"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        polled,
        json!({ "scanId": scan, "status": "COMPLETED", "percent": 100 })
    );

    let (status, gate) = call(
        &app,
        &key,
        reqwest::Method::GET,
        &format!("/api/v1/ci/scans/{scan}/results?failOn=INFO"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(gate["gate"], json!({ "failOn": "INFO", "passed": false }));
    let findings = gate["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 5);
    let open: u64 = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"]
        .iter()
        .map(|s| gate["summary"][s].as_u64().unwrap())
        .sum();
    assert_eq!(open, 5);

    // Triage every finding as a false positive: nothing open remains, the gate passes.
    for finding in findings {
        let id = finding["id"].as_str().unwrap();
        let response = app
            .client
            .patch(app.url(&format!("/api/v1/findings/{id}/status")))
            .bearer_auth(&analyst.token)
            .header("if-match", "\"1\"")
            .json(&json!({ "status": "FALSE_POSITIVE", "justification": "test data" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let (_, gate) = call(
        &app,
        &key,
        reqwest::Method::GET,
        &format!("/api/v1/ci/scans/{scan}/results?failOn=INFO"),
        None,
    )
    .await;
    assert_eq!(gate["gate"]["passed"], true);
    assert!(gate["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["status"] == "FALSE_POSITIVE"));
}

#[tokio::test]
async fn the_gate_fails_only_at_or_above_its_threshold_and_before_completion() {
    let app = common::spawn_app().await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let key = app.api_key(&analyst, &["scans:write"]).await;
    let report = json!({ "findings": [{ "title": "weak cipher", "severity": "MEDIUM", "ruleId": "tls-1" }] });
    let (_, started) = call(&app, &key, reqwest::Method::POST, "/api/v1/ci/scans",
        Some(json!({ "target": "web", "scanner": "custom", "report": report.to_string(), "format": "native" }))).await;
    let scan = started["scanId"].as_str().unwrap();
    let gate = |fail_on: &'static str| {
        let path = format!("/api/v1/ci/scans/{scan}/results?failOn={fail_on}");
        let key = key.clone();
        let app = &app;
        async move { call(app, &key, reqwest::Method::GET, &path, None).await }
    };
    assert_eq!(gate("HIGH").await.1["gate"]["passed"], true);
    assert_eq!(gate("MEDIUM").await.1["gate"]["passed"], false);
    assert_eq!(gate("LOW").await.1["gate"]["passed"], false);
    assert_eq!(gate("BOGUS").await.0, 400);

    let (_, queued) = call(
        &app,
        &key,
        reqwest::Method::POST,
        "/api/v1/ci/scans",
        Some(json!({ "target": "web", "scanner": "custom" })),
    )
    .await;
    assert_eq!(queued["status"], "QUEUED");
    let path = format!(
        "/api/v1/ci/scans/{}/results",
        queued["scanId"].as_str().unwrap()
    );
    let (_, pending) = call(&app, &key, reqwest::Method::GET, &path, None).await;
    assert_eq!(
        pending["gate"]["passed"], false,
        "no verdict before the scan completes"
    );
}

#[tokio::test]
async fn ci_needs_a_scans_write_key_and_hides_other_tenants() {
    let app = common::spawn_app().await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let reader = app.api_key(&analyst, &["scans:read"]).await;
    let (status, _) = call(
        &app,
        &reader,
        reqwest::Method::POST,
        "/api/v1/ci/scans",
        Some(json!({ "target": "t", "scanner": "s" })),
    )
    .await;
    assert_eq!(status, 403);

    let writer = app.api_key(&analyst, &["scans:write"]).await;
    let (_, started) = call(
        &app,
        &writer,
        reqwest::Method::POST,
        "/api/v1/ci/scans",
        Some(json!({ "target": "t", "scanner": "s" })),
    )
    .await;
    let scan = started["scanId"].as_str().unwrap();
    let other = app.signed_in("globex", Role::Analyst).await;
    let other_key = app.api_key(&other, &["scans:write"]).await;
    for path in [
        format!("/api/v1/ci/scans/{scan}/status"),
        format!("/api/v1/ci/scans/{scan}/results"),
    ] {
        assert_eq!(
            call(&app, &other_key, reqwest::Method::GET, &path, None)
                .await
                .0,
            404
        );
    }
    let (status, body) = call(
        &app,
        &writer,
        reqwest::Method::POST,
        "/api/v1/ci/scans",
        Some(json!({ "target": "t", "scanner": "s", "report": { "not": "a report" } })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let scans: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = 'scan'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(scans, 1, "the refused report launched no scan");
}
