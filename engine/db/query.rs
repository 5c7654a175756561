//! Statements for code outside `db/`: a query with bound parameters, run on
//! a session ([`Conn`]) or a transaction ([`Tx`]) of either backend, rows
//! read by column index. Operations keep their own SQL in their folder and
//! reach the server only through this door, so sqlx stays inside `db/`.
//!
//! It mirrors sqlx's shape (`query(..).bind(..).fetch_all(..)`), so moving
//! a statement here changes its spelling, not its meaning: statements are
//! prepared and cached per session as sqlx does, parameters bind with the
//! same types, and nothing is buffered that sqlx would have streamed
//! ([`Query::for_each`]).

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Postgres, Sqlite};

use super::{Conn, DbError, sql};

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    Text(String),
    Json(serde_json::Value),
    Time(DateTime<Utc>),
    /// PostgreSQL `text[]`.
    TextArray(Vec<String>),
    /// PostgreSQL `int8[]`.
    I64Array(Vec<i64>),
}

macro_rules! param_from {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for Param {
            fn from(x: $t) -> Self { Param::$v(x.into()) }
        }
    )*};
}
param_from!(bool => Bool, i64 => I64, i32 => I64, u32 => I64, f64 => F64, String => Text, &str => Text,
    &String => Text, serde_json::Value => Json, DateTime<Utc> => Time, Vec<String> => TextArray, Vec<i64> => I64Array);

impl From<&[String]> for Param {
    fn from(x: &[String]) -> Self {
        Param::TextArray(x.to_vec())
    }
}

impl From<&[i64]> for Param {
    fn from(x: &[i64]) -> Self {
        Param::I64Array(x.to_vec())
    }
}

impl<T: Into<Param>> From<Option<T>> for Param {
    fn from(x: Option<T>) -> Self {
        x.map_or(Param::Null, Into::into)
    }
}

/// One statement and its parameters.
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until it is run"]
pub struct Query {
    sql: String,
    params: Vec<Param>,
}

/// A statement to run; bind its `$1`/`?` parameters in order.
pub fn query(text: impl Into<String>) -> Query {
    Query {
        sql: text.into(),
        params: vec![],
    }
}

/// Where a statement runs: a session or an open transaction.
pub trait Exec: Send {
    #[doc(hidden)]
    fn raw(&mut self) -> Raw<'_>;
}

/// The driver connection under a session; only `db/` looks inside.
#[doc(hidden)]
#[derive(Debug)]
pub enum Raw<'a> {
    Pg(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection),
}

impl Exec for Conn {
    fn raw(&mut self) -> Raw<'_> {
        match self {
            Conn::Pg(c) => Raw::Pg(c),
            Conn::Sqlite(c) => Raw::Sqlite(c),
        }
    }
}

// The driver connections themselves, for `db/`'s own code.
impl Exec for PgConnection {
    fn raw(&mut self) -> Raw<'_> {
        Raw::Pg(self)
    }
}

impl Exec for SqliteConnection {
    fn raw(&mut self) -> Raw<'_> {
        Raw::Sqlite(self)
    }
}

/// An open transaction on a [`Conn`]; dropped without [`Tx::commit`], it
/// rolls back (as sqlx's does), so an error path never leaves one open.
#[derive(Debug)]
pub struct Tx<'c>(TxInner<'c>);

#[derive(Debug)]
enum TxInner<'c> {
    Pg(sqlx::Transaction<'c, Postgres>),
    Sqlite(sqlx::Transaction<'c, Sqlite>),
}

impl Conn {
    /// Begins a writing transaction: `BEGIN`, and on SQLite `BEGIN
    /// IMMEDIATE`, which takes the write lock at once (waiting up to the
    /// session's busy timeout) instead of failing on the first write when
    /// another writer got there between.
    pub async fn begin(&mut self) -> Result<Tx<'_>, DbError> {
        use sqlx::Connection as _;
        Ok(Tx(match self {
            Conn::Pg(c) => TxInner::Pg(c.begin().await?),
            Conn::Sqlite(c) => TxInner::Sqlite(c.begin_with("BEGIN IMMEDIATE").await?),
        }))
    }
}

