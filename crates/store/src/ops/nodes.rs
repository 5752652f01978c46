//! The nodes that run on one store, and named leases: what several `textgate serve` nodes on
//! one PostgreSQL database share to know of each other, and to do once what must run once
//! (docs/operations.md). On SQLite there is one node, and the same statements simply always
//! find it alone.

use textgate_core::clock::Millis;

use crate::exec::{args, Exec};
use crate::model::Node;
use crate::Result;

/// Records that node `n` is alive now (inserting it when it starts).
pub(crate) async fn beat(e: &mut impl Exec, n: &Node, now: Millis) -> Result<()> {
    e.run(
        "INSERT INTO nodes (id, name, address, version, started_at, seen_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, address = excluded.address",
        args![&n.id, &n.name, &n.address, &n.version, n.started_at, now],
    )
    .await?;
    Ok(())
}

/// Records that node `id` stopped cleanly, and gives up every lease it held.
pub(crate) async fn stopped(e: &mut impl Exec, id: &str, now: Millis) -> Result<()> {
    e.run(
        "UPDATE nodes SET stopped_at = $1, seen_at = $1 WHERE id = $2",
        args![now, id],
    )
    .await?;
    e.run("DELETE FROM leases WHERE holder = $1", args![id])
        .await?;
    Ok(())
}

/// The nodes seen since `since` (and the ones that stopped since then), newest start first.
/// Rows of nodes gone before `forget_before` are deleted.
pub(crate) async fn list(
    e: &mut impl Exec,
    since: Millis,
    forget_before: Millis,
) -> Result<Vec<Node>> {
    e.run("DELETE FROM nodes WHERE seen_at < $1", args![forget_before])
        .await?;
    e.rows(
        "SELECT id, name, address, version, started_at, seen_at, stopped_at FROM nodes
          WHERE seen_at >= $1 ORDER BY started_at DESC, id",
        args![since],
        |r| {
            Ok(Node {
                id: r.text(0)?,
                name: r.text(1)?,
                address: r.text(2)?,
                version: r.text(3)?,
                started_at: r.int(4)?,
                seen_at: r.int(5)?,
                stopped_at: r.opt_int(6)?,
            })
        },
    )
    .await
}

/// Takes lease `name` for `holder` until `until`, or renews it: granted when nobody holds
/// it, when its holder's lease ran out before `now`, or when `holder` holds it already.
pub(crate) async fn take_lease(
    e: &mut impl Exec,
    name: &str,
    holder: &str,
    now: Millis,
    until: Millis,
) -> Result<bool> {
    Ok(e.run(
        "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
          WHERE leases.holder = excluded.holder OR leases.until < $4",
        args![name, holder, until, now],
    )
    .await?
        > 0)
}

/// Gives lease `name` up, if `holder` holds it.
pub(crate) async fn release_lease(e: &mut impl Exec, name: &str, holder: &str) -> Result<()> {
    e.run(
        "DELETE FROM leases WHERE name = $1 AND holder = $2",
        args![name, holder],
    )
    .await?;
    Ok(())
}

/// Every lease still running at `now`: `(name, holder, until)`.
pub(crate) async fn leases(
    e: &mut impl Exec,
    now: Millis,
) -> Result<Vec<(String, String, Millis)>> {
    e.rows(
        "SELECT name, holder, until FROM leases WHERE until >= $1 ORDER BY name",
        args![now],
        |r| Ok((r.text(0)?, r.text(1)?, r.int(2)?)),
    )
    .await
}
