//! Environment overlays and variable overrides, applied to raw trees.
//!
//! An overlay (`env/NAME.yaml`) has the shape of a plan with every key
//! optional. It merges into the plan by the spec's rule — maps merge deeply,
//! scalars and lists replace — on the spanned [`Node`] trees, so each value
//! keeps the file and position it came from and a mistake in the overlay is
//! reported in the overlay. Then `DBMAINT_VAR_*` and `--var` replace entries
//! of `vars`, in that order. Nothing here knows the plan's keys except `vars`.

use crate::plan::diag::Diag;
use crate::plan::node::{Key, Kind, Node, Pos};
use crate::plan::source::Sources;

/// Merges `overlay` into `base` in place.
pub fn merge(base: &mut Node, overlay: Node) {
    match (&mut base.kind, overlay.kind) {
        (Kind::Map(entries), Kind::Map(over)) => {
            for (key, value) in over {
                match entries.iter_mut().find(|(k, _)| k.name == key.name) {
                    Some((_, existing)) => merge(existing, value),
                    None => entries.push((key, value)),
                }
            }
        }
        (_, kind) => {
            *base = Node::new(overlay.pos, kind);
        }
    }
}

/// One `vars` override from the environment or the command line.
#[derive(Debug, Clone)]
pub struct VarOverride {
    pub key: String,
    pub value: String,
    /// Where it came from, for messages: `--var` or `DBMAINT_VAR_AUDIT_DAYS`.
    pub origin: String,
}

/// Parses `key=value` from `--var`.
pub fn parse_cli_var(arg: &str) -> Result<VarOverride, Diag> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok(VarOverride {
            key: k.trim().to_string(),
            value: v.to_string(),
            origin: "--var".to_string(),
        }),
        _ => Err(Diag::error("invalid-var", format!("`--var {arg}` is not `key=value`"))
            .hint("write `--var audit_log_days=30`")),
    }
}

/// Overrides from `DBMAINT_VAR_<KEY>` variables: the key is lowercased
/// (`DBMAINT_VAR_AUDIT_LOG_DAYS` sets `vars.audit_log_days`). Sorted by key.
pub fn env_vars(env: &[(String, String)]) -> Vec<VarOverride> {
    let mut out: Vec<VarOverride> = env
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("DBMAINT_VAR_")?;
            (!key.is_empty()).then(|| VarOverride {
                key: key.to_ascii_lowercase(),
                value: v.clone(),
                origin: k.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Sets `vars.<key>` in the plan for each override, in order (later wins).
/// Each value is parsed as a YAML scalar (`30` is a number) from a pseudo
/// file named after its origin, so a later error can point at it.
pub fn apply_vars(plan: &mut Node, overrides: &[VarOverride], sources: &mut Sources) -> Vec<Diag> {
    let mut diags = Vec::new();
    let Kind::Map(entries) = &mut plan.kind else {
        return diags;
    };
    for o in overrides {
        let file = sources.add(format!("{} {}", o.origin, o.key), &o.value);
        let value = match crate::plan::yaml::parse(sources, file) {
            Ok(v) => v,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        let pos = Pos {
            file,
            start: 0,
            len: o.value.len(),
        };
        let vars_index = match entries.iter().position(|(k, _)| k.name == "vars") {
            Some(i) => i,
            None => {
                entries.push((
                    Key {
                        name: "vars".into(),
                        pos,
                    },
                    Node::new(pos, Kind::Map(Vec::new())),
                ));
                entries.len() - 1
            }
        };
        let vars = &mut entries[vars_index].1;
        if !matches!(vars.kind, Kind::Map(_)) {
            *vars = Node::new(pos, Kind::Map(Vec::new()));
        }
        let key = Key {
            name: o.key.clone(),
            pos,
        };
        merge(vars, Node::new(pos, Kind::Map(vec![(key, value)])));
    }
    diags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(sources: &mut Sources, name: &str, text: &str) -> Node {
        let id = sources.add(name, text);
        crate::plan::yaml::parse(sources, id).expect("parses")
    }

    #[test]
    fn maps_merge_deeply_scalars_and_lists_replace() {
        let mut s = Sources::new();
        let mut base = load(&mut s, "p", "a: {x: 1, y: [1, 2]}\nb: 1\n");
        let over = load(&mut s, "o", "a: {y: [3], z: 2}\n");
        merge(&mut base, over);
        assert_eq!(
            base.to_json(),
            serde_json::json!({"a": {"x": 1, "y": [3], "z": 2}, "b": 1})
        );
        // The replaced list now points into the overlay file.
        assert_eq!(
            base.get("a").and_then(|a| a.get("y")).map(|y| y.pos.file),
            Some(crate::plan::source::FileId(1))
        );
    }

    #[test]
    fn cli_vars_are_typed_and_later_ones_win() {
        let mut s = Sources::new();
        let mut plan = load(&mut s, "p", "vars: {days: 90}\n");
        let o = vec![
            parse_cli_var("days=30").expect("ok"),
            parse_cli_var("days=45").expect("ok"),
        ];
        assert!(apply_vars(&mut plan, &o, &mut s).is_empty());
        assert_eq!(plan.to_json(), serde_json::json!({"vars": {"days": 45}}));
        assert!(parse_cli_var("nodays").is_err());
    }
}
