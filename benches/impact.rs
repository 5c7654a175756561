//! What retention costs live traffic (issue 14, "Speed and impact"): the
//! latency pgbench's clients see while each kind of purge runs, on a
//! PostgreSQL this benchmark starts itself with fsync ON. The companion
//! of `benches/retention.rs` (which times the purges alone).
//!
//! Run: `cargo build --release && cargo bench --bench impact`.
//! `DBMAINT_BENCH_ROWS` (default 3,000,000; a third past the cutoff) sets
//! the table; `DBMAINT_BENCH_WINDOW` (default 45) the seconds pgbench runs
//! per variant. First pgbench's unthrottled TPS is measured (tpcb-like, 4
//! clients, 10 s); then, for each variant, the table is rebuilt and
//! checkpointed and pgbench runs at half that rate (`-R`) for the window
//! while, 5 s in, the purge runs:
//!
//! - (i) nothing (15 s of the window);
//! - (ii) the hand-written loop: PL/pgSQL over primary-key ranges of
//!   10,000 with a COMMIT each;
//! - (iii) `dbmaint plan apply` of the retention with defaults;
//! - (iv) the same with `pause: 100ms`;
//! - (v) the same with `throttle: {max_active_sessions: 2, check_every: 50ms}`.
//!
//! Latency is each transaction's, schedule lag included (what a client
//! waits from the moment it meant to start), from pgbench's per-transaction
//! log, over the transactions that ended while the purge ran. Targets:
//! (iii) p99 ≤ (ii) p99; (iv) p99 ≤ 1.5 × (i) p99.

#[allow(dead_code)]
#[path = "../tests/support/cluster.rs"]
mod pg;

#[allow(dead_code)]
mod common;
use common::{bindir, dbmaint_bin, env_or, psql};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CUTOFF_DAYS: i64 = 730;

/// `events`: `rows` rows over three years in id order, a third older than
/// the cutoff, with its primary key and a time index; vacuumed, checkpointed.
fn rebuild(url: &str, rows: u64) {
    psql(
        url,
        &format!(
            "DROP TABLE IF EXISTS events; \
             CREATE TABLE events AS SELECT i::int8 AS id, \
               now() - ({rows} - i) * (interval '1095 days' / {rows}) AS created_at, \
               md5(i::text) || md5((i * 7)::text) AS payload \
             FROM generate_series(1, {rows}) i; \
             ALTER TABLE events ADD PRIMARY KEY (id); \
             CREATE INDEX events_created_at_idx ON events (created_at);"
        ),
    );
    psql(url, "VACUUM ANALYZE events");
    psql(url, "CHECKPOINT");
}

const LOOP: &str = "CREATE OR REPLACE PROCEDURE purge_loop(cutoff timestamptz) LANGUAGE plpgsql AS $$
DECLARE lo int8; hi int8;
BEGIN
  SELECT min(id), max(id) INTO lo, hi FROM events WHERE created_at < cutoff;
  WHILE lo <= hi LOOP
    DELETE FROM events WHERE id >= lo AND id < lo + 10000 AND created_at < cutoff;
    COMMIT;
    lo := lo + 10000;
  END LOOP;
END $$";

fn pgbench(cluster: &pg::Cluster, args: &[&str]) -> Command {
    let mut cmd = Command::new(bindir("pgbench").join("pgbench"));
    cmd.arg("-h")
        .arg(&cluster.socket_dir)
        .args(["-p", &cluster.port.to_string(), "-U", "postgres"])
        .args(args)
        .arg("postgres");
    cmd
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64
}

/// (latency µs incl. schedule lag, end time µs) of every transaction the
/// per-transaction logs under `dir` hold.
fn transactions(dir: &Path) -> Vec<(i64, i64)> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for l in text.lines() {
            // client_id transaction_no time script_no time_epoch time_us [schedule_lag]
            let f: Vec<i64> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            if f.len() >= 6 {
                let lag = f.get(6).copied().unwrap_or(0);
                out.push((f[2] + lag, f[4] * 1_000_000 + f[5]));
            }
        }
    }
    out
}

