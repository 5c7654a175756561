//! `check` with `cancel`/`terminate` signals only what it may and what a
//! signal helps: per-session privileges, idle-in-transaction sessions,
//! sessions a cancel already ended, and others' sessions that merely share
//! dbmaint's name prefix.

use std::io::Write;
use std::process::{Child, Command, Stdio};

use crate::support::cluster::{Cluster, admin_statements, db_name, role_url};
use crate::support::test::Test;

fn scalar(url: &str, sql: &str) -> String {
    crate::support::cli::psql_scalar(url, sql)
}

/// A psql session named `app` on `url`, fed `script` and kept open (its
/// stdin stays open until the child is killed or dropped).
fn session(url: &str, app: &str, script: &str) -> Child {
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-d", url])
        .env("PGAPPNAME", app)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql session");
    child
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("feed psql");
    child
}

/// Waits until the session named `app` is in `state`; returns its pid.
fn wait_for(url: &str, app: &str, state: &str) -> String {
    let sql = format!(
        "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE application_name = '{app}' AND state = '{state}'"
    );
    crate::support::cli::poll_pid(url, &sql, &format!("{app} never reached `{state}`"))
}

fn state_of(url: &str, pid: &str) -> String {
    scalar(
        url,
        &format!("SELECT coalesce(max(state), 'gone') FROM pg_stat_activity WHERE pid = {pid}"),
    )
}

fn check_plan(t: &Test, target: &str, params: &str) -> std::path::PathBuf {
    let path = t.path().join("plan.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: sig\ntarget: \"{target}\"\nsteps:\n  long:\n    check: {{ checks: [long_queries], max_query_age: 1ms, {params} }}\n"
        ),
    )
    .expect("plan");
    path
}

struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_non_superuser_cancels_what_it_may_and_lists_the_superusers_query_as_not_allowed() {
    let t = Test::new();
    let url = crate::support::cli::rt().block_on(Cluster::get().fresh_db());
    let db = db_name(&url).to_string();
    let as_maint = role_url(&url, "sig", |role, db| {
        vec![
            format!("CREATE ROLE {role} LOGIN IN ROLE pg_signal_backend, pg_read_all_stats"),
            format!("CREATE ROLE app_{db} LOGIN"),
            format!("GRANT CONNECT, CREATE ON DATABASE {db} TO {role}"),
            format!("GRANT CONNECT ON DATABASE {db} TO app_{db}"),
        ]
    });
    let as_app = url.replacen("postgres://postgres@", &format!("postgres://app_{db}@"), 1);
    let mut sessions = Killed(vec![
        session(&url, &format!("super_{db}"), "SELECT pg_sleep(120);\n"),
        session(&as_app, &format!("app_{db}"), "SELECT pg_sleep(120);\n"),
    ]);
    let super_pid = wait_for(&url, &format!("super_{db}"), "active");
    let app_pid = wait_for(&url, &format!("app_{db}"), "active");
    let plan = check_plan(&t, &as_maint, "cancel: true");
    let diff = t.diff(&plan);
    let text = diff.json.to_string();
    assert!(
        text.contains(&format!("pid {super_pid}")) && text.contains("not allowed"),
        "{text}"
    );
    let ran = t.apply_json(&plan);
    assert_eq!(
        ran.code,
        Some(0),
        "the step does not fail: {}\n{}",
        ran.stdout,
        ran.stderr
    );
    assert_eq!(state_of(&url, &app_pid), "idle", "the app's query was cancelled");
    assert_eq!(state_of(&url, &super_pid), "active", "the superuser's was left alone");
    let _ = sessions.0[1].wait();
    drop(sessions);
}

#[test]
fn a_query_cancelled_inside_begin_is_not_terminated_after_the_grace() {
    let t = Test::new();
    let url = crate::support::cli::rt().block_on(Cluster::get().fresh_db());
    let app = format!("tx_{}", db_name(&url));
    let _s = Killed(vec![session(&url, &app, "BEGIN;\nSELECT pg_sleep(120);\n")]);
    let pid = wait_for(&url, &app, "active");
    let plan = check_plan(&t, &url, "cancel: true, terminate: true, grace: 1s");
    let ran = t.apply_json(&plan);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(
        state_of(&url, &pid),
        "idle in transaction (aborted)",
        "cancelled, its query gone: counted as cancelled, not terminated"
    );
    let said = ran.report.to_string();
    assert!(said.contains("cancelled") && !said.contains("terminated"), "{said}");
}

