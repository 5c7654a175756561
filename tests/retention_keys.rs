//! Retention keys and walks (issue 11 §3, §4): every real key works (UUID,
//! composite, WITHOUT ROWID, keys at the type's maximum, sparse keys), a
//! `key:` that would skip or double rows is refused, `max_rows` is exact,
//! and a delete that something vetoes ends `partial` instead of stopping
//! the walk short or claiming success.

use std::path::Path;
use std::time::Duration;

use crate::support::cli::{dbmaint, pg_count, rt};
use crate::support::cluster::seeded_db;
use crate::support::test::{Ran, Test, retention_rows, sqlite};

#[test]
fn postgres_uuid_and_composite_keys_delete_exactly_the_eligible_rows() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE sessions (id uuid PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO sessions SELECT md5(g::text)::uuid, now() - g * interval '1 day' + interval '12 hours' \
           FROM generate_series(1, 100) g; \
         CREATE TABLE sessions_archive (id uuid PRIMARY KEY, created_at timestamptz NOT NULL); \
         CREATE TABLE tenant_events (tenant int, id int, created_at timestamptz NOT NULL, PRIMARY KEY (tenant, id)); \
         INSERT INTO tenant_events SELECT g % 3, g, now() - g * interval '1 day' + interval '12 hours' \
           FROM generate_series(1, 90) g;",
        &[],
    );
    let t = Test::new();
    // UUID key, archive table: ranged batches over a key without min().
    let p = t.retention_plan(
        &url,
        "table: sessions, column: created_at, older_than: 30 days, batch_size: 7, archive: { table: sessions_archive }",
    );
    let Ran {
        code,
        json: v,
        stderr: err,
        ..
    } = t.diff(&p);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(retention_rows(&v), 70);
    let Ran { code, report: r, .. } = t.apply_json(&p);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["steps"][0]["rows"], 70);
    // Rows archived: a measure of its own, predicted and counted.
    let archived = rt.block_on(pg_count(&url, "SELECT count(*) FROM sessions_archive"));
    assert_eq!(r["steps"][0]["archived"], archived, "{r}");
    assert_eq!(r["totals"]["rows_archived"], archived, "{r}");
    assert_eq!(r["totals"]["rows_archived_predicted"], 70, "{r}");
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM sessions WHERE created_at >= now() - interval '30 days'"
        )),
        30
    );
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM sessions")), 30);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM sessions_archive")), 70);
    // Composite key (tenant, id), file archive: row-value keyset batches.
    let p = t.retention_plan(
        &url,
        "table: tenant_events, column: created_at, older_than: 30 days, batch_size: 8, archive: { file: te.jsonl }",
    );
    let Ran {
        code,
        json: v,
        stderr: err,
        ..
    } = t.diff(&p);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(retention_rows(&v), 60);
    let Ran { code, report: r, .. } = t.apply_json(&p);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM tenant_events")), 30);
    assert_eq!(
        rt.block_on(pg_count(&url, "SELECT count(*) FROM tenant_events WHERE id > 30")),
        0,
        "every row older than 30 days is gone"
    );
    let lines = std::fs::read_to_string(t.path().join("te.jsonl")).expect("archive");
    assert_eq!(r["steps"][0]["archived"], lines.lines().count(), "{r}");
    assert_eq!(r["totals"]["rows_archived"], 60, "{r}");
    assert_eq!(
        archived_ids(&lines),
        (31..=90).collect::<Vec<_>>(),
        "each deleted row once in the file"
    );
}

