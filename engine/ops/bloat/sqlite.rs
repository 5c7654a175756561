//! Bloat on SQLite: one figure, the file's free list.

use super::figures::{BloatEntry, BloatReport, Method};
use crate::db::DbError;
use crate::db::query::{Exec, query};

/// SQLite's bloat: the file's free-list pages over its page count (what
/// `VACUUM` gives back). Exact: SQLite keeps the count in the file header.
pub async fn bloat(c: &mut impl Exec) -> Result<BloatReport, DbError> {
    let (free, pages, size, path): (i64, i64, i64, String) = query(
        "SELECT (SELECT freelist_count FROM pragma_freelist_count()), (SELECT page_count FROM pragma_page_count()), \
         (SELECT page_size FROM pragma_page_size()), (SELECT file FROM pragma_database_list() WHERE name = 'main')",
    )
    .fetch_one_as(c)
    .await?;
    let bytes = (pages.max(0) * size.max(0)) as u64;
    Ok(BloatReport {
        entries: vec![BloatEntry::new(
            "database",
            path.clone(),
            path,
            bytes,
            free.max(0) * size.max(0),
            Method::Freelist,
        )],
        ..Default::default()
    })
}
