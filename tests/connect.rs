//! Connecting as production needs it, on real servers: TLS in every
//! `sslmode` that matters (against a cluster that refuses plain TCP), which
//! database a command reaches (`--target` > the plan > DATABASE_URL > the
//! libpq environment, service files) and says so in its header, a saved plan
//! bound to the database it was reviewed on, and a password with every
//! character a URL must escape reaching both dbmaint and `pg_dump`.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::cli::{dbmaint, rt};
use crate::support::cluster::{Cluster, ODD_SECRET, ODD_USER, TlsCluster, db_name};

fn plan(dir: &Path, target: Option<&str>, steps: &str) -> PathBuf {
    let target = target.map(|t| format!("target: \"{t}\"\n")).unwrap_or_default();
    let path = dir.join("plan.yaml");
    std::fs::write(&path, format!("version: 1\nname: conn\n{target}steps:\n{steps}")).expect("write plan");
    path
}

const STATS: &str = "  sizes:\n    stats: { top: 1 }\n";

fn diff(dir: &Path, plan: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = dbmaint(dir);
    for k in [
        "PGHOST",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGSERVICE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
    ] {
        c.env_remove(k);
    }
    c.envs(env.iter().copied())
        .args(["--output", "json", "plan", "diff"])
        .arg(plan)
        .args(extra)
        .output()
        .expect("run diff")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn all(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn postgres_tls_require_and_verify_full_connect_over_tls() {
    let tls = TlsCluster::get();
    let db = tls.fresh_db();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = tls.ca.display().to_string();
    for (host, query) in [
        ("127.0.0.1", "sslmode=require".to_string()),
        ("localhost", format!("sslmode=verify-full&sslrootcert={ca}")),
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={ca}")),
        // The default is libpq's `prefer`: TLS when the server offers it.
        ("127.0.0.1", String::new()),
        // `allow` tries clear text first; this server refuses it.
        ("127.0.0.1", "sslmode=allow".to_string()),
    ] {
        let p = plan(dir.path(), Some(&tls.url(host, &db, &query)), STATS);
        let v = json(&diff(dir.path(), &p, &[], &[]));
        let id = &v["identity"];
        assert!(
            id["tls"].as_str().is_some_and(|t| t.starts_with("TLSv1")),
            "{query}: not TLS: {id}"
        );
        assert_eq!(id["database"], db.as_str());
        assert_eq!(id["port"], tls.port);
    }
}

#[test]
fn postgres_verify_full_against_another_host_name_fails_with_one_clear_line() {
    let tls = TlsCluster::get();
    let db = tls.fresh_db();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = tls.ca.display().to_string();
    // The certificate names `localhost`, not 127.0.0.1.
    let p = plan(
        dir.path(),
        Some(&tls.url("127.0.0.1", &db, &format!("sslmode=verify-full&sslrootcert={ca}"))),
        STATS,
    );
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&p)
        .output()
        .expect("diff");
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not valid for the host name `127.0.0.1`"), "{stderr}");
    // Without the CA, verification names the missing CA instead.
    let p = plan(
        dir.path(),
        Some(&tls.url("localhost", &db, "sslmode=verify-full")),
        STATS,
    );
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&p)
        .output()
        .expect("diff");
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("sslrootcert"), "{}", all(&out));
}

#[test]
fn postgres_hostssl_only_server_refuses_sslmode_disable_clearly_and_pgsslmode_is_read() {
    let tls = TlsCluster::get();
    let db = tls.fresh_db();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(dir.path(), Some(&tls.url("127.0.0.1", &db, "sslmode=disable")), STATS);
    let out = diff(dir.path(), &p, &[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let text = all(&out);
    assert!(text.contains("no encryption"), "{text}");
    assert!(text.contains("use sslmode=require"), "{text}");
    // PGSSLMODE applies when the URL says nothing: disable is refused the
    // same way, and require connects.
    let p = plan(dir.path(), Some(&tls.url("127.0.0.1", &db, "")), STATS);
    let out = diff(dir.path(), &p, &[], &[("PGSSLMODE", "disable")]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("no encryption"), "{}", all(&out));
    let v = json(&diff(dir.path(), &p, &[], &[("PGSSLMODE", "require")]));
    assert_eq!(v["identity"]["sslmode"], "require");
}

#[test]
fn postgres_backup_with_restore_check_over_tls_with_an_odd_password() {
    let tls = TlsCluster::get();
    let db = tls.fresh_db();
    let rt = rt();
    rt.block_on(crate::support::cli::seed_pg(&tls.socket_url(&db)));
    let dir = tempfile::tempdir().expect("tempdir");
    let backups = dir.path().join("backups");
    // `+ @ : / % space`, percent-encoded where a URL needs it; `+` stays.
    let encoded = ODD_SECRET
        .replace('%', "%25")
        .replace('@', "%40")
        .replace(':', "%3A")
        .replace('/', "%2F")
        .replace(' ', "%20");
    let url = format!(
        "postgres://{ODD_USER}:{encoded}@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}",
        tls.port,
        tls.ca.display()
    );
    let p = plan(
        dir.path(),
        Some(&url),
        &format!(
            "  dump:\n    lock_timeout: 30s\n    backup: {{ dir: \"{}\", verify: {{ same_server: true }} }}\n",
            backups.display()
        ),
    );
    let out = dbmaint(dir.path())
        .args([
            "--output",
            "json",
            "plan",
            "apply",
            "--auto-approve",
            "--log-dir",
            "logs",
        ])
        .arg(&p)
        .output()
        .expect("apply");
    let text = all(&out);
    assert!(out.status.success(), "{text}");
    let logs: String = std::fs::read_dir(dir.path().join("logs"))
        .expect("logs")
        .flatten()
        .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
        .collect();
    assert!(logs.contains("restored and compared"), "{logs}");
    assert!(!logs.contains(ODD_SECRET), "password leaked into the logs");
    assert!(!text.contains(ODD_SECRET), "password leaked: {text}");
    let files = crate::support::cli::backup_files(&backups);
    assert_eq!(files.len(), 1, "one verified backup");
}

#[test]
fn target_flag_replaces_the_plans_target_and_the_header_says_so() {
    let c = Cluster::get();
    let rt = rt();
    let plan_db = rt.block_on(c.fresh_db());
    let other_db = rt.block_on(c.fresh_db());
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(dir.path(), Some(&plan_db), STATS);
    let v = json(&diff(dir.path(), &p, &["--target", &other_db], &[]));
    let other_name = db_name(&other_db);
    assert_eq!(v["identity"]["database"], other_name);
    let source = v["identity"]["source"].as_str().expect("source");
    assert!(source.starts_with("--target, replacing the plan's"), "{source}");
    // The text header says it too.
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&p)
        .args(["--target", &other_db])
        .output()
        .expect("diff");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("/{other_name}, TLS off (sslmode=disable), system ")),
        "{text}"
    );
    assert!(text.contains("target from --target, replacing the plan's"), "{text}");
    // Without --target the plan's own is used.
    let v = json(&diff(dir.path(), &p, &[], &[]));
    let plan_name = db_name(&plan_db);
    assert_eq!(v["identity"]["database"], plan_name);
    assert_eq!(v["identity"]["source"], "the plan's `target:`");
}

