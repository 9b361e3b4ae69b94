//! The identity layer under attack, over real HTTP: tokens, refresh families, login,
//! rate limits, API keys, tenant isolation, admin rules and hostile bodies.
//!
//! Every refusal is checked three ways: its status, its RFC 7807 body (problem
//! content type, requestId, no SQL or stack text), and, where a write was refused,
//! that the database did not change. The route tables near the top are meant to
//! grow: later issues add scans, findings, approvals, dashboards and audit as rows.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{Session, TestApp};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderMap, CONTENT_TYPE, SET_COOKIE, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use uuid::Uuid;
use vulnledger_aggregates::Role;

/// The JWT secret of `common::test_config`.
const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

/// Text that must never reach a client: SQL, driver names, panics, stack traces.
/// Matched case-insensitively, except `SELECT` (exactly as SQL spells it).
const LEAKS: &[&str] = &[
    "sqlx",
    "panicked",
    "syntax error at",
    "duplicate key",
    "violates",
    "constraint",
    "postgres",
    "pg_",
    "stack backtrace",
    "rust_backtrace",
    "src/",
    ".rs:",
];

// ------------------------------------------------------------------ tables ---

/// One request of a route table: `{id}` in the path is filled in by the test.
#[derive(Clone)]
struct Route {
    method: Method,
    path: &'static str,
    body: Option<Value>,
}

fn route(method: Method, path: &'static str, body: Option<Value>) -> Route {
    Route { method, path, body }
}

impl Route {
    fn with_id(&self, id: &str) -> String {
        self.path.replace("{id}", id)
    }
}

/// Every route that needs a credential. New protected routes (scans, findings,
/// approvals, dashboards, audit) are added here and get the 401 checks for free.
fn protected_routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/api/v1/auth/me", None),
        route(
            Method::POST,
            "/api/v1/auth/change-password",
            Some(
                json!({"currentPassword": common::PASSWORD, "newPassword": "a brand new passphrase"}),
            ),
        ),
        route(
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "ci", "scopes": ["scans:read"]})),
        ),
        route(Method::GET, "/api/v1/api-keys", None),
        route(Method::DELETE, "/api/v1/api-keys/{id}", None),
        route(Method::GET, "/api/v1/admin/users", None),
        route(
            Method::POST,
            "/api/v1/admin/users",
            Some(
                json!({"email": "new@x.test", "password": "another good passphrase", "role": "viewer"}),
            ),
        ),
        route(
            Method::PATCH,
            "/api/v1/admin/users/{id}",
            Some(json!({"role": "admin"})),
        ),
    ]
}

/// Routes for tenant admins in person only. `{id}` is the caller's own user id, so
/// the PATCH row is also an attempt to promote oneself.
fn admin_routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/api/v1/admin/users", None),
        route(
            Method::POST,
            "/api/v1/admin/users",
            Some(
                json!({"email": "sneaky@x.test", "password": "another good passphrase", "role": "admin"}),
            ),
        ),
        route(
            Method::PATCH,
            "/api/v1/admin/users/{id}",
            Some(json!({"role": "admin"})),
        ),
        route(
            Method::PATCH,
            "/api/v1/admin/users/{id}",
            Some(json!({"active": true})),
        ),
    ]
}

/// Routes a person may use but an API key never may, whatever its scopes.
fn people_only_routes() -> Vec<Route> {
    let mut routes = admin_routes();
    routes.extend([
        route(
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "escalate", "scopes": ["scans:read"]})),
        ),
        route(Method::GET, "/api/v1/api-keys", None),
        route(Method::DELETE, "/api/v1/api-keys/{id}", None),
        route(
            Method::POST,
            "/api/v1/auth/change-password",
            Some(json!({"currentPassword": common::PASSWORD, "newPassword": "a brand new passphrase"})),
        ),
    ]);
    routes
}

/// Which of tenant A's resources a test fills into a row.
#[derive(Clone, Copy, Debug)]
enum OfA {
    Analyst,
    Admin,
    Key,
}

/// Requests on one of tenant A's resources that tenant B must get a 404 for,
/// exactly as if the id did not exist. Later: scans, findings, approvals.
fn tenant_a_resources() -> Vec<(Route, OfA)> {
    vec![
        (
            route(
                Method::PATCH,
                "/api/v1/admin/users/{id}",
                Some(json!({"role": "viewer"})),
            ),
            OfA::Analyst,
        ),
        (
            route(
                Method::PATCH,
                "/api/v1/admin/users/{id}",
                Some(json!({"active": false})),
            ),
            OfA::Analyst,
        ),
        (
            route(
                Method::PATCH,
                "/api/v1/admin/users/{id}",
                Some(json!({"role": "viewer", "active": false})),
            ),
            OfA::Admin,
        ),
        (
            route(Method::DELETE, "/api/v1/api-keys/{id}", None),
            OfA::Key,
        ),
    ]
}

// ----------------------------------------------------------------- helpers ---

