//! `vacuum: {jobs: N}` against `vacuumdb -j N` on the same tables (issue 14
//! §8), on a PostgreSQL this benchmark starts itself with fsync ON.
//!
//! Run: `cargo build --release && cargo bench --bench vacuum_jobs`.
//! `DBMAINT_BENCH_TABLES` (default 8) tables of `DBMAINT_BENCH_ROWS` rows
//! (default 500,000) each, a third of them deleted, are rebuilt, vacuumed
//! by nothing and checkpointed before every variant, so each starts from
//! the same dead tuples:
//!
//! - (i) `vacuumdb -j N --table …` (plain VACUUM of every table);
//! - (ii) `dbmaint plan apply` of `vacuum: {min_dead_ratio: 0, analyze:
//!   false, jobs: N}` with `--parallelism N` — wall time of the whole
//!   command (connect, inspect, plan, lock, journal, the vacuums).
//!
//! `DBMAINT_BENCH_JOBS` sets N (default 2), `DBMAINT_BENCH_REPS` the
//! repetitions (default 3): the best wall time of each counts, and the
//! median of each repetition's dbmaint / vacuumdb ratio is printed beside.

#[allow(dead_code)]
#[path = "../tests/support/cluster.rs"]
mod pg;

#[allow(dead_code)]
mod common;
use common::{bindir, dbmaint_bin, env_or, psql};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The tables, rebuilt with a third of their rows dead, and a checkpoint.
fn rebuild(url: &str, tables: u64, rows: u64) {
    for t in 1..=tables {
        psql(
            url,
            &format!(
                "DROP TABLE IF EXISTS t{t}; \
                 CREATE TABLE t{t} (id bigint PRIMARY KEY, at timestamptz NOT NULL, pad text NOT NULL) \
                   WITH (autovacuum_enabled = off); \
                 INSERT INTO t{t} SELECT g, now(), md5(g::text) FROM generate_series(1, {rows}) g; \
                 DELETE FROM t{t} WHERE id % 3 = 0; ANALYZE t{t};"
            ),
        );
    }
    psql(url, "CHECKPOINT");
}

fn vacuumdb(bindir: &Path, cluster: &pg::Cluster, db: &str, tables: u64, jobs: u64) -> Duration {
    let mut cmd = Command::new(bindir.join("vacuumdb"));
    cmd.args(["-q", "-h"]).arg(&cluster.socket_dir).args([
        "-p",
        &cluster.port.to_string(),
        "-U",
        "postgres",
        "-d",
        db,
        "-j",
        &jobs.to_string(),
    ]);
    for t in 1..=tables {
        cmd.args(["--table", &format!("t{t}")]);
    }
    let t0 = Instant::now();
    let out = cmd.output().expect("vacuumdb");
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "vacuumdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn dbmaint(url: &str, tables: u64, jobs: u64) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.yaml");
    let names: Vec<String> = (1..=tables).map(|t| format!("t{t}")).collect();
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: bench\ntarget: \"{url}\"\nsteps:\n  vac:\n    vacuum: {{ tables: [{}], min_dead_ratio: 0, analyze: false, jobs: {jobs} }}\n",
            names.join(", ")
        ),
    )
    .expect("plan");
    let t0 = Instant::now();
    let out = Command::new(dbmaint_bin())
        .current_dir(dir.path())
        .env("XDG_STATE_HOME", dir.path())
        .args([
            "-q",
            "plan",
            "apply",
            "--auto-approve",
            "--parallelism",
            &jobs.to_string(),
        ])
        .arg(&plan)
        .output()
        .expect("dbmaint");
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "dbmaint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn vacuumed(url: &str, tables: u64) -> bool {
    let out = Command::new("psql")
        .args([
            "-X",
            "-At",
            "-d",
            url,
            "-c",
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname ~ '^t[0-9]+$' AND n_dead_tup = 0 AND vacuum_count > 0",
        ])
        .output()
        .expect("psql");
    String::from_utf8_lossy(&out.stdout).trim() == tables.to_string()
}

fn main() {
    let tables = env_or("DBMAINT_BENCH_TABLES", 8);
    let rows = env_or("DBMAINT_BENCH_ROWS", 500_000);
    let jobs = env_or("DBMAINT_BENCH_JOBS", 2);
    let reps = env_or("DBMAINT_BENCH_REPS", 3).max(1);
    let cluster = pg::start_with("-c fsync=on");
    let url = cluster.url("postgres");
    let bindir = bindir("vacuumdb");
    println!("vacuum of {tables} tables × {rows} rows (a third dead), jobs {jobs}, fsync on, {reps} repetitions");
    let (mut best_raw, mut best_ours) = (Duration::MAX, Duration::MAX);
    let mut ratios = vec![];
    for rep in 1..=reps {
        rebuild(&url, tables, rows);
        let raw = vacuumdb(&bindir, &cluster, "postgres", tables, jobs);
        assert!(vacuumed(&url, tables), "vacuumdb left dead tuples");
        rebuild(&url, tables, rows);
        let ours = dbmaint(&url, tables, jobs);
        assert!(vacuumed(&url, tables), "dbmaint left dead tuples");
        println!(
            "  rep {rep}: vacuumdb -j {jobs} {:.2} s, dbmaint jobs {jobs} {:.2} s",
            raw.as_secs_f64(),
            ours.as_secs_f64()
        );
        best_raw = best_raw.min(raw);
        best_ours = best_ours.min(ours);
        ratios.push(ours.as_secs_f64() / raw.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "best: vacuumdb -j {jobs} {:.2} s, dbmaint {:.2} s: ×{:.2} (median of the repetitions' ratios ×{:.2}; target ≤ ×1.05)",
        best_raw.as_secs_f64(),
        best_ours.as_secs_f64(),
        best_ours.as_secs_f64() / best_raw.as_secs_f64(),
        ratios[ratios.len() / 2]
    );
}
