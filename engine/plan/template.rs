//! Renders every string of the merged tree as a minijinja template.
//!
//! Strict undefined (a typo is an error, not an empty string) and a fuel
//! limit (no template can loop for ever). Context: `vars`, `env` (process
//! environment), `plan` (`name`), `now` (the run's start, UTC, RFC 3339) and
//! `target` (`backend`, `database`). Order: `vars` first (they may use `env`,
//! `plan`, `now`), then `target` (may use `vars`), then everything else.
//! An error points at the value, offset to the failing expression when the
//! template's text is the source's text. Templates make values, never SQL:
//! the rendered text is parsed as its field's type afterwards.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior, Value};

use crate::plan::diag::Diag;
use crate::plan::node::{Kind, Node, Pos};
use crate::plan::source::Sources;
use crate::plan::values::Target;

/// Enough for any sane value template; stops runaway loops.
pub const FUEL: u64 = 50_000;

/// Inputs of rendering besides the tree.
#[derive(Debug, Clone)]
pub struct Context {
    pub env: BTreeMap<String, String>,
    pub now: String,
    /// `--target`: wins over the plan's `target:` (cli.md precedence).
    pub cli_target: Option<String>,
    /// `DATABASE_URL` or the libpq environment: used when the plan has none.
    pub default_target: Option<String>,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env
}

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// Renders the plan tree in place; returns every error found.
pub fn render_plan(plan: &mut Node, cx: &Context, sources: &Sources) -> Vec<Diag> {
    let jinja = environment();
    let mut diags = Vec::new();
    let name = plan.get("name").and_then(Node::as_str).unwrap_or("").to_string();
    let env_value = Value::from(minijinja::value::Serde(&cx.env));
    let plan_value = minijinja::context! { name => name };

    let mut ctx = BTreeMap::from([
        ("env", env_value),
        ("plan", plan_value),
        ("now", Value::from(cx.now.clone())),
    ]);
    if let Some(vars) = plan.get_mut("vars") {
        render_node(&jinja, vars, &Value::from(ctx.clone()), sources, &mut diags);
    }
    let vars_json = plan.get("vars").map_or(serde_json::Value::Null, Node::to_json);
    ctx.insert("vars", Value::from(minijinja::value::Serde(&vars_json)));

    if let Some(target) = plan.get_mut("target") {
        render_node(&jinja, target, &Value::from(ctx.clone()), sources, &mut diags);
    }
    let target_text = cx.cli_target.clone().or_else(|| {
        plan.get("target")
            .and_then(Node::as_str)
            .map(str::to_string)
            .or_else(|| cx.default_target.clone())
    });
    let target_value = match target_text.as_deref().map(Target::parse) {
        Some(Ok(t)) => minijinja::context! { backend => t.backend.to_string(), database => t.database },
        _ => minijinja::context! { backend => "unknown", database => "" },
    };
    ctx.insert("target", target_value);
    let full = Value::from(ctx);
    if let Kind::Map(entries) = &mut plan.kind {
        for (key, value) in entries.iter_mut() {
            if key.name != "vars" && key.name != "target" {
                render_node(&jinja, value, &full, sources, &mut diags);
            }
        }
    }
    diags
}

fn render_node(jinja: &Environment<'_>, node: &mut Node, ctx: &Value, sources: &Sources, diags: &mut Vec<Diag>) {
    match &mut node.kind {
        Kind::Map(entries) => {
            for (_, v) in entries.iter_mut() {
                render_node(jinja, v, ctx, sources, diags);
            }
        }
        Kind::Seq(items) => {
            for v in items.iter_mut() {
                render_node(jinja, v, ctx, sources, diags);
            }
        }
        Kind::Str(s) if is_template(&s.value) => match jinja.render_str(&s.value, ctx) {
            Ok(out) => {
                s.value = out;
                s.rendered = true;
            }
            Err(e) => {
                diags.push(template_error(&e, node.pos, &s.value, s.quote, sources));
                s.poisoned = true;
            }
        },
        _ => {}
    }
}

fn template_error(e: &minijinja::Error, pos: Pos, template: &str, quote: u8, sources: &Sources) -> Diag {
    use minijinja::ErrorKind;
    let (code, message, hint) = match e.kind() {
        ErrorKind::UndefinedError => (
            "template-undefined",
            e.detail().unwrap_or("undefined value").to_string(),
            "templates see `vars`, `env`, `plan.name`, `now` and `target`; `vars` may not use `vars`; \
             give a fallback with `| default(…)`",
        ),
        ErrorKind::SyntaxError => (
            "template-syntax",
            format!("template syntax error: {}", e.detail().unwrap_or("invalid template")),
            "write expressions as `{{ vars.name }}`",
        ),
        ErrorKind::OutOfFuel => (
            "template-fuel",
            "template ran too long".to_string(),
            "templates build values; keep them small",
        ),
        _ => (
            "template-error",
            format!(
                "template failed: {}",
                e.detail().map_or_else(|| e.kind().to_string(), str::to_string)
            ),
            "",
        ),
    };
    // Point inside the template when its text is the source's text.
    let source = &sources.get(pos.file).original;
    let body_start = pos.start + quote as usize;
    let exact = source.get(body_start..body_start + template.len()) == Some(template);
    let at = match e.range() {
        Some(r) if exact && r.end <= template.len() => Pos {
            file: pos.file,
            start: body_start + r.start,
            len: r.len().max(1),
        },
        _ => pos,
    };
    let d = Diag::error(code, message).at(at, None);
    if hint.is_empty() { d } else { d.hint(hint) }
}