#[test]
fn postgres_a_before_delete_veto_ends_partial_and_the_walk_goes_on() {
    let rt = rt();
    // 70 eligible rows, 3 of them pinned by a trigger that vetoes their
    // delete, two in the first batch.
    let url = seeded_db(
        "CREATE TABLE jobs (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, pinned bool NOT NULL DEFAULT false); \
         INSERT INTO jobs SELECT g, now() - interval '400 days', g IN (5, 6, 47) FROM generate_series(1, 70) g; \
         INSERT INTO jobs SELECT g, now(), false FROM generate_series(71, 100) g; \
         CREATE TABLE jobs_u (id text PRIMARY KEY, created_at timestamptz NOT NULL, pinned bool NOT NULL); \
         INSERT INTO jobs_u SELECT lpad(id::text, 4, '0'), created_at, pinned FROM jobs; \
         CREATE FUNCTION keep_pinned() RETURNS trigger LANGUAGE plpgsql AS $$ \
           BEGIN IF OLD.pinned THEN RETURN NULL; END IF; INSERT INTO audit VALUES (OLD.id::text); RETURN OLD; END $$; \
         CREATE TABLE audit (id text); \
         CREATE TRIGGER keep BEFORE DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION keep_pinned(); \
         CREATE TRIGGER keep BEFORE DELETE ON jobs_u FOR EACH ROW EXECUTE FUNCTION keep_pinned();",
        &[],
    );
    let t = Test::new();
    for table in ["jobs", "jobs_u"] {
        let p = t.retention_plan(
            &url,
            &format!("table: {table}, column: created_at, older_than: 365 days, batch_size: 20"),
        );
        // The diff names the trigger, what it writes, and that it may keep rows.
        let Ran {
            code,
            json: v,
            stderr: err,
            ..
        } = t.diff(&p);
        assert_eq!(code, Some(0), "{err}");
        let objects = v["steps"][0]["objects"].to_string();
        assert!(objects.contains(&format!("{table}.keep")), "{objects}");
        assert!(objects.contains("may keep rows from the delete"), "{objects}");
        assert!(
            v["steps"][0]["warnings"].to_string().contains("also writes audit"),
            "{v}"
        );
        let Ran {
            code,
            report: r,
            stderr,
            ..
        } = t.apply_json(&p);
        assert_eq!(code, Some(1), "a partial step is not success: {r}");
        // Each batch says what it kept; the batches that kept none say nothing.
        assert!(
            stderr.contains("batch 1: 20 eligible rows selected, 18 deleted: 2 kept")
                && stderr.contains("batch 3: 20 eligible rows selected, 19 deleted: 1 kept")
                && stderr.matches(" kept by something").count() == 2,
            "{stderr}"
        );
        let s = &r["steps"][0];
        assert_eq!(s["status"], "partial", "{r}");
        assert_eq!(s["rows"], 67, "{r}");
        assert_eq!(s.get("archived"), None, "no archive, nothing archived: {r}");
        assert_eq!(r["totals"]["rows_archived"], 0, "{r}");
        assert!(
            s["partial"].as_str().unwrap_or("").contains("3 eligible rows kept"),
            "{r}"
        );
        // The walk went past the vetoed rows: only they are left of the old ones.
        assert_eq!(
            rt.block_on(pg_count(
                &url,
                &format!("SELECT count(*) FROM {table} WHERE created_at < now() - interval '365 days'")
            )),
            3
        );
        assert_eq!(
            rt.block_on(pg_count(&url, &format!("SELECT count(*) FROM {table} WHERE pinned"))),
            3
        );
        assert_eq!(
            rt.block_on(pg_count(&url, &format!("SELECT count(*) FROM {table}"))),
            33
        );
    }
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM audit")), 134);
}

#[test]
fn postgres_a_row_made_eligible_during_the_walk_is_deleted_too() {
    let rt = rt();
    // Odd ids are old, even ids new. Deleting id 1 makes id 138 old (as a
    // concurrent UPDATE would): the walk covers the key span, not a count.
    let url = seeded_db(
        "CREATE TABLE ev (id text PRIMARY KEY, n int NOT NULL, created_at timestamptz NOT NULL); \
         INSERT INTO ev SELECT lpad(g::text, 4, '0'), g, CASE WHEN g % 2 = 1 THEN now() - interval '400 days' ELSE now() END \
           FROM generate_series(1, 140) g; \
         CREATE FUNCTION age_138() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF OLD.n = 1 THEN UPDATE ev SET created_at = now() - interval '500 days' WHERE n = 138; END IF; RETURN OLD; END $$; \
         CREATE TRIGGER age AFTER DELETE ON ev FOR EACH ROW EXECUTE FUNCTION age_138(); \
         CREATE TABLE evi (id bigint PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO evi SELECT g, CASE WHEN g % 2 = 1 THEN now() - interval '400 days' ELSE now() END \
           FROM generate_series(1, 140) g; \
         CREATE FUNCTION age_138i() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF OLD.id = 1 THEN UPDATE evi SET created_at = now() - interval '500 days' WHERE id = 138; END IF; RETURN OLD; END $$; \
         CREATE TRIGGER age AFTER DELETE ON evi FOR EACH ROW EXECUTE FUNCTION age_138i();",
        &[],
    );
    let t = Test::new();
    // A text key (ranged batches) and an integer key (key windows).
    for table in ["ev", "evi"] {
        let p = t.retention_plan(
            &url,
            &format!("table: {table}, column: created_at, older_than: 365 days, batch_size: 10"),
        );
        let Ran {
            code,
            report: r,
            stderr,
            ..
        } = t.apply_json(&p);
        assert_eq!(code, Some(0), "{r}");
        assert_eq!(r["steps"][0]["rows"], 71, "{table}: {r}");
        assert!(
            stderr.contains(&format!(
                "71 rows deleted from \"public\".\"{table}\", 1 more than were eligible when counted"
            )),
            "the row that became eligible is said: {stderr}"
        );
        assert_eq!(
            rt.block_on(pg_count(
                &url,
                &format!("SELECT count(*) FROM {table} WHERE created_at < now() - interval '365 days'")
            )),
            0
        );
        assert_eq!(
            rt.block_on(pg_count(&url, &format!("SELECT count(*) FROM {table}"))),
            69
        );
    }
}

