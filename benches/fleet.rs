//! A fleet apply against one-by-one, on 50 databases of a PostgreSQL this
//! benchmark starts itself.
//!
//! Run: `cargo bench --bench fleet` (builds `target/release/dbmaint`
//! first). `DBMAINT_BENCH_DATABASES` (default 50) and
//! `DBMAINT_BENCH_FLEET_N` (default 4) change the size. Each database
//! holds the demo's data at a small scale; the plan deletes old audit rows
//! in batches and analyzes. Prints, for the same work on freshly copied
//! databases:
//!
//! - (i) one by one: a shell loop's `dbmaint plan apply --target URL`
//!   per database;
//! - (ii) `dbmaint plan apply --targets FILE --fleet-parallelism N`;
//! - the fleet's peak RSS, summed over its whole process tree (sampled
//!   from /proc every 5 ms), which must stay under 100 MB;
//! - the most dbmaint sessions the server saw at once (pg_stat_activity,
//!   sampled every 5 ms) against the bound N × 3 (a lock session and two
//!   step sessions per target).

#[allow(dead_code)]
#[path = "../tests/support/cluster.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn binary() -> PathBuf {
    let status = Command::new("cargo")
        .args(["build", "--release", "--locked", "-q", "--bin", "dbmaint"])
        .status()
        .expect("cargo build");
    assert!(status.success());
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    std::path::absolute(Path::new(&dir).join("release/dbmaint")).expect("path")
}

/// `n` databases copied from `template`, named `fleet_{round}_{i}`.
async fn copies(cluster: &pg::Cluster, template: &str, round: &str, n: usize) -> Vec<String> {
    let mut admin = pg::connect(&cluster.url("postgres")).await;
    let mut urls = vec![];
    for i in 0..n {
        let name = format!("fleet_{round}_{i}");
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name} TEMPLATE {template}"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .expect("copy");
        }
        urls.push(cluster.url(&name));
    }
    urls
}

/// The sum of VmRSS over `root` and its descendants, in kB.
fn tree_rss_kb(root: u32) -> u64 {
    let mut parents = std::collections::HashMap::<u32, u32>::new();
    let mut rss = std::collections::HashMap::<u32, u64>::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        for l in status.lines() {
            if let Some(v) = l.strip_prefix("PPid:") {
                parents.insert(pid, v.trim().parse().unwrap_or(0));
            }
            if let Some(v) = l.strip_prefix("VmRSS:") {
                rss.insert(pid, v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0));
            }
        }
    }
    let in_tree = |mut p: u32| loop {
        if p == root {
            return true;
        }
        match parents.get(&p) {
            Some(&pp) if pp != 0 && pp != p => p = pp,
            _ => return false,
        }
    };
    rss.iter().filter(|(p, _)| in_tree(**p)).map(|(_, kb)| kb).sum()
}

fn main() {
    let n_db = env_usize("DBMAINT_BENCH_DATABASES", 50);
    let fleet_n = env_usize("DBMAINT_BENCH_FLEET_N", 4);
    let bin = binary();
    let runtime = rt();
    let rt = &runtime;
    let cluster = pg::Cluster::get();
    let dir = tempfile::tempdir().expect("tempdir");
    // The template: the demo's data at a small scale, statistics flushed.
    let template = rt.block_on(cluster.fresh_db());
    rt.block_on(async {
        let mut c = pg::connect(&template).await;
        let tables = dbmaint::demo::generate(7, dbmaint::demo::Size::scaled(0.02), chrono::Utc::now());
        dbmaint::demo::seed_postgres(&mut c, &tables).await.expect("seed");
        // A template must have no session when it is copied.
        sqlx::Connection::close(c).await.expect("close");
    });
    let template_name = pg::db_name(&template).to_string();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: fleetbench\nsteps:\n  audit:\n    retention: { table: core_audit_log, column: created_at, older_than: 90 days, batch_size: 500 }\n  \
         stats:\n    needs: [audit]\n    analyze: {}\n",
    )
    .expect("plan");
    println!(
        "PostgreSQL, {n_db} databases copied from one seeded with the demo's data (scale 0.02); plan: batched retention + analyze\n"
    );

    // (i) one by one.
    let urls = rt.block_on(copies(cluster, &template_name, "a", n_db));
    let t0 = Instant::now();
    for u in &urls {
        let out = Command::new(&bin)
            .current_dir(dir.path())
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .args(["--progress", "never", "plan", "apply", "--auto-approve", "--target", u])
            .arg(&plan)
            .output()
            .expect("apply");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let one_by_one = t0.elapsed();

    // (ii) the fleet, with RSS and sessions sampled.
    let urls = rt.block_on(copies(cluster, &template_name, "b", n_db));
    let mut inv = "targets:\n".to_string();
    for (i, u) in urls.iter().enumerate() {
        inv.push_str(&format!("  db{i}: {{ url: \"{u}\" }}\n"));
    }
    let inventory = dir.path().join("targets.yaml");
    std::fs::write(&inventory, inv).expect("inventory");
    let done = Arc::new(AtomicBool::new(false));
    let max_sessions = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (done, max) = (done.clone(), max_sessions.clone());
        let url = cluster.url("postgres");
        std::thread::spawn(move || {
            self::rt().block_on(async {
                let mut c = pg::connect(&url).await;
                while !done.load(Ordering::SeqCst) {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'dbmaint%' AND datname LIKE 'fleet_b_%'",
                    )
                    .fetch_one(&mut c)
                    .await
                    .unwrap_or(0);
                    max.fetch_max(n as u64, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
    };
    // The document goes to a file: a pipe nobody reads until the end
    // would fill and stall the fleet.
    let doc = dir.path().join("fleet.json");
    let t0 = Instant::now();
    let mut child = Command::new(&bin)
        .current_dir(dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .args(["--fleet-parallelism", &fleet_n.to_string(), "--targets"])
        .arg(&inventory)
        .arg(&plan)
        .stdout(std::fs::File::create(&doc).expect("document file"))
        .spawn()
        .expect("fleet");
    let mut peak_kb = 0;
    while child.try_wait().expect("wait").is_none() {
        peak_kb = peak_kb.max(tree_rss_kb(child.id()));
        std::thread::sleep(Duration::from_millis(5));
    }
    let fleet = t0.elapsed();
    done.store(true, Ordering::SeqCst);
    watcher.join().expect("watcher");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&doc).expect("document")).expect("fleet JSON");
    assert_eq!(v["exit_code"], 0, "{v}");
    let rows: u64 = v["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter_map(|t| t["rows"].as_u64())
        .sum();
    let sessions = max_sessions.load(Ordering::SeqCst);
    let bound = fleet_n as u64 * 3;
    println!(
        "  (i)  one by one (a shell loop)      {:>7.2} s",
        one_by_one.as_secs_f64()
    );
    println!(
        "  (ii) --targets, {fleet_n} at a time         {:>7.2} s  = {:.2}× one by one; {rows} rows over {n_db} databases",
        fleet.as_secs_f64(),
        fleet.as_secs_f64() / one_by_one.as_secs_f64()
    );
    println!(
        "       peak RSS of the fleet's process tree {:.1} MB (limit 100 MB){}",
        peak_kb as f64 / 1024.0,
        if peak_kb > 100 * 1024 { "  OVER THE LIMIT" } else { "" }
    );
    println!(
        "       most dbmaint sessions at once on the server: {sessions} (bound {fleet_n} × 3 = {bound}){}",
        if sessions > bound { "  OVER THE BOUND" } else { "" }
    );
}