struct Figures {
    wall: Duration,
    tps: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

/// Runs pgbench at `rate` for `window` seconds and `purge` 5 s in; the
/// latency of the transactions that ended while the purge ran.
fn variant(cluster: &pg::Cluster, rate: u64, window: u64, purge: impl FnOnce()) -> Figures {
    let logs = tempfile::tempdir().expect("tempdir");
    let mut bench = pgbench(
        cluster,
        &[
            "-c",
            "4",
            "-j",
            "2",
            "-R",
            &rate.to_string(),
            "-T",
            &window.to_string(),
            "-l",
            &format!("--log-prefix={}/tx", logs.path().display()),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("pgbench");
    std::thread::sleep(Duration::from_secs(5));
    let (from, t0) = (now_us(), Instant::now());
    purge();
    let (to, wall) = (now_us(), t0.elapsed());
    let status = bench.wait().expect("pgbench");
    assert!(status.success(), "pgbench failed");
    assert!(
        wall.as_secs() + 5 < window,
        "the purge took {wall:?}, past pgbench's window: raise DBMAINT_BENCH_WINDOW"
    );
    let mut lat: Vec<i64> = transactions(logs.path())
        .into_iter()
        .filter(|(_, end)| (from..=to).contains(end))
        .map(|(l, _)| l)
        .collect();
    lat.sort_unstable();
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Figures {
        wall,
        tps: lat.len() as f64 / wall.as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
        max: lat.last().copied().unwrap_or(0) as f64 / 1000.0,
    }
}

fn dbmaint(url: &str, extra: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: impact\ntarget: \"{url}\"\nsteps:\n  purge:\n    retention: {{ table: events, column: created_at, older_than: {CUTOFF_DAYS} days{extra} }}\n"
        ),
    )
    .expect("plan");
    let out = Command::new(dbmaint_bin())
        .current_dir(dir.path())
        .env("XDG_STATE_HOME", dir.path())
        .args(["-q", "plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("dbmaint");
    assert!(
        out.status.success(),
        "dbmaint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    let rows = env_or("DBMAINT_BENCH_ROWS", 3_000_000);
    let window = env_or("DBMAINT_BENCH_WINDOW", 45);
    let cluster = pg::start_with("-c fsync=on");
    let url = cluster.url("postgres");
    let init = pgbench(&cluster, &["-i", "-q", "-s", "10"])
        .output()
        .expect("pgbench -i");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    psql(&url, LOOP);
    let max = pgbench(&cluster, &["-c", "4", "-j", "2", "-T", "10"])
        .output()
        .expect("pgbench");
    let text = String::from_utf8_lossy(&max.stdout).to_string();
    let tps: f64 = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no tps in: {text}"));
    let rate = (tps / 2.0).max(1.0) as u64;
    println!(
        "pgbench tpcb-like, 4 clients: {tps:.0} TPS unthrottled; each variant at {rate} TPS (-R), {rows} rows, a third purged, fsync on"
    );
    println!(
        "{:<44} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "variant", "purge s", "TPS", "p50 ms", "p99 ms", "max ms"
    );
    let show = |name: &str, f: &Figures| {
        println!(
            "{name:<44} {:>8.1} {:>8.0} {:>9.2} {:>9.2} {:>9.2}",
            f.wall.as_secs_f64(),
            f.tps,
            f.p50,
            f.p99,
            f.max
        )
    };
    rebuild(&url, rows);
    let quiet = variant(&cluster, rate, window, || std::thread::sleep(Duration::from_secs(15)));
    show("(i) no maintenance", &quiet);
    rebuild(&url, rows);
    let lp = variant(&cluster, rate, window, || {
        psql(&url, &format!("CALL purge_loop(now() - interval '{CUTOFF_DAYS} days')"))
    });
    show("(ii) pk-range loop (10,000, COMMIT each)", &lp);
    let mut ours = vec![];
    for (name, extra) in [
        ("(iii) dbmaint retention, defaults", ""),
        ("(iv) dbmaint retention, pause: 100ms", ", pause: 100ms"),
        (
            "(v) dbmaint retention, throttle",
            ", throttle: { max_active_sessions: 2, check_every: 50ms }",
        ),
    ] {
        rebuild(&url, rows);
        let f = variant(&cluster, rate, window, || dbmaint(&url, extra));
        show(name, &f);
        ours.push(f);
    }
    println!(
        "targets: (iii) p99 {:.2} ms ≤ (ii) p99 {:.2} ms: {}; (iv) p99 {:.2} ms ≤ 1.5 × (i) p99 {:.2} ms: {}",
        ours[0].p99,
        lp.p99,
        if ours[0].p99 <= lp.p99 { "met" } else { "NOT met" },
        ours[1].p99,
        1.5 * quiet.p99,
        if ours[1].p99 <= 1.5 * quiet.p99 {
            "met"
        } else {
            "NOT met"
        }
    );
}
