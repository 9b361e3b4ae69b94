//! Conventions every route shares, checked on the routes that exist so far.

mod common;

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

#[tokio::test]
async fn health_answers_ok_with_a_fresh_uuidv7_request_id() {
    let app = common::spawn_app().await;
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let id: uuid::Uuid = id.parse().expect("a UUID");
    assert_eq!(id.get_version_num(), 7);
}

#[tokio::test]
async fn a_client_request_id_is_echoed() {
    let app = common::spawn_app().await;
    let response = app
        .client
        .get(app.url("/health"))
        .header("X-Request-ID", "ci-run-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "ci-run-42");

    // One that could forge log lines is replaced, not echoed.
    let response = app
        .client
        .get(app.url("/health"))
        .header("X-Request-ID", "evil value\twith tabs")
        .send()
        .await
        .unwrap();
    assert_ne!(response.headers()["x-request-id"], "evil value\twith tabs");
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem_carrying_the_request_id() {
    let app = common::spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/v1/nothing-here"))
        .header("X-Request-ID", "req-404")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["requestId"], "req-404");
    assert_eq!(body["instance"], "/api/v1/nothing-here");
    assert!(body["type"].as_str().unwrap().ends_with("/not-found"));
    assert!(body["title"].is_string() && body["detail"].is_string());
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem() {
    let app = common::spawn_app().await;
    let response = app.client.delete(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
}

#[tokio::test]
async fn ready_checks_database_nats_and_projection_lag() {
    let app = common::spawn_app().await;
    let response = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"], "ok");
    assert!(body["checks"]["projections"]["findings"]["lag"].is_number());

    // NATS configured but not there: not ready (the API still answers).
    let port = common::nats::free_port();
    let app = common::spawn_app_with(|c| c.nats_url = Some(common::nats::nats_url(port))).await;
    let response = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["nats"], "unavailable");
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_latency_by_route_and_positions() {
    let app = common::spawn_app().await;
    let session = app
        .signed_in("acme", vulnledger_aggregates::Role::Analyst)
        .await;
    let api = common::api::Api::new(&app, &session);
    let report = serde_json::json!({ "findings": [{ "title": "t", "severity": "LOW" }] });
    api.import("api:1", "native", serde_json::to_vec(&report).unwrap())
        .await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for expected in [
        "http_request_duration_seconds_bucket",
        "route=\"/api/v1/scans/{id}/results\"",
        "vulnledger_events_appended_total",
        "vulnledger_store_position",
        "vulnledger_relay_position",
        "vulnledger_projection_lag_events{projection=\"findings\"}",
        "vulnledger_cache_hits",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}