/// How a request presents itself.
#[derive(Clone, Copy)]
enum Cred<'a> {
    None,
    Bearer(&'a str),
    ApiKey(&'a str),
    Cookie(&'a str),
    Authorization(&'a str),
}

fn request(app: &TestApp, method: Method, path: &str, cred: Cred<'_>) -> RequestBuilder {
    let builder = app.client.request(method, app.url(path));
    match cred {
        Cred::None => builder,
        Cred::Bearer(token) => builder.bearer_auth(token),
        Cred::ApiKey(key) => builder.header("X-API-Key", key),
        Cred::Cookie(token) => builder.header("Cookie", format!("token={token}")),
        Cred::Authorization(value) => builder.header("Authorization", value),
    }
}

async fn send(app: &TestApp, route: &Route, path: &str, cred: Cred<'_>) -> Response {
    let mut builder = request(app, route.method.clone(), path, cred);
    if let Some(body) = &route.body {
        builder = builder.json(body);
    }
    builder.send().await.unwrap()
}

async fn me(app: &TestApp, cred: Cred<'_>) -> Response {
    request(app, Method::GET, "/api/v1/auth/me", cred)
        .send()
        .await
        .unwrap()
}

fn assert_no_leak(text: &str) {
    let lower = text.to_lowercase();
    for leak in LEAKS {
        assert!(
            !lower.contains(leak),
            "an error body leaks {leak:?}: {text}"
        );
    }
    assert!(!text.contains("SELECT"), "an error body leaks SQL: {text}");
}

/// Checks the RFC 7807 shape of an error response already read.
fn assert_problem_parts(url: &str, headers: &HeaderMap, text: &str, status: u16) -> Value {
    assert_problem_echoing(url, headers, text, status, &[])
}

/// The same, where the body may quote `echoed` (the client's own input) verbatim:
/// only the rest of it is searched for leaks.
fn assert_problem_echoing(
    url: &str,
    headers: &HeaderMap,
    text: &str,
    status: u16,
    echoed: &[&str],
) -> Value {
    let mut unquoted = text.to_owned();
    for input in echoed {
        let quoted = serde_json::to_string(input).unwrap();
        unquoted = unquoted.replace(&quoted[1..quoted.len() - 1], "<input>");
    }
    assert_no_leak(&unquoted);
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/problem+json"),
        "{url}: a {status} must be application/problem+json, was {content_type:?}: {text}"
    );
    let body: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{url}: a problem body is JSON ({e}): {text}"));
    for field in ["type", "title", "detail", "instance", "requestId"] {
        assert!(
            body[field].as_str().is_some_and(|s| !s.is_empty()),
            "{url}: problem lacks {field}: {text}"
        );
    }
    assert_eq!(body["status"], status, "{url}: problem status: {text}");
    let request_id = headers
        .get("x-request-id")
        .expect("every response carries X-Request-ID")
        .to_str()
        .unwrap();
    assert_eq!(
        body["requestId"], request_id,
        "requestId matches the header"
    );
    body
}

/// Reads a response that must be a problem with `status`; returns its body.
async fn problem(response: Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let url = response.url().path().to_owned();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{url}: expected {status}, got {got}: {text}");
    assert_problem_parts(&url, &headers, &text, status)
}

/// A 401 problem that asks for a bearer credential.
async fn unauthorized(response: Response) -> Value {
    assert!(
        response.headers().contains_key(WWW_AUTHENTICATE),
        "a 401 carries WWW-Authenticate"
    );
    problem(response, 401).await
}

/// Any 4xx problem; returns the status and body.
async fn client_error(response: Response) -> (u16, Value) {
    client_error_echoing(response, &[]).await
}

/// Any 4xx problem, which may quote `echoed` back.
async fn client_error_echoing(response: Response, echoed: &[&str]) -> (u16, Value) {
    let got = response.status().as_u16();
    let url = response.url().to_string();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    assert!(
        (400..500).contains(&got),
        "{url}: expected a 4xx, got {got}: {text}"
    );
    (
        got,
        assert_problem_echoing(&url, &headers, &text, got, echoed),
    )
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// Everything about users that a refused request must leave as it was.
async fn users_snapshot(app: &TestApp) -> Vec<(Uuid, Uuid, String, String, bool, String)> {
    sqlx::query_as(
        "SELECT id, tenant_id, email, role, active, updated_at::text FROM users ORDER BY id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

async fn keys_snapshot(app: &TestApp) -> Vec<(Uuid, Option<String>, Option<String>)> {
    sqlx::query_as("SELECT id, revoked_at::text, expires_at::text FROM api_keys ORDER BY id")
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

async fn session_revoked(app: &TestApp, session_id: Uuid) -> Option<String> {
    sqlx::query_scalar("SELECT revoked_why FROM sessions WHERE id = $1")
        .bind(session_id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

async fn password_hash(app: &TestApp, user: Uuid) -> String {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

async fn login_raw(app: &TestApp, email: &str, password: &str) -> Response {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn refresh_with(app: &TestApp, refresh_token: &str) -> Response {
    app.client
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({ "refreshToken": refresh_token }))
        .send()
        .await
        .unwrap()
}

/// Creates a key through the API; returns `(id, key)`.
async fn key_with_id(app: &TestApp, session: &Session, scopes: &[&str]) -> (String, String) {
    let response = request(
        app,
        Method::POST,
        "/api/v1/api-keys",
        Cred::Bearer(&session.token),
    )
    .json(&json!({"name": "ci", "scopes": scopes}))
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

async fn patch_user(app: &TestApp, admin: &Session, user: Uuid, body: Value) -> Response {
    request(
        app,
        Method::PATCH,
        &format!("/api/v1/admin/users/{user}"),
        Cred::Bearer(&admin.token),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The claims of a JWT the server issued.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn sign(algorithm: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `name=value; attrs` Set-Cookie headers of a response, parsed.
fn set_cookies(headers: &HeaderMap) -> Vec<cookie::Cookie<'static>> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| cookie::Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
        .collect()
}

fn find_cookie<'a>(
    cookies: &'a [cookie::Cookie<'static>],
    name: &str,
) -> &'a cookie::Cookie<'static> {
    cookies
        .iter()
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("a Set-Cookie for {name}"))
}

/// A credential that must be refused on every protected route with a 401 problem,
/// while the session's real token (the control) still works.
async fn assert_refused_everywhere(app: &TestApp, control: &Session, cred: Cred<'_>) {
    assert_eq!(
        me(app, Cred::Bearer(&control.token)).await.status(),
        200,
        "the control token works, so the refusal below is about the credential"
    );
    let users = users_snapshot(app).await;
    let keys = keys_snapshot(app).await;
    for route in protected_routes() {
        let path = route.with_id(&control.user_id.to_string());
        let response = send(app, &route, &path, cred).await;
        let body = unauthorized(response).await;
        assert!(
            !body.to_string().contains(&control.email),
            "a refusal names nobody"
        );
    }
    assert_eq!(users_snapshot(app).await, users, "users unchanged");
    assert_eq!(keys_snapshot(app).await, keys, "keys unchanged");
}

// ------------------------------------------------------------------ tokens ---

#[tokio::test]
async fn every_protected_route_refuses_a_request_without_credentials() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    assert_refused_everywhere(&app, &admin, Cred::None).await;
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_refused() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let forged = sign(
        Algorithm::HS256,
        b"another-secret-another-secret-another!",
        &claims_of(&admin.token),
    );
    assert_refused_everywhere(&app, &admin, Cred::Bearer(&forged)).await;
    assert_refused_everywhere(&app, &admin, Cred::Cookie(&forged)).await;
}

#[tokio::test]
async fn an_expired_token_signed_with_the_real_secret_is_refused() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let mut claims = claims_of(&admin.token);
    claims["iat"] = json!(now() - 3600);
    claims["exp"] = json!(now() - 120);
    let expired = sign(Algorithm::HS256, SECRET, &claims);
    assert_refused_everywhere(&app, &admin, Cred::Bearer(&expired)).await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let claims = claims_of(&admin.token).to_string();
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None","typ":"JWT"}"#,
        r#"{"alg":"NONE"}"#,
    ] {
        let unsigned = format!("{}.{}.", b64(header.as_bytes()), b64(claims.as_bytes()));
        assert_refused_everywhere(&app, &admin, Cred::Bearer(&unsigned)).await;
        // The same, with the real signature pasted on.
        let signature = admin.token.rsplit('.').next().unwrap();
        let pasted = format!("{unsigned}{signature}");
        assert_refused_everywhere(&app, &admin, Cred::Bearer(&pasted)).await;
    }
}

#[tokio::test]
async fn tokens_signed_with_hs384_or_hs512_are_refused_even_with_the_real_secret() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let claims = claims_of(&admin.token);
    for algorithm in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign(algorithm, SECRET, &claims);
        assert_refused_everywhere(&app, &admin, Cred::Bearer(&token)).await;
    }
    // Control: the same claims under HS256 and the real secret are accepted.
    let token = sign(Algorithm::HS256, SECRET, &claims);
    assert_eq!(me(&app, Cred::Bearer(&token)).await.status(), 200);
}

#[tokio::test]
async fn garbage_empty_and_non_bearer_authorization_headers_are_refused() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let garbage = [
        "Bearer garbage".to_owned(),
        "Bearer not.a.jwt".to_owned(),
        "Bearer ....".to_owned(),
        "Bearer ".to_owned(),
        "Bearer".to_owned(),
        "Basic x".to_owned(),
        format!(
            "Basic {}",
            b64(format!("{}:{}", admin.email, common::PASSWORD).as_bytes())
        ),
        format!("Token {}", admin.token),
        format!("Bearer {}x", admin.token),
        format!("Bearer {}", &admin.token[..admin.token.len() - 2]),
        "Bearer vlk_".to_owned(),
        "Bearer vlk_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".to_owned(),
    ];
    for value in &garbage {
        assert_refused_everywhere(&app, &admin, Cred::Authorization(value)).await;
    }
    for key in [
        "",
        "garbage",
        "vlk_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    ] {
        assert_refused_everywhere(&app, &admin, Cred::ApiKey(key)).await;
    }
    assert_refused_everywhere(&app, &admin, Cred::Cookie("garbage")).await;
}

#[tokio::test]
async fn claims_changed_and_re_signed_with_the_real_secret_grant_nothing_more() {
    let app = common::spawn_app().await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let other = app.signed_in("globex", Role::Admin).await;
    let claims = claims_of(&analyst.token);

    // A raised role claim is ignored: the role comes from the database.
    let mut raised = claims.clone();
    raised["role"] = json!("admin");
    let raised = sign(Algorithm::HS256, SECRET, &raised);
    let body: Value = me(&app, Cred::Bearer(&raised)).await.json().await.unwrap();
    assert_eq!(body["role"], "analyst");
    let response = request(
        &app,
        Method::GET,
        "/api/v1/admin/users",
        Cred::Bearer(&raised),
    )
    .send()
    .await
    .unwrap();
    problem(response, 403).await;

    // Another tenant, another subject, or a session that never existed: refused.
    let other_claims = claims_of(&other.token);
    for (field, value) in [
        ("tenantId", other_claims["tenantId"].clone()),
        ("sub", other_claims["sub"].clone()),
        ("sid", json!(Uuid::now_v7())),
        ("sid", other_claims["sid"].clone()),
    ] {
        let mut changed = claims.clone();
        changed[field] = value;
        let token = sign(Algorithm::HS256, SECRET, &changed);
        assert_refused_everywhere(&app, &analyst, Cred::Bearer(&token)).await;
    }
}

#[tokio::test]
async fn a_token_of_a_logged_out_session_is_refused_at_once() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let other_session = app.login(&admin.email).await;
    // Warm any cache first: the refusal must not wait for a TTL.
    assert_eq!(me(&app, Cred::Bearer(&admin.token)).await.status(), 200);
    let response = request(
        &app,
        Method::POST,
        "/api/v1/auth/logout",
        Cred::Bearer(&admin.token),
    )
    .json(&json!({"refreshToken": admin.refresh_token}))
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 204);
    let body = unauthorized(me(&app, Cred::Bearer(&admin.token)).await).await;
    assert!(body["detail"].as_str().unwrap().contains("session"));
    unauthorized(me(&app, Cred::Cookie(&admin.token)).await).await;
    // Only that session ended.
    assert_eq!(
        me(&app, Cred::Bearer(&other_session.token)).await.status(),
        200
    );
    let sid: Uuid = claims_of(&admin.token)["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(session_revoked(&app, sid).await.as_deref(), Some("logout"));
}

#[tokio::test]
async fn a_deactivated_users_tokens_keys_and_password_stop_working_at_once() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let key = app.api_key(&analyst, &["scans:read"]).await;
    // Warm the caches.
    assert_eq!(me(&app, Cred::Bearer(&analyst.token)).await.status(), 200);
    assert_eq!(me(&app, Cred::ApiKey(&key)).await.status(), 200);

    let response = patch_user(&app, &admin, analyst.user_id, json!({"active": false})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["active"], false);

    unauthorized(me(&app, Cred::Bearer(&analyst.token)).await).await;
    unauthorized(me(&app, Cred::ApiKey(&key)).await).await;
    unauthorized(me(&app, Cred::Bearer(&key)).await).await;
    unauthorized(refresh_with(&app, &analyst.refresh_token).await).await;

    // Logging in again fails exactly like a wrong password.
    let sessions = count(&app, "sessions").await;
    let deactivated = login_raw(&app, &analyst.email, common::PASSWORD).await;
    let wrong = login_raw(&app, &admin.email, "not the password at all").await;
    assert_eq!(
        normalized_problem(deactivated).await,
        normalized_problem(wrong).await
    );
    assert_eq!(count(&app, "sessions").await, sessions, "no session made");

    // Reactivated, the person can sign in again; the old session stays ended.
    let response = patch_user(&app, &admin, analyst.user_id, json!({"active": true})).await;
    assert_eq!(response.status(), 200);
    let again = app.login(&analyst.email).await;
    assert_eq!(me(&app, Cred::Bearer(&again.token)).await.status(), 200);
    unauthorized(me(&app, Cred::Bearer(&analyst.token)).await).await;
}

// ----------------------------------------------------------------- refresh ---

#[tokio::test]
async fn login_answers_the_contract_shape_and_sets_httponly_cookies() {
    let app = common::spawn_app().await;
    let user_id = app.user("acme", "ana@acme.test", Role::Analyst).await;
    let response = login_raw(&app, "ana@acme.test", common::PASSWORD).await;
    assert_eq!(response.status(), 200);
    let cookies = set_cookies(response.headers());
    let body: Value = response.json().await.unwrap();
    assert!(body["token"].is_string() && body["refreshToken"].is_string());
    assert_eq!(body["expiresIn"], 900);
    assert_eq!(body["user"]["id"], user_id.to_string());
    assert_eq!(body["user"]["email"], "ana@acme.test");
    assert_eq!(body["user"]["role"], "analyst");
    assert_eq!(body["user"]["tenantSlug"], "acme");
    assert!(body["user"]["tenantId"].is_string());

    let claims = claims_of(body["token"].as_str().unwrap());
    for claim in [
        "sub",
        "tenantId",
        "tenantSlug",
        "role",
        "exp",
        "iat",
        "jti",
        "sid",
    ] {
        assert!(!claims[claim].is_null(), "claim {claim}");
    }
    assert_eq!(claims["sub"], user_id.to_string());

    let token = find_cookie(&cookies, "token");
    assert_eq!(token.value(), body["token"]);
    assert_eq!(token.path(), Some("/"));
    assert_eq!(token.http_only(), Some(true));
    let refresh = find_cookie(&cookies, "refreshToken");
    assert_eq!(refresh.value(), body["refreshToken"]);
    assert_eq!(refresh.path(), Some("/api/v1/auth"));
    assert_eq!(refresh.http_only(), Some(true));

    // The refresh token is stored hashed, never as sent.
    let raw = body["refreshToken"].as_str().unwrap();
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE token_hash = convert_to($1, 'UTF8')",
    )
    .bind(raw)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_whole_family() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let bystander = app.login(&session.email).await;

    let response = refresh_with(&app, &session.refresh_token).await;
    assert_eq!(response.status(), 200);
    let first: Value = response.json().await.unwrap();
    let r1 = first["refreshToken"].as_str().unwrap().to_owned();
    let t1 = first["token"].as_str().unwrap().to_owned();
    assert_ne!(r1, session.refresh_token, "a new refresh token");
    assert_eq!(first["user"]["id"], session.user_id.to_string());
    assert_eq!(first["expiresIn"], 900);
    assert_eq!(me(&app, Cred::Bearer(&t1)).await.status(), 200);

    let response = refresh_with(&app, &r1).await;
    assert_eq!(response.status(), 200);
    let second: Value = response.json().await.unwrap();
    let r2 = second["refreshToken"].as_str().unwrap().to_owned();
    let t2 = second["token"].as_str().unwrap().to_owned();
    assert_ne!(r2, r1);
    assert_eq!(me(&app, Cred::Bearer(&t2)).await.status(), 200);

    // The first, already used, comes back: someone copied it.
    let tokens = count(&app, "refresh_tokens").await;
    let body = unauthorized(refresh_with(&app, &session.refresh_token).await).await;
    assert!(!body.to_string().contains(&session.email));
    assert_eq!(
        count(&app, "refresh_tokens").await,
        tokens,
        "nothing issued"
    );

    // The newest of the family is now refused too, and so is every access token.
    unauthorized(refresh_with(&app, &r2).await).await;
    for token in [&session.token, &t1, &t2] {
        unauthorized(me(&app, Cred::Bearer(token)).await).await;
    }
    let sid: Uuid = claims_of(&t2)["sid"].as_str().unwrap().parse().unwrap();
    assert_eq!(session_revoked(&app, sid).await.as_deref(), Some("reuse"));

    // Another session of the same person is not that family.
    assert_eq!(me(&app, Cred::Bearer(&bystander.token)).await.status(), 200);
    assert_eq!(
        refresh_with(&app, &bystander.refresh_token).await.status(),
        200
    );
}