impl Tx<'_> {
    pub async fn commit(self) -> Result<(), DbError> {
        match self.0 {
            TxInner::Pg(t) => t.commit().await?,
            TxInner::Sqlite(t) => t.commit().await?,
        }
        Ok(())
    }

    /// Commits when `result` is `Ok`, rolls back otherwise; the result
    /// (or the commit's error) comes back.
    pub async fn settle<T>(self, result: Result<T, DbError>) -> Result<T, DbError> {
        match result {
            Ok(v) => {
                self.commit().await?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.rollback().await;
                Err(e)
            }
        }
    }

    pub async fn rollback(self) -> Result<(), DbError> {
        match self.0 {
            TxInner::Pg(t) => t.rollback().await?,
            TxInner::Sqlite(t) => t.rollback().await?,
        }
        Ok(())
    }
}

impl Exec for Tx<'_> {
    fn raw(&mut self) -> Raw<'_> {
        match &mut self.0 {
            TxInner::Pg(t) => Raw::Pg(t),
            TxInner::Sqlite(t) => Raw::Sqlite(t),
        }
    }
}

/// Binds a `text[]` on SQLite as its JSON text (SQLite has no arrays; the
/// statement reads it with `json_each`).
fn sqlite_array(v: Vec<String>) -> String {
    serde_json::Value::from(v).to_string()
}

impl Query {
    pub fn bind(mut self, p: impl Into<Param>) -> Self {
        self.params.push(p.into());
        self
    }

    /// The statement's text, as the server receives it.
    pub fn text(&self) -> &str {
        &self.sql
    }

    /// Runs it; the rows it changed (the command tag's count).
    pub async fn execute(self, on: &mut impl Exec) -> Result<u64, DbError> {
        Ok(match on.raw() {
            Raw::Pg(c) => pg_bound(sqlx::query(sql(self.sql)), self.params)
                .execute(&mut *c)
                .await?
                .rows_affected(),
            Raw::Sqlite(c) => sqlite_bound(sqlx::query(sql(self.sql)), self.params)
                .execute(&mut *c)
                .await?
                .rows_affected(),
        })
    }

    pub async fn fetch_all(self, on: &mut impl Exec) -> Result<Vec<Row>, DbError> {
        Ok(match on.raw() {
            Raw::Pg(c) => pg_bound(sqlx::query(sql(self.sql)), self.params)
                .fetch_all(&mut *c)
                .await?
                .into_iter()
                .map(|r| Row(RowInner::Pg(r)))
                .collect(),
            Raw::Sqlite(c) => sqlite_bound(sqlx::query(sql(self.sql)), self.params)
                .fetch_all(&mut *c)
                .await?
                .into_iter()
                .map(|r| Row(RowInner::Sqlite(r)))
                .collect(),
        })
    }

    pub async fn fetch_optional(self, on: &mut impl Exec) -> Result<Option<Row>, DbError> {
        Ok(match on.raw() {
            Raw::Pg(c) => pg_bound(sqlx::query(sql(self.sql)), self.params)
                .fetch_optional(&mut *c)
                .await?
                .map(|r| Row(RowInner::Pg(r))),
            Raw::Sqlite(c) => sqlite_bound(sqlx::query(sql(self.sql)), self.params)
                .fetch_optional(&mut *c)
                .await?
                .map(|r| Row(RowInner::Sqlite(r))),
        })
    }

    /// The one row the statement returns; an error when it returns none.
    pub async fn fetch_one(self, on: &mut impl Exec) -> Result<Row, DbError> {
        let text = first_line(&self.sql);
        self.fetch_optional(on)
            .await?
            .ok_or_else(|| DbError::other(format!("`{text}` returned no row")))
    }

    /// The first column of the one row the statement returns.
    pub async fn scalar<T: Decode>(self, on: &mut impl Exec) -> Result<T, DbError> {
        self.fetch_one(on).await?.get(0)
    }

    /// Every row as a tuple of column types.
    pub async fn fetch_all_as<T: FromRow>(self, on: &mut impl Exec) -> Result<Vec<T>, DbError> {
        self.fetch_all(on).await?.iter().map(T::from_row).collect()
    }

    pub async fn fetch_one_as<T: FromRow>(self, on: &mut impl Exec) -> Result<T, DbError> {
        T::from_row(&self.fetch_one(on).await?)
    }

