//! The small interface the store's logic ([`crate::ops`]) runs its SQL through, which each
//! backend implements: run a statement, insert a row and learn its id, read rows. Everything
//! an operation decides is written once over it; what differs between SQLite and PostgreSQL
//! is asked of [`Exec::dialect`] in the few places it matters, each named there.
//!
//! SQL is written once, in the subset both databases speak, with PostgreSQL's `$1`, `$2` …
//! placeholders. SQLite reads `$1` as a parameter named "$1" and numbers parameters in the
//! order they first appear, so a statement must name its parameters in that order
//! (`$1` before `$2` …); the SQLite executor checks this in debug builds, that is in every test.

use std::future::Future;
use std::sync::OnceLock;

use crate::model::Id;
use crate::Result;

/// Which database an executor speaks, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A claim: an `UPDATE … WHERE id IN (SELECT … LIMIT n{lock})` whose subquery locks the rows it
/// picks on PostgreSQL (`FOR UPDATE SKIP LOCKED`: nodes claiming at once take different rows
/// without waiting on each other) and needs no lock on SQLite, whose one writer already takes
/// claims in turn. Each form is built once, on first use.
pub(crate) struct Claim {
    template: fn(&str) -> String,
    sqlite: OnceLock<String>,
    postgres: OnceLock<String>,
}

impl Claim {
    /// `template` writes the statement with the given text at the end of its subquery.
    pub(crate) const fn new(template: fn(&str) -> String) -> Self {
        Self {
            template,
            sqlite: OnceLock::new(),
            postgres: OnceLock::new(),
        }
    }

    /// The statement in `dialect`.
    pub(crate) fn sql(&self, dialect: Dialect) -> &str {
        match dialect {
            Dialect::Sqlite => self.sqlite.get_or_init(|| (self.template)("")),
            Dialect::Postgres => self
                .postgres
                .get_or_init(|| (self.template)(" FOR UPDATE SKIP LOCKED")),
        }
    }
}

/// A value bound to a statement's parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Bool(bool),
    /// A `bigint[]`: PostgreSQL only (SQLite has no arrays), for the set-based statements of
    /// [`crate::ops::batch`].
    Ints(&'a [Option<i64>]),
    /// A `text[]`: PostgreSQL only, as [`Arg::Ints`].
    Texts(&'a [Option<&'a str>]),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<&i64> for Arg<'_> {
    fn from(v: &i64) -> Self {
        Arg::Int(*v)
    }
}

impl From<usize> for Arg<'_> {
    fn from(v: usize) -> Self {
        Arg::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Arg::Null, Arg::Int)
    }
}

impl From<&Option<i64>> for Arg<'_> {
    fn from(v: &Option<i64>) -> Self {
        v.map_or(Arg::Null, Arg::Int)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Arg::Null, Arg::Text)
    }
}

impl<'a> From<Option<&'a String>> for Arg<'a> {
    fn from(v: Option<&'a String>) -> Self {
        v.map_or(Arg::Null, |s| Arg::Text(s))
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().map_or(Arg::Null, Arg::Text)
    }
}

/// The arguments of a statement: `args![a, b, c]`, each anything that converts into [`Arg`].
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        &[$($crate::exec::Arg::from($a)),*][..]
    };
}
pub(crate) use args;

/// A row read back. Getters are by column index; a value of the wrong type is an error, a
/// flag reads a boolean (PostgreSQL) or an integer (SQLite).
pub(crate) trait Row {
    fn int(&self, i: usize) -> Result<i64>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>>;
    fn text(&self, i: usize) -> Result<String>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
    fn flag(&self, i: usize) -> Result<bool>;
}

/// Where an operation runs its statements: an open transaction, or a connection for reads.
///
/// The futures of the SQLite executor are always ready (it runs on the writer thread, or a
/// reader's, and blocks); the PostgreSQL executor's wait on the network.
pub(crate) trait Exec {
    /// Which database this is.
    fn dialect(&self) -> Dialect;

    /// Runs a statement; how many rows it changed.
    fn run(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = Result<u64>>;

    /// Runs an `INSERT` of one row (without `RETURNING`); the new row's `id`, or `None` when
    /// its `ON CONFLICT … DO NOTHING` left it out.
    fn insert(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = Result<Option<Id>>>;

    /// Runs a query; each row through `map`.
    fn rows<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        map: impl FnMut(&dyn Row) -> Result<T>,
    ) -> impl Future<Output = Result<Vec<T>>>;

    /// Runs several statements without parameters, in order.
    fn batch(&mut self, sql: &str) -> impl Future<Output = Result<()>>;
}

/// Inserts one row that has nothing to conflict with; its `id`.
pub(crate) async fn insert<E: Exec>(e: &mut E, sql: &str, args: &[Arg<'_>]) -> Result<Id> {
    e.insert(sql, args)
        .await?
        .ok_or_else(|| crate::StoreError::backend(format!("nothing was inserted by: {sql}")))
}

/// The first row of a query, if any.
pub(crate) async fn row<E: Exec, T>(
    e: &mut E,
    sql: &str,
    args: &[Arg<'_>],
    map: impl FnMut(&dyn Row) -> Result<T>,
) -> Result<Option<T>> {
    Ok(e.rows(sql, args, map).await?.into_iter().next())
}

/// The one value of a query that always answers one row (`count(*)` and the like).
pub(crate) async fn int<E: Exec>(e: &mut E, sql: &str, args: &[Arg<'_>]) -> Result<i64> {
    row(e, sql, args, |r| r.int(0))
        .await?
        .ok_or_else(|| crate::StoreError::backend(format!("no row from: {sql}")))
}

/// `IN (…)` of ids, written into the statement (ids are numbers; no quoting needed).
pub(crate) fn id_list(ids: &[Id]) -> String {
    let mut s = String::with_capacity(ids.len() * 8);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&id.to_string());
    }
    s
}
