//! Upgrades: a database that an earlier build left, at any earlier schema version and with
//! rows in it, is migrated by this build's `Store::open` and keeps all of its data, usable.
//!
//! For each version `k` before this build's and each backend (`from_k::sqlite`,
//! `from_k::postgres`): the database is created at version `k` ([`crate::sqlite::create_at`],
//! [`crate::postgres::create_at`]), [`fill`] writes with plain SQL what a build of that version
//! could have stored (users, keys, messages queued, sent awaiting a receipt, delivered and
//! failed, a job, inbound texts, and whatever tables exist at `k`), and [`check`] opens it as
//! a store and reads it back, then sends the queued message and applies the waiting receipt,
//! through the `Store` API only.
//!
//! A new migration adds its version to `from_each_version!` below (the test
//! `every_earlier_version_is_tested` fails until it does) and, when it adds a table or a
//! column, a [`Since`] for it and its rows to [`fill`] and [`check`].

use textgate_core::clock::Millis;
use textgate_core::status::Status;

use crate::exec::{args, insert, int, Exec};
use crate::model::*;
use crate::{JobState, Store};

/// The migration that brought something, on each backend (their numbers differ from 5 on).
#[derive(Clone, Copy)]
struct Since {
    sqlite: i64,
    postgres: i64,
}

/// Inbound routing: the suppression list, deliveries (webhooks, e-mail), a message's origin
/// and API key, a key's webhook secret.
const ROUTING: Since = Since {
    sqlite: 2,
    postgres: 2,
};
/// Bulk jobs that resume: a job's file and resume point, each message's row, refused rows.
const JOB_IMPORT: Since = Since {
    sqlite: 3,
    postgres: 3,
};
/// Texts from e-mail (their sender), and every attempt of a delivery.
const EMAIL: Since = Since {
    sqlite: 4,
    postgres: 4,
};
/// When an API key was last used.
const KEY_USE: Since = Since {
    sqlite: 7,
    postgres: 5,
};
/// The web UI: sessions, disabled users, inbox marks, contacts and groups, disabled devices.
const WEB: Since = Since {
    sqlite: 8,
    postgres: 7,
};
/// The senders a user may send as, and the attempts of a message that did not send.
const SENDERS: Since = Since {
    sqlite: 9,
    postgres: 8,
};
/// Nodes and leases.
const NODES: Since = Since {
    sqlite: 10,
    postgres: 9,
};
/// The content keys of inbound texts.
const INBOUND_SEEN: Since = Since {
    sqlite: 11,
    postgres: 10,
};

