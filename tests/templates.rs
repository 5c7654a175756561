//! Templates: rendering, strict undefined with position, wrong types.

use dbmaint::load_str;

use crate::support::{codes, options, place};

const PLAN: &str = "version: 1\nname: t\nvars:\n  days: 90\n  table: core_audit_log\nsteps:\n  logs:\n    retention:\n      table: \"{{ vars.table }}\"\n      column: created_at\n      older_than: \"{{ vars.days }} days\"\n      batch_size: \"{{ vars.days * 100 }}\"\n";

#[test]
fn templates_render_and_parse_as_their_field_type() {
    let loaded = load_str("t.yaml", PLAN, &options());
    let plan = loaded.plan.as_ref().unwrap_or_else(|| panic!("{:?}", loaded.diags));
    let json = serde_json::to_value(&plan.steps["logs"]).expect("json");
    assert_eq!(json["retention"]["table"], "core_audit_log");
    assert_eq!(json["retention"]["older_than"], "90d");
    assert_eq!(json["retention"]["batch_size"], 9000);
}

#[test]
fn context_has_env_plan_now_and_target() {
    let text = "version: 1\nname: ctx\ntarget: sqlite:app.db\nsteps:\n  q:\n    sql:\n      sql: \"SELECT '{{ plan.name }} {{ now }} {{ target.backend }} {{ target.database }} {{ env.HOME_DIR }}'\"\n";
    let mut o = options();
    o.process_env = vec![("HOME_DIR".into(), "/home/x".into())];
    let loaded = load_str("t.yaml", text, &o);
    let plan = loaded.plan.as_ref().unwrap_or_else(|| panic!("{:?}", loaded.diags));
    let json = serde_json::to_value(&plan.steps["q"]).expect("json");
    assert_eq!(
        json["sql"]["sql"],
        "SELECT 'ctx 2026-01-01T00:00:00Z sqlite app.db /home/x'"
    );
}

#[test]
fn undefined_name_points_inside_the_template() {
    let text = PLAN.replace("vars.days }} days", "vars.dayz }} days");
    let loaded = load_str("t.yaml", &text, &options());
    assert_eq!(codes(&loaded), ["template-undefined"]);
    // Line 11 is `      older_than: "{{ vars.dayz }} days"`; `vars.dayz` starts at column 23.
    assert_eq!(place(&loaded, "template-undefined"), ("t.yaml".to_string(), 11, 23));
}

#[test]
fn template_rendering_to_the_wrong_type_is_reported_at_the_value() {
    let text = PLAN.replace("}} days", "}} parsecs");
    let loaded = load_str("t.yaml", &text, &options());
    assert_eq!(codes(&loaded), ["invalid-value"]);
    assert!(
        loaded.diags.items[0]
            .message
            .contains("`parsecs` is not a unit of time")
    );
    assert_eq!(place(&loaded, "invalid-value"), ("t.yaml".to_string(), 11, 19));
}

#[test]
fn a_runaway_template_runs_out_of_fuel() {
    let text = PLAN.replace(
        "\"{{ vars.table }}\"",
        "\"{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}\"",
    );
    let loaded = load_str("t.yaml", &text, &options());
    assert!(codes(&loaded).contains(&"template-fuel"), "{:?}", codes(&loaded));
}

#[test]
fn templates_never_reach_plain_strings_they_do_not_contain() {
    // A literal `{` or `}}` without `{{`, `{%` or `{#` is not a template: the
    // string reaches the step byte for byte. Rendered, it would lose its
    // trailing newline (minijinja drops one) and be marked as rendered.
    let sql = "SELECT '{\"a\": {\"b\": 1}}'::jsonb, '}}';\n";
    let text = format!(
        "version: 1\nname: t\nsteps:\n  q:\n    sql:\n      sql: |\n        {}\n",
        sql.trim_end()
    );
    let loaded = load_str("t.yaml", &text, &options());
    let plan = loaded.plan.as_ref().unwrap_or_else(|| panic!("{:?}", loaded.diags));
    let json = serde_json::to_value(&plan.steps["q"]).expect("json");
    assert_eq!(json["sql"]["sql"], sql);
}
