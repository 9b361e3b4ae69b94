//! Finding triage, risk acceptance, approvals, the approvals process manager and
//! the expiry timer, over HTTP.

mod common;

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;
use vulnledger_aggregates::Role;

struct Client<'a> {
    app: &'a common::TestApp,
    token: String,
}

impl Client<'_> {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(&self.token)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value, Option<String>) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        let etag = response
            .headers()
            .get("etag")
            .map(|e| e.to_str().unwrap().to_owned());
        (response.status(), response.json().await.unwrap(), etag)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        if_match: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path).json(&body);
        if let Some(version) = if_match {
            request = request.header("if-match", version);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }
}

async fn client(app: &common::TestApp, role: Role) -> (Client<'_>, common::Session) {
    let session = app.signed_in("acme", role).await;
    (
        Client {
            app,
            token: session.token.clone(),
        },
        session,
    )
}

/// Imports one finding per severity given; returns their ids in that order.
async fn findings(client: &Client<'_>, severities: &[&str]) -> Vec<String> {
    let (_, scan) = client
        .send(
            reqwest::Method::POST,
            "/api/v1/scans",
            None,
            json!({ "target": "api:1", "scanner": "native" }),
        )
        .await;
    let scan = scan["id"].as_str().unwrap().to_owned();
    let report = json!({ "findings": severities.iter().enumerate().map(|(i, s)| json!({
        "title": format!("finding {i}"), "severity": s, "cve": format!("CVE-2026-{:04}", i + 1),
        "package": "openssl", "installedVersion": "3.0.1", "fixedVersion": "3.0.9"
    })).collect::<Vec<_>>() });
    let response = client
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/scans/{scan}/results?format=native"),
        )
        .json(&report)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(status, 200, "{}", response.text().await.unwrap());
    let mut ids = Vec::new();
    for i in 0..severities.len() {
        let id: Uuid = sqlx::query_scalar(
            "SELECT aggregate_id::uuid FROM events WHERE event_type = 'FindingDetected' \
             AND payload->'FindingDetected'->'details'->>'cve' = $1",
        )
        .bind(format!("CVE-2026-{:04}", i + 1))
        .fetch_one(&client.app.db.pool)
        .await
        .unwrap();
        ids.push(id.to_string());
    }
    ids
}

fn in_days(days: i64) -> String {
    (Utc::now() + chrono::Duration::days(days)).to_rfc3339()
}