/// The audit log.
const AUDIT: Since = Since {
    sqlite: 12,
    postgres: 12,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// A database as a build of schema `version` left it.
#[derive(Clone, Copy)]
struct Old {
    kind: Kind,
    version: i64,
}

impl Old {
    fn has(self, what: Since) -> bool {
        self.version
            >= match self.kind {
                Kind::Sqlite => what.sqlite,
                Kind::Postgres => what.postgres,
            }
    }
}

/// When the old build wrote its rows.
const T: Millis = 1_000_000;
const HOUR: Millis = 3_600_000;
/// A lease's end, later than any clock this test runs by.
const FAR: Millis = 9_000_000_000_000;

/// The ids [`fill`] got back.
struct Rows {
    ann: Id,
    bob: Id,
    cy: Id,
    ann_key: Id,
    job: Id,
    queued: Id,
    sent: Id,
    delivered: Id,
    failed: Id,
    job_message: Id,
    texts: [Id; 2],
    inbound_hook: Option<Id>,
    dead_hook: Option<Id>,
}

/// Writes what a build at `old`'s version could have stored, with the SQL of that version.
async fn fill(e: &mut impl Exec, old: Old) -> crate::Result<Rows> {
    let user = "INSERT INTO users (name, role, email, password_hash, created_at)
                VALUES ($1, $2, $3, $4, $5)";
    let ann = insert(
        e,
        user,
        args!["ann", "admin", "ann@example.com", "$argon2id$ann", 1_i64],
    )
    .await?;
    let bob = insert(
        e,
        user,
        args!["bob", "user", None::<&str>, None::<&str>, 2_i64],
    )
    .await?;
    let cy = insert(
        e,
        user,
        args!["cy", "user", None::<&str>, None::<&str>, 3_i64],
    )
    .await?;

    let key = "INSERT INTO api_keys (user_id, key_hash, label, created_at, revoked_at)
               VALUES ($1, $2, $3, $4, $5)";
    let ann_key = insert(
        e,
        key,
        args![ann, "hash-ann", "tg_ann…", 4_i64, None::<i64>],
    )
    .await?;
    insert(
        e,
        key,
        args![bob, "hash-bob", "tg_bob…", 5_i64, Some(6_i64)],
    )
    .await?;

    let job = insert(
        e,
        "INSERT INTO jobs (owner_id, name, state, total, accepted, rejected, created_at, updated_at)
         VALUES ($1, 'march', 'running', 2, 1, 1, $2, $3)",
        args![ann, T - 900, T - 800],
    )
    .await?;

    let queued = message(
        e,
        OldMessage {
            owner: ann,
            to: "+15550000001",
            body: "queued before the upgrade",
            status: "queued",
            callback_url: Some("https://hooks.example/status"),
            reference: Some("ref-1"),
            ..OldMessage::default()
        },
    )
    .await?;
    let sent = message(
        e,
        OldMessage {
            owner: ann,
            to: "+15550000002",
            body: "sent, awaiting its receipt",
            status: "sent",
            sent_at: Some(T - 500),
            ..OldMessage::default()
        },
    )
    .await?;
    let delivered = message(
        e,
        OldMessage {
            owner: bob,
            to: "+15550000003",
            body: "delivered long ago",
            status: "delivered",
            sent_at: Some(T - 900),
            done_at: Some(T - 800),
            ..OldMessage::default()
        },
    )
    .await?;
    let failed = message(
        e,
        OldMessage {
            owner: ann,
            to: "+15550000004",
            body: "refused by the network",
            status: "failed",
            error: Some(("11", "bad number")),
            done_at: Some(T - 700),
            ..OldMessage::default()
        },
    )
    .await?;
    let job_message = message(
        e,
        OldMessage {
            owner: ann,
            job: Some(job),
            to: "+15550000005",
            body: "row 2 of march",
            status: "delivered",
            sent_at: Some(T - 850),
            done_at: Some(T - 800),
            ..OldMessage::default()
        },
    )
    .await?;
    let part = "INSERT INTO message_parts (message_id, part_no, device, device_msg_id, status,
                  submitted_at, done_at)
                VALUES ($1, 1, 'lb', $2, $3, $4, $5)";
    e.run(part, args![sent, "P-2", "sent", T - 500, None::<i64>])
        .await?;
    e.run(
        part,
        args![delivered, "P-3", "delivered", T - 900, Some(T - 800)],
    )
    .await?;
    e.run(
        part,
        args![job_message, "P-5", "delivered", T - 850, Some(T - 800)],
    )
    .await?;
    e.run(
        "INSERT INTO idempotency (user_id, key, fingerprint, response, created_at)
         VALUES ($1, 'idem-1', 'fp-1', 'the answer of then', $2)",
        args![ann, T - 1000],
    )
    .await?;

    let texts = [
        inbound(e, old, "hello ann", Some("lb:k1"), false, T - 600).await?,
        inbound(e, old, "part of a long one", None, true, T - 500).await?,
    ];
    e.run(
        "INSERT INTO inbound_designations (user_id, inbound_id) VALUES ($1, $2)",
        args![ann, texts[0]],
    )
    .await?;

    let (mut inbound_hook, mut dead_hook) = (None, None);
    if old.has(ROUTING) {
        e.run(
            "UPDATE messages SET api_key_id = $1 WHERE id = $2",
            args![ann_key, queued],
        )
        .await?;
        e.run(
            "UPDATE messages SET origin = 'reply' WHERE id = $1",
            args![delivered],
        )
        .await?;
        e.run(
            "UPDATE api_keys SET webhook_secret = 'whsec' WHERE id = $1",
            args![ann_key],
        )
        .await?;
        e.run(
            "INSERT INTO suppressions (number, source, note, created_at)
             VALUES ('+15550000666', 'keyword', 'STOP', $1)",
            args![T - 400],
        )
        .await?;
        inbound_hook = Some(
            insert(
                e,
                "INSERT INTO deliveries (channel, event, target, inbound_id, next_at, give_up_at,
                   created_at)
                 VALUES ('webhook', 'message.inbound', 'https://hooks.example/in', $1, $2, $3, $4)",
                args![texts[0], T - 600, T + HOUR, T - 600],
            )
            .await?,
        );
        dead_hook = Some(
            insert(
                e,
                "INSERT INTO deliveries (channel, event, target, message_id, status, owner_id,
                   state, attempts, next_at, give_up_at, last_code, last_error, created_at, done_at)
                 VALUES ('webhook', 'message.status', 'https://hooks.example/status', $1, 'failed',
                   $2, 'dead', 3, $3, $4, 500, 'server error', $5, $6)",
                args![failed, ann, T - 100, T - 100, T - 700, T - 100],
            )
            .await?,
        );
    }
    if old.has(JOB_IMPORT) {
        e.run(
            "UPDATE jobs SET source = 'spool', params = '{\"dedupe\":true}', file = 'march.csv',
               file_offset = 40, file_line = 4, next_row = 4, segments = 1, imported_at = $1
             WHERE id = $2",
            args![T - 800, job],
        )
        .await?;
        e.run(
            "UPDATE messages SET job_row = 2 WHERE id = $1",
            args![job_message],
        )
        .await?;
        e.run(
            "INSERT INTO job_rejects (job_id, row, kind, number, message)
             VALUES ($1, 3, 'rejected', '12', 'not a phone number')",
            args![job],
        )
        .await?;
    }
    if old.has(EMAIL) {
        e.run(
            "UPDATE messages SET email_from = 'dee@example.com' WHERE id = $1",
            args![failed],
        )
        .await?;
        for attempt in 1..=3 {
            e.run(
                "INSERT INTO delivery_attempts (delivery_id, attempt, at, code, error)
                 VALUES ($1, $2, $3, 500, 'server error')",
                args![dead_hook, attempt, T - 400 + attempt * 100],
            )
            .await?;
        }
    }
    if old.has(KEY_USE) {
        e.run(
            "UPDATE api_keys SET last_used_at = $1 WHERE id = $2",
            args![T - 300, ann_key],
        )
        .await?;
    }
    if old.has(WEB) {
        e.run(
            "UPDATE users SET disabled_at = $1 WHERE id = $2",
            args![T - 200, cy],
        )
        .await?;
        e.run(
            "INSERT INTO web_sessions (token_hash, user_id, csrf, created_at, seen_at, expires_at)
             VALUES ('tok-ann', $1, 'csrf-ann', $2, $3, $4)",
            args![ann, T - 200, T - 100, T + 24 * HOUR],
        )
        .await?;
        e.run(
            "UPDATE inbound_designations SET read_at = $1 WHERE user_id = $2 AND inbound_id = $3",
            args![T - 100, ann, texts[0]],
        )
        .await?;
        let contact = insert(
            e,
            "INSERT INTO contacts (owner_id, name, number, fields, created_at)
             VALUES ($1, 'Dora', '+15550000004', '{\"city\":\"Oslo\"}', $2)",
            args![ann, T - 200],
        )
        .await?;
        let group = insert(
            e,
            "INSERT INTO contact_groups (owner_id, name, created_at) VALUES ($1, 'friends', $2)",
            args![ann, T - 200],
        )
        .await?;
        e.run(
            "INSERT INTO group_members (group_id, contact_id) VALUES ($1, $2)",
            args![group, contact],
        )
        .await?;
        e.run(
            "INSERT INTO device_controls (name, disabled_at, disabled_by) VALUES ('gsm1', $1, 'ann')",
            args![T - 200],
        )
        .await?;
    }
    if old.has(SENDERS) {
        e.run(
            "UPDATE users SET senders = $1 WHERE id = $2",
            args!["ACME\n+15550000100", bob],
        )
        .await?;
        e.run(
            "INSERT INTO message_attempts (message_id, attempt, device, at, outcome, code, error)
             VALUES ($1, 1, 'lb', $2, 'failed', '11', 'bad number')",
            args![failed, T - 700],
        )
        .await?;
    }
    if old.has(NODES) {
        e.run(
            "INSERT INTO nodes (id, name, address, version, started_at, seen_at)
             VALUES ('n1', 'node one', '10.0.0.1:8080', '0.9.0', $1, $2)",
            args![T - 1000, T - 100],
        )
        .await?;
        e.run(
            "INSERT INTO leases (name, holder, until) VALUES ('maintenance', 'n1', $1)",
            args![FAR],
        )
        .await?;
    }
    if old.has(INBOUND_SEEN) {
        e.run(
            "INSERT INTO inbound_seen (key, at) VALUES ('smpp:lb:seen', $1)",
            args![T - 100],
        )
        .await?;
    }
    if old.has(AUDIT) {
        e.run(
            "INSERT INTO audit_log (at, actor, via, address, action, target, detail)
             VALUES ($1, 'ann', 'web', '192.0.2.1', 'user.disabled', 'cy', NULL)",
            args![T - 50],
        )
        .await?;
    }
    Ok(Rows {
        ann,
        bob,
        cy,
        ann_key,
        job,
        queued,
        sent,
        delivered,
        failed,
        job_message,
        texts,
        inbound_hook,
        dead_hook,
    })
}

