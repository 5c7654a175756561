//! The CI example (issue 13 §5): `examples/ci/github-actions.yml` is a
//! valid GitHub Actions workflow by SchemaStore's schema (vendored under
//! tests/fixtures/vendor/), and the dbmaint commands it runs exist with the
//! flags it passes.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn github_actions_example_is_a_valid_workflow() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/vendor/github-workflow.schema.json")).expect("schema"),
    )
    .expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("a usable schema");
    let text = std::fs::read_to_string(root().join("examples/ci/github-actions.yml")).expect("workflow");
    let workflow: serde_json::Value = serde_saphyr::from_str(&text).expect("YAML");
    let errors: Vec<String> = validator
        .iter_errors(&workflow)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The schema is real: a job without `runs-on` is refused.
    let mut broken = workflow.clone();
    broken["jobs"]["nightly"]
        .as_object_mut()
        .expect("a job")
        .remove("runs-on");
    assert!(!validator.is_valid(&broken), "a job needs runs-on");
}

#[test]
fn the_example_calls_dbmaint_as_it_exists() {
    let text = std::fs::read_to_string(root().join("examples/ci/github-actions.yml")).expect("workflow");
    for flags in [
        &["plan", "validate", "--help"][..],
        &["plan", "diff", "--help"],
        &["plan", "apply", "--help"],
    ] {
        let out = assert_cmd::Command::cargo_bin("dbmaint")
            .expect("binary")
            .args(flags)
            .output()
            .expect("help");
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        let command = flags[1];
        // Every `--flag` the example passes to this command (on its line
        // and the folded lines after it) is in its help.
        let lines: Vec<&str> = text.lines().collect();
        let mut seen = 0;
        for (i, line) in lines.iter().enumerate() {
            if !line.contains(&format!("dbmaint plan {command}")) {
                continue;
            }
            seen += 1;
            let folded = lines[i + 1..].iter().take_while(|l| l.trim_start().starts_with("--"));
            for flag in std::iter::once(line)
                .chain(folded)
                .flat_map(|l| l.split_whitespace())
                .filter(|w| w.starts_with("--"))
            {
                assert!(
                    help.contains(flag),
                    "`{flag}` near `{line}` is not a flag of `plan {command}`"
                );
            }
        }
        assert!(seen > 0, "the example runs `dbmaint plan {command}`");
    }
}
