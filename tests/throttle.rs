//! `throttle:` on retention (issue 14 §7): between batches the step reads
//! the replicas' lag and the sessions running or waiting on a lock, and
//! waits while one is over its limit. On a primary of its own with a real
//! streaming replica (`Cluster::with_replica`): replay paused with
//! `pg_wal_replay_pause()` stops the deletes while the lag grows, and they
//! finish after `pg_wal_replay_resume()`.

use std::time::{Duration, Instant};

use crate::support::cli::{pg_count, psql_scalar, rt};
use crate::support::cluster::{Cluster, admin_statements, role_url};
use crate::support::test::{Test, spawn_apply};

/// A fresh database on the replicated primary with `rows` rows a year old
/// in `ev` and 10 recent ones, the throttle's query counted by
/// pg_stat_statements; its URL.
fn replicated_db(rows: u64) -> String {
    let (primary, _) = Cluster::with_replica();
    let url = rt().block_on(primary.fresh_db());
    admin_statements(
        &url,
        &[format!(
            "CREATE EXTENSION pg_stat_statements; \
             CREATE TABLE ev (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, pad text NOT NULL); \
             INSERT INTO ev SELECT g, now() - interval '400 days', md5(g::text) FROM generate_series(1, {rows}) g; \
             INSERT INTO ev SELECT g, now(), md5(g::text) FROM generate_series({rows} + 1, {rows} + 10) g; \
             CREATE TABLE busy (id int)"
        )],
    );
    url
}

