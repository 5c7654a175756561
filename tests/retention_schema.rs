//! Retention on the schemas real applications have (issue 11): archives
//! that would change a value, and deletes that would cascade or set NULL
//! in other rows, are refused before anything is deleted; rows a RESTRICT
//! or NO ACTION child still references stay, counted.

use std::path::Path;

use crate::support::cli::{dbmaint, pg_count, rt};
use crate::support::cluster::seeded_db;
use crate::support::test::{Ran, Test, sqlite};

#[test]
fn postgres_an_archive_that_would_narrow_a_value_is_refused_and_nothing_moves() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE pay (id int PRIMARY KEY, created_at timestamptz, amount numeric(10,4), note varchar(40)); \
         INSERT INTO pay SELECT g, now() - g * interval '1 day' - interval '12 hours', 30.6789, 'n' \
           FROM generate_series(1, 100) g; \
         CREATE TABLE pay_archive (id int PRIMARY KEY, created_at date, amount integer, note text);",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(
        &url,
        "table: pay, column: created_at, older_than: 30 days, archive: { table: pay_archive }",
    );
    let out = dbmaint(t.path()).args(["plan", "diff"]).arg(&p).output().expect("diff");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("would change values of `pay`"), "{text}");
    assert!(text.contains("amount numeric(10,4) → integer"), "{text}");
    assert!(text.contains("created_at timestamp with time zone → date"), "{text}");
    // varchar(40) → text keeps every value: not listed.
    assert!(!text.contains("note character varying"), "{text}");
    let out = t.apply(&p);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM pay")), 100);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM pay_archive")), 0);
    // With the source's types the same plan archives and deletes.
    rt.block_on(async {
        let mut c = crate::support::cluster::connect(&url).await;
        sqlx::raw_sql("ALTER TABLE pay_archive ALTER created_at TYPE timestamptz, ALTER amount TYPE numeric(12,4)")
            .execute(&mut c)
            .await
            .expect("alter");
    });
    let out = t.apply(&p);
    assert!(out.status.success(), "{}", out.stdout);
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM pay_archive WHERE amount = 30.6789"
        )),
        71
    );
}

fn diff(t: &Test, p: &Path) -> (Option<i32>, serde_json::Value) {
    let r = t.diff(p);
    (r.code, r.json)
}

#[test]
fn postgres_a_self_referencing_cascade_is_refused_and_no_reply_is_lost() {
    let rt = rt();
    // 10 year-old comments, each with 5 replies from yesterday that
    // reference their root ON DELETE CASCADE.
    let url = seeded_db(
        "CREATE TABLE comments (id int PRIMARY KEY, root_id int REFERENCES comments (id) ON DELETE CASCADE, \
           created_at timestamptz NOT NULL); \
         INSERT INTO comments SELECT g, NULL, now() - interval '400 days' FROM generate_series(1, 10) g; \
         INSERT INTO comments SELECT 100 + g, 1 + g % 10, now() - interval '1 day' FROM generate_series(1, 50) g;",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(&url, "table: comments, column: created_at, older_than: 365 days");
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(1));
    let error = v["steps"][0]["errors"][0].as_str().unwrap_or("").to_string();
    assert!(error.contains("50 rows of comments.root_id → comments.id"), "{error}");
    assert!(error.contains("ON DELETE CASCADE"), "{error}");
    assert_eq!(t.apply(&p).code, Some(1));
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM comments")), 60);
    // `on_cascade: allow` never lets a cascade reach rows younger than the cutoff.
    let p = t.retention_plan(
        &url,
        "table: comments, column: created_at, older_than: 365 days, on_cascade: allow",
    );
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(1));
    let error = v["steps"][0]["errors"].to_string();
    assert!(
        error.contains("would reach 50 rows of `comments` that are not older than the cutoff"),
        "{error}"
    );
    assert_eq!(t.apply(&p).code, Some(1));
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM comments")), 60);
}

