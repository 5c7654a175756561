//! Environment overlays and variable precedence:
//! plan < env overlay < `DBMAINT_VAR_*` < `--var`.

use std::path::Path;

use dbmaint::load;

use crate::support::{codes, options, options_for, place};

fn write_plan(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("env")).expect("env dir");
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: p\nvars:\n  days: 10\nsteps:\n  logs:\n    retention:\n      table: logs\n      column: created_at\n      older_than: \"{{ vars.days }} days\"\n  stats:\n    needs: [logs]\n    stats: {}\n",
    )
    .expect("plan");
    std::fs::write(dir.join("env/prod.yaml"), "vars:\n  days: 20\n").expect("overlay");
    plan
}

fn older_than_days(loaded: &dbmaint::Loaded) -> u64 {
    let plan = loaded
        .plan
        .as_ref()
        .unwrap_or_else(|| panic!("invalid: {:?}", loaded.diags));
    let json = serde_json::to_value(&plan.steps["logs"]).expect("json");
    let text = json["retention"]["older_than"]
        .as_str()
        .expect("older_than")
        .to_string();
    text.trim_end_matches('d').parse().expect("days")
}

#[test]
fn precedence_is_plan_then_overlay_then_env_var_then_cli_var() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write_plan(dir.path());

    let mut o = options();
    assert_eq!(older_than_days(&load(&plan, &o)), 10, "plan alone");

    o.env = Some("prod".into());
    assert_eq!(older_than_days(&load(&plan, &o)), 20, "overlay beats plan");

    o.process_env = vec![("DBMAINT_VAR_DAYS".into(), "30".into())];
    assert_eq!(older_than_days(&load(&plan, &o)), 30, "DBMAINT_VAR_ beats overlay");

    o.vars = vec!["days=40".into()];
    assert_eq!(older_than_days(&load(&plan, &o)), 40, "--var beats DBMAINT_VAR_");
}

#[test]
fn an_error_inside_an_overlay_points_into_the_overlay() {
    let path = Path::new("tests/fixtures/invalid/overlay-base.yaml");
    let loaded = load(path, &options_for(path));
    let (file, line, col) = place(&loaded, "invalid-value");
    assert_eq!(
        (file.as_str(), line, col),
        ("tests/fixtures/invalid/env/broken.yaml", 3, 30)
    );
}

#[test]
fn disabling_a_step_removes_it_and_a_need_on_it_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write_plan(dir.path());
    std::fs::write(
        dir.path().join("env/off.yaml"),
        "steps:\n  stats:\n    enabled: false\n",
    )
    .expect("overlay");
    let mut o = options();
    o.env = Some("off".into());
    let loaded = load(&plan, &o);
    let p = loaded.plan.as_ref().expect("valid");
    assert!(!p.steps.contains_key("stats"));
    assert_eq!(p.disabled, ["stats"]);

    let path = Path::new("tests/fixtures/invalid/needs-disabled.yaml");
    let loaded = load(path, &options_for(path));
    assert_eq!(codes(&loaded), ["needs-disabled"]);
    let d = &loaded.diags.items[0];
    assert!(d.message.contains("`dump`, which is disabled"), "{}", d.message);
    // The second label points at `enabled: false` in the overlay.
    let label = &d.secondary[0];
    assert_eq!(
        loaded.sources.get(label.file).name,
        "tests/fixtures/invalid/env/disable-dump.yaml"
    );
}

#[test]
fn an_overlay_may_add_steps_and_replace_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write_plan(dir.path());
    std::fs::write(
        dir.path().join("env/more.yaml"),
        "steps:\n  bloat:\n    bloat: {}\n  stats:\n    needs: [bloat]\n",
    )
    .expect("overlay");
    let mut o = options();
    o.env = Some("more".into());
    let loaded = load(&plan, &o);
    let p = loaded.plan.as_ref().expect("valid");
    assert_eq!(p.steps["stats"].needs, ["bloat"], "lists replace, they do not append");
    assert!(p.steps.contains_key("bloat"));
}

#[test]
fn unknown_environment_lists_the_known_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write_plan(dir.path());
    let mut o = options();
    o.env = Some("prd".into());
    let loaded = load(&plan, &o);
    assert_eq!(codes(&loaded), ["unknown-env"]);
    assert_eq!(
        loaded.diags.items[0].hint.as_deref(),
        Some("did you mean `--env prod`? environments: prod")
    );
}

#[test]
fn a_bad_cli_var_points_at_the_template_using_it() {
    let path = Path::new("tests/fixtures/invalid/var-override-wrong-type.yaml");
    let loaded = load(path, &options_for(path));
    assert_eq!(codes(&loaded), ["invalid-value"]);
    let (file, line, _) = place(&loaded, "invalid-value");
    assert_eq!(
        (file.as_str(), line),
        ("tests/fixtures/invalid/var-override-wrong-type.yaml", 11)
    );
}
