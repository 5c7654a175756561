//! Rules across a plan document, and its resolution into a [`Plan`].
//!
//! Reports every finding at once: plan version, step ids, `needs` (unknown
//! with a suggestion, self, disabled, repeated), cycles (the whole cycle,
//! pointing at each `needs` entry on it), each operation's own rules and
//! whether the target's backend can run it, and safety rules on settings.
//! Returns a plan only when no error was found.

use std::collections::HashMap;

use crate::plan::decode::Sp;
use crate::plan::decode::{Cx, did_you_mean};
use crate::plan::diag::Diag;
use crate::plan::doc::{PlanDoc, Settings, Steps};
use crate::plan::graph::{Edge, find_cycles};
use crate::plan::node::Pos;
use crate::plan::op::{OpCheck, StepOp};
use crate::plan::values::{Backend, Target, Tz, check_step_id};
use crate::plan::{Plan, PlanLimits, Step, StepSettings};

/// The targets from outside the plan. Precedence (cli.md): `--target` >
/// the plan's `target:` > `DATABASE_URL` > the libpq environment.
#[derive(Debug, Clone, Default)]
pub struct Fallback {
    /// `--target`: replaces the plan's own.
    pub cli: Option<String>,
    /// `DATABASE_URL`, else `postgres://` when libpq variables are set.
    pub default: Option<String>,
    /// Where `default` came from, for messages.
    pub default_origin: &'static str,
}

impl Fallback {
    /// The target when there is no plan: `--target`, else the default.
    pub fn first(&self) -> Option<(String, &'static str)> {
        match (&self.cli, &self.default) {
            (Some(t), _) => Some((t.clone(), "--target")),
            (None, Some(t)) => Some((t.clone(), self.default_origin)),
            (None, None) => None,
        }
    }
}

pub fn validate(doc: PlanDoc, fallback: &Fallback, env: Option<&str>, cx: &mut Cx) -> Option<Plan> {
    if doc.version.value != 1 {
        cx.error(
            Diag::error(
                "unsupported-version",
                format!("plan format version {} is not supported", doc.version.value),
            )
            .at(doc.version.pos, "expected 1".to_string())
            .hint("this engine reads `version: 1`"),
        );
    }
    let resolved = resolve_target(&doc, fallback, cx);
    let backend = resolved.as_ref().map(|(t, _)| t.backend);
    if doc.steps.value.0.is_empty() {
        cx.error(
            Diag::error("no-steps", "plan has no steps")
                .at(doc.steps.pos, None)
                .hint("add at least one step, e.g. `steps: {stats: {stats: {}}}`"),
        );
    }

    check_settings(doc.defaults.as_ref().map(|d| &d.value), "defaults", cx);
    check_steps(&doc.steps.value, backend, cx);
    if resolved.is_none() && !cx.diags.has_errors() {
        cx.error(
            Diag::warning("no-target", "no target: backend-specific checks were skipped")
                .hint("set `target:` in the plan or an overlay, pass `--target`, set `DATABASE_URL`, or set the libpq variables (PGHOST, PGDATABASE, PGSERVICE …)"),
        );
    }
    if cx.diags.has_errors() || doc.steps.value.0.iter().any(|(_, s)| !s.complete) {
        return None;
    }
    resolve(doc, resolved, env)
}

