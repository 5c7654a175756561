//! Fleets (issue 13 §2): one plan over an inventory of real databases,
//! each in its own child process with its own lock and journal, at most N
//! at once. One unreachable and one locked database never stop the others;
//! the summary names each, and the exit code is the worst of them.

use std::path::Path;

use crate::support::cli::{dbmaint, pg_count, retention_plan, rt, seed_pg};
use crate::support::cluster::{Cluster, connect};

/// `n` seeded databases on the test cluster.
fn seeded(n: usize) -> Vec<String> {
    let rt = rt();
    (0..n)
        .map(|_| {
            let url = rt.block_on(Cluster::get().fresh_db());
            rt.block_on(seed_pg(&url));
            url
        })
        .collect()
}

fn inventory(dir: &Path, entries: &[(&str, &str, &str)]) -> std::path::PathBuf {
    let mut text = "targets:\n".to_string();
    for (name, url, tier) in entries {
        text.push_str(&format!(
            "  {name}:\n    url: \"{url}\"\n    labels: {{ tier: {tier} }}\n"
        ));
    }
    let path = dir.join("targets.yaml");
    std::fs::write(&path, text).expect("inventory");
    path
}

const OLD_AUDIT: &str = "SELECT count(*) FROM core_audit_log WHERE created_at < now() - interval '90 days'";

#[test]
fn postgres_fleet_apply_goes_on_past_an_unreachable_and_a_locked_database() {
    let rt = rt();
    let urls = seeded(5);
    let dir = tempfile::tempdir().expect("tempdir");
    // The sixth target does not exist on the server.
    let db0 = crate::support::cluster::db_name(&urls[0]).to_string();
    let gone = urls[0].replace(&format!("/{db0}"), &format!("/{db0}_gone"));
    assert_ne!(gone, urls[0]);
    let mut entries: Vec<(String, String)> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| (format!("db{i}"), u.clone()))
        .collect();
    entries.push(("gone".into(), gone));
    let inv = inventory(
        dir.path(),
        &entries
            .iter()
            .map(|(n, u)| (n.as_str(), u.as_str(), "prod"))
            .collect::<Vec<_>>(),
    );
    // The plan's own target is never used: each child gets its target.
    let plan = retention_plan(dir.path(), "postgres://nobody@127.0.0.1:1/none", "");
    let before: Vec<i64> = urls.iter().map(|u| rt.block_on(pg_count(u, OLD_AUDIT))).collect();
    assert!(before.iter().all(|n| *n > 0), "{before:?}");
    // Another apply holds db3's lock.
    let mut holder = rt.block_on(connect(&urls[3]));
    rt.block_on(
        sqlx::query("SELECT pg_advisory_lock($1, 0)")
            .bind(dbmaint::db::pg::LOCK_CLASS)
            .execute(&mut holder),
    )
    .expect("lock");
    let out = dbmaint(dir.path())
        .args([
            "--output",
            "json",
            "plan",
            "apply",
            "--auto-approve",
            "--fleet-parallelism",
            "3",
            "--targets",
        ])
        .arg(&inv)
        .arg(&plan)
        .output()
        .expect("fleet apply");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "one JSON document: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        out.status.code(),
        Some(1),
        "the worst: an unreachable database (1) over a locked one (4): {v}"
    );
    assert_eq!(v["exit_code"], 1);
    let by_name = |n: &str| {
        v["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .find(|t| t["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no {n} in {v}"))
    };
    for (i, url) in urls.iter().enumerate() {
        let t = by_name(&format!("db{i}"));
        if i == 3 {
            assert_eq!(t["exit_code"], 4, "{t}");
            assert_eq!(
                rt.block_on(pg_count(url, OLD_AUDIT)),
                before[3],
                "the locked database is untouched"
            );
        } else {
            assert_eq!(t["exit_code"], 0, "{t}");
            assert_eq!(t["status"], "succeeded");
            assert!(t["rows"].as_u64().unwrap_or(0) >= before[i] as u64, "{t}");
            assert_eq!(rt.block_on(pg_count(url, OLD_AUDIT)), 0, "db{i}'s old rows are gone");
        }
    }
    let g = by_name("gone");
    assert_eq!(g["exit_code"], 1);
    assert!(g["error"].as_str().unwrap_or("").contains("does not exist"), "{g}");
    // Each target journaled its own run, in its own database.
    assert_eq!(rt.block_on(pg_count(&urls[0], "SELECT count(*) FROM dbmaint.runs")), 1);
    // The text summary of a fleet diff, one target selected by name.
    let text_run = dbmaint(dir.path())
        .args(["plan", "diff", "--select", "name=db1", "--targets"])
        .arg(&inv)
        .arg(&plan)
        .output()
        .expect("fleet diff");
    assert_eq!(
        text_run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&text_run.stderr)
    );
    let summary = String::from_utf8_lossy(&text_run.stdout);
    assert!(
        summary.contains("target") && summary.contains("db1") && summary.contains("exit code 0"),
        "{summary}"
    );
}

#[test]
fn target_index_runs_the_nth_selected_target_in_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut entries = vec![];
    for name in ["a", "b", "c", "d"] {
        crate::support::test::sqlite(
            &dir.path().join(format!("{name}.db")),
            "CREATE TABLE t (id INTEGER PRIMARY KEY)",
        );
        entries.push((
            name,
            format!("sqlite:{name}.db"),
            if name == "b" { "dev" } else { "prod" },
        ));
    }
    let inv = inventory(
        dir.path(),
        &entries.iter().map(|(n, u, t)| (*n, u.as_str(), *t)).collect::<Vec<_>>(),
    );
    let plan = dir.path().join("p.yaml");
    std::fs::write(&plan, "version: 1\nname: p\nsteps:\n  a:\n    analyze: {}\n").expect("plan");
    let database = |index: &str, select: &[&str]| {
        let mut c = dbmaint(dir.path());
        c.args(["--output", "json", "plan", "diff", "--target-index", index, "--targets"])
            .arg(&inv)
            .arg(&plan);
        for s in select {
            c.args(["--select", s]);
        }
        let out = c.output().expect("diff");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (
            out.status.code(),
            v["identity"]["database"].as_str().unwrap_or("").to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
        let (code, db, err) = database(&i.to_string(), &[]);
        assert_eq!(code, Some(0), "{err}");
        assert!(db.ends_with(&format!("/{name}.db")), "index {i} is {name}: {db}");
    }
    // Indexes count within the selection: the second prod target is c.
    let (_, db, _) = database("1", &["tier=prod"]);
    assert!(db.ends_with("/c.db"), "{db}");
    let (code, _, err) = database("3", &["tier=prod"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("the selection has 3 targets (0 … 2)"), "{err}");
}
