//! Planning: `Plan` + `StepGraph` + `Inspection` → `ExecutionPlan`, a pure
//! function (no I/O but reading the backup directory's listing). Each
//! operation's own planning lives in its file under `ops/`; this module
//! orders the steps, fills in what every step shares, and derives the
//! retention probes the inspection must answer.

use chrono::{DateTime, Utc};

use crate::db::quote_name;
use crate::plan::graph::StepGraph;
use crate::plan::values::{Backend, Ident, NameGlob, Target};
use crate::plan::{Plan, Step};
use crate::run::execplan::{Action, Estimate, ExecutionPlan, Marker, Object, PlannedStep};
use crate::run::inspect::{Inspection, TableFacts};

/// What an operation's planning sees.
#[derive(Debug)]
pub struct PlanCx<'a> {
    pub plan: &'a Plan,
    pub step: &'a Step,
    pub insp: &'a Inspection,
    pub backend: Backend,
    pub now: DateTime<Utc>,
    /// What the steps this one needs (directly or not) will have done.
    pub upstream: Vec<Upstream>,
}

/// A retention step upstream of the one being planned: later steps plan
/// with its effect (dead tuples to vacuum, an archive table it creates).
#[derive(Debug, Clone)]
pub struct Upstream {
    pub step: String,
    /// Quoted source table and the rows it removes.
    pub table: String,
    pub rows: u64,
    /// Quoted archive table it creates, when it does not exist yet.
    pub creates: Option<String>,
}

impl<'a> PlanCx<'a> {
    pub fn new(plan: &'a Plan, step: &'a Step, insp: &'a Inspection, backend: Backend, now: DateTime<Utc>) -> Self {
        Self {
            plan,
            step,
            insp,
            backend,
            now,
            upstream: vec![],
        }
    }

    /// Rows that upstream steps remove from `quoted`, and the diff's note
    /// saying so (`, 12 of them deleted first by audit-logs`; empty at 0).
    pub fn removed_upstream(&self, quoted: &str) -> (u64, String) {
        let ups: Vec<&Upstream> = self.upstream.iter().filter(|u| u.table == quoted).collect();
        let rows: u64 = ups.iter().map(|u| u.rows).sum();
        let note = if rows == 0 {
            String::new()
        } else {
            let by: Vec<&str> = ups.iter().map(|u| u.step.as_str()).collect();
            format!(
                ", {} of them deleted first by {}",
                crate::run::execplan::human_count(rows),
                by.join(", ")
            )
        };
        (rows, note)
    }

    /// Looks a plan identifier up in the inspection.
    pub fn table(&self, ident: &Ident) -> Option<&TableFacts> {
        let (schema, name) = ident.parts();
        self.insp.table(schema, name)
    }

    /// The quoted name of a table as found in the catalog.
    /// Ownership of `t` (VACUUM, ANALYZE, REINDEX, DETACH and DROP need
    /// it on PostgreSQL 15): `None` on SQLite.
    pub fn need_owner(&self, t: &TableFacts) -> Option<crate::run::execplan::Need> {
        let mut n = self.need_ownership("table", &self.display(t), &t.access.owner, t.access.owned)?;
        if t.access.owner_superuser {
            // Membership in a superuser role would let the role SET ROLE
            // to it: hand over the table instead.
            let role = self.insp.role.as_ref()?;
            n.grant = format!(
                "ALTER TABLE {} OWNER TO {};",
                self.quoted(t),
                crate::db::quote_ident(&role.name)
            );
        }
        Some(n)
    }

    /// Ownership of a relation owned by `owner`: membership in the owning
    /// role is what a non-superuser can be granted.
    pub fn need_ownership(
        &self,
        kind: &str,
        name: &str,
        owner: &str,
        owned: bool,
    ) -> Option<crate::run::execplan::Need> {
        let role = self.insp.role.as_ref()?;
        Some(crate::run::execplan::Need {
            what: format!("own {kind} {name} (owner `{owner}`)"),
            grant: format!(
                "GRANT {} TO {};",
                crate::db::quote_ident(owner),
                crate::db::quote_ident(&role.name)
            ),
            held: role.superuser || owned,
        })
    }

    /// Membership in a predefined role (`pg_read_all_stats`, …), `why`.
    pub fn need_role(
        &self,
        predefined: &str,
        held: impl Fn(&crate::db::catalog::RoleFacts) -> bool,
        why: &str,
    ) -> Option<crate::run::execplan::Need> {
        let role = self.insp.role.as_ref()?;
        Some(crate::run::execplan::Need {
            what: format!("{predefined}: {why}"),
            grant: format!("GRANT {predefined} TO {};", crate::db::quote_ident(&role.name)),
            held: role.superuser || held(role),
        })
    }

