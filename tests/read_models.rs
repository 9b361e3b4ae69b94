//! Read models over HTTP: the finding list, dashboards, assets and the CVE view agree
//! with what was imported from real reports and with triage; read-your-writes.

mod common;

use std::collections::HashSet;

use common::api::Api;
use reqwest::Method;
use serde_json::{json, Value};
use vulnledger_aggregates::Role;

const REPORTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/reports");

fn report(path: &str) -> Vec<u8> {
    std::fs::read(format!("{REPORTS}/{path}")).expect("fixture exists")
}

/// Follows `nextCursor` from `path` to the end; every row of every page.
async fn all_pages(api: &Api<'_>, path: &str, position: i64) -> Vec<Value> {
    pages_of(api, path, position, 200).await
}

/// [`all_pages`] with pages of `limit` rows.
async fn pages_of(api: &Api<'_>, path: &str, position: i64, limit: usize) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut rows = Vec::new();
    let mut next = format!("{path}{sep}limit={limit}");
    loop {
        let page = api.get_after(&next, position).await;
        assert_eq!(page.status, 200, "{next}: {}", page.body);
        rows.extend(page.body["data"].as_array().unwrap().iter().cloned());
        match page.body["meta"]["nextCursor"].as_str() {
            Some(cursor) => next = format!("{path}{sep}limit={limit}&cursor={cursor}"),
            None => return rows,
        }
    }
}

/// A native report of HIGH findings in zlib, one per title.
fn zlib_report(titles: &[&str]) -> Vec<u8> {
    let findings: Vec<Value> = titles
        .iter()
        .map(|t| json!({ "title": t, "severity": "HIGH", "package": "zlib" }))
        .collect();
    serde_json::to_vec(&json!({ "findings": findings })).unwrap()
}

/// `meta.total` of a list answer that must be a 200.
fn total(answer: &common::api::Answer) -> i64 {
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["meta"]["total"].as_i64().unwrap()
}