#[test]
fn postgres_cascade_and_set_null_children_are_refused_by_default_and_allowed_ones_are_predicted_and_counted() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE orders (id int PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO orders SELECT g, now() - g * interval '1 day' - interval '12 hours' FROM generate_series(1, 100) g; \
         CREATE TABLE items (id serial PRIMARY KEY, order_id int REFERENCES orders ON DELETE CASCADE); \
         INSERT INTO items (order_id) SELECT 1 + g % 100 FROM generate_series(0, 299) g; \
         CREATE TABLE notes (id serial PRIMARY KEY, order_id int REFERENCES orders ON DELETE SET NULL); \
         INSERT INTO notes (order_id) SELECT 31 + g % 70 FROM generate_series(0, 69) g;",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(&url, "table: orders, column: created_at, older_than: 30 days");
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(1));
    let error = v["steps"][0]["errors"][0].as_str().unwrap_or("").to_string();
    // Orders 30..=100 are older than 30 days (ages are whole days plus 12
    // hours): their 213 items would cascade, 70 notes be nulled.
    assert!(error.contains("213 rows of items.order_id → orders.id"), "{error}");
    assert!(
        error.contains("70 rows of notes.order_id → orders.id") && error.contains("SET NULL"),
        "{error}"
    );
    assert_eq!(t.apply(&p).code, Some(1));
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM items")), 300);
    assert_eq!(
        rt.block_on(pg_count(&url, "SELECT count(*) FROM notes WHERE order_id IS NOT NULL")),
        70
    );
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM orders")), 100);
    // `on_cascade: allow`: the diff predicts the child rows, apply reaches
    // exactly those, and the report and the journal count them.
    let p = t.retention_plan(
        &url,
        "table: orders, column: created_at, older_than: 30 days, batch_size: 20, on_cascade: allow",
    );
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    let objects = v["steps"][0]["objects"].to_string();
    assert!(
        objects.contains("213 rows deleted with the rows they reference"),
        "{objects}"
    );
    assert!(
        objects.contains("ON DELETE SET NULL (on_cascade: allow): 70 rows changed"),
        "{objects}"
    );
    let Ran { code, report: r, .. } = t.apply_json(&p);
    assert_eq!(code, Some(0), "{r}");
    let cascaded = r["steps"][0]["cascaded"].as_array().expect("cascaded").clone();
    let rows_of = |fk: &str| {
        cascaded
            .iter()
            .find(|c| c["foreign_key"].as_str().unwrap_or("").starts_with(fk))
            .and_then(|c| c["rows"].as_u64())
    };
    assert_eq!(rows_of("items.order_id"), Some(213), "{cascaded:?}");
    assert_eq!(rows_of("notes.order_id"), Some(70), "{cascaded:?}");
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM orders")), 29);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM items")), 87);
    assert_eq!(
        rt.block_on(pg_count(&url, "SELECT count(*) FROM notes WHERE order_id IS NULL")),
        70
    );
    assert_eq!(
        rt.block_on(pg_count(&url, "SELECT sum(rows)::int8 FROM dbmaint.cascades")),
        283,
        "the journal holds the child rows per batch"
    );
}

/// With `on_cascade: allow` and a RESTRICT key beside the cascade, the
/// children are predicted and counted against the rows the step really
/// deletes: the items of orders a hold keeps are neither predicted nor
/// deleted.
#[test]
fn postgres_cascade_prediction_leaves_out_the_children_of_rows_a_restrict_key_keeps() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE orders (id int PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO orders SELECT g, now() - g * interval '1 day' - interval '12 hours' FROM generate_series(1, 100) g; \
         CREATE TABLE items (id serial PRIMARY KEY, order_id int REFERENCES orders ON DELETE CASCADE); \
         CREATE INDEX ON items (order_id); \
         INSERT INTO items (order_id) SELECT 1 + g % 100 FROM generate_series(0, 299) g; \
         CREATE TABLE holds (id serial PRIMARY KEY, order_id int REFERENCES orders ON DELETE RESTRICT); \
         CREATE INDEX ON holds (order_id); \
         INSERT INTO holds (order_id) SELECT g FROM generate_series(40, 49) g;",
        &[],
    );
    let t = Test::new();
    // Orders 30..=100 are older than 30 days; the holds keep 40..=49: 61
    // orders go, with their 3 items each.
    let p = t.retention_plan(
        &url,
        "table: orders, column: created_at, older_than: 30 days, batch_size: 20, on_cascade: allow",
    );
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    let objects = v["steps"][0]["objects"].to_string();
    assert!(
        objects.contains("ON DELETE CASCADE (on_cascade: allow): 183 rows deleted with the rows they reference"),
        "{objects}"
    );
    let Ran { code, report: r, .. } = t.apply_json(&p);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["steps"][0]["rows"], 61, "{r}");
    assert_eq!(
        r["steps"][0]["cascaded"][0]["rows"], 183,
        "{}",
        r["steps"][0]["cascaded"]
    );
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM orders")), 39);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM items")), 117);
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM items WHERE order_id BETWEEN 40 AND 49"
        )),
        30,
        "the held orders keep their items"
    );
}

