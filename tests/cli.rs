//! The `vulnledger` binary as an operator uses it: real process, real database.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_vulnledger");

fn vulnledger(database_url: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    let mut child = command.spawn().expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

async fn count(pool: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[test]
fn migrate_on_an_unreachable_database_says_so_in_one_line_and_fails() {
    let out = vulnledger(
        Some("postgres://postgres:hunter2@127.0.0.1:1/nowhere"),
        &["migrate"],
        "",
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach the database"), "{err}");
    assert!(!err.contains("hunter2"), "the password leaked: {err}");
}

#[test]
fn a_missing_or_invalid_environment_value_names_the_variable() {
    let out = vulnledger(None, &["migrate"], "");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("DATABASE_URL"), "{}", stderr(&out));

    let out = vulnledger(Some("mysql://localhost/x"), &["migrate"], "");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("DATABASE_URL"), "{}", stderr(&out));

    let mut serve = Command::new(BIN);
    let out = serve
        .arg("serve")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x")
        .env("BIND_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("BIND_ADDR"), "{}", stderr(&out));

    // Read only by a rebuild, which a worker of `serve` may start much later.
    let out = Command::new(BIN)
        .arg("serve")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x")
        .env("REBUILD_MAX_ROWS", "a million")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid environment variable REBUILD_MAX_ROWS: \"a million\""),
        "{}",
        stderr(&out)
    );

    // A NATS_URL that cannot be used stops `serve` and `relay` at start, without
    // repeating the URL (it may hold a password).
    for command in ["serve", "relay"] {
        let out = Command::new(BIN)
            .arg(command)
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x")
            .env("NATS_URL", "http://alice:hunter2@nats:4222")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("invalid environment variable NATS_URL"),
            "{command}: {err}"
        );
        assert!(
            !err.contains("hunter2"),
            "{command}: the password leaked: {err}"
        );
    }
}