#[test]
fn postgres_keys_at_the_bigint_maximum_and_sparse_keys_finish_in_few_statements() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE ev (id bigint PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO ev VALUES (1, now() - interval '400 days'), (1000000000000, now() - interval '400 days'), \
           (2000000000000, now()), (3000000000000, now() - interval '400 days'), \
           (9223372036854775806, now()), (9223372036854775807, now() - interval '400 days');",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(
        &url,
        "table: ev, column: created_at, older_than: 365 days, batch_size: 100",
    );
    let Ran { code, report: r, .. } = t.apply_within(&p, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["steps"][0]["rows"], 4, "{r}");
    // Windows with rows, and one jump over each empty stretch: a handful of
    // statements, not one per 100 keys.
    let statements = r["steps"][0]["statements"].as_u64().expect("statements");
    assert!(statements <= 16, "{statements} statements: {r}");
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM ev")), 2);
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM ev WHERE id IN (2000000000000, 9223372036854775806)"
        )),
        2
    );
}

#[test]
fn postgres_max_rows_is_predicted_and_deleted_exactly() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE ev (id int PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO ev SELECT g, now() - interval '400 days' FROM generate_series(1, 400) g; \
         INSERT INTO ev SELECT g, now() FROM generate_series(401, 500) g; \
         CREATE TABLE ev_u (id uuid PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO ev_u SELECT md5(id::text)::uuid, created_at FROM ev;",
        &[],
    );
    let t = Test::new();
    for table in ["ev", "ev_u"] {
        let p = t.retention_plan(
            &url,
            &format!("table: {table}, column: created_at, older_than: 365 days, batch_size: 100, max_rows: 250"),
        );
        let Ran {
            code,
            json: v,
            stderr: err,
            ..
        } = t.diff(&p);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(retention_rows(&v), 250, "{v}");
        let Ran { code, report: r, .. } = t.apply_json(&p);
        assert_eq!(code, Some(0), "{r}");
        assert_eq!(r["steps"][0]["rows"], 250, "{r}");
        assert_eq!(
            rt.block_on(pg_count(&url, &format!("SELECT count(*) FROM {table}"))),
            250
        );
    }
}

#[test]
fn postgres_a_key_that_is_not_unique_or_may_be_null_is_refused_naming_a_usable_key() {
    let url = seeded_db(
        "CREATE TABLE ev (id int PRIMARY KEY, batch int NOT NULL, ext int UNIQUE, created_at timestamptz NOT NULL); \
         INSERT INTO ev SELECT g, g / 10, g, now() - interval '400 days' FROM generate_series(1, 50) g; \
         CREATE TABLE loose (ref int NOT NULL UNIQUE, created_at timestamptz NOT NULL);",
        &[],
    );
    let t = Test::new();
    for (params, says) in [
        ("table: ev, key: batch", "`key: batch` is not unique"),
        ("table: ev, key: ext", "`key: ext` may be NULL"),
        ("table: loose", "usable key: `key: ref`"),
    ] {
        let p = t.retention_plan(&url, &format!("{params}, column: created_at, older_than: 365 days"));
        let Ran { code, json: v, .. } = t.diff(&p);
        assert_eq!(code, Some(1), "{params}: {v}");
        let e = v["steps"][0]["errors"].to_string();
        assert!(e.contains(says), "{params}: {e}");
        if params.contains("ev,") {
            assert!(e.contains("usable key: the primary key (id)"), "{e}");
        }
    }
    assert_eq!(rt().block_on(pg_count(&url, "SELECT count(*) FROM ev")), 50);
}

#[test]
fn sqlite_without_rowid_composite_keys_and_a_raise_ignore_veto() {
    let t = Test::new();
    let db = t.path().join("app.db");
    sqlite(
        &db,
        "CREATE TABLE tagged (a TEXT NOT NULL, b INTEGER NOT NULL, created TEXT NOT NULL, pinned INT NOT NULL DEFAULT 0, \
           PRIMARY KEY (a, b)) WITHOUT ROWID; \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 90) \
         INSERT INTO tagged SELECT char(97 + i % 3), i, datetime('now', '-' || i || ' days', '-12 hours'), i IN (40, 77) FROM n; \
         CREATE TRIGGER keep BEFORE DELETE ON tagged WHEN old.pinned BEGIN SELECT RAISE(IGNORE); END;",
    );
    let target = format!("sqlite:{}", db.display());
    let p = t.retention_plan(
        &target,
        "table: tagged, column: created, batch_size: 7, older_than: 30 days",
    );
    let Ran {
        code,
        json: v,
        stderr: err,
        ..
    } = t.diff(&p);
    assert_eq!(code, Some(0), "{err} {v}");
    // Ages 30.5 … 90.5 days: 61 rows, two of them pinned.
    assert_eq!(retention_rows(&v), 61);
    assert!(v["steps"][0]["objects"].to_string().contains("may keep rows"), "{v}");
    let Ran { code, report: r, .. } = t.apply_json(&p);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["steps"][0]["status"], "partial", "{r}");
    assert_eq!(r["steps"][0]["rows"], 59, "{r}");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM tagged"), "31");
    assert_eq!(
        sqlite(
            &db,
            "SELECT group_concat(b) FROM (SELECT b FROM tagged WHERE b > 30 ORDER BY b)"
        ),
        "40,77"
    );
}