#[tokio::test]
async fn a_real_grype_report_shows_up_exactly_in_the_list_dashboard_and_assets() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let api = Api::new(&app, &session);
    let imported = api
        .import(
            "registry/shop:1.0",
            "grype",
            report("grype/many_vulns.json"),
        )
        .await;
    let position = imported.position();
    let new = imported.body["findings"]["new"].as_i64().unwrap();
    assert_eq!(new, 1509);

    let kpis = api.get_after("/api/v1/dashboard/kpis", position).await;
    assert_eq!(kpis.status, 200, "{}", kpis.body);
    assert!(
        kpis.header("x-projection-position")
            .unwrap()
            .parse::<i64>()
            .unwrap()
            >= position
    );
    let k = &kpis.body;
    assert_eq!(k["totalFindings"], 1509);
    assert_eq!(k["openFindings"], 1509);
    assert_eq!(k["totalAssets"], 1);
    assert_eq!(k["newLast7Days"], 1509);
    let by_severity: i64 = k["bySeverity"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(by_severity, 1509);

    // Every finding exactly once across cursor pages, most severe first.
    let rows = all_pages(&api, "/api/v1/findings", position).await;
    assert_eq!(rows.len(), 1509);
    let ids: HashSet<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1509);
    let rank = |s: &Value| match s.as_str().unwrap() {
        "CRITICAL" => 4,
        "HIGH" => 3,
        "MEDIUM" => 2,
        "LOW" => 1,
        _ => 0,
    };
    assert!(rows
        .windows(2)
        .all(|w| rank(&w[0]["severity"]) >= rank(&w[1]["severity"])));
    // Counts per severity in the list equal the dashboard's.
    for (severity, count) in k["bySeverity"].as_object().unwrap() {
        let listed = rows.iter().filter(|r| r["severity"] == *severity).count() as i64;
        assert_eq!(listed, count.as_i64().unwrap(), "{severity}");
        let filtered = api
            .get_after(
                &format!("/api/v1/findings?severity={severity}&limit=1"),
                position,
            )
            .await;
        assert_eq!(filtered.body["meta"]["total"], *count, "{severity}");
    }

    let assets = api.get_after("/api/v1/assets", position).await;
    assert_eq!(assets.status, 200);
    assert_eq!(assets.body["meta"]["total"], 1);
    let asset = &assets.body["data"][0];
    assert_eq!(asset["asset"], "registry/shop:1.0");
    assert_eq!(asset["findings"]["total"], 1509);
    assert_eq!(asset["worstSeverity"], rows[0]["severity"]);

    let encoded = "registry%2Fshop%3A1.0";
    let of_asset = api
        .get_after(
            &format!("/api/v1/assets/{encoded}/findings?limit=5"),
            position,
        )
        .await;
    assert_eq!(of_asset.status, 200, "{}", of_asset.body);
    assert_eq!(of_asset.body["meta"]["total"], 1509);
    let unknown = api.get("/api/v1/assets/nope/findings").await;
    assert_eq!(unknown.status, 404);

    // The CVE view: every finding with that CVE, and nothing else.
    let cve = rows
        .iter()
        .find_map(|r| r["cve"].as_str().filter(|c| c.starts_with("CVE-")))
        .expect("a CVE in the report")
        .to_owned();
    let expected = rows.iter().filter(|r| r["cve"] == cve.as_str()).count();
    let by_cve = api
        .get_after(
            &format!("/api/v1/vulnerabilities/cve/{}", cve.to_lowercase()),
            position,
        )
        .await;
    assert_eq!(by_cve.status, 200);
    assert_eq!(by_cve.body["meta"]["total"], expected as i64);
    assert!(by_cve.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["cve"] == cve.as_str()));

    // Free text and scan filters are exact too.
    let package = rows[0]["package"].as_str().unwrap().to_owned();
    let needle = package.to_lowercase();
    let matching: Vec<Value> = rows
        .iter()
        .filter(|r| {
            [&r["title"], &r["cve"], &r["asset"], &r["package"]]
                .iter()
                .any(|v| {
                    v.as_str()
                        .is_some_and(|s| s.to_lowercase().contains(&needle))
                })
        })
        .cloned()
        .collect();
    let expected = matching.len() as i64;
    let searched = api
        .get_after(
            &format!("/api/v1/findings?q={}&limit=1", package.to_uppercase()),
            position,
        )
        .await;
    assert_eq!(searched.body["meta"]["total"], expected);

    // A search in the default order (or its reverse) reads the search index in that
    // order: page after page, exactly the rows of the whole list that match, in the
    // list's order, also beside another filter.
    let ids_of = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(matching.len() > 3, "the search should need several pages");
    let searched = pages_of(&api, &format!("/api/v1/findings?q={needle}"), position, 3).await;
    assert_eq!(ids_of(&searched), ids_of(&matching));
    let reversed = pages_of(
        &api,
        &format!("/api/v1/findings?q={needle}&sort=severity,firstSeen"),
        position,
        3,
    )
    .await;
    let mut expected = ids_of(&matching);
    expected.reverse();
    assert_eq!(ids_of(&reversed), expected);
    let severity = matching[0]["severity"].as_str().unwrap();
    let narrowed = pages_of(
        &api,
        &format!("/api/v1/findings?q={needle}&severity={severity}"),
        position,
        2,
    )
    .await;
    let expected: Vec<Value> = matching
        .iter()
        .filter(|r| r["severity"] == severity)
        .cloned()
        .collect();
    assert_eq!(ids_of(&narrowed), ids_of(&expected));

    let scan_id = imported.body["scanId"].as_str().unwrap();
    let of_scan = api
        .get_after(
            &format!("/api/v1/findings?scanId={scan_id}&limit=1"),
            position,
        )
        .await;
    assert_eq!(of_scan.body["meta"]["total"], 1509);
}