#[tokio::test]
async fn migrate_applies_the_schema_and_is_idempotent() {
    let db = common::fresh_db().await;
    for _ in 0..2 {
        let out = vulnledger(Some(&db.url), &["migrate"], "");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(count(&db.pool, "events").await, 0);
}

#[tokio::test]
async fn tenant_and_user_create_print_the_new_ids() {
    let db = common::fresh_db().await;
    let out = vulnledger(
        Some(&db.url),
        &["tenant", "create", "--slug", "acme", "--name", "Acme Corp"],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let tenant_id: uuid::Uuid = stdout(&out).parse().expect("a tenant id");

    let out = vulnledger(
        Some(&db.url),
        &[
            "user",
            "create",
            "--tenant",
            "acme",
            "--email",
            "Lead@Acme.test",
            "--role",
            "security_lead",
        ],
        "a long enough passphrase\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let user_id: uuid::Uuid = stdout(&out).parse().expect("a user id");

    let (tenant, email, role, hash): (uuid::Uuid, String, String, String) =
        sqlx::query_as("SELECT tenant_id, email, role, password_hash FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(tenant, tenant_id);
    assert_eq!(email, "lead@acme.test");
    assert_eq!(role, "security_lead");
    assert!(hash.starts_with("$argon2id$"));
    // The trailing newline of the piped password is not part of it.
    assert!(vulnledger::identity::verify_password(
        "a long enough passphrase",
        &hash
    ));
}

#[tokio::test]
async fn user_create_refuses_bad_input_and_writes_nothing() {
    let db = common::fresh_db().await;
    let out = vulnledger(
        Some(&db.url),
        &["tenant", "create", "--slug", "acme", "--name", "Acme"],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let create = |email: &str, tenant: &str, role: &str, password: &str| {
        vulnledger(
            Some(&db.url),
            &[
                "user", "create", "--tenant", tenant, "--email", email, "--role", role,
            ],
            password,
        )
    };
    let ok = create("a@acme.test", "acme", "analyst", "a long enough passphrase");
    assert!(ok.status.success(), "{}", stderr(&ok));

    let cases = [
        (
            create("b@acme.test", "nope", "analyst", "a long enough passphrase"),
            "no tenant",
        ),
        (create("b@acme.test", "acme", "analyst", ""), "too weak"),
        (
            create("b@acme.test", "acme", "analyst", "short"),
            "too weak",
        ),
        (
            create("A@ACME.test", "acme", "viewer", "another long passphrase"),
            "already exists",
        ),
        (
            create("not-an-email", "acme", "viewer", "another long passphrase"),
            "email",
        ),
        (
            create(
                "c@acme.test",
                "acme",
                "superuser",
                "another long passphrase",
            ),
            "superuser",
        ),
    ];
    for (out, expected) in cases {
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(expected),
            "wanted {expected:?} in {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty());
    }
    assert_eq!(count(&db.pool, "users").await, 1);
}

#[tokio::test]
async fn tenant_create_refuses_a_duplicate_or_malformed_slug() {
    let db = common::fresh_db().await;
    let create = |slug: &str| {
        vulnledger(
            Some(&db.url),
            &["tenant", "create", "--slug", slug, "--name", "Acme"],
            "",
        )
    };
    assert!(create("acme").status.success());
    for (slug, expected) in [
        ("acme", "already exists"),
        ("Acme!", "slug"),
        ("-x", "slug"),
    ] {
        let out = create(slug);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expected), "{slug}: {}", stderr(&out));
    }
    assert_eq!(count(&db.pool, "tenants").await, 1);
}

#[tokio::test]
async fn serve_answers_health_and_stops_cleanly_on_sigterm() {
    let db = common::fresh_db().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        match client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
        {
            Ok(response) => break response,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("serve never answered: {e}"),
        }
    };
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");

    // serve applied the migrations at start.
    assert_eq!(count(&db.pool, "tenants").await, 0);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "serve exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "serve ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn api_key_create_prints_the_id_and_a_key_bounded_by_the_users_role() {
    let db = common::fresh_db().await;
    let run = |args: &[&str], stdin: &str| vulnledger(Some(&db.url), args, stdin);
    assert!(run(
        &["tenant", "create", "--slug", "acme", "--name", "Acme"],
        ""
    )
    .status
    .success());
    let user = run(
        &[
            "user",
            "create",
            "--tenant",
            "acme",
            "--email",
            "ci@acme.test",
            "--role",
            "analyst",
        ],
        "a long enough passphrase",
    );
    assert!(user.status.success(), "{}", stderr(&user));

    let out = run(
        &[
            "api-key",
            "create",
            "--tenant",
            "acme",
            "--user",
            "ci@acme.test",
            "--name",
            "gitlab",
            "--scopes",
            "scans:write,scans:read",
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let mut lines = printed.lines();
    let id: uuid::Uuid = lines.next().unwrap().parse().expect("the key's id");
    let key = lines.next().expect("the key");
    assert!(key.starts_with("vlk_"));
    let (scopes, owner): (Vec<String>, uuid::Uuid) =
        sqlx::query_as("SELECT scopes, user_id FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(scopes, ["scans:read", "scans:write"]);
    assert_eq!(owner.to_string(), stdout(&user));

    for (args, expected) in [
        (vec!["--scopes", "audit:read"], "cannot grant audit:read"),
        (vec!["--scopes", "bogus"], "unknown scope"),
    ] {
        let mut all = vec![
            "api-key",
            "create",
            "--tenant",
            "acme",
            "--user",
            "ci@acme.test",
            "--name",
            "x",
        ];
        all.extend(args);
        let out = run(&all, "");
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    }
    let out = run(
        &[
            "api-key",
            "create",
            "--tenant",
            "acme",
            "--user",
            "nobody@acme.test",
            "--name",
            "x",
            "--scopes",
            "scans:read",
        ],
        "",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no active user"), "{}", stderr(&out));
    assert_eq!(count(&db.pool, "api_keys").await, 1);
}

#[test]
fn openapi_prints_the_3_1_document_without_a_database() {
    let out = vulnledger(None, &["openapi"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/api/v1/api-keys"]["post"].is_object());
}

/// `vulnledger projections …` with the environment variables `env` set.
fn projections_with(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .arg("projections")
        .args(args)
        .env("DATABASE_URL", database_url)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// Every row of the findings projection's tables, as one digest per table.
async fn read_model(pool: &sqlx::PgPool) -> serde_json::Value {
    use vulnledger_projections::Projection;
    let mut digests = serde_json::Map::new();
    for &table in vulnledger_projections::FindingsProjection.tables() {
        // Counters that went back to zero may stay as rows or never be written.
        let zero = if table.ends_with("_counts") && table != "daily_counts" {
            "WHERE count <> 0"
        } else {
            ""
        };
        let digest: Option<String> = sqlx::query_scalar(&format!(
            "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t {zero}"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        digests.insert(table.to_owned(), digest.into());
    }
    digests.into()
}

/// Runs `vulnledger projections rebuild findings` with `variable` set to `value`,
/// checks that it failed naming both, with no shadow schema left and `finding_view`
/// still holding `before` rows, and returns the error line.
async fn rebuild_refused(db: &common::TestDb, before: i64, variable: &str, value: &str) -> String {
    let refused = projections_with(&db.url, &["rebuild", "findings"], &[(variable, value)]);
    assert!(!refused.status.success());
    let message = stderr(&refused);
    let last = message.lines().last().unwrap_or_default().to_owned();
    assert!(
        last.starts_with(&format!(
            "error: invalid environment variable {variable}: {value:?}"
        )),
        "{message}"
    );
    assert_eq!(shadow_schemas(&db.pool).await, 0);
    assert_eq!(count(&db.pool, "finding_view").await, before);
    last
}

async fn shadow_schemas(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rebuild\\_%'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn projections_rebuild_refuses_unknown_names_and_bad_settings_before_writing_anything() {
    let db = common::fresh_db().await;
    let demo = vulnledger(
        Some(&db.url),
        &["demo", "--tenant", "ops", "--findings", "200"],
        "",
    );
    assert!(demo.status.success(), "{}", stderr(&demo));
    let listed = vulnledger(None, &["projections", "list"], "");
    assert!(
        stdout(&listed).lines().any(|l| l.starts_with("findings\t")),
        "{}",
        stdout(&listed)
    );
    let before = count(&db.pool, "finding_view").await;

    let unknown = vulnledger(Some(&db.url), &["projections", "rebuild", "nope"], "");
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).starts_with("error: there is no projection called \"nope\"; known: "),
        "{}",
        stderr(&unknown)
    );

    // A value the server refuses stops the rebuild before its replay, naming the
    // variable and the server's reason.
    for (memory, reason) in [
        ("lots", "invalid value for parameter"),
        ("64kB", "outside the valid range"),
    ] {
        let refused = rebuild_refused(&db, before, "REBUILD_MAINTENANCE_WORK_MEM", memory).await;
        assert!(refused.contains(reason), "{refused}");
    }

    // So is a bound on the rows a replay holds that is not a whole number above 0.
    for rows in ["lots", "0", "-5", "1.5"] {
        rebuild_refused(&db, before, "REBUILD_MAX_ROWS", rows).await;
    }

    let rebuilt = projections_with(
        &db.url,
        &["rebuild", "findings"],
        &[("REBUILD_MAINTENANCE_WORK_MEM", "64MB")],
    );
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    assert!(
        stdout(&rebuilt).starts_with("findings: ")
            && stdout(&rebuilt).contains("swapped in at position"),
        "{}",
        stdout(&rebuilt)
    );
    assert_eq!(count(&db.pool, "finding_view").await, 200);
    assert_eq!(shadow_schemas(&db.pool).await, 0);
    // Vacuumed before the command returns: index-only scans read no table pages.
    assert!(
        stdout(&rebuilt).contains("findings: tables vacuumed in"),
        "{}",
        stdout(&rebuilt)
    );
    let (pages, visible): (i32, i32) = sqlx::query_as(
        "SELECT relpages, relallvisible FROM pg_class WHERE oid = 'public.finding_status'::regclass",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        pages > 0 && visible == pages,
        "{visible} of {pages} pages all-visible"
    );

    // A replay that may hold 7 rows writes most of them out, reads them back as later
    // scans see them, and swaps in the same tables as one that held them all.
    let held_all = read_model(&db.pool).await;
    let rebuilt = projections_with(
        &db.url,
        &["rebuild", "findings"],
        &[("REBUILD_MAX_ROWS", "7")],
    );
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    assert_eq!(read_model(&db.pool).await, held_all);
}
