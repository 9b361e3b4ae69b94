//! Projection workers and the counters they keep: trends and SLA over a simulated
//! history, and exactness when a worker dies mid-batch or a batch comes twice.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::api::Api;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use vulnledger::commands::{Actor, CommandContext, CommandService};
use vulnledger::importers::{self, ReportFormat};
use vulnledger::projector::{self, Worker};
use vulnledger::store::EventStore;
use vulnledger_aggregates::{Role, Scan, ScanCommand};

/// Records a native report with `findings` (title, severity) as a scan of `target`
/// that happened at `at`, through the real command path; returns the last position.
async fn scan_at(
    pool: &PgPool,
    tenant: Uuid,
    target: &str,
    findings: &[(&str, &str)],
    at: DateTime<Utc>,
) -> i64 {
    let ctx = CommandContext {
        tenant_id: tenant,
        actor: Actor::system("test"),
        request_id: "history".into(),
    };
    let commands = CommandService::new(EventStore::new(pool.clone()));
    let scan = Uuid::now_v7();
    commands
        .execute::<Scan>(
            &ctx,
            &scan.to_string(),
            None,
            ScanCommand::LaunchScan {
                target: target.into(),
                scanner: "native".into(),
                profile: None,
                branch: None,
                commit: None,
                tags: vec![],
                at,
            },
            &(),
        )
        .await
        .expect("scan launched");
    let report = json!({ "findings": findings.iter().map(|(title, severity)| json!({
        "title": title, "severity": severity, "package": "libfoo", "tags": ["team:core"]
    })).collect::<Vec<_>>() });
    let parsed = importers::parse(
        &serde_json::to_vec(&report).unwrap(),
        Some(ReportFormat::Native),
    )
    .expect("a valid native report");
    vulnledger::ingest::ingest(commands.store(), &ctx, scan, &parsed, at)
        .await
        .expect("ingested")
        .position
}

fn day(offset: i64) -> String {
    (Utc::now() + Duration::days(offset))
        .date_naive()
        .to_string()
}

