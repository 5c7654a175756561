//! Least privilege, said up front: `dbmaint grants PLAN` prints what the
//! plan's role lacks, the diff names it per step before apply, and after
//! an administrator runs the printed statements the plan applies.

use crate::support::cluster::{Cluster, admin_statements, role_url};
use crate::support::test::Test;

#[test]
fn grants_prints_what_a_bare_role_lacks_and_running_it_makes_the_plan_apply() {
    let t = Test::new();
    let url = crate::support::cli::rt().block_on(Cluster::get().fresh_db());
    admin_statements(
        &url,
        &[
            "CREATE TABLE events (id int PRIMARY KEY, created_at timestamptz NOT NULL)".into(),
            "INSERT INTO events SELECT g, now() - g * interval '1 day' FROM generate_series(1, 400) g".into(),
        ],
    );
    let as_maint = role_url(&url, "gr", |role, db| {
        vec![
            format!("CREATE ROLE {role} LOGIN"),
            format!("GRANT CONNECT ON DATABASE {db} TO {role}"),
        ]
    });
    let plan = t.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: least\ntarget: \"{as_maint}\"\nsteps:\n  old-events:\n    retention: {{ table: events, column: created_at, older_than: 30 days }}\n  tidy:\n    needs: [old-events]\n    vacuum: {{ tables: [events], min_dead_ratio: 0 }}\n  watch:\n    check: {{ checks: [long_queries] }}\n"
        ),
    )
    .expect("plan");
    let grants = |json: bool| {
        let mut cmd = crate::support::cli::dbmaint(t.path());
        if json {
            cmd.args(["--output", "json"]);
        }
        let out = cmd.arg("grants").arg(&plan).output().expect("grants");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let listed: serde_json::Value = serde_json::from_str(&grants(true)).expect("json");
    let missing: Vec<String> = listed["privileges"]
        .as_array()
        .expect("privileges")
        .iter()
        .filter(|p| p["held"] == false)
        .map(|p| p["what"].as_str().unwrap_or_default().to_string())
        .collect();
    for want in [
        "CREATE on database",
        "SELECT, DELETE on table events",
        "own table events",
        "pg_read_all_stats",
    ] {
        assert!(missing.iter().any(|m| m.contains(want)), "{want} not in {missing:?}");
    }
    // The diff names them per step, before anything runs.
    let diff = t.diff(&plan);
    let text = diff.json.to_string();
    assert!(text.contains("the plan's role lacks own table events"), "{text}");
    assert!(!t.apply(&plan).success(), "without the grants apply cannot run");

    // An administrator runs exactly the statements printed.
    let script: Vec<String> = grants(false)
        .lines()
        .filter(|l| !l.starts_with("--") && !l.trim().is_empty())
        .map(String::from)
        .collect();
    assert!(!script.is_empty(), "statements to run");
    admin_statements(&url, &script);
    let again: serde_json::Value = serde_json::from_str(&grants(true)).expect("json");
    assert_eq!(again["missing"], 0, "{again}");
    let diff = t.diff(&plan);
    assert!(!diff.json.to_string().contains("lacks"), "{}", diff.json);
    let ran = t.apply_json(&plan);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    let left = crate::support::cli::rt().block_on(crate::support::cli::pg_count(
        &url,
        "SELECT count(*) FROM events WHERE created_at < now() - interval '30 days 1 minute'",
    ));
    assert_eq!(left, 0, "the retention ran as the maintenance role");
}