    /// Table privileges (`SELECT, DELETE`) on `t`.
    pub fn need_privileges(&self, t: &TableFacts, privileges: &str, held: bool) -> Option<crate::run::execplan::Need> {
        let role = self.insp.role.as_ref()?;
        Some(crate::run::execplan::Need {
            what: format!("{privileges} on table {}", self.display(t)),
            grant: format!(
                "GRANT {privileges} ON {} TO {};",
                self.quoted(t),
                crate::db::quote_ident(&role.name)
            ),
            held: role.superuser || held,
        })
    }

    pub fn quoted(&self, t: &TableFacts) -> String {
        match self.backend {
            Backend::Postgres => quote_name(Some(&t.schema), &t.name),
            Backend::Sqlite => quote_name(None, &t.name),
        }
    }

    /// Tables selected by `include` globs (all when empty) minus `exclude`.
    /// The tables `include` selects less those `exclude` names; globs
    /// that select nothing are reported on `d` (see [`unmatched`]).
    /// Partitioned parents are never selected: they hold no rows (their
    /// partitions, plain tables, are selected instead).
    pub fn select_tables(&self, include: &[NameGlob], exclude: &[NameGlob], d: &mut Draft) -> Vec<&TableFacts> {
        let (include, exclude) = (glob_strings(include), glob_strings(exclude));
        let names: Vec<String> = self
            .insp
            .tables
            .iter()
            .filter(|t| !t.partitioned)
            .map(|t| format!("{}.{}", t.schema, t.name))
            .collect();
        unmatched("table", "tables", &include, &names, d);
        unmatched("table", "exclude", &exclude, &names, d);
        self.insp
            .tables
            .iter()
            .filter(|t| !t.partitioned)
            .filter(|t| {
                let full = format!("{}.{}", t.schema, t.name);
                matches_any(&include, &full) && (exclude.is_empty() || !matches_any(&exclude, &full))
            })
            .collect()
    }

    pub fn display(&self, t: &TableFacts) -> String {
        t.display_name(&self.insp.default_schema)
    }

    /// How an unqualified plan name found its table when the search path
    /// has several schemas: the reviewer sees which `events` it is.
    pub fn resolution(&self, ident: &Ident, t: &TableFacts) -> Option<String> {
        let path = &self.insp.search_path;
        (ident.parts().0.is_none() && path.len() > 1).then(|| {
            format!(
                "`{}` resolved to `{}.{}` through search_path {}",
                ident.0,
                t.schema,
                t.name,
                path.join(", ")
            )
        })
    }

    /// "`x` is a view …" when a plan names a relation that is not a table.
    pub fn not_a_table(&self, ident: &Ident, what: &str) -> Option<String> {
        let (schema, name) = ident.parts();
        self.insp.other_relation(schema, name).map(|r| {
            format!(
                "`{}` is a {} ({}.{}), not a table: {what}",
                ident.0, r.kind, r.schema, r.name
            )
        })
    }
}

/// An operation's part of a planned step, as it builds it: `Option`s for
/// what the planner fills in when the operation says nothing (marker,
/// estimate, units). [`finish`] resolves it, with the step's settings, into
/// the `PlannedStep` that is data only — the two stages just keeps as
/// `UnresolvedRecipe` and `Recipe`, not a copy to merge.
#[derive(Debug, Default)]
pub struct Draft {
    pub marker: Option<Marker>,
    pub summary: String,
    pub no_op: bool,
    pub objects: Vec<Object>,
    pub actions: Vec<Action>,
    pub statements: Vec<String>,
    pub lock: String,
    pub transactional: bool,
    pub compensation: String,
    pub estimate: Option<Estimate>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// How the step runs, beyond its lock (`throttle: …`), for the diff.
    pub notes: Vec<String>,
    /// `jobs: N`: actions run on this many sessions at once (0 or 1: one).
    pub jobs: u64,
    /// `throttle:` of a step whose actions are objects (vacuum, analyze,
    /// reindex): the executor waits on it before each (a retention
    /// throttles between its batches, inside its own work).
    pub throttle: Option<crate::run::throttle::ThrottleLimits>,
    /// Re-evaluates the selection when the step starts (see
    /// [`crate::run::execplan::PlannedStep::reselect`]).
    pub reselect: Option<Action>,
    /// What the step leaves for the steps that need it (rows it removes
    /// from a table, an archive table it creates); `step` is filled in.
    pub leaves: Vec<Upstream>,
    /// Batches or objects it expects to go through; `None`: one per action.
    pub units: Option<u64>,
    /// Its actions act on independent objects (indexes, tables, views):
    /// `on_object_failure` applies.
    pub per_object: bool,
    /// Privileges it needs on the server (see [`crate::run::execplan::Need`]).
    pub privileges: Vec<crate::run::execplan::Need>,
}