/// A message in version 1's columns: all that a message had then, and still has.
#[derive(Default)]
struct OldMessage<'a> {
    owner: Id,
    job: Option<Id>,
    to: &'a str,
    body: &'a str,
    status: &'a str,
    /// The device's code and the reason.
    error: Option<(&'a str, &'a str)>,
    callback_url: Option<&'a str>,
    reference: Option<&'a str>,
    sent_at: Option<Millis>,
    done_at: Option<Millis>,
}

/// Stores a message: from sender `ACME`, created at `T - 1000`, and (unless still queued)
/// taken by device `lb` in one attempt.
async fn message(e: &mut impl Exec, m: OldMessage<'_>) -> crate::Result<Id> {
    let taken = m.status != "queued";
    insert(
        e,
        "INSERT INTO messages (owner_id, job_id, recipient, sender, body, encoding, segments,
           status, due_at, expires_at, attempts, device, error_code, error, callback_url,
           reference, created_at, sent_at, done_at)
         VALUES ($1, $2, $3, 'ACME', $4, 'gsm7', 1, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
           $15, $16)",
        args![
            m.owner,
            m.job,
            m.to,
            m.body,
            m.status,
            T - 1000,
            T + HOUR,
            i64::from(taken),
            taken.then_some("lb"),
            m.error.map(|x| x.0),
            m.error.map(|x| x.1),
            m.callback_url,
            m.reference,
            T - 1000,
            m.sent_at,
            m.done_at
        ],
    )
    .await
}