#[test]
fn postgres_on_cascade_allow_follows_a_cascade_down_and_refuses_one_a_deeper_key_would_block() {
    let rt = rt();
    // orders ← items (CASCADE) ← item_notes (CASCADE), and item_holds
    // (RESTRICT) on items: 20 old orders, each with one item and one note.
    let url = seeded_db(
        "CREATE TABLE orders (id int PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO orders SELECT g, now() - interval '400 days' FROM generate_series(1, 20) g; \
         INSERT INTO orders SELECT g, now() FROM generate_series(21, 30) g; \
         CREATE TABLE items (id int PRIMARY KEY, order_id int REFERENCES orders ON DELETE CASCADE); \
         INSERT INTO items SELECT g, g FROM generate_series(1, 30) g; \
         CREATE INDEX ON items (order_id); \
         CREATE TABLE item_notes (id int PRIMARY KEY, item_id int REFERENCES items ON DELETE CASCADE); \
         INSERT INTO item_notes SELECT g, g FROM generate_series(1, 30) g; \
         CREATE INDEX ON item_notes (item_id); \
         CREATE TABLE item_holds (id int PRIMARY KEY, item_id int REFERENCES items ON DELETE RESTRICT); \
         INSERT INTO item_holds VALUES (1, 7); \
         CREATE INDEX ON item_holds (item_id);",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(
        &url,
        "table: orders, column: created_at, older_than: 365 days, batch_size: 8, on_cascade: allow",
    );
    // A hold on item 7 (of old order 7) would make the cascade fail.
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(1), "{v}");
    let error = v["steps"][0]["errors"].to_string();
    assert!(
        error.contains("would be blocked by 1 rows of item_holds.item_id"),
        "{error}"
    );
    assert!(error.contains("through orders → items"), "{error}");
    assert_eq!(t.apply(&p).code, Some(1));
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM orders")), 30);
    // Without the hold, both levels are predicted and counted per batch.
    rt.block_on(async {
        let mut c = crate::support::cluster::connect(&url).await;
        sqlx::raw_sql("DELETE FROM item_holds")
            .execute(&mut c)
            .await
            .expect("release the hold");
    });
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    let objects = v["steps"][0]["objects"].to_string();
    assert!(objects.contains("item_notes.item_id → items.id"), "{objects}");
    assert!(
        objects.contains("20 rows deleted with the rows they reference"),
        "{objects}"
    );
    let out = t.apply(&p);
    assert!(out.status.success(), "{}", out.stdout);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM orders")), 10);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM items")), 10);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM item_notes")), 10);
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT sum(rows)::int8 FROM dbmaint.cascades WHERE foreign_key LIKE 'item_notes%'"
        )),
        20,
        "the second level is journaled per batch too"
    );
}