impl Draft {
    /// A step that cannot be planned as written.
    pub fn error(message: String) -> Self {
        Self {
            summary: "cannot plan this step".into(),
            errors: vec![message],
            ..Self::default()
        }
    }

    /// One statement to run on its own: shown in the diff and executed.
    pub fn statement(&mut self, object: String, sql: String) {
        self.statements.push(sql.clone());
        self.actions.push(Action::Statement {
            object,
            sql,
            undo: vec![],
            after: vec![],
        });
    }

    pub fn object(&mut self, marker: Marker, kind: &str, name: String, detail: String, figures: serde_json::Value) {
        self.objects.push(Object {
            marker,
            kind: kind.into(),
            name,
            detail,
            figures: figures.as_object().cloned().unwrap_or_default(),
        });
    }
}

/// Steps in execution order: by level, then in file order.
pub fn execution_order<'a>(plan: &'a Plan, graph: &StepGraph) -> Vec<&'a Step> {
    let mut order: Vec<(usize, usize, &Step)> = plan
        .steps
        .values()
        .enumerate()
        .map(|(i, s)| {
            let level = graph
                .ids
                .iter()
                .position(|id| id == &s.id)
                .map_or(0, |p| graph.level[p]);
            (level, i, s)
        })
        .collect();
    order.sort_by_key(|(level, i, _)| (*level, *i));
    order.into_iter().map(|(_, _, s)| s).collect()
}

/// Computes the execution plan. Pure: the same inputs give the same value.
pub fn execution_plan(
    plan: &Plan,
    graph: &StepGraph,
    insp: &Inspection,
    target: &Target,
    now: DateTime<Utc>,
    plan_step: &dyn Fn(&Step, &PlanCx) -> Draft,
) -> ExecutionPlan {
    let backend = target.backend;
    let mut done: Vec<Upstream> = vec![];
    let steps = execution_order(plan, graph)
        .into_iter()
        .map(|step| {
            let ancestors = ancestors(plan, &step.id);
            let mut cx = PlanCx::new(plan, step, insp, backend, now);
            cx.upstream = done.iter().filter(|u| ancestors.contains(&u.step)).cloned().collect();
            let draft = plan_step(step, &cx);
            let leaves = draft.leaves.clone();
            let planned = finish(step, draft);
            for mut u in leaves {
                u.step = planned.id.clone();
                done.push(u);
            }
            planned
        })
        .collect();
    ExecutionPlan {
        plan: plan.name.clone(),
        hash: plan.hash(),
        env: plan.env.clone(),
        backend,
        target: target.redacted(),
        now: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        steps,
        catalog_queries: insp.catalog_queries,
        max_runtime_ms: plan.limits.max_runtime.as_ref().map(|d| d.0.as_millis() as u64),
        fit_defer: plan.limits.fit_defer,
        identity: None,
        accepted_drift: vec![],
        privileges: insp.role.iter().map(journal_need).collect(),
    }
}

/// The journal lives in the schema `dbmaint` of the target, which apply
/// creates on its first run: CREATE on the database, or (once it exists)
/// ownership of that schema.
fn journal_need(role: &crate::db::catalog::RoleFacts) -> crate::run::execplan::Need {
    let who = crate::db::quote_ident(&role.name);
    match role.owns_journal {
        Some(owned) => crate::run::execplan::Need {
            what: "ownership of the journal schema `dbmaint` (apply writes its run records there)".into(),
            grant: format!("ALTER SCHEMA dbmaint OWNER TO {who};"),
            held: role.superuser || owned,
        },
        None => crate::run::execplan::Need {
            what: format!(
                "CREATE on database `{}` (apply creates its journal schema `dbmaint` on the first run)",
                role.database
            ),
            grant: format!(
                "GRANT CREATE ON DATABASE {} TO {who};",
                crate::db::quote_ident(&role.database)
            ),
            held: role.superuser || role.create_on_database,
        },
    }
}