/// Processes act on committed events, and a reader waits while any older write
/// transaction of the test's database is open (see docs/architecture.md): on a busy
/// machine that can take seconds.
async fn wait_for_status(client: &Client<'_>, id: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    loop {
        let (_, finding, _) = client.get(&format!("/api/v1/findings/{id}")).await;
        if finding["status"] == status {
            return finding;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never became {status}: {finding}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_finding_shows_its_details_sla_and_etag() {
    let app = common::spawn_app().await;
    let (client, _) = client(&app, Role::Analyst).await;
    let ids = findings(&client, &["CRITICAL"]).await;
    let (status, finding, etag) = client.get(&format!("/api/v1/findings/{}", ids[0])).await;
    assert_eq!(status, 200);
    assert_eq!(etag.as_deref(), Some("\"1\""));
    assert_eq!(finding["severity"], "CRITICAL");
    assert_eq!(finding["cve"], "CVE-2026-0001");
    assert_eq!(finding["asset"], "api:1");
    assert_eq!(finding["scanner"], "native");
    assert_eq!(finding["package"], "openssl");
    assert_eq!(finding["installedVersion"], "3.0.1");
    assert_eq!(finding["fixedVersion"], "3.0.9");
    assert_eq!(finding["status"], "OPEN");
    assert_eq!(finding["slaBreached"], false);
    assert!(finding["riskAcceptance"].is_null());
    let first: chrono::DateTime<Utc> = finding["firstSeen"].as_str().unwrap().parse().unwrap();
    let due: chrono::DateTime<Utc> = finding["dueAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        due - first,
        chrono::Duration::days(7),
        "CRITICAL: 7 days by default"
    );
}

#[tokio::test]
async fn triage_needs_if_match_and_follows_the_workflow() {
    let app = common::spawn_app().await;
    let (client, session) = client(&app, Role::Analyst).await;
    let id = findings(&client, &["HIGH"]).await.remove(0);
    let path = format!("/api/v1/findings/{id}/status");
    let patch = |if_match: Option<&'static str>, body: Value| {
        client.send(reqwest::Method::PATCH, &path, if_match, body)
    };

    let (status, _) = patch(None, json!({ "status": "CONFIRMED" })).await;
    assert_eq!(status, 428);
    let (status, body) = patch(Some("\"1\""), json!({ "status": "CONFIRMED" })).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "CONFIRMED");
    assert_eq!(body["version"], 2);
    let (status, body) = patch(
        Some("\"1\""),
        json!({ "status": "RESOLVED", "justification": "patched" }),
    )
    .await;
    assert_eq!(status, 412);
    assert_eq!(body["currentVersion"], 2);

    let (status, body) = patch(Some("\"2\""), json!({ "status": "OPEN" })).await;
    assert_eq!(status, 409, "CONFIRMED → OPEN is not in the workflow");
    assert!(body["type"]
        .as_str()
        .unwrap()
        .ends_with("/invalid-transition"));
    let (status, _) = patch(Some("\"2\""), json!({ "status": "RISK_ACCEPTED" })).await;
    assert_eq!(status, 409, "only accept-risk reaches RISK_ACCEPTED");
    let (status, body) = patch(Some("\"2\""), json!({ "status": "FALSE_POSITIVE" })).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "justification");
    let (status, _) = patch(Some("\"2\""), json!({ "status": "WONTFIX" })).await;
    assert_eq!(status, 422);
    let (status, _) = patch(
        Some("\"2\""),
        json!({ "status": "FALSE_POSITIVE", "justification": "test fixture only" }),
    )
    .await;
    assert_eq!(status, 200);

    let (status, history, _) = client.get(&format!("/api/v1/findings/{id}/history")).await;
    assert_eq!(status, 200);
    let types: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "FindingDetected",
            "FindingStatusChanged",
            "FindingStatusChanged"
        ]
    );
    assert_eq!(history[2]["actor"]["email"], session.email.as_str());
    assert_eq!(history[2]["data"]["to"], "FALSE_POSITIVE");
    assert_eq!(history[2]["data"]["justification"], "test fixture only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_sixteen_concurrent_writers_with_one_if_match_exactly_one_wins() {
    let app = common::spawn_app().await;
    let (client, _) = client(&app, Role::Analyst).await;
    let id = findings(&client, &["MEDIUM"]).await.remove(0);
    let path = format!("/api/v1/findings/{id}/status");
    let writers = (0..16).map(|_| {
        client.send(
            reqwest::Method::PATCH,
            &path,
            Some("\"1\""),
            json!({ "status": "CONFIRMED" }),
        )
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(writers)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
            .count(),
        15,
        "{statuses:?}"
    );
    let (_, finding, _) = client.get(&format!("/api/v1/findings/{id}")).await;
    assert_eq!(finding["version"], 2);
}

#[tokio::test]
async fn low_risk_is_accepted_directly_validated_and_revocable() {
    let app = common::spawn_app().await;
    let (client, _) = client(&app, Role::Analyst).await;
    let id = findings(&client, &["LOW"]).await.remove(0);
    let path = format!("/api/v1/findings/{id}/accept-risk");
    for (expires, field) in [(in_days(400), "expiresAt"), (in_days(-1), "expiresAt")] {
        let (status, body) = client
            .send(
                reqwest::Method::POST,
                &path,
                Some("\"1\""),
                json!({ "justification": "compensating control", "expiresAt": expires }),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["errors"][0]["field"], field);
    }
    let (status, body) = client
        .send(
            reqwest::Method::POST,
            &path,
            Some("\"1\""),
            json!({ "justification": "compensating control", "expiresAt": in_days(30) }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "RISK_ACCEPTED");
    let (_, finding, _) = client.get(&format!("/api/v1/findings/{id}")).await;
    assert_eq!(
        finding["riskAcceptance"]["justification"],
        "compensating control"
    );

    let (status, body) = client
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/findings/{id}/revoke-risk"),
            Some("\"2\""),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "OPEN");
    let (status, _) = client
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/findings/{id}/revoke-risk"),
            Some("\"3\""),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "nothing left to revoke");
}