#[test]
fn postgres_rows_a_restrict_child_references_stay_and_every_rerun_succeeds() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE orders (id int PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO orders SELECT g, now() - g * interval '1 day' - interval '12 hours' FROM generate_series(1, 100) g; \
         CREATE TABLE invoices (id serial PRIMARY KEY, order_id int REFERENCES orders ON DELETE RESTRICT); \
         INSERT INTO invoices (order_id) VALUES (40), (50), (60), (95); CREATE INDEX ON invoices (order_id); \
         CREATE TABLE audits (id serial PRIMARY KEY, order_id int REFERENCES orders); \
         INSERT INTO audits (order_id) VALUES (70), (5);",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(
        &url,
        "table: orders, column: created_at, older_than: 30 days, batch_size: 7",
    );
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    // 71 old orders (30..=100), 5 of them still referenced (4 invoices, 1 audit).
    let table = v["steps"][0]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["kind"] == "table")
        .expect("table")
        .clone();
    assert_eq!(table["figures"]["rows"], 66);
    let warnings = v["steps"][0]["warnings"].to_string();
    assert!(
        warnings.contains("5 eligible rows of `orders` are still referenced"),
        "{warnings}"
    );
    for _ in 0..2 {
        let out = t.apply(&p);
        assert!(out.status.success(), "{}", out.stdout);
    }
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM orders")), 34);
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM orders WHERE id IN (40, 50, 60, 70, 95)"
        )),
        5
    );
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM invoices")), 4);
}

#[test]
fn sqlite_cascading_children_are_refused_with_foreign_keys_enforced() {
    let t = Test::new();
    let db = t.path().join("app.db");
    sqlite(
        &db,
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
             INSERT INTO orders SELECT i, datetime('now', '-' || i || ' days', '-12 hours') FROM n; \
             CREATE TABLE items (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders (id) ON DELETE CASCADE); \
             WITH RECURSIVE n(i) AS (SELECT 61 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
             INSERT INTO items (order_id) SELECT i FROM n;",
    );
    let p = t.retention_plan(
        &format!("sqlite:{}", db.display()),
        "table: orders, column: created_at, older_than: 30 days",
    );
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(1));
    let error = v["steps"][0]["errors"][0].as_str().unwrap_or("").to_string();
    assert!(error.contains("40 rows of items.order_id → orders.id"), "{error}");
    assert_eq!(t.apply(&p).code, Some(1));
    let count = |sql: &str| sqlite(&db, sql);
    assert_eq!(count("SELECT count(*) FROM items"), "40");
    assert_eq!(count("SELECT count(*) FROM orders"), "100");
    // An application that runs without enforcement: `sqlite_foreign_keys:
    // off` deletes as it would — no cascade — and the diff lists the
    // orphans it leaves.
    let p = t.retention_plan(
        &format!("sqlite:{}", db.display()),
        "table: orders, column: created_at, older_than: 30 days, sqlite_foreign_keys: off",
    );
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    let objects = v["steps"][0]["objects"].to_string();
    assert!(
        objects.contains("40 rows would be left referencing deleted rows (orphans)"),
        "{objects}"
    );
    assert!(t.apply(&p).success());
    assert_eq!(count("SELECT count(*) FROM orders"), "29", "ages 1..=29 days stay");
    assert_eq!(count("SELECT count(*) FROM items"), "40", "no cascade ran");
    assert_eq!(
        count("SELECT count(*) FROM items WHERE order_id NOT IN (SELECT id FROM orders)"),
        "40",
        "the orphans the diff listed"
    );
}

#[test]
fn postgres_retention_on_an_inheritance_parent_deletes_only_the_parents_own_rows() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE events (id int PRIMARY KEY, created_at timestamptz NOT NULL); \
         CREATE TABLE events_legacy (extra text) INHERITS (events); \
         INSERT INTO events SELECT g, now() - interval '400 days' FROM generate_series(1, 30) g; \
         INSERT INTO events SELECT g, now() FROM generate_series(31, 40) g; \
         INSERT INTO events_legacy SELECT 1000 + g, now() - interval '400 days', 'x' FROM generate_series(1, 20) g;",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(&url, "table: events, column: created_at, older_than: 365 days");
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    let objects = v["steps"][0]["objects"].as_array().expect("objects").clone();
    let table = objects.iter().find(|o| o["kind"] == "table").expect("table");
    assert_eq!(table["figures"]["rows"], 30, "the parent's own rows, not the child's");
    assert!(
        objects
            .iter()
            .any(|o| o["kind"] == "inheritance child" && o["name"] == "public.events_legacy"),
        "{objects:?}"
    );
    assert!(t.apply(&p).success());
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM ONLY events")), 10);
    assert_eq!(
        rt.block_on(pg_count(&url, "SELECT count(*) FROM events_legacy")),
        20,
        "child untouched"
    );
}