/// Stores an inbound text as the build at `old`'s version did: on PostgreSQL from version 2,
/// with an id taken from the counter row (see its migration 2); else with the table's own.
async fn inbound(
    e: &mut impl Exec,
    old: Old,
    body: &str,
    dedup_key: Option<&str>,
    partial: bool,
    at: Millis,
) -> crate::Result<Id> {
    if old.kind == Kind::Postgres && old.has(ROUTING) {
        let id = int(
            e,
            "UPDATE id_counters SET last = last + 1 WHERE name = 'inbound' RETURNING last",
            args![],
        )
        .await?;
        insert(
            e,
            "INSERT INTO inbound (id, device, sender, recipient, body, encoding, parts, partial,
               dedup_key, received_at)
             VALUES ($1, 'lb', '+15550000009', '+15550000000', $2, 'gsm7', 1, $3, $4, $5)",
            args![id, body, partial, dedup_key, at],
        )
        .await
    } else {
        insert(
            e,
            "INSERT INTO inbound (device, sender, recipient, body, encoding, parts, partial,
               dedup_key, received_at)
             VALUES ('lb', '+15550000009', '+15550000000', $1, 'gsm7', 1, $2, $3, $4)",
            args![body, partial, dedup_key, at],
        )
        .await
    }
}

/// Reads back through the store what [`fill`] wrote, then sends the queued message and
/// applies the receipt that was waiting.
async fn check(s: &Store, old: Old, r: &Rows) {
    let schema = match old.kind {
        Kind::Sqlite => crate::sqlite::SCHEMA,
        Kind::Postgres => crate::postgres::SCHEMA,
    };
    assert_eq!(s.schema_version().await.unwrap(), schema);

    // Users and their keys.
    let ann = s.user_by_name("ann").await.unwrap().expect("ann");
    assert_eq!(
        (
            ann.id,
            ann.role,
            ann.email.as_deref(),
            ann.password_hash.as_deref(),
            ann.disabled_at
        ),
        (
            r.ann,
            Role::Admin,
            Some("ann@example.com"),
            Some("$argon2id$ann"),
            None
        )
    );
    let bob = s.user_by_name("bob").await.unwrap().expect("bob");
    let senders: &[&str] = if old.has(SENDERS) {
        &["ACME", "+15550000100"]
    } else {
        &[]
    };
    assert_eq!((bob.id, bob.role), (r.bob, Role::User));
    assert_eq!(bob.senders, senders);
    let cy = s.user_by_id(r.cy).await.unwrap().expect("cy");
    assert_eq!(cy.disabled_at, old.has(WEB).then_some(T - 200));
    assert_eq!(s.count_users().await.unwrap(), 3);
    let key = s
        .api_key_by_hash("hash-ann")
        .await
        .unwrap()
        .expect("ann's key");
    assert_eq!(
        (key.id, key.user.id, key.webhook_secret.as_deref()),
        (r.ann_key, r.ann, old.has(ROUTING).then_some("whsec"))
    );
    assert_eq!(
        s.api_key_by_hash("hash-bob").await.unwrap(),
        None,
        "a revoked key stays revoked"
    );
    let keys = s.list_api_keys(None).await.unwrap();
    let keys: Vec<_> = keys
        .iter()
        .map(|k| (k.label.as_str(), k.last_used_at, k.revoked_at))
        .collect();
    assert_eq!(
        keys,
        [
            ("tg_bob…", None, Some(6)),
            ("tg_ann…", old.has(KEY_USE).then_some(T - 300), None)
        ]
    );

    // Messages, as they were.
    for (id, status, to, body) in [
        (
            r.queued,
            Status::Queued,
            "+15550000001",
            "queued before the upgrade",
        ),
        (
            r.sent,
            Status::Sent,
            "+15550000002",
            "sent, awaiting its receipt",
        ),
        (
            r.delivered,
            Status::Delivered,
            "+15550000003",
            "delivered long ago",
        ),
        (
            r.failed,
            Status::Failed,
            "+15550000004",
            "refused by the network",
        ),
        (
            r.job_message,
            Status::Delivered,
            "+15550000005",
            "row 2 of march",
        ),
    ] {
        let m = s.get_message(id).await.unwrap().expect("a message");
        assert_eq!(
            (m.status, m.to.as_str(), m.body.as_str(), m.from.as_deref()),
            (status, to, body, Some("ACME")),
            "message {id}"
        );
    }
    let queued = s.get_message(r.queued).await.unwrap().unwrap();
    assert_eq!(
        (
            queued.callback_url.as_deref(),
            queued.reference.as_deref(),
            queued.api_key_id
        ),
        (
            Some("https://hooks.example/status"),
            Some("ref-1"),
            old.has(ROUTING).then_some(r.ann_key)
        )
    );
    let delivered = s.get_message(r.delivered).await.unwrap().unwrap();
    assert_eq!(
        (
            delivered.owner_id,
            delivered.origin.as_deref(),
            delivered.delivered_at()
        ),
        (r.bob, old.has(ROUTING).then_some("reply"), Some(T - 800))
    );
    let failed = s.get_message(r.failed).await.unwrap().unwrap();
    assert_eq!(
        (
            failed.error_code.as_deref(),
            failed.error.as_deref(),
            failed.email_from.as_deref()
        ),
        (
            Some("11"),
            Some("bad number"),
            old.has(EMAIL).then_some("dee@example.com")
        )
    );
    let attempts = s.message_attempts(r.failed).await.unwrap();
    assert_eq!(attempts.len(), usize::from(old.has(SENDERS)));
    assert_eq!(
        s.unreceipted_parts("lb", 0, 10).await.unwrap(),
        [(r.sent, "P-2".to_string())]
    );
    assert_eq!(
        s.list_messages(MessageFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        5
    );
    let replay = s
        .insert_messages(
            Vec::new(),
            Some(Idempotency {
                user_id: r.ann,
                key: "idem-1".into(),
                fingerprint: "fp-1".into(),
            }),
            Box::new(|_: &[Id]| String::new()),
        )
        .await
        .unwrap();
    assert!(
        matches!(&replay, Inserted::Replay { response } if response == "the answer of then"),
        "{replay:?}"
    );

    // The job.
    let job = s.get_job(r.job).await.unwrap().expect("the job");
    assert_eq!(
        (
            job.owner_id,
            job.name.as_deref(),
            job.state,
            job.total,
            job.accepted,
            job.rejected
        ),
        (r.ann, Some("march"), JobState::Running, 2, 1, 1)
    );
    let imported = old.has(JOB_IMPORT);
    assert_eq!(
        (
            job.source.as_str(),
            job.next_row,
            job.imported_at,
            job.file.as_deref()
        ),
        if imported {
            ("spool", 4, Some(T - 800), Some("march.csv"))
        } else {
            ("api", 2, None, None)
        }
    );
    let results = s.job_results(r.job, 0, 10).await.unwrap();
    assert_eq!(
        results
            .iter()
            .map(|x| (x.id, x.row, x.status))
            .collect::<Vec<_>>(),
        [(
            r.job_message,
            if imported { 2 } else { 0 },
            Status::Delivered
        )]
    );
    assert_eq!(
        s.job_rejects(r.job, 0, 10).await.unwrap().len(),
        usize::from(imported)
    );
    assert_eq!(s.job_counts(r.job).await.unwrap(), [(Status::Delivered, 1)]);

    // Inbound texts, who they are for, and the ids after them.
    let all = s
        .list_inbound(InboundFilter {
            user_id: None,
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter()
            .map(|t| (t.id, t.body.as_str(), t.partial))
            .collect::<Vec<_>>(),
        [
            (r.texts[0], "hello ann", false),
            (r.texts[1], "part of a long one", true)
        ]
    );
    let anns = s
        .list_inbound(InboundFilter {
            user_id: Some(r.ann),
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(anns.iter().map(|t| t.id).collect::<Vec<_>>(), [r.texts[0]]);
    // Deliveries and the suppression list.
    if old.has(ROUTING) {
        let numbers: Vec<String> = s
            .list_suppressions(None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|x| x.number)
            .collect();
        assert_eq!(numbers, ["+15550000666"]);
        let due = s
            .claim_deliveries("webhook", T, T + 60_000, 10)
            .await
            .unwrap();
        assert_eq!(
            due.iter()
                .map(|d| (d.id, d.inbound_id, d.target.as_str()))
                .collect::<Vec<_>>(),
            [(
                r.inbound_hook.unwrap(),
                Some(r.texts[0]),
                "https://hooks.example/in"
            )]
        );
        let dead = r.dead_hook.unwrap();
        let d = s.get_delivery(dead).await.unwrap().expect("the dead one");
        assert_eq!(
            (d.state.as_str(), d.attempts, d.last_code, d.message_id),
            ("dead", 3, Some(500), Some(r.failed))
        );
        assert_eq!(
            s.delivery_attempts(dead).await.unwrap().len(),
            if old.has(EMAIL) { 3 } else { 0 }
        );
        let replayed = s.replay_delivery(dead, T, T + HOUR).await.unwrap();
        assert_eq!(replayed.map(|d| d.state), Some("pending".to_string()));
    }

    // What the web UI keeps.
    if old.has(WEB) {
        let session = s
            .session("tok-ann", T, HOUR)
            .await
            .unwrap()
            .expect("ann's session");
        assert_eq!(
            (session.user.id, session.csrf.as_str()),
            (r.ann, "csrf-ann")
        );
        let inbox = s
            .inbox(InboxFilter {
                user_id: r.ann,
                archived: false,
                from: None,
                before: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(
            inbox
                .iter()
                .map(|x| (x.text.id, x.read_at))
                .collect::<Vec<_>>(),
            [(r.texts[0], Some(T - 100))]
        );
        let contacts = s.list_contacts(r.ann, None, 0, 10).await.unwrap();
        assert_eq!(
            contacts
                .iter()
                .map(|c| (c.name.as_str(), c.number.as_str(), c.fields.as_str()))
                .collect::<Vec<_>>(),
            [("Dora", "+15550000004", "{\"city\":\"Oslo\"}")]
        );
        let groups = s.list_groups(r.ann).await.unwrap();
        assert_eq!(
            groups
                .iter()
                .map(|g| (g.name.as_str(), g.members))
                .collect::<Vec<_>>(),
            [("friends", 1)]
        );
        assert_eq!(
            s.disabled_devices().await.unwrap(),
            [("gsm1".to_string(), T - 200, "ann".to_string())]
        );
    }
    if old.has(AUDIT) {
        let log = s
            .audit_log(AuditFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            log.iter()
                .map(|a| (a.actor.as_str(), a.action.as_str(), a.target.as_str()))
                .collect::<Vec<_>>(),
            [("ann", "user.disabled", "cy")]
        );
    }
    // Limits came with schema 13: every older user has the defaults, nothing counted yet.
    let ann = s.user_by_id(r.ann).await.unwrap().unwrap();
    assert_eq!(ann.quota, Quota::default());
    assert_eq!(s.quota_used(r.ann, T).await.unwrap(), (0, 0));
    if old.has(NODES) {
        let nodes = s.nodes(0, 0).await.unwrap();
        assert_eq!(
            nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            ["n1"]
        );
        assert_eq!(
            s.leases().await.unwrap(),
            [("maintenance".to_string(), "n1".to_string(), FAR)]
        );
    }

    // New texts after the old ones: a key seen before is still seen.
    let text = |dedup_key: Option<&str>, same_within: Option<(String, Millis)>| NewInbound {
        device: "lb".into(),
        from: "+15550000009".into(),
        to: "+15550000000".into(),
        body: "after the upgrade".into(),
        encoding: "gsm7".into(),
        parts: 1,
        partial: false,
        dedup_key: dedup_key.map(str::to_string),
        same_within,
        received_at: T + 10,
        routing: Default::default(),
    };
    assert_eq!(
        s.insert_inbound(text(Some("lb:k1"), None)).await.unwrap(),
        InboundStored::Duplicate,
        "a dedup key seen before the upgrade"
    );
    let InboundStored::New(next) = s.insert_inbound(text(None, None)).await.unwrap() else {
        panic!("a new text was not stored");
    };
    assert!(next > r.texts[1], "new ids follow the old ones: {next}");
    if old.has(INBOUND_SEEN) {
        assert_eq!(
            s.insert_inbound(text(None, Some(("smpp:lb:seen".into(), HOUR))))
                .await
                .unwrap(),
            InboundStored::Duplicate,
            "a content key seen before the upgrade"
        );
    }

    // The queued message is sent as the dispatcher sends it, and the receipt that was
    // waiting and the new one deliver both messages.
    let claimed = s.claim(T, T + 60_000, 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|m| m.id).collect::<Vec<_>>(),
        [r.queued],
        "only the queued message is claimed"
    );
    let applied = s
        .record_outcomes(vec![Outcome::Sent {
            id: r.queued,
            attempt: claimed[0].attempts,
            device: "lb".into(),
            part_ids: vec!["P-1".into()],
            receipts: vec![],
            at: T + 20,
        }])
        .await
        .unwrap();
    assert_eq!(applied, [true]);
    let receipt = |part: &str| Receipt {
        device: "lb".into(),
        device_msg_id: part.into(),
        delivered: true,
        code: None,
        at: T + 30,
    };
    let got = s
        .apply_receipts(vec![receipt("P-1"), receipt("P-2")])
        .await
        .unwrap();
    assert_eq!(
        got,
        [
            ReceiptMatch::Part {
                message_id: r.queued,
                status: Some(Status::Delivered),
                submitted_at: T + 20,
            },
            ReceiptMatch::Part {
                message_id: r.sent,
                status: Some(Status::Delivered),
                submitted_at: T - 500,
            }
        ]
    );
    for id in [r.queued, r.sent] {
        let m = s.get_message(id).await.unwrap().unwrap();
        assert_eq!((m.status, m.done_at), (Status::Delivered, Some(T + 30)));
    }
    // Its status callbacks are queued once each: no trigger of an older schema queues them
    // again.
    let mut callbacks: Vec<(Id, Option<String>)> = s
        .list_deliveries(DeliveryFilter {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.message_id == Some(r.queued))
        .map(|d| (d.id, d.status))
        .collect();
    callbacks.sort();
    assert_eq!(
        callbacks.into_iter().map(|(_, st)| st).collect::<Vec<_>>(),
        [Some("sent".to_string()), Some("delivered".to_string())]
    );
    // And new messages follow the old ones.
    let Inserted::New { ids, .. } = s
        .insert_messages(
            vec![NewMessage {
                owner_id: r.ann,
                job_id: None,
                to: "+15550000006".into(),
                from: None,
                body: "after the upgrade".into(),
                encoding: "gsm7".into(),
                segments: 1,
                schedule_at: None,
                expires_at: T + HOUR,
                callback_url: None,
                reference: None,
                priority: 0,
                created_at: T + 40,
                claimed_until: None,
                origin: None,
                api_key_id: None,
                email_from: None,
            }],
            None,
            Box::new(|_: &[Id]| String::new()),
        )
        .await
        .unwrap()
    else {
        panic!("a new message was not stored");
    };
    assert!(
        ids[0] > r.job_message,
        "new ids follow the old ones: {ids:?}"
    );
}

/// Creates a database at `version` on `kind`, fills it, opens it with this build and checks it.
async fn upgrade(kind: Kind, version: i64) {
    let old = Old { kind, version };
    match kind {
        Kind::Sqlite => {
            let dir = std::env::temp_dir().join(format!("tg-upgrade-{}", suffix()));
            std::fs::create_dir_all(&dir).expect("a folder");
            let path = dir.join("t.db");
            let rows = {
                let c = crate::sqlite::create_at(&path, version).expect("an old database");
                c.execute_batch("BEGIN").expect("begin");
                let rows = crate::sqlite::now(fill(&mut crate::sqlite::Lite(&c), old))
                    .expect("rows of then");
                c.execute_batch("COMMIT").expect("commit");
                rows
            };
            let s = Store::open(&format!("sqlite://{}", path.display()))
                .await
                .expect("migrated");
            check(&s, old, &rows).await;
            s.close().await;
            let _ = std::fs::remove_dir_all(dir);
        }
        Kind::Postgres => {
            let schema = Schema::new(version).await;
            let url = schema.url();
            let rows = {
                let mut client = crate::postgres::create_at(&url, version)
                    .await
                    .expect("an old database");
                let tx = client.transaction().await.expect("begin");
                let mut prepared = Default::default();
                let rows = fill(&mut crate::postgres::Pg::new(&tx, &mut prepared), old)
                    .await
                    .expect("rows of then");
                tx.commit().await.expect("commit");
                rows
            };
            let s = Store::open(&url).await.expect("migrated");
            check(&s, old, &rows).await;
        }
    }
}

fn suffix() -> String {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn postgres_base() -> String {
    std::env::var("TEXTGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A test's own schema in the test database, dropped when the test ends (by `psql`, as in
/// the conformance suite: the store's connections are still open, idle).
struct Schema(String);

impl Schema {
    async fn new(version: i64) -> Schema {
        let name = format!("tg_upgrade_{version}_{}", suffix());
        let (client, conn) = tokio_postgres::connect(&postgres_base(), tokio_postgres::NoTls)
            .await
            .expect(
                "PostgreSQL must run at 127.0.0.1:5432 (set TEXTGATE_TEST_POSTGRES to another URL)",
            );
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .expect("create schema");
        Schema(name)
    }

    fn url(&self) -> String {
        let base = postgres_base();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-csearch_path%3D{}", self.0)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                &postgres_base(),
                "-qc",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0),
            ])
            .output();
    }
}

/// One test per earlier version and backend: `from_K::sqlite`, `from_K::postgres`.
macro_rules! from_each_version {
    ($($name:ident: $version:literal),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::upgrade(super::Kind::Sqlite, $version).await;
                }

                #[tokio::test]
                async fn postgres() {
                    super::upgrade(super::Kind::Postgres, $version).await;
                }
            }
        )*

        /// A new migration makes the version before it one to upgrade from: add it above.
        #[test]
        fn every_earlier_version_is_tested() {
            let tested = [$($version),*];
            for (backend, schema) in [("sqlite", crate::sqlite::SCHEMA), ("postgres", crate::postgres::SCHEMA)] {
                assert_eq!(
                    tested.to_vec(),
                    (1..schema).collect::<Vec<i64>>(),
                    "the versions a {backend} database is upgraded from"
                );
            }
        }
    };
}

from_each_version! {
    from_1: 1,
    from_2: 2,
    from_3: 3,
    from_4: 4,
    from_5: 5,
    from_6: 6,
    from_7: 7,
    from_8: 8,
    from_9: 9,
    from_10: 10,
    from_11: 11,
    from_12: 12,
}