#[test]
fn sqlite_a_typeless_stated_key_compares_as_the_numbers_it_holds() {
    let t = Test::new();
    let db = t.path().join("app.db");
    // `ext` has no type and holds integers; text bounds would match none
    // of them (the bug: 0 deleted).
    sqlite(
        &db,
        "CREATE TABLE ev (ext UNIQUE NOT NULL, created TEXT NOT NULL); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
         INSERT INTO ev SELECT i * 1000, datetime('now', '-' || i || ' days', '-12 hours') FROM n;",
    );
    let target = format!("sqlite:{}", db.display());
    let p = t.retention_plan(
        &target,
        "table: ev, column: created, key: ext, batch_size: 9, older_than: 30 days",
    );
    assert!(t.apply(&p).success());
    assert_eq!(sqlite(&db, "SELECT count(*) FROM ev"), "29");
    assert_eq!(sqlite(&db, "SELECT max(ext) FROM ev"), "29000");
}

#[test]
fn max_ratio_refuses_a_run_that_would_delete_too_much_of_a_table_before_any_batch() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE ev (id int PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO ev SELECT g, now() - interval '400 days' FROM generate_series(1, 60) g; \
         INSERT INTO ev SELECT g, now() FROM generate_series(61, 100) g;",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(
        &url,
        "table: ev, column: created_at, older_than: 365 days, max_ratio: 0.5",
    );
    let Ran { code, json: v, .. } = t.diff(&p);
    assert_eq!(code, Some(1), "{v}");
    let e = v["steps"][0]["errors"].to_string();
    assert!(e.contains("60.0% of `ev` (60 of 100 rows)"), "{e}");
    assert!(e.contains("max_ratio: 0.5"), "{e}");
    assert_eq!(t.apply(&p).code, Some(1));
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM ev")), 100);
    // Within the cap the diff shows the share and the step runs.
    let p = t.retention_plan(
        &url,
        "table: ev, column: created_at, older_than: 365 days, max_ratio: 0.6",
    );
    let Ran {
        code,
        json: v,
        stderr: err,
        ..
    } = t.diff(&p);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        v["steps"][0]["objects"]
            .to_string()
            .contains("60 rows (60.0% of 100 rows)"),
        "{v}"
    );
    let Ran { code, report: r, .. } = t.apply_json(&p);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM ev")), 40);
    // SQLite counts its table the same way.
    let db = aged_rows(&t, "ev", 100);
    let p = t.retention_plan(
        &format!("sqlite:{}", db.display()),
        "table: ev, column: created, older_than: 30 days, max_ratio: 0.25",
    );
    let Ran { code, json: v, .. } = t.diff(&p);
    assert_eq!(code, Some(1), "{v}");
    assert!(
        v["steps"][0]["errors"]
            .to_string()
            .contains("71.0% of `ev` (71 of 100 rows)"),
        "{v}"
    );
    assert!(!t.apply(&p).success());
    assert_eq!(sqlite(&db, "SELECT count(*) FROM ev"), "100");
}