#[test]
fn postgres_include_children_processes_each_inheritance_child_with_its_own_columns() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE events (id int PRIMARY KEY, created_at timestamptz NOT NULL);          CREATE TABLE events_legacy (id int PRIMARY KEY, extra text NOT NULL) INHERITS (events);          INSERT INTO events SELECT g, now() - interval '400 days' FROM generate_series(1, 30) g;          INSERT INTO events SELECT g, now() FROM generate_series(31, 40) g;          INSERT INTO events_legacy SELECT 1000 + g, now() - interval '400 days', 'legacy ' || g FROM generate_series(1, 20) g;          INSERT INTO events_legacy SELECT 2000 + g, now(), 'new' FROM generate_series(1, 5) g;",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(
        &url,
        "table: events, column: created_at, older_than: 365 days, include_children: true, batch_size: 7, \
         archive: { table: events_archive }",
    );
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(
        v["steps"][0]["estimate"]["rows"], 50,
        "30 of the parent's own and 20 of the child's: {v}"
    );
    let objects = v["steps"][0]["objects"].to_string();
    assert!(
        objects.contains("events_archive_events_legacy"),
        "the child's own archive: {objects}"
    );
    let out = t.apply(&p);
    assert!(out.status.success(), "{}", out.stdout);
    // Each table's deletes are held to its own count, not the step's sum.
    assert!(
        out.stderr.contains("purge (retention) started") && !out.stderr.contains("more than were eligible"),
        "{}",
        out.stderr
    );
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM ONLY events")), 10);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM events_legacy")), 5);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM events_archive")), 30);
    // The child's archive keeps its own column, values intact.
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM events_archive_events_legacy WHERE extra LIKE 'legacy %'"
        )),
        20
    );
}

#[test]
fn postgres_row_level_security_that_hides_rows_is_said_in_the_diff() {
    let url = seeded_db(
        "CREATE TABLE tenant_log (id int PRIMARY KEY, tenant int NOT NULL, created_at timestamptz NOT NULL); \
         INSERT INTO tenant_log SELECT g, 1 + g % 2, now() - interval '400 days' FROM generate_series(1, 70) g; \
         INSERT INTO tenant_log SELECT g, 1, now() FROM generate_series(71, 80) g; \
         ALTER TABLE tenant_log ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY only_tenant_1 ON tenant_log USING (tenant = 1);",
        &[],
    );
    let as_role = crate::support::cluster::role_url(&url, "maint", |role, _| {
        vec![
            format!("CREATE ROLE {role} LOGIN"),
            format!("GRANT SELECT, DELETE ON tenant_log TO {role}"),
        ]
    });
    let t = Test::new();
    let p = t.retention_plan(&as_role, "table: tenant_log, column: created_at, older_than: 365 days");
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    let warnings = v["steps"][0]["warnings"].to_string();
    assert!(
        warnings.contains("row-level security on `tenant_log` applies to this role"),
        "{warnings}"
    );
    // The owner is not filtered: no warning.
    let p = t.retention_plan(&url, "table: tenant_log, column: created_at, older_than: 365 days");
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    assert!(
        !v["steps"][0]["warnings"].to_string().contains("row-level security"),
        "{v}"
    );
}

