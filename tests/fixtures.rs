//! Every invalid fixture renders the diagnostics its snapshot shows, and is
//! invalid; a few also snapshot the JSON form.

use std::path::{Path, PathBuf};

use dbmaint::load;
use dbmaint::plan::diag::to_json;

use crate::support::{codes, options_for, rendered};

fn fixtures() -> Vec<PathBuf> {
    crate::support::yaml_files("tests/fixtures/invalid")
}

#[test]
fn there_are_at_least_thirty_invalid_fixtures() {
    assert!(fixtures().len() >= 30, "only {} fixtures", fixtures().len());
}

#[test]
fn every_invalid_fixture_renders_its_snapshot() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("fixtures/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for path in fixtures() {
            let loaded = load(&path, &options_for(&path));
            assert!(!loaded.is_valid(), "{} should be invalid", path.display());
            assert!(loaded.diags.has_errors(), "{} reports no error", path.display());
            let name = path.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
            insta::assert_snapshot!(name, rendered(&loaded));
        }
    });
}

#[test]
fn json_form_of_a_few_fixtures() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("fixtures/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for name in ["many-problems", "cycle", "template-undefined"] {
            let path = Path::new("tests/fixtures/invalid").join(format!("{name}.yaml"));
            let loaded = load(&path, &options_for(&path));
            insta::assert_json_snapshot!(format!("{name}.json"), to_json(&loaded.diags, &loaded.sources));
        }
    });
}

#[test]
fn many_problems_are_all_reported_in_one_pass() {
    let path = Path::new("tests/fixtures/invalid/many-problems.yaml");
    let loaded = load(path, &options_for(path));
    let mut got = codes(&loaded);
    got.sort_unstable();
    assert_eq!(got, ["cycle", "invalid-value", "unknown-key", "unknown-need"]);
}

#[test]
fn a_password_in_the_target_is_never_echoed() {
    let path = Path::new("tests/fixtures/invalid/target-with-password.yaml");
    let loaded = load(path, &options_for(path));
    let text = rendered(&loaded);
    let json = serde_json::to_string(&to_json(&loaded.diags, &loaded.sources)).expect("json");
    assert!(text.contains("invalid-value"), "{text}");
    assert!(!text.contains("hunter2") && !json.contains("hunter2"), "{text}\n{json}");
}

#[test]
fn a_password_in_restore_to_is_refused_and_never_echoed() {
    let path = Path::new("tests/fixtures/invalid/restore-to-with-password.yaml");
    let loaded = load(path, &options_for(path));
    let text = rendered(&loaded);
    let json = serde_json::to_string(&to_json(&loaded.diags, &loaded.sources)).expect("json");
    assert_eq!(codes(&loaded), ["password-in-plan"]);
    assert!(!text.contains("hunter3") && !json.contains("hunter3"), "{text}\n{json}");
}

#[test]
fn oversized_plan_file_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.yaml");
    let mut text = String::from("version: 1\nname: huge\nsteps: {s: {stats: {}}}\n");
    text.push_str(&"# padding padding padding padding padding padding\n".repeat(220_000));
    std::fs::write(&path, text).expect("write");
    let loaded = load(&path, &crate::support::options());
    assert_eq!(codes(&loaded), ["file-too-large"]);
}

#[test]
fn missing_plan_file_names_the_path() {
    let loaded = load(
        Path::new("tests/fixtures/no-such-plan.yaml"),
        &crate::support::options(),
    );
    assert_eq!(codes(&loaded), ["io"]);
    assert!(
        loaded.diags.items[0]
            .message
            .contains("tests/fixtures/no-such-plan.yaml")
    );
}