#[tokio::test]
async fn triage_and_a_second_scan_move_every_counter() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &session);
    let native = |titles: &[(&str, &str)]| {
        serde_json::to_vec(&json!({ "findings": titles.iter().map(|(t, s)| json!({
            "title": t, "severity": s, "package": "openssl", "cve": format!("CVE-2026-{}", t.len())
        })).collect::<Vec<_>>() }))
        .unwrap()
    };
    let first = api
        .import(
            "api:1",
            "native",
            native(&[
                ("alpha", "CRITICAL"),
                ("bravo-x", "HIGH"),
                ("charlie-xx", "LOW"),
            ]),
        )
        .await;
    let list = api
        .get_after("/api/v1/findings?sort=-severity", first.position())
        .await;
    let id_of = |title: &str| {
        list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["title"] == title)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (alpha, charlie) = (id_of("alpha"), id_of("charlie-xx"));

    let fp = api
        .send(
            Method::PATCH,
            &format!("/api/v1/findings/{charlie}/status"),
            Some("\"1\""),
            json!({ "status": "FALSE_POSITIVE", "justification": "test fixture" }),
        )
        .await;
    assert_eq!(fp.status, 200, "{}", fp.body);
    api.confirm(&alpha).await;
    // bravo disappears from the next report: auto-resolved.
    let second = api
        .import("api:1", "native", native(&[("alpha", "CRITICAL")]))
        .await;
    assert_eq!(second.body["findings"]["resolved"], 1);

    let k = api
        .get_after("/api/v1/dashboard/kpis", second.position())
        .await
        .body;
    assert_eq!(k["totalFindings"], 3);
    assert_eq!(k["openFindings"], 1, "{k}");
    assert_eq!(k["falsePositives"], 1);
    assert_eq!(k["bySeverity"]["CRITICAL"], 1);
    assert_eq!(k["bySeverity"]["HIGH"], 0);
    assert_eq!(k["remediatedLast7Days"], 1);
    assert!(k["mttrDays"]["HIGH"].is_number(), "{k}");
    assert!(k["mttrDays"]["CRITICAL"].is_null());
    assert_eq!(k["riskScore"], 10);

    let breakdown = api
        .get_after("/api/v1/dashboard/severity-breakdown", second.position())
        .await
        .body;
    assert_eq!(breakdown["total"], 3);
    assert_eq!(breakdown["bySeverity"]["HIGH"]["byStatus"]["RESOLVED"], 1);
    assert_eq!(
        breakdown["bySeverity"]["LOW"]["byStatus"]["FALSE_POSITIVE"],
        1
    );
    assert_eq!(
        breakdown["bySeverity"]["CRITICAL"]["byStatus"]["CONFIRMED"],
        1
    );

    let open = api
        .get_after("/api/v1/findings?status=OPEN,CONFIRMED", second.position())
        .await;
    assert_eq!(open.body["meta"]["total"], 1);
    assert_eq!(open.body["data"][0]["id"], alpha.as_str());
    assert_eq!(open.body["data"][0]["status"], "CONFIRMED");
    let resolved = api
        .get_after("/api/v1/findings?status=RESOLVED", second.position())
        .await;
    assert_eq!(resolved.body["data"][0]["title"], "bravo-x");
    assert!(resolved.body["data"][0]["resolvedAt"].is_string());

    let assets = api
        .get_after("/api/v1/assets?severity=CRITICAL", second.position())
        .await;
    assert_eq!(assets.body["data"][0]["findings"]["open"], 1);
    assert_eq!(assets.body["data"][0]["worstSeverity"], "CRITICAL");
    let none = api
        .get_after("/api/v1/assets?severity=HIGH", second.position())
        .await;
    assert_eq!(none.body["meta"]["total"], 0);
}

#[tokio::test]
async fn a_keyset_cursor_neither_repeats_nor_skips_while_findings_are_added() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let api = Api::new(&app, &session);
    let first = api
        .import(
            "registry/shop:1.0",
            "grype",
            report("grype/many_vulns.json"),
        )
        .await;
    let page1 = api
        .get_after(
            "/api/v1/findings?sort=firstSeen&limit=100",
            first.position(),
        )
        .await;
    let mut seen: Vec<String> = page1.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    // New findings arrive between pages (another asset, so they sort after).
    let more = api
        .import(
            "registry/other:2.0",
            "trivy",
            report("trivy/legacy_many_vulns.json"),
        )
        .await;
    let mut cursor = page1.body["meta"]["nextCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    loop {
        let page = api
            .get_after(
                &format!("/api/v1/findings?sort=firstSeen&limit=200&cursor={cursor}"),
                more.position(),
            )
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        seen.extend(
            page.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match page.body["meta"]["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "no finding is listed twice");
    let total = api
        .get_after("/api/v1/findings?limit=1", more.position())
        .await
        .body["meta"]["total"]
        .as_i64()
        .unwrap();
    assert_eq!(seen.len() as i64, total, "none is skipped");

    // A cursor made for one sort is refused by another.
    let other = api
        .get(&format!("/api/v1/findings?sort=-severity&cursor={cursor}"))
        .await;
    assert_eq!(other.status, 400);
}

#[tokio::test]
async fn bad_list_and_dashboard_queries_are_clear_problems() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &session);
    for path in [
        "/api/v1/findings?severity=SEVERE",
        "/api/v1/findings?status=DONE",
        "/api/v1/findings?sort=title",
        "/api/v1/findings?limit=201",
        "/api/v1/findings?scanId=not-a-uuid",
        "/api/v1/findings?from=yesterday",
        "/api/v1/findings?from=2026-02-01&until=2026-01-01",
        "/api/v1/findings?cursor=bm9wZQ",
        "/api/v1/dashboard/trends?interval=month",
        "/api/v1/dashboard/trends?from=2026-02-01&until=2026-01-01",
        "/api/v1/dashboard/trends?from=2000-01-01&until=2026-01-01",
        "/api/v1/assets?severity=BAD",
    ] {
        let answer = api.get(path).await;
        assert!(
            answer.status == 400 || answer.status == 422,
            "{path}: {} {}",
            answer.status,
            answer.body
        );
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json"),
            "{path}"
        );
    }
    let bad_position = api
        .call(
            api.request(Method::GET, "/api/v1/dashboard/kpis")
                .header("x-min-position", "soon"),
        )
        .await;
    assert_eq!(bad_position.status, 400);
}

