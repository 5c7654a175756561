//! Retention and diff speed against the raw SQL a DBA would write, on a
//! PostgreSQL this benchmark starts itself with fsync ON.
//!
//! Run: `cargo bench --bench retention` (release build of `dbmaint` first:
//! the bench runs `target/release/dbmaint`). `DBMAINT_BENCH_ROWS` sets the
//! table size (default 3,000,000; a third is past the cutoff). Prints:
//!
//! - plain retention: (i) one `DELETE`, (ii) a PL/pgSQL loop over primary
//!   key ranges of 10,000 with a COMMIT per batch, (iii) `dbmaint plan
//!   apply` with `batch_size: 10000` — wall time of the whole command
//!   (connect, inspect, count, plan, lock, journal, batches);
//! - the same for archive-and-delete (`WITH moved AS (DELETE … RETURNING *)
//!   INSERT INTO archive SELECT * FROM moved`);
//! - dbmaint's longest batch (from its JSON Lines log) against the loop's
//!   (which records its own, statement and COMMIT), and peak RSS
//!   (`/usr/bin/time -f %M`), and the peak RSS again at 3× the rows;
//! - `plan diff` on a database with 5,000 extra tables against the same
//!   catalog queries run raw, and the statements the server ran for the
//!   diff (counted by pg_stat_statements, which the cluster preloads).
//!
//! Each variant starts from the same freshly built, vacuumed and
//! checkpointed table, so no variant inherits another's dead tuples, and
//! runs `DBMAINT_BENCH_REPS` times (default 3): the best wall time counts,
//! the longest batch and peak RSS are the worst seen, and the median of
//! each repetition's dbmaint / loop ratio is printed beside them (the two
//! run a minute apart, so the machine's slow and fast spells move both).

#[allow(dead_code)]
#[path = "../tests/support/cluster.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::PgConnection;

const CUTOFF_DAYS: i64 = 730;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn exec(c: &mut PgConnection, sql: &str) -> Duration {
    let t0 = Instant::now();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    t0.elapsed()
}

async fn count(c: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `events_src`: `rows` rows over three years, ids in time order with a
/// ±15-day jitter, ~100-byte rows; a third older than the cutoff.
async fn build_source(c: &mut PgConnection, rows: i64) {
    exec(c, "DROP TABLE IF EXISTS events_src").await;
    exec(
        c,
        &format!(
            "CREATE TABLE events_src AS SELECT i::int8 AS id, \
               now() - ({rows} - i) * (interval '1095 days' / {rows}) + (hashint4(i::int4) % 1296000) * interval '1 second' AS created_at, \
               (i % 1000)::int4 AS actor_id, md5(i::text) || md5((i * 7)::text) AS payload, \
               'event.' || (i % 17) AS kind \
             FROM generate_series(1, {rows}) i"
        ),
    )
    .await;
}

/// A fresh `events` (and empty `events_archive`) from `events_src`.
async fn reset(c: &mut PgConnection) {
    exec(
        c,
        "DROP TABLE IF EXISTS events, events_archive;
         CREATE TABLE events AS SELECT * FROM events_src ORDER BY id;
         ALTER TABLE events ADD PRIMARY KEY (id);
         CREATE INDEX events_created_at_idx ON events (created_at);
         CREATE TABLE events_archive (LIKE events);
         ALTER TABLE events_archive ADD PRIMARY KEY (id);",
    )
    .await;
    exec(c, "VACUUM ANALYZE events").await;
    exec(c, "CHECKPOINT").await;
}

/// `now() - 730 days` as a timestamptz literal.
async fn cutoff_now(c: &mut PgConnection) -> String {
    let t: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT (now() - interval '{CUTOFF_DAYS} days')::text"
    )))
    .fetch_one(&mut *c)
    .await
    .expect("cutoff");
    format!("'{t}'::timestamptz")
}

