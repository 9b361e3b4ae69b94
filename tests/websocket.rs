//! Live scan progress over a real WebSocket.

mod common;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use vulnledger_aggregates::Role;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &common::TestApp, scan: &str) -> Socket {
    let url = format!("ws://{}/api/v1/ws/scans/{scan}", app.address);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade")
        .0
}

async fn authed(app: &common::TestApp, scan: &str, token: &str) -> Socket {
    let mut socket = connect(app, scan).await;
    socket
        .send(Message::text(
            json!({ "type": "auth", "token": token }).to_string(),
        ))
        .await
        .unwrap();
    socket
}

/// The next data frame as JSON, or the close frame's (code, reason).
async fn next(socket: &mut Socket) -> Result<Value, (u16, String)> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return Ok(serde_json::from_str(text.as_str()).unwrap()),
            Message::Close(frame) => {
                let frame = frame.expect("a close code");
                return Err((u16::from(frame.code), frame.reason.to_string()));
            }
            _ => continue,
        }
    }
}

async fn launch(app: &common::TestApp, token: &str) -> String {
    let response = app
        .client
        .post(app.url("/api/v1/scans"))
        .bearer_auth(token)
        .json(&json!({ "target": "api:1", "scanner": "grype" }))
        .send()
        .await
        .unwrap();
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_socket_that_does_not_authenticate_within_a_second_is_closed_1008() {
    let app = common::spawn_app().await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let scan = launch(&app, &analyst.token).await;
    let mut socket = connect(&app, &scan).await;
    let started = std::time::Instant::now();
    assert_eq!(next(&mut socket).await, Err((1008, "auth_timeout".into())));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_socket_gets_a_sync_frame_then_every_change_then_1000_when_finished() {
    let app = common::spawn_app().await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let scan = launch(&app, &analyst.token).await;
    let mut socket = authed(&app, &scan, &analyst.token).await;
    let sync = next(&mut socket).await.unwrap();
    assert_eq!(
        (sync["status"].as_str(), sync["percent"].as_u64()),
        (Some("QUEUED"), Some(0))
    );
    assert!(sync["ts"].is_string());

    let progress = |percent: u64, step: &'static str| {
        app.client
            .post(app.url(&format!("/api/v1/scans/{scan}/progress")))
            .bearer_auth(&analyst.token)
            .json(&json!({ "percent": percent, "step": step }))
            .send()
    };
    progress(30, "pulling image").await.unwrap();
    let started = next(&mut socket).await.unwrap();
    assert_eq!(started["status"], "RUNNING");
    let moved = next(&mut socket).await.unwrap();
    assert_eq!(
        (moved["percent"].as_u64(), moved["step"].as_str()),
        (Some(30), Some("pulling image"))
    );

    let report = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/reports/grype/check_all_fields.json"
    ))
    .unwrap();
    let response = app
        .client
        .post(app.url(&format!("/api/v1/scans/{scan}/results")))
        .bearer_auth(&analyst.token)
        .header("content-type", "application/json")
        .body(report)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let done = next(&mut socket).await.unwrap();
    assert_eq!(
        (done["status"].as_str(), done["percent"].as_u64()),
        (Some("COMPLETED"), Some(100))
    );
    assert_eq!(next(&mut socket).await, Err((1000, "finished".into())));
}

#[tokio::test]
async fn bad_credentials_and_other_tenants_scans_are_refused_with_1008() {
    let app = common::spawn_app().await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let scan = launch(&app, &analyst.token).await;

    let mut socket = authed(&app, &scan, "not-a-token").await;
    assert_eq!(next(&mut socket).await, Err((1008, "unauthorized".into())));

    let mut socket = connect(&app, &scan).await;
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut socket).await, Err((1008, "auth_required".into())));

    let stranger = app.signed_in("globex", Role::Admin).await;
    let mut socket = authed(&app, &scan, &stranger.token).await;
    assert_eq!(next(&mut socket).await, Err((1008, "not_found".into())));

    // An API key works as the token too.
    let key = app.api_key(&analyst, &["scans:read"]).await;
    let mut socket = authed(&app, &scan, &key).await;
    assert_eq!(next(&mut socket).await.unwrap()["status"], "QUEUED");
}

#[tokio::test]
async fn a_fourth_socket_of_one_user_closes_the_oldest_with_1001() {
    let app = common::spawn_app().await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let scan = launch(&app, &analyst.token).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut socket = authed(&app, &scan, &analyst.token).await;
        next(&mut socket).await.unwrap();
        sockets.push(socket);
    }
    let mut fourth = authed(&app, &scan, &analyst.token).await;
    next(&mut fourth).await.unwrap();
    assert_eq!(
        next(&mut sockets[0]).await,
        Err((1001, "newer_connection".into()))
    );

    // The other three still follow the scan.
    app.client
        .post(app.url(&format!("/api/v1/scans/{scan}/stop")))
        .bearer_auth(&analyst.token)
        .send()
        .await
        .unwrap();
    for socket in sockets
        .iter_mut()
        .skip(1)
        .chain(std::iter::once(&mut fourth))
    {
        assert_eq!(next(socket).await.unwrap()["status"], "CANCELLED");
        assert_eq!(next(socket).await, Err((1000, "finished".into())));
    }
}
