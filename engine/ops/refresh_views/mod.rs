//! `refresh_views`: `REFRESH MATERIALIZED VIEW [CONCURRENTLY]` (PostgreSQL only).

pub mod pg;

/// Materialized views (PostgreSQL; SQLite has none).
pub async fn matviews(c: &mut crate::db::Conn) -> Result<Vec<MatView>, crate::db::DbError> {
    match c.backend() {
        Backend::Postgres => pg::matviews(c).await,
        Backend::Sqlite => Ok(vec![]),
    }
}

use super::{OpCheck, OpParams, get, globs};
use crate::db::quote_name;
use crate::plan::values::{Backend, NameGlob};
use crate::run::execplan::{Marker, human_bytes};
use crate::run::planner::{Draft, PlanCx, matches_any, unmatched};

crate::params! {
    /// Parameters of `refresh_views`.
    pub struct RefreshViews ("refresh_views parameters") {
        required {}
        optional {
            /// Materialized views to refresh (globs); default all.
            views: Vec<NameGlob>,
            /// Views to leave out (globs).
            exclude: Vec<NameGlob>,
            /// `CONCURRENTLY` (default true): needs a unique index on the view; readers are not blocked.
            concurrently: bool,
            /// Acknowledges a non-concurrent refresh blocks readers of the view.
            allow_exclusive_lock: bool,
        }
    }
}

impl OpParams for RefreshViews {
    const KEY: &'static str = "refresh_views";
    const BACKENDS: &'static [Backend] = &[Backend::Postgres];

    fn check(&self, c: &mut OpCheck<'_>) {
        super::reindex::exclusive_unless_concurrent(
            c,
            &self.concurrently,
            &self.allow_exclusive_lock,
            "REFRESH MATERIALIZED VIEW",
        );
    }
}

impl RefreshViews {
    pub fn plan(&self, cx: &PlanCx<'_>) -> Draft {
        let concurrently = get(&self.concurrently).unwrap_or(true);
        let mut d = Draft {
            marker: Some(Marker::Change),
            lock: if concurrently {
                "EXCLUSIVE on each view (CONCURRENTLY: its readers go on)".into()
            } else {
                "ACCESS EXCLUSIVE on each view: its readers wait until its refresh commits".into()
            },
            transactional: true,
            compensation: "a failed refresh rolls back: the view keeps its old rows".into(),
            ..Draft::default()
        };
        let views = match cx.insp.fact::<Result<Vec<MatView>, String>>(MATVIEWS) {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Draft::error(format!("listing materialized views failed: {e}")),
            None => return Draft::error("no materialized views in the inspection".into()),
        };
        let include: Vec<String> = globs(&self.views).into_iter().map(|g| g.0).collect();
        let exclude: Vec<String> = globs(&self.exclude).into_iter().map(|g| g.0).collect();
        let names: Vec<String> = views.iter().map(|v| format!("{}.{}", v.schema, v.name)).collect();
        unmatched("materialized view", "views", &include, &names, &mut d);
        unmatched("materialized view", "exclude", &exclude, &names, &mut d);
        let selected: Vec<&MatView> = views
            .iter()
            .filter(|v| {
                let full = format!("{}.{}", v.schema, v.name);
                matches_any(&include, &full) && (exclude.is_empty() || !matches_any(&exclude, &full))
            })
            .collect();
        let selected_names: Vec<String> = selected.iter().map(|v| format!("{}.{}", v.schema, v.name)).collect();
        let mut not_owned: Vec<String> = vec![];
        for v in dependency_order(&selected) {
            let full = format!("{}.{}", v.schema, v.name);
            let quoted = quote_name(Some(&v.schema), &v.name);
            d.privileges.extend(
                cx.need_ownership("materialized view", &full, &v.owner, v.owned)
                    .zip(cx.insp.role.as_ref())
                    .map(|(mut n, role)| {
                        if v.owner_superuser {
                            // Never advise membership in a superuser role.
                            n.grant = format!(
                                "ALTER MATERIALIZED VIEW {quoted} OWNER TO {};",
                                crate::db::quote_ident(&role.name)
                            );
                        }
                        n
                    }),
            );
            if !v.owned {
                d.object(
                    Marker::Read,
                    "view",
                    full.clone(),
                    format!(
                        "not refreshed: owned by `{}`, and only its owner (or a member of that role) may refresh it",
                        v.owner
                    ),
                    serde_json::json!({"owner": v.owner}),
                );
                not_owned.push(full);
                continue;
            }
            if concurrently && !v.populated {
                d.errors.push(format!(
                    "materialized view {full} is not populated yet, and CONCURRENTLY cannot refresh it: \
                     refresh it once with `concurrently: false` (or REFRESH MATERIALIZED VIEW {quoted})"
                ));
            } else if concurrently && v.unique_index.is_none() {
                d.errors.push(format!(
                    "materialized view {full} has no unique index on plain columns covering all rows, which \
                     REFRESH … CONCURRENTLY needs: add one (CREATE UNIQUE INDEX CONCURRENTLY ON {quoted} (its key \
                     columns)), or set `concurrently: false` to refresh it under ACCESS EXCLUSIVE"
                ));
            }
            let mut detail = vec![human_bytes(v.bytes)];
            if let Some(i) = &v.unique_index {
                detail.push(format!("unique index {i}"));
            }
            if !v.reads.is_empty() {
                detail.push(format!("reads {}", v.reads.join(", ")));
            }
            if !v.populated {
                detail.push("not populated".into());
            }
            d.object(
                Marker::Change,
                "view",
                full.clone(),
                detail.join(", "),
                serde_json::json!({"bytes": v.bytes, "unique_index": v.unique_index, "reads": v.reads}),
            );
            d.statement(
                full,
                format!(
                    "REFRESH MATERIALIZED VIEW {}{quoted}",
                    if concurrently { "CONCURRENTLY " } else { "" }
                ),
            );
            // A view reading a selected view is refreshed only when that
            // one was: on stale input it would be wrong in a new way.
            if let Some(crate::run::execplan::Action::Statement { after, .. }) = d.actions.last_mut() {
                *after = v
                    .reads
                    .iter()
                    .filter(|r| selected_names.contains(*r))
                    .cloned()
                    .collect();
            }
        }
        d.per_object = true;
        if !not_owned.is_empty() {
            d.warnings.push(format!(
                "{} left out: the plan's role does not own them (GRANT the owning role to it, or refresh them as their owner)",
                not_owned.join(", ")
            ));
        }
        d.no_op = d.actions.is_empty() && d.errors.is_empty();
        d.summary = if d.no_op {
            format!("no materialized view matches ({} in the database)", views.len())
        } else {
            format!(
                "refresh {} materialized views{}, in dependency order",
                d.actions.len(),
                if concurrently { " concurrently" } else { "" }
            )
        };
        d
    }
}