#[tokio::test]
async fn a_read_that_waits_for_a_position_never_reached_is_a_503_with_retry_after() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Viewer).await;
    let api = Api::new(&app, &session);
    let started = std::time::Instant::now();
    let answer = api.get_after("/api/v1/dashboard/kpis", 1_000_000_000).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.header("retry-after"), Some("1"));
    let waited = started.elapsed();
    assert!(waited >= std::time::Duration::from_secs(4), "{waited:?}");
}

#[tokio::test]
async fn the_sla_policy_is_read_changed_by_admins_only_and_validated() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let api = Api::new(&app, &admin);
    let current = api.get("/api/v1/settings/sla").await;
    assert_eq!(current.status, 200);
    assert_eq!(
        current.body["policy"],
        json!({"CRITICAL":7,"HIGH":30,"MEDIUM":90,"LOW":180,"INFO":365})
    );
    let policy = json!({"CRITICAL":3,"HIGH":14,"MEDIUM":60,"LOW":120,"INFO":365});
    let refused = Api::new(&app, &analyst)
        .send(Method::PUT, "/api/v1/settings/sla", None, policy.clone())
        .await;
    assert_eq!(refused.status, 403);
    let invalid = api
        .send(
            Method::PUT,
            "/api/v1/settings/sla",
            None,
            json!({"CRITICAL":0,"HIGH":14,"MEDIUM":60,"LOW":120,"INFO":365}),
        )
        .await;
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    let changed = api
        .send(Method::PUT, "/api/v1/settings/sla", None, policy.clone())
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let sla = api
        .get_after("/api/v1/dashboard/sla", changed.position())
        .await;
    assert_eq!(sla.body["policy"], policy);
    let unchanged = api.get("/api/v1/settings/sla").await;
    assert_eq!(unchanged.body["policy"], policy);
}

/// Search text is written once per finding, beside its row: a status change rewrites
/// the row (and every one of its index entries) but never the trigram index, and the
/// search still answers with the row's current status.
#[tokio::test]
async fn triage_rewrites_the_row_but_not_its_search_text() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &session);
    let report = serde_json::to_vec(&json!({ "findings": [
        { "title": "heap overflow in zlib", "severity": "HIGH", "package": "zlib" },
        { "title": "path traversal", "severity": "LOW", "package": "tar" },
    ]}))
    .unwrap();
    let imported = api.import("api:1", "native", report).await;
    let found = api
        .get_after("/api/v1/findings?q=ZLIB", imported.position())
        .await;
    assert_eq!(found.body["meta"]["total"], 1, "{}", found.body);
    let id = found.body["data"][0]["id"].as_str().unwrap().to_owned();
    let versions = |table: &'static str| {
        let pool = app.db.pool.clone();
        let id: uuid::Uuid = id.parse().unwrap();
        async move {
            sqlx::query_scalar::<_, String>(&format!(
                "SELECT xmin::text FROM {table} WHERE id = $1"
            ))
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (row_before, text_before) = (
        versions("finding_view").await,
        versions("finding_text").await,
    );

    let confirmed = api.confirm(&id).await;
    let found = api
        .get_after("/api/v1/findings?q=zlib", confirmed.position())
        .await;
    assert_eq!(found.body["meta"]["total"], 1);
    assert_eq!(found.body["data"][0]["status"], "CONFIRMED");
    let none = api
        .get_after("/api/v1/findings?q=openssl", confirmed.position())
        .await;
    assert_eq!(none.body["meta"]["total"], 0);

    assert_ne!(
        versions("finding_view").await,
        row_before,
        "the row was rewritten"
    );
    assert_eq!(
        versions("finding_text").await,
        text_before,
        "the search text was not"
    );
}