#[tokio::test]
async fn refresh_works_from_the_cookie_alone() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Viewer).await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .header("Cookie", format!("refreshToken={}", session.refresh_token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookies = set_cookies(response.headers());
    let body: Value = response.json().await.unwrap();
    let next = body["refreshToken"].as_str().unwrap();
    assert_ne!(next, session.refresh_token);
    assert_eq!(find_cookie(&cookies, "refreshToken").value(), next);
    assert_eq!(
        find_cookie(&cookies, "token").value(),
        body["token"].as_str().unwrap()
    );
    assert_eq!(
        me(&app, Cred::Cookie(body["token"].as_str().unwrap()))
            .await
            .status(),
        200
    );
    // The cookie's token is now used.
    let response = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .header("Cookie", format!("refreshToken={}", session.refresh_token))
        .send()
        .await
        .unwrap();
    unauthorized(response).await;
}

#[tokio::test]
async fn logout_clears_both_cookies_and_revokes_the_session() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    // Cookies only, as a browser would send them.
    let response = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .header(
            "Cookie",
            format!(
                "token={}; refreshToken={}",
                session.token, session.refresh_token
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let cookies = set_cookies(response.headers());
    for (name, path) in [("token", "/"), ("refreshToken", "/api/v1/auth")] {
        let cookie = find_cookie(&cookies, name);
        assert_eq!(cookie.value(), "", "{name} emptied");
        assert_eq!(cookie.path(), Some(path), "{name} cleared on its own path");
        let max_age_zero = cookie.max_age() == Some(cookie::time::Duration::ZERO);
        let expired = cookie
            .expires_datetime()
            .is_some_and(|at| at < cookie::time::OffsetDateTime::now_utc());
        assert!(max_age_zero || expired, "{name} expires now: {cookie}");
    }
    unauthorized(me(&app, Cred::Bearer(&session.token)).await).await;
    unauthorized(refresh_with(&app, &session.refresh_token).await).await;
    let sid: Uuid = claims_of(&session.token)["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(session_revoked(&app, sid).await.as_deref(), Some("logout"));
}

#[tokio::test]
async fn logout_with_only_the_refresh_token_in_the_body_revokes_its_session() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .json(&json!({"refreshToken": session.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    unauthorized(me(&app, Cred::Bearer(&session.token)).await).await;
    unauthorized(refresh_with(&app, &session.refresh_token).await).await;
}

#[tokio::test]
async fn an_unknown_or_missing_refresh_token_is_a_401_problem() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let tokens = count(&app, "refresh_tokens").await;
    for token in [
        "unknown".to_owned(),
        "".to_owned(),
        b64(&[0u8; 32]),
        session.token.clone(),
        format!("{}x", session.refresh_token),
        "' OR 1=1 --".to_owned(),
    ] {
        unauthorized(refresh_with(&app, &token).await).await;
    }
    let response = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .send()
        .await
        .unwrap();
    unauthorized(response).await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    unauthorized(response).await;
    assert_eq!(count(&app, "refresh_tokens").await, tokens);
    // None of that hurt the real session.
    assert_eq!(
        refresh_with(&app, &session.refresh_token).await.status(),
        200
    );
}

#[tokio::test]
async fn change_password_ends_other_sessions_and_refuses_wrong_or_weak_input() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let other = app.login(&session.email).await;
    let path = "/api/v1/auth/change-password";
    let before = password_hash(&app, session.user_id).await;

    let response = request(&app, Method::POST, path, Cred::Bearer(&session.token))
        .json(&json!({"currentPassword": "not my password!!", "newPassword": "a brand new passphrase"}))
        .send()
        .await
        .unwrap();
    problem(response, 403).await;
    let response = request(&app, Method::POST, path, Cred::Bearer(&session.token))
        .json(&json!({"currentPassword": common::PASSWORD, "newPassword": "short"}))
        .send()
        .await
        .unwrap();
    let body = problem(response, 422).await;
    assert_eq!(body["errors"][0]["field"], "newPassword");
    assert_eq!(
        password_hash(&app, session.user_id).await,
        before,
        "password unchanged"
    );
    assert_eq!(me(&app, Cred::Bearer(&other.token)).await.status(), 200);

    let response = request(&app, Method::POST, path, Cred::Bearer(&session.token))
        .json(
            &json!({"currentPassword": common::PASSWORD, "newPassword": "a brand new passphrase"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_ne!(password_hash(&app, session.user_id).await, before);
    assert_eq!(me(&app, Cred::Bearer(&session.token)).await.status(), 200);
    unauthorized(me(&app, Cred::Bearer(&other.token)).await).await;
    unauthorized(refresh_with(&app, &other.refresh_token).await).await;
    unauthorized(login_raw(&app, &session.email, common::PASSWORD).await).await;
    assert_eq!(
        login_raw(&app, &session.email, "a brand new passphrase")
            .await
            .status(),
        200
    );
}

// ------------------------------------------------------------------- login ---

/// A problem body with its per-request parts blanked, as raw text.
async fn normalized_problem(response: Response) -> String {
    let status = response.status().as_u16();
    let url = response.url().path().to_owned();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = assert_problem_parts(&url, &headers, &text, status);
    text.replace(body["requestId"].as_str().unwrap(), "<requestId>")
        .replace(body["instance"].as_str().unwrap(), "<instance>")
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_and_take_the_same() {
    let app = common::spawn_app().await;
    app.user("acme", "known@acme.test", Role::Analyst).await;
    let sessions = count(&app, "sessions").await;

    let wrong = login_raw(&app, "known@acme.test", "wrong password here").await;
    assert_eq!(wrong.status(), 401);
    let unknown = login_raw(&app, "nobody@acme.test", "wrong password here").await;
    assert_eq!(unknown.status(), 401);
    let wrong = normalized_problem(wrong).await;
    assert_eq!(wrong, normalized_problem(unknown).await);
    assert!(!wrong.contains("known@acme.test"));

    // Alternate the two so that load from other tests hits both alike.
    let (mut wrong_times, mut unknown_times) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(
            login_raw(&app, "known@acme.test", "wrong password here")
                .await
                .status(),
            401
        );
        wrong_times.push(started.elapsed());
        let started = Instant::now();
        assert_eq!(
            login_raw(&app, "nobody@acme.test", "wrong password here")
                .await
                .status(),
            401
        );
        unknown_times.push(started.elapsed());
    }
    let (wrong, unknown) = (median(wrong_times), median(unknown_times));
    let (fast, slow) = if wrong < unknown {
        (wrong, unknown)
    } else {
        (unknown, wrong)
    };
    assert!(
        slow <= fast * 3,
        "wrong password {wrong:?} vs unknown email {unknown:?}: argon2 must run in both"
    );
    assert_eq!(count(&app, "sessions").await, sessions, "no session made");
}

#[tokio::test]
async fn login_emails_are_case_insensitive() {
    let app = common::spawn_app().await;
    let id = app.user("acme", "Mixed.Case@Acme.test", Role::Viewer).await;
    for email in [
        "mixed.case@acme.test",
        "MIXED.CASE@ACME.TEST",
        "  Mixed.Case@Acme.Test ",
    ] {
        let response = login_raw(&app, email, common::PASSWORD).await;
        assert_eq!(response.status(), 200, "{email:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["user"]["id"], id.to_string());
        assert_eq!(body["user"]["email"], "mixed.case@acme.test");
    }
    // The password is not.
    unauthorized(
        login_raw(
            &app,
            "mixed.case@acme.test",
            &common::PASSWORD.to_uppercase(),
        )
        .await,
    )
    .await;
}

// ------------------------------------------------------------- rate limits ---

fn header_number(headers: &HeaderMap, name: &str) -> u64 {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("{name} is present"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is a number"))
}

fn assert_rate_limit_headers(headers: &HeaderMap) {
    for name in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        header_number(headers, name);
    }
}

#[tokio::test]
async fn the_fourth_login_from_one_address_within_the_window_is_a_429_problem() {
    let app = common::spawn_app_with(|config| config.rate_limit_auth = 3).await;
    app.user("acme", "ana@acme.test", Role::Analyst).await;
    let session = app.login("ana@acme.test").await;
    for password in ["wrong one number 1", common::PASSWORD] {
        let response = login_raw(&app, "ana@acme.test", password).await;
        assert_eq!(header_number(response.headers(), "ratelimit-limit"), 3);
        assert_ne!(response.status(), 429);
    }
    let sessions = count(&app, "sessions").await;
    let response = login_raw(&app, "ana@acme.test", common::PASSWORD).await;
    let headers = response.headers().clone();
    problem(response, 429).await;
    assert!(header_number(&headers, "retry-after") >= 1);
    assert_eq!(header_number(&headers, "ratelimit-remaining"), 0);
    assert_eq!(header_number(&headers, "ratelimit-limit"), 3);
    assert!(header_number(&headers, "ratelimit-reset") >= 1);
    assert_eq!(count(&app, "sessions").await, sessions, "no session made");

    // Refresh shares the address's budget; other routes do not.
    let response = refresh_with(&app, &session.refresh_token).await;
    assert!(header_number(response.headers(), "retry-after") >= 1);
    problem(response, 429).await;
    assert_eq!(me(&app, Cred::Bearer(&session.token)).await.status(), 200);
}

#[tokio::test]
async fn rate_limit_headers_are_on_a_200_a_404_a_401_and_a_problem() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Viewer).await;
    let responses = [
        app.client.get(app.url("/health")).send().await.unwrap(),
        me(&app, Cred::Bearer(&session.token)).await,
        app.client
            .get(app.url("/api/v1/nothing-here"))
            .send()
            .await
            .unwrap(),
        me(&app, Cred::None).await,
        login_raw(&app, &session.email, "wrong password here").await,
    ];
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 404, 401, 401]);
    for response in &responses {
        assert_rate_limit_headers(response.headers());
        assert!(response.headers().contains_key("x-request-id"));
    }
    // The remaining budget counts down.
    let first = header_number(
        me(&app, Cred::Bearer(&session.token)).await.headers(),
        "ratelimit-remaining",
    );
    let second = header_number(
        me(&app, Cred::Bearer(&session.token)).await.headers(),
        "ratelimit-remaining",
    );
    assert!(second < first, "{second} < {first}");
}

#[tokio::test]
async fn one_tenant_using_up_its_budget_does_not_limit_another() {
    let app = common::spawn_app_with(|config| config.rate_limit_tenant = 5).await;
    let a = app.signed_in("acme", Role::Analyst).await;
    let a2 = app.signed_in("acme", Role::Viewer).await;
    let b = app.signed_in("globex", Role::Analyst).await;
    for n in 1..=5 {
        let who = if n % 2 == 0 { &a2 } else { &a };
        let response = me(&app, Cred::Bearer(&who.token)).await;
        assert_eq!(response.status(), 200, "request {n}");
        assert_eq!(
            header_number(response.headers(), "ratelimit-remaining"),
            5 - n
        );
    }
    // The sixth, by either person of the tenant, is refused.
    for who in [&a, &a2] {
        let response = me(&app, Cred::Bearer(&who.token)).await;
        let headers = response.headers().clone();
        problem(response, 429).await;
        assert!(header_number(&headers, "retry-after") >= 1);
        assert_eq!(header_number(&headers, "ratelimit-remaining"), 0);
    }
    // The other tenant is served.
    let response = me(&app, Cred::Bearer(&b.token)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header_number(response.headers(), "ratelimit-remaining"), 4);
}

// ---------------------------------------------------------------- API keys ---

#[tokio::test]
async fn an_api_key_is_shown_once_stored_hashed_and_works_as_x_api_key_or_bearer() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let response = request(
        &app,
        Method::POST,
        "/api/v1/api-keys",
        Cred::Bearer(&session.token),
    )
    .json(&json!({"name": "  gitlab ci  ", "scopes": ["scans:write", "scans:read", "scans:read"]}))
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let prefix = created["prefix"].as_str().unwrap();
    assert!(
        key.starts_with(&format!("vlk_{prefix}_")),
        "vlk_<prefix>_<secret>: {key}"
    );
    assert_eq!(created["name"], "gitlab ci");
    assert_eq!(created["createdBy"], session.user_id.to_string());
    assert_eq!(created["scopes"], json!(["scans:read", "scans:write"]));
    assert!(created["revokedAt"].is_null());

    for cred in [Cred::ApiKey(&key), Cred::Bearer(&key)] {
        let response = me(&app, cred).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["id"], session.user_id.to_string());
        assert_eq!(body["role"], "analyst");
    }

    // Listed without the key; the database holds no copy of it.
    let response = request(
        &app,
        Method::GET,
        "/api/v1/api-keys",
        Cred::Bearer(&session.token),
    )
    .send()
    .await
    .unwrap();
    let text = response.text().await.unwrap();
    assert!(!text.contains(&key));
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed["data"][0]["id"], created["id"]);
    assert!(listed["data"][0].get("key").is_none());
    let secret = key.rsplit('_').next().unwrap();
    let row: (Vec<u8>, String) = sqlx::query_as(
        "SELECT secret_hash, row_to_json(k)::text FROM api_keys k WHERE prefix = $1",
    )
    .bind(prefix)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_ne!(row.0, secret.as_bytes());
    assert!(!row.1.contains(secret));
}