#[tokio::test]
async fn high_risk_needs_an_approval_by_another_security_lead() {
    let app = common::spawn_app().await;
    let (analyst, analyst_session) = client(&app, Role::Analyst).await;
    let (lead, _) = client(&app, Role::SecurityLead).await;
    let (other_analyst, _) = client(&app, Role::Analyst).await;
    let id = findings(&analyst, &["HIGH"]).await.remove(0);

    let (status, opened) = analyst
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/findings/{id}/accept-risk"),
            Some("\"1\""),
            json!({ "justification": "WAF rule in place", "expiresAt": in_days(90) }),
        )
        .await;
    assert_eq!(status, 202, "{opened}");
    let approval = opened["approvalId"].as_str().unwrap().to_owned();
    let (_, finding, _) = analyst.get(&format!("/api/v1/findings/{id}")).await;
    assert_eq!(
        finding["status"], "OPEN",
        "nothing changes before the approval"
    );

    let (status, _) = analyst
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/findings/{id}/accept-risk"),
            Some("\"1\""),
            json!({ "justification": "again", "expiresAt": in_days(90) }),
        )
        .await;
    assert_eq!(status, 409, "one pending approval per finding");

    let (status, view, etag) = lead.get(&format!("/api/v1/approvals/{approval}")).await;
    assert_eq!(status, 200);
    assert_eq!(etag.as_deref(), Some("\"1\""));
    assert_eq!(view["kind"], "RISK_ACCEPTANCE");
    assert_eq!(view["findingId"], id.as_str());
    assert_eq!(view["requestedBy"], analyst_session.user_id.to_string());
    assert_eq!(view["status"], "PENDING");

    let transition = format!("/api/v1/approvals/{approval}/transition");
    let (status, _) = analyst
        .send(
            reqwest::Method::PATCH,
            &transition,
            Some("\"1\""),
            json!({ "action": "approve" }),
        )
        .await;
    assert_eq!(status, 403, "the requester never decides");
    let (status, _) = other_analyst
        .send(
            reqwest::Method::PATCH,
            &transition,
            Some("\"1\""),
            json!({ "action": "approve" }),
        )
        .await;
    assert_eq!(status, 403, "analysts do not approve");
    let (status, _) = lead
        .send(
            reqwest::Method::PATCH,
            &transition,
            Some("\"1\""),
            json!({ "action": "withdraw" }),
        )
        .await;
    assert_eq!(status, 403, "only the requester withdraws");
    let (status, _) = lead
        .send(
            reqwest::Method::PATCH,
            &transition,
            None,
            json!({ "action": "approve" }),
        )
        .await;
    assert_eq!(status, 428);
    let (status, body) = lead
        .send(
            reqwest::Method::PATCH,
            &transition,
            Some("\"1\""),
            json!({ "action": "approve", "comment": "ok for a quarter" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "APPROVED");
    let (status, _) = lead
        .send(
            reqwest::Method::PATCH,
            &transition,
            Some("\"2\""),
            json!({ "action": "reject" }),
        )
        .await;
    assert_eq!(status, 409);

    let finding = wait_for_status(&analyst, &id, "RISK_ACCEPTED").await;
    assert_eq!(
        finding["riskAcceptance"]["justification"],
        "WAF rule in place"
    );
    assert_eq!(finding["riskAcceptance"]["approvalId"], approval.as_str());

    let (_, list, _) = lead.get("/api/v1/approvals?status=APPROVED").await;
    assert_eq!(list["meta"]["total"], 1);
    assert!(list["data"][0]["decidedBy"].is_string());
    let (_, pending, _) = lead.get("/api/v1/approvals?status=PENDING").await;
    assert_eq!(pending["meta"]["total"], 0);
}

#[tokio::test]
async fn a_rejected_or_withdrawn_approval_leaves_the_finding_open() {
    let app = common::spawn_app().await;
    let (analyst, _) = client(&app, Role::Analyst).await;
    let (lead, _) = client(&app, Role::SecurityLead).await;
    let ids = findings(&analyst, &["CRITICAL", "CRITICAL"]).await;
    let mut approvals = Vec::new();
    for id in &ids {
        let (_, opened) = analyst
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/findings/{id}/accept-risk"),
                Some("\"1\""),
                json!({ "justification": "later", "expiresAt": in_days(10) }),
            )
            .await;
        approvals.push(opened["approvalId"].as_str().unwrap().to_owned());
    }
    let (status, body) = lead
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/approvals/{}/transition", approvals[0]),
            Some("\"1\""),
            json!({ "action": "reject", "comment": "fix it" }),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("REJECTED"))
    );
    let (status, body) = analyst
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/approvals/{}/transition", approvals[1]),
            Some("\"1\""),
            json!({ "action": "withdraw" }),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("WITHDRAWN"))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in &ids {
        let (_, finding, _) = analyst.get(&format!("/api/v1/findings/{id}")).await;
        assert_eq!(finding["status"], "OPEN");
    }
}

