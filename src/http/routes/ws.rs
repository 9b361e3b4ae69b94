//! `GET /ws/scans/{id}`: live progress of one scan.
//!
//! Browsers cannot set headers on a WebSocket, so the credential is the client's
//! first frame, `{"type":"auth","token":"<jwt or api key>"}`, due within a second
//! (else close 1008 `auth_timeout`). Then one sync frame with the current state and
//! one frame per change, `{"status","percent","step","ts"}`; the server closes with
//! 1000 once the scan has finished. A user holds at most three such sockets: a
//! fourth closes the oldest with 1001 `newer_connection`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;
use vulnledger_aggregates::{Scan, ScanEvent};

use crate::auth::{perm, Principal};
use crate::http::{ApiPath, AppState};

const AUTH_DEADLINE: Duration = Duration::from_secs(1);
pub const MAX_SOCKETS_PER_USER: usize = 3;

/// A socket's id and the way to tell it to close.
type Open = (u64, oneshot::Sender<()>);

/// The live sockets of each user, oldest first.
#[derive(Default)]
pub struct Sockets {
    next: AtomicU64,
    by_user: Mutex<HashMap<Uuid, VecDeque<Open>>>,
}

impl Sockets {
    fn open(&self, user: Uuid) -> (u64, oneshot::Receiver<()>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (kick, kicked) = oneshot::channel();
        let mut by_user = self.by_user.lock().expect("socket registry lock");
        let sockets = by_user.entry(user).or_default();
        sockets.push_back((id, kick));
        while sockets.len() > MAX_SOCKETS_PER_USER {
            if let Some((_, oldest)) = sockets.pop_front() {
                let _ = oldest.send(());
            }
        }
        (id, kicked)
    }

    fn close(&self, user: Uuid, id: u64) {
        let mut by_user = self.by_user.lock().expect("socket registry lock");
        if let Some(sockets) = by_user.get_mut(&user) {
            sockets.retain(|(socket, _)| *socket != id);
            if sockets.is_empty() {
                by_user.remove(&user);
            }
        }
    }
}

#[derive(Deserialize)]
struct AuthFrame {
    #[serde(rename = "type")]
    kind: String,
    token: String,
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

fn frame(kind: &str, scan: &Scan, ts: DateTime<Utc>) -> Message {
    Message::Text(
        json!({
            "type": kind,
            "status": scan.status.to_string(),
            "percent": scan.percent,
            "step": scan.step,
            "ts": ts,
        })
        .to_string()
        .into(),
    )
}

/// Live scan progress (WebSocket; first frame authenticates).
#[utoipa::path(get, path = "/ws/scans/{id}", tag = "scans", params(("id" = Uuid, Path)),
    responses((status = 101, description = "switching to the WebSocket protocol")))]
pub async fn scan_progress(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| session(state, id, socket))
}

async fn authenticate(state: &AppState, socket: &mut WebSocket) -> Result<Principal, Message> {
    let first = match tokio::time::timeout(AUTH_DEADLINE, socket.recv()).await {
        Err(_) => return Err(close(1008, "auth_timeout")),
        Ok(None | Some(Err(_))) => return Err(close(1008, "auth_required")),
        Ok(Some(Ok(message))) => message,
    };
    let Message::Text(text) = first else {
        return Err(close(1008, "auth_required"));
    };
    let auth = match serde_json::from_str::<AuthFrame>(text.as_str()) {
        Ok(auth) if auth.kind == "auth" => auth,
        _ => return Err(close(1008, "auth_required")),
    };
    let mut headers = HeaderMap::new();
    let bearer = HeaderValue::from_str(&format!("Bearer {}", auth.token.trim()))
        .map_err(|_| close(1008, "unauthorized"))?;
    headers.insert(header::AUTHORIZATION, bearer);
    let principal = match crate::auth::resolve(state, &headers).await {
        Ok(Ok(Some(principal))) => principal,
        Ok(_) => return Err(close(1008, "unauthorized")),
        Err(e) => {
            tracing::error!(error = %e, "websocket credential lookup failed");
            return Err(close(1011, "internal_error"));
        }
    };
    crate::auth::perm::check::<perm::ScansRead>(&principal)
        .map_err(|_| close(1008, "forbidden"))?;
    Ok(principal)
}

async fn session(state: AppState, id: Uuid, mut socket: WebSocket) {
    let principal = match authenticate(&state, &mut socket).await {
        Ok(principal) => principal,
        Err(refusal) => {
            let _ = socket.send(refusal).await;
            return;
        }
    };
    let (socket_id, kicked) = state.sockets.open(principal.user_id);
    follow(&state, id, &principal, &mut socket, kicked).await;
    state.sockets.close(principal.user_id, socket_id);
}

async fn follow(
    state: &AppState,
    id: Uuid,
    principal: &Principal,
    socket: &mut WebSocket,
    mut kicked: oneshot::Receiver<()>,
) {
    let mut feed = state.live.subscribe();
    let store = state.commands.store();
    let key = id.to_string();
    let load = || store.load::<Scan>(principal.tenant_id, &key);
    let Ok(loaded) = load().await else {
        let _ = socket.send(close(1011, "internal_error")).await;
        return;
    };
    if loaded.version == 0 {
        let _ = socket.send(close(1008, "not_found")).await;
        return;
    }
    let (mut scan, mut version) = (loaded.aggregate, loaded.version);
    if socket.send(frame("sync", &scan, Utc::now())).await.is_err() {
        return;
    }
    loop {
        if scan.status.is_finished() {
            let _ = socket.send(close(1000, "finished")).await;
            return;
        }
        tokio::select! {
            _ = &mut kicked => {
                let _ = socket.send(close(1001, "newer_connection")).await;
                return;
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            event = feed.recv() => match event {
                Ok(event) => {
                    if event.aggregate_id != key
                        || event.tenant_id != principal.tenant_id
                        || event.sequence as u64 <= version
                    {
                        continue;
                    }
                    let Ok(change) = serde_json::from_value::<ScanEvent>(event.payload.clone()) else {
                        continue;
                    };
                    cqrs_es::Aggregate::apply(&mut scan, change);
                    version = event.sequence as u64;
                    if socket.send(frame("progress", &scan, event.recorded_at)).await.is_err() {
                        return;
                    }
                }
                // Fell behind the feed: catch up from the store, then carry on.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let Ok(loaded) = load().await else { return };
                    if loaded.version > version {
                        (scan, version) = (loaded.aggregate, loaded.version);
                        if socket.send(frame("progress", &scan, Utc::now())).await.is_err() {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = socket.send(close(1001, "going_away")).await;
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fourth_socket_closes_the_oldest_of_that_user_only() {
        let sockets = Sockets::default();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let mut alices: Vec<_> = (0..3).map(|_| sockets.open(alice)).collect();
        let (_, mut bobs) = sockets.open(bob);
        let (_, _newest) = sockets.open(alice);
        assert!(
            alices[0].1.try_recv().is_ok(),
            "the oldest was told to close"
        );
        assert!(alices[1].1.try_recv().is_err() && alices[2].1.try_recv().is_err());
        assert!(bobs.try_recv().is_err());
        sockets.close(alice, alices.remove(1).0);
        let (_, _again) = sockets.open(alice);
        assert!(
            alices[1].1.try_recv().is_err(),
            "a closed socket freed its place"
        );
    }
}