#[tokio::test]
async fn a_key_with_a_known_prefix_but_the_wrong_secret_is_refused() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let key = app.api_key(&session, &["scans:read"]).await;
    assert_eq!(me(&app, Cred::ApiKey(&key)).await.status(), 200);
    let (head, secret) = key.rsplit_once('_').unwrap();
    let mut wrong: Vec<char> = secret.chars().collect();
    wrong[0] = if wrong[0] == 'a' { 'b' } else { 'a' };
    let forged = format!("{head}_{}", wrong.into_iter().collect::<String>());
    assert_refused_everywhere(&app, &session, Cred::ApiKey(&forged)).await;
    assert_refused_everywhere(&app, &session, Cred::Bearer(&forged)).await;
    assert_eq!(me(&app, Cred::ApiKey(&key)).await.status(), 200);
}

#[tokio::test]
async fn api_keys_are_refused_on_every_people_only_route_whatever_their_scopes() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let all = [
        "scans:read",
        "scans:write",
        "findings:read",
        "findings:write",
        "dashboard:read",
        "audit:read",
    ];
    let (key_id, key) = key_with_id(&app, &admin, &all).await;
    let users = users_snapshot(&app).await;
    let keys = keys_snapshot(&app).await;
    for route in people_only_routes() {
        let id = if route.path.starts_with("/api/v1/api-keys") {
            key_id.clone()
        } else {
            admin.user_id.to_string()
        };
        for cred in [Cred::ApiKey(&key), Cred::Bearer(&key)] {
            let response = send(&app, &route, &route.with_id(&id), cred).await;
            problem(response, 403).await;
        }
    }
    assert_eq!(users_snapshot(&app).await, users);
    assert_eq!(keys_snapshot(&app).await, keys);
    assert_eq!(me(&app, Cred::ApiKey(&key)).await.status(), 200);
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_the_very_next_request() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let (id, key) = key_with_id(&app, &session, &["scans:read"]).await;
    let (_, other) = key_with_id(&app, &session, &["scans:read"]).await;
    // Cached as valid right before.
    assert_eq!(me(&app, Cred::ApiKey(&key)).await.status(), 200);
    assert_eq!(me(&app, Cred::Bearer(&key)).await.status(), 200);
    let response = request(
        &app,
        Method::DELETE,
        &format!("/api/v1/api-keys/{id}"),
        Cred::Bearer(&session.token),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 204);
    unauthorized(me(&app, Cred::ApiKey(&key)).await).await;
    unauthorized(me(&app, Cred::Bearer(&key)).await).await;
    assert_eq!(me(&app, Cred::ApiKey(&other)).await.status(), 200);

    let listed: Value = request(
        &app,
        Method::GET,
        "/api/v1/api-keys",
        Cred::Bearer(&session.token),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let revoked = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("a revoked key stays listed");
    assert!(revoked["revokedAt"].is_string());
}

