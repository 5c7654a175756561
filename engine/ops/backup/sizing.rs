//! The first backup's size, before there is a last backup to go by
//! (issue 14 §3). A table's size on disk says little about its dump: a
//! heap of small integers dumps to a third of its pages, a bloated heap to
//! its live rows only, TOAST-compressed text to many times its pages, and
//! compression ranges from 10:1 (logs) to 1:1 (random bytes). So the diff
//! reads a sample of each large table's rows in their text form, as
//! `pg_dump` writes them, and compresses it as `pg_dump` does (zlib at the
//! step's level): rows × average text length is the plain dump, times the
//! sample's compression ratio the custom or directory one.
//!
//! Bounded for a live database: at most [`SAMPLED_TABLES`] tables (the
//! largest; the rest take the sampled tables' pooled ratios), each read
//! through `TABLESAMPLE SYSTEM` over about [`SAMPLE_PAGES`] pages and at
//! most [`SAMPLE_ROWS`] rows, each row's text cut at [`ROW_TEXT`] bytes
//! for the compression test. A table the sample cannot read (a lock held,
//! no SELECT) takes the pooled ratios too, under a savepoint so the diff's
//! snapshot stays usable.

use std::io::Write as _;

use crate::db::catalog::TableFacts;
use crate::db::query::{execute_raw, query};
use crate::db::{Conn, quote_name};

/// The largest tables sampled.
pub const SAMPLED_TABLES: usize = 32;
/// Pages a sample reads (8 kB each): 1 MB of heap a table.
pub const SAMPLE_PAGES: f64 = 128.0;
/// Rows a sample takes.
pub const SAMPLE_ROWS: i64 = 500;
/// Bytes of each sampled row's text compressed for the ratio.
pub const ROW_TEXT: i64 = 4096;

/// The dump sizes the sample predicts for the whole database.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DumpSize {
    /// Bytes of row data as text (a plain dump, or `compress: 0`).
    pub plain: u64,
    /// The same compressed at the step's level (custom, directory).
    pub compressed: u64,
    /// Tables whose rows were sampled, of `tables`.
    pub sampled: usize,
    pub tables: usize,
}

/// One table's sampled figures.
struct Sampled {
    /// Heap bytes (without indexes): what unsampled tables scale from.
    heap: u64,
    plain: f64,
    compressed: f64,
}

/// Samples the tables of `tables` that hold rows and predicts their dump
/// at zlib `level` (pg_dump's default is 6).
pub async fn dump_size(c: &mut Conn, tables: &[TableFacts], level: u64) -> DumpSize {
    let mut stored: Vec<&TableFacts> = tables.iter().filter(|t| !t.partitioned).collect();
    stored.sort_by_key(|t| std::cmp::Reverse(heap_bytes(t)));
    let mut sampled = vec![];
    let mut rest = 0u64;
    for (i, t) in stored.iter().enumerate() {
        let got = if i < SAMPLED_TABLES && t.access.select {
            sample_guarded(c, t, level).await
        } else {
            None
        };
        match got {
            Some(s) => sampled.push(s),
            None => rest += heap_bytes(t),
        }
    }
    let heap: u64 = sampled.iter().map(|s| s.heap).sum();
    let plain: f64 = sampled.iter().map(|s| s.plain).sum();
    let compressed: f64 = sampled.iter().map(|s| s.compressed).sum();
    // The unsampled tables: as the sampled ones per heap byte; with none
    // sampled, a heap dumps to about its size, compressed ~3:1.
    let (per_heap, ratio) = if heap > 0 {
        (plain / heap as f64, if plain > 0.0 { compressed / plain } else { 0.3 })
    } else {
        (1.0, 0.3)
    };
    let plain_rest = rest as f64 * per_heap;
    DumpSize {
        plain: (plain + plain_rest).round() as u64,
        compressed: (compressed + plain_rest * ratio).round() as u64,
        sampled: sampled.len(),
        tables: stored.len(),
    }
}