#[test]
fn sqlite_typeless_and_text_keys_batch_by_rowid_and_without_rowid_by_its_composite_key() {
    let t = Test::new();
    let db = t.path().join("app.db");
    // `id PRIMARY KEY` has no type: its integers never equal a text bound.
    sqlite(
        &db,
        "CREATE TABLE ev (id PRIMARY KEY, created TEXT NOT NULL); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
         INSERT INTO ev SELECT i, datetime('now', '-' || i || ' days', '-12 hours') FROM n; \
         CREATE TABLE tagged (a TEXT, b TEXT, created TEXT NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID; \
         INSERT INTO tagged VALUES ('x', 'y', datetime('now', '-400 days'));",
    );
    let target = format!("sqlite:{}", db.display());
    let p = t.retention_plan(
        &target,
        "table: ev, column: created, batch_size: 7, older_than: 30 days",
    );
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    assert!(t.apply(&p).success());
    assert_eq!(sqlite(&db, "SELECT count(*) FROM ev"), "29", "ages 1..=29 days stay");
    // A WITHOUT ROWID table with a two-column key batches by that key.
    let p = t.retention_plan(&target, "table: tagged, column: created, older_than: 30 days");
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    assert!(t.apply(&p).success());
    assert_eq!(sqlite(&db, "SELECT count(*) FROM tagged"), "0");
}

#[test]
fn postgres_unqualified_names_resolve_through_the_search_path_and_views_are_refused_by_name() {
    let rt = rt();
    // The application's sessions run with search_path = app, public.
    let url = seeded_db(
        "CREATE SCHEMA app; \
         CREATE TABLE public.events (id int PRIMARY KEY, created_at timestamptz NOT NULL); \
         INSERT INTO public.events SELECT g, now() - interval '400 days' FROM generate_series(1, 30) g; \
         INSERT INTO public.events SELECT g, now() FROM generate_series(31, 40) g; \
         CREATE VIEW public.old_events AS SELECT * FROM public.events; \
         CREATE MATERIALIZED VIEW app.event_counts AS SELECT count(*) AS n, max(created_at) AS created_at FROM public.events; \
         DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = app, public', current_database()); END $$;",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(&url, "table: events, column: created_at, older_than: 365 days");
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    let objects = v["steps"][0]["objects"].to_string();
    assert!(
        objects.contains("`events` resolved to `public.events` through search_path app, public"),
        "{objects}"
    );
    // Once app.events exists, the same name means it, as in the application.
    rt.block_on(async {
        let mut c = crate::support::cluster::connect(&url).await;
        sqlx::raw_sql(
            "CREATE TABLE app.events (id int PRIMARY KEY, created_at timestamptz NOT NULL); \
             INSERT INTO app.events SELECT g, now() - interval '400 days' FROM generate_series(1, 5) g; \
             INSERT INTO app.events SELECT g, now() FROM generate_series(6, 8) g;",
        )
        .execute(&mut c)
        .await
        .expect("app.events");
    });
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    assert!(
        v["steps"][0]["objects"]
            .to_string()
            .contains("resolved to `app.events`"),
        "{v}"
    );
    assert!(t.apply(&p).success());
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM app.events")), 3);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM public.events")), 40);
    // A view or a materialized view is named for what it is.
    for (name, kind) in [("old_events", "a view"), ("event_counts", "a materialized view")] {
        let p = t.retention_plan(
            &url,
            &format!("table: {name}, column: created_at, older_than: 365 days"),
        );
        let (code, v) = diff(&t, &p);
        assert_eq!(code, Some(1), "{v}");
        let e = v["steps"][0]["errors"].to_string();
        assert!(e.contains(&format!("`{name}` is {kind}")), "{e}");
    }
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM public.events")), 40);
}