/// Views ordered so each comes after the selected views it reads; ties and
/// cycles (impossible in PostgreSQL) keep name order.
fn dependency_order<'a>(views: &[&'a MatView]) -> Vec<&'a MatView> {
    let name = |v: &MatView| format!("{}.{}", v.schema, v.name);
    let mut left: Vec<&MatView> = views.to_vec();
    let mut out: Vec<&MatView> = vec![];
    while !left.is_empty() {
        let pending: Vec<String> = left.iter().map(|v| name(v)).collect();
        let ready = left
            .iter()
            .position(|v| v.reads.iter().all(|r| !pending.contains(r)))
            .unwrap_or(0);
        out.push(left.remove(ready));
    }
    out
}

/// A materialized view (PostgreSQL), for `refresh_views`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MatView {
    pub schema: String,
    pub name: String,
    pub populated: bool,
    pub bytes: u64,
    /// A valid unique index on plain columns without a predicate, which
    /// `REFRESH … CONCURRENTLY` needs; `None` when there is none.
    pub unique_index: Option<String>,
    /// Other materialized views its query reads (`schema.name`).
    pub reads: Vec<String>,
    /// Its owner, and whether the plan's role is it (or a member): only
    /// the owner may refresh a materialized view.
    pub owner: String,
    pub owned: bool,
    #[serde(default)]
    pub owner_superuser: bool,
}

/// Where the inspection keeps the materialized views, read once for every
/// `refresh_views` step of a plan.
const MATVIEWS: &str = "refresh_views#matviews";

impl crate::run::operation::Operation for RefreshViews {
    fn read<'a>(
        &'a self,
        _step: &'a crate::plan::Step,
        insp: &'a mut crate::run::inspect::Inspection,
        conn: &'a mut crate::db::Conn,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            if !insp.facts.contains_key(MATVIEWS) {
                let views = matviews(conn).await.map_err(|e| e.message);
                insp.keep(MATVIEWS, views);
            }
        })
    }

    fn plan(&self, cx: &PlanCx) -> Draft {
        RefreshViews::plan(self, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, reads: &[&str]) -> MatView {
        MatView {
            schema: "public".into(),
            name: name.into(),
            populated: true,
            bytes: 0,
            unique_index: None,
            reads: reads.iter().map(|r| format!("public.{r}")).collect(),
            owner: "maint".into(),
            owned: true,
            owner_superuser: false,
        }
    }

    #[test]
    fn views_refresh_after_the_views_they_read() {
        let (a, b, c) = (view("a", &["c"]), view("b", &[]), view("c", &["b"]));
        let order: Vec<&str> = dependency_order(&[&a, &b, &c])
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(order, ["b", "c", "a"]);
    }
}