/// The DBA's loop; it records its longest batch (statement and COMMIT,
/// as dbmaint's `batch_done` measures its own) in `bench_loop`.
const LOOP: &str = "CREATE TABLE IF NOT EXISTS bench_loop (longest_ms float8);
CREATE OR REPLACE PROCEDURE purge_loop(cutoff timestamptz, archive bool) LANGUAGE plpgsql AS $$
DECLARE lo int8; hi int8; t0 timestamptz; longest float8 := 0;
BEGIN
  SELECT min(id), max(id) INTO lo, hi FROM events WHERE created_at < cutoff;
  WHILE lo <= hi LOOP
    t0 := clock_timestamp();
    IF archive THEN
      WITH moved AS (DELETE FROM events WHERE id >= lo AND id < lo + 10000 AND created_at < cutoff RETURNING *)
      INSERT INTO events_archive SELECT * FROM moved;
    ELSE
      DELETE FROM events WHERE id >= lo AND id < lo + 10000 AND created_at < cutoff;
    END IF;
    COMMIT;
    longest := greatest(longest, extract(epoch FROM clock_timestamp() - t0) * 1000);
    lo := lo + 10000;
  END LOOP;
  DELETE FROM bench_loop;
  INSERT INTO bench_loop VALUES (longest);
END $$";

struct Run {
    wall: Duration,
    rss_kb: u64,
    longest_batch_ms: u64,
    batches: u64,
    rows: u64,
    /// Where the wall time went, from the event log's timestamps: before
    /// the run began (process, connect, inspect and plan, lock, journal),
    /// from the step's start to its first batch (the count and key span),
    /// and the batches themselves (first batch's start to the step's end).
    phases_ms: (i64, i64, i64),
}

fn dbmaint_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/dbmaint");
    assert!(
        bin.exists(),
        "build it first: cargo build --release (the bench times the release binary)"
    );
    bin
}

