//! The store's logic, written once over [`Exec`](crate::exec::Exec): every statement, every
//! decision (which rows a claim takes, what a receipt does to its message, who an inbound
//! text is for), and the mapping of rows to the model. [`Store`](crate::Store) runs each
//! operation on the backend's executor, as a read or in a transaction.

pub(crate) mod audit;
pub(crate) mod batch;
pub(crate) mod contacts;
pub(crate) mod deliveries;
pub(crate) mod inbound;
pub(crate) mod jobs;
pub(crate) mod messages;
pub(crate) mod nodes;
pub(crate) mod retention;
pub(crate) mod users;
pub(crate) mod web;

/// The last migration applied to the database.
pub(crate) async fn schema_version(e: &mut impl crate::exec::Exec) -> crate::Result<i64> {
    crate::exec::int(
        e,
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        crate::exec::args![],
    )
    .await
}