#[tokio::test]
async fn a_search_total_follows_new_findings_through_triage_and_other_tenants() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &session);
    let imported = api
        .import(
            "api:1",
            "native",
            zlib_report(&["heap overflow", "integer overflow"]),
        )
        .await;
    let first = api
        .get_after("/api/v1/findings?q=zlib", imported.position())
        .await;
    assert_eq!(total(&first), 2);

    // Triage moves the projection but adds no finding: the same total.
    let id = first.body["data"][0]["id"].as_str().unwrap().to_owned();
    let confirmed = api.confirm(&id).await;
    let after_triage = api
        .get_after("/api/v1/findings?q=zlib", confirmed.position())
        .await;
    assert_eq!(total(&after_triage), 2);

    // Another tenant's matching findings are not this tenant's.
    let other = app.signed_in("globex", Role::Admin).await;
    let elsewhere = Api::new(&app, &other)
        .import("api:1", "native", zlib_report(&["use after free"]))
        .await;
    let unchanged = api
        .get_after("/api/v1/findings?q=zlib", elsewhere.position())
        .await;
    assert_eq!(total(&unchanged), 2);

    // New matching findings in this tenant are counted at once.
    let more = api
        .import(
            "api:2",
            "native",
            zlib_report(&["heap overflow", "double free"]),
        )
        .await;
    let grown = api
        .get_after("/api/v1/findings?q=zlib", more.position())
        .await;
    assert_eq!(total(&grown), 4);
    assert_eq!(grown.body["data"].as_array().unwrap().len(), 4);
    let narrowed = api
        .get_after("/api/v1/findings?q=double", more.position())
        .await;
    assert_eq!(total(&narrowed), 1);
}

#[tokio::test]
async fn a_tenants_cached_answers_outlive_other_tenants_writes_but_not_its_own() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &session);
    let other = app.signed_in("globex", Role::Admin).await;
    let elsewhere = Api::new(&app, &other);
    // A search with another filter: its total is counted, then cached.
    const OPEN_ZLIB: &str = "/api/v1/findings?q=zlib&status=OPEN";
    let misses = || app.caches.stats().1;
    let imported = api
        .import(
            "api:1",
            "native",
            zlib_report(&["heap overflow", "integer overflow"]),
        )
        .await;
    assert_eq!(
        total(&api.get_after(OPEN_ZLIB, imported.position()).await),
        2
    );
    let before = misses();

    // Three batches of another tenant: acme's total is served from the cache. Keyed
    // by the global position it was counted again after each (3 misses); one miss
    // is allowed for a checkpoint poll that ran before a batch's notice arrived.
    for i in 0..3 {
        let theirs = elsewhere
            .import(
                &format!("api:{i}"),
                "native",
                zlib_report(&["use after free"]),
            )
            .await;
        assert_eq!(total(&api.get_after(OPEN_ZLIB, theirs.position()).await), 2);
    }
    assert!(
        misses() - before <= 1,
        "another tenant's writes made acme's cached total stale {} times",
        misses() - before
    );

    // acme's own triage is counted at once.
    let first = api.get_after(OPEN_ZLIB, imported.position()).await;
    let id = first.body["data"][0]["id"].as_str().unwrap().to_owned();
    let confirmed = api.confirm(&id).await;
    assert_eq!(
        total(&api.get_after(OPEN_ZLIB, confirmed.position()).await),
        1
    );

    // And so are acme's new findings, whatever the other tenant did meanwhile.
    let more = api
        .import(
            "api:2",
            "native",
            zlib_report(&["heap overflow", "double free"]),
        )
        .await;
    let late = elsewhere
        .import(
            "api:9",
            "native",
            zlib_report(&["stack overflow", "format string"]),
        )
        .await;
    assert_eq!(total(&api.get_after(OPEN_ZLIB, more.position()).await), 3);
    let theirs = elsewhere.get_after(OPEN_ZLIB, late.position()).await;
    assert_eq!(total(&theirs), 5);
    for (who, findings) in [(&api, 4), (&elsewhere, 5)] {
        let kpis = who
            .get_after("/api/v1/dashboard/kpis", late.position())
            .await;
        assert_eq!(kpis.status, 200, "{}", kpis.body);
        assert_eq!(kpis.body["totalFindings"], json!(findings), "{}", kpis.body);
    }
    let kpis = api
        .get_after("/api/v1/dashboard/kpis", more.position())
        .await;
    assert_eq!(kpis.body["openFindings"], json!(4), "{}", kpis.body);
}
