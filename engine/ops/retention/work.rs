//! A retention step's work as the execution plan carries it (`Action::Op`
//! with key `retention`): every statement built at plan time, the archive,
//! the batch style, the eligible keys' digest for saved plans. `walk.rs` runs
//! it and says what drift a saved plan may not hide.

use serde::{Deserialize, Serialize};

/// Where archived rows go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveTo {
    /// An archive table (quoted name), filled in the batch's own statement.
    Table { name: String },
    /// A JSON Lines file, written and fsynced before the batch's delete commits.
    File { path: String },
}

/// A retention step's work, with every statement built at plan time. Every
/// statement binds the cutoff first, as text the column's type parses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetentionWork {
    /// The source table, quoted.
    pub table: String,
    /// The cutoff, in the form the column compares with.
    pub cutoff: String,
    pub batch_size: u64,
    pub max_rows: Option<u64>,
    pub pause_ms: u64,
    /// `throttle:` limits, read between batches (PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<crate::run::throttle::ThrottleLimits>,
    /// Statements creating the archive table when it does not exist yet.
    pub create_archive: Vec<String>,
    pub archive: Option<ArchiveTo>,
    /// Binds (cutoff); returns (eligible rows, first key, last key) when
    /// the step starts. The walk covers that key span whole, whatever the
    /// count: rows kept by a trigger or made eligible by a concurrent
    /// update never end it early. Keys are text in the backend's key form:
    /// PostgreSQL `k::text`, or `ARRAY[a::text, b::text]::text` for a
    /// composite key; SQLite `json_array(k, …)`, which keeps each value's
    /// storage class (a typeless key holding numbers compares as numbers).
    pub count: String,
    pub batch: BatchSql,
    /// The eligible rows the plan counted (key-window walks report against
    /// it: their own span read runs beside the first batches).
    #[serde(default)]
    pub planned_rows: u64,
    /// The digest of the keys the step would delete, recorded in saved
    /// plans (see `keydigest`); apply of a saved plan compares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_digest: Option<super::keydigest::KeyDigest>,
    /// `on_cascade: allow`: per foreign key that acts, the statement that
    /// counts the child rows a batch's delete reaches (binds cutoff, lo, hi
    /// like the batch), run in the batch's transaction before its delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cascades: Vec<CascadeCount>,
    /// SQLite `sqlite_foreign_keys: off`: the batches run with
    /// `PRAGMA foreign_keys = OFF` on the step's connection.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign_keys_off: bool,
}

/// A foreign key whose ON DELETE acts on rows of another table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CascadeCount {
    /// `child.col → parent.col (name)`.
    pub foreign_key: String,
    /// `CASCADE`, `SET NULL`, `SET DEFAULT`.
    pub on_delete: String,
    pub count: String,
}

/// How one batch is taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "style", rename_all = "snake_case")]
pub enum BatchSql {
    /// The batch's key range first, then statements over `[lo, hi]` in the
    /// same transaction. `bound_first` and `bound_next` bind (cutoff, from,
    /// limit, to) and return (rows, lo, hi): the first `limit` eligible
    /// keys from `from` (inclusive for the first batch, exclusive after) up
    /// to `to`. `copy` (SQLite archive table) and `delete` bind (cutoff,
    /// lo, hi); with a file archive `delete` returns (key, JSON row) of
    /// each row it deleted, and on PostgreSQL with an archive table it is
    /// `WITH moved AS (DELETE … RETURNING *) INSERT INTO archive …`.
    Ranged {
        bound_first: String,
        bound_next: String,
        copy: Option<String>,
        delete: String,
    },
    /// Windows of `batch_size` keys (PostgreSQL, one integer key), as a DBA's
    /// loop over primary-key ranges: `statement` binds (cutoff, lo, hi) and
    /// deletes — and archives, in the same statement — the eligible rows
    /// with `lo <= key <= hi`. `left` (when something can keep rows, see
    /// `sql::RetentionSpec::check_left`) binds the same and counts the
    /// eligible rows the window still holds after its delete. `next_key`
    /// binds (after) and returns the first key above it, so a run of empty
    /// windows is one jump. A window holds at most `batch_size` rows and
    /// costs one key-range scan, however sparse the eligible rows are.
    Window {
        statement: String,
        left: Option<String>,
        next_key: String,
        /// Binds (cutoff); the first eligible key (int8). The walk starts
        /// there at once while another session reads the span's end
        /// (`RetentionWork::count`) — the pass a DBA's loop waits for.
        #[serde(default)]
        first_key: String,
    },
}