#[test]
fn an_idle_in_transaction_lock_holder_is_reported_and_ended_only_by_terminate() {
    let t = Test::new();
    let url = crate::support::cli::rt().block_on(Cluster::get().fresh_db());
    admin_statements(&url, &["CREATE TABLE held (id int)".into()]);
    let app = format!("holder_{}", db_name(&url));
    let _s = Killed(vec![session(
        &url,
        &app,
        "BEGIN;\nLOCK TABLE held IN ACCESS EXCLUSIVE MODE;\n",
    )]);
    let pid = wait_for(&url, &app, "idle in transaction");
    let cancel_only = check_plan(&t, &url, "cancel: true");
    let diff = t.diff(&cancel_only);
    let text = diff.json.to_string();
    assert!(
        text.contains("idle in transaction for") && text.contains("AccessExclusiveLock on held"),
        "reported with its lock: {text}"
    );
    assert!(text.contains("a cancel does nothing to an idle transaction"), "{text}");
    let ran = t.apply_json(&cancel_only);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        state_of(&url, &pid),
        "idle in transaction",
        "a cancel-only run leaves it"
    );

    let terminate = check_plan(&t, &url, "cancel: true, terminate: true, grace: 1s");
    let ran = t.apply_json(&terminate);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(state_of(&url, &pid), "gone", "terminate ends it");
}

#[test]
fn a_session_merely_named_like_dbmaint_is_somebody_elses() {
    let t = Test::new();
    let url = crate::support::cli::rt().block_on(Cluster::get().fresh_db());
    let db = db_name(&url).to_string();
    // Another job's session, and one that even calls itself `dbmaint`:
    // dbmaint knows its own sessions by pid, not by name.
    let _s = Killed(vec![
        session(&url, "dbmaintenance_reporting", "SELECT pg_sleep(120);\n"),
        session(&url, "dbmaint", &format!("SELECT pg_sleep(120) /* {db} */;\n")),
    ]);
    let reporting = wait_for(&url, "dbmaintenance_reporting", "active");
    let sql = format!(
        "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE application_name = 'dbmaint' AND datname = '{db}' AND state = 'active'"
    );
    let impostor = crate::support::cli::poll_pid(&url, &sql, "the session named dbmaint never started");
    let ran = t.apply_json(&check_plan(&t, &url, "cancel: true"));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(state_of(&url, &reporting), "idle", "its query was cancelled");
    assert_eq!(state_of(&url, &impostor), "idle", "a name is not a pid: cancelled too");
}

#[test]
fn an_applys_own_running_statement_is_never_cancelled_by_its_check() {
    // Two steps run in parallel: one sleeps 2 s; the other waits 0.5 s and
    // then a check cancels every query older than 100 ms. dbmaint's own
    // sleeping session is older than that and must be left alone (known by
    // pid); another program's query of the same age is cancelled.
    let t = Test::new();
    let url = crate::support::cli::rt().block_on(Cluster::get().fresh_db());
    let _s = Killed(vec![session(&url, "reporting", "SELECT pg_sleep(120);\n")]);
    let other = wait_for(&url, "reporting", "active");
    // Older than max_query_age when the apply's own diff lists what it may
    // signal (apply signals only sessions its diff listed).
    crate::support::cli::poll_until("the other query never aged", 10, || {
        (scalar(
            &url,
            &format!("SELECT now() - query_start > interval '300 ms' FROM pg_stat_activity WHERE pid = {other}"),
        ) == "t")
            .then_some(())
    });
    let path = t.path().join("plan.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: own\ntarget: \"{url}\"\nsteps:\n  slow:\n    sql: {{ sql: \"SELECT pg_sleep(2)\" }}\n  \
             wait:\n    sql: {{ sql: \"SELECT pg_sleep(0.5)\" }}\n  long:\n    needs: [wait]\n    \
             check: {{ checks: [long_queries], max_query_age: 100ms, cancel: true }}\n"
        ),
    )
    .expect("plan");
    let ran = t.apply_json(&path);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    let steps = ran.report["steps"].as_array().expect("steps");
    let slow = steps.iter().find(|s| s["id"] == "slow").expect("slow");
    assert_eq!(
        slow["status"], "succeeded",
        "dbmaint's own query ran to its end: {slow}"
    );
    assert!(slow["duration_ms"].as_u64().is_some_and(|d| d >= 2000), "{slow}");
    let long = steps.iter().find(|s| s["id"] == "long").expect("long");
    let said = long.to_string();
    // Found at apply: the other program's query, and only it — not the
    // apply's own 2-second statement, running for 0.5 s by then.
    let found: Vec<&str> = long["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["object"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(found, vec![format!("pid {other}")], "{said}");
    assert_eq!(state_of(&url, &other), "idle", "and cancelled: {said}");
}