    pub async fn fetch_optional_as<T: FromRow>(self, on: &mut impl Exec) -> Result<Option<T>, DbError> {
        self.fetch_optional(on).await?.as_ref().map(T::from_row).transpose()
    }

    /// The first column of every row.
    pub async fn scalars<T: Decode>(self, on: &mut impl Exec) -> Result<Vec<T>, DbError> {
        self.fetch_all(on).await?.iter().map(|r| r.get(0)).collect()
    }

    /// The first column of the row, when there is one.
    pub async fn scalar_optional<T: Decode>(self, on: &mut impl Exec) -> Result<Option<T>, DbError> {
        self.fetch_optional(on).await?.map(|r| r.get(0)).transpose()
    }

    /// Streams the rows through `each` without holding them all: for reads
    /// whose size the table decides (digests of eligible keys).
    pub async fn for_each(
        self,
        on: &mut impl Exec,
        mut each: impl FnMut(Row) -> Result<(), DbError> + Send,
    ) -> Result<(), DbError> {
        match on.raw() {
            Raw::Pg(c) => {
                let mut rows = pg_bound(sqlx::query(sql(self.sql)), self.params).fetch(&mut *c);
                while let Some(r) = rows.try_next().await? {
                    each(Row(RowInner::Pg(r)))?;
                }
            }
            Raw::Sqlite(c) => {
                let mut rows = sqlite_bound(sqlx::query(sql(self.sql)), self.params).fetch(&mut *c);
                while let Some(r) = rows.try_next().await? {
                    each(Row(RowInner::Sqlite(r)))?;
                }
            }
        }
        Ok(())
    }
}

