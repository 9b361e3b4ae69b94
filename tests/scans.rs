//! Scans over HTTP: the lifecycle, real report imports, and finding lifecycle.

mod common;

use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{json, Value};
use vulnledger_aggregates::Role;

const REPORTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/reports");

fn report(path: &str) -> Vec<u8> {
    std::fs::read(format!("{REPORTS}/{path}")).expect("fixture exists")
}

struct Client<'a> {
    app: &'a common::TestApp,
    token: String,
}

impl Client<'_> {
    async fn launch(&self, target: &str, scanner: &str) -> (String, Value) {
        let response = self
            .app
            .client
            .post(self.app.url("/api/v1/scans"))
            .bearer_auth(&self.token)
            .json(&json!({ "target": target, "scanner": scanner, "branch": "main", "tags": ["prod"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.unwrap();
        (body["id"].as_str().unwrap().to_owned(), body)
    }

    async fn upload(&self, scan: &str, format: Option<&str>, body: Vec<u8>) -> reqwest::Response {
        let path = match format {
            Some(f) => format!("/api/v1/scans/{scan}/results?format={f}"),
            None => format!("/api/v1/scans/{scan}/results"),
        };
        self.app
            .client
            .post(self.app.url(&path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn import(&self, target: &str, scanner: &str, body: Vec<u8>) -> Value {
        let (scan, _) = self.launch(target, scanner).await;
        let response = self.upload(&scan, None, body).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.app
            .client
            .get(self.app.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }
}

async fn analyst(app: &common::TestApp) -> Client<'_> {
    let session = app.signed_in("acme", Role::Analyst).await;
    Client {
        app,
        token: session.token,
    }
}

async fn events(app: &common::TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn launching_a_scan_answers_202_with_its_version_position_and_location() {
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    let response = client
        .post(
            "/api/v1/scans",
            json!({ "target": "registry.acme.test/api:1.4", "scanner": "trivy" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["etag"], "\"1\"");
    let position: i64 = response.headers()["x-event-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "QUEUED");
    assert_eq!(body["version"], 1);
    assert_eq!(body["position"], position);
    assert_eq!(
        location,
        format!("/api/v1/scans/{}", body["id"].as_str().unwrap())
    );

    let detail = client.get(&location).await;
    assert_eq!(detail.status(), 200);
    assert_eq!(detail.headers()["etag"], "\"1\"");
    let detail: Value = detail.json().await.unwrap();
    assert_eq!(detail["target"], "registry.acme.test/api:1.4");
    assert_eq!(detail["scanner"], "trivy");
    assert_eq!(detail["status"], "QUEUED");
    assert_eq!(detail["progress"], json!({ "percent": 0, "step": null }));
    assert_eq!(
        detail["summary"],
        json!({ "CRITICAL": 0, "HIGH": 0, "MEDIUM": 0, "LOW": 0, "INFO": 0 })
    );
    assert!(detail["createdAt"].is_string() && detail["startedAt"].is_null());
}

#[tokio::test]
async fn launching_needs_target_and_scanner_and_the_analyst_role() {
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    let response = client
        .post(
            "/api/v1/scans",
            json!({ "target": " ", "scanner": "trivy" }),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "target");
    let response = client
        .post("/api/v1/scans", json!({ "scanner": "trivy" }))
        .await;
    assert_eq!(response.status(), 422);

    let viewer = app.signed_in("acme", Role::Viewer).await;
    let response = app
        .client
        .post(app.url("/api/v1/scans"))
        .bearer_auth(&viewer.token)
        .json(&json!({ "target": "t", "scanner": "s" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(events(&app).await, 0);
}

#[tokio::test]
async fn progress_starts_the_scan_and_never_goes_backwards() {
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    let (scan, _) = client.launch("app", "semgrep").await;
    let path = format!("/api/v1/scans/{scan}/progress");
    let progress =
        |percent: i64| client.post(&path, json!({ "percent": percent, "step": "analysing" }));
    let response = progress(40).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "RUNNING");
    assert_eq!(body["version"], 3);

    for (percent, field) in [(30, "percent"), (101, "percent"), (-1, "percent")] {
        let response = progress(percent).await;
        assert_eq!(response.status(), 422, "{percent}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], field);
    }
    let detail: Value = client
        .get(&format!("/api/v1/scans/{scan}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        detail["progress"],
        json!({ "percent": 40, "step": "analysing" })
    );
    assert!(detail["startedAt"].is_string());
}

#[tokio::test]
async fn a_stale_if_match_on_a_scan_is_412_with_the_current_version() {
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    let (scan, _) = client.launch("app", "semgrep").await;
    client
        .post(
            &format!("/api/v1/scans/{scan}/progress"),
            json!({ "percent": 10 }),
        )
        .await;
    let response = app
        .client
        .post(app.url(&format!("/api/v1/scans/{scan}/stop")))
        .bearer_auth(&client.token)
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 412);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["currentVersion"], 3);
}

#[tokio::test]
async fn a_finished_scan_refuses_every_further_command_with_409() {
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    let (stopped, _) = client.launch("app", "semgrep").await;
    let response = client
        .post(&format!("/api/v1/scans/{stopped}/stop"), json!({}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        "CANCELLED"
    );

    let (failed, _) = client.launch("app", "semgrep").await;
    let response = client
        .post(
            &format!("/api/v1/scans/{failed}/fail"),
            json!({ "reason": "" }),
        )
        .await;
    assert_eq!(response.status(), 422);
    let response = client
        .post(
            &format!("/api/v1/scans/{failed}/fail"),
            json!({ "reason": "runner OOM" }),
        )
        .await;
    assert_eq!(response.status(), 200);

    for scan in [&stopped, &failed] {
        let before = events(&app).await;
        for (path, body) in [
            ("stop", json!({})),
            ("fail", json!({ "reason": "again" })),
            ("progress", json!({ "percent": 50 })),
        ] {
            let response = client
                .post(&format!("/api/v1/scans/{scan}/{path}"), body)
                .await;
            assert_eq!(response.status(), 409, "{path}");
            let problem: Value = response.json().await.unwrap();
            assert!(problem["type"]
                .as_str()
                .unwrap()
                .ends_with("/invalid-transition"));
        }
        let response = client
            .upload(scan, None, report("grype/check_all_fields.json"))
            .await;
        assert_eq!(response.status(), 409);
        assert_eq!(events(&app).await, before);
    }
}

#[tokio::test]
async fn another_tenants_scan_is_not_found() {
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    let (scan, _) = client.launch("app", "semgrep").await;
    let intruder = app.signed_in("globex", Role::Admin).await;
    let intruder = Client {
        app: &app,
        token: intruder.token,
    };
    assert_eq!(
        intruder
            .get(&format!("/api/v1/scans/{scan}"))
            .await
            .status(),
        404
    );
    for path in ["stop", "progress"] {
        let response = intruder
            .post(
                &format!("/api/v1/scans/{scan}/{path}"),
                json!({ "percent": 1 }),
            )
            .await;
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = intruder
        .upload(&scan, None, report("grype/check_all_fields.json"))
        .await;
    assert_eq!(response.status(), 404);
}

/// (fixture, distinct findings after fingerprint dedup for one asset). Where this is
/// below the report's entry count (fixtures README), the report repeats itself:
const FIXTURES: [(&str, u64); 11] = [
    ("trivy/scheme_2_many_vulns.json", 5),
    ("trivy/legacy_many_vulns.json", 93),
    ("trivy/misconfigurations_and_secrets.json", 5),
    ("grype/check_all_fields.json", 5),
    ("grype/many_vulns.json", 1509),
    ("sarif/appendix_k.sarif", 1),
    ("sarif/codeQL-output.sarif", 72),
    // 27 results, but shellcheck reports a sourced file once per script sourcing it:
    // dojo-shared-resources.sh lines 143, 410 and 412 six times each, so 12 distinct
    // (rule, file, line) findings.
    ("sarif/bash-report.sarif", 12),
    ("sarif/suppression_test.sarif", 5),
    ("cyclonedx/valid-vulnerability-1.4.json", 1),
    ("cyclonedx/log4j.json", 8),
];

#[tokio::test]
async fn every_real_report_imports_with_the_expected_counts() {
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    for (fixture, expected) in FIXTURES {
        let started = Instant::now();
        let body = client
            .import(&format!("asset-{fixture}"), "scanner", report(fixture))
            .await;
        eprintln!("{fixture}: {expected} findings in {:?}", started.elapsed());
        assert_eq!(body["status"], "COMPLETED", "{fixture}");
        assert_eq!(
            body["findings"],
            json!({ "new": expected, "redetected": 0, "reopened": 0, "resolved": 0, "total": expected }),
            "{fixture}"
        );
        let scan = body["scanId"].as_str().unwrap();
        let detail: Value = client
            .get(&format!("/api/v1/scans/{scan}"))
            .await
            .json()
            .await
            .unwrap();
        let summary: u64 = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"]
            .iter()
            .map(|s| detail["summary"][s].as_u64().unwrap())
            .sum();
        assert_eq!(
            summary, expected,
            "{fixture}: the summary counts each finding once"
        );
        assert_eq!(detail["progress"]["percent"], 100);
    }
}

/// `tests/fixtures/reports` (see its README): shapes the shared reports do not cover.
const MORE_FIXTURES: [(&str, u64); 10] = [
    ("trivy/kubernetes.excerpt.json", 2),
    // One of the two suppressed by a VEX document: kept, as suppressed.
    ("trivy/npm-with-suppressed.golden.json", 2),
    ("sarif/grype-image.golden.sarif", 2),
    ("trivy/kubernetes_cluster_scoped_resources.json", 3),
    ("trivy/license_scheme.json", 19),
    ("trivy/all_statuses.excerpt.json", 8),
    // Its version string holds a NUL, which PostgreSQL cannot store.
    ("grype/fix_available.excerpt.json", 1),
    ("sarif/cxf-3.4.6.excerpt.sarif", 3),
    ("cyclonedx/vex-not-affected-product.json", 1),
    ("sarif/trivy-template-2020.golden.sarif", 2),
];

#[tokio::test]
async fn kubernetes_license_status_nul_and_product_vex_reports_import_over_http() {
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    let mut last_position = 0;
    for (fixture, expected) in MORE_FIXTURES {
        let bytes = std::fs::read(format!(
            "{}/tests/fixtures/reports/{fixture}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture exists");
        let body = client
            .import(&format!("asset-{fixture}"), "scanner", bytes)
            .await;
        assert_eq!(
            body["findings"],
            json!({ "new": expected, "redetected": 0, "reopened": 0, "resolved": 0, "total": expected }),
            "{fixture}"
        );
        last_position = body["position"].as_i64().expect("a position");
    }
    // The list is a read model: read it once the imports are applied.
    let java: Value = app
        .client
        .get(app.url("/api/v1/findings?asset=asset-grype/fix_available.excerpt.json"))
        .bearer_auth(&client.token)
        .header("x-min-position", last_position.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = java["data"][0]["id"].as_str().expect("the java finding");
    let detail: Value = client
        .get(&format!("/api/v1/findings/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["installedVersion"], "17.0.10+7-J-ms8m", "{detail}");
}

#[tokio::test]
async fn findings_are_redetected_resolved_when_missing_and_reopened_when_seen_again() {
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    let full = report("grype/check_all_fields.json");
    let first = client.import("api:1", "grype", full.clone()).await;
    assert_eq!(first["findings"]["new"], 5);

    let again = client.import("api:1", "grype", full.clone()).await;
    assert_eq!(
        again["findings"],
        json!({ "new": 0, "redetected": 5, "reopened": 0, "resolved": 0, "total": 5 })
    );

    // A report without any of them: all five are remediated.
    let empty = json!({ "matches": [], "source": { "type": "image", "target": {} }, "descriptor": { "name": "grype" } });
    let clean = client
        .import("api:1", "grype", empty.to_string().into_bytes())
        .await;
    assert_eq!(clean["findings"]["resolved"], 5);
    assert_eq!(clean["findings"]["total"], 0);

    let back = client.import("api:1", "grype", full.clone()).await;
    assert_eq!(
        back["findings"],
        json!({ "new": 0, "redetected": 0, "reopened": 5, "resolved": 0, "total": 5 })
    );

    // Another scanner's report on the same target does not resolve grype's findings,
    // and the same report on another target creates new ones.
    let other_scanner = client
        .import("api:1", "trivy", empty.to_string().into_bytes())
        .await;
    assert_eq!(other_scanner["findings"]["resolved"], 0);
    let other_target = client.import("api:2", "grype", full).await;
    assert_eq!(other_target["findings"]["new"], 5);

    let findings: i64 = sqlx::query_scalar("SELECT count(*) FROM finding_index")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(findings, 10);
    // Five findings, each: detected, resolved, reopened — and no event per redetection.
    let per_finding: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'finding' GROUP BY aggregate_id ORDER BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(per_finding, [1, 1, 1, 1, 1, 3, 3, 3, 3, 3]);
}

#[tokio::test]
async fn a_malformed_report_is_422_pointing_at_the_problem_and_changes_nothing() {
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    let (scan, _) = client.launch("app", "grype").await;
    let before = events(&app).await;
    // A body that is not JSON at all is malformed: 400, as for any other body.
    for body in [&b"{\"matches\": ["[..], b"<html>not a report</html>"] {
        let response = client.upload(&scan, None, body.to_vec()).await;
        assert_eq!(response.status(), 400);
        let problem: Value = response.json().await.unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("not valid JSON"),
            "{problem}"
        );
    }
    for (format, body) in [
        (None, b"{\"hello\": \"world\"}".to_vec()),
        // Lists of nothing or of anything are no Trivy report: taken for a clean one,
        // they would resolve every open finding of the target and scanner.
        (None, b"[]".to_vec()),
        (None, b"[null]".to_vec()),
        (None, b"[{\"foo\": 1}]".to_vec()),
        (Some("grype"), b"[]".to_vec()),
        (Some("sarif"), report("grype/check_all_fields.json")),
        (Some("grype"), br#"{"matches":[{"vulnerability":{"id":"CVE-1","severity":"Bogus"},"artifact":{"name":"x","version":"1"}}]}"#.to_vec()),
        (Some("nonsense"), report("grype/check_all_fields.json")),
    ] {
        let response = client.upload(&scan, format, body).await;
        assert_eq!(response.status(), 422, "{format:?}");
        let problem: Value = response.json().await.unwrap();
        assert!(!problem["errors"][0]["message"].as_str().unwrap().is_empty(), "{problem}");
    }
    assert_eq!(events(&app).await, before);
    let detail: Value = client
        .get(&format!("/api/v1/scans/{scan}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["status"], "QUEUED");
    // Declared, an empty list is a Trivy report without results.
    let response = client.upload(&scan, Some("trivy"), b"[]".to_vec()).await;
    assert_eq!(response.status(), 200);
}

/// The scan's tags are the user's (`prod`, `team-a`); the `tag` filters of the
/// finding list and the dashboard must find what the scan detected by them.
#[tokio::test]
async fn a_scans_tags_go_on_the_findings_it_detects() {
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    let imported = client
        .import("api:1", "grype", report("grype/check_all_fields.json"))
        .await;
    assert_eq!(imported["findings"]["new"], 5);
    let position = imported["position"].to_string();
    let read = |path: &'static str| {
        let request = app
            .client
            .get(app.url(path))
            .bearer_auth(&client.token)
            .header("x-min-position", position.clone());
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let tagged = read("/api/v1/findings?tag=prod&limit=200").await;
    assert_eq!(tagged["meta"]["total"], 5, "{tagged}");
    for finding in tagged["data"].as_array().unwrap() {
        assert!(
            finding["tags"].as_array().unwrap().contains(&json!("prod")),
            "{finding}"
        );
    }
    let none = read("/api/v1/findings?tag=staging").await;
    assert_eq!(none["meta"]["total"], 0);
    let kpis = read("/api/v1/dashboard/kpis?tag=prod").await;
    assert_eq!(kpis["totalFindings"], 5, "{kpis}");
}

#[tokio::test]
async fn a_report_larger_than_the_configured_limit_is_413() {
    let app = common::spawn_app_with(|c| c.report_max_bytes = 64 * 1024).await;
    let client = analyst(&app).await;
    let (scan, _) = client.launch("app", "grype").await;
    let response = client
        .upload(&scan, None, report("grype/many_vulns.json"))
        .await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    // A report under the limit but over the general 1 MiB would be fine by default.
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    client
        .import("app", "grype", report("grype/many_vulns.json"))
        .await;
}

#[tokio::test]
async fn an_api_key_with_scans_write_runs_a_whole_scan_and_scans_read_only_reads() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let writer = app.api_key(&session, &["scans:write", "scans:read"]).await;
    let reader = app.api_key(&session, &["scans:read"]).await;
    let response = app
        .client
        .post(app.url("/api/v1/scans"))
        .header("x-api-key", &reader)
        .json(&json!({ "target": "t", "scanner": "s" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let ci = Client {
        app: &app,
        token: writer,
    };
    let body = ci
        .import("t", "grype", report("grype/check_all_fields.json"))
        .await;
    let scan = body["scanId"].as_str().unwrap();
    let read = app
        .client
        .get(app.url(&format!("/api/v1/scans/{scan}")))
        .header("x-api-key", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let actor: String = sqlx::query_scalar(
        "SELECT metadata->>'actor_id' FROM events WHERE aggregate_id = $1 ORDER BY sequence DESC LIMIT 1",
    )
    .bind(scan)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        actor,
        session.user_id.to_string(),
        "a key acts for its creator"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_imports_of_one_target_never_create_a_finding_twice() {
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    let mut scans = Vec::new();
    for _ in 0..6 {
        scans.push(client.launch("api:1", "grype").await.0);
    }
    let body = report("grype/check_all_fields.json");
    let uploads = scans
        .iter()
        .map(|scan| client.upload(scan, None, body.clone()));
    let responses = futures::future::join_all(uploads).await;
    let mut new = 0;
    for response in responses {
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        new += body["findings"]["new"].as_u64().unwrap();
    }
    assert_eq!(new, 5, "exactly one import created each finding");
    let findings: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = 'finding'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(findings, 5);
}

#[tokio::test]
async fn scans_are_listed_newest_first_filtered_by_status_and_target() {
    let app = common::spawn_app().await;
    let client = analyst(&app).await;
    let (queued, _) = client.launch("api:1", "trivy").await;
    let (stopped, _) = client.launch("api:1", "trivy").await;
    client
        .post(&format!("/api/v1/scans/{stopped}/stop"), json!({}))
        .await;
    let done = client
        .import("web:2", "grype", report("grype/check_all_fields.json"))
        .await;
    let completed = done["scanId"].as_str().unwrap().to_owned();

    let list: Value = client.get("/api/v1/scans").await.json().await.unwrap();
    assert_eq!(list["meta"]["total"], 3);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [completed.as_str(), stopped.as_str(), queued.as_str()]);
    assert_eq!(list["data"][0]["status"], "COMPLETED");
    assert!(list["data"][0]["summary"]["CRITICAL"].is_u64());

    let by_status: Value = client
        .get("/api/v1/scans?status=QUEUED,CANCELLED")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_status["meta"]["total"], 2);
    let by_target: Value = client
        .get("/api/v1/scans?target=web:2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_target["meta"]["total"], 1);
    assert_eq!(by_target["data"][0]["id"], completed.as_str());

    let first: Value = client
        .get("/api/v1/scans?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["meta"]["nextCursor"].as_str().unwrap();
    let rest: Value = client
        .get(&format!("/api/v1/scans?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["data"][0]["id"], queued.as_str());
    assert!(rest["meta"]["nextCursor"].is_null());

    assert_eq!(client.get("/api/v1/scans?status=DONE").await.status(), 400);
    let other = app.signed_in("globex", Role::Admin).await;
    let theirs: Value = app
        .client
        .get(app.url("/api/v1/scans"))
        .bearer_auth(&other.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["meta"]["total"], 0);
}
