//! `/auth/*`: sessions for people.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::sessions::{self, Issued, SessionUser};
use crate::auth::{perm, AuthError, Authorized};
use crate::http::{ApiJson, AppState, Error};

pub const TAG: &str = "auth";
const REFRESH_PATH: &str = "/api/v1/auth";

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

fn session_cookies(state: &AppState, jar: CookieJar, issued: &Issued) -> CookieJar {
    let secure = state.config.cookie_secure;
    let token = Cookie::build(("token", issued.token.clone()))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .max_age(time_secs(state.config.jwt_expires_in.as_secs()));
    let refresh = Cookie::build(("refreshToken", issued.refresh_token.clone()))
        .path(REFRESH_PATH)
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .max_age(time_secs(state.config.jwt_refresh_expires_in.as_secs()));
    jar.add(token).add(refresh)
}

fn time_secs(seconds: u64) -> cookie::time::Duration {
    cookie::time::Duration::seconds(seconds as i64)
}

/// Expired replacements for both cookies. (`CookieJar::remove` would only clear
/// the cookies this request happened to send.)
fn cleared_cookies(state: &AppState, jar: CookieJar) -> CookieJar {
    let expired = |name: &'static str, path: &'static str| {
        Cookie::build((name, ""))
            .path(path)
            .http_only(true)
            .secure(state.config.cookie_secure)
            .same_site(SameSite::Strict)
            .max_age(cookie::time::Duration::ZERO)
    };
    jar.add(expired("token", "/"))
        .add(expired("refreshToken", REFRESH_PATH))
}

/// Log in with email and password.
#[utoipa::path(post, path = "/auth/login", tag = TAG, request_body = LoginRequest,
    responses((status = 200, body = Issued), (status = 401, description = "wrong credentials"),
              (status = 429, description = "too many attempts from this address")))]
pub async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<impl IntoResponse, Error> {
    let issued = sessions::login(&state, &body.email, &body.password).await?;
    let jar = session_cookies(&state, jar, &issued);
    Ok((jar, ApiJson(issued)))
}

/// Trade a refresh token (cookie or body) for a new token pair. Each works once.
#[utoipa::path(post, path = "/auth/refresh", tag = TAG, request_body(content = RefreshRequest, description = "optional when the refreshToken cookie is sent"),
    responses((status = 200, body = Issued), (status = 401, description = "invalid, expired or reused")))]
pub async fn refresh(
    State(state): State<AppState>,
    jar: CookieJar,
    body: Option<ApiJson<RefreshRequest>>,
) -> Result<impl IntoResponse, Error> {
    let token = body
        .and_then(|ApiJson(b)| b.refresh_token)
        .or_else(|| jar.get("refreshToken").map(|c| c.value().to_owned()))
        .ok_or(Error::Unauthorized(AuthError::InvalidRefresh))?;
    let issued = sessions::refresh(&state, &token).await?;
    let jar = session_cookies(&state, jar, &issued);
    Ok((jar, ApiJson(issued)))
}

/// End this session (refresh token from cookie or body) and clear the cookies.
#[utoipa::path(post, path = "/auth/logout", tag = TAG, request_body(content = RefreshRequest, description = "optional when the refreshToken cookie is sent"),
    responses((status = 204, description = "session ended")))]
pub async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
    principal: Option<Authorized<perm::Session>>,
    body: Option<ApiJson<RefreshRequest>>,
) -> Result<impl IntoResponse, Error> {
    let token = body
        .and_then(|ApiJson(b)| b.refresh_token)
        .or_else(|| jar.get("refreshToken").map(|c| c.value().to_owned()));
    let current = principal.and_then(|p| p.session_id());
    sessions::logout(&state, token.as_deref(), current).await?;
    Ok((StatusCode::NO_CONTENT, cleared_cookies(&state, jar)))
}

/// The signed-in user (for an API key: its creator).
#[utoipa::path(get, path = "/auth/me", tag = TAG,
    responses((status = 200, body = SessionUser), (status = 401)),
    security(("bearer" = []), ("apiKey" = [])))]
pub async fn me(principal: Authorized<perm::Anyone>) -> ApiJson<SessionUser> {
    ApiJson(SessionUser {
        id: principal.user_id,
        email: principal.email.clone(),
        role: principal.role,
        tenant_id: principal.tenant_id,
        tenant_slug: principal.tenant_slug.clone(),
    })
}

/// Change your password; every other session of yours ends.
#[utoipa::path(post, path = "/auth/change-password", tag = TAG, request_body = ChangePasswordRequest,
    responses((status = 204), (status = 403, description = "current password wrong"),
              (status = 422, description = "new password too weak")),
    security(("bearer" = [])))]
pub async fn change_password(
    State(state): State<AppState>,
    principal: Authorized<perm::Session>,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, Error> {
    sessions::change_password(
        &state,
        &principal,
        &body.current_password,
        &body.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