/// `plan diff --out SAVED PLAN`.
fn save(dir: &Path, p: &Path, saved: &Path) {
    let out = dbmaint(dir)
        .args(["plan", "diff", "--out"])
        .arg(saved)
        .arg(p)
        .output()
        .expect("diff --out");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_saved_plan_whose_eligible_rows_changed_but_not_their_count_is_refused_unless_drift_is_accepted() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE ev (id int PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO ev SELECT g, CASE WHEN g <= 70 THEN now() - interval '400 days' ELSE now() END \
           FROM generate_series(1, 100) g;",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(&url, "table: ev, column: created_at, older_than: 365 days");
    let saved = t.path().join("reviewed.json");
    save(t.path(), &p, &saved);
    // After the review, 10 reviewed rows become recent and 10 unreviewed
    // rows old: still 70 eligible, but not the 70 that were approved.
    rt.block_on(async {
        let mut c = crate::support::cluster::connect(&url).await;
        sqlx::raw_sql(
            "UPDATE ev SET created_at = now() WHERE id <= 10; \
             UPDATE ev SET created_at = now() - interval '400 days' WHERE id BETWEEN 71 AND 80;",
        )
        .execute(&mut c)
        .await
        .expect("update");
    });
    let out = t.apply(&saved);
    assert_eq!(out.status.code(), Some(1));
    let stderr = out.stderr;
    assert!(
        stderr.contains("would now take other rows than were reviewed"),
        "{stderr}"
    );
    assert!(stderr.contains("70 rows eligible then, 70 now"), "{stderr}");
    assert!(stderr.contains("--accept-drift"), "{stderr}");
    assert_eq!(
        rt.block_on(pg_count(&url, "SELECT count(*) FROM ev")),
        100,
        "nothing deleted"
    );
    // Unchanged rows apply as reviewed (a second save, then apply).
    save(t.path(), &p, &saved);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&saved).expect("saved")).expect("json");
    assert!(
        v.to_string().contains("eligible_digest"),
        "the saved plan records the digest"
    );
    // --accept-drift applies a drifted plan and says so in the report.
    rt.block_on(async {
        let mut c = crate::support::cluster::connect(&url).await;
        sqlx::raw_sql("UPDATE ev SET created_at = now() WHERE id = 11; UPDATE ev SET created_at = now() - interval '400 days' WHERE id = 81;")
            .execute(&mut c)
            .await
            .expect("update");
    });
    let out = dbmaint(t.path())
        .args([
            "--output",
            "json",
            "plan",
            "apply",
            "--auto-approve",
            "--accept-drift",
            "--log-dir",
            "logs",
        ])
        .arg(&saved)
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let accepted = r["report"]["accepted_drift"].to_string();
    assert!(accepted.contains("at least 1 left the set and 1 joined it"), "{r}");
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM ev")), 30);
}

#[test]
fn sqlite_saved_plans_digest_their_eligible_keys_too() {
    let t = Test::new();
    let db = t.path().join("app.db");
    sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, created TEXT NOT NULL); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
         INSERT INTO ev SELECT i, CASE WHEN i <= 70 THEN datetime('now', '-400 days') ELSE datetime('now') END FROM n;",
    );
    let p = t.retention_plan(
        &format!("sqlite:{}", db.display()),
        "table: ev, column: created, older_than: 365 days",
    );
    let saved = t.path().join("reviewed.json");
    save(t.path(), &p, &saved);
    sqlite(
        &db,
        "UPDATE ev SET created = datetime('now') WHERE id = 1; \
         UPDATE ev SET created = datetime('now', '-400 days') WHERE id = 100;",
    );
    let out = t.apply(&saved);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains("at least 1 left the set and 1 joined it"),
        "{}",
        out.stderr
    );
    assert_eq!(sqlite(&db, "SELECT count(*) FROM ev"), "100");
}

#[test]
fn postgres_a_rerun_resumes_after_the_last_committed_key_and_still_walks_the_keys_before_it() {
    let rt = rt();
    // Run 1 fails at the window holding id 55 (a trigger raises), after
    // committing the windows up to id 50.
    let url = seeded_db(
        "CREATE TABLE ev (id bigint PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO ev SELECT g, now() - interval '400 days' FROM generate_series(1, 100) g; \
         INSERT INTO ev SELECT g, now() FROM generate_series(101, 110) g; \
         CREATE FUNCTION no_55() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF OLD.id = 55 THEN RAISE EXCEPTION 'not 55'; END IF; RETURN OLD; END $$; \
         CREATE TRIGGER no_55 BEFORE DELETE ON ev FOR EACH ROW EXECUTE FUNCTION no_55();",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(
        &url,
        "table: ev, column: created_at, older_than: 365 days, batch_size: 10",
    );
    assert_eq!(t.apply(&p).code, Some(1));
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM ev WHERE id <= 50")), 0);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM ev")), 60);
    // Between the runs the trigger goes, and an old row appears below the
    // resume point: the rerun must still reach it.
    rt.block_on(async {
        let mut c = crate::support::cluster::connect(&url).await;
        sqlx::raw_sql("DROP TRIGGER no_55 ON ev; INSERT INTO ev VALUES (5, now() - interval '500 days');")
            .execute(&mut c)
            .await
            .expect("between runs");
    });
    let out = t.apply(&p);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("resuming after key 50"), "{}", out.stderr);
    assert_eq!(
        rt.block_on(pg_count(&url, "SELECT count(*) FROM ev")),
        10,
        "only the new rows stay"
    );
    // The rerun's first committed window is the one after key 50.
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT last_key::int8 FROM dbmaint.batches WHERE run_id = (SELECT max(run_id) FROM dbmaint.batches) \
             ORDER BY batch_no LIMIT 1"
        )),
        60
    );
}

