//! `retention`: batched delete of rows older than a cutoff, optionally moving
//! them to an archive table or a JSON Lines file first.

pub mod archive;
pub mod archivetypes;
pub mod batch;
pub mod facts;
pub mod keydigest;
pub mod pg;
pub mod sql;
pub mod sqlite;
pub mod timefmt;
pub mod walk;
pub mod work;

use super::{BOTH, OpCheck, OpParams, get};
use crate::db::{quote_ident, quote_name};
use crate::ops::retention::facts::RetentionProbe;
use crate::plan::decode::did_you_mean;
use crate::plan::values::{Backend, Duration, Ident, Ratio, Tz};
use crate::run::execplan::{Action, Estimate, Fidelity, Marker, human_count};
use crate::run::planner::{Draft, PlanCx};
use sql::{ArchiveSpec, RetentionSpec};
use work::{ArchiveTo, BatchSql, RetentionWork};

crate::params! {
    /// Where deleted rows are kept: exactly one of `table` or `file`.
    pub struct Archive ("archive parameters") {
        required {}
        optional {
            /// Archive table (created with the source's columns and primary key when missing).
            table: Ident,
            /// JSON Lines file, written and fsynced before the rows are deleted.
            file: String,
        }
    }
}

crate::params! {
    /// Parameters of `retention`.
    pub struct Retention ("retention parameters") {
        required {
            /// Table to delete from.
            table: Ident,
            /// Timestamp column compared with the cutoff.
            column: Ident,
            /// Rows with `column < now() - older_than` are removed; `0s` means "already past".
            older_than: Duration,
        }
        optional {
            /// Extra SQL condition, ANDed with the cutoff (author SQL, shown verbatim).
            r#where: String,
            /// Rows per batch, each batch one short transaction (default 10000).
            batch_size: u64,
            /// Stop after this many rows in one run.
            max_rows: u64,
            /// Sleep between batches, to leave room for live traffic.
            pause: Duration,
            /// PostgreSQL: wait between batches while replicas lag or the server is busy: `{max_replica_lag: 10s, max_active_sessions: N, max_lock_waiters: N, check_every: 1s}`.
            throttle: crate::ops::throttle::Throttle,
            /// Keep deleted rows: `{table: …}` or `{file: …}`.
            archive: Archive,
            /// Column that orders batches (default: the primary key).
            key: Ident,
            /// How `column` stores time: native, iso, unix_s, unix_ms, unix_us or julian_day (default: read off the column's type and values, and checked against them when stated).
            time_format: String,
            /// Wall-clock zone of a zone-less time column (`timestamp` without time zone, ISO text without offset); default `limits.tz`.
            column_tz: Tz,
            /// Allow a run that would delete every row of the table (refused by default).
            allow_all_rows: bool,
            /// The largest share of the table one run may delete (e.g. `0.3`); a run that would delete more is refused before its first batch.
            max_ratio: Ratio,
            /// `refuse` (default): a delete that would make the database delete or change rows of other tables through ON DELETE CASCADE / SET NULL / SET DEFAULT is refused. `allow`: it runs, the diff predicts those rows and the report and journal count them per batch.
            on_cascade: String,
            /// Inheritance children (`INHERITS`): `true` also processes each child, `ONLY` it, with its own columns (archive table `<archive>_<child>`, or the same file); default: the parent's own rows only.
            include_children: bool,
            /// SQLite: `off` (or false) runs the step's deletes with `PRAGMA foreign_keys = OFF`, for applications that run without enforcement: no cascade fires, referenced rows are deleted too, and the diff lists the orphans left (default `on`).
            sqlite_foreign_keys: bool,
            /// Eligible rows still referenced by RESTRICT / NO ACTION foreign keys: `skip` leaves and counts them (default), `fail` fails the step before its first batch.
            on_restrict: String,
        }
    }
}

/// A step that empties a table of more rows than this is refused unless
/// `allow_all_rows: true` (a handful may be a test table).
const ALL_ROWS_MIN: u64 = 10;

impl Retention {
    /// `where:` as the SQL parser rendered it: one expression, nothing
    /// around it (validation refused anything else).
    fn condition(&self, cx: &PlanCx<'_>) -> Option<String> {
        let w = get(&self.r#where)?;
        Some(crate::ops::sql::authorsql::condition(&w, Some(cx.backend)).unwrap_or(w))
    }
}

/// Case-insensitive, schema-blind comparison: `public.t` and `T` may be one table.
fn same_table(a: &Ident, b: &Ident) -> bool {
    let (sa, na) = a.parts();
    let (sb, nb) = b.parts();
    na.eq_ignore_ascii_case(nb)
        && (sa.is_none() || sb.is_none() || sa.map(str::to_ascii_lowercase) == sb.map(str::to_ascii_lowercase))
}

impl OpParams for Retention {
    const KEY: &'static str = "retention";
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        c.in_range(&self.batch_size, "batch_size", 1..=1_000_000);
        c.in_range(&self.max_rows, "max_rows", 1..=u64::MAX);
        crate::ops::throttle::Throttle::check(&self.throttle, c);
        if let Some(f) = &self.time_format
            && crate::ops::retention::timefmt::TimeFormat::parse(&f.value).is_none()
        {
            c.error(
                "invalid-value",
                f.pos,
                format!("`time_format: {}` is not a time format", f.value),
                &format!("one of {}", crate::ops::retention::timefmt::TimeFormat::NAMES),
            );
        }
        if let Some(f) = &self.sqlite_foreign_keys
            && c.backend == Some(Backend::Postgres)
        {
            c.error(
                "invalid-value",
                f.pos,
                "`sqlite_foreign_keys` applies to SQLite targets; PostgreSQL always enforces foreign keys".into(),
                "remove it",
            );
        }
        if let Some(r) = &self.on_cascade
            && !matches!(r.value.as_str(), "refuse" | "allow")
        {
            c.error(
                "invalid-value",
                r.pos,
                format!("`on_cascade: {}` is not a choice", r.value),
                "`refuse` (the default) or `allow`",
            );
        }
        if let Some(r) = &self.on_restrict
            && !matches!(r.value.as_str(), "skip" | "fail")
        {
            c.error(
                "invalid-value",
                r.pos,
                format!("`on_restrict: {}` is not a choice", r.value),
                "`skip` (leave referenced rows, counted) or `fail`",
            );
        }
        if let Some(w) = &self.r#where {
            if w.value.trim().is_empty() {
                c.error(
                    "invalid-value",
                    w.pos,
                    "`where` is empty".to_string(),
                    "remove it, or write a condition",
                );
            } else if let Err(p) = crate::ops::sql::authorsql::condition(&w.value, c.backend) {
                c.error("invalid-sql", w.pos, p.message, p.hint);
            }
        }
        let Some(archive) = &self.archive else { return };
        let a = &archive.value;
        match (&a.table, &a.file) {
            (Some(_), Some(file)) => c.error(
                "invalid-combination",
                file.pos,
                "`archive` takes `table` or `file`, not both".to_string(),
                "keep one of them",
            ),
            (None, None) => c.error(
                "missing-key",
                archive.pos,
                "`archive` names neither `table` nor `file`".to_string(),
                "write `archive: {table: <table>_archive}` or `archive: {file: archive/<table>.jsonl}`",
            ),
            (Some(t), None) if same_table(&t.value, &self.table.value) => {
                let step = c.step;
                let d = crate::plan::diag::Diag::error(
                    "archive-is-source",
                    format!(
                        "step `{step}` archives `{}` into itself: each batch would delete rows and insert them back",
                        t.value.0
                    ),
                )
                .at(t.pos, "archive table".to_string())
                .also(self.table.pos, "source table")
                .hint(format!("name another table, e.g. `{}_archive`", self.table.value.0));
                c.cx.error(d);
            }
            (None, Some(f)) if f.value.trim().is_empty() => c.error(
                "invalid-value",
                f.pos,
                "`archive.file` is empty".to_string(),
                "name a file, e.g. `archive/rows.jsonl`",
            ),
            _ => {}
        }
    }
}