/// `dbmaint plan apply` of a retention plan, under /usr/bin/time.
fn dbmaint_apply(url: &str, archive: bool) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: bench\ntarget: \"{url}\"\nsteps:\n  purge:\n    retention: {{ table: events, column: created_at, older_than: {CUTOFF_DAYS} days, batch_size: 10000{} }}\n",
            if archive { ", archive: { table: events_archive }" } else { "" }
        ),
    )
    .expect("plan");
    let t0 = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kb=%M"])
        .arg(dbmaint_bin())
        .args([
            "--progress",
            "never",
            "-q",
            "plan",
            "apply",
            "--auto-approve",
            "--log-dir",
        ])
        .arg(dir.path().join("logs"))
        .arg(&plan)
        .output()
        .expect("run dbmaint");
    let wall = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dbmaint failed: {stderr}");
    let rss_kb = stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kb="))
        .and_then(|v| v.trim().parse().ok())
        .expect("maxrss from /usr/bin/time");
    let (mut longest, mut batches, mut rows) = (0, 0, 0);
    let at = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v["at"].as_str().unwrap_or_default())
            .map(|t| t.timestamp_millis())
            .unwrap_or(0)
    };
    let (mut run_started, mut step_started, mut first_batch, mut step_done) = (0, 0, 0, 0);
    for f in std::fs::read_dir(dir.path().join("logs")).expect("logs").flatten() {
        if f.path().extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(f.path()).expect("log").lines() {
                let v: serde_json::Value = serde_json::from_str(line).expect("event");
                match v["event"].as_str() {
                    Some("run_started") => run_started = at(&v),
                    Some("step_started") => step_started = at(&v),
                    Some("step_finished") => step_done = at(&v),
                    Some("batch_done") => {
                        if first_batch == 0 {
                            first_batch = at(&v) - v["duration_ms"].as_i64().unwrap_or(0);
                        }
                        longest = longest.max(v["duration_ms"].as_u64().unwrap_or(0));
                        batches += 1;
                        rows += v["rows"].as_u64().unwrap_or(0);
                    }
                    _ => {}
                }
            }
        }
    }
    let logged = step_done - run_started;
    Run {
        wall,
        rss_kb,
        longest_batch_ms: longest,
        batches,
        rows,
        phases_ms: (
            wall.as_millis() as i64 - logged,
            first_batch - step_started,
            step_done - first_batch,
        ),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let rows: i64 = std::env::var("DBMAINT_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000_000);
    let reps: usize = std::env::var("DBMAINT_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let cluster = pg::start_with(
        "-c fsync=on -c synchronous_commit=on -c shared_buffers=512MB -c max_wal_size=8GB -c checkpoint_timeout=30min",
    );
    let rt = rt();
    let url = rt.block_on(cluster.fresh_db());
    let mut c = rt.block_on(pg::connect(&url));
    println!(
        "PostgreSQL with fsync=on; {rows} rows, cutoff {CUTOFF_DAYS} days; batches of 10,000; best of {reps} runs each\n"
    );
    let t0 = Instant::now();
    rt.block_on(build_source(&mut c, rows));
    rt.block_on(exec(&mut c, LOOP));
    println!("built the source table in {}", secs(t0.elapsed()));
    let eligible_sql = format!("SELECT count(*) FROM events WHERE created_at < now() - interval '{CUTOFF_DAYS} days'");

    for archive in [false, true] {
        println!(
            "\n{}",
            if archive {
                "archive-and-delete"
            } else {
                "plain retention"
            }
        );
        // Each variant `reps` times from a fresh table; the best wall time
        // counts (this machine's noise is larger than the differences).
        let mut eligible = 0;
        // Each repetition's dbmaint time over the loop's of the same
        // repetition, measured a minute apart: the machine's slow and fast
        // spells move both, so their ratio is steadier than either.
        let mut ratios: Vec<f64> = vec![];
        let (mut t_single, mut t_loop) = (Duration::MAX, Duration::MAX);
        let mut run: Option<Run> = None;
        let (mut worst_batch, mut peak_rss) = (0, 0);
        // The loop's longest batch, the worst of its repetitions too.
        let mut loop_worst_batch: f64 = 0.0;
        for _ in 0..reps {
            // (i) one statement; the raw variants take a fixed cutoff, so the
            // check after them does not see rows that aged past it since.
            rt.block_on(reset(&mut c));
            eligible = rt.block_on(count(&mut c, &eligible_sql));
            let cutoff = rt.block_on(cutoff_now(&mut c));
            let single = if archive {
                format!(
                    "WITH moved AS (DELETE FROM events WHERE created_at < {cutoff} RETURNING *) \
                     INSERT INTO events_archive SELECT * FROM moved"
                )
            } else {
                format!("DELETE FROM events WHERE created_at < {cutoff}")
            };
            t_single = t_single.min(rt.block_on(exec(&mut c, &single)));
            let left = format!("SELECT count(*) FROM events WHERE created_at < {cutoff}");
            assert_eq!(rt.block_on(count(&mut c, &left)), 0);
            // (ii) PL/pgSQL loop over primary-key ranges
            rt.block_on(reset(&mut c));
            let cutoff = rt.block_on(cutoff_now(&mut c));
            let this_loop = rt.block_on(exec(&mut c, &format!("CALL purge_loop({cutoff}, {archive})")));
            t_loop = t_loop.min(this_loop);
            let longest: f64 = rt.block_on(async {
                sqlx::query_scalar("SELECT longest_ms FROM bench_loop")
                    .fetch_one(&mut c)
                    .await
                    .expect("the loop's longest batch")
            });
            loop_worst_batch = loop_worst_batch.max(longest);
            let left = format!("SELECT count(*) FROM events WHERE created_at < {cutoff}");
            assert_eq!(rt.block_on(count(&mut c, &left)), 0);
            // (iii) dbmaint
            rt.block_on(reset(&mut c));
            // dbmaint's cutoff is its start time, in whole seconds, minus
            // 730 days: rows that age past the cutoff while it runs are the
            // next run's.
            let start: String = rt.block_on(async {
                sqlx::query_scalar("SELECT date_trunc('second', now())::text")
                    .fetch_one(&mut c)
                    .await
                    .expect("now")
            });
            let r = dbmaint_apply(&url, archive);
            assert_eq!(
                rt.block_on(count(
                    &mut c,
                    &format!("SELECT count(*) FROM events WHERE created_at < '{start}'::timestamptz - interval '{CUTOFF_DAYS} days'")
                )),
                0,
                "dbmaint left eligible rows"
            );
            if archive {
                assert_eq!(
                    rt.block_on(count(&mut c, "SELECT count(*) FROM events_archive")) as u64,
                    r.rows
                );
            }
            ratios.push(r.wall.as_secs_f64() / this_loop.as_secs_f64());
            worst_batch = worst_batch.max(r.longest_batch_ms);
            peak_rss = peak_rss.max(r.rss_kb);
            if run.as_ref().is_none_or(|b| r.wall < b.wall) {
                run = Some(r);
            }
        }
        let run = run.expect("at least one repetition");
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        println!("  eligible rows                {eligible}");
        println!("  (i)   single statement       {}", secs(t_single));
        println!("  (ii)  PL/pgSQL pk-range loop {}", secs(t_loop));
        println!(
            "  (iii) dbmaint apply          {}  = {:.2}× loop, {:.2}× single; {} batches, {} rows, longest batch {} ms, peak RSS {:.1} MB",
            secs(run.wall),
            run.wall.as_secs_f64() / t_loop.as_secs_f64(),
            run.wall.as_secs_f64() / t_single.as_secs_f64(),
            run.batches,
            run.rows,
            worst_batch,
            peak_rss as f64 / 1024.0
        );
        println!(
            "        longest batch: dbmaint {worst_batch} ms, loop {loop_worst_batch:.0} ms = {:.2}× (worst of the repetitions each)",
            worst_batch as f64 / loop_worst_batch.max(1.0)
        );
        println!(
            "        per repetition, dbmaint / loop: {} (median {median:.2}×)",
            ratios.iter().map(|r| format!("{r:.2}×")).collect::<Vec<_>>().join(", ")
        );
        println!(
            "        dbmaint's time: {} ms before the run (process, inspect, plan, lock, journal), \
             {} ms from the step's start to its first batch (the first eligible key; the span's end is read beside the batches), {} ms in batches",
            run.phases_ms.0, run.phases_ms.1, run.phases_ms.2
        );
    }

    // Peak RSS at 3× the rows.
    println!("\n3× the rows ({}), plain retention, dbmaint only", rows * 3);
    rt.block_on(build_source(&mut c, rows * 3));
    rt.block_on(reset(&mut c));
    let run = dbmaint_apply(&url, false);
    assert!(
        run.rows >= rows as u64 * 3 / 3 - 1000,
        "removed a third of the rows: {}",
        run.rows
    );
    println!(
        "  dbmaint apply {}; {} batches, {} rows, longest batch {} ms, peak RSS {:.1} MB",
        secs(run.wall),
        run.batches,
        run.rows,
        run.longest_batch_ms,
        run.rss_kb as f64 / 1024.0
    );
    rt.block_on(exec(&mut c, "DROP TABLE events, events_archive, events_src"));
    drop(c);

    diff_with_many_tables(&rt, &cluster);
}

/// `plan diff` with 0 and 5,000 extra tables against the raw catalog queries.
fn diff_with_many_tables(rt: &tokio::runtime::Runtime, cluster: &pg::Cluster) {
    println!("\nplan diff: a vacuum and an analyze step over every table");
    let url = rt.block_on(cluster.fresh_db());
    let mut c = rt.block_on(pg::connect(&url));
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!("version: 1\nname: bench-diff\ntarget: \"{url}\"\nsteps:\n  vacuum-all:\n    vacuum: {{}}\n  analyze-all:\n    analyze: {{}}\n"),
    )
    .expect("plan");
    for extra in [0, 5000] {
        if extra > 0 {
            for chunk in 0..(extra / 500) {
                let ddl: String = (0..500)
                    .map(|i| {
                        let n = chunk * 500 + i;
                        format!("CREATE TABLE extra_{n} (id int PRIMARY KEY, v text); CREATE INDEX ON extra_{n} (v);")
                    })
                    .collect();
                rt.block_on(exec(&mut c, &ddl));
            }
            rt.block_on(exec(&mut c, "ANALYZE"));
        }
        // Warm the catalog caches once, then time each side.
        let raw = || {
            rt.block_on(async {
                let mut c = pg::connect(&url).await;
                let t0 = Instant::now();
                exec(&mut c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await;
                for q in dbmaint::db::pg::catalog_sql(&dbmaint::db::catalog::Measure::All) {
                    sqlx::query(sqlx::AssertSqlSafe(q))
                        .fetch_all(&mut c)
                        .await
                        .expect("catalog query");
                }
                exec(&mut c, "COMMIT").await;
                t0.elapsed()
            })
        };
        let diff = || {
            let t0 = Instant::now();
            let out = Command::new(dbmaint_bin())
                .args(["--output", "json", "plan", "diff"])
                .arg(&plan)
                .output()
                .expect("diff");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            t0.elapsed()
        };
        let _ = (raw(), diff());
        let best = |f: &dyn Fn() -> Duration| (0..3).map(|_| f()).min().unwrap_or_default();
        let t_raw = best(&raw);
        let t_diff = best(&diff);
        // Counted by the server (pg_stat_statements), not reported by dbmaint.
        let statements = pg::statements_during(&url, || {
            diff();
        });
        println!(
            "  {extra:>5} extra tables: dbmaint plan diff {:>8.1} ms (whole command), raw catalog queries {:>8.1} ms; statements the server ran for the diff: {statements}",
            t_diff.as_secs_f64() * 1000.0,
            t_raw.as_secs_f64() * 1000.0
        );
    }
}