#[test]
fn postgres_a_key_window_walk_without_a_second_session_reads_the_span_between_batches() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE ev (id bigint PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO ev SELECT g, now() - interval '400 days' FROM generate_series(1, 300) g; \
         INSERT INTO ev SELECT g, now() FROM generate_series(301, 330) g;",
        &[],
    );
    // Three connections at most: the apply lock's, the journal's and the step's.
    let as_role = crate::support::cluster::role_url(&url, "lim", |role, db| {
        vec![
            format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 3"),
            format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"),
            format!("GRANT CREATE ON DATABASE {db} TO {role}"),
        ]
    });
    let t = Test::new();
    let p = t.retention_plan(
        &as_role,
        "table: ev, column: created_at, older_than: 365 days, batch_size: 10",
    );
    let out = t.apply(&p);
    let stderr = out.stderr;
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("reading it between them instead"), "{stderr}");
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM ev")), 30);
}

/// Negative keys (imported or sentinel rows) are keys like any other: the
/// key-window walk starts at the first eligible key, not at 1.
#[test]
fn postgres_negative_keys_are_walked_from_the_first_eligible_key() {
    let rt = rt();
    let (url, Ran { code, report: r, .. }) = apply_on_seeded(
        "CREATE TABLE ev (id bigint PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO ev SELECT g, now() - (abs(g) % 2) * interval '400 days' FROM generate_series(-500, 500) g;",
        "table: ev, column: created_at, older_than: 365 days, batch_size: 100",
    );
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["steps"][0]["rows"], 500, "{r}");
    assert_eq!(
        rt.block_on(pg_count(&url, "SELECT count(*) FROM ev WHERE abs(id) % 2 = 1")),
        0,
        "every odd key, negative ones too, is gone"
    );
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM ev")), 501);
}

/// A ranged walk (a UUID key) journals each batch with its rows and, per
/// foreign key, the child rows its cascade reached — and no row for a key
/// that reached none.
#[test]
fn postgres_a_ranged_walk_journals_every_batch_and_its_cascades() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE orders (id uuid PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO orders SELECT md5(g::text)::uuid, now() - g * interval '1 day' + interval '12 hours' \
           FROM generate_series(1, 100) g; \
         CREATE TABLE items (id serial PRIMARY KEY, order_id uuid REFERENCES orders ON DELETE CASCADE); \
         CREATE INDEX ON items (order_id); \
         INSERT INTO items (order_id) SELECT id FROM orders, generate_series(1, 2) WHERE created_at < now() - interval '90 days'; \
         CREATE TABLE notes (id serial PRIMARY KEY, order_id uuid REFERENCES orders ON DELETE SET NULL); \
         CREATE INDEX ON notes (order_id); \
         INSERT INTO notes (order_id) SELECT id FROM orders WHERE created_at < now() - interval '95 days';",
        &[],
    );
    let t = Test::new();
    // Orders 31..=100 go (70), in batches of 7: ten batches; items of the
    // 10 orders past 90 days (20 rows), notes of the 5 past 95 days.
    let p = t.retention_plan(
        &url,
        "table: orders, column: created_at, older_than: 30 days, batch_size: 7, on_cascade: allow",
    );
    let Ran { code, report: r, .. } = t.apply_json(&p);
    assert_eq!(code, Some(0), "{r}");
    let step = &r["steps"][0];
    assert_eq!(
        (step["rows"].as_u64(), step["batches"].as_u64()),
        (Some(70), Some(10)),
        "{step}"
    );
    let journal = |q: &str| rt.block_on(pg_count(&url, q));
    assert_eq!(
        journal("SELECT count(*) FROM dbmaint.batches WHERE step = 'purge' AND rows = 7 AND last_key IS NOT NULL"),
        10,
        "one journal row per batch, with its rows and last key"
    );
    assert_eq!(
        journal("SELECT sum(rows)::int8 FROM dbmaint.cascades WHERE foreign_key LIKE 'items.order_id%'"),
        20
    );
    assert_eq!(
        journal("SELECT sum(rows)::int8 FROM dbmaint.cascades WHERE foreign_key LIKE 'notes.order_id%'"),
        5
    );
    assert_eq!(
        journal("SELECT count(*) FROM dbmaint.cascades WHERE rows = 0"),
        0,
        "no journal row for a key a batch's cascade did not reach"
    );
    assert_eq!(journal("SELECT count(*) FROM items"), 0);
    assert_eq!(journal("SELECT count(*) FROM notes WHERE order_id IS NULL"), 5);
}