/// Every step `id` needs, directly or through others.
pub fn ancestors(plan: &Plan, id: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    let mut stack: Vec<&str> = vec![id];
    while let Some(s) = stack.pop() {
        if let Some(step) = plan.steps.get(s) {
            for n in &step.needs {
                if !out.contains(n) {
                    out.push(n.clone());
                    stack.push(n);
                }
            }
        }
    }
    out
}

fn finish(step: &Step, mut d: Draft) -> PlannedStep {
    let s = &step.settings;
    // One line per missing privilege, before apply fails half-way on it.
    let mut seen = std::collections::HashSet::new();
    d.privileges.retain(|n| seen.insert(n.what.clone()));
    for n in d.privileges.iter().filter(|n| !n.held) {
        d.warnings.push(format!(
            "the plan's role lacks {}: apply will fail on it; `{}` (see `dbmaint grants`)",
            n.what, n.grant
        ));
    }
    let units = d.units.unwrap_or(d.actions.len() as u64);
    if d.jobs > 1 && d.actions.len() > 1 {
        d.notes.push(format!(
            "jobs: up to {} of its {} actions at once, each on its own session (at most --parallelism; one table's indexes in turn)",
            d.jobs,
            d.actions.len()
        ));
    }
    PlannedStep {
        id: step.id.clone(),
        op: step.op.key().to_string(),
        marker: d.marker.unwrap_or(Marker::Read),
        summary: d.summary,
        needs: step.needs.clone(),
        no_op: d.no_op,
        objects: d.objects,
        actions: d.actions,
        statements: d.statements,
        lock: d.lock,
        transactional: d.transactional,
        compensation: d.compensation,
        estimate: d.estimate.unwrap_or(Estimate::NONE),
        units,
        lock_timeout_ms: s.lock_timeout.0.as_millis() as u64,
        statement_timeout_ms: s.statement_timeout.0.as_millis() as u64,
        retries: s.retries,
        on_failure_continue: s.on_failure == crate::plan::doc::OnFailure::Continue,
        objects_continue: d.per_object && s.on_object_failure == crate::plan::doc::OnFailure::Continue,
        errors: d.errors,
        warnings: d.warnings,
        notes: d.notes,
        jobs: d.jobs.max(1),
        throttle: d.throttle,
        reselect: d.reselect,
        privileges: d.privileges,
        expected: None,
    }
}

fn glob_strings(globs: &[NameGlob]) -> Vec<String> {
    globs.iter().map(|g| g.0.clone()).collect()
}

/// True when `schema_name` (`schema.name`), or its bare name, matches one
/// of `globs`, or `globs` is empty: how every operation's `tables`,
/// `indexes`, `views` and `exclude` globs select.
pub fn matches_any(globs: &[String], schema_name: &str) -> bool {
    if globs.is_empty() {
        return true;
    }
    let bare = schema_name.rsplit_once('.').map_or(schema_name, |(_, n)| n);
    globs.iter().any(|g| glob_match(g, bare) || glob_match(g, schema_name))
}

/// `*` (any run of characters) and `?` (one character) are the only glob
/// characters; everything else, a backslash or a bracket included, stands
/// for itself, as table names may contain them.
pub fn glob_match(glob: &str, name: &str) -> bool {
    let (g, n): (Vec<char>, Vec<char>) = (glob.chars().collect(), name.chars().collect());
    let (mut gi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match g.get(gi) {
            Some('*') => {
                star = Some((gi, ni));
                gi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                gi += 1;
                ni += 1;
            }
            _ => match star {
                // Let the last `*` take one more character and retry.
                Some((sg, sn)) => {
                    gi = sg + 1;
                    ni = sn + 1;
                    star = Some((sg, sn + 1));
                }
                None => return false,
            },
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

/// Names in `globs` that select nothing among `names` (`schema.name`): a
/// plain name is an error with the nearest existing name, since a typo
/// would silently skip (or, in `exclude`, silently include) a table; a
/// pattern that matches nothing is a warning.
pub fn unmatched(what: &str, key: &str, globs: &[String], names: &[String], d: &mut Draft) {
    for g in globs {
        if names.iter().any(|n| matches_any(std::slice::from_ref(g), n)) {
            continue;
        }
        if g.contains(['*', '?']) {
            d.warnings.push(format!("`{key}: {g}` matches no {what}"));
        } else {
            let bare: Vec<&str> = names
                .iter()
                .map(|n| n.rsplit_once('.').map_or(n.as_str(), |(_, b)| b))
                .collect();
            let hint = crate::plan::decode::did_you_mean(g, bare.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            d.errors
                .push(format!("`{key}: {g}` names no {what} in this database{hint}"));
        }
    }
}

/// `0.241` → `24.1%`.
pub fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}
