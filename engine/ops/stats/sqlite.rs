//! The `stats` report on SQLite: sizes per table and index from `dbstat`
//! when SQLite was built with it; otherwise the file size and a note.

use super::report::{IndexStats, StatsReport, TableStats};
use crate::db::query::{Exec, query};
use crate::db::{DbError, sqlite::file_bytes};

pub async fn stats(c: &mut impl Exec, top: u64) -> Result<StatsReport, DbError> {
    let database_bytes = file_bytes(c).await?;
    let sized = query(
        "SELECT m.type, m.name, m.tbl_name, sum(d.pgsize) AS bytes FROM dbstat d \
         JOIN sqlite_schema m ON m.name = d.name WHERE m.type IN ('table', 'index') \
           AND m.tbl_name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND m.tbl_name NOT LIKE 'dbmaint\\_%' ESCAPE '\\' \
         GROUP BY m.type, m.name, m.tbl_name ORDER BY bytes DESC, m.name",
    )
    .fetch_all(c)
    .await;
    let mut report = StatsReport {
        database_bytes,
        ..StatsReport::default()
    };
    let Ok(rows) = sized else {
        report.note = Some("this SQLite has no dbstat table: per-table sizes are not available".into());
        return Ok(report);
    };
    for r in rows {
        let (kind, name, table, bytes): (String, String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        if kind == "table" && (report.tables.len() as u64) < top {
            report.tables.push(TableStats {
                name,
                total_bytes: bytes.max(0) as u64,
                rows: None,
                dead_tuples: None,
                last_vacuum: None,
                last_analyze: None,
                never_analyzed: false,
            });
        } else if kind == "index" && (report.indexes.len() as u64) < top {
            report.indexes.push(IndexStats {
                name,
                table,
                bytes: bytes.max(0) as u64,
                scans: None,
            });
        }
    }
    Ok(report)
}