#[tokio::test]
async fn a_key_expired_in_the_database_stops_working_within_the_cache_ttl() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let (id, key) = key_with_id(&app, &session, &["scans:read"]).await;
    assert_eq!(me(&app, Cred::ApiKey(&key)).await.status(), 200);
    sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let response = me(&app, Cred::ApiKey(&key)).await;
        if response.status() == 401 {
            unauthorized(response).await;
            break;
        }
        assert_eq!(response.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "an expired key still works after 6 s (the cache TTL is 5 s)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    unauthorized(me(&app, Cred::Bearer(&key)).await).await;
}

#[tokio::test]
async fn a_key_cannot_be_created_already_expired_or_malformed() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let keys = count(&app, "api_keys").await;
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    for (body, field) in [
        (
            json!({"name": "ci", "scopes": ["scans:read"], "expiresAt": past}),
            "expiresAt",
        ),
        (json!({"name": "", "scopes": ["scans:read"]}), "name"),
        (json!({"name": "   ", "scopes": ["scans:read"]}), "name"),
        (
            json!({"name": "x".repeat(101), "scopes": ["scans:read"]}),
            "name",
        ),
        (json!({"name": "ci", "scopes": []}), "scopes"),
    ] {
        let response = request(
            &app,
            Method::POST,
            "/api/v1/api-keys",
            Cred::Bearer(&session.token),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
        let problem = problem(response, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
    }
    for body in [
        json!({"name": "ci", "scopes": ["root"]}),
        json!({"name": "ci", "scopes": "scans:read"}),
        json!({"name": "ci"}),
        json!({"name": "ci", "scopes": ["scans:read"], "expiresAt": "tomorrow"}),
    ] {
        let response = request(
            &app,
            Method::POST,
            "/api/v1/api-keys",
            Cred::Bearer(&session.token),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
        let problem = problem(response, 422).await;
        assert!(problem["errors"].as_array().is_some_and(|e| !e.is_empty()));
    }
    assert_eq!(count(&app, "api_keys").await, keys);
}

#[tokio::test]
async fn a_key_may_not_carry_a_scope_beyond_its_creators_role() {
    let app = common::spawn_app().await;
    let keys = count(&app, "api_keys").await;
    for (role, scope) in [
        (Role::Analyst, "audit:read"),
        (Role::SecurityLead, "audit:read"),
        (Role::Viewer, "scans:write"),
        (Role::Viewer, "findings:write"),
        (Role::Viewer, "audit:read"),
    ] {
        let session = app.signed_in("acme", role).await;
        let response = request(
            &app,
            Method::POST,
            "/api/v1/api-keys",
            Cred::Bearer(&session.token),
        )
        .json(&json!({"name": "ci", "scopes": ["scans:read", scope]}))
        .send()
        .await
        .unwrap();
        problem(response, 403).await;
    }
    assert_eq!(count(&app, "api_keys").await, keys, "no key made");
    // What each role may grant.
    let viewer = app.signed_in("acme", Role::Viewer).await;
    app.api_key(&viewer, &["scans:read", "findings:read", "dashboard:read"])
        .await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    app.api_key(&analyst, &["scans:write", "findings:write"])
        .await;
    let admin = app.signed_in("acme", Role::Admin).await;
    app.api_key(&admin, &["audit:read"]).await;
}

#[tokio::test]
async fn demoting_the_creator_demotes_the_key_with_them() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let key = app.api_key(&analyst, &["scans:read", "scans:write"]).await;
    let body: Value = me(&app, Cred::ApiKey(&key)).await.json().await.unwrap();
    assert_eq!(body["role"], "analyst");
    let response = patch_user(&app, &admin, analyst.user_id, json!({"role": "viewer"})).await;
    assert_eq!(response.status(), 200);
    // At once: the key still works, but as a viewer (scans:write is now useless;
    // a scans:write route, when it exists, must answer 403).
    let response = me(&app, Cred::ApiKey(&key)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["role"], "viewer");
    let body: Value = me(&app, Cred::Bearer(&analyst.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["role"], "viewer");
    // And as a viewer they can no longer grant scans:write.
    let response = request(
        &app,
        Method::POST,
        "/api/v1/api-keys",
        Cred::Bearer(&analyst.token),
    )
    .json(&json!({"name": "ci", "scopes": ["scans:write"]}))
    .send()
    .await
    .unwrap();
    problem(response, 403).await;
}

#[tokio::test]
async fn deactivating_the_creator_disables_their_keys_at_once() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let key = app.api_key(&analyst, &["scans:read"]).await;
    let admin_key = app.api_key(&admin, &["scans:read"]).await;
    assert_eq!(me(&app, Cred::ApiKey(&key)).await.status(), 200);
    let response = patch_user(&app, &admin, analyst.user_id, json!({"active": false})).await;
    assert_eq!(response.status(), 200);
    unauthorized(me(&app, Cred::ApiKey(&key)).await).await;
    assert_eq!(me(&app, Cred::ApiKey(&admin_key)).await.status(), 200);
}

// -------------------------------------------------------- tenant isolation ---

struct TenantA {
    admin: Session,
    analyst: Session,
    key_id: String,
    key: String,
}

async fn tenant_a(app: &TestApp) -> TenantA {
    let admin = app.signed_in("acme", Role::Admin).await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let (key_id, key) = key_with_id(app, &analyst, &["scans:read"]).await;
    TenantA {
        admin,
        analyst,
        key_id,
        key,
    }
}

impl TenantA {
    fn id_of(&self, which: OfA) -> String {
        match which {
            OfA::Analyst => self.analyst.user_id.to_string(),
            OfA::Admin => self.admin.user_id.to_string(),
            OfA::Key => self.key_id.clone(),
        }
    }
}

#[tokio::test]
async fn another_tenants_resources_are_404_exactly_like_missing_ones() {
    let app = common::spawn_app().await;
    let a = tenant_a(&app).await;
    let b_admin = app.signed_in("globex", Role::Admin).await;
    let b_analyst = app.signed_in("globex", Role::Analyst).await;
    let users = users_snapshot(&app).await;
    let keys = keys_snapshot(&app).await;

    for (route, which) in tenant_a_resources() {
        for b in [&b_admin, &b_analyst] {
            let foreign = send(
                &app,
                &route,
                &route.with_id(&a.id_of(which)),
                Cred::Bearer(&b.token),
            )
            .await;
            let missing = send(
                &app,
                &route,
                &route.with_id(&Uuid::now_v7().to_string()),
                Cred::Bearer(&b.token),
            )
            .await;
            let (foreign_status, foreign_body) = client_error(foreign).await;
            let (missing_status, missing_body) = client_error(missing).await;
            assert_ne!(foreign_status, 200);
            assert_eq!(
                (foreign_status, &foreign_body["detail"]),
                (missing_status, &missing_body["detail"]),
                "{} {} of tenant A ({which:?}) must look missing to tenant B",
                route.method,
                route.path
            );
            if b.user_id == b_admin.user_id {
                assert_eq!(foreign_status, 404, "{} {}", route.method, route.path);
            }
            let text = foreign_body.to_string();
            assert!(!text.contains(&a.analyst.email) && !text.contains(&a.admin.email));
        }
    }
    assert_eq!(
        users_snapshot(&app).await,
        users,
        "tenant A's users unchanged"
    );
    assert_eq!(keys_snapshot(&app).await, keys, "tenant A's keys unchanged");
    assert_eq!(me(&app, Cred::ApiKey(&a.key)).await.status(), 200);
    assert_eq!(me(&app, Cred::Bearer(&a.analyst.token)).await.status(), 200);
    assert_eq!(me(&app, Cred::Bearer(&a.admin.token)).await.status(), 200);
}

#[tokio::test]
async fn listings_never_show_another_tenants_users_or_keys() {
    let app = common::spawn_app().await;
    let a = tenant_a(&app).await;
    app.signed_in("acme", Role::Viewer).await;
    let b_admin = app.signed_in("globex", Role::Admin).await;
    let (b_key_id, _) = key_with_id(&app, &b_admin, &["scans:read"]).await;
    let a_keys: Vec<String> = sqlx::query_scalar(
        "SELECT prefix FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE t.slug = 'acme'",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();

    // A's own listing has a next page; its cursor, replayed by B, shows B's only.
    let response = request(
        &app,
        Method::GET,
        "/api/v1/admin/users?limit=1",
        Cred::Bearer(&a.admin.token),
    )
    .send()
    .await
    .unwrap();
    let page: Value = response.json().await.unwrap();
    let a_cursor = page["meta"]["nextCursor"].as_str().unwrap().to_owned();
    assert_eq!(page["meta"]["total"], 3);

    for path in [
        "/api/v1/admin/users".to_owned(),
        "/api/v1/admin/users?limit=200".to_owned(),
        format!("/api/v1/admin/users?cursor={a_cursor}"),
        "/api/v1/admin/users?page=2&limit=1".to_owned(),
    ] {
        let response = request(&app, Method::GET, &path, Cred::Bearer(&b_admin.token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let text = response.text().await.unwrap();
        for secret in [&a.admin.email, &a.analyst.email] {
            assert!(!text.contains(secret.as_str()), "{path} shows {secret}");
        }
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["meta"]["total"], 1, "{path}");
        for user in body["data"].as_array().unwrap() {
            assert_eq!(user["id"], b_admin.user_id.to_string());
        }
    }

    let response = request(
        &app,
        Method::GET,
        "/api/v1/api-keys?limit=200",
        Cred::Bearer(&b_admin.token),
    )
    .send()
    .await
    .unwrap();
    let text = response.text().await.unwrap();
    assert!(!text.contains(&a.key_id));
    for prefix in &a_keys {
        assert!(!text.contains(prefix.as_str()));
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["meta"]["total"], 1);
    assert_eq!(body["data"][0]["id"], b_key_id);
}

#[tokio::test]
async fn the_tenant_comes_from_the_credential_never_from_the_body() {
    let app = common::spawn_app().await;
    let a = tenant_a(&app).await;
    let b_admin = app.signed_in("globex", Role::Admin).await;
    let users = users_snapshot(&app).await;
    let response = request(
        &app,
        Method::POST,
        "/api/v1/admin/users",
        Cred::Bearer(&b_admin.token),
    )
    .json(&json!({
        "email": "planted@acme.test",
        "password": "another good passphrase",
        "role": "admin",
        "tenantId": a.admin.tenant_id,
        "tenantSlug": "acme",
    }))
    .send()
    .await
    .unwrap();
    if response.status() == 201 {
        let body: Value = response.json().await.unwrap();
        let tenant: Uuid = sqlx::query_scalar("SELECT tenant_id FROM users WHERE id = $1::uuid")
            .bind(body["id"].as_str().unwrap())
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(tenant, b_admin.tenant_id, "created in the caller's tenant");
    } else {
        problem(response, 422).await;
        assert_eq!(users_snapshot(&app).await, users);
    }
}

// ------------------------------------------------------------------- admin ---

#[tokio::test]
async fn admins_create_list_and_update_users_of_their_tenant() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let response = request(&app, Method::POST, "/api/v1/admin/users", Cred::Bearer(&admin.token))
        .json(&json!({"email": " New.Person@Acme.test", "password": "another good passphrase", "role": "security_lead"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/admin/users/{}", body["id"].as_str().unwrap())
    );
    assert_eq!(body["email"], "new.person@acme.test");
    assert_eq!(body["role"], "security_lead");
    assert_eq!(body["active"], true);
    assert!(body.get("passwordHash").is_none() && body.get("password").is_none());

    let response = login_raw(&app, "new.person@acme.test", "another good passphrase").await;
    assert_eq!(response.status(), 200);
    let person: Value = response.json().await.unwrap();
    assert_eq!(person["user"]["tenantId"], admin.tenant_id.to_string());
    let person: Uuid = person["user"]["id"].as_str().unwrap().parse().unwrap();

    let response = patch_user(&app, &admin, person, json!({"role": "viewer"})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["role"], "viewer");

    let list: Value = request(
        &app,
        Method::GET,
        "/api/v1/admin/users",
        Cred::Bearer(&admin.token),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(list["meta"]["total"], 2);
    assert_eq!(list["meta"]["limit"], 50);
    assert_eq!(list["meta"]["page"], 1);
    assert_eq!(list["meta"]["totalPages"], 1);
    assert!(list["meta"]["nextCursor"].is_null());
    let text = list.to_string();
    assert!(!text.contains("argon2"), "no password hashes in listings");
}

#[tokio::test]
async fn non_admins_get_403_on_every_admin_route() {
    let app = common::spawn_app().await;
    app.signed_in("acme", Role::Admin).await;
    let users = users_snapshot(&app).await;
    for role in [Role::SecurityLead, Role::Analyst, Role::Viewer] {
        let session = app.signed_in("acme", role).await;
        let users = users_snapshot(&app).await;
        for route in admin_routes() {
            let path = route.with_id(&session.user_id.to_string());
            let response = send(&app, &route, &path, Cred::Bearer(&session.token)).await;
            problem(response, 403).await;
        }
        assert_eq!(
            users_snapshot(&app).await,
            users,
            "{role:?} changed nothing"
        );
        let body: Value = me(&app, Cred::Bearer(&session.token))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["role"], role.to_string(), "still {role:?}");
    }
    assert!(users_snapshot(&app).await.len() > users.len());
}

#[tokio::test]
async fn the_last_active_admin_can_be_neither_deactivated_nor_demoted() {
    let app = common::spawn_app().await;
    let first = app.signed_in("acme", Role::Admin).await;
    // An inactive admin does not count.
    let dormant = app.user("acme", "dormant@acme.test", Role::Admin).await;
    let response = patch_user(&app, &first, dormant, json!({"active": false})).await;
    assert_eq!(response.status(), 200);

    let users = users_snapshot(&app).await;
    for body in [
        json!({"active": false}),
        json!({"role": "viewer"}),
        json!({"role": "security_lead"}),
        json!({"role": "viewer", "active": false}),
    ] {
        let response = patch_user(&app, &first, first.user_id, body.clone()).await;
        let problem = problem(response, 409).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("admin"),
            "{body}"
        );
    }
    assert_eq!(users_snapshot(&app).await, users, "nothing changed");
    assert_eq!(me(&app, Cred::Bearer(&first.token)).await.status(), 200);

    // With a second active admin, the first may step down; then the second is last.
    let second = app.signed_in("acme", Role::Admin).await;
    let response = patch_user(&app, &second, first.user_id, json!({"role": "analyst"})).await;
    assert_eq!(response.status(), 200);
    let users = users_snapshot(&app).await;
    problem(
        patch_user(&app, &second, second.user_id, json!({"active": false})).await,
        409,
    )
    .await;
    problem(
        patch_user(&app, &second, second.user_id, json!({"role": "viewer"})).await,
        409,
    )
    .await;
    assert_eq!(users_snapshot(&app).await, users);
}

#[tokio::test]
async fn a_taken_email_is_a_409_whatever_its_case() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    app.user("acme", "taken@acme.test", Role::Viewer).await;
    app.user("globex", "elsewhere@globex.test", Role::Viewer)
        .await;
    let users = users_snapshot(&app).await;
    for email in [
        "taken@acme.test",
        "TAKEN@Acme.Test",
        " taken@acme.test ",
        admin.email.as_str(),
        "elsewhere@globex.test",
    ] {
        let response = request(
            &app,
            Method::POST,
            "/api/v1/admin/users",
            Cred::Bearer(&admin.token),
        )
        .json(&json!({"email": email, "password": "another good passphrase", "role": "viewer"}))
        .send()
        .await
        .unwrap();
        problem(response, 409).await;
    }
    assert_eq!(users_snapshot(&app).await, users);
}

#[tokio::test]
async fn invalid_new_users_are_422_problems_naming_the_field() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let users = users_snapshot(&app).await;
    for (body, field) in [
        (
            json!({"email": "weak@acme.test", "password": "short", "role": "viewer"}),
            "password",
        ),
        (
            json!({"email": "weak@acme.test", "password": "aaaaaaaaaaaaaaaa", "role": "viewer"}),
            "password",
        ),
        (
            json!({"email": "weak@acme.test", "password": "            ", "role": "viewer"}),
            "password",
        ),
        (
            json!({"email": "not-an-email", "password": "another good passphrase", "role": "viewer"}),
            "email",
        ),
        (
            json!({"email": "", "password": "another good passphrase", "role": "viewer"}),
            "email",
        ),
    ] {
        let response = request(
            &app,
            Method::POST,
            "/api/v1/admin/users",
            Cred::Bearer(&admin.token),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
        let problem = problem(response, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
        assert!(problem["errors"][0]["message"].is_string());
    }
    for body in [
        json!({"email": "x@acme.test", "password": "another good passphrase", "role": "superuser"}),
        json!({"email": "x@acme.test", "password": "another good passphrase", "role": "Admin"}),
        json!({"email": "x@acme.test", "password": "another good passphrase"}),
    ] {
        let response = request(
            &app,
            Method::POST,
            "/api/v1/admin/users",
            Cred::Bearer(&admin.token),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
        let problem = problem(response, 422).await;
        assert!(
            problem["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    assert_eq!(users_snapshot(&app).await, users);
}

#[tokio::test]
async fn invalid_patches_are_422_problems_and_change_nothing() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let users = users_snapshot(&app).await;
    for body in [
        json!({}),
        json!({"role": null, "active": null}),
        json!({"role": "superuser"}),
        json!({"active": "no"}),
        json!({"email": "new@acme.test"}),
        json!({"tenantId": Uuid::now_v7()}),
    ] {
        let response = patch_user(&app, &admin, analyst.user_id, body.clone()).await;
        let problem = problem(response, 422).await;
        assert!(
            problem["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    assert_eq!(users_snapshot(&app).await, users);
}

/// api.md: validation errors name the field. serde's message for an unknown
/// enum variant quotes the value in backticks before the field is reached.
#[tokio::test]
async fn an_unknown_role_is_a_422_naming_the_role_field() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let response = request(&app, Method::POST, "/api/v1/admin/users", Cred::Bearer(&admin.token))
        .json(&json!({"email": "x@acme.test", "password": "another good passphrase", "role": "superuser"}))
        .send()
        .await
        .unwrap();
    let body = problem(response, 422).await;
    assert_eq!(body["errors"][0]["field"], "role");
    let response = patch_user(&app, &admin, analyst.user_id, json!({"role": "superuser"})).await;
    let body = problem(response, 422).await;
    assert_eq!(body["errors"][0]["field"], "role");
}

/// api.md: malformed JSON is a 400, well-formed but invalid input a 422. serde_json
/// classifies a non-string where an enum is expected as a syntax error.
#[tokio::test]
async fn a_well_formed_body_with_a_number_for_an_enum_is_a_422_not_a_400() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let users = users_snapshot(&app).await;
    let keys = keys_snapshot(&app).await;
    let response = request(
        &app,
        Method::POST,
        "/api/v1/admin/users",
        Cred::Bearer(&admin.token),
    )
    .json(&json!({"email": "x@acme.test", "password": "another good passphrase", "role": 1}))
    .send()
    .await
    .unwrap();
    problem(response, 422).await;
    problem(
        patch_user(&app, &admin, analyst.user_id, json!({"role": 1})).await,
        422,
    )
    .await;
    let response = request(
        &app,
        Method::POST,
        "/api/v1/api-keys",
        Cred::Bearer(&admin.token),
    )
    .json(&json!({"name": "ci", "scopes": [1]}))
    .send()
    .await
    .unwrap();
    problem(response, 422).await;
    assert_eq!(users_snapshot(&app).await, users);
    assert_eq!(keys_snapshot(&app).await, keys);
}

#[tokio::test]
async fn an_invalid_or_unknown_id_in_the_path_is_a_404_problem() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let users = users_snapshot(&app).await;
    let keys = keys_snapshot(&app).await;
    let unknown = Uuid::now_v7().to_string();
    for id in [
        "not-a-uuid",
        "1",
        "00000000-0000-0000-0000-00000000000g",
        "%27%20OR%201%3D1%20--",
        &unknown,
    ] {
        for (method, path, body) in [
            (
                Method::PATCH,
                format!("/api/v1/admin/users/{id}"),
                Some(json!({"role": "viewer"})),
            ),
            (Method::DELETE, format!("/api/v1/api-keys/{id}"), None),
        ] {
            let mut builder = request(&app, method, &path, Cred::Bearer(&admin.token));
            if let Some(body) = body {
                builder = builder.json(&body);
            }
            problem(builder.send().await.unwrap(), 404).await;
        }
    }
    assert_eq!(users_snapshot(&app).await, users);
    assert_eq!(keys_snapshot(&app).await, keys);
}

// ------------------------------------------------------------------ bodies ---

fn oversized_json() -> String {
    let filler = "x".repeat(1024 * 1024 + 1);
    json!({"email": "a@acme.test", "password": filler, "refreshToken": "r"}).to_string()
}

#[tokio::test]
async fn a_body_over_one_mebibyte_to_login_is_a_413_problem() {
    let app = common::spawn_app().await;
    app.user("acme", "a@acme.test", Role::Viewer).await;
    let sessions = count(&app, "sessions").await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header(CONTENT_TYPE, "application/json")
        .body(oversized_json())
        .send()
        .await
        .unwrap();
    problem(response, 413).await;
    assert_eq!(count(&app, "sessions").await, sessions);
}

#[tokio::test]
async fn every_json_route_answers_a_body_over_one_mebibyte_with_a_413_problem() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let users = users_snapshot(&app).await;
    let keys = keys_snapshot(&app).await;
    for (method, path) in [
        (Method::POST, "/api/v1/auth/login".to_owned()),
        (Method::POST, "/api/v1/auth/refresh".to_owned()),
        (Method::POST, "/api/v1/auth/logout".to_owned()),
        (Method::POST, "/api/v1/auth/change-password".to_owned()),
        (Method::POST, "/api/v1/api-keys".to_owned()),
        (Method::POST, "/api/v1/admin/users".to_owned()),
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{}", admin.user_id),
        ),
    ] {
        let response = request(&app, method, &path, Cred::Bearer(&admin.token))
            .header(CONTENT_TYPE, "application/json")
            .body(oversized_json())
            .send()
            .await
            .unwrap();
        problem(response, 413).await;
    }
    assert_eq!(users_snapshot(&app).await, users);
    assert_eq!(keys_snapshot(&app).await, keys);
    assert_eq!(me(&app, Cred::Bearer(&admin.token)).await.status(), 200);
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let users = users_snapshot(&app).await;
    let sessions = count(&app, "sessions").await;
    for (method, path) in [
        (Method::POST, "/api/v1/auth/login".to_owned()),
        (Method::POST, "/api/v1/auth/refresh".to_owned()),
        (Method::POST, "/api/v1/api-keys".to_owned()),
        (Method::POST, "/api/v1/admin/users".to_owned()),
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{}", admin.user_id),
        ),
    ] {
        for body in [r#"{""#, "{'email': 'a'}", "not json", "{,}", "[", "nul"] {
            let response = request(&app, method.clone(), &path, Cred::Bearer(&admin.token))
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            problem(response, 400).await;
        }
    }
    assert_eq!(users_snapshot(&app).await, users);
    assert_eq!(count(&app, "sessions").await, sessions);
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_422_problem() {
    let app = common::spawn_app().await;
    let sessions = count(&app, "sessions").await;
    for body in [
        json!({"email": 5, "password": "x"}),
        json!({"email": "a@acme.test"}),
        json!({"email": ["a@acme.test"], "password": "x"}),
        json!([]),
        json!("a@acme.test"),
    ] {
        let response = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = problem(response, 422).await;
        assert!(
            problem["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        assert!(problem["errors"][0]["field"].is_string());
        assert!(problem["errors"][0]["message"].is_string());
    }
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": "a@acme.test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(response, 422).await["errors"][0]["field"],
        "password"
    );
    assert_eq!(count(&app, "sessions").await, sessions);
}

#[tokio::test]
async fn json_of_the_wrong_type_is_a_422_naming_the_field() {
    let app = common::spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": 5, "password": "x"}))
        .send()
        .await
        .unwrap();
    let body = problem(response, 422).await;
    assert_eq!(body["errors"][0]["field"], "email", "{body}");
}

#[tokio::test]
async fn a_wrong_content_type_is_a_415_problem() {
    let app = common::spawn_app().await;
    app.user("acme", "a@acme.test", Role::Viewer).await;
    let sessions = count(&app, "sessions").await;
    let body = json!({"email": "a@acme.test", "password": common::PASSWORD}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/xml"),
        None,
    ] {
        let mut builder = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .body(body.clone());
        if let Some(content_type) = content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        problem(builder.send().await.unwrap(), 415).await;
    }
    assert_eq!(count(&app, "sessions").await, sessions);
}

const HOSTILE: &[&str] = &[
    "' OR 1=1 --",
    "'; DROP TABLE users; --",
    "\" OR \"\"=\"",
    "1; SELECT pg_sleep(5)",
    "../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f",
    "%00",
    // A raw NUL is in its own (ignored, BUG) test below: it reaches PostgreSQL.
    "$(id)",
    "{{7*7}}",
];

fn encode_segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn injection_and_traversal_strings_are_4xx_problems_and_change_nothing() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let users = users_snapshot(&app).await;
    let keys = keys_snapshot(&app).await;
    let sessions = count(&app, "sessions").await;

    for hostile in HOSTILE {
        // As an email, to log in and to create a user.
        client_error_echoing(login_raw(&app, hostile, hostile).await, &[*hostile]).await;
        client_error_echoing(
            login_raw(&app, &format!("{hostile}@acme.test"), common::PASSWORD).await,
            &[*hostile],
        )
        .await;
        for email in [hostile.to_string(), format!("{hostile}@acme.test")] {
            let response = request(
                &app,
                Method::POST,
                "/api/v1/admin/users",
                Cred::Bearer(&admin.token),
            )
            .json(&json!({"email": email, "password": "another good passphrase", "role": hostile}))
            .send()
            .await
            .unwrap();
            client_error_echoing(response, &[*hostile]).await;
        }
        // As a refresh token.
        client_error_echoing(refresh_with(&app, hostile).await, &[*hostile]).await;
        // In query parameters, encoded and raw.
        for list in ["/api/v1/admin/users", "/api/v1/api-keys"] {
            for param in ["limit", "cursor", "page"] {
                let response = request(&app, Method::GET, list, Cred::Bearer(&admin.token))
                    .query(&[(param, hostile)])
                    .send()
                    .await
                    .unwrap();
                let (status, _) = client_error_echoing(response, &[*hostile]).await;
                assert_eq!(status, 400, "{list}?{param}={hostile:?}");
                if !hostile.contains(['\u{0}', '#', ' ', '"', '{', '}']) {
                    let url = format!("{list}?{param}={hostile}");
                    let response = request(&app, Method::GET, &url, Cred::Bearer(&admin.token))
                        .send()
                        .await
                        .unwrap();
                    client_error_echoing(response, &[*hostile]).await;
                }
            }
        }
        // In path segments, encoded (one segment) and raw.
        let mut segments = vec![encode_segment(hostile)];
        if !hostile.contains(['\u{0}', '#', ' ', '"', '{', '}', '?']) {
            segments.push(hostile.to_string());
        }
        for segment in segments {
            for (method, path, body) in [
                (
                    Method::PATCH,
                    format!("/api/v1/admin/users/{segment}"),
                    Some(json!({"active": false})),
                ),
                (Method::DELETE, format!("/api/v1/api-keys/{segment}"), None),
                (Method::GET, format!("/api/v1/{segment}"), None),
            ] {
                let mut builder = request(&app, method, &path, Cred::Bearer(&admin.token));
                if let Some(body) = body {
                    builder = builder.json(&body);
                }
                client_error_echoing(builder.send().await.unwrap(), &[*hostile, &segment]).await;
            }
            // The docs UI serves embedded files: a traversal finds nothing on disk.
            // (Its 404 is not a problem yet: see the ignored test below.)
            let response = request(
                &app,
                Method::GET,
                &format!("/api/docs/{segment}"),
                Cred::None,
            )
            .send()
            .await
            .unwrap();
            assert_eq!(response.status(), 404, "/api/docs/{segment}");
            let text = response.text().await.unwrap();
            assert!(!text.contains("root:") && !text.contains("[package]"));
        }
    }
    assert_eq!(users_snapshot(&app).await, users, "users unchanged");
    assert_eq!(keys_snapshot(&app).await, keys, "keys unchanged");
    assert_eq!(count(&app, "sessions").await, sessions, "no session made");
    assert_eq!(me(&app, Cred::Bearer(&admin.token)).await.status(), 200);
}

#[tokio::test]
async fn unknown_files_under_the_docs_ui_are_404_problems() {
    let app = common::spawn_app().await;
    for path in [
        "/api/docs/nothing.js",
        "/api/docs/..%2f..%2fCargo.toml",
        "/api/docs/%2e%2e%2f",
    ] {
        problem(app.client.get(app.url(path)).send().await.unwrap(), 404).await;
    }
}

/// PostgreSQL refuses NUL in text, so a NUL that reaches a query fails it; the
/// client must still get a 4xx, as for any other unknown email or invalid name.
#[tokio::test]
async fn a_nul_byte_in_a_string_is_a_4xx_never_a_500() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let users = users_snapshot(&app).await;
    let keys = keys_snapshot(&app).await;
    let sessions = count(&app, "sessions").await;

    // Refused as invalid input before any lookup, so it says nothing about
    // which emails exist.
    let nul = login_raw(&app, "nul\u{0}@acme.test", "wrong password here").await;
    assert_eq!(problem(nul, 422).await["errors"][0]["field"], "email");
    let response = request(
        &app,
        Method::POST,
        "/api/v1/admin/users",
        Cred::Bearer(&admin.token),
    )
    .json(&json!({"email": "nul\u{0}@acme.test", "password": "another good passphrase", "role": "viewer"}))
    .send()
    .await
    .unwrap();
    assert_eq!(problem(response, 422).await["errors"][0]["field"], "email");
    let response = request(
        &app,
        Method::POST,
        "/api/v1/api-keys",
        Cred::Bearer(&admin.token),
    )
    .json(&json!({"name": "ci\u{0}", "scopes": ["scans:read"]}))
    .send()
    .await
    .unwrap();
    assert_eq!(problem(response, 422).await["errors"][0]["field"], "name");

    assert_eq!(users_snapshot(&app).await, users);
    assert_eq!(keys_snapshot(&app).await, keys);
    assert_eq!(count(&app, "sessions").await, sessions);
}

#[tokio::test]
async fn out_of_range_paging_is_a_400_problem() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    for list in ["/api/v1/admin/users", "/api/v1/api-keys"] {
        for query in [
            "limit=201",
            "limit=0",
            "limit=-1",
            "limit=1.5",
            "limit=99999999999999999999",
            "page=0",
            "page=-1",
            "page=abc",
            "cursor=",
            "cursor=Zm9v",
            "cursor=WyJub3QgYSBkYXRlIiwieCJd",
        ] {
            let response = request(
                &app,
                Method::GET,
                &format!("{list}?{query}"),
                Cred::Bearer(&admin.token),
            )
            .send()
            .await
            .unwrap();
            problem(response, 400).await;
        }
        for query in ["limit=200", "limit=1", "page=1", "page=5"] {
            let response = request(
                &app,
                Method::GET,
                &format!("{list}?{query}"),
                Cred::Bearer(&admin.token),
            )
            .send()
            .await
            .unwrap();
            assert_eq!(response.status(), 200, "{list}?{query}");
        }
    }
}

// ------------------------------------------------------------- conventions ---

#[tokio::test]
async fn the_request_id_is_echoed_on_successes_and_problems_alike() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Viewer).await;
    let ok = request(
        &app,
        Method::GET,
        "/api/v1/auth/me",
        Cred::Bearer(&session.token),
    )
    .header("X-Request-ID", "trace-ok-1")
    .send()
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-request-id"], "trace-ok-1");
    let refused = request(
        &app,
        Method::GET,
        "/api/v1/admin/users",
        Cred::Bearer(&session.token),
    )
    .header("X-Request-ID", "trace-403-1")
    .send()
    .await
    .unwrap();
    assert_eq!(problem(refused, 403).await["requestId"], "trace-403-1");
    let unauthenticated = request(&app, Method::GET, "/api/v1/auth/me", Cred::None)
        .header("X-Request-ID", "trace-401-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        unauthorized(unauthenticated).await["requestId"],
        "trace-401-1"
    );
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_problems() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Admin).await;
    for cred in [Cred::None, Cred::Bearer(&session.token)] {
        for path in [
            "/api/v1/nothing",
            "/api/v1/admin",
            "/api/v2/auth/login",
            "/api/v1/auth/login/extra",
            "/API/V1/AUTH/ME",
        ] {
            problem(
                request(&app, Method::GET, path, cred).send().await.unwrap(),
                404,
            )
            .await;
        }
        for (method, path) in [
            (Method::GET, "/api/v1/auth/login"),
            (Method::DELETE, "/api/v1/auth/me"),
            (Method::PUT, "/api/v1/admin/users"),
            (Method::GET, "/api/v1/auth/logout"),
            (Method::POST, "/health"),
        ] {
            let body = problem(request(&app, method, path, cred).send().await.unwrap(), 405).await;
            assert!(body["type"]
                .as_str()
                .unwrap()
                .ends_with("method-not-allowed"));
        }
    }
}