/// Default rows per batch.
pub const DEFAULT_BATCH_SIZE: u64 = 10_000;

impl Retention {
    /// The rows older than this are eligible.
    pub fn cutoff(&self, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        let age = chrono::Duration::from_std(self.older_than.value.0).unwrap_or(chrono::Duration::MAX);
        now.checked_sub_signed(age)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
    }

    /// What the inspection must count for this step; `None` when the table
    /// or column is missing (planning then reports it).
    pub fn probe(&self, cx: &PlanCx<'_>, digest: bool) -> Vec<RetentionProbe> {
        // A table another step creates as its archive is probed through
        // that step's source, which has the same columns.
        let Some(t) = cx.table(&self.table.value).or_else(|| self.creator_source(cx)) else {
            return vec![];
        };
        let mut probes: Vec<RetentionProbe> = self
            .probe_table(cx, t, cx.step.id.clone(), digest)
            .into_iter()
            .collect();
        if get(&self.include_children).unwrap_or(false) {
            for c in descendants(cx, t) {
                probes.extend(self.probe_table(cx, c, child_key(&cx.step.id, c), digest));
            }
        }
        probes
    }

    /// The probe of one table: the step's own, or an inheritance child's
    /// (`include_children`) under `key`.
    fn probe_table(
        &self,
        cx: &PlanCx<'_>,
        t: &crate::run::inspect::TableFacts,
        key: String,
        digest: bool,
    ) -> Option<RetentionProbe> {
        let col = t.column(&self.column.value.0)?;
        Some(RetentionProbe {
            step: key,
            table: cx.quoted(t),
            column: quote_ident(&col.name),
            column_type: col.data_type.clone(),
            where_sql: self.condition(cx),
            cutoff: self.cutoff(cx.now),
            stated_format: get(&self.time_format).and_then(|f| crate::ops::retention::timefmt::TimeFormat::parse(&f)),
            zone: get(&self.column_tz).map_or(cx.plan.limits.tz.0, |z| z.0),
            children: {
                let mut c = Self::children(cx, t);
                if self.cascade_allowed() && !self.fk_off(cx) {
                    c.extend(Self::cascade_paths(cx, t));
                }
                c
            },
            cascade: self.cascade_allowed() && !self.fk_off(cx),
            only: !t.inheritance_children.is_empty(),
            partitioned: t.partitioned,
            digest_key: digest
                .then(|| batch_key(get(&self.key).map(|k| k.0), t, cx.backend).ok())
                .flatten()
                .map(|k| key_text_sql(cx.backend, &quote_key(&k))),
            guard_sql: self.guard(cx, t),
        })
    }