/// A request waits for a decision; meanwhile the finding may be resolved or marked a
/// false positive. Approving it then would say APPROVED while the finding could
/// never become RISK_ACCEPTED: it is refused, and the request stays open to be
/// rejected or withdrawn. A finding only confirmed meanwhile still takes it.
#[tokio::test]
async fn an_approval_whose_finding_was_closed_meanwhile_is_refused_and_stays_pending() {
    let app = common::spawn_app().await;
    let (analyst, _) = client(&app, Role::Analyst).await;
    let (lead, _) = client(&app, Role::SecurityLead).await;
    let ids = findings(&analyst, &["HIGH", "HIGH", "HIGH"]).await;
    let mut approvals = Vec::new();
    for id in &ids {
        let (status, opened) = analyst
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/findings/{id}/accept-risk"),
                Some("\"1\""),
                json!({ "justification": "behind the VPN", "expiresAt": in_days(30) }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{opened}");
        approvals.push(opened["approvalId"].as_str().unwrap().to_owned());
    }
    for (id, to) in [
        (&ids[0], "RESOLVED"),
        (&ids[1], "FALSE_POSITIVE"),
        (&ids[2], "CONFIRMED"),
    ] {
        let (status, body) = analyst
            .send(
                reqwest::Method::PATCH,
                &format!("/api/v1/findings/{id}/status"),
                Some("\"1\""),
                json!({ "status": to, "justification": "checked by hand" }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    for (approval, closed) in approvals[..2].iter().zip(["RESOLVED", "FALSE_POSITIVE"]) {
        let (status, problem) = lead
            .send(
                reqwest::Method::PATCH,
                &format!("/api/v1/approvals/{approval}/transition"),
                Some("\"1\""),
                json!({ "action": "approve", "comment": "fine" }),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(closed), "{detail}");
        let (_, approval, etag) = lead.get(&format!("/api/v1/approvals/{approval}")).await;
        assert_eq!(approval["status"], "PENDING", "{approval}");
        assert_eq!(etag.as_deref(), Some("\"1\""));
    }
    // Still the requester's to withdraw.
    let (status, body) = analyst
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/approvals/{}/transition", approvals[0]),
            Some("\"1\""),
            json!({ "action": "withdraw" }),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("WITHDRAWN"))
    );

    let (status, body) = lead
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/approvals/{}/transition", approvals[2]),
            Some("\"1\""),
            json!({ "action": "approve" }),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("APPROVED")),
        "{body}"
    );
    wait_for_status(&analyst, &ids[2], "RISK_ACCEPTED").await;
    for (id, status) in [(&ids[0], "RESOLVED"), (&ids[1], "FALSE_POSITIVE")] {
        let (_, finding, _) = analyst.get(&format!("/api/v1/findings/{id}")).await;
        assert_eq!(finding["status"], status);
    }
}