#[tokio::test]
async fn trends_and_sla_follow_a_simulated_history() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &session);
    let tenant = session.tenant_id;
    let now = Utc::now();
    // Day -20: three findings. Day -10: charlie is gone. Day -2: bravo is gone too.
    scan_at(
        &app.db.pool,
        tenant,
        "api:1",
        &[("alpha", "CRITICAL"), ("bravo", "HIGH"), ("charlie", "LOW")],
        now - Duration::days(20),
    )
    .await;
    scan_at(
        &app.db.pool,
        tenant,
        "api:1",
        &[("alpha", "CRITICAL"), ("bravo", "HIGH")],
        now - Duration::days(10),
    )
    .await;
    let last = scan_at(
        &app.db.pool,
        tenant,
        "api:1",
        &[("alpha", "CRITICAL")],
        now - Duration::days(2),
    )
    .await;

    let trends = api
        .get_after(
            &format!(
                "/api/v1/dashboard/trends?from={}&until={}",
                day(-21),
                day(0)
            ),
            last,
        )
        .await;
    assert_eq!(trends.status, 200, "{}", trends.body);
    assert_eq!(trends.body["interval"], "day");
    let points = trends.body["points"].as_array().unwrap();
    assert_eq!(points.len(), 22);
    let at = |offset: i64| -> &Value {
        points
            .iter()
            .find(|p| p["date"] == day(offset).as_str())
            .unwrap_or_else(|| panic!("no point for {}", day(offset)))
    };
    assert_eq!(at(-21)["persisting"], 0);
    assert_eq!(at(-20)["new"], 3);
    assert_eq!(at(-20)["persisting"], 3);
    assert_eq!(at(-11)["persisting"], 3);
    assert_eq!(at(-10)["remediated"], 1);
    assert_eq!(at(-10)["persisting"], 2);
    assert_eq!(at(-2)["remediated"], 1);
    assert_eq!(at(0)["persisting"], 1);
    let total_new: i64 = points.iter().map(|p| p["new"].as_i64().unwrap()).sum();
    assert_eq!(total_new, 3);

    // Weekly buckets carry the same totals; a severity filter narrows them.
    let weekly = api
        .get_after(
            &format!(
                "/api/v1/dashboard/trends?interval=week&from={}&until={}",
                day(-21),
                day(0)
            ),
            last,
        )
        .await;
    let weeks = weekly.body["points"].as_array().unwrap();
    assert_eq!(
        weeks
            .iter()
            .map(|p| p["remediated"].as_i64().unwrap())
            .sum::<i64>(),
        2
    );
    assert_eq!(weeks.last().unwrap()["persisting"], 1);
    let critical = api
        .get_after(
            &format!(
                "/api/v1/dashboard/trends?severity=CRITICAL&from={}",
                day(-21)
            ),
            last,
        )
        .await;
    let critical = critical.body["points"].as_array().unwrap();
    assert_eq!(critical.last().unwrap()["persisting"], 1);
    assert_eq!(
        critical
            .iter()
            .map(|p| p["remediated"].as_i64().unwrap())
            .sum::<i64>(),
        0
    );

    // alpha (CRITICAL, 7 days) has been open for 20 days: breached, measured now.
    let sla = api.get_after("/api/v1/dashboard/sla", last).await.body;
    assert_eq!(sla["bySeverity"]["CRITICAL"]["open"], 1);
    assert_eq!(sla["bySeverity"]["CRITICAL"]["breached"], 1);
    assert_eq!(sla["bySeverity"]["CRITICAL"]["compliancePct"], 0.0);
    assert_eq!(sla["bySeverity"]["HIGH"]["open"], 0);
    assert_eq!(sla["bySeverity"]["HIGH"]["compliancePct"], 100.0);
    let k = api.get_after("/api/v1/dashboard/kpis", last).await.body;
    assert_eq!(k["slaBreached"], 1);
    assert_eq!(k["newLast7Days"], 0);
    assert_eq!(k["remediatedLast7Days"], 1);
    // bravo: 18 days to resolve, charlie: 10.
    assert_eq!(k["mttrDays"]["HIGH"], 18.0);
    assert_eq!(k["mttrDays"]["LOW"], 10.0);
    let tagged = api
        .get_after("/api/v1/dashboard/kpis?tag=team:core", last)
        .await
        .body;
    assert_eq!(tagged["slaBreached"], 1);
    assert_eq!(tagged["totalFindings"], 3);
    let breached = api
        .get_after("/api/v1/findings?slaBreached=true", last)
        .await
        .body;
    assert_eq!(breached["meta"]["total"], 1);
    assert_eq!(breached["data"][0]["title"], "alpha");
    assert_eq!(breached["data"][0]["slaBreached"], true);
    // Narrowed by what the deadline index knows (severity, status) and by what it
    // does not (scanner): the same one finding; another severity or status, none.
    for (query, total) in [
        ("severity=CRITICAL", 1),
        ("severity=CRITICAL,HIGH&status=OPEN", 1),
        ("severity=HIGH", 0),
        ("status=CONFIRMED", 0),
        ("scanner=native", 1),
        ("scanner=native&status=RESOLVED", 0),
    ] {
        let page = api
            .get_after(&format!("/api/v1/findings?slaBreached=true&{query}"), last)
            .await
            .body;
        assert_eq!(page["meta"]["total"], total, "{query}: {page}");
        assert_eq!(
            page["data"].as_array().unwrap().len(),
            total as usize,
            "{query}"
        );
    }

    // A month for criticals: alpha is within its deadline again, with no new event
    // on alpha itself.
    let changed = api
        .send(
            Method::PUT,
            "/api/v1/settings/sla",
            None,
            json!({"CRITICAL":30,"HIGH":30,"MEDIUM":90,"LOW":180,"INFO":365}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let sla = api
        .get_after("/api/v1/dashboard/sla", changed.position())
        .await
        .body;
    assert_eq!(sla["policy"]["CRITICAL"], 30);
    assert_eq!(sla["bySeverity"]["CRITICAL"]["breached"], 0);
    assert_eq!(sla["bySeverity"]["CRITICAL"]["withinSla"], 1);
    let alpha = api
        .get_after("/api/v1/findings?severity=CRITICAL", changed.position())
        .await
        .body;
    let due: DateTime<Utc> = alpha["data"][0]["dueAt"].as_str().unwrap().parse().unwrap();
    let first: DateTime<Utc> = alpha["data"][0]["firstSeen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(due - first, Duration::days(30));
    assert_eq!(alpha["data"][0]["slaBreached"], false);
    // The list's breach filter reads the deadlines the policy moved.
    let breached = api
        .get_after("/api/v1/findings?slaBreached=true", changed.position())
        .await
        .body;
    assert_eq!(breached["meta"]["total"], 0, "{breached}");
    assert_eq!(breached["data"], json!([]));
    let breached = api
        .get_after(
            "/api/v1/findings?slaBreached=true&scanner=native",
            changed.position(),
        )
        .await
        .body;
    assert_eq!(breached["data"], json!([]), "{breached}");
}

/// Follows `nextCursor` from `path` in pages of `limit`; the ids of every row.
async fn ids_by_cursor(api: &Api<'_>, path: &str, position: i64, limit: usize) -> Vec<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut ids = Vec::new();
    let mut next = format!("{path}{sep}limit={limit}");
    loop {
        let page = api.get_after(&next, position).await;
        assert_eq!(page.status, 200, "{next}: {}", page.body);
        for row in page.body["data"].as_array().unwrap() {
            ids.push(row["id"].as_str().unwrap().to_owned());
        }
        match page.body["meta"]["nextCursor"].as_str() {
            Some(cursor) => next = format!("{path}{sep}limit={limit}&cursor={cursor}"),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn breached_findings_come_in_the_order_and_pages_of_the_full_list() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &session);
    let now = Utc::now();
    // Default policy: CRITICAL 7 days, HIGH 30, MEDIUM 90. Findings of one scan share
    // their first sighting, so the id decides between them.
    let mut last = 0;
    for (target, days_ago) in [("api:old", 40), ("api:mid", 20), ("api:new", 1)] {
        let findings: Vec<(String, &str)> = ["CRITICAL", "HIGH", "MEDIUM", "LOW"]
            .iter()
            .flat_map(|s| (0..4).map(move |i| (format!("{s} {i}"), *s)))
            .collect();
        let findings: Vec<(&str, &str)> = findings.iter().map(|(t, s)| (t.as_str(), *s)).collect();
        last = scan_at(
            &app.db.pool,
            session.tenant_id,
            target,
            &findings,
            now - Duration::days(days_ago),
        )
        .await;
    }
    // A confirmed finding is still open, and breached all the same.
    let high = api
        .get_after(
            "/api/v1/findings?severity=HIGH&sort=firstSeen&limit=1",
            last,
        )
        .await;
    let id = high.body["data"][0]["id"].as_str().unwrap().to_owned();
    let last = api.confirm(&id).await.position();

    for (sort, filter) in [
        ("", ""),
        ("sort=severity,firstSeen", ""),
        ("", "severity=HIGH"),
        ("", "severity=CRITICAL,MEDIUM"),
        ("", "status=CONFIRMED"),
        ("", "status=OPEN&severity=CRITICAL"),
        // Filters finding_status cannot tell: through finding_view's indexes.
        ("", "asset=api:old"),
        ("", "asset=api:mid&severity=CRITICAL"),
        ("sort=dueAt", ""),
    ] {
        let all = format!("/api/v1/findings?{sort}&{filter}");
        let full = api.get_after(&format!("{all}&limit=200"), last).await;
        assert_eq!(full.status, 200, "{}", full.body);
        let expected: Vec<String> = full.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["slaBreached"] == json!(true))
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect();
        let breached = format!("{all}&slaBreached=true");
        assert_eq!(
            ids_by_cursor(&api, &breached, last, 3).await,
            expected,
            "{breached}"
        );
        let first = api.get_after(&format!("{breached}&limit=2"), last).await;
        assert_eq!(
            first.body["meta"]["total"],
            json!(expected.len()),
            "{breached}"
        );
        let second = api
            .get_after(&format!("{breached}&limit=2&page=2"), last)
            .await;
        let second: Vec<&str> = second.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = expected
            .iter()
            .skip(2)
            .take(2)
            .map(String::as_str)
            .collect();
        assert_eq!(second, want, "{breached}&page=2");
    }
    // The criticals of the two older scans (4 each) and the oldest highs (4), the
    // confirmed one among them.
    let all = api
        .get_after("/api/v1/findings?slaBreached=true&limit=1", last)
        .await;
    assert_eq!(all.body["meta"]["total"], 12, "{}", all.body);
    let confirmed = api
        .get_after("/api/v1/findings?slaBreached=true&status=CONFIRMED", last)
        .await;
    assert_eq!(confirmed.body["meta"]["total"], 1, "{}", confirmed.body);
}

/// A worker for `projection` that has read the whole store. One catch-up can stop
/// short: the ordered reader reads below the cluster-wide horizon, and a long
/// transaction of a test running beside this one (in another database) holds it
/// back for a while. So it catches up until it has applied as many events as the
/// store held when it started.
async fn caught_up(
    pool: PgPool,
    projection: std::sync::Arc<dyn vulnledger_projections::Projection>,
) -> Worker {
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut worker = Worker::for_projection(pool, projection).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        worker
            .catch_up(&tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
        if worker.checkpoint().events >= stored {
            return worker;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not apply all {stored} events within 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until the ordered reader can read every stored event: until no transaction
/// of this database that began before the last commit is still open.
async fn until_readable(pool: &PgPool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (stored, readable): (i64, i64) = sqlx::query_as(
            "SELECT count(*), \
                    count(*) FILTER (WHERE txid < (SELECT events_horizon())) \
             FROM events",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if stored == readable {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {stored} events still above the horizon after 60 s",
            stored - readable
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// What the counters say, as one comparable value.
async fn counters(pool: &PgPool) -> Value {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT json_build_object( \
           'views', (SELECT count(*) FROM finding_view), \
           'counts', (SELECT json_agg(c ORDER BY asset, scanner, severity, status) FROM finding_counts c WHERE count <> 0), \
           'tenant', (SELECT json_agg(t ORDER BY scanner, severity, status) FROM tenant_counts t WHERE count <> 0), \
           'daily', (SELECT json_agg(d ORDER BY day, severity) FROM daily_counts d), \
           'due', (SELECT json_agg(o ORDER BY severity, due_day) FROM open_due_counts o WHERE count <> 0), \
           'assets', (SELECT json_agg(a ORDER BY asset) FROM asset_view a), \
           'scans', (SELECT count(*) FROM finding_scans), \
           'rows', (SELECT md5(string_agg(v::text, '|' ORDER BY id)) FROM finding_view v), \
           'texts', (SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM finding_text t), \
           'statuses', (SELECT md5(string_agg(s::text, '|' ORDER BY id)) FROM finding_status s), \
           'status_mismatches', (SELECT count(*) FROM finding_view v FULL JOIN finding_status s USING (id) \
               WHERE (v.tenant_id, v.status, v.severity_rank, v.due_at) \
                     IS DISTINCT FROM (s.tenant_id, s.status, s.severity_rank, s.due_at)))::text",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    serde_json::from_str(&rows[0].0).unwrap()
}

#[tokio::test]
async fn a_worker_killed_mid_batch_or_fed_a_batch_twice_counts_each_event_once() {
    // No workers in the app: this test drives the projection by hand.
    let app = common::spawn_app_with(|c| c.run_workers = false).await;
    let tenant = app.tenant("acme").await;
    let now = Utc::now();
    let many: Vec<(String, &str)> = (0..3000)
        .map(|i| (format!("finding {i}"), ["CRITICAL", "HIGH", "LOW"][i % 3]))
        .collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(t, s)| (t.as_str(), *s)).collect();
    scan_at(
        &app.db.pool,
        tenant,
        "api:1",
        &refs,
        now - Duration::days(3),
    )
    .await;
    scan_at(
        &app.db.pool,
        tenant,
        "api:1",
        &refs[..1000],
        now - Duration::days(1),
    )
    .await;

    // The reference: one uninterrupted worker on its own database copy would need a
    // second store; instead, run it to the end first and remember the counters.
    let projection = vulnledger_projections::named("findings").unwrap();
    let reference = caught_up(app.db.pool.clone(), projection.clone()).await;
    let expected = counters(&app.db.pool).await;
    assert_eq!(expected["views"], 3000);
    let applied = reference.checkpoint();

    // Start over, and kill workers at random points of their batches.
    projector::reset(&app.db.pool, projection.as_ref())
        .await
        .unwrap();
    for delay_ms in [5u64, 20, 60, 150] {
        let pool = app.db.pool.clone();
        let projection = projection.clone();
        let run = tokio::spawn(async move {
            caught_up(pool, projection).await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        run.abort();
        let _ = run.await;
    }
    let mut survivor = caught_up(app.db.pool.clone(), projection.clone()).await;
    assert_eq!(counters(&app.db.pool).await, expected);
    assert_eq!(survivor.checkpoint().position, applied.position);

    // Redelivery: the whole history handed over again changes nothing.
    let events = vulnledger::store::OrderedReader::new(app.db.pool.clone())
        .read_batch(vulnledger::store::Checkpoint::START, 100_000)
        .await
        .unwrap();
    survivor
        .apply(events.iter().map(projector::projected).collect())
        .await
        .unwrap();
    assert_eq!(counters(&app.db.pool).await, expected);
}

/// Reads `path` once the read models have applied `position`, allowing for NATS
/// reconnect back-off (a 503 means "not yet": retry, as a client would).
async fn read_when_applied(api: &Api<'_>, path: &str, position: i64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let answer = api.get_after(path, position).await;
        if answer.status == 200 {
            return answer.body;
        }
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert!(
            std::time::Instant::now() < deadline,
            "position {position} never applied"
        );
    }
}

#[tokio::test]
async fn read_models_fed_through_jetstream_lose_nothing_when_nats_stops_and_restarts() {
    let mut nats = common::nats::NatsServer::start(common::nats::free_port()).await;
    let url = nats.url();
    let app = common::spawn_app_with(|c| c.nats_url = Some(url)).await;
    let session = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &session);

    let first = api
        .import(
            "registry/a:1",
            "trivy",
            report("trivy/legacy_many_vulns.json"),
        )
        .await;
    let k = read_when_applied(&api, "/api/v1/dashboard/kpis", first.position()).await;
    let before = k["totalFindings"].as_i64().unwrap();
    assert_eq!(before, first.body["findings"]["new"].as_i64().unwrap());
    // The projection really consumed JetStream: its durable consumer exists.
    let js = nats.jetstream().await;
    let stream = js.get_stream("VULNLEDGER_EVENTS").await.unwrap();
    let durable = durable(&app.db.pool, "projection-findings").await;
    assert!(stream.consumer_info(&durable).await.is_ok());

    nats.stop();
    // Commands never wait for NATS.
    let during = api
        .import(
            "registry/b:1",
            "grype",
            report("grype/check_all_fields.json"),
        )
        .await;
    nats.restart().await;
    let after = api
        .import("registry/c:1", "sarif", report("sarif/codeQL-output.sarif"))
        .await;

    let k = read_when_applied(&api, "/api/v1/dashboard/kpis", after.position()).await;
    let new = |a: &common::api::Answer| a.body["findings"]["new"].as_i64().unwrap();
    let expected = before + new(&during) + new(&after);
    assert_eq!(k["totalFindings"], expected, "{k}");
    assert_eq!(k["totalAssets"], 3);
    let list = read_when_applied(&api, "/api/v1/findings?limit=1&q=", after.position()).await;
    assert_eq!(list["meta"]["total"], expected);
    let counted: i64 = sqlx::query_scalar("SELECT count(*) FROM finding_view")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(counted, expected);
    // Every message is acknowledged, those whose acks were lost while NATS was away
    // too: none waits to be delivered again. With explicit acks, 96 and then 17 of
    // them waited for `ack_wait` (60 s) in two of three runs.
    until_acknowledged(&stream, &durable).await;
}

/// The name of the durable consumer `base` for the store of `pool`.
async fn durable(pool: &PgPool, base: &str) -> String {
    projector::durable_name(base, vulnledger::store::identity(pool).await.unwrap())
}

/// Waits (30 s at most) until `durable` has every message delivered and acknowledged.
async fn until_acknowledged(stream: &async_nats::jetstream::stream::Stream, durable: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let info = stream.consumer_info(durable).await.unwrap();
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{durable} still has {} messages unacknowledged and {} undelivered",
            info.num_ack_pending,
            info.num_pending
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn report(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../shared/fixtures/reports/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Two event stores may publish to one NATS server (staging beside production, a
/// test database beside a developer's). The stream and its subjects are shared, so
/// each store's workers must apply every event of their own store, and none of the
/// other's.
#[tokio::test]
async fn two_stores_sharing_one_nats_server_each_project_their_own_events_only() {
    let nats = common::nats::NatsServer::start(common::nats::free_port()).await;
    let (url_a, url_b) = (nats.url(), nats.url());
    let a = common::spawn_app_with(|c| c.nats_url = Some(url_a)).await;
    let b = common::spawn_app_with(|c| c.nats_url = Some(url_b)).await;
    let (session_a, session_b) = (
        a.signed_in("acme", Role::Admin).await,
        b.signed_in("acme", Role::Admin).await,
    );
    let (api_a, api_b) = (Api::new(&a, &session_a), Api::new(&b, &session_b));
    let reports = [
        ("trivy", "trivy/legacy_many_vulns.json"),
        ("grype", "grype/check_all_fields.json"),
        ("sarif", "sarif/codeQL-output.sarif"),
        ("cyclonedx", "cyclonedx/log4j.json"),
    ];
    let (mut new_a, mut new_b, mut last_a, mut last_b) = (0, 0, 0, 0);
    // Interleaved, each store with its own mix, so that their positions overlap.
    for i in 0..reports.len() {
        let (scanner, path) = reports[i];
        let imported = api_a.import(&format!("a/{i}"), scanner, report(path)).await;
        new_a += imported.body["findings"]["new"].as_i64().unwrap();
        last_a = imported.position();
        let (scanner, path) = reports[(i + 1) % reports.len()];
        let imported = api_b.import(&format!("b/{i}"), scanner, report(path)).await;
        new_b += imported.body["findings"]["new"].as_i64().unwrap();
        last_b = imported.position();
        if i == 0 {
            // Once more in A, so that the two stores hold different findings.
            let imported = api_a
                .import("a/extra", "grype", report("grype/check_all_fields.json"))
                .await;
            new_a += imported.body["findings"]["new"].as_i64().unwrap();
            last_a = imported.position();
        }
    }
    assert_ne!(new_a, new_b);

    for (app, session, api, last, new) in [
        (&a, &session_a, &api_a, last_a, new_a),
        (&b, &session_b, &api_b, last_b, new_b),
    ] {
        let k = read_when_applied(api, "/api/v1/dashboard/kpis", last).await;
        assert_eq!(k["totalFindings"], new, "{k}");
        let tenants: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM finding_view")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(tenants, [session.tenant_id], "no other store's findings");
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM finding_view")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(rows, new);
        let stream = nats
            .jetstream()
            .await
            .get_stream(vulnledger::bus::STREAM)
            .await
            .unwrap();
        until_acknowledged(&stream, &durable(&app.db.pool, "projection-findings").await).await;
    }
    // Both stores' messages are in the one stream.
    let js = nats.jetstream().await;
    let stream = js.get_stream(vulnledger::bus::STREAM).await.unwrap();
    let stored = stream.cached_info().state.messages as i64;
    let events = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(
        stored,
        events(a.db.pool.clone()).await + events(b.db.pool.clone()).await
    );
}

/// A store that starts beside a stream already full of another store's messages
/// starts its durable consumers where the stream ends: what came before is either in
/// its own store, read by the catch-up, or none of its business.
#[tokio::test]
async fn a_new_store_sharing_a_stream_does_not_read_the_history_already_in_it() {
    let nats = common::nats::NatsServer::start(common::nats::free_port()).await;
    let url = nats.url();
    let first = common::spawn_app_with(|c| c.nats_url = Some(url)).await;
    let session = first.signed_in("acme", Role::Admin).await;
    let api = Api::new(&first, &session);
    let imported = api
        .import("registry/a:1", "grype", report("grype/many_vulns.json"))
        .await;
    read_when_applied(&api, "/api/v1/dashboard/kpis", imported.position()).await;
    let js = nats.jetstream().await;
    let earlier: u64 = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
        .fetch_one(&first.db.pool)
        .await
        .unwrap() as u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut stream = js.get_stream(vulnledger::bus::STREAM).await.unwrap();
    while stream.info().await.unwrap().state.messages < earlier {
        assert!(std::time::Instant::now() < deadline, "never published");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let url = nats.url();
    let second = common::spawn_app_with(|c| c.nats_url = Some(url)).await;
    let session = second.signed_in("acme", Role::Admin).await;
    let api = Api::new(&second, &session);
    let imported = api
        .import(
            "registry/b:1",
            "grype",
            report("grype/check_all_fields.json"),
        )
        .await;
    let k = read_when_applied(&api, "/api/v1/dashboard/kpis", imported.position()).await;
    assert_eq!(k["totalFindings"], imported.body["findings"]["new"]);
    let durable = durable(&second.db.pool, "projection-findings").await;
    until_acknowledged(&stream, &durable).await;
    let own: u64 = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
        .fetch_one(&second.db.pool)
        .await
        .unwrap() as u64;
    let info = stream.consumer_info(&durable).await.unwrap();
    assert!(
        earlier > own,
        "{earlier} earlier messages, {own} of its own"
    );
    assert!(
        info.delivered.consumer_sequence <= own,
        "{} messages delivered to a store of {own} events: {info:?}",
        info.delivered.consumer_sequence
    );
}

/// The relay now sends each event's transaction id and request id as headers, so
/// that workers need not ask the store; messages an earlier release published
/// without them are still in the stream after an upgrade, and must still apply.
#[tokio::test]
async fn a_worker_applies_events_that_an_earlier_relay_published_without_headers() {
    let nats = common::nats::NatsServer::start(common::nats::free_port()).await;
    // No relay and no workers in the app: the test publishes, as an earlier relay did.
    let app = common::spawn_app_with(|c| c.run_workers = false).await;
    let pool = &app.db.pool;
    let tenant = app.tenant("acme").await;
    let js = nats.jetstream().await;
    js.get_or_create_stream(vulnledger::bus::stream_config())
        .await
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    projector::spawn(pool.clone(), Some(nats.url()), vec![], shutdown.clone());
    // Following JetStream once its durable consumer exists (it caught up on an empty
    // store first); from here on it learns of events from the stream only.
    let stream = js.get_stream(vulnledger::bus::STREAM).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let durable = durable(pool, "projection-findings").await;
    while stream.consumer_info(&durable).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never subscribed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A transaction left open holds the store's horizon below the events appended
    // next, so a worker that fails on the messages and restarts cannot find them in
    // the store instead: the messages are the only way in.
    let mut horizon = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *horizon)
        .await
        .unwrap();
    scan_at(
        pool,
        tenant,
        "api:1",
        &[("first", "HIGH"), ("second", "LOW")],
        Utc::now() - Duration::days(1),
    )
    .await;
    let events: Vec<vulnledger::store::StoredEvent> = sqlx::query_as::<_, StoredRow>(
        "SELECT position, txid::text::bigint AS txid, tenant_id, aggregate_type, \
                aggregate_id, sequence, event_type, event_version, payload, metadata, \
                recorded_at \
         FROM events ORDER BY position",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(StoredRow::into_event)
    .collect();
    assert!(!events.is_empty());
    // Ahead of them, another store's message, also without headers, at the position
    // of one of these events: it must not be taken for that event.
    let detected = events
        .iter()
        .find(|e| e.event_type == "FindingDetected")
        .unwrap();
    let mut foreign = vulnledger::bus::CloudEvent::from_stored(detected);
    let other = Uuid::new_v4();
    foreign.subject = other.to_string();
    foreign.id = format!("{other}:1");
    foreign.data["details"]["title"] = json!("another store's finding");
    let mut published = vec![foreign];
    published.extend(events.iter().map(vulnledger::bus::CloudEvent::from_stored));
    for envelope in published {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", envelope.id.as_str());
        js.publish_with_headers(
            envelope.nats_subject.clone(),
            headers,
            serde_json::to_vec(&envelope).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let at = vulnledger_projections::checkpoint::load(pool, "findings")
            .await
            .unwrap()
            .unwrap_or_default();
        if at.events == events.len() as i64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "applied {} of {} events",
            at.events,
            events.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let titles: Vec<String> = sqlx::query_scalar("SELECT title FROM finding_view ORDER BY title")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(titles, ["first", "second"]);
    shutdown.cancel();
    horizon.rollback().await.unwrap();
}

/// An `events` row, read without the ordered reader's horizon.
#[derive(sqlx::FromRow)]
struct StoredRow {
    position: i64,
    txid: i64,
    tenant_id: Uuid,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
    recorded_at: DateTime<Utc>,
}

impl StoredRow {
    fn into_event(self) -> vulnledger::store::StoredEvent {
        vulnledger::store::StoredEvent {
            position: self.position,
            txid: self.txid,
            tenant_id: self.tenant_id,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version: self.event_version,
            payload: self.payload,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
        }
    }
}

#[tokio::test]
async fn with_nats_an_approval_reaches_its_finding_through_the_approvals_consumer() {
    let nats = common::nats::NatsServer::start(common::nats::free_port()).await;
    let url = nats.url();
    let app = common::spawn_app_with(|c| c.nats_url = Some(url)).await;
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let lead = app.signed_in("acme", Role::SecurityLead).await;
    let (analyst_api, lead_api) = (Api::new(&app, &analyst), Api::new(&app, &lead));
    let report = json!({ "findings": [{ "title": "exposed admin", "severity": "HIGH" }] });
    let imported = analyst_api
        .import("api:1", "native", serde_json::to_vec(&report).unwrap())
        .await;
    let list = read_when_applied(&analyst_api, "/api/v1/findings", imported.position()).await;
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();

    let expires = (Utc::now() + Duration::days(30)).to_rfc3339();
    let opened = analyst_api
        .send(
            Method::POST,
            &format!("/api/v1/findings/{id}/accept-risk"),
            Some("\"1\""),
            json!({ "justification": "behind VPN", "expiresAt": expires }),
        )
        .await;
    assert_eq!(opened.status, 202, "{}", opened.body);
    let approval = opened.body["approvalId"].as_str().unwrap();
    let approved = lead_api
        .send(
            Method::PATCH,
            &format!("/api/v1/approvals/{approval}/transition"),
            Some("\"1\""),
            json!({ "action": "approve" }),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let finding = analyst_api.get(&format!("/api/v1/findings/{id}")).await;
        if finding.body["status"] == "RISK_ACCEPTED" {
            assert_eq!(finding.body["riskAcceptance"]["approvalId"], approval);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never applied");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let js = nats.jetstream().await;
    let stream = js.get_stream("VULNLEDGER_EVENTS").await.unwrap();
    assert!(
        stream
            .consumer_info(&durable(&app.db.pool, "approvals").await)
            .await
            .is_ok(),
        "the process manager follows JetStream"
    );
    // The read models see the acceptance too.
    let k = read_when_applied(&analyst_api, "/api/v1/dashboard/kpis", approved.position()).await;
    assert_eq!(k["totalFindings"], 1);
}

async fn index_names(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' \
         AND tablename IN ('finding_view', 'finding_status', 'finding_text', 'finding_scans', \
                           'asset_view', 'finding_counts') \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_rebuild_swaps_in_the_same_rows_while_commands_and_the_live_worker_go_on() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let api = Api::new(&app, &session);
    let first = api
        .import("registry/a:1", "grype", report("grype/many_vulns.json"))
        .await;
    api.get_after("/api/v1/findings?limit=1", first.position())
        .await;
    let indexes = index_names(&app.db.pool).await;

    // Rebuild while more reports arrive and the live worker applies them.
    let pool = app.db.pool.clone();
    let rebuild = tokio::spawn(async move {
        let projection = vulnledger_projections::named("findings").unwrap();
        vulnledger::rebuild::rebuild(&pool, projection, |_| {})
            .await
            .unwrap()
    });
    let mut last = 0;
    for (i, path) in [
        "trivy/legacy_many_vulns.json",
        "sarif/codeQL-output.sarif",
        "cyclonedx/log4j.json",
    ]
    .iter()
    .enumerate()
    {
        last = api
            .import(&format!("registry/b{i}:1"), "", report(path))
            .await
            .position();
    }
    let rebuilt = rebuild.await.unwrap();
    assert!(rebuilt.checkpoint.events > 1509);
    let more = api
        .import(
            "registry/c:1",
            "trivy",
            report("trivy/scheme_2_many_vulns.json"),
        )
        .await;
    last = last.max(more.position());
    let k = api.get_after("/api/v1/dashboard/kpis", last).await;
    assert_eq!(k.status, 200);
    let live = counters(&app.db.pool).await;

    // A second, quiet rebuild from scratch gives exactly the same read model.
    let projection = vulnledger_projections::named("findings").unwrap();
    vulnledger::rebuild::rebuild(&app.db.pool, projection, |_| {})
        .await
        .unwrap();
    assert_eq!(counters(&app.db.pool).await, live);
    assert_eq!(
        live["status_mismatches"], 0,
        "finding_status follows finding_view"
    );
    // The shadow tables are written with the live tables' storage parameters: the
    // free space that keeps status changes HOT updates.
    let options: Option<Vec<String>> = sqlx::query_scalar(
        "SELECT reloptions FROM pg_class WHERE oid = 'public.finding_view'::regclass",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(options, Some(vec!["fillfactor=90".to_owned()]));
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'FindingDetected'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(live["views"], distinct);
    assert_eq!(k.body["totalFindings"], distinct);
    assert_eq!(
        index_names(&app.db.pool).await,
        indexes,
        "index names survive"
    );
    let shadows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'rebuild_%'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(shadows, 0);
}

/// The findings projection, replaying with a memory bound small enough that a test's
/// history crosses it many times.
struct Forgetful(usize);

#[async_trait::async_trait]
impl vulnledger_projections::Projection for Forgetful {
    fn name(&self) -> &'static str {
        "findings"
    }

    fn version(&self) -> i32 {
        vulnledger_projections::FindingsProjection.version()
    }

    fn tables(&self) -> &'static [&'static str] {
        vulnledger_projections::FindingsProjection.tables()
    }

    async fn apply(
        &self,
        conn: &mut sqlx::PgConnection,
        events: &[vulnledger_projections::ProjectedEvent],
    ) -> Result<(), vulnledger_projections::ProjectionError> {
        vulnledger_projections::FindingsProjection
            .apply(conn, events)
            .await
    }

    fn replay(&self, _max_rows: usize) -> Option<Box<dyn vulnledger_projections::Replay>> {
        Some(vulnledger_projections::findings::replay_holding(self.0))
    }
}

/// A history with every kind of finding event the projection folds: detections,
/// sightings over several scans, auto-resolution, reopening, triage and a policy
/// change halfway. Returns the last position.
async fn eventful_history(app: &common::TestApp, api: &Api<'_>) -> i64 {
    let tenant = app.tenant("acme").await;
    let now = Utc::now();
    let titles: Vec<String> = (0..400).map(|i| format!("finding {i}")).collect();
    let all: Vec<(&str, &str)> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), ["CRITICAL", "HIGH", "MEDIUM", "LOW"][i % 4]))
        .collect();
    scan_at(
        &app.db.pool,
        tenant,
        "api:1",
        &all,
        now - Duration::days(20),
    )
    .await;
    scan_at(
        &app.db.pool,
        tenant,
        "api:1",
        &all[..300],
        now - Duration::days(15),
    )
    .await;
    let changed = api
        .send(
            Method::PUT,
            "/api/v1/settings/sla",
            None,
            json!({"CRITICAL":3,"HIGH":10,"MEDIUM":60,"LOW":120,"INFO":365}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    scan_at(
        &app.db.pool,
        tenant,
        "api:1",
        &all[100..],
        now - Duration::days(10),
    )
    .await;
    scan_at(
        &app.db.pool,
        tenant,
        "web:1",
        &all[..50],
        now - Duration::days(5),
    )
    .await;
    // Five findings every scan of api:1 reported, hence open; read from the store,
    // so that this works without projection workers too.
    let open: Vec<(String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, max(sequence) FROM events WHERE aggregate_type = 'finding' \
           AND aggregate_id IN (SELECT aggregate_id FROM events \
             WHERE event_type = 'FindingDetected' \
               AND payload->'FindingDetected'->'details'->>'title' \
                   IN ('finding 150', 'finding 151', 'finding 152', 'finding 153', 'finding 154')) \
         GROUP BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(open.len(), 5);
    let mut last = 0;
    for (id, version) in open {
        let answer = api
            .send(
                Method::PATCH,
                &format!("/api/v1/findings/{id}/status"),
                Some(&format!("\"{version}\"")),
                json!({"status": "FALSE_POSITIVE", "justification": "test data"}),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        last = answer.position();
    }
    last
}

#[tokio::test]
async fn a_rebuild_that_writes_out_and_forgets_its_rows_midway_equals_the_live_read_model() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &session);
    let last = eventful_history(&app, &api).await;
    api.get_after("/api/v1/findings?limit=1", last).await;
    let live = counters(&app.db.pool).await;
    assert_eq!(live["views"], 450);
    assert_eq!(
        live["status_mismatches"], 0,
        "finding_status follows finding_view"
    );

    for holding in [1, 37, 1_000_000] {
        let rebuilt = vulnledger::rebuild::rebuild(
            &app.db.pool,
            std::sync::Arc::new(Forgetful(holding)),
            |_| {},
        )
        .await
        .unwrap();
        assert!(rebuilt.checkpoint.position >= last);
        assert_eq!(
            counters(&app.db.pool).await,
            live,
            "a replay holding at most {holding} rows"
        );
    }
}

#[tokio::test]
async fn a_projection_written_by_another_version_is_emptied_and_rebuilt_when_its_worker_starts() {
    let app = common::spawn_app_with(|c| c.run_workers = false).await;
    let session = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &session);
    eventful_history(&app, &api).await;
    let projection = vulnledger_projections::named("findings").unwrap();
    let worker = caught_up(app.db.pool.clone(), projection.clone()).await;
    let expected = counters(&app.db.pool).await;
    let head = worker.checkpoint();

    // As an older release would have left it: another version, other rows.
    sqlx::query("UPDATE projection_checkpoints SET version = version - 1 WHERE name = 'findings'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE finding_view SET title = 'stale shape', severity = 'INFO'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM finding_counts")
        .execute(&app.db.pool)
        .await
        .unwrap();

    let restarted = Worker::for_projection(app.db.pool.clone(), projection.clone())
        .await
        .unwrap();
    assert_eq!(restarted.checkpoint().position, head.position);
    assert_eq!(restarted.checkpoint().version, projection.version());
    assert_eq!(counters(&app.db.pool).await, expected);
    let stale: i64 =
        sqlx::query_scalar("SELECT count(*) FROM finding_view WHERE title = 'stale shape'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(stale, 0);
}

#[tokio::test]
async fn a_second_rebuild_of_the_same_projection_is_refused_while_one_runs() {
    let app = common::spawn_app_with(|c| c.run_workers = false).await;
    let mut holder = app.db.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtext('rebuild:findings'))")
        .execute(&mut *holder)
        .await
        .unwrap();
    let projection = vulnledger_projections::named("findings").unwrap();
    let refused = vulnledger::rebuild::rebuild(&app.db.pool, projection, |_| {})
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("already running"), "{refused}");
}

/// `finding_view` as a table: a rebuild swaps in a new one, a catch-up keeps it.
async fn finding_view_oid(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT 'finding_view'::regclass::oid::bigint")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Appends `n` events the findings projection ignores, in one statement.
async fn unrelated_events(pool: &PgPool, tenant: Uuid, n: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         SELECT 'probe', $3 || '-' || g, 1, 'Probed', '1.0', '{\"Probed\": {}}', \
                jsonb_build_object('tenant_id', $1::text) \
         FROM generate_series(1, $2) AS g",
    )
    .bind(tenant.to_string())
    .bind(n)
    .bind(Uuid::now_v7().to_string())
    .execute(pool)
    .await
    .unwrap();
}

/// A worker that starts with more than 100,000 events (and more than it has applied)
/// waiting rebuilds into fresh tables, which is several times faster than batches;
/// with fewer it catches up batch by batch. Either way the read model ends the same.
#[tokio::test]
async fn a_worker_far_behind_rebuilds_instead_of_catching_up() {
    let app = common::spawn_app_with(|c| c.run_workers = false).await;
    let session = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &session);
    eventful_history(&app, &api).await;
    let projection = vulnledger_projections::named("findings").unwrap();
    let tenant = session.tenant_id;
    drop(caught_up(app.db.pool.clone(), projection.clone()).await);
    let expected = counters(&app.db.pool).await;

    // A little behind: batch by batch, into the same table.
    unrelated_events(&app.db.pool, tenant, 1_000).await;
    let before = finding_view_oid(&app.db.pool).await;
    drop(caught_up(app.db.pool.clone(), projection.clone()).await);
    assert_eq!(
        finding_view_oid(&app.db.pool).await,
        before,
        "caught up in place"
    );

    // Far behind: more than 100,000 events and more than it has applied.
    unrelated_events(&app.db.pool, tenant, 100_001).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let mut started = Worker::for_projection(app.db.pool.clone(), projection.clone())
        .await
        .unwrap();
    assert_ne!(
        finding_view_oid(&app.db.pool).await,
        before,
        "rebuilt into fresh tables and swapped in"
    );
    // What a long transaction elsewhere on the cluster held back from the rebuild, the
    // worker takes batch by batch, as it would after any rebuild.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while started.checkpoint().events < stored {
        assert!(
            std::time::Instant::now() < deadline,
            "never applied {stored} events"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        started
            .catch_up(&tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
    }
    assert_eq!(counters(&app.db.pool).await, expected);
}

/// A projection that writes a row per event it is given: unlike the findings rows,
/// which keep their finding's sequence, nothing in it guards against applying an
/// event twice but the checkpoint.
struct Tally;

#[async_trait::async_trait]
impl vulnledger_projections::Projection for Tally {
    fn name(&self) -> &'static str {
        "tally"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["tally"]
    }

    async fn apply(
        &self,
        conn: &mut sqlx::PgConnection,
        events: &[vulnledger_projections::ProjectedEvent],
    ) -> Result<(), vulnledger_projections::ProjectionError> {
        let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
        sqlx::query("INSERT INTO tally (position) SELECT * FROM UNNEST($1::bigint[])")
            .bind(&positions)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// A rebuild swaps in tables that may be further along than a live worker, which
/// does not know it: the worker's next batch must apply only what comes after the
/// rebuild's checkpoint, not the events the rebuilt tables hold already.
#[tokio::test]
async fn a_worker_overtaken_by_a_rebuild_applies_only_what_comes_after_it() {
    let app = common::spawn_app_with(|c| c.run_workers = false).await;
    let tenant = app.tenant("acme").await;
    let pool = &app.db.pool;
    sqlx::query("CREATE TABLE tally (position bigint NOT NULL)")
        .execute(pool)
        .await
        .unwrap();
    let tally = || async {
        let rows: (i64, i64) =
            sqlx::query_as("SELECT count(*), count(DISTINCT position) FROM tally")
                .fetch_one(pool)
                .await
                .unwrap();
        rows
    };
    let now = Utc::now();
    scan_at(
        pool,
        tenant,
        "api:1",
        &[("first", "HIGH"), ("second", "LOW")],
        now - Duration::days(3),
    )
    .await;
    let projection: std::sync::Arc<dyn vulnledger_projections::Projection> =
        std::sync::Arc::new(Tally);
    let mut worker = caught_up(pool.clone(), projection.clone()).await;
    let before = tally().await;
    assert_eq!(before.0, worker.checkpoint().events);

    scan_at(
        pool,
        tenant,
        "api:2",
        &[("third", "CRITICAL"), ("fourth", "MEDIUM")],
        now - Duration::days(1),
    )
    .await;
    // So that the rebuild reads every event, not only those below a horizon that a
    // test beside this one holds back.
    until_readable(pool).await;
    let rebuilt = vulnledger::rebuild::rebuild(pool, projection.clone(), |_| {})
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(tally().await, (stored, stored));
    assert!(stored > before.0);

    // The worker still stands where it was before the rebuild, and reads on from
    // there: every event it reads, the rebuilt table holds already.
    worker
        .catch_up(&tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(tally().await, (stored, stored), "events applied twice");
    let at = vulnledger_projections::checkpoint::load(pool, "tally")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at, rebuilt.checkpoint);
    assert_eq!(worker.checkpoint(), rebuilt.checkpoint);
}

#[tokio::test]
async fn a_triage_batch_is_written_in_one_statement_only_where_its_checkpoint_stands() {
    use vulnledger_projections::{checkpoint, Advance, FindingsProjection, ProjectionCheckpoint};

    // No workers in the app: this test hands the batch over by hand.
    let app = common::spawn_app_with(|c| c.run_workers = false).await;
    let session = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &session);
    let tenant = app.tenant("acme").await;
    let pool = &app.db.pool;
    let detected = scan_at(
        pool,
        tenant,
        "api:1",
        &[("first", "HIGH"), ("second", "LOW"), ("third", "CRITICAL")],
        Utc::now() - Duration::days(2),
    )
    .await;
    let projection = vulnledger_projections::named("findings").unwrap();
    let at = caught_up(pool.clone(), projection).await.checkpoint();
    let found: Vec<(String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, max(sequence) FROM events WHERE aggregate_type = 'finding' \
         GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(found.len(), 3);
    // One triage that changes its asset's figures (no longer open), two that do not.
    for ((id, version), status) in found
        .iter()
        .zip(["FALSE_POSITIVE", "CONFIRMED", "CONFIRMED"])
    {
        let answer = api
            .send(
                Method::PATCH,
                &format!("/api/v1/findings/{id}/status"),
                Some(&format!("\"{version}\"")),
                json!({"status": status, "justification": "test data"}),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.position() > detected);
    }
    until_readable(pool).await;
    let read = |from: ProjectionCheckpoint| async move {
        let events = vulnledger::store::OrderedReader::new(pool.clone())
            .read_batch(
                vulnledger::store::Checkpoint {
                    txid: from.txid,
                    position: from.position,
                },
                1000,
            )
            .await
            .unwrap();
        projector::after(&from, events.iter().map(projector::projected).collect()).unwrap()
    };
    let (triage, next) = read(at).await;
    assert_eq!(triage.len(), 3);
    let next = ProjectionCheckpoint { version: 1, ..next };
    let before = counters(pool).await;
    let stored = || async {
        checkpoint::load(pool, "findings")
            .await
            .unwrap()
            .expect("a checkpoint")
    };
    let mut conn = pool.acquire().await.unwrap();
    let advance = |from| Advance {
        name: "findings",
        from,
        to: &next,
        tenants: &[],
    };

    // Not triage: the scan's detections and sightings need statements of their own.
    let (scan, scanned) = read(ProjectionCheckpoint::default()).await;
    let scanned = ProjectionCheckpoint {
        version: 1,
        ..scanned
    };
    let whole = Advance {
        to: &scanned,
        ..advance(&at)
    };
    assert!(!FindingsProjection
        .apply_in_one_statement(&mut conn, &scan, &whole)
        .await
        .unwrap());
    assert_eq!((counters(pool).await, stored().await), (before.clone(), at));

    // The checkpoint is not where the batch starts (a rebuild swapped in): nothing.
    let elsewhere = ProjectionCheckpoint {
        position: at.position - 1,
        ..at
    };
    assert!(!FindingsProjection
        .apply_in_one_statement(&mut conn, &triage, &advance(&elsewhere))
        .await
        .unwrap());
    assert_eq!((counters(pool).await, stored().await), (before.clone(), at));

    // A rebuild's swap holds the checkpoint, and takes the tables next: the statement
    // holds those already, so it must not wait for the checkpoint (a deadlock), and
    // writes nothing.
    let mut swap = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = 'findings' FOR UPDATE")
        .execute(&mut *swap)
        .await
        .unwrap();
    let busy = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        FindingsProjection.apply_in_one_statement(&mut conn, &triage, &advance(&at)),
    )
    .await
    .expect("the statement waited for the checkpoint that a swap holds")
    .unwrap();
    assert!(!busy);
    sqlx::query("SET LOCAL lock_timeout TO '5s'")
        .execute(&mut *swap)
        .await
        .unwrap();
    sqlx::query("LOCK TABLE finding_view, finding_status, finding_counts IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *swap)
        .await
        .unwrap();
    swap.rollback().await.unwrap();
    assert_eq!((counters(pool).await, stored().await), (before.clone(), at));

    // Where the checkpoint stands: rows, counters and checkpoint move together, and
    // listeners hear of it.
    let mut listener = sqlx::postgres::PgListener::connect_with(pool)
        .await
        .unwrap();
    listener.listen(checkpoint::CHANNEL).await.unwrap();
    assert!(FindingsProjection
        .apply_in_one_statement(&mut conn, &triage, &advance(&at))
        .await
        .unwrap());
    assert_eq!(stored().await, next);
    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
        .await
        .expect("no checkpoint notice")
        .unwrap();
    let notice = checkpoint::Notice::parse(heard.payload()).unwrap();
    assert_eq!(
        (notice.at.txid, notice.at.position),
        (next.txid, next.position)
    );
    let triaged = counters(pool).await;
    assert_ne!(triaged, before);
    assert_eq!(triaged["status_mismatches"], 0);
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM finding_view GROUP BY 1 ORDER BY 1")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        [
            ("CONFIRMED".to_owned(), 2),
            ("FALSE_POSITIVE".to_owned(), 1)
        ]
    );
    let open_on_asset: i64 =
        sqlx::query_scalar("SELECT open_total FROM asset_view WHERE asset = 'api:1'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(open_on_asset, 2);
    drop(conn);

    // And what it wrote is what a replay of the whole history writes.
    vulnledger::rebuild::rebuild(
        pool,
        vulnledger_projections::named("findings").unwrap(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(counters(pool).await, triaged);
}