/// A file archive whose last line an interrupted run left torn: the next
/// run cuts exactly those bytes, says so, and writes each row once; a
/// clean file is left as it is and nothing is said.
#[test]
fn sqlite_a_torn_last_line_in_a_file_archive_is_cut_and_said_and_a_clean_file_is_not() {
    let t = Test::new();
    let db = aged_rows(&t, "events", 40);
    let target = format!("sqlite:{}", db.display());
    let archive = t.path().join("ev.jsonl");
    // What a kill mid-write leaves: a line without its newline.
    let torn = "{\"key\":\"39\",\"row\":{\"id\":39,\"crea";
    std::fs::write(&archive, torn).expect("torn archive");
    let p = t.retention_plan(
        &target,
        "table: events, column: created, older_than: 30 days, batch_size: 4, archive: { file: ev.jsonl }",
    );
    let Ran {
        code,
        report: r,
        stderr,
        ..
    } = t.apply_json(&p);
    assert_eq!(code, Some(0), "{r} {stderr}");
    assert!(
        stderr.contains(&format!("cut a torn last line ({} bytes)", torn.len())),
        "the cut is said with its size: {stderr}"
    );
    let text = std::fs::read_to_string(&archive).expect("archive");
    assert!(!text.contains("\"crea\n") && text.ends_with('\n'), "{text}");
    // Ages 30.5 … 40.5 days.
    assert_eq!(
        archived_ids(&text),
        (30..=40).collect::<Vec<_>>(),
        "each deleted row once: {text}"
    );
    assert_eq!(sqlite(&db, "SELECT count(*) FROM events"), "29");
    // The next run finds a clean file: nothing cut, nothing said.
    sqlite(
        &db,
        "UPDATE events SET created = datetime('now', '-35 days') WHERE id = 1",
    );
    let Ran { code, stderr, .. } = t.apply_json(&p);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("torn"), "{stderr}");
    let after = std::fs::read_to_string(&archive).expect("archive");
    assert!(after.starts_with(&text), "the earlier lines are kept as they were");
    assert_eq!(after.lines().count(), 12, "row 1 added: {after}");
}

/// A retention step's `statements` is what it sent: the SQLite walk here
/// is the archive table's creation, the count, three batches of 4 and
/// the empty one that ends the walk.
#[test]
fn sqlite_a_retention_steps_statements_are_the_ones_it_sent() {
    let t = Test::new();
    let db = aged_rows(&t, "events", 40);
    let p = t.retention_plan(
        &format!("sqlite:{}", db.display()),
        "table: events, column: created, older_than: 30 days, batch_size: 4, archive: { table: events_archive }",
    );
    let Ran { code, report: r, .. } = t.apply_json(&p);
    assert_eq!(code, Some(0), "{r}");
    let s = &r["steps"][0];
    assert_eq!((s["rows"].as_u64(), s["batches"].as_u64()), (Some(11), Some(3)), "{r}");
    assert_eq!(s["statements"], 6, "create, count, 3 batches, the empty last: {r}");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM events_archive"), "11");
}

/// On PostgreSQL the same figure is the server's: every statement the
/// step ran on the table, counted by pg_stat_statements, beyond those
/// the planning ran (the diff runs the same), plus the window
/// statement's PREPARE (pg_stat_statements counts a prepared statement
/// under its EXECUTEs only). The span read beside the windows counts
/// whether it returns before the last window or after.
#[test]
fn postgres_a_key_window_walks_statements_are_the_servers_count() {
    // A walk of several windows and a jump over a gap (the span read
    // usually returns beside them), and a walk of one row (it usually
    // returns after the walk ended): either way, counted once.
    for (seed, rows) in [
        (
            "INSERT INTO ev SELECT g, now() - (1000 - g) * interval '1 day' - interval '12 hours' FROM generate_series(1, 1000) g; \
             INSERT INTO ev SELECT g, now() - interval '400 days' FROM generate_series(5000, 5040) g;",
            635 + 41,
        ),
        (
            "INSERT INTO ev SELECT g, now() - (g = 1)::int * interval '400 days' FROM generate_series(1, 10) g;",
            1,
        ),
    ] {
        let url = seeded_db(
            &format!("CREATE TABLE ev (id bigint PRIMARY KEY, created_at timestamptz NOT NULL); {seed}"),
            &[],
        );
        let t = Test::new();
        let p = t.retention_plan(
            &url,
            "table: ev, column: created_at, older_than: 365 days, batch_size: 100",
        );
        let planning = calls_on(&url, "\"ev\"", || assert_eq!(t.diff(&p).code, Some(0)));
        let mut report = serde_json::Value::Null;
        let applying = calls_on(&url, "\"ev\"", || {
            let Ran {
                code,
                report: r,
                stderr,
                ..
            } = t.apply_json(&p);
            assert_eq!(code, Some(0), "{r}");
            assert!(
                !stderr.contains("more than were eligible"),
                "as many as counted: {stderr}"
            );
            report = r;
        });
        let s = &report["steps"][0];
        assert_eq!(s["rows"], rows, "{report}");
        assert_eq!(
            s["statements"].as_i64(),
            Some(applying - planning + 1),
            "planning {planning}, apply {applying}: {report}"
        );
    }
}