/// The rules on steps: ids, settings, operations, `needs` and cycles.
pub fn check_steps(steps: &Steps, backend: Option<Backend>, cx: &mut Cx) {
    let steps = &steps.0;
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.value.as_str(), i))
        .collect();
    for (id, _) in steps {
        if let Err(e) = check_step_id(&id.value) {
            let mut d = Diag::error("invalid-id", e.message).at(id.pos, None);
            if let Some(h) = e.hint {
                d = d.hint(h);
            }
            cx.error(d);
        }
    }
    // Edges between enabled steps, each with the `needs` entry that made it.
    let mut edges: Vec<Edge> = Vec::new();
    let mut edge_pos: Vec<Pos> = Vec::new();
    for (i, (id, step)) in steps.iter().enumerate() {
        check_settings(step.settings.as_ref(), &format!("step `{}`", id.value), cx);
        if let Some(op) = &step.op {
            check_op(&id.value, op, backend, cx);
        }
        if !step.is_enabled() {
            continue;
        }
        let Some(needs) = &step.needs else { continue };
        let mut seen: Vec<&str> = Vec::new();
        for need in &needs.value {
            let name = need.value.as_str();
            if seen.contains(&name) {
                cx.error(
                    Diag::warning(
                        "duplicate-need",
                        format!("step `{}` lists `{name}` in `needs` twice", id.value),
                    )
                    .at(need.pos, None)
                    .hint("remove the repeated entry"),
                );
                continue;
            }
            seen.push(name);
            match index.get(name) {
                None => {
                    let mut d = Diag::error(
                        "unknown-need",
                        format!("step `{}` needs `{name}`, which is not a step of this plan", id.value),
                    )
                    .at(need.pos, "no such step".to_string());
                    d = match did_you_mean(name, steps.iter().map(|(s, _)| s.value.as_str())) {
                        Some(s) => d.hint(format!("did you mean `{s}`?")),
                        None => d.hint(format!(
                            "steps are: {}",
                            steps
                                .iter()
                                .map(|(s, _)| s.value.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    };
                    cx.error(d);
                }
                Some(&j) if j == i => cx.error(
                    Diag::error("self-need", format!("step `{name}` needs itself"))
                        .at(need.pos, "a step cannot wait for itself".to_string())
                        .hint("remove it from its own `needs`"),
                ),
                Some(&j) if !steps[j].1.is_enabled() => {
                    let off = steps[j].1.enabled.as_ref().map(|e| e.pos);
                    let mut d = Diag::error(
                        "needs-disabled",
                        format!(
                            "step `{}` needs `{name}`, which is disabled (`enabled: false`)",
                            id.value
                        ),
                    )
                    .at(need.pos, "needs a disabled step".to_string())
                    .hint(format!(
                        "disable `{}` too, or remove `{name}` from its `needs`",
                        id.value
                    ));
                    if let Some(p) = off {
                        d = d.also(p, format!("`{name}` is disabled here"));
                    }
                    cx.error(d);
                }
                Some(&j) => {
                    edges.push((j, i));
                    edge_pos.push(need.pos);
                }
            }
        }
    }
    for cycle in find_cycles(steps.len(), &edges) {
        // A self-need was reported already and never becomes an edge.
        // The path follows "runs before" edges; read backwards it says who
        // needs whom, which is how the plan is written.
        let names: Vec<&str> = cycle.path.iter().rev().map(|&n| steps[n].0.value.as_str()).collect();
        let first_edge = cycle.edges[0];
        let mut d = Diag::error(
            "cycle",
            format!("steps need each other in a cycle: {}", names.join(" → ")),
        )
        .at(edge_pos[first_edge], "on the cycle".to_string());
        for &e in &cycle.edges[1..] {
            d = d.also(edge_pos[e], "on the cycle");
        }
        cx.error(d.hint("remove one of these `needs` entries; execution order must be acyclic"));
    }
}

/// Builds the resolved plan from a document that passed every check.
fn resolve(doc: PlanDoc, resolved: Option<(Target, String)>, env: Option<&str>) -> Option<Plan> {
    let (target, target_origin) = resolved.unzip();
    let mut out_steps = indexmap::IndexMap::new();
    let mut disabled = Vec::new();
    for (id, step) in &doc.steps.value.0 {
        if !step.is_enabled() {
            disabled.push(id.value.clone());
            continue;
        }
        let (Some(settings), Some(op)) = (&step.settings, &step.op) else {
            return None;
        };
        out_steps.insert(
            id.value.clone(),
            Step {
                id: id.value.clone(),
                description: step.description.as_ref().map(|d| d.value.clone()),
                needs: step
                    .needs
                    .as_ref()
                    .map(|n| n.value.iter().map(|s| s.value.clone()).collect())
                    .unwrap_or_default(),
                settings: StepSettings::resolve(settings, doc.defaults.as_ref().map(|d| &d.value)),
                op: op.value.clone(),
            },
        );
    }
    for s in out_steps.values_mut() {
        s.needs.dedup();
    }
    let limits = doc.limits.as_ref().map(|l| &l.value);
    Some(Plan {
        version: doc.version.value,
        name: doc.name.value.0.clone(),
        description: doc.description.map(|d| d.value),
        env: env.map(str::to_string),
        target,
        target_origin,
        vars: doc.vars.map(|v| v.value.0).unwrap_or_default(),
        limits: PlanLimits {
            max_runtime: limits.and_then(|l| l.max_runtime.as_ref()).map(|m| m.value),
            window: limits.and_then(|l| l.window.as_ref()).map(|w| w.value),
            tz: limits
                .and_then(|l| l.tz.as_ref())
                .map_or(Tz(chrono_tz::UTC), |t| t.value),
            fit_defer: limits.and_then(|l| l.fit.as_ref()).map(|f| f.value) == Some(crate::plan::doc::Fit::Defer),
        },
        schedule: doc.schedule.map(|s| s.value),
        metrics_file: doc.metrics_file.as_ref().map(|m| m.value.clone()),
        log_keep: doc.logs.as_ref().and_then(|l| l.value.keep.as_ref()).map(|k| k.value),
        notify: doc.notify.as_ref().map(|n| {
            let n = &n.value;
            crate::plan::PlanNotify {
                on: n.on.as_ref().map_or_else(
                    || vec![crate::plan::doc::NotifyOn::Failure, crate::plan::doc::NotifyOn::Checks],
                    |o| o.value.clone(),
                ),
                webhook: n.webhook.as_ref().map(|w| w.value.clone()),
                email: n.email.as_ref().map(|e| crate::plan::PlanEmail {
                    to: e.value.to.value.clone(),
                    from: e.value.from.value.clone(),
                    smtp: e.value.smtp.value.clone(),
                }),
                command: n.command.as_ref().map(|c| c.value.clone()).unwrap_or_default(),
                timeout: n
                    .timeout
                    .as_ref()
                    .map_or(crate::plan::values::Duration(std::time::Duration::from_secs(10)), |t| {
                        t.value
                    }),
                retries: n.retries.as_ref().map_or(2, |r| r.value),
            }
        }),
        steps: out_steps,
        disabled,
    })
}

fn resolve_target(doc: &PlanDoc, fallback: &Fallback, cx: &mut Cx) -> Option<(Target, String)> {
    let plan_target = doc.target.as_ref().map(|t| &t.value);
    let (text, origin) = match (&fallback.cli, plan_target, &fallback.default) {
        (Some(t), _, _) => (t, "--target"),
        (None, Some(t), _) => return Some((t.clone(), "the plan's `target:`".to_string())),
        (None, None, Some(t)) => (t, fallback.default_origin),
        (None, None, None) => return None,
    };
    match Target::parse(text) {
        Ok(t) => {
            let origin = match plan_target {
                Some(p) if origin == "--target" && p.expose_url() != t.expose_url() => {
                    format!("--target, replacing the plan's `{}`", p.redacted())
                }
                _ => origin.to_string(),
            };
            Some((t, origin))
        }
        Err(e) => {
            let mut d = Diag::error("invalid-target", format!("{} from {origin}", e.message));
            if let Some(h) = e.hint {
                d = d.hint(h);
            }
            cx.error(d);
            None
        }
    }
}

/// Safety rules on timeouts: a zero `lock_timeout` means "wait for ever" in
/// PostgreSQL, and long lock waits block every query queued behind them.
fn check_settings(s: Option<&Settings>, what: &str, cx: &mut Cx) {
    let Some(s) = s else { return };
    if let Some(lt) = &s.lock_timeout {
        if lt.value.0.is_zero() {
            cx.error(
                Diag::error(
                    "unbounded-lock-wait",
                    format!("`lock_timeout: 0s` in {what} disables the timeout: a lock wait would be unbounded"),
                )
                .at(lt.pos, None)
                .hint("use a short timeout such as `2s` and let `retries` try again"),
            );
        } else if lt.value.0 > std::time::Duration::from_secs(60) {
            cx.error(
                Diag::warning(
                    "long-lock-wait",
                    format!(
                        "`lock_timeout: {}` in {what}: while it waits, every query behind it waits too",
                        lt.value
                    ),
                )
                .at(lt.pos, None)
                .hint("keep lock waits to seconds and rely on `retries`"),
            );
        }
    }
    if let Some(st) = &s.statement_timeout
        && st.value.0.is_zero()
    {
        cx.error(
            Diag::warning(
                "unbounded-statement",
                format!("`statement_timeout: 0s` in {what} lets a statement run for ever"),
            )
            .at(st.pos, None)
            .hint("set a bound; `limits.max_runtime` also caps statements"),
        );
    }
    if let Some(r) = &s.retries
        && r.value > 100
    {
        cx.error(Diag::error("out-of-range", format!("`retries: {}` in {what} is over 100", r.value)).at(r.pos, None));
    }
}

fn check_op(id: &str, op: &Sp<Box<dyn StepOp>>, backend: Option<Backend>, cx: &mut Cx) {
    if let Some(b) = backend
        && !op.value.backends().contains(&b)
    {
        cx.error(
                Diag::error("unsupported-backend", format!("step `{id}` uses `{}`, which {b} cannot run", op.value.key()))
                    .at(op.pos, format!("not available on {b}"))
                    .hint(format!(
                        "remove the step, or switch it off for this target with `enabled: false` in its overlay (`{}` runs on: {})",
                        op.value.key(),
                        op.value.backends().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    )),
            );
        return;
    }
    op.value.check(&mut OpCheck { backend, step: id, cx });
}
