//! The sample plans and examples: each validates, with each overlay, and
//! `plan show` prints an effective plan that loads back to the same hash.

use std::path::{Path, PathBuf};

use crate::support::yaml_files;

use dbmaint::load;

use crate::support::options;

#[test]
fn every_sample_plan_and_example_is_valid_without_warnings() {
    let files: Vec<PathBuf> = yaml_files("plans").into_iter().chain(yaml_files("examples")).collect();
    assert!(files.len() >= 15, "{files:?}");
    for path in files {
        let loaded = load(&path, &options());
        assert!(
            loaded.is_valid(),
            "{}:\n{}",
            path.display(),
            crate::support::rendered(&loaded)
        );
        assert!(
            loaded.diags.items.is_empty(),
            "{}:\n{}",
            path.display(),
            crate::support::rendered(&loaded)
        );
    }
}

#[test]
fn django_plan_validates_in_each_environment_and_they_differ() {
    let plan = Path::new("plans/django-nightly.yaml");
    let mut hashes = Vec::new();
    for env in [None, Some("staging"), Some("prod")] {
        let mut o = options();
        o.env = env.map(str::to_string);
        let loaded = load(plan, &o);
        let p = loaded
            .plan
            .as_ref()
            .unwrap_or_else(|| panic!("{env:?}: {}", crate::support::rendered(&loaded)));
        hashes.push(p.hash());
        let days = serde_json::to_value(&p.steps["audit-logs"]).expect("json")["retention"]["older_than"].clone();
        let expected = match env {
            None => "90d",
            Some("staging") => "30d",
            _ => "180d",
        };
        assert_eq!(days, expected, "{env:?}");
    }
    hashes.dedup();
    assert_eq!(hashes.len(), 3, "each environment changes the plan");
}

#[test]
fn every_plan_starts_with_the_schema_modeline() {
    for path in yaml_files("plans").into_iter().chain(yaml_files("examples")) {
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text.lines().next(),
            Some(dbmaint::plan::schema::MODELINE),
            "{}",
            path.display()
        );
    }
}

#[test]
fn shown_yaml_loads_back_to_the_same_plan() {
    for path in yaml_files("plans") {
        let loaded = load(&path, &options());
        let plan = loaded.plan.as_ref().expect("valid");
        let shown = dbmaint::plan::effective_yaml(plan);
        let again = dbmaint::load_str("shown.yaml", &shown, &options());
        let p2 = again
            .plan
            .as_ref()
            .unwrap_or_else(|| panic!("{}:\n{shown}\n{}", path.display(), crate::support::rendered(&again)));
        assert_eq!(p2.hash(), plan.hash(), "{}:\n{shown}", path.display());
    }
}