    /// The foreign keys that reference `t`, each ready to count.
    fn children(cx: &PlanCx<'_>, t: &crate::run::inspect::TableFacts) -> Vec<crate::ops::retention::facts::ChildProbe> {
        let parent = cx.quoted(t);
        cx.insp
            .foreign_keys
            .iter()
            .filter(|fk| fk.parent_schema == t.schema && fk.parent_table == t.name)
            .map(|fk| {
                let child = match cx.backend {
                    Backend::Postgres => quote_name(Some(&fk.child_schema), &fk.child_table),
                    Backend::Sqlite => quote_name(None, &fk.child_table),
                };
                let join = fk
                    .child_columns
                    .iter()
                    .zip(&fk.parent_columns)
                    .map(|(c, p)| format!("dbmaint_c.{} = {parent}.{}", quote_ident(c), quote_ident(p)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                crate::ops::retention::facts::ChildProbe {
                    label: format!(
                        "{}.{} → {}.{} ({})",
                        fk.child_table,
                        fk.child_columns.join(", "),
                        fk.parent_table,
                        fk.parent_columns.join(", "),
                        fk.name
                    ),
                    on_delete: fk.on_delete,
                    from: format!("{child} AS dbmaint_c"),
                    join,
                    self_ref: fk.child_schema == t.schema && fk.child_table == t.name,
                    via: vec![],
                    cycle: false,
                }
            })
            .collect()
    }

    /// `on_cascade: allow`: the keys further down every cascade, each with
    /// the path its rows are reached through (depth at most 4; a key that
    /// leads back to a table on its path is marked a cycle and not
    /// followed).
    fn cascade_paths(
        cx: &PlanCx<'_>,
        t: &crate::run::inspect::TableFacts,
    ) -> Vec<crate::ops::retention::facts::ChildProbe> {
        const MAX_DEPTH: usize = 4;
        let quoted = |schema: &str, table: &str| match cx.backend {
            Backend::Postgres => quote_name(Some(schema), table),
            Backend::Sqlite => quote_name(None, table),
        };
        // (probe, tables on its path) for every cascading key to expand.
        let mut todo: Vec<(crate::ops::retention::facts::ChildProbe, Vec<(String, String)>)> = Self::children(cx, t)
            .into_iter()
            .filter(|c| c.on_delete == crate::run::inspect::OnDelete::Cascade && !c.self_ref)
            .filter_map(|c| {
                let fk = cx
                    .insp
                    .foreign_keys
                    .iter()
                    .find(|fk| c.label.ends_with(&format!("({})", fk.name)))?;
                let path = vec![
                    (t.schema.clone(), t.name.clone()),
                    (fk.child_schema.clone(), fk.child_table.clone()),
                ];
                Some((c, path))
            })
            .collect();
        let mut out = vec![];
        while let Some((parent, path)) = todo.pop() {
            let depth = parent.via.len() + 2;
            if depth > MAX_DEPTH {
                continue;
            }
            let (ps, pt) = path.last().cloned().unwrap_or_default();
            let parent_alias = if parent.via.is_empty() {
                "dbmaint_c".to_string()
            } else {
                format!("dbmaint_c{}", depth - 1)
            };
            for fk in cx
                .insp
                .foreign_keys
                .iter()
                .filter(|fk| fk.parent_schema == ps && fk.parent_table == pt)
            {
                let alias = format!("dbmaint_c{depth}");
                let join = fk
                    .child_columns
                    .iter()
                    .zip(&fk.parent_columns)
                    .map(|(c, p)| format!("{alias}.{} = {parent_alias}.{}", quote_ident(c), quote_ident(p)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                let cycle = path.iter().any(|(s, n)| *s == fk.child_schema && *n == fk.child_table);
                let mut via = parent.via.clone();
                via.push((parent.from.clone(), parent.join.clone()));
                let probe = crate::ops::retention::facts::ChildProbe {
                    label: format!(
                        "{}.{} → {}.{} ({}), through {}",
                        fk.child_table,
                        fk.child_columns.join(", "),
                        fk.parent_table,
                        fk.parent_columns.join(", "),
                        fk.name,
                        path.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(" → ")
                    ),
                    on_delete: fk.on_delete,
                    from: format!("{} AS {alias}", quoted(&fk.child_schema, &fk.child_table)),
                    join,
                    self_ref: false,
                    via,
                    cycle,
                };
                if fk.on_delete == crate::run::inspect::OnDelete::Cascade && !cycle {
                    let mut next = path.clone();
                    next.push((fk.child_schema.clone(), fk.child_table.clone()));
                    todo.push((probe.clone(), next));
                }
                out.push(probe);
            }
        }
        out
    }

    /// SQLite with `sqlite_foreign_keys: off`: the step does not enforce
    /// foreign keys, as the application does not.
    fn fk_off(&self, cx: &PlanCx<'_>) -> bool {
        cx.backend == Backend::Sqlite && get(&self.sqlite_foreign_keys) == Some(false)
    }

    /// `on_cascade: allow`.
    fn cascade_allowed(&self) -> bool {
        get(&self.on_cascade).as_deref() == Some("allow")
    }

    /// Rows another row references are never deleted (see
    /// `RetentionProbe::guard_sql`), unless foreign keys are not enforced;
    /// with `on_cascade: allow` only keys that would block (RESTRICT, NO
    /// ACTION) guard, and cascading ones act.
    fn guard(&self, cx: &PlanCx<'_>, t: &crate::run::inspect::TableFacts) -> Option<String> {
        if self.fk_off(cx) {
            return None;
        }
        let allow = self.cascade_allowed();
        let parts: Vec<String> = Self::children(cx, t)
            .iter()
            .filter(|c| !(allow && c.on_delete.acts()))
            .map(|c| format!("NOT EXISTS (SELECT 1 FROM {} WHERE {})", c.from, c.join))
            .collect();
        (!parts.is_empty()).then(|| parts.join(" AND "))
    }

    /// The step's whole condition beyond the cutoff: `where:` and the guard.
    fn full_condition(&self, cx: &PlanCx<'_>, t: &crate::run::inspect::TableFacts) -> Option<String> {
        match (self.condition(cx), self.guard(cx, t)) {
            (Some(w), Some(g)) => Some(format!("({w}) AND {g}")),
            (w, g) => w.or(g),
        }
    }

    /// What `on_cascade: allow` still refuses: a self-reference that would
    /// reach rows that are not eligible themselves (replies younger than
    /// the cutoff of an old root), a key further down a cascade that would
    /// block it, and a cascade that comes back to a table on its path.
    fn cascade_refusal(
        &self,
        t: &crate::run::inspect::TableFacts,
        facts: &crate::ops::retention::facts::RetentionFacts,
    ) -> Option<String> {
        let name = &t.name;
        for c in facts.children.iter().filter(|c| c.on_delete.acts()) {
            if c.outside > 0 {
                return Some(format!(
                    "ON DELETE {} of {} would reach {} rows of `{name}` that are not older than the cutoff: refused always",
                    c.on_delete.sql(),
                    c.label,
                    human_count(c.outside)
                ));
            }
        }
        // Further down a cascade: a key that would block it fails the
        // batch (refused here instead), and a cycle is not predicted.
        for c in facts.children.iter().filter(|c| c.depth > 1 && c.rows > 0) {
            if c.cycle {
                return Some(format!(
                    "the cascade reaches {} rows through {}, a cycle back to a table it passed: not predicted; \
                     retain those tables with steps of their own first",
                    human_count(c.rows),
                    c.label
                ));
            }
            if !c.on_delete.acts() {
                return Some(format!(
                    "the cascade would be blocked by {} rows of {} (ON DELETE {}): the batch would fail; \
                     delete or detach those rows first",
                    human_count(c.rows),
                    c.label,
                    c.on_delete.sql()
                ));
            }
        }
        None
    }

    /// The source table of a retention step in the plan that archives into
    /// this step's table (and so creates it when missing).
    fn creator_source<'a>(&self, cx: &'a PlanCx<'_>) -> Option<&'a crate::run::inspect::TableFacts> {
        cx.plan
            .steps
            .values()
            .find_map(|s| match crate::ops::Operation::of(s.op.as_ref()) {
                crate::ops::Operation::Retention(r)
                    if r.archive
                        .as_ref()
                        .and_then(|a| a.value.table.as_ref())
                        .is_some_and(|a| same_table(&a.value, &self.table.value)) =>
                {
                    cx.table(&r.table.value)
                }
                _ => None,
            })
    }

    /// The quoted name an archive table has (or will have).
    fn archive_name(cx: &PlanCx<'_>, a: &Ident, source_schema: &str) -> String {
        let (schema, n) = a.parts();
        match cx.backend {
            Backend::Postgres => quote_name(Some(schema.unwrap_or(source_schema)), n),
            Backend::Sqlite => quote_name(None, n),
        }
    }

    pub fn plan(&self, cx: &PlanCx<'_>) -> Draft {
        if let Some(t) = cx.table(&self.table.value)
            && !(t.access.select && t.access.delete)
        {
            // Not counted: the count itself would be refused.
            let mut d = Draft::error(format!(
                "the plan's role may not read and delete rows of `{}`: nothing was counted; grant SELECT and DELETE on it (`dbmaint grants`)",
                cx.display(t)
            ));
            d.privileges.extend(cx.need_privileges(t, "SELECT, DELETE", false));
            return d;
        }
        let mut d = self.plan_table(cx, None);
        if let Some(t) = cx.table(&self.table.value) {
            d.privileges.extend(cx.need_privileges(t, "SELECT, DELETE", true));
        }
        if !get(&self.include_children).unwrap_or(false) {
            return d;
        }
        let Some(t) = cx.table(&self.table.value) else {
            return d;
        };
        // Each inheritance child is its own table, with its own columns:
        // its own statements (ONLY it), counts and archive.
        for c in descendants(cx, t) {
            let cd = self.plan_table(cx, Some(c));
            let child = format!("{}.{}", c.schema, c.name);
            d.errors.extend(
                cd.errors
                    .into_iter()
                    .map(|e| format!("inheritance child `{child}`: {e}")),
            );
            d.warnings.extend(
                cd.warnings
                    .into_iter()
                    .map(|w| format!("inheritance child `{child}`: {w}")),
            );
            d.objects.extend(cd.objects);
            d.statements.extend(cd.statements);
            d.actions.extend(cd.actions);
            if let Some(ce) = cd.estimate {
                let e = d.estimate.get_or_insert(Estimate::NONE);
                e.rows += ce.rows;
                e.archived += ce.archived;
                e.bytes += ce.bytes;
                if ce.fidelity != Fidelity::Exact {
                    e.fidelity = ce.fidelity;
                }
            }
            if !cd.no_op {
                d.no_op = false;
                d.summary = format!("{}; and {}", d.summary, cd.summary);
            }
        }
        d
    }

    /// Plans the step's own table (`child: None`) or one of its
    /// inheritance children (`include_children`).
    /// Where the step's deleted rows go (`archive:`), checked against the
    /// table: an archive table must hold every column without changing a
    /// value. Returns what the SQL needs, what the work needs, and the
    /// archive table's name with whether this run creates it.
    fn archive_target(
        &self,
        cx: &PlanCx<'_>,
        t: &crate::run::inspect::TableFacts,
        child: Option<&crate::run::inspect::TableFacts>,
    ) -> Result<ArchiveTarget, String> {
        let (name, step) = (&self.table_name(child), &cx.step.id);
        let mut archive = None;
        let mut archive_to = None;
        let mut archive_note = None;
        match get(&self.archive) {
            Some(Archive { table: Some(a), .. }) => {
                // A child archives into a table of its own columns.
                let a = match child {
                    Some(ct) => {
                        let (schema, n) = a.value.parts();
                        Ident(match schema {
                            Some(s) => format!("{s}.{n}_{}", ct.name),
                            None => format!("{n}_{}", ct.name),
                        })
                    }
                    None => a.value,
                };
                let found = cx.table(&a);
                if let Some(at) = found {
                    let missing: Vec<&str> = t
                        .columns
                        .iter()
                        .filter(|c| at.column(&c.name).is_none())
                        .map(|c| c.name.as_str())
                        .collect();
                    if !missing.is_empty() {
                        return Err(format!(
                            "archive table `{}` lacks columns of `{name}`: {} (step `{step}`); add them or archive elsewhere",
                            a.0,
                            missing.join(", ")
                        ));
                    }
                    // An archive that converts a value is a deleted row
                    // that cannot be restored as it was.
                    let narrowed: Vec<String> = t
                        .columns
                        .iter()
                        .filter_map(|c| {
                            let to = at.column(&c.name)?;
                            (!crate::ops::retention::archivetypes::keeps_values(
                                cx.backend,
                                &c.data_type,
                                &to.data_type,
                            ))
                            .then(|| format!("{} {} → {}", c.name, c.data_type, to.data_type))
                        })
                        .collect();
                    if !narrowed.is_empty() {
                        return Err(format!(
                            "archive table `{}` would change values of `{name}` (step `{step}`): {}; \
                                 give those archive columns the source's types (or a lossless widening: see docs/operations.md), \
                                 or archive into a new table",
                            a.0,
                            narrowed.join(", ")
                        ));
                    }
                }
                let quoted = match found {
                    Some(at) => cx.quoted(at),
                    None => Self::archive_name(cx, &a, &t.schema),
                };
                archive_note = Some((a.0.clone(), found.is_none()));
                archive_to = Some(ArchiveTo::Table { name: quoted.clone() });
                archive = Some(ArchiveSpec::Table {
                    name: quoted,
                    exists: found.is_some(),
                });
            }
            Some(Archive { file: Some(f), .. }) => {
                let f = f.value;
                archive_to = Some(ArchiveTo::File { path: f.clone() });
                archive = Some(ArchiveSpec::File { path: f });
            }
            _ => {}
        }
        Ok(ArchiveTarget {
            spec: archive,
            to: archive_to,
            note: archive_note,
        })
    }

    /// What else the deletes touch, shown before they run (safety.md rule
    /// 13): foreign keys into the table and what they do, their indexes,
    /// row-level security, DELETE triggers, rows still referenced.
    fn show_what_deletes_reach(
        &self,
        cx: &PlanCx<'_>,
        t: &crate::run::inspect::TableFacts,
        facts: &facts::RetentionFacts,
        name: &str,
        d: &mut Draft,
    ) {
        let step = &cx.step.id;
        let fk_off = self.fk_off(cx);
        for c in &facts.children {
            d.object(
                    match (c.rows > 0, fk_off, self.cascade_allowed() && c.on_delete.acts()) {
                        (true, true, _) => Marker::Change,
                        (true, false, true) if c.on_delete == crate::run::inspect::OnDelete::Cascade => Marker::Remove,
                        (true, false, true) => Marker::Change,
                        _ => Marker::Read,
                    },
                    "foreign key",
                    c.label.clone(),
                    if fk_off {
                        format!(
                            "ON DELETE {} not enforced (sqlite_foreign_keys: off): {} rows would be left referencing deleted rows (orphans)",
                            c.on_delete.sql(),
                            human_count(c.rows)
                        )
                    } else if self.cascade_allowed() && c.on_delete == crate::run::inspect::OnDelete::Cascade {
                        format!(
                            "ON DELETE CASCADE (on_cascade: allow): {} rows deleted with the rows they reference",
                            human_count(c.rows)
                        )
                    } else if self.cascade_allowed() && c.on_delete.acts() {
                        format!(
                            "ON DELETE {} (on_cascade: allow): {} rows changed",
                            c.on_delete.sql(),
                            human_count(c.rows)
                        )
                    } else {
                        format!(
                            "ON DELETE {}: {} referencing rows; rows still referenced are not deleted",
                            c.on_delete.sql(),
                            human_count(c.rows)
                        )
                    },
                    serde_json::json!({"on_delete": c.on_delete, "referencing_rows": c.rows, "orphans": fk_off}),
                );
        }
        // SQLite enforces foreign keys per connection: the file cannot say
        // whether the application does.
        if cx.backend == Backend::Sqlite && !facts.children.is_empty() && !fk_off {
            d.warnings.push(format!(
                "SQLite foreign keys are enforced by this step (PRAGMA foreign_keys=ON, sqlx's default), as counted \
                     above; if the application runs with them off, set `sqlite_foreign_keys: off` on step `{step}` \
                     to delete as it would (no cascade; referenced rows deleted, orphans listed)"
            ));
        }
        // The guard looks each deleted row up in every referencing table:
        // without an index on the referencing columns that is a scan of the
        // child table per batch.
        for fk in cx
            .insp
            .foreign_keys
            .iter()
            .filter(|fk| fk.parent_schema == t.schema && fk.parent_table == t.name)
        {
            let indexed = cx
                .insp
                .table(Some(&fk.child_schema), &fk.child_table)
                .is_some_and(|c| fk.child_columns.first().is_some_and(|col| c.has_index_on(col)));
            if !indexed {
                d.warnings.push(format!(
                        "no index on `{}` ({}), which references `{name}`: every batch reads `{}` whole to check that no row references the rows it deletes; add an index on {}({})",
                        fk.child_table,
                        fk.child_columns.join(", "),
                        fk.child_table,
                        fk.child_table,
                        fk.child_columns.join(", ")
                    ));
            }
        }
        if facts.rls_applies {
            d.warnings.push(format!(
                    "row-level security on `{name}` applies to this role: rows its policies hide are neither counted nor deleted, \
                     and stay; run as the table's owner or a role with BYPASSRLS to include them"
                ));
        }
        for tr in &t.delete_triggers {
            let what = tr.reads.describe();
            d.object(
                Marker::Read,
                "trigger",
                format!("{name}.{}", tr.name),
                format!(
                    "{} DELETE{}{}: fires for the rows this step deletes; {what}",
                    tr.timing,
                    if tr.per_row {
                        " FOR EACH ROW"
                    } else {
                        " FOR EACH STATEMENT"
                    },
                    if tr.function.is_empty() {
                        String::new()
                    } else {
                        format!(" → {}", tr.function)
                    }
                ),
                serde_json::json!({
                    "timing": tr.timing, "per_row": tr.per_row, "function": tr.function,
                    "writes": tr.reads.writes, "may_keep_rows": tr.reads.may_keep_rows,
                    "may_fail": tr.reads.may_fail, "dynamic_sql": tr.reads.dynamic_sql,
                }),
            );
            if !tr.reads.writes.is_empty() {
                d.warnings.push(format!(
                    "trigger `{}` on `{name}` also writes {} for each deleted row: those changes are not in this diff",
                    tr.name,
                    tr.reads.writes.join(", ")
                ));
            }
        }
        if facts.referenced > 0 && get(&self.on_restrict).as_deref() == Some("fail") {
            d.errors.push(format!(
                "{} eligible rows of `{name}` are still referenced by other rows (on_restrict: fail): \
                     delete or detach the referencing rows first, or set `on_restrict: skip` to leave them",
                human_count(facts.referenced)
            ));
        } else if facts.referenced > 0 {
            d.warnings.push(format!(
                "{} eligible rows of `{name}` are still referenced by other rows and stay (counted, not deleted)",
                human_count(facts.referenced)
            ));
        }
    }

    /// The tables around the one the step deletes from: partitions a
    /// `partitions` step would drop whole, how the name resolved, and
    /// inheritance children (processed, or not touched and why).
    fn show_related_tables(
        &self,
        cx: &PlanCx<'_>,
        t: &crate::run::inspect::TableFacts,
        child: Option<&crate::run::inspect::TableFacts>,
        facts: &facts::RetentionFacts,
        name: &str,
        d: &mut Draft,
    ) {
        for part in &facts.partitions {
            let whole = part.rows > 0 && part.eligible >= part.rows;
            d.object(
                Marker::Remove,
                "partition",
                part.name.clone(),
                format!(
                    "{} of its ~{} rows{}",
                    human_count(part.eligible),
                    human_count(part.rows),
                    if whole {
                        ": every row is eligible — detaching and dropping this partition would be instant where \
                             this deletes it row by row"
                    } else {
                        ""
                    }
                ),
                serde_json::json!({"eligible_rows": part.eligible, "rows": part.rows, "whole": whole}),
            );
        }
        if let Some(note) = cx.resolution(&self.table.value, t).filter(|_| child.is_none()) {
            d.object(
                Marker::Read,
                "name",
                self.table.value.0.clone(),
                note,
                serde_json::json!({"schema": t.schema, "search_path": cx.insp.search_path}),
            );
        }
        let with_children = get(&self.include_children).unwrap_or(false);
        for ic in &t.inheritance_children {
            if with_children {
                d.object(
                    Marker::Read,
                    "inheritance child",
                    ic.clone(),
                    "processed too (include_children), ONLY it, with its own columns: see its lines".to_string(),
                    serde_json::json!({"touched": true}),
                );
            } else {
                d.object(
                    Marker::Read,
                    "inheritance child",
                    ic.clone(),
                    format!(
                        "not touched: rows are counted and deleted in `{name}` itself only (DELETE FROM ONLY); \
                             set `include_children: true`, or give `{ic}` a step of its own"
                    ),
                    serde_json::json!({"touched": false}),
                );
            }
        }
    }

    /// The step's first line, and the refusals of a delete too large to be
    /// meant: every row (`allow_all_rows`), or more than `max_ratio`.
    fn summarize(
        &self,
        cx: &PlanCx<'_>,
        facts: &facts::RetentionFacts,
        z: &Sizing,
        archive_to: &Option<ArchiveTo>,
        name: &str,
        d: &mut Draft,
    ) {
        let step = &cx.step.id;
        let Sizing {
            rows,
            batches,
            batch_size,
            approx,
            share,
            table_rows,
            windowed,
        } = *z;
        d.no_op = rows == 0;
        let verb = match &archive_to {
            Some(ArchiveTo::Table { .. }) => "archive and delete",
            Some(ArchiveTo::File { .. }) => "archive to file and delete",
            None => "delete",
        };
        d.summary = if d.no_op {
            format!("no rows older than {} in `{name}`", self.older_than.value)
        } else {
            let how = if windowed {
                // Windows of keys: as many batches as windows holding rows.
                format!(
                    "key windows of {} (at least {} batch{})",
                    human_count(batch_size),
                    human_count(batches),
                    if batches == 1 { "" } else { "es" }
                )
            } else {
                format!(
                    "{} of {}",
                    crate::run::execplan::counted(batches, "batch", "batches"),
                    human_count(batch_size)
                )
            };
            format!(
                "{verb} {approx}{} rows older than {} from `{name}` in {how}",
                human_count(rows),
                self.older_than.value,
            )
        };
        // Emptying a table is almost always a wrong cutoff or a wrong unit
        // (a Julian-day column read as seconds emptied one): say it on the
        // step's first line and refuse unless the plan says it is meant.
        if facts.all_rows && rows > ALL_ROWS_MIN {
            d.summary = format!("ALL ROWS: {}", d.summary);
            if !get(&self.allow_all_rows).unwrap_or(false) {
                d.errors.push(format!(
                        "this would delete every row of `{name}` ({} rows): refused; if that is meant, set `allow_all_rows: true` on step `{step}`",
                        human_count(rows)
                    ));
            }
        }
        if let (Some(cap), Some(share)) = (get(&self.max_ratio), share)
            && share > cap.0
        {
            d.errors.push(format!(
                "this would delete {:.1}% of `{name}` ({} of {}{} rows), more than `max_ratio: {}` allows: refused \
                     before any batch; check the cutoff, or raise `max_ratio` on step `{step}`",
                share * 100.0,
                human_count(rows),
                if facts.table_rows_exact { "" } else { "~" },
                human_count(table_rows),
                cap.0
            ));
        }
    }

    /// The table's name as the diff shows it: the plan's, or a child's.
    fn table_name(&self, child: Option<&crate::run::inspect::TableFacts>) -> String {
        match child {
            Some(ct) => format!("{}.{}", ct.schema, ct.name),
            None => self.table.value.0.clone(),
        }
    }

    fn plan_table(&self, cx: &PlanCx<'_>, child: Option<&crate::run::inspect::TableFacts>) -> Draft {
        let step = &cx.step.id;
        let name_owned = self.table_name(child);
        let name = &name_owned;
        // The table may be an archive that an upstream step of this run creates.
        let created_by = self.creator_source(cx).filter(|_| child.is_none()).and_then(|src| {
            let quoted = Self::archive_name(cx, &self.table.value, &src.schema);
            cx.upstream
                .iter()
                .find(|u| u.creates.as_deref() == Some(quoted.as_str()))
                .map(|u| {
                    let mut t = src.clone();
                    t.name = self.table.value.parts().1.to_string();
                    t.indexes.retain(|i| i.primary);
                    (t, u.step.clone())
                })
        });
        let found = match child {
            Some(ct) => Some(ct),
            None => cx.table(&self.table.value).or(created_by.as_ref().map(|(t, _)| t)),
        };
        let Some(t) = found else {
            if let Some(e) = cx.not_a_table(
                &self.table.value,
                "retention deletes rows of a table; name the table it reads from",
            ) {
                return Draft::error(format!("{e} (step `{step}`)"));
            }
            let known: Vec<&str> = cx.insp.tables.iter().map(|t| t.name.as_str()).collect();
            let hint = did_you_mean(self.table.value.parts().1, known.iter().copied())
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            return Draft::error(format!(
                "table `{name}` of step `{step}` does not exist in the target{hint}: fix `table`, or disable the step for this environment"
            ));
        };
        let column = &self.column.value.0;
        let Some(col) = t.column(column) else {
            let hint = did_you_mean(column, t.columns.iter().map(|c| c.name.as_str()))
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            return Draft::error(format!("table `{name}` has no column `{column}` (step `{step}`){hint}"));
        };
        let key = match batch_key(get(&self.key).map(|k| k.0), t, cx.backend) {
            Ok(k) => k,
            Err(e) => return Draft::error(format!("{e} (step `{step}`)")),
        };
        let facts_key = child.map_or_else(|| step.clone(), |ct| child_key(step, ct));
        let Some(facts) = cx.insp.fact::<facts::RetentionFacts>(&facts_key) else {
            return Draft::error(format!("no row count for step `{step}` in the inspection"));
        };
        if let Some(e) = &facts.format_error {
            return Draft::error(format!(
                "cannot tell how `{name}.{column}` stores time, so no row is deleted: {e} (step `{step}`); \
                 `time_format:` states it ({})",
                crate::ops::retention::timefmt::TimeFormat::NAMES
            ));
        }
        let acting: Vec<String> = facts
            .children
            .iter()
            .filter(|c| c.on_delete.acts() && c.rows > 0)
            .map(|c| {
                format!(
                    "{} rows of {} (ON DELETE {})",
                    human_count(c.rows),
                    c.label,
                    c.on_delete.sql()
                )
            })
            .collect();
        if !acting.is_empty() && !self.fk_off(cx) && !self.cascade_allowed() {
            return Draft::error(format!(
                "deleting these rows of `{name}` would make the database change rows it references from: {} \
                 (step `{step}`, on_cascade: refuse); delete or detach those rows first, e.g. a retention step on \
                 the child table that this step `needs`",
                acting.join("; ")
            ));
        }
        if self.cascade_allowed()
            && !self.fk_off(cx)
            && let Some(e) = self.cascade_refusal(t, facts)
        {
            return Draft::error(format!("{e} (step `{step}`, on_cascade: allow)"));
        }
        let mut facts = facts.clone();
        if let Some((_, creator)) = &created_by {
            // Counted in the source: rows the creator moves that are also old
            // enough here. An estimate until the table exists.
            facts.exact = false;
            facts.rows = facts
                .rows
                .min(cx.upstream.iter().filter(|u| &u.step == creator).map(|u| u.rows).sum());
        }
        let mut d = Draft {
            marker: Some(Marker::Remove),
            lock: "ROW EXCLUSIVE (rows of one batch at a time)".into(),
            transactional: true,
            compensation: "a failed batch rolls back whole (rows stay in the source, none reach the archive); \
                           committed batches are in the journal"
                .into(),
            ..Draft::default()
        };
        let key_quoted = quote_key(&key);
        let ArchiveTarget {
            spec: archive,
            to: archive_to,
            note: archive_note,
        } = match self.archive_target(cx, t, child) {
            Ok(a) => a,
            Err(e) => return Draft::error(e),
        };
        let max_rows = get(&self.max_rows);
        // No batch starts that could pass `max_rows`, so a batch never exceeds it.
        let batch_size = get(&self.batch_size)
            .unwrap_or(DEFAULT_BATCH_SIZE)
            .min(max_rows.unwrap_or(u64::MAX));
        let spec = RetentionSpec {
            table: cx.quoted(t),
            column: quote_ident(&col.name),
            column_type: col.data_type.clone(),
            key: key_quoted,
            where_sql: self.full_condition(cx, t),
            batch_size,
            columns: t
                .columns
                .iter()
                .map(|c| (quote_ident(&c.name), c.data_type.clone()))
                .collect(),
            primary_key: t.primary_key.iter().map(|c| quote_ident(c)).collect(),
            archive,
            cutoff_cast: match facts.format {
                Some(crate::ops::retention::timefmt::TimeFormat::JulianDay) => Some("REAL"),
                Some(f) if f.is_numeric() => Some("INTEGER"),
                _ => None,
            },
            only: !t.inheritance_children.is_empty(),
            check_left: facts.rls_applies || !t.delete_triggers.is_empty(),
            cascades: if self.cascade_allowed() && !self.fk_off(cx) {
                Self::children(cx, t)
                    .into_iter()
                    .chain(Self::cascade_paths(cx, t))
                    // A self-reference reaches only eligible rows (else the
                    // step is refused), which the walk deletes itself.
                    .filter(|c| c.on_delete.acts() && !c.self_ref && !c.cycle)
                    .map(|c| crate::ops::retention::sql::CascadeSpec {
                        label: c.label,
                        on_delete: c.on_delete.sql().to_string(),
                        from: c.from,
                        join: c.join,
                        via: c.via,
                    })
                    .collect()
            } else {
                vec![]
            },
        };
        let sql = retention_sql(cx.backend, &spec);
        // Exact: batches never take more than what is left of `max_rows`.
        let rows = max_rows.map_or(facts.rows, |m| facts.rows.min(m));
        let batches = rows.div_ceil(batch_size);
        let per_row = t.total_bytes.checked_div(t.live_tuples).unwrap_or(0);
        let approx = if facts.exact { "" } else { "~" };
        let cutoff_shown = &facts.cutoff;
        let range = match (&facts.oldest, &facts.newest) {
            (Some(o), Some(n)) => format!(", oldest {o}, newest {n}"),
            _ => String::new(),
        };
        let where_note = self.condition(cx).map(|w| format!(" AND ({w})")).unwrap_or_default();
        // The share of the table this run deletes. A stale planner figure
        // may be below the eligible rows: the table has at least those.
        let table_rows = facts.table_rows.max(facts.rows);
        let share = (table_rows > 0).then(|| rows as f64 / table_rows as f64);
        let share_note = share
            .map(|r| {
                format!(
                    " ({:.1}% of {}{} rows)",
                    r * 100.0,
                    if facts.table_rows_exact { "" } else { "~" },
                    human_count(table_rows)
                )
            })
            .unwrap_or_default();
        d.object(
            Marker::Remove,
            "table",
            cx.display(t),
            format!(
                "{approx}{} rows{share_note} where {column} < {cutoff_shown}{where_note}{range}{}",
                human_count(rows),
                if max_rows.is_some_and(|m| facts.rows > m) {
                    format!(" (capped by max_rows; {} eligible)", human_count(facts.rows))
                } else {
                    String::new()
                }
            ),
            serde_json::json!({
                "rows": rows, "eligible_rows": facts.rows, "exact": facts.exact, "cutoff": facts.cutoff,
                "table_rows": facts.table_rows, "table_rows_exact": facts.table_rows_exact,
                "oldest": facts.oldest, "newest": facts.newest, "batches": batches, "batch_size": batch_size,
            }),
        );
        self.show_related_tables(cx, t, child, &facts, name, &mut d);
        let fk_off = self.fk_off(cx);
        self.show_what_deletes_reach(cx, t, &facts, name, &mut d);
        if let Some(f) = facts.format {
            d.object(
                Marker::Read,
                "column",
                format!("{name}.{column}"),
                format!(
                    "holds {}{}; cutoff {cutoff_shown}{}; {} rows with NULL here (never deleted)",
                    f.describe(),
                    if col.data_type.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", col.data_type)
                    },
                    facts
                        .zone
                        .as_ref()
                        .map(|z| format!(", compared as wall-clock time in {z}"))
                        .unwrap_or_default(),
                    human_count(facts.nulls)
                ),
                serde_json::json!({"time_format": f, "cutoff": facts.cutoff, "zone": facts.zone, "nulls": facts.nulls}),
            );
        }
        if let Some((_, creator)) = &created_by {
            d.warnings.push(format!(
                "`{name}` is created by step `{creator}` in this run: rows estimated from its source; counted exactly when it exists"
            ));
        } else if !t.has_index_on(&col.name) {
            d.warnings.push(format!(
                "no index on `{name}.{column}`: counting and each batch scan the table; consider an index on `{column}`"
            ));
        }
        show_archive(&mut d, &archive_to, &archive_note, name, approx, rows);
        if rows > 0 {
            d.statements.extend(sql.create_archive.iter().cloned());
        }
        d.statements.push(sql.count.clone());
        match &sql.batch {
            BatchSql::Window { statement, left, .. } => {
                d.statements.push(statement.clone());
                d.statements.extend(left.iter().cloned());
            }
            BatchSql::Ranged {
                bound_next,
                copy,
                delete,
                ..
            } => {
                d.statements.push(bound_next.clone());
                d.statements.extend(copy.iter().cloned());
                d.statements.push(delete.clone());
            }
        }
        let sizing = Sizing {
            rows,
            batches,
            batch_size,
            approx,
            share,
            table_rows,
            windowed: matches!(sql.batch, BatchSql::Window { .. }),
        };
        self.summarize(cx, &facts, &sizing, &archive_to, name, &mut d);
        d.estimate = Some(Estimate {
            rows,
            bytes: rows * per_row,
            fidelity: if facts.exact {
                Fidelity::Exact
            } else {
                Fidelity::Estimate
            },
            archived: if archive_to.is_some() { rows } else { 0 },
        });
        let throttle = crate::ops::throttle::Throttle::plan(&self.throttle, cx, &mut d, "batches");
        d.actions.push(Action::op(
            <Retention as OpParams>::KEY,
            &RetentionWork {
                table: spec.table.clone(),
                cutoff: facts.cutoff.clone(),
                batch_size,
                max_rows,
                pause_ms: get(&self.pause).map_or(0, |p| p.0.as_millis() as u64),
                throttle,
                create_archive: sql.create_archive,
                count: sql.count,
                archive: archive_to,
                batch: sql.batch,
                eligible_digest: facts.digest.clone(),
                planned_rows: facts.rows,
                cascades: sql.cascades,
                foreign_keys_off: fk_off,
            },
        ));
        d
    }
}

/// A retention step's figures, decided once and shown on several lines.
#[derive(Debug, Clone, Copy)]
struct Sizing {
    /// Rows this run deletes (eligible, capped by `max_rows`).
    rows: u64,
    batches: u64,
    batch_size: u64,
    /// `~` when the rows are an estimate.
    approx: &'static str,
    /// The share of the table's rows, when it has any.
    share: Option<f64>,
    table_rows: u64,
    /// Batches are windows of keys (as many as windows holding rows).
    windowed: bool,
}

/// Where a step's deleted rows go, as [`Retention::archive_target`] decided.
struct ArchiveTarget {
    spec: Option<ArchiveSpec>,
    to: Option<ArchiveTo>,
    /// The archive table's name and whether this run creates it.
    note: Option<(String, bool)>,
}

/// The archive's line in the diff: the table created and filled, or the
/// file written.
fn show_archive(
    d: &mut Draft,
    archive_to: &Option<ArchiveTo>,
    archive_note: &Option<(String, bool)>,
    name: &str,
    approx: &str,
    rows: u64,
) {
    match (&archive_to, &archive_note) {
        (Some(ArchiveTo::Table { .. }), Some((a, created))) => {
            if *created && rows > 0 {
                d.object(
                    Marker::Create,
                    "table",
                    a.clone(),
                    format!("created with the columns and primary key of `{name}`"),
                    serde_json::json!({"created": true}),
                );
            }
            d.object(
                Marker::Change,
                "table",
                a.clone(),
                format!("+{approx}{} archived rows", human_count(rows)),
                serde_json::json!({"rows": rows}),
            );
        }
        (Some(ArchiveTo::File { path }), _) => d.object(
            Marker::Create,
            "file",
            path.clone(),
            format!(
                "+{approx}{} rows as JSON Lines, fsynced before each batch's delete",
                human_count(rows)
            ),
            serde_json::json!({"rows": rows}),
        ),
        _ => {}
    }
}

/// Every inheritance descendant of `t` (children, their children …), each
/// once, parents first.
fn descendants<'a>(
    cx: &'a PlanCx<'_>,
    t: &crate::run::inspect::TableFacts,
) -> Vec<&'a crate::run::inspect::TableFacts> {
    let mut out: Vec<&crate::run::inspect::TableFacts> = vec![];
    let mut todo: Vec<String> = t.inheritance_children.clone();
    while let Some(full) = todo.first().cloned() {
        todo.remove(0);
        let (schema, name) = full.split_once('.').unwrap_or(("", full.as_str()));
        if let Some(c) = cx.insp.table(Some(schema), name)
            && !out.iter().any(|o| o.schema == c.schema && o.name == c.name)
        {
            todo.extend(c.inheritance_children.iter().cloned());
            out.push(c);
        }
    }
    out
}

/// The inspection key of an inheritance child's facts within a step.
fn child_key(step: &str, t: &crate::run::inspect::TableFacts) -> String {
    format!("{step}#{}.{}", t.schema, t.name)
}

/// Key columns quoted for SQL (`rowid` stays bare).
fn quote_key(key: &[(String, String)]) -> Vec<(String, String)> {
    key.iter()
        .map(|(k, ty)| {
            let q = if k == "rowid" { k.clone() } else { quote_ident(k) };
            (q, ty.clone())
        })
        .collect()
}

/// The batch key of `t` as (column, type) pairs: `key:` when stated (it
/// must be unique and NOT NULL, or batches would skip rows and overshoot
/// `max_rows`), else the primary key — any number of columns, compared as
/// a row value — else SQLite's rowid. On a SQLite rowid table an integer
/// primary key is the rowid itself, and any other key (text, or typeless
/// `id PRIMARY KEY`, which may even hold NULLs) gives way to the rowid.
pub(crate) fn batch_key(
    stated: Option<String>,
    t: &crate::run::inspect::TableFacts,
    backend: Backend,
) -> Result<Vec<(String, String)>, String> {
    let name = &t.name;
    let rowid = backend == Backend::Sqlite && !t.without_rowid;
    let usable = || -> String {
        if !t.primary_key.is_empty() {
            return format!("the primary key ({})", t.primary_key.join(", "));
        }
        if rowid {
            return "`rowid` (or leave `key:` out)".into();
        }
        t.indexes
            .iter()
            .filter(|i| i.unique && i.valid && !i.partial && i.columns.len() == 1)
            .find(|i| t.column(&i.columns[0]).is_some_and(|c| c.not_null))
            .map_or(
                "none: add a primary key or a unique index on a NOT NULL column".into(),
                |i| format!("`key: {}`", i.columns[0]),
            )
    };
    if let Some(k) = stated {
        if rowid && k.eq_ignore_ascii_case("rowid") && t.column(&k).is_none() {
            return Ok(vec![("rowid".into(), "INTEGER".into())]);
        }
        let Some(c) = t.column(&k) else {
            return Err(format!("table `{name}` has no column `{k}` for `key`"));
        };
        let unique = t
            .indexes
            .iter()
            .any(|i| (i.unique || i.primary) && i.valid && !i.partial && i.columns == [c.name.clone()])
            || t.primary_key == [c.name.clone()];
        if !unique {
            return Err(format!(
                "`key: {k}` is not unique in `{name}` (no unique index on it alone): batches would cut through \
                 rows sharing a key and overshoot `max_rows`; usable key: {}",
                usable()
            ));
        }
        if !c.not_null {
            return Err(format!(
                "`key: {k}` may be NULL in `{name}`: rows with a NULL key would never be reached; \
                 declare it NOT NULL; usable key: {}",
                usable()
            ));
        }
        return Ok(vec![(c.name.clone(), c.data_type.clone())]);
    }
    let pk: Vec<&crate::run::inspect::Column> = t.primary_key.iter().filter_map(|p| t.column(p)).collect();
    if pk.len() != t.primary_key.len() {
        return Err(format!("a primary key column of `{name}` was not found"));
    }
    match pk.as_slice() {
        [c] if rowid && !c.data_type.to_ascii_uppercase().contains("INT") => {
            Ok(vec![("rowid".into(), "INTEGER".into())])
        }
        [] if rowid => Ok(vec![("rowid".into(), "INTEGER".into())]),
        [] => Err(format!(
            "table `{name}` has no primary key: batches need a unique, NOT NULL key; usable key: {}",
            usable()
        )),
        // A composite key on a rowid table: the rowid orders batches with
        // one integer.
        [_, _, ..] if rowid => Ok(vec![("rowid".into(), "INTEGER".into())]),
        cols => Ok(cols.iter().map(|c| (c.name.clone(), c.data_type.clone())).collect()),
    }
}

impl crate::run::operation::Operation for Retention {
    /// The size of its table (and of its inheritance children): bytes per
    /// row for the estimate of what the deletes free.
    fn measures(&self) -> crate::db::catalog::Measure {
        let name = match self.table.value.parts() {
            (Some(schema), name) => format!("{schema}.{name}"),
            (None, name) => name.to_string(),
        };
        crate::db::catalog::Measure::Named(vec![name])
    }

