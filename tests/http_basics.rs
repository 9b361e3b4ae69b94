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