#[test]
fn saved_plan_is_refused_on_any_other_database() {
    let c = Cluster::get();
    let rt = rt();
    let reviewed = rt.block_on(c.fresh_db());
    let other = rt.block_on(c.fresh_db());
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(dir.path(), Some(&reviewed), STATS);
    let saved = dir.path().join("saved.json");
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&p)
        .arg("--out")
        .arg(&saved)
        .output()
        .expect("diff");
    assert!(out.status.success(), "{}", all(&out));
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve"])
        .arg(&saved)
        .args(["--target", &other])
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (r, o) = (db_name(&reviewed), db_name(&other));
    assert!(stderr.contains("saved plan is refused"), "{stderr}");
    assert!(stderr.contains(r) && stderr.contains(o), "names both: {stderr}");
    // Nothing ran there: no journal in the other database.
    let journal = rt.block_on(crate::support::cli::pg_count(
        &other,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbmaint'",
    ));
    assert_eq!(journal, 0);
    // On the reviewed database it applies.
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve"])
        .arg(&saved)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", all(&out));
}

#[test]
fn libpq_environment_and_service_files_name_the_database() {
    let c = Cluster::get();
    let rt = rt();
    let url = rt.block_on(c.fresh_db());
    let name = db_name(&url).to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = c.socket_dir.display().to_string();
    let port = c.port.to_string();
    // No target anywhere: PGHOST/PGPORT/PGDATABASE/PGUSER.
    let p = plan(dir.path(), None, STATS);
    let v = json(&diff(
        dir.path(),
        &p,
        &[],
        &[
            ("PGHOST", &socket),
            ("PGPORT", &port),
            ("PGDATABASE", &name),
            ("PGUSER", "postgres"),
        ],
    ));
    assert_eq!(v["identity"]["database"], name.as_str());
    assert_eq!(v["identity"]["source"], "the libpq environment (PG* variables)");
    // A service file, named by PGSERVICE and by `?service=`.
    let services = dir.path().join("services.conf");
    std::fs::write(
        &services,
        format!("[maint]\nhost={socket}\nport={port}\ndbname={name}\nuser=postgres\n"),
    )
    .expect("services");
    let sf = services.display().to_string();
    let v = json(&diff(
        dir.path(),
        &p,
        &[],
        &[("PGSERVICEFILE", &sf), ("PGSERVICE", "maint")],
    ));
    assert_eq!(v["identity"]["database"], name.as_str());
    let dir2 = tempfile::tempdir().expect("tempdir");
    let p2 = plan(dir2.path(), Some("postgres://?service=maint"), STATS);
    let v = json(&diff(dir.path(), &p2, &[], &[("PGSERVICEFILE", &sf)]));
    assert_eq!(v["identity"]["database"], name.as_str());
    // An unknown service is an error naming it, never a default database.
    let out = diff(dir.path(), &p, &[], &[("PGSERVICEFILE", &sf), ("PGSERVICE", "nope")]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("service `nope` is not defined"), "{}", all(&out));
    // history and inspect take the plan's target.
    let out = dbmaint(dir.path())
        .args(["inspect", "stats", "--plan"])
        .arg(&p2)
        .env("PGSERVICEFILE", &sf)
        .output()
        .expect("inspect");
    assert!(out.status.success(), "{}", all(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("/{name}")),
        "{}",
        all(&out)
    );
    let out = dbmaint(dir.path())
        .args(["history", "--plan"])
        .arg(&p2)
        .env("PGSERVICEFILE", &sf)
        .output()
        .expect("history");
    assert!(out.status.success(), "{}", all(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("target from the plan"),
        "{}",
        all(&out)
    );
}
