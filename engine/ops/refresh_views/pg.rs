//! What `refresh_views` reads on PostgreSQL: every materialized view.

use crate::db::DbError;
use crate::db::pg::{BUSY, USER_RELATIONS};
use crate::db::query::{Exec, query};
use crate::ops::refresh_views::MatView;

/// Every materialized view with what `refresh_views` needs to know: one
/// query (dependencies through the view's rewrite rule).
pub async fn matviews(c: &mut impl Exec) -> Result<Vec<MatView>, DbError> {
    type Row = (
        String,
        String,
        bool,
        i64,
        Option<String>,
        Vec<String>,
        String,
        bool,
        bool,
    );
    let rows: Vec<Row> = query(format!(
        "SELECT n.nspname::text, c.relname::text, c.relispopulated, \
           CASE WHEN c.oid IN {BUSY} THEN c.relpages::int8 * current_setting('block_size')::int8 \
                ELSE pg_total_relation_size(c.oid)::int8 END, \
           (SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             WHERE x.indrelid = c.oid AND x.indisunique AND x.indisvalid AND x.indisready \
               AND x.indpred IS NULL AND x.indexprs IS NULL ORDER BY 1 LIMIT 1), \
           ARRAY(SELECT DISTINCT dn.nspname || '.' || dc.relname FROM pg_rewrite r \
                 JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid \
                 JOIN pg_class dc ON dc.oid = d.refobjid AND dc.relkind = 'm' AND dc.oid <> c.oid \
                 JOIN pg_namespace dn ON dn.oid = dc.relnamespace WHERE r.ev_class = c.oid), \
           pg_get_userbyid(c.relowner)::text, pg_has_role(c.relowner, 'USAGE'), \
           coalesce((SELECT rolsuper FROM pg_roles WHERE oid = c.relowner), false) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'm' AND {USER_RELATIONS} ORDER BY 1, 2"
    ))
    .fetch_all_as(c)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(schema, name, populated, bytes, unique_index, reads, owner, owned, owner_superuser)| MatView {
                schema,
                name,
                populated,
                bytes: bytes.max(0) as u64,
                unique_index,
                reads,
                owner,
                owned,
                owner_superuser,
            },
        )
        .collect())
}