/// A table's heap and TOAST, without its indexes.
fn heap_bytes(t: &TableFacts) -> u64 {
    t.total_bytes.saturating_sub(t.indexes.iter().map(|i| i.bytes).sum())
}

/// [`sample`] under a savepoint: a failure leaves the diff's transaction
/// as it was.
async fn sample_guarded(c: &mut Conn, t: &TableFacts, level: u64) -> Option<Sampled> {
    let in_tx = execute_raw(c, "SAVEPOINT dbmaint_sample").await.is_ok();
    let got = sample(c, t, level).await;
    if in_tx {
        let end = if got.is_some() {
            "RELEASE SAVEPOINT dbmaint_sample"
        } else {
            "ROLLBACK TO SAVEPOINT dbmaint_sample"
        };
        let _ = execute_raw(c, end).await;
    }
    got
}

async fn sample(c: &mut Conn, t: &TableFacts, level: u64) -> Option<Sampled> {
    let name = quote_name(Some(&t.schema), &t.name);
    // reltuples is the planner's row count (-1: never vacuumed or
    // analyzed); relpages sizes the sample.
    let (reltuples, relpages): (f64, i64) =
        query("SELECT reltuples::float8, relpages::int8 FROM pg_class WHERE oid = $1::regclass")
            .bind(&name)
            .fetch_one_as(&mut *c)
            .await
            .ok()?;
    let percent = if relpages as f64 <= SAMPLE_PAGES {
        100.0
    } else {
        100.0 * SAMPLE_PAGES / relpages as f64
    };
    // The row's text form is what COPY writes, give or take a delimiter.
    let (n, text_bytes, text): (i64, Option<i64>, Option<String>) = query(format!(
        "SELECT count(*)::int8, sum(octet_length(s.r))::int8, string_agg(left(s.r, {ROW_TEXT}), E'\\n') \
         FROM (SELECT x::text AS r FROM {name} AS x TABLESAMPLE SYSTEM ($1) LIMIT {SAMPLE_ROWS}) s"
    ))
    .bind(percent)
    .fetch_one_as(&mut *c)
    .await
    .ok()?;
    let heap = heap_bytes(t);
    if n == 0 {
        // An empty table dumps nothing; a sample that missed every row of
        // a table that has some says nothing.
        return (reltuples <= 0.0 && relpages == 0).then_some(Sampled {
            heap,
            plain: 0.0,
            compressed: 0.0,
        });
    }
    let text = text.unwrap_or_default();
    let per_row = text_bytes.unwrap_or(0) as f64 / n as f64 + 1.0;
    let rows = if reltuples >= 0.0 {
        reltuples
    } else if n < SAMPLE_ROWS {
        n as f64 * 100.0 / percent
    } else {
        t.live_tuples as f64
    };
    let plain = rows * per_row;
    Some(Sampled {
        heap,
        plain,
        compressed: plain * ratio(&text, level),
    })
}

/// Compressed size over raw size of `text` with zlib at `level`.
fn ratio(text: &str, level: u64) -> f64 {
    if text.is_empty() {
        return 1.0;
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level.min(9) as u32));
    if z.write_all(text.as_bytes()).is_err() {
        return 1.0;
    }
    match z.finish() {
        Ok(out) => out.len() as f64 / text.len() as f64,
        Err(_) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetitive_text_compresses_and_random_bytes_do_not() {
        let logs = "user 42 did action 7 on /api/v1/items/1234\n".repeat(200);
        assert!(ratio(&logs, 6) < 0.1, "{}", ratio(&logs, 6));
        // Hex of pseudo-random bytes: 4 bits of entropy per character.
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let hex: String = (0..8000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("{:x}", x & 0xf)
            })
            .collect();
        let r = ratio(&hex, 6);
        assert!((0.45..0.65).contains(&r), "{r}");
        assert_eq!(ratio("", 6), 1.0);
    }
}
