//! SQLite's side of [`Exec`](crate::exec::Exec).

use rusqlite::Connection;

use super::db_err;
use crate::exec::{Arg, Dialect, Exec, Row as ExecRow};
use crate::model::Id;
use crate::{Result, StoreError};

/// The SQLite side of [`Exec`]: statements on one connection, the writer's (inside its
/// transaction) or a reader's. Its futures are always ready; run them with [`now`].
pub(crate) struct Lite<'c>(pub(crate) &'c Connection);

impl Lite<'_> {
    fn prepare(&self, sql: &str) -> Result<rusqlite::CachedStatement<'_>> {
        let st = self.0.prepare_cached(sql).map_err(db_err)?;
        // `$N` binds by the order parameters first appear (see `exec`): they must appear in
        // number order.
        #[cfg(debug_assertions)]
        for i in 1..=st.parameter_count() {
            let name = st.parameter_name(i);
            assert_eq!(
                name,
                Some(format!("${i}").as_str()),
                "parameter {i} of this statement is not ${i} (name them in order): {sql}"
            );
        }
        Ok(st)
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Ints(_) | Arg::Texts(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "SQLite has no array parameters (a PostgreSQL-only statement)".into(),
                ))
            }
            Arg::Null => ValueRef::Null,
            Arg::Int(v) => ValueRef::Integer(v),
            Arg::Bool(v) => ValueRef::Integer(i64::from(v)),
            Arg::Text(v) => ValueRef::Text(v.as_bytes()),
        }))
    }
}

struct LiteRow<'a, 'b>(&'a rusqlite::Row<'b>);

impl ExecRow for LiteRow<'_, '_> {
    fn int(&self, i: usize) -> Result<i64> {
        self.0.get(i).map_err(db_err)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        self.0.get(i).map_err(db_err)
    }
    fn text(&self, i: usize) -> Result<String> {
        self.0.get(i).map_err(db_err)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        self.0.get(i).map_err(db_err)
    }
    fn flag(&self, i: usize) -> Result<bool> {
        self.0.get(i).map_err(db_err)
    }
}

impl Exec for Lite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn run(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let n = self
            .prepare(sql)?
            .execute(rusqlite::params_from_iter(args))
            .map_err(db_err)?;
        Ok(n as u64)
    }

    async fn insert(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Id>> {
        Ok((self.run(sql, args).await? > 0).then(|| self.0.last_insert_rowid()))
    }

    async fn rows<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        mut map: impl FnMut(&dyn ExecRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut st = self.prepare(sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(args)).map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            out.push(map(&LiteRow(r))?);
        }
        Ok(out)
    }

    async fn batch(&mut self, sql: &str) -> Result<()> {
        self.0.execute_batch(sql).map_err(db_err)
    }
}

/// The result of an operation run on [`Lite`], whose futures never wait.
pub(crate) fn now<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => Err(StoreError::backend(
            "an operation on SQLite waited for something other than SQLite",
        )),
    }
}