#[test]
fn postgres_a_partitioned_parent_is_deleted_through_with_per_partition_counts_into_a_partitioned_archive() {
    let rt = rt();
    // Three partitions by time: one wholly older than the cutoff, one
    // across it, one recent. Rows 1 day apart, half a day off the cutoff.
    let url = seeded_db(
        "CREATE TABLE measurements (id bigint NOT NULL, taken_at timestamptz NOT NULL, v int, \
           PRIMARY KEY (id, taken_at)) PARTITION BY RANGE (taken_at); \
         DO $$ BEGIN \
           EXECUTE format('CREATE TABLE m_old PARTITION OF measurements FOR VALUES FROM (%L) TO (%L)', \
                          now() - interval '1000 days', now() - interval '400 days'); \
           EXECUTE format('CREATE TABLE m_mid PARTITION OF measurements FOR VALUES FROM (%L) TO (%L)', \
                          now() - interval '400 days', now() - interval '100 days'); \
           EXECUTE format('CREATE TABLE m_new PARTITION OF measurements FOR VALUES FROM (%L) TO (%L)', \
                          now() - interval '100 days', now() + interval '100 days'); END $$; \
         INSERT INTO measurements SELECT g, now() - g * interval '1 day' + interval '12 hours', g \
           FROM generate_series(1, 450) g; \
         CREATE TABLE measurements_archive (id bigint NOT NULL, taken_at timestamptz NOT NULL, v int, \
           PRIMARY KEY (id, taken_at)) PARTITION BY RANGE (taken_at); \
         CREATE TABLE measurements_archive_all PARTITION OF measurements_archive DEFAULT; \
         ANALYZE measurements;",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(
        &url,
        "table: measurements, column: taken_at, older_than: 365 days, batch_size: 40, \
         archive: { table: measurements_archive }",
    );
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    // Ages 365.5 … 449.5 days: 85 rows; 50 in m_old (400.5 …), 35 in m_mid.
    let objects = v["steps"][0]["objects"].as_array().expect("objects");
    let part = |name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == "partition" && o["name"] == name)
            .unwrap_or_else(|| panic!("no partition {name}: {v}"))
            .clone()
    };
    assert_eq!(part("m_old")["figures"]["eligible_rows"], 50);
    assert_eq!(part("m_old")["figures"]["whole"], true);
    assert_eq!(part("m_mid")["figures"]["eligible_rows"], 35);
    assert_eq!(part("m_mid")["figures"]["whole"], false);
    assert!(
        objects.iter().all(|o| o["name"] != "m_new"),
        "m_new has no eligible row"
    );
    assert!(
        !objects.iter().any(|o| o["marker"] == "+"),
        "the partitioned archive exists and is used as is: {v}"
    );
    let out = t.apply(&p);
    assert!(out.status.success(), "{}", out.stdout);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM measurements")), 365);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM m_old")), 0);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM m_mid")), 265);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM m_new")), 100);
    assert_eq!(
        rt.block_on(pg_count(&url, "SELECT count(*) FROM measurements_archive_all")),
        85
    );
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM measurements_archive WHERE v > 365"
        )),
        85,
        "exactly the rows older than 365 days were archived"
    );
}

/// With `include_children`, `max_rows` caps each table's walk
/// (operations.md): the child's cap is not used up by the parent's rows.
#[test]
fn postgres_max_rows_caps_each_inheritance_tables_walk() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE events (id int PRIMARY KEY, created_at timestamptz NOT NULL); \
         CREATE TABLE events_legacy (id int PRIMARY KEY, extra text NOT NULL) INHERITS (events); \
         INSERT INTO events SELECT g, now() - interval '400 days' FROM generate_series(1, 30) g; \
         INSERT INTO events_legacy SELECT 1000 + g, now() - interval '400 days', 'legacy' FROM generate_series(1, 20) g; \
         INSERT INTO events SELECT g, now() FROM generate_series(31, 40) g; \
         INSERT INTO events_legacy SELECT 2000 + g, now(), 'new' FROM generate_series(1, 5) g;",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(
        &url,
        "table: events, column: created_at, older_than: 365 days, include_children: true, max_rows: 12, batch_size: 5",
    );
    let (code, v) = diff(&t, &p);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["steps"][0]["estimate"]["rows"], 24, "12 of each table's: {v}");
    let Ran {
        code,
        report: r,
        json,
        stderr,
        ..
    } = t.apply_json(&p);
    assert_eq!(code, Some(0), "{json} {stderr}");
    assert_eq!(r["steps"][0]["rows"], 24, "12 from each table: {r}");
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM ONLY events")), 28);
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM events_legacy")), 13);
}