/// Runs `text` as written, through the simple query protocol: no
/// parameters, no prepared statement, several statements allowed (the
/// server runs them as one implicit transaction unless they say otherwise).
/// For DDL and maintenance statements (`VACUUM`, `… CONCURRENTLY`).
pub async fn execute_raw(on: &mut impl Exec, text: &str) -> Result<u64, DbError> {
    Ok(match on.raw() {
        Raw::Pg(c) => sqlx::raw_sql(sql(text.to_string())).execute(c).await?.rows_affected(),
        Raw::Sqlite(c) => sqlx::raw_sql(sql(text.to_string())).execute(c).await?.rows_affected(),
    })
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;
type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

fn pg_bound(q: PgQuery<'_>, params: Vec<Param>) -> PgQuery<'_> {
    let mut q = q;
    for p in params {
        q = match p {
            Param::Null => q.bind(None::<String>),
            Param::Bool(v) => q.bind(v),
            Param::I64(v) => q.bind(v),
            Param::F64(v) => q.bind(v),
            Param::Text(v) => q.bind(v),
            Param::Json(v) => q.bind(v),
            Param::Time(v) => q.bind(v),
            Param::TextArray(v) => q.bind(v),
            Param::I64Array(v) => q.bind(v),
        };
    }
    q
}

fn sqlite_bound(q: SqliteQuery<'_>, params: Vec<Param>) -> SqliteQuery<'_> {
    let mut q = q;
    for p in params {
        q = match p {
            Param::Null => q.bind(None::<String>),
            Param::Bool(v) => q.bind(v),
            Param::I64(v) => q.bind(v),
            Param::F64(v) => q.bind(v),
            Param::Text(v) => q.bind(v),
            Param::Json(v) => q.bind(v),
            Param::Time(v) => q.bind(v),
            Param::TextArray(v) => q.bind(sqlite_array(v)),
            Param::I64Array(v) => q.bind(serde_json::Value::from(v).to_string()),
        };
    }
    q
}

fn first_line(s: &str) -> String {
    let line = s.trim().lines().next().unwrap_or("");
    crate::db::one_line(line)
}

/// One row of a result.
#[derive(Debug)]
pub struct Row(RowInner);

#[derive(Debug)]
enum RowInner {
    Pg(PgRow),
    Sqlite(SqliteRow),
}

impl Row {
    /// Column `i` as `T`; a type the column cannot decode to is an error
    /// naming the column.
    pub fn get<T: Decode>(&self, i: usize) -> Result<T, DbError> {
        match &self.0 {
            RowInner::Pg(r) => T::pg(r, i),
            RowInner::Sqlite(r) => T::sqlite(r, i),
        }
        .map_err(|e| DbError::other(format!("column {i}: {e}")))
    }

    /// Column `i` when the value decodes as `T`, else `None` (SQLite's
    /// storage classes vary per row).
    pub fn try_get<T: Decode>(&self, i: usize) -> Option<T> {
        self.get(i).ok()
    }

    /// Column `i` is NULL (any type).
    pub fn is_null(&self, i: usize) -> bool {
        use sqlx::{Row as _, ValueRef as _};
        match &self.0 {
            RowInner::Pg(r) => r.try_get_raw(i).is_ok_and(|v| v.is_null()),
            RowInner::Sqlite(r) => r.try_get_raw(i).is_ok_and(|v| v.is_null()),
        }
    }

    pub fn len(&self) -> usize {
        use sqlx::Row as _;
        match &self.0 {
            RowInner::Pg(r) => r.len(),
            RowInner::Sqlite(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column names, in order.
    pub fn columns(&self) -> Vec<String> {
        use sqlx::{Column as _, Row as _};
        match &self.0 {
            RowInner::Pg(r) => r.columns().iter().map(|c| c.name().to_string()).collect(),
            RowInner::Sqlite(r) => r.columns().iter().map(|c| c.name().to_string()).collect(),
        }
    }
}

/// A Rust type a column decodes to, on either backend.
pub trait Decode: Sized {
    #[doc(hidden)]
    fn pg(r: &PgRow, i: usize) -> Result<Self, sqlx::Error>;
    #[doc(hidden)]
    fn sqlite(r: &SqliteRow, i: usize) -> Result<Self, sqlx::Error>;
}

macro_rules! decode_both {
    ($($t:ty),* $(,)?) => {$(
        impl Decode for $t {
            fn pg(r: &PgRow, i: usize) -> Result<Self, sqlx::Error> { sqlx::Row::try_get(r, i) }
            fn sqlite(r: &SqliteRow, i: usize) -> Result<Self, sqlx::Error> { sqlx::Row::try_get(r, i) }
        }
        impl Decode for Option<$t> {
            fn pg(r: &PgRow, i: usize) -> Result<Self, sqlx::Error> { sqlx::Row::try_get(r, i) }
            fn sqlite(r: &SqliteRow, i: usize) -> Result<Self, sqlx::Error> { sqlx::Row::try_get(r, i) }
        }
    )*};
}
decode_both!(bool, i32, i64, f64, String, Vec<u8>, serde_json::Value, DateTime<Utc>);

macro_rules! decode_pg_only {
    ($($t:ty),* $(,)?) => {$(
        impl Decode for $t {
            fn pg(r: &PgRow, i: usize) -> Result<Self, sqlx::Error> { sqlx::Row::try_get(r, i) }
            fn sqlite(_: &SqliteRow, i: usize) -> Result<Self, sqlx::Error> {
                Err(sqlx::Error::ColumnDecode { index: i.to_string(), source: "a PostgreSQL-only type read on SQLite".into() })
            }
        }
        impl Decode for Option<$t> {
            fn pg(r: &PgRow, i: usize) -> Result<Self, sqlx::Error> { sqlx::Row::try_get(r, i) }
            fn sqlite(_: &SqliteRow, i: usize) -> Result<Self, sqlx::Error> {
                Err(sqlx::Error::ColumnDecode { index: i.to_string(), source: "a PostgreSQL-only type read on SQLite".into() })
            }
        }
    )*};
}
decode_pg_only!(i16, f32, Vec<String>, Vec<i64>, Vec<i32>);

/// A whole row as a tuple of column types, in column order.
pub trait FromRow: Sized {
    fn from_row(r: &Row) -> Result<Self, DbError>;
}

macro_rules! tuple_from_row {
    ($( ($($t:ident $i:tt),+) )*) => {$(
        impl<$($t: Decode),+> FromRow for ($($t,)+) {
            fn from_row(r: &Row) -> Result<Self, DbError> {
                Ok(($(r.get::<$t>($i)?,)+))
            }
        }
    )*};
}
tuple_from_row! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13)
}