/// How many times the throttle has read the server's load in `url`'s
/// database.
fn load_reads(url: &str) -> i64 {
    psql_scalar(
        url,
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements \
         WHERE query LIKE '%pg_stat_replication%' AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .parse()
    .expect("calls")
}

/// The old rows left in `ev`.
fn old_rows(url: &str) -> i64 {
    rt().block_on(pg_count(
        url,
        "SELECT count(*) FROM ev WHERE created_at < now() - interval '1 day'",
    ))
}

/// `psql -At` output, or `None` when it fails (a database not replayed yet).
fn try_scalar(url: &str, sql: &str) -> Option<String> {
    let out = std::process::Command::new("psql")
        .args(["-X", "-At", "-d", url, "-c", sql])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Polls `cond` every 50 ms for at most `limit`; fails with `what`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The apply's JSON report once it exits (at most 120 s).
fn finished(child: std::process::Child) -> (Option<i32>, serde_json::Value, String) {
    let out = child.wait_with_output().expect("apply output");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("report: {e}\n{stderr}"));
    let report = json["report"].clone();
    (out.status.code(), report, stderr)
}

#[test]
fn postgres_retention_waits_while_a_replica_lags_and_finishes_after_replay_resumes() {
    let url = replicated_db(20_000);
    let (primary, replica) = Cluster::with_replica();
    let db = crate::support::cluster::db_name(&url).to_string();
    let on_replica = replica.url(&db);
    // The replica has the rows before its replay is paused.
    wait_for(Duration::from_secs(60), "the replica to replay the seed rows", || {
        try_scalar(&on_replica, "SELECT count(*) FROM ev").as_deref() == Some("20010")
    });
    let lag = || -> f64 {
        psql_scalar(
            &primary.url("postgres"),
            "SELECT coalesce(extract(epoch FROM max(replay_lag)), 0) FROM pg_stat_replication",
        )
        .parse()
        .expect("lag")
    };
    admin_statements(&on_replica, &["SELECT pg_wal_replay_pause()".into()]);
    let t = Test::new();
    let plan = t.retention_plan(
        &url,
        "table: ev, column: created_at, older_than: 365 days, batch_size: 200, pause: 100ms, \
         throttle: { max_replica_lag: 1s, check_every: 100ms }",
    );
    let child = spawn_apply(t.path(), &plan);
    let child_pid = child.id();
    let deleted = || 20_000 - old_rows(&url);
    // The lag grows past the limit; from then on no batch starts.
    wait_for(Duration::from_secs(60), "the replica's lag to pass 3 s", || lag() > 3.0);
    let at_3s = deleted();
    wait_for(Duration::from_secs(60), "the replica's lag to pass 6 s", || lag() > 6.0);
    let at_6s = deleted();
    assert_eq!(at_3s, at_6s, "a batch ran while the replica lagged over 1 s");
    assert!(
        at_6s < 20_000,
        "the step finished before the replica lagged: {at_6s} rows deleted"
    );
    assert!(
        std::path::Path::new(&format!("/proc/{child_pid}")).exists(),
        "the apply ended while it should wait"
    );
    assert_eq!(
        psql_scalar(&on_replica, "SELECT count(*) FROM ev"),
        "20010",
        "the replica replayed no delete while paused"
    );
    admin_statements(&on_replica, &["SELECT pg_wal_replay_resume()".into()]);
    let (code, r, stderr) = finished(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(old_rows(&url), 0, "every old row deleted");
    assert_eq!(
        rt().block_on(pg_count(&url, "SELECT count(*) FROM ev")),
        10,
        "the recent rows kept"
    );
    let step = &r["steps"][0];
    assert_eq!(step["rows"], 20_000, "{step}");
    let throttled = step["throttled_ms"].as_u64().expect("throttled_ms");
    assert!(
        throttled >= 3_000,
        "the 3 s the test watched it wait are in the report: {step}"
    );
    let why = step["throttled"].as_str().expect("throttled");
    assert!(why.contains("replica lag") && why.contains("over 1 s"), "{why}");
    assert!(
        stderr.contains("throttled: replica lag"),
        "the log says why it waits: {stderr}"
    );
}

#[test]
fn postgres_retention_waits_while_sessions_wait_on_a_lock() {
    let url = replicated_db(2_000);
    // One session holds a lock, another waits on it: one lock waiter.
    let holder_url = url.clone();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        crate::support::cli::rt().block_on(async {
            let mut c = crate::support::cluster::connect(&holder_url).await;
            sqlx::raw_sql("BEGIN; LOCK busy IN ACCESS EXCLUSIVE MODE")
                .execute(&mut c)
                .await
                .expect("lock");
            let _ = released.recv();
            sqlx::raw_sql("COMMIT").execute(&mut c).await.expect("commit");
        })
    });
    let waiter_url = url.clone();
    let waiter = std::thread::spawn(move || psql_scalar(&waiter_url, "SELECT count(*) FROM busy"));
    wait_for(Duration::from_secs(30), "a session to wait on the lock", || {
        psql_scalar(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FROM busy%'",
        ) == "1"
    });
    let t = Test::new();
    let plan = t.retention_plan(
        &url,
        "table: ev, column: created_at, older_than: 365 days, batch_size: 100, \
         throttle: { max_lock_waiters: 0, check_every: 100ms }",
    );
    let diff = t.diff(&plan);
    let notes = diff.json["steps"][0]["notes"].to_string();
    assert!(
        notes.contains("more than 0 sessions waiting on a lock") && notes.contains("checked every 100 ms"),
        "the diff says how the step is throttled: {notes}"
    );
    let child = spawn_apply(t.path(), &plan);
    // Five reads of the load, each over the limit: no batch may run.
    wait_for(Duration::from_secs(60), "five reads of the server's load", || {
        load_reads(&url) >= 5
    });
    assert_eq!(old_rows(&url), 2_000, "a batch ran while a session waited on a lock");
    release.send(()).expect("release");
    holder.join().expect("holder");
    assert_eq!(waiter.join().expect("waiter"), "0");
    let (code, r, stderr) = finished(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(old_rows(&url), 0);
    let step = &r["steps"][0];
    assert!(step["throttled_ms"].as_u64().unwrap_or(0) >= 400, "{step}\n{stderr}");
    let why = step["throttled"].as_str().expect("throttled");
    assert!(why.contains("1 session waiting on a lock over 0"), "{why}");
}

#[test]
fn postgres_retention_waits_while_too_many_sessions_are_active() {
    let url = replicated_db(1_000);
    let sleeper_url = url.clone();
    let sleeper = std::thread::spawn(move || {
        rt().block_on(async {
            let mut c = crate::support::cluster::connect(&sleeper_url).await;
            let _ = sqlx::query("SELECT pg_sleep(60)").execute(&mut c).await;
        })
    });
    wait_for(Duration::from_secs(30), "the sleeping session", || {
        psql_scalar(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(60)'",
        ) == "1"
    });
    let t = Test::new();
    let plan = t.retention_plan(
        &url,
        "table: ev, column: created_at, older_than: 365 days, batch_size: 100, \
         throttle: { max_active_sessions: 0, check_every: 100ms }",
    );
    let child = spawn_apply(t.path(), &plan);
    wait_for(Duration::from_secs(60), "five reads of the server's load", || {
        load_reads(&url) >= 5
    });
    assert_eq!(old_rows(&url), 1_000, "a batch ran while another session was active");
    admin_statements(
        &url,
        &["SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'".into()],
    );
    sleeper.join().expect("sleeper");
    let (code, r, stderr) = finished(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(old_rows(&url), 0);
    let why = r["steps"][0]["throttled"].as_str().expect("throttled");
    assert!(why.contains("active sessions over 0"), "{why}");
}

/// A role that cannot read other sessions would see no load and never
/// wait: the diff names the grant, and the apply refuses before a batch.
#[test]
fn postgres_a_throttle_the_role_cannot_see_through_refuses_before_any_batch() {
    let url = replicated_db(500);
    let as_role = role_url(&url, "thr", |role, db| {
        vec![
            format!("CREATE ROLE {role} LOGIN"),
            format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"),
            format!("GRANT CREATE ON DATABASE {db} TO {role}"),
        ]
    });
    let t = Test::new();
    let plan = t.retention_plan(
        &as_role,
        "table: ev, column: created_at, older_than: 365 days, batch_size: 100, \
         throttle: { max_replica_lag: 10s }",
    );
    let diff = t.diff(&plan);
    let warnings = diff.json["steps"][0]["warnings"].to_string();
    assert!(
        warnings.contains("GRANT pg_read_all_stats TO"),
        "the diff names the grant: {warnings}"
    );
    let out = t.apply(&plan);
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("the throttle cannot see") && all.contains("pg_read_all_stats"),
        "{all}"
    );
    assert_eq!(old_rows(&url), 500, "no row deleted");
}

#[test]
fn postgres_vacuum_waits_before_each_table_while_too_many_sessions_are_active() {
    // `throttle` on a step that works table by table: the load is read
    // before each table, and no VACUUM starts while another session is
    // active. Evidence from the server's clock: every table's last vacuum
    // is after the moment the busy session was cancelled.
    let url = replicated_db(1_000);
    admin_statements(
        &url,
        &[
            "CREATE TABLE a (id int PRIMARY KEY, pad text); CREATE TABLE b (id int PRIMARY KEY, pad text); \
           INSERT INTO a SELECT g, md5(g::text) FROM generate_series(1, 2000) g; \
           INSERT INTO b SELECT g, md5(g::text) FROM generate_series(1, 2000) g; \
           DELETE FROM a WHERE id % 2 = 0; DELETE FROM b WHERE id % 2 = 0"
                .into(),
        ],
    );
    let sleeper_url = url.clone();
    let sleeper = std::thread::spawn(move || {
        rt().block_on(async {
            let mut c = crate::support::cluster::connect(&sleeper_url).await;
            let _ = sqlx::query("SELECT pg_sleep(60)").execute(&mut c).await;
        })
    });
    wait_for(Duration::from_secs(30), "the sleeping session", || {
        psql_scalar(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(60)'",
        ) == "1"
    });
    let t = Test::new();
    let plan = t.path().join("vacuum.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: vt\ntarget: \"{url}\"\nsteps:\n  vac:\n    vacuum: {{ tables: [a, b], min_dead_ratio: 0, \
             throttle: {{ max_active_sessions: 0, check_every: 100ms }} }}\n"
        ),
    )
    .expect("plan");
    let diff = t.diff(&plan);
    assert!(
        diff.json["steps"][0]["notes"]
            .to_string()
            .contains("waits between objects while more than 0 active sessions"),
        "{}",
        diff.json
    );
    let child = spawn_apply(t.path(), &plan);
    wait_for(Duration::from_secs(60), "five reads of the server's load", || {
        load_reads(&url) >= 5
    });
    let cancelled_at = psql_scalar(
        &url,
        "SELECT extract(epoch FROM clock_timestamp()) FROM pg_cancel_backend( \
           (SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'))",
    );
    let cancelled_at: f64 = cancelled_at.parse().expect("time");
    sleeper.join().expect("sleeper");
    let (code, r, stderr) = finished(child);
    assert_eq!(code, Some(0), "{stderr}");
    let step = &r["steps"][0];
    assert!(step["throttled_ms"].as_u64().unwrap_or(0) > 0, "{r}");
    let why = step["throttled"].as_str().expect("throttled");
    assert!(
        why.contains("before objects") && why.contains("active sessions over 0"),
        "{why}"
    );
    for table in ["a", "b"] {
        let vacuumed: f64 = psql_scalar(
            &url,
            &format!(
                "SELECT coalesce(extract(epoch FROM last_vacuum), 0) FROM pg_stat_user_tables WHERE relname = '{table}'"
            ),
        )
        .parse()
        .expect("last_vacuum");
        assert!(
            vacuumed > cancelled_at,
            "{table} was vacuumed at {vacuumed}, before the busy session ended at {cancelled_at}"
        );
    }
}
