//! Sessions, API keys and user administration as a client uses them.

mod common;

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use vulnledger_aggregates::Role;

fn cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn login_returns_tokens_the_user_and_http_only_cookies() {
    let app = common::spawn_app().await;
    let tenant = app.tenant("acme").await;
    let user = app.user("acme", "Lead@Acme.test", Role::SecurityLead).await;

    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": "LEAD@acme.test", "password": common::PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let set = cookies(&response);
    let token_cookie = set.iter().find(|c| c.starts_with("token=")).unwrap();
    let refresh_cookie = set.iter().find(|c| c.starts_with("refreshToken=")).unwrap();
    assert!(token_cookie.contains("HttpOnly") && token_cookie.contains("Path=/"));
    assert!(refresh_cookie.contains("HttpOnly") && refresh_cookie.contains("Path=/api/v1/auth"));
    assert!(
        !token_cookie.contains("Secure"),
        "Secure only when configured for TLS"
    );

    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expiresIn"], 900);
    assert_eq!(
        body["user"],
        json!({ "id": user, "email": "lead@acme.test", "role": "security_lead",
                "tenantId": tenant, "tenantSlug": "acme" })
    );
    assert!(body["token"].as_str().unwrap().split('.').count() == 3);
    assert!(body["refreshToken"].as_str().unwrap().len() >= 40);
}

#[tokio::test]
async fn cookies_are_secure_when_configured_for_tls() {
    let app = common::spawn_app_with(|c| c.cookie_secure = true).await;
    app.user("acme", "a@acme.test", Role::Viewer).await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": "a@acme.test", "password": common::PASSWORD }))
        .send()
        .await
        .unwrap();
    assert!(cookies(&response).iter().all(|c| c.contains("Secure")));
}

