//! The real binary: exit codes, stdout/stderr discipline, JSON output.

use assert_cmd::Command;

fn dbmaint() -> Command {
    let mut c = Command::cargo_bin("dbmaint").expect("binary");
    c.env_remove("DATABASE_URL").env("NO_COLOR", "1");
    c
}

#[test]
fn validate_exits_0_for_a_valid_plan_and_1_for_an_invalid_one() {
    dbmaint()
        .args(["plan", "validate", "plans/django-nightly.yaml"])
        .assert()
        .code(0);
    let out = dbmaint()
        .args(["plan", "validate", "tests/fixtures/invalid/cycle.yaml"])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("error[cycle]"), "{stderr}");
    assert!(
        stderr.contains("--> tests/fixtures/invalid/cycle.yaml:5:13"),
        "{stderr}"
    );
    assert!(out.get_output().stdout.is_empty(), "diagnostics go to stderr");
}

#[test]
fn validate_json_is_one_document_on_stdout() {
    let out = dbmaint()
        .args([
            "plan",
            "validate",
            "tests/fixtures/invalid/unknown-need.yaml",
            "--output",
            "json",
        ])
        .assert()
        .code(1);
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("one JSON document");
    assert_eq!(v["valid"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "unknown-need");
    assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(7), Some(13)));
    assert_eq!(d["hint"], "did you mean `dump`?");
    assert_eq!(d["severity"], "error");
}

#[test]
fn show_prints_the_effective_plan_and_graphs() {
    let out = dbmaint()
        .args(["plan", "show", "plans/django-nightly.yaml", "--env", "prod"])
        .assert()
        .code(0);
    let yaml = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(yaml.contains("older_than: 180d"), "{yaml}");
    assert!(
        yaml.contains("target: postgres://maint@db-prod.internal:5432/app"),
        "{yaml}"
    );

    let out = dbmaint()
        .args(["plan", "show", "plans/django-nightly.yaml", "--format", "json"])
        .assert()
        .code(0);
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("json");
    assert_eq!(v["levels"][0], serde_json::json!(["dump"]));
    assert_eq!(v["hash"].as_str().map(str::len), Some(64));

    let out = dbmaint()
        .args(["plan", "show", "plans/django-nightly.yaml", "--format", "dot"])
        .assert()
        .code(0);
    let dot = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        dot.starts_with("digraph") && dot.contains("\"vacuum\" -> \"reindex\";"),
        "{dot}"
    );

    let out = dbmaint()
        .args(["plan", "show", "plans/django-nightly.yaml", "--format", "mermaid"])
        .assert()
        .code(0);
    let mm = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        mm.starts_with("flowchart LR") && mm.contains("vacuum --> reindex"),
        "{mm}"
    );
}

#[test]
fn var_and_target_flags_reach_the_plan() {
    let out = dbmaint()
        .args([
            "plan",
            "show",
            "plans/django-nightly.yaml",
            "--var",
            "audit_log_days=14",
            "--format",
            "json",
        ])
        .env("DBMAINT_VAR_AUDIT_LOG_DAYS", "21")
        .assert()
        .code(0);
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("json");
    assert_eq!(v["steps"]["audit-logs"]["retention"]["older_than"], "2w");
}

#[test]
fn a_password_given_on_the_command_line_is_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("p.yaml");
    std::fs::write(&plan, "version: 1\nname: p\nsteps:\n  s:\n    stats: {}\n").expect("plan");
    let out = dbmaint()
        .args([
            "plan",
            "show",
            "--format",
            "json",
            "--target",
            "postgres://u:s3cr3t@h/db",
        ])
        .arg(&plan)
        .assert()
        .code(0);
    let all = [out.get_output().stdout.clone(), out.get_output().stderr.clone()].concat();
    let text = String::from_utf8_lossy(&all);
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(text.contains("postgres://u:****@h/db"), "{text}");
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let out = dbmaint().arg("schema").assert().code(0);
    let committed = std::fs::read("schemas/plan.schema.json").expect("committed schema");
    assert_eq!(out.get_output().stdout, committed);
}

#[test]
fn completions_are_generated() {
    let out = dbmaint().args(["completions", "bash"]).assert().code(0);
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("dbmaint"));
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_sigpipe_status() {
    // The reader is gone before dbmaint writes a byte: every write fails
    // with EPIPE, as under `dbmaint … | head -1` once head has exited.
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("dbmaint"))
        .args(["plan", "show", "plans/django-nightly.yaml", "--format", "json"])
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn oversized_or_endless_plan_inputs_stop_at_the_limit_and_a_directory_is_refused() {
    for path in ["/dev/zero", "/dev/urandom"] {
        let out = dbmaint().args(["plan", "validate", path]).output().expect("run");
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("over the 10 MiB limit"), "{path}: {stderr}");
    }
    // Standard input fed forever.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("dbmaint"))
        .args(["plan", "validate", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        let chunk = "# comment line\n".repeat(4096);
        // Stops when dbmaint closes its end.
        while std::io::Write::write_all(&mut stdin, chunk.as_bytes()).is_ok() {}
    });
    let out = child.wait_with_output().expect("wait");
    feeder.join().expect("feeder");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("over the 10 MiB limit"));
    let out = dbmaint().args(["plan", "validate", "plans"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
}

#[test]
fn a_second_yaml_document_and_a_huge_line_get_clear_bounded_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let two = dir.path().join("two.yaml");
    std::fs::write(&two, "version: 1\nname: a\nsteps: {s: {stats: {}}}\n---\nversion: 1\n").expect("write");
    let out = dbmaint().args(["plan", "validate"]).arg(&two).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a plan file holds one YAML document"), "{stderr}");
    assert!(!stderr.contains("alias bomb"), "{stderr}");
    let long = dir.path().join("long.yaml");
    let value = "x".repeat(5 * 1024 * 1024);
    std::fs::write(
        &long,
        format!("version: 1\nname: a\nsteps: {{s: {{stats: {{top: {value}}}}}}}\n"),
    )
    .expect("write");
    let out = dbmaint().args(["plan", "validate"]).arg(&long).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.len() < 4096, "{} bytes of error output", out.stderr.len());
    assert!(String::from_utf8_lossy(&out.stderr).contains('…'));
}

#[test]
fn man_pages_cover_every_command_and_groff_reads_them_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("dbmaint"))
        .args(["man", "--out-dir"])
        .arg(dir.path())
        .output()
        .expect("man");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for page in [
        "dbmaint.1",
        "dbmaint-plan-apply.1",
        "dbmaint-schedule-export.1",
        "dbmaint-history.1",
        "dbmaint-inspect.1",
    ] {
        let path = dir.path().join(page);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH "), "{page} is a man page");
        // groff as man runs it (UTF-8 input), every warning on, output
        // discarded: only its complaints remain.
        let groff = std::process::Command::new("groff")
            .args(["-K", "utf8", "-man", "-ww", "-z"])
            .arg(&path)
            .output();
        match groff {
            Ok(g) => assert!(
                g.status.success() && g.stderr.is_empty(),
                "{page}: {}",
                String::from_utf8_lossy(&g.stderr)
            ),
            Err(_) => assert!(
                std::env::var_os("CI").is_none(),
                "groff is missing; .ci/run installs it"
            ),
        }
    }
    let apply = std::fs::read_to_string(dir.path().join("dbmaint-plan-apply.1")).expect("page");
    assert!(
        apply.contains("metrics\\-file") && apply.contains("Examples:"),
        "flags and examples are in the page"
    );
}