#[tokio::test]
async fn an_approval_is_applied_exactly_once_across_a_restart() {
    let app = common::spawn_app_with(|c| c.run_workers = false).await;
    let (analyst, _) = client(&app, Role::Analyst).await;
    let (lead, _) = client(&app, Role::SecurityLead).await;
    let (analyst_token, lead_token) = (analyst.token.clone(), lead.token.clone());
    let id = findings(&analyst, &["HIGH"]).await.remove(0);
    let (_, opened) = analyst
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/findings/{id}/accept-risk"),
            Some("\"1\""),
            json!({ "justification": "vendor fix due", "expiresAt": in_days(60) }),
        )
        .await;
    let approval = opened["approvalId"].as_str().unwrap().to_owned();
    let (status, _) = lead
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/approvals/{approval}/transition"),
            Some("\"1\""),
            json!({ "action": "approve" }),
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, finding, _) = analyst.get(&format!("/api/v1/findings/{id}")).await;
    assert_eq!(finding["status"], "OPEN", "no process ran the approval yet");
    drop((analyst, lead));

    // The process that took the approval is gone; a new one, and a second replica
    // racing it, pick the approval up from the durable checkpoint.
    let app = app.restart(|c| c.run_workers = true).await;
    let _second = app.replica().await;
    let analyst = Client {
        app: &app,
        token: analyst_token,
    };
    wait_for_status(&analyst, &id, "RISK_ACCEPTED").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let accepted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'RiskAccepted'",
    )
    .bind(&id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(accepted, 1);
    let actor: String = sqlx::query_scalar(
        "SELECT metadata->>'actor_id' FROM events WHERE aggregate_id = $1 AND event_type = 'RiskAccepted'",
    )
    .bind(&id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(actor, "system:approvals");
    let _ = lead_token;
}

#[tokio::test]
async fn an_expired_risk_acceptance_returns_the_finding_to_open_by_itself() {
    let app = common::spawn_app().await;
    let (analyst, _) = client(&app, Role::Analyst).await;
    let id = findings(&analyst, &["MEDIUM"]).await.remove(0);
    let expires = (Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (status, _) = analyst
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/findings/{id}/accept-risk"),
            Some("\"1\""),
            json!({ "justification": "short window", "expiresAt": expires }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, finding, _) = analyst.get(&format!("/api/v1/findings/{id}")).await;
    assert_eq!(finding["status"], "RISK_ACCEPTED");
    let finding = wait_for_status(&analyst, &id, "OPEN").await;
    assert!(finding["riskAcceptance"].is_null());
    let (_, history, _) = analyst.get(&format!("/api/v1/findings/{id}/history")).await;
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(last["eventType"], "RiskAcceptanceExpired");
    assert_eq!(last["actor"]["id"], "system:risk-expiry");
}

#[tokio::test]
async fn another_tenants_finding_and_approval_are_not_found() {
    let app = common::spawn_app().await;
    let (analyst, _) = client(&app, Role::Analyst).await;
    let id = findings(&analyst, &["HIGH"]).await.remove(0);
    let (_, opened) = analyst
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/findings/{id}/accept-risk"),
            Some("\"1\""),
            json!({ "justification": "x", "expiresAt": in_days(5) }),
        )
        .await;
    let approval = opened["approvalId"].as_str().unwrap().to_owned();
    let intruder = app.signed_in("globex", Role::Admin).await;
    let intruder = Client {
        app: &app,
        token: intruder.token,
    };
    for path in [
        format!("/api/v1/findings/{id}"),
        format!("/api/v1/findings/{id}/history"),
        format!("/api/v1/approvals/{approval}"),
    ] {
        assert_eq!(intruder.get(&path).await.0, 404, "{path}");
    }
    let (status, _) = intruder
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/findings/{id}/status"),
            Some("\"1\""),
            json!({ "status": "CONFIRMED" }),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = intruder
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/approvals/{approval}/transition"),
            Some("\"1\""),
            json!({ "action": "approve" }),
        )
        .await;
    assert_eq!(status, 404);
    let (_, list, _) = intruder.get("/api/v1/approvals").await;
    assert_eq!(list["meta"]["total"], 0);
}

/// The finding index is changed by the command's own statement; the same change made
/// on its own (`Inline::apply`, for callers with a transaction of their own) leaves
/// the same row.
#[tokio::test]
async fn the_finding_index_change_is_the_same_carried_by_the_append_or_alone() {
    use vulnledger::commands::Inline;
    use vulnledger_aggregates::{Finding, FindingStatus};

    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Admin).await;
    let api = common::api::Api::new(&app, &session);
    let report = serde_json::to_vec(&json!({ "findings": [
        { "title": "weak cipher", "severity": "LOW", "package": "openssl" },
    ]}))
    .unwrap();
    let imported = api.import("api:1", "native", report).await;
    let list = api.get_after("/api/v1/findings", imported.position()).await;
    let id = list.body["data"][0]["id"].as_str().unwrap().to_owned();
    let expires = (Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let accepted = api
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/findings/{id}/accept-risk"),
            Some("\"1\""),
            json!({ "justification": "compensating control", "expiresAt": expires }),
        )
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let index_row = || async {
        sqlx::query_as::<_, (String, Option<chrono::DateTime<Utc>>)>(
            "SELECT status, risk_expires_at FROM finding_index WHERE finding_id = $1",
        )
        .bind(id.parse::<Uuid>().unwrap())
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
    };
    let carried = index_row().await;
    assert_eq!(carried.0, "RISK_ACCEPTED");
    assert!(carried.1.is_some());

    // Wipe the row's state, then let `apply` write it again from the aggregate.
    sqlx::query(
        "UPDATE finding_index SET status = 'OPEN', risk_expires_at = NULL WHERE finding_id = $1",
    )
    .bind(id.parse::<Uuid>().unwrap())
    .execute(&app.db.pool)
    .await
    .unwrap();
    let finding = vulnledger::store::EventStore::new(app.db.pool.clone())
        .load::<Finding>(session.tenant_id, &id)
        .await
        .unwrap()
        .aggregate;
    assert_eq!(finding.status, FindingStatus::RiskAccepted);
    let mut tx = app.db.pool.begin().await.unwrap();
    vulnledger::indexes::FindingIndex
        .apply(&mut tx, session.tenant_id, &id, &finding)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(index_row().await, carried);
}