/// The calls pg_stat_statements counted, while `during` ran, of the
/// statements whose text holds `name` (dbmaint quotes every identifier).
fn calls_on(url: &str, name: &str, during: impl FnOnce()) -> i64 {
    crate::support::cluster::server_statements(url, during)
        .iter()
        .filter(|s| s.query.contains(name))
        .map(|s| s.calls)
        .sum()
}

/// The key span's end arrives while the walk stands exactly at it (the
/// next window starts at the last eligible key): that key is still
/// deleted, and the walk ends with its window — no window, no key lookup
/// past the span. `pause` holds the walk after its first window long
/// enough for the span read beside it to return first; were it slower,
/// the walk would find the same rows with more statements.
#[test]
fn postgres_a_walk_standing_at_the_span_end_when_it_arrives_deletes_the_last_key_and_stops() {
    let rt = rt();
    let (url, Ran { code, report: r, .. }) = apply_on_seeded(
        "CREATE TABLE ev (id bigint PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO ev SELECT g, CASE WHEN g IN (1, 101) THEN now() - interval '400 days' ELSE now() END \
           FROM generate_series(1, 120) g;",
        "table: ev, column: created_at, older_than: 365 days, batch_size: 100, pause: 1s",
    );
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["steps"][0]["rows"], 2, "{r}");
    assert_eq!(
        rt.block_on(pg_count(&url, "SELECT count(*) FROM ev WHERE id IN (1, 101)")),
        0,
        "the last eligible key is deleted"
    );
    // The first key, the PREPARE, the span read and the two windows.
    assert_eq!(r["steps"][0]["statements"], 5, "{r}");
}

/// A batch whose every row something kept deleted nothing: it is no
/// batch in the report or the journal, only a warning and the partial
/// note.
#[test]
fn postgres_a_batch_that_deleted_nothing_is_not_counted_as_one() {
    let rt = rt();
    let (
        url,
        Ran {
            code,
            report: r,
            stderr,
            ..
        },
    ) = apply_on_seeded(
        "CREATE TABLE jobs (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, pinned bool NOT NULL); \
         INSERT INTO jobs SELECT g, now() - interval '400 days', g BETWEEN 11 AND 20 FROM generate_series(1, 30) g; \
         INSERT INTO jobs SELECT g, now(), false FROM generate_series(31, 40) g; \
         CREATE FUNCTION keep_pinned() RETURNS trigger LANGUAGE plpgsql AS $$ \
           BEGIN IF OLD.pinned THEN RETURN NULL; END IF; RETURN OLD; END $$; \
         CREATE TRIGGER keep BEFORE DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION keep_pinned();",
        "table: jobs, column: created_at, older_than: 365 days, batch_size: 10",
    );
    assert_eq!(code, Some(1), "partial: {r}");
    let s = &r["steps"][0];
    assert_eq!((s["rows"].as_u64(), s["batches"].as_u64()), (Some(20), Some(2)), "{r}");
    assert!(
        stderr.contains("10 eligible rows selected, 0 deleted: 10 kept"),
        "{stderr}"
    );
    assert_eq!(
        rt.block_on(pg_count(&url, "SELECT count(*) FROM dbmaint.batches")),
        2,
        "the journal holds the two batches that deleted rows"
    );
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM jobs")), 20);
}

/// A fresh database seeded with `seed`, and `plan apply --output json` of
/// one retention step with `params` on it.
fn apply_on_seeded(seed: &str, params: &str) -> (String, Ran) {
    let url = seeded_db(seed, &[]);
    let t = Test::new();
    let p = t.retention_plan(&url, params);
    let ran = t.apply_json(&p);
    (url, ran)
}

/// `app.db` in the test's directory with `table (id, created)`: rows 1 to
/// `n`, row i created i days and 12 hours ago (ISO text).
fn aged_rows(t: &Test, table: &str, n: u32) -> std::path::PathBuf {
    let db = t.path().join("app.db");
    sqlite(
        &db,
        &format!(
            "CREATE TABLE {table} (id INTEGER PRIMARY KEY, created TEXT NOT NULL); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO {table} SELECT i, datetime('now', '-' || i || ' days', '-12 hours') FROM n;"
        ),
    );
    db
}

/// The `row.id` of every line of a JSON Lines archive, sorted (each line
/// must be JSON).
fn archived_ids(text: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("every line is JSON")["row"]["id"]
                .as_i64()
                .expect("id")
        })
        .collect();
    ids.sort();
    ids
}