    /// The eligible rows of the table (and of each inheritance child with
    /// `include_children`), counted in the inspection's snapshot.
    fn probe<'a>(
        &'a self,
        cx: &'a PlanCx<'a>,
        digest: bool,
        conn: &'a mut crate::db::Conn,
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<(String, crate::run::operation::Fact)>, crate::db::DbError>>
    {
        Box::pin(async move {
            let mut out: Vec<(String, crate::run::operation::Fact)> = vec![];
            // A table the role may not read is not counted (the plan says
            // which privilege is missing) rather than failing the diff.
            if cx.table(&self.table.value).is_some_and(|t| !t.access.select) {
                return Ok(out);
            }
            for p in Retention::probe(self, cx, digest) {
                let facts = probe(conn, &p).await?;
                out.push((p.step.clone(), std::sync::Arc::new(facts)));
            }
            Ok(out)
        })
    }

    /// The plan, and what it leaves for the steps that need it: the rows it
    /// removes from each table, the archive table it creates.
    fn plan(&self, cx: &PlanCx) -> Draft {
        let mut d = Retention::plan(self, cx);
        let rows = d.estimate.map_or(0, |e| e.rows);
        let works: Vec<RetentionWork> = d
            .actions
            .iter()
            .filter_map(|a| a.work::<RetentionWork>(<Retention as OpParams>::KEY))
            .collect();
        d.leaves = works
            .iter()
            .map(|w| crate::run::planner::Upstream {
                step: String::new(),
                table: w.table.clone(),
                rows,
                creates: match (&w.archive, w.create_archive.is_empty()) {
                    (Some(ArchiveTo::Table { name }), false) => Some(name.clone()),
                    _ => None,
                },
            })
            .collect();
        // Progress counts batches: the rows over the batch size.
        d.units = Some(works.iter().map(|w| rows.div_ceil(w.batch_size.max(1))).sum());
        d
    }
}

/// A retention key as text, in the backend's key form (see
/// `work::RetentionWork::count`).
pub fn key_text_sql(backend: Backend, key: &[(String, String)]) -> String {
    match backend {
        Backend::Postgres => pg::key_text(key),
        Backend::Sqlite => sqlite::key_text(key),
    }
}

/// Writes a retention step's statements in the backend's dialect.
pub fn retention_sql(backend: Backend, spec: &sql::RetentionSpec) -> sql::RetentionSql {
    match backend {
        Backend::Postgres => pg::retention_sql(spec),
        Backend::Sqlite => sqlite::retention_sql(spec),
    }
}

/// A retention step's counts, in the inspection's snapshot.
pub async fn probe(
    c: &mut crate::db::Conn,
    p: &facts::RetentionProbe,
) -> Result<facts::RetentionFacts, crate::db::DbError> {
    match c.backend() {
        Backend::Postgres => pg::probe(c, p).await,
        Backend::Sqlite => sqlite::probe(c, p).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn archive_into_the_source_table_is_an_error() {
        let y = "{table: failed_task, column: deleted_at, older_than: 1d, archive: {table: public.FAILED_TASK}}";
        assert_eq!(findings::<Retention>(y, Backend::Postgres), ["archive-is-source"]);
    }

    #[test]
    fn batch_size_must_be_sane() {
        let y = "{table: t, column: c, older_than: 1d, batch_size: 0}";
        assert_eq!(findings::<Retention>(y, Backend::Postgres), ["out-of-range"]);
        let y = "{table: t, column: c, older_than: 1d, batch_size: 5000, archive: {file: a.jsonl}, where: \"status = 'x'\"}";
        assert!(findings::<Retention>(y, Backend::Postgres).is_empty());
    }

    #[test]
    fn missing_required_keys_are_each_reported() {
        assert_eq!(
            findings::<Retention>("{table: t}", Backend::Postgres),
            ["missing-key", "missing-key"]
        );
    }
}
