//! The plan's JSON Schema (draft-07, for yaml-language-server), generated
//! from the document types in `doc.rs` and the installed operations. `schemas/plan.schema.json`
//! is this output, committed; a test fails when it is stale.

use crate::plan::decode::Template;
use crate::plan::doc::PlanDoc;

/// The `$schema` comment every plan starts with (path relative to `plans/`).
pub const MODELINE: &str = "# yaml-language-server: $schema=../schemas/plan.schema.json";

/// The schema as pretty JSON with a trailing newline.
pub fn plan_schema_json(ops: &'static dyn crate::plan::op::OpCatalog) -> String {
    crate::plan::op::install(ops);
    let mut generator = schemars::generate::SchemaSettings::draft07().into_generator();
    // Referenced by every templatable value's `anyOf`.
    generator.subschema_for::<Template>();
    let mut schema = generator.into_root_schema_for::<PlanDoc>();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("$id".into(), "https://dbmaint.dev/schemas/plan.schema.json".into());
        obj.insert("title".into(), "dbmaint plan".into());
    }
    let mut value = schema.to_value();
    forbid_null(&mut value);
    let mut s = serde_json::to_string_pretty(&value).unwrap_or_default();
    s.push('\n');
    s
}

/// schemars lets every `Option` field be `null`; the engine does not (an
/// empty `analyze:` is a mistake, reported as one), so neither does the schema.
fn forbid_null(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(o) => {
            if let Some(Value::Array(types)) = o.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types[0].clone();
                    o.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(any)) = o.get_mut("anyOf") {
                any.retain(|s| s.get("type").and_then(Value::as_str) != Some("null"));
            }
            for child in o.values_mut() {
                forbid_null(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(forbid_null),
        _ => {}
    }
}
