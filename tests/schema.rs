//! The committed JSON Schema is current, and every plan and example passes it.

use dbmaint::plan_schema_json;

const COMMITTED: &str = "schemas/plan.schema.json";

#[test]
fn committed_schema_is_up_to_date() {
    let fresh = plan_schema_json();
    if std::env::var_os("DBMAINT_BLESS").is_some() {
        std::fs::write(COMMITTED, &fresh).expect("write schema");
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == fresh,
        "{COMMITTED} is stale: run `cargo run -- schema > {COMMITTED}` (or DBMAINT_BLESS=1 cargo test) and commit it"
    );
}

#[test]
fn schema_is_draft_07() {
    let schema: serde_json::Value = serde_json::from_str(&plan_schema_json()).expect("json");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert!(schema["definitions"]["Retention"]["properties"]["older_than"].is_object());
    assert_eq!(schema["additionalProperties"], false);
}

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(&plan_schema_json()).expect("json");
    jsonschema::draft7::new(&schema).expect("schema compiles")
}

/// YAML → JSON through the engine's own loader, keeping values as written.
fn as_json(path: &std::path::Path) -> serde_json::Value {
    let mut sources = dbmaint::plan::source::Sources::new();
    let text = std::fs::read_to_string(path).expect("read");
    let id = sources.add(path.display().to_string(), &text);
    dbmaint::plan::yaml::parse(&sources, id).expect("yaml").to_json()
}

#[test]
fn every_plan_and_example_passes_the_schema() {
    let v = validator();
    let files = crate::support::yaml_files("plans")
        .into_iter()
        .chain(crate::support::yaml_files("examples"));
    for path in files {
        let doc = as_json(&path);
        let errors: Vec<String> = v
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
}

#[test]
fn schema_rejects_what_the_engine_rejects() {
    let v = validator();
    for (text, why) in [
        ("version: 1\nname: x\nsteps: {s: {vacum: {}}}", "unknown operation key"),
        (
            "version: 1\nname: x\nsteps: {s: {vacuum: {}, stats: {}}}",
            "two operations",
        ),
        (
            "version: 1\nname: x\nsteps: {s: {vacuum: {min_dead_ratio: 2}}}",
            "ratio over 1",
        ),
        (
            "version: 1\nname: x\nsteps: {s: {backup: {format: zip}}}",
            "unknown format",
        ),
        (
            "version: 1\nname: x\nsteps: {s: {retention: {table: t}}}",
            "missing column",
        ),
        ("version: 1\nname: x\nsteps: {S: {stats: {}}}", "bad step id"),
    ] {
        let mut sources = dbmaint::plan::source::Sources::new();
        let id = sources.add("t", text);
        let doc = dbmaint::plan::yaml::parse(&sources, id).expect("yaml").to_json();
        assert!(!v.is_valid(&doc), "schema accepted {why}");
    }
}