#[tokio::test]
async fn me_answers_with_a_bearer_token_or_the_token_cookie() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    for request in [
        app.client
            .get(app.url("/api/v1/auth/me"))
            .bearer_auth(&session.token),
        app.client
            .get(app.url("/api/v1/auth/me"))
            .header(COOKIE, format!("token={}", session.token)),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["email"], session.email.as_str());
        assert_eq!(body["role"], "analyst");
    }
    let anonymous = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_ends_the_whole_session() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let refresh = |token: &str| {
        app.client
            .post(app.url("/api/v1/auth/refresh"))
            .json(&json!({ "refreshToken": token }))
            .send()
    };
    let first = refresh(&session.refresh_token).await.unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let rotated = first["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(rotated, session.refresh_token);

    // The old one again: someone copied it. The family dies, including `rotated`.
    assert_eq!(refresh(&session.refresh_token).await.unwrap().status(), 401);
    assert_eq!(refresh(&rotated).await.unwrap().status(), 401);
    let me = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(first["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401, "the session's access tokens end with it");
}

#[tokio::test]
async fn refresh_and_logout_take_the_token_from_the_cookie() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Viewer).await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .header(COOKIE, format!("refreshToken={}", session.refresh_token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let (token, refresh) = (
        body["token"].as_str().unwrap().to_owned(),
        body["refreshToken"].as_str().unwrap().to_owned(),
    );

    let response = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .header(COOKIE, format!("refreshToken={refresh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let cleared = cookies(&response);
    assert!(cleared
        .iter()
        .any(|c| c.starts_with("token=") && c.contains("Max-Age=0")));
    assert!(cleared
        .iter()
        .any(|c| c.starts_with("refreshToken=") && c.contains("Max-Age=0")));

    let me = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    let again = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({ "refreshToken": refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
}

#[tokio::test]
async fn changing_the_password_ends_other_sessions_but_not_this_one() {
    let app = common::spawn_app().await;
    let email = "p@acme.test";
    app.user("acme", email, Role::Analyst).await;
    let here = app.login(email).await;
    let elsewhere = app.login(email).await;

    let change = |current: &str, new: &str| {
        app.client
            .post(app.url("/api/v1/auth/change-password"))
            .bearer_auth(&here.token)
            .json(&json!({ "currentPassword": current, "newPassword": new }))
            .send()
    };
    assert_eq!(
        change("wrong password!!", "brand new passphrase")
            .await
            .unwrap()
            .status(),
        403
    );
    let weak = change(common::PASSWORD, "short").await.unwrap();
    assert_eq!(weak.status(), 422);
    let body: Value = weak.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "newPassword");

    assert_eq!(
        change(common::PASSWORD, "brand new passphrase")
            .await
            .unwrap()
            .status(),
        204
    );
    let me = |token: String| {
        let request = app
            .client
            .get(app.url("/api/v1/auth/me"))
            .bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(me(here.token.clone()).await, StatusCode::OK);
    assert_eq!(me(elsewhere.token.clone()).await, StatusCode::UNAUTHORIZED);

    let old = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": common::PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);
    let new = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": "brand new passphrase" }))
        .send()
        .await
        .unwrap();
    assert_eq!(new.status(), 200);
}

#[tokio::test]
async fn an_api_key_is_shown_once_stored_hashed_and_revocable_at_once() {
    let app = common::spawn_app().await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let response = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(&analyst.token)
        .json(
            &json!({ "name": "gitlab ci", "scopes": ["scans:write", "scans:read", "scans:write"] }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.headers().contains_key("location"));
    let created: Value = response.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("vlk_{}_", created["prefix"].as_str().unwrap())));
    assert_eq!(created["scopes"], json!(["scans:read", "scans:write"]));

    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret_hash FROM api_keys")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains(key.rsplit('_').next().unwrap()));

    // Both header forms work; the listing never shows the key again.
    for request in [
        app.client
            .get(app.url("/api/v1/auth/me"))
            .header("X-API-Key", &key),
        app.client.get(app.url("/api/v1/auth/me")).bearer_auth(&key),
    ] {
        assert_eq!(request.send().await.unwrap().status(), 200);
    }
    let list: Value = app
        .client
        .get(app.url("/api/v1/api-keys"))
        .bearer_auth(&analyst.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["meta"]["total"], 1);
    assert!(list["data"][0].get("key").is_none());

    let id = created["id"].as_str().unwrap();
    let revoke = app
        .client
        .delete(app.url(&format!("/api/v1/api-keys/{id}")))
        .bearer_auth(&analyst.token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    let after = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
}

#[tokio::test]
async fn people_see_their_own_keys_and_admins_see_the_tenants() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let a = app.signed_in("acme", Role::Analyst).await;
    let b = app.signed_in("acme", Role::Analyst).await;
    app.api_key(&a, &["scans:read"]).await;
    app.api_key(&b, &["scans:read"]).await;
    app.api_key(&b, &["findings:read"]).await;
    let total = |token: String| {
        let request = app
            .client
            .get(app.url("/api/v1/api-keys"))
            .bearer_auth(token);
        async move {
            request.send().await.unwrap().json::<Value>().await.unwrap()["meta"]["total"].clone()
        }
    };
    assert_eq!(total(a.token.clone()).await, 1);
    assert_eq!(total(b.token.clone()).await, 2);
    assert_eq!(total(admin.token.clone()).await, 3);
}

#[tokio::test]
async fn a_key_cannot_carry_scopes_beyond_its_creators_role_nor_make_keys() {
    let app = common::spawn_app().await;
    let viewer = app.signed_in("acme", Role::Viewer).await;
    let create = |token: &str, scopes: Value| {
        app.client
            .post(app.url("/api/v1/api-keys"))
            .bearer_auth(token)
            .json(&json!({ "name": "k", "scopes": scopes }))
            .send()
    };
    assert_eq!(
        create(&viewer.token, json!(["scans:write"]))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        create(&viewer.token, json!(["nonsense:scope"]))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        create(&viewer.token, json!([])).await.unwrap().status(),
        422
    );
    let key = app.api_key(&viewer, &["scans:read"]).await;
    let by_key = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .header("X-API-Key", &key)
        .json(&json!({ "name": "k2", "scopes": ["scans:read"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(by_key.status(), 403);
}

#[tokio::test]
async fn admins_create_list_and_update_users_of_their_tenant() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let created = app
        .client
        .post(app.url("/api/v1/admin/users"))
        .bearer_auth(&admin.token)
        .json(&json!({ "email": "New@Acme.test", "password": common::PASSWORD, "role": "analyst" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let user: Value = created.json().await.unwrap();
    assert_eq!(user["email"], "new@acme.test");
    assert_eq!(user["role"], "analyst");
    assert_eq!(user["active"], true);

    let list: Value = app
        .client
        .get(app.url("/api/v1/admin/users?limit=1"))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["meta"]["total"], 2);
    assert_eq!(list["meta"]["totalPages"], 2);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let cursor = list["meta"]["nextCursor"].as_str().unwrap();
    let next: Value = app
        .client
        .get(app.url(&format!("/api/v1/admin/users?limit=1&cursor={cursor}")))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(next["data"][0]["email"], "new@acme.test");
    assert!(next["meta"]["nextCursor"].is_null());

    let id = user["id"].as_str().unwrap();
    let patched = app
        .client
        .patch(app.url(&format!("/api/v1/admin/users/{id}")))
        .bearer_auth(&admin.token)
        .json(&json!({ "role": "security_lead" }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["role"], "security_lead");

    // The new role is in force on the very next request of an existing session.
    let session = app.login("new@acme.test").await;
    app.client
        .patch(app.url(&format!("/api/v1/admin/users/{id}")))
        .bearer_auth(&admin.token)
        .json(&json!({ "role": "viewer" }))
        .send()
        .await
        .unwrap();
    let me: Value = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "viewer");
}

#[tokio::test]
async fn only_admins_in_person_administer_users() {
    let app = common::spawn_app().await;
    let lead = app.signed_in("acme", Role::SecurityLead).await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let key = app.api_key(&admin, &["audit:read"]).await;
    let by_lead = app
        .client
        .get(app.url("/api/v1/admin/users"))
        .bearer_auth(&lead.token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_lead.status(), 403);
    let by_key = app
        .client
        .get(app.url("/api/v1/admin/users"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(by_key.status(), 403);
}

#[tokio::test]
async fn every_response_carries_rate_limit_headers() {
    let app = common::spawn_app().await;
    for path in ["/health", "/api/v1/auth/me", "/nowhere"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        for header in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
            assert!(
                response.headers().contains_key(header),
                "{path} lacks {header}"
            );
        }
    }
}

#[tokio::test]
async fn the_openapi_document_and_the_docs_ui_are_served() {
    let app = common::spawn_app().await;
    let doc: Value = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/api/v1/auth/login"]["post"].is_object());
    let ui = app.client.get(app.url("/api/docs/")).send().await.unwrap();
    assert_eq!(ui.status(), 200);
    let html = ui.text().await.unwrap();
    assert!(html.contains("swagger-ui"));
    assert!(
        !html.contains("https://"),
        "the UI must not load assets from the internet"
    );
}

#[tokio::test]
async fn a_revocation_on_one_server_reaches_another_before_its_cache_expires() {
    let app = common::spawn_app().await;
    let other = app.replica().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let key = app.api_key(&session, &["scans:read"]).await;
    let on_other = |credential: (&'static str, String)| {
        let request = app
            .client
            .get(other.url("/api/v1/auth/me"))
            .header(credential.0, credential.1);
        async move { request.send().await.unwrap().status() }
    };
    // The other server has both cached as valid.
    assert_eq!(on_other(("x-api-key", key.clone())).await, StatusCode::OK);
    let bearer = ("authorization", format!("Bearer {}", session.token));
    assert_eq!(on_other(bearer.clone()).await, StatusCode::OK);

    let list: Value = app
        .client
        .get(app.url("/api/v1/api-keys"))
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list["data"][0]["id"].as_str().unwrap();
    app.client
        .delete(app.url(&format!("/api/v1/api-keys/{id}")))
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap();
    app.client
        .post(app.url("/api/v1/auth/logout"))
        .json(&json!({ "refreshToken": session.refresh_token }))
        .send()
        .await
        .unwrap();

    // Well inside the 5 s cache TTL: only the announcement can explain a 401 here.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    loop {
        let key_status = on_other(("x-api-key", key.clone())).await;
        let token_status = on_other(bearer.clone()).await;
        if key_status == StatusCode::UNAUTHORIZED && token_status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the other server still accepts them"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
