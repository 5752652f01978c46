//! One behaviour, two backends: every test here runs against SQLite (a fresh file) and
//! against the PostgreSQL that CI runs at 127.0.0.1:5432 (a fresh schema in database `test`;
//! `TEXTGATE_TEST_POSTGRES` overrides the URL), as two tests: `NAME::sqlite` and
//! `NAME::postgres`.

use textgate_core::status::Status;
use textgate_store::*;

async fn sqlite() -> Store {
    let dir = std::env::temp_dir().join(format!("tg-store-{}", rand_suffix()));
    let url = format!("sqlite://{}/t.db", dir.display());
    Store::open(&url).await.expect("open sqlite")
}

fn rand_suffix() -> String {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn postgres_base() -> String {
    std::env::var("TEXTGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A test's schema, dropped when the test ends (by `psql`: the test's own connections are
/// still open, idle, while it is dropped).
struct Schema(String);

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

/// A store on a fresh schema, and the schema (dropped with it).
async fn postgres() -> (Store, Schema) {
    let base = postgres_base();
    let schema = format!("tg_{}", rand_suffix());
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect(
            "PostgreSQL must run at 127.0.0.1:5432 (set TEXTGATE_TEST_POSTGRES to another URL)",
        );
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = Store::open(&format!("{base}{sep}options=-csearch_path%3D{schema}"))
        .await
        .expect("open postgres");
    (store, Schema(schema))
}

/// One test per backend, named after it (`NAME::sqlite`, `NAME::postgres`), so that a
/// failure on one neither hides the other's result nor leaves the backend unnamed.
macro_rules! conformance {
    ($(#[$attr:meta])* async fn $name:ident($s:ident) $body:block) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let $s = super::sqlite().await;
                $body
            }

            #[tokio::test]
            async fn postgres() {
                let (store, _schema) = super::postgres().await;
                let $s = store;
                $body
            }
        }
    };
}

async fn user(s: &Store, name: &str) -> User {
    s.create_user(NewUser {
        name: name.into(),
        role: Role::User,
        email: None,
        password_hash: None,
        created_at: 1,
    })
    .await
    .unwrap()
}

fn msg(owner: Id, to: &str, now: i64) -> NewMessage {
    NewMessage {
        owner_id: owner,
        job_id: None,
        to: to.into(),
        from: None,
        body: "hello".into(),
        encoding: "gsm7".into(),
        segments: 1,
        schedule_at: None,
        expires_at: now + 3_600_000,
        callback_url: None,
        reference: None,
        priority: 0,
        created_at: now,
        claimed_until: None,
        origin: None,
        api_key_id: None,
        email_from: None,
    }
}

/// Attempt 1 of message `id`, sent through "lb" at t=20 as `parts`, with the receipts known
/// by then (one per part, or none at all).
fn sent(id: Id, parts: &[&str], receipts: Vec<Option<PartReceipt>>) -> Outcome {
    Outcome::Sent {
        id,
        attempt: 1,
        device: "lb".into(),
        part_ids: parts.iter().map(|p| p.to_string()).collect(),
        receipts,
        at: 20,
    }
}

/// The device's permanent refusal of attempt 1 of message `id`.
fn failed(id: Id, at: i64) -> Outcome {
    Outcome::Final {
        id,
        attempt: 1,
        status: Status::Failed,
        device: Some("lb".into()),
        code: Some("11".into()),
        error: "bad number".into(),
        at,
    }
}

fn render_ids() -> RenderFn {
    Box::new(|ids: &[Id]| format!("{ids:?}"))
}

async fn insert(s: &Store, m: Vec<NewMessage>) -> Vec<Id> {
    match s.insert_messages(m, None, render_ids()).await.unwrap() {
        Inserted::New { ids, .. } => ids,
        other => panic!("{other:?}"),
    }
}

conformance! {
    async fn users_and_api_keys(s) {
    let u = user(&s, "alice").await;
    let dup = s
        .create_user(NewUser {
            name: "alice".into(),
            role: Role::Admin,
            email: None,
            password_hash: None,
            created_at: 2,
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(m)) if m.contains("alice")));
    assert_eq!(s.user_by_name("alice").await.unwrap(), Some(u.clone()));
    assert_eq!(s.user_by_id(u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(s.user_by_name("bob").await.unwrap(), None);
    let k1 = s
        .create_api_key(u.id, "h1".into(), "tg_ab…".into(), None)
        .await
        .unwrap();
    assert_eq!(
        s.user_by_api_key("h1").await.unwrap().map(|x| x.id),
        Some(u.id)
    );
    let k3 = s
        .create_api_key(u.id, "h3".into(), "tg_cd…".into(), Some("whsec".into()))
        .await
        .unwrap();
    let key = s.api_key_by_hash("h3").await.unwrap().unwrap();
    assert_eq!((key.id, key.user.id), (k3, u.id));
    assert_eq!(key.webhook_secret.as_deref(), Some("whsec"));
    assert_eq!(
        s.api_key_secret(k3).await.unwrap().as_deref(),
        Some("whsec")
    );
    assert_eq!(s.api_key_secret(k1).await.unwrap(), None);
    assert_eq!(s.user_by_api_key("h2").await.unwrap(), None);
    assert_eq!(s.count_users().await.unwrap(), 1);
    s.health().await.unwrap();
    }
}

conformance! {
    async fn api_keys_are_listed_used_and_revoked(s) {
    let a = user(&s, "alice").await;
    let b = user(&s, "bob").await;
    let ka = s
        .create_api_key(a.id, "ha".into(), "tg_aa…".into(), Some("whsec".into()))
        .await
        .unwrap();
    let kb = s
        .create_api_key(b.id, "hb".into(), "tg_bb…".into(), None)
        .await
        .unwrap();
    let all = s.list_api_keys(None).await.unwrap();
    assert_eq!(
        all.iter().map(|k| k.id).collect::<Vec<_>>(),
        vec![kb, ka],
        "newest first"
    );
    let mine = s.list_api_keys(Some(a.id)).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (
            mine[0].user.as_str(),
            mine[0].label.as_str(),
            mine[0].webhook_secret,
            mine[0].last_used_at
        ),
        ("alice", "tg_aa…", true, None)
    );
    s.touch_api_key(ka, 5000).await.unwrap();
    assert_eq!(
        s.list_api_keys(Some(a.id)).await.unwrap()[0].last_used_at,
        Some(5000)
    );
    // Bob cannot revoke alice's key; it is as if it did not exist.
    assert_eq!(s.revoke_api_key(ka, Some(b.id), 6000).await.unwrap(), None);
    assert!(s.api_key_by_hash("ha").await.unwrap().is_some());
    let revoked = s
        .revoke_api_key(ka, Some(a.id), 6000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(6000));
    assert_eq!(s.api_key_by_hash("ha").await.unwrap(), None);
    // Again: nothing changes.
    let again = s.revoke_api_key(ka, None, 7000).await.unwrap().unwrap();
    assert_eq!(again.revoked_at, Some(6000));
    assert_eq!(
        s.revoked_api_keys_since(5999).await.unwrap(),
        vec![(ka, 6000)]
    );
    assert!(s.revoked_api_keys_since(6000).await.unwrap().is_empty());
    assert_eq!(s.revoke_api_key(999_999, None, 1).await.unwrap(), None);
    assert!(s.api_key_by_hash("hb").await.unwrap().is_some());
    }
}

conformance! {
    async fn users_by_email_ignore_case_and_take_the_oldest(s) {
    let with_email = |name: &str, email: Option<&str>| NewUser {
        name: name.into(),
        role: Role::User,
        email: email.map(str::to_string),
        password_hash: None,
        created_at: 1,
    };
    let carol = s
        .create_user(with_email("carol", Some("Carol@Example.com")))
        .await
        .unwrap();
    s.create_user(with_email("nomail", None)).await.unwrap();
    let twin = s
        .create_user(with_email("carol2", Some("carol@example.com")))
        .await
        .unwrap();
    assert!(twin.id > carol.id);
    assert_eq!(
        s.user_by_email("CAROL@example.COM").await.unwrap(),
        Some(carol)
    );
    assert_eq!(s.user_by_email("dave@example.com").await.unwrap(), None);
    assert_eq!(s.user_by_email("").await.unwrap(), None);
    }
}

conformance! {
    async fn insert_get_list_with_owner_and_cursor(s) {
    let a = user(&s, "a").await;
    let b = user(&s, "b").await;
    let ids = insert(
        &s,
        (0..5)
            .map(|i| msg(a.id, &format!("+1555000000{i}"), 1000))
            .collect(),
    )
    .await;
    let bid = insert(&s, vec![msg(b.id, "+15559999999", 1000)]).await[0];
    assert_eq!(ids.len(), 5);
    let m = s.get_message(ids[2]).await.unwrap().unwrap();
    assert_eq!(
        (m.to.as_str(), m.status, m.owner_id, m.segments),
        ("+15550000002", Status::Queued, a.id, 1)
    );
    let page = s
        .list_messages(MessageFilter {
            owner_id: Some(a.id),
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3], ids[2]]
    );
    let page2 = s
        .list_messages(MessageFilter {
            owner_id: Some(a.id),
            before: Some(ids[2]),
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page2.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[1], ids[0]]
    );
    let all = s
        .list_messages(MessageFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[0].id, bid);
    let none = s
        .list_messages(MessageFilter {
            status: Some(Status::Sent),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    }
}

conformance! {
    async fn idempotency_replays_and_refuses_a_different_request(s) {
    let a = user(&s, "a").await;
    let key = |fp: &str| {
        Some(Idempotency {
            user_id: a.id,
            key: "k1".into(),
            fingerprint: fp.into(),
        })
    };
    let first = s
        .insert_messages(vec![msg(a.id, "+15550000001", 1)], key("f"), render_ids())
        .await
        .unwrap();
    let Inserted::New { ids, response, .. } = first else {
        panic!()
    };
    let again = s
        .insert_messages(vec![msg(a.id, "+15550000001", 1)], key("f"), render_ids())
        .await
        .unwrap();
    assert_eq!(
        again,
        Inserted::Replay {
            response: response.clone()
        }
    );
    assert_eq!(response, format!("{ids:?}"));
    let other = s
        .insert_messages(vec![msg(a.id, "+15550000002", 1)], key("g"), render_ids())
        .await
        .unwrap();
    assert_eq!(other, Inserted::KeyReused);
    let all = s
        .list_messages(MessageFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "a replay stores nothing");
    }
}

conformance! {
    async fn claim_is_ordered_leased_and_exclusive(s) {
    let a = user(&s, "a").await;
    let mut low = msg(a.id, "+15550000001", 1000);
    low.priority = 5;
    let mut later = msg(a.id, "+15550000002", 1000);
    later.schedule_at = Some(5000);
    let ids = insert(&s, vec![low, later, msg(a.id, "+15550000003", 1000)]).await;
    assert_eq!(
        s.get_message(ids[1]).await.unwrap().unwrap().status,
        Status::Scheduled
    );
    let got = s.claim(2000, 32_000, 10).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[2], ids[0]],
        "priority first, scheduled not yet"
    );
    assert!(got
        .iter()
        .all(|m| m.status == Status::Sending && m.attempts == 1));
    assert!(
        s.claim(2000, 32_000, 10).await.unwrap().is_empty(),
        "a claimed message is not claimed twice"
    );
    let m = s.maintain(6000).await.unwrap();
    assert_eq!(
        m,
        Maintenance {
            promoted: 1,
            requeued: 0,
            expired: 0
        }
    );
    assert_eq!(s.claim(6000, 36_000, 10).await.unwrap().len(), 1);
    // The lease of the first two runs out at 32 000: back in the queue; the third is
    // leased until 36 000.
    let m = s.maintain(33_000).await.unwrap();
    assert_eq!(m.requeued, 2);
    let again = s.claim(33_000, 63_000, 10).await.unwrap();
    assert_eq!(
        again.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[2], ids[0]]
    );
    assert!(again.iter().all(|m| m.attempts == 2));
    }
}

conformance! {
    async fn concurrent_claims_never_share_a_message(s) {
    let a = user(&s, "a").await;
    insert(
        &s,
        (0..200)
            .map(|i| msg(a.id, &format!("+1555{i:07}"), 1))
            .collect(),
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = s.claim(10, 100_000, 7).await.unwrap();
                if batch.is_empty() {
                    break got;
                }
                got.extend(batch.into_iter().map(|m| m.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!((n, all.len()), (200, 200));
    }
}

conformance! {
    async fn outcomes_are_fenced_by_attempt_and_receipts_complete_messages(s) {
    let a = user(&s, "a").await;
    let mut long = msg(a.id, "+15550000002", 1);
    long.segments = 2;
    let ids = insert(
        &s,
        vec![
            msg(a.id, "+15550000001", 1),
            long,
            msg(a.id, "+15550000003", 1),
            msg(a.id, "+15550000004", 1),
        ],
    )
    .await;
    let c = s.claim(10, 1000, 10).await.unwrap();
    assert_eq!(c.len(), 4);
    let applied = s
        .record_outcomes(vec![
            sent(ids[0], &["A1"], vec![]),
            sent(ids[1], &["B1", "B2"], vec![]),
            Outcome::Retry {
                id: ids[2],
                attempt: 1,
                device: Some("lb".into()),
                due_at: 500,
                code: Some("88".into()),
                error: "throttled".into(),
                refund: true,
                at: 0,
            },
            failed(ids[3], 20),
            // A stale worker's outcome (attempt 0) is ignored.
            sent(ids[2], &["X"], vec![]),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, true, true, true, false]);
    let m2 = s.get_message(ids[2]).await.unwrap().unwrap();
    assert_eq!(m2.attempts, 0, "a throttled attempt does not count");
    assert_eq!(
        (m2.status, m2.due_at, m2.error.as_deref()),
        (Status::Queued, 500, Some("throttled"))
    );
    let m3 = s.get_message(ids[3]).await.unwrap().unwrap();
    assert_eq!(
        (m3.status, m3.error_code.as_deref()),
        (Status::Failed, Some("11"))
    );
    let r = |id: &str, ok: bool| Receipt {
        device: "lb".into(),
        device_msg_id: id.into(),
        delivered: ok,
        code: (!ok).then(|| "1".into()),
        at: 30,
    };
    let got = s
        .apply_receipts(vec![r("A1", true), r("B1", true), r("nope", true)])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            ReceiptMatch::Part {
                message_id: ids[0],
                status: Some(Status::Delivered),
                submitted_at: 20,
            },
            ReceiptMatch::Part {
                message_id: ids[1],
                status: None,
                submitted_at: 20,
            },
            ReceiptMatch::Unknown
        ]
    );
    let m0 = s.get_message(ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (m0.status, m0.delivered_at(), m0.sent_at),
        (Status::Delivered, Some(30), Some(20))
    );
    assert_eq!(
        s.get_message(ids[1]).await.unwrap().unwrap().status,
        Status::Sent,
        "one part of two is not the message"
    );
    let got = s.apply_receipts(vec![r("B2", false)]).await.unwrap();
    assert_eq!(
        got,
        vec![ReceiptMatch::Part {
            message_id: ids[1],
            status: Some(Status::Undelivered),
            submitted_at: 20,
        }]
    );
    let parts = s.message_parts(ids[1]).await.unwrap();
    assert_eq!(
        parts.iter().map(|p| p.status.as_str()).collect::<Vec<_>>(),
        ["delivered", "undelivered"]
    );
    assert_eq!(parts[1].device_msg_id, "B2");
    }
}

conformance! {
    async fn cancel_only_before_sending_and_only_own(s) {
    let a = user(&s, "a").await;
    let b = user(&s, "b").await;
    let ids = insert(
        &s,
        vec![msg(a.id, "+15550000001", 1), msg(a.id, "+15550000002", 1)],
    )
    .await;
    assert_eq!(
        s.cancel_message(ids[0], Some(b.id), 5).await.unwrap(),
        Cancel::NotFound
    );
    let Cancel::Cancelled(m) = s.cancel_message(ids[0], Some(a.id), 5).await.unwrap() else {
        panic!()
    };
    assert_eq!((m.status, m.done_at), (Status::Cancelled, Some(5)));
    assert_eq!(
        s.cancel_message(ids[0], None, 6).await.unwrap(),
        Cancel::TooLate(Status::Cancelled)
    );
    s.claim(10, 100, 10).await.unwrap();
    assert_eq!(
        s.cancel_message(ids[1], None, 6).await.unwrap(),
        Cancel::TooLate(Status::Sending)
    );
    assert_eq!(
        s.cancel_message(999_999, None, 6).await.unwrap(),
        Cancel::NotFound
    );
    let depth = s.queue_depth().await.unwrap();
    assert_eq!(
        depth,
        vec![
            (Status::Queued, 0),
            (Status::Scheduled, 0),
            (Status::Sending, 1)
        ]
    );
    }
}

#[tokio::test]
async fn reopening_keeps_data_and_does_not_migrate_twice() {
    let dir = std::env::temp_dir().join(format!("tg-store-{}", rand_suffix()));
    let url = format!("sqlite://{}/t.db", dir.display());
    let s = Store::open(&url).await.unwrap();
    let a = user(&s, "a").await;
    insert(&s, vec![msg(a.id, "+15550000001", 1)]).await;
    s.close().await;
    drop(s);
    let s = Store::open(&url).await.unwrap();
    assert_eq!(
        s.list_messages(MessageFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        1
    );
}

conformance! {
    async fn inbound_texts_are_stored_once_per_dedup_key(s) {
    let t = NewInbound {
        device: "lb".into(),
        from: "+15550000001".into(),
        to: "+15550000002".into(),
        body: "hi".into(),
        encoding: "gsm7".into(),
        parts: 1,
        partial: false,
        dedup_key: Some("lb:abc".into()),
        same_within: None,
        received_at: 5,
        routing: Default::default(),
    };
    assert!(matches!(
        s.insert_inbound(t.clone()).await.unwrap(),
        InboundStored::New(_)
    ));
    assert_eq!(
        s.insert_inbound(t.clone()).await.unwrap(),
        InboundStored::Duplicate
    );
    let mut other = t.clone();
    other.dedup_key = None;
    assert!(matches!(
        s.insert_inbound(other.clone()).await.unwrap(),
        InboundStored::New(_)
    ));
    assert!(
        matches!(
            s.insert_inbound(other).await.unwrap(),
            InboundStored::New(_)
        ),
        "no key, no dedup"
    );
    }
}

conformance! {
    async fn unreceipted_parts_and_receipt_expiry(s) {
    let a = user(&s, "a").await;
    let mut long = msg(a.id, "+15550000002", 1);
    long.segments = 2;
    long.expires_at = 10_000;
    let ids = insert(&s, vec![msg(a.id, "+15550000001", 1), long]).await;
    s.claim(10, 1000, 10).await.unwrap();
    s.record_outcomes(vec![
        sent(ids[0], &["A"], vec![]),
        sent(ids[1], &["B1", "B2"], vec![]),
    ])
    .await
    .unwrap();
    s.apply_receipts(vec![Receipt {
        device: "lb".into(),
        device_msg_id: "B1".into(),
        delivered: true,
        code: None,
        at: 30,
    }])
    .await
    .unwrap();
    let all = s.unreceipted_parts("lb", 0, 10).await.unwrap();
    assert_eq!(
        all,
        vec![(ids[0], "A".to_string()), (ids[1], "B2".to_string())]
    );
    assert_eq!(
        s.unreceipted_parts("lb", ids[0], 10).await.unwrap(),
        vec![(ids[1], "B2".to_string())]
    );
    assert!(s
        .unreceipted_parts("other", 0, 10)
        .await
        .unwrap()
        .is_empty());
    // An hour past its validity, the message that is still waiting is given up.
    let m = s.maintain(10_000 + RECEIPT_GRACE_MS + 1).await.unwrap();
    assert_eq!(m.expired, 1);
    let gone = s.get_message(ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (gone.status, gone.error.as_deref()),
        (Status::Expired, Some(NO_RECEIPT_ERROR))
    );
    assert_eq!(
        s.get_message(ids[0]).await.unwrap().unwrap().status,
        Status::Sent
    );
    }
}

conformance! {
    async fn messages_stored_already_claimed_skip_the_queue(s) {
    let a = user(&s, "a").await;
    let mut now_one = msg(a.id, "+15550000001", 1000);
    now_one.claimed_until = Some(31_000);
    let mut later = msg(a.id, "+15550000002", 1000);
    later.claimed_until = Some(31_000);
    later.schedule_at = Some(9_000);
    let Inserted::New { ids, stored, .. } = s
        .insert_messages(vec![now_one, later], None, render_ids())
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        stored
            .iter()
            .map(|m| (m.id, m.status, m.attempts))
            .collect::<Vec<_>>(),
        vec![(ids[0], Status::Sending, 1), (ids[1], Status::Scheduled, 0)]
    );
    assert_eq!(s.get_message(ids[0]).await.unwrap().unwrap(), stored[0]);
    assert!(
        s.claim(2000, 40_000, 10).await.unwrap().is_empty(),
        "a claimed message is not in the queue"
    );
    // Its lease runs out like any claim's.
    assert_eq!(s.maintain(32_000).await.unwrap().requeued, 1);
    let again = s.claim(32_000, 60_000, 10).await.unwrap();
    let first = again.iter().find(|m| m.id == ids[0]).expect("requeued");
    assert_eq!(first.attempts, 2);
    }
}

conformance! {
    async fn receipts_known_at_submit_are_written_with_the_parts(s) {
    let a = user(&s, "a").await;
    let mut two = msg(a.id, "+15550000002", 1);
    two.segments = 2;
    let ids = insert(&s, vec![msg(a.id, "+15550000001", 1), two.clone(), two]).await;
    s.claim(10, 1000, 10).await.unwrap();
    let ok = |at| {
        Some(PartReceipt {
            delivered: true,
            code: None,
            at,
        })
    };
    let bad = Some(PartReceipt {
        delivered: false,
        code: Some("027".into()),
        at: 40,
    });
    let applied = s
        .record_outcomes(vec![
            sent(ids[0], &["A"], vec![ok(30)]),
            // One part's receipt known: the message waits for the other.
            sent(ids[1], &["B1", "B2"], vec![ok(30), None]),
            // Any part undelivered ends it.
            sent(ids[2], &["C1", "C2"], vec![None, bad]),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, true, true]);
    let m0 = s.get_message(ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (m0.status, m0.sent_at, m0.delivered_at()),
        (Status::Delivered, Some(20), Some(30))
    );
    let m1 = s.get_message(ids[1]).await.unwrap().unwrap();
    assert_eq!(m1.status, Status::Sent);
    let m2 = s.get_message(ids[2]).await.unwrap().unwrap();
    assert_eq!(
        (m2.status, m2.error_code.as_deref(), m2.done_at),
        (Status::Undelivered, Some("027"), Some(40))
    );
    let parts = s.message_parts(ids[1]).await.unwrap();
    assert_eq!(
        parts
            .iter()
            .map(|p| (p.status.as_str(), p.done_at))
            .collect::<Vec<_>>(),
        [("delivered", Some(30)), ("sent", None)]
    );
    // The receipt for the missing part completes the message through the usual path.
    let r = Receipt {
        device: "lb".into(),
        device_msg_id: "B2".into(),
        delivered: true,
        code: None,
        at: 50,
    };
    assert_eq!(
        s.apply_receipts(vec![r]).await.unwrap(),
        vec![ReceiptMatch::Part {
            message_id: ids[1],
            status: Some(Status::Delivered),
            submitted_at: 20,
        }]
    );
    }
}

conformance! {
    /// A receipt can be read before its submit's answer (and so be stamped first): the message
    /// is never delivered before it was sent, whether the receipt is written with the outcome
    /// or after it.
    async fn a_receipt_read_before_its_submit_is_not_dated_before_it(s) {
    let a = user(&s, "a").await;
    let ids = insert(
        &s,
        vec![msg(a.id, "+15550000001", 1), msg(a.id, "+15550000002", 1)],
    )
    .await;
    s.claim(10, 1000, 10).await.unwrap();
    let early = Some(PartReceipt {
        delivered: true,
        code: None,
        at: 15,
    });
    s.record_outcomes(vec![
        sent(ids[0], &["A"], vec![early]),
        sent(ids[1], &["B"], vec![None]),
    ])
    .await
    .unwrap();
    let late = Receipt {
        device: "lb".into(),
        device_msg_id: "B".into(),
        delivered: true,
        code: None,
        at: 18,
    };
    s.apply_receipts(vec![late]).await.unwrap();
    for id in ids {
        let m = s.get_message(id).await.unwrap().unwrap();
        assert_eq!(
            (m.status, m.sent_at, m.delivered_at()),
            (Status::Delivered, Some(20), Some(20)),
            "message {id}"
        );
        let parts = s.message_parts(id).await.unwrap();
        assert_eq!(parts[0].done_at, Some(20), "message {id}'s part");
    }
    }
}

async fn admin(s: &Store, name: &str) -> User {
    s.create_user(NewUser {
        name: name.into(),
        role: Role::Admin,
        email: None,
        password_hash: None,
        created_at: 1,
    })
    .await
    .unwrap()
}

fn text(from: &str, body: &str, at: i64, routing: InboundRouting) -> NewInbound {
    NewInbound {
        device: "lb".into(),
        from: from.into(),
        to: "+15550000000".into(),
        body: body.into(),
        encoding: "gsm7".into(),
        parts: 1,
        partial: false,
        dedup_key: None,
        same_within: None,
        received_at: at,
        routing: Box::new(routing),
    }
}

async fn inbox(s: &Store, user: Option<Id>) -> Vec<String> {
    s.list_inbound(InboundFilter {
        user_id: user,
        after: None,
        limit: 100,
    })
    .await
    .unwrap()
    .into_iter()
    .map(|t| t.body)
    .collect()
}

async fn new_id(s: &Store, t: NewInbound) -> Id {
    match s.insert_inbound(t).await.unwrap() {
        InboundStored::New(id) => id,
        other => panic!("{other:?}"),
    }
}

conformance! {
    async fn inbound_routing_designates_rules_conversations_and_catch_all(s) {
    let root = admin(&s, "root").await;
    let alice = user(&s, "alice").await;
    let bob = user(&s, "bob").await;
    let carol = user(&s, "carol").await;
    // Bob texted +15550000009 at t=1000 and again at 1100: one conversation.
    insert(
        &s,
        vec![
            msg(bob.id, "+15550000009", 1000),
            msg(bob.id, "+15550000009", 1100),
        ],
    )
    .await;
    let rules = InboundRouting {
        matched: true,
        users: vec!["alice".into(), "nobody".into()],
        conversation_since: Some(500),
        ..Default::default()
    };
    let a = new_id(&s, text("+15550000009", "to alice and bob", 2000, rules)).await;
    // Nothing matched, no conversation: the catch-all (carol).
    let catch = InboundRouting {
        catch_all: vec!["carol".into()],
        conversation_since: Some(500),
        ..Default::default()
    };
    new_id(&s, text("+15550000001", "to carol", 2001, catch)).await;
    // Nothing matched, catch-all names nobody that exists: the admins.
    let lost = InboundRouting {
        catch_all: vec!["ghost".into()],
        ..Default::default()
    };
    new_id(&s, text("+15550000001", "to root", 2002, lost)).await;
    // A conversation older than the window does not count: the default catch-all.
    let old = InboundRouting {
        conversation_since: Some(1500),
        ..Default::default()
    };
    new_id(&s, text("+15550000009", "too late for bob", 2003, old)).await;

    assert_eq!(inbox(&s, Some(alice.id)).await, vec!["to alice and bob"]);
    assert_eq!(inbox(&s, Some(bob.id)).await, vec!["to alice and bob"]);
    assert_eq!(inbox(&s, Some(carol.id)).await, vec!["to carol"]);
    assert_eq!(
        inbox(&s, Some(root.id)).await,
        vec!["to root", "too late for bob"]
    );
    assert_eq!(inbox(&s, None).await.len(), 4, "admins list every text");
    assert_eq!(s.inbound_designees(a).await.unwrap(), vec!["alice", "bob"]);
    assert!(s.get_inbound(a, Some(alice.id)).await.unwrap().is_some());
    assert!(s.get_inbound(a, Some(carol.id)).await.unwrap().is_none());
    assert_eq!(
        s.get_inbound(a, None).await.unwrap().unwrap().from,
        "+15550000009"
    );
    }
}

conformance! {
    async fn inbound_cursor_pages_in_order(s) {
    admin(&s, "root").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            new_id(
                &s,
                text(
                    "+15550000001",
                    &format!("t{i}"),
                    i,
                    InboundRouting::default(),
                ),
            )
            .await,
        );
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .list_inbound(InboundFilter {
                user_id: None,
                after,
                limit: 3,
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|t| t.id);
        seen.extend(page.into_iter().map(|t| t.id));
    }
    assert_eq!(seen, ids);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}

conformance! {
    async fn opt_out_replies_and_suppression_list(s) {
    let root = admin(&s, "root").await;
    let alice = user(&s, "alice").await;
    let reply = |to: &str, body: &str, origin: &str| {
        let mut m = msg(0, to, 3000);
        m.body = body.into();
        m.origin = Some(origin.into());
        m
    };
    let stop = InboundRouting {
        opt: Some(textgate_core::inbound::OptChange::Out),
        opt_reply: Some(reply("+15550000007", "bye", origin::OPT_CONFIRMATION)),
        replies: vec![(
            Some("alice".into()),
            reply("+15550000007", "auto", origin::REPLY),
        )],
        ..Default::default()
    };
    new_id(&s, text("+15550000007", "Stop!", 3000, stop)).await;
    let list = s.list_suppressions(None, 10).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].number, "+15550000007");
    assert_eq!(list[0].source, "keyword");
    assert_eq!(list[0].note.as_deref(), Some("texted \"STOP\""));
    let sent = s
        .list_messages(MessageFilter {
            owner_id: None,
            status: None,
            before: None,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        sent.len(),
        1,
        "no automatic reply to an opt-out, only the confirmation"
    );
    assert_eq!((sent[0].body.as_str(), sent[0].owner_id), ("bye", root.id));
    assert_eq!(sent[0].origin.as_deref(), Some(origin::OPT_CONFIRMATION));

    // A rule's reply goes as its owner, once per interval.
    let hi = |since| InboundRouting {
        matched: true,
        replies: vec![(
            Some("alice".into()),
            reply("+15550000008", "auto", origin::REPLY),
        )],
        reply_since: since,
        ..Default::default()
    };
    new_id(&s, text("+15550000008", "hi", 3000, hi(2000))).await;
    new_id(&s, text("+15550000008", "hi again", 3001, hi(2000))).await;
    let mine = s
        .list_messages(MessageFilter {
            owner_id: Some(alice.id),
            status: None,
            before: None,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.len(), 1, "the second reply falls in the interval");
    assert_eq!(mine[0].to, "+15550000008");

    // Opting back in; the API's own edits.
    let start = InboundRouting {
        opt: Some(textgate_core::inbound::OptChange::In),
        ..Default::default()
    };
    new_id(&s, text("+15550000007", "START", 4000, start)).await;
    assert!(s.list_suppressions(None, 10).await.unwrap().is_empty());
    let sup = |n: &str| Suppression {
        number: n.into(),
        source: "api".into(),
        note: None,
        created_at: 1,
    };
    assert!(s.add_suppression(sup("+15550000002")).await.unwrap());
    assert!(!s.add_suppression(sup("+15550000002")).await.unwrap());
    assert!(s.add_suppression(sup("+15550000001")).await.unwrap());
    let page = s
        .list_suppressions(Some("+15550000001".into()), 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert!(s.remove_suppression("+15550000002").await.unwrap());
    assert!(!s.remove_suppression("+15550000002").await.unwrap());
    }
}

conformance! {
    async fn deliveries_claim_retry_die_and_replay(s) {
    admin(&s, "root").await;
    let routing = InboundRouting {
        matched: true,
        webhooks: vec!["http://a/h".into(), "http://b/h".into()],
        emails: vec!["x@example.com".into(), "y@example.com".into()],
        give_up_at: 99_000,
        ..Default::default()
    };
    let t = new_id(&s, text("+15550000001", "hook", 1000, routing)).await;
    // Webhook-only matched rules do not also fill the admins' inboxes.
    let got = s.claim_deliveries("webhook", 1000, 5000, 10).await.unwrap();
    assert_eq!(got.len(), 2);
    assert!(got
        .iter()
        .all(|d| d.inbound_id == Some(t) && d.attempts == 1 && d.event == "message.inbound"));
    assert!(
        s.claim_deliveries("webhook", 1000, 5000, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    let email = s.claim_deliveries("email", 1000, 5000, 10).await.unwrap();
    assert_eq!(email.len(), 1);
    assert_eq!(email[0].target, "x@example.com,y@example.com");
    s.finish_deliveries(vec![
        DeliveryResult::Delivered {
            id: got[0].id,
            attempt: 1,
            code: Some(200),
            at: 1100,
        },
        DeliveryResult::Retry {
            id: got[1].id,
            attempt: 1,
            code: Some(500),
            error: "500".into(),
            next_at: 2000,
            at: 1100,
        },
        // A stale attempt number is ignored.
        DeliveryResult::Dead {
            id: got[1].id,
            attempt: 7,
            code: None,
            error: "x".into(),
            at: 1,
        },
    ])
    .await
    .unwrap();
    assert!(s
        .claim_deliveries("webhook", 1999, 5000, 10)
        .await
        .unwrap()
        .is_empty());
    let again = s.claim_deliveries("webhook", 2000, 9000, 10).await.unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 2));
    s.finish_deliveries(vec![DeliveryResult::Dead {
        id: again[0].id,
        attempt: 2,
        code: Some(503),
        error: "gave up".into(),
        at: 2100,
    }])
    .await
    .unwrap();
    let log = s.delivery_attempts(got[1].id).await.unwrap();
    assert_eq!(
        log,
        vec![
            DeliveryAttempt {
                attempt: 1,
                at: 1100,
                code: Some(500),
                error: Some("500".into())
            },
            DeliveryAttempt {
                attempt: 2,
                at: 2100,
                code: Some(503),
                error: Some("gave up".into())
            },
        ],
        "every applied attempt is logged; the stale one is not"
    );
    assert_eq!(s.delivery_attempts(got[0].id).await.unwrap()[0].error, None);
    let dead = s
        .list_deliveries(DeliveryFilter {
            state: Some("dead".into()),
            owner_id: None,
            before: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].last_code, dead[0].last_error.as_deref()),
        (Some(503), Some("gave up"))
    );
    assert!(
        s.replay_delivery(got[0].id, 3000, 9999)
            .await
            .unwrap()
            .is_none(),
        "only dead ones"
    );
    let replayed = s
        .replay_delivery(dead[0].id, 3000, 9999)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (replayed.state.as_str(), replayed.give_up_at),
        ("pending", 9999)
    );
    assert_eq!(
        s.claim_deliveries("webhook", 3000, 9000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get_delivery(got[0].id).await.unwrap().unwrap().state,
        "delivered"
    );
    }
}

conformance! {
    async fn a_deferred_delivery_waits_uncounted_and_unlogged(s) {
    admin(&s, "root").await;
    let routing = InboundRouting {
        matched: true,
        webhooks: vec!["http://a/h".into()],
        give_up_at: 99_000,
        ..Default::default()
    };
    new_id(&s, text("+15550000001", "hook", 1000, routing)).await;
    let got = s.claim_deliveries("webhook", 1000, 5000, 10).await.unwrap();
    assert_eq!((got.len(), got[0].attempts), (1, 1));
    s.finish_deliveries(vec![DeliveryResult::Deferred {
        id: got[0].id,
        attempt: 1,
        next_at: 1500,
    }])
    .await
    .unwrap();
    assert!(s
        .claim_deliveries("webhook", 1499, 5000, 10)
        .await
        .unwrap()
        .is_empty());
    let again = s.claim_deliveries("webhook", 1500, 5000, 10).await.unwrap();
    assert_eq!(
        again[0].attempts, 1,
        "the deferral did not count as an attempt"
    );
    assert!(s.delivery_attempts(got[0].id).await.unwrap().is_empty());
    // A stale deferral (the claim it undoes is not the current one) changes nothing.
    s.finish_deliveries(vec![DeliveryResult::Deferred {
        id: got[0].id,
        attempt: 7,
        next_at: 1,
    }])
    .await
    .unwrap();
    assert_eq!(
        s.get_delivery(got[0].id).await.unwrap().unwrap().attempts,
        1
    );
    }
}

conformance! {
    async fn status_changes_of_messages_with_a_callback_queue_deliveries(s) {
    let u = user(&s, "alice").await;
    let mut m = msg(u.id, "+15550000001", 1000);
    m.callback_url = Some("http://cb/x".into());
    m.api_key_id = Some(42);
    let plain = msg(u.id, "+15550000002", 1000);
    let ids = insert(&s, vec![m, plain]).await;
    let claimed = s.claim(1000, 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let sent = |id: Id, attempt: i64| Outcome::Sent {
        id,
        attempt,
        device: "lb".into(),
        part_ids: vec![format!("p{id}")],
        receipts: vec![],
        at: 1100,
    };
    s.record_outcomes(vec![sent(ids[0], 1), sent(ids[1], 1)])
        .await
        .unwrap();
    s.apply_receipts(vec![Receipt {
        device: "lb".into(),
        device_msg_id: format!("p{}", ids[0]),
        delivered: true,
        code: None,
        at: 1200,
    }])
    .await
    .unwrap();
    let all = s
        .list_deliveries(DeliveryFilter {
            state: None,
            owner_id: Some(u.id),
            before: None,
            limit: 10,
        })
        .await
        .unwrap();
    let statuses: Vec<_> = all
        .iter()
        .rev()
        .map(|d| d.status.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        statuses,
        vec!["sent", "delivered"],
        "one event per change, none for 'sending'"
    );
    assert!(all.iter().all(|d| d.message_id == Some(ids[0])
        && d.target == "http://cb/x"
        && d.event == "message.status"
        && d.api_key_id == Some(42)));
    }
}

conformance! {
    /// Every path that ends a message queues the same events on both backends: status
    /// callbacks for messages with a callback_url, failure notices for texts from e-mail,
    /// nothing for the rest.
    async fn every_status_change_queues_its_events_and_only_those(s) {
    let u = user(&s, "alice").await;
    let with = |to: &str, callback: bool, email: bool, segments: i64| {
        let mut m = msg(u.id, to, 1000);
        m.segments = segments;
        m.expires_at = 2000;
        m.callback_url = callback.then(|| format!("http://cb/{to}"));
        m.email_from = email.then(|| format!("{to}@mail.test"));
        m
    };
    let ids = insert(
        &s,
        vec![
            with("+15550000001", true, true, 1), // undelivered with its submit
            with("+15550000002", true, true, 1), // failed by the device
            with("+15550000003", false, true, 1), // sent, then expired
            with("+15550000004", true, false, 1), // retried, then cancelled
            with("+15550000005", true, false, 2), // two parts, receipts one by one
            with("+15550000006", false, false, 1), // plain: no events
        ],
    )
    .await;
    assert_eq!(s.claim(1000, 60_000, 10).await.unwrap().len(), 6);
    let sent = |id: Id, parts: usize, receipts: Vec<Option<PartReceipt>>| Outcome::Sent {
        id,
        attempt: 1,
        device: "lb".into(),
        part_ids: (1..=parts).map(|p| format!("{id}-{p}")).collect(),
        receipts,
        at: 1100,
    };
    let failed_receipt = PartReceipt {
        delivered: false,
        code: Some("027".into()),
        at: 1100,
    };
    let applied = s
        .record_outcomes(vec![
            sent(ids[0], 1, vec![Some(failed_receipt)]),
            failed(ids[1], 1100),
            sent(ids[2], 1, vec![]),
            Outcome::Retry {
                id: ids[3],
                attempt: 1,
                device: Some("lb".into()),
                due_at: 5000,
                code: None,
                error: "busy".into(),
                refund: false,
                at: 0,
            },
            sent(ids[4], 2, vec![]),
            sent(ids[5], 1, vec![]),
        ])
        .await
        .unwrap();
    assert!(applied.iter().all(|a| *a), "{applied:?}");
    let receipt = |id: Id, part: usize| Receipt {
        device: "lb".into(),
        device_msg_id: format!("{id}-{part}"),
        delivered: true,
        code: None,
        at: 1200,
    };
    s.apply_receipts(vec![receipt(ids[4], 1), receipt(ids[5], 1)])
        .await
        .unwrap();
    s.apply_receipts(vec![receipt(ids[4], 2)]).await.unwrap();
    assert!(matches!(
        s.cancel_message(ids[3], None, 1300).await.unwrap(),
        Cancel::Cancelled(_)
    ));
    let m = s.maintain(2000 + RECEIPT_GRACE_MS + 1).await.unwrap();
    assert_eq!(m.expired, 1);

    let mut events: Vec<(Id, String, String, String)> = s
        .list_deliveries(DeliveryFilter {
            state: None,
            owner_id: Some(u.id),
            before: None,
            limit: 100,
        })
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|d| {
            assert_eq!(d.event, "message.status");
            (
                d.message_id.unwrap_or(0),
                d.channel,
                d.status.unwrap_or_default(),
                d.target,
            )
        })
        .collect();
    // Oldest first; the order within one message is the order of its changes.
    events.sort_by_key(|e| e.0);
    let ev = |i: usize, channel: &str, status: &str| {
        let target = match channel {
            "webhook" => format!("http://cb/+1555000000{}", i + 1),
            _ => format!("+1555000000{}@mail.test", i + 1),
        };
        (ids[i], channel.to_string(), status.to_string(), target)
    };
    assert_eq!(
        events,
        vec![
            ev(0, "webhook", "sent"),
            ev(0, "webhook", "undelivered"),
            ev(0, "email", "undelivered"),
            ev(1, "webhook", "failed"),
            ev(1, "email", "failed"),
            ev(2, "email", "expired"),
            ev(3, "webhook", "cancelled"),
            ev(4, "webhook", "sent"),
            ev(4, "webhook", "delivered"),
        ]
    );
    }
}

conformance! {
    /// SMSCs reuse message ids (counters wrap, accounts are reset): a receipt goes to the newest
    /// part that has its id, and the older message is left as it was.
    async fn a_reused_smsc_id_is_the_newest_parts(s) {
    let u = user(&s, "alice").await;
    let ids = insert(
        &s,
        vec![
            msg(u.id, "+15550000001", 1000),
            msg(u.id, "+15550000002", 1000),
        ],
    )
    .await;
    assert_eq!(s.claim(1000, 60_000, 10).await.unwrap().len(), 2);
    let sent = |id: Id| Outcome::Sent {
        id,
        attempt: 1,
        device: "smsc".into(),
        part_ids: vec!["42".into()],
        receipts: vec![],
        at: 1100,
    };
    s.record_outcomes(vec![sent(ids[0]), sent(ids[1])])
        .await
        .unwrap();
    let got = s
        .apply_receipts(vec![Receipt {
            device: "smsc".into(),
            device_msg_id: "42".into(),
            delivered: true,
            code: None,
            at: 1200,
        }])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![ReceiptMatch::Part {
            message_id: ids[1],
            status: Some(Status::Delivered),
            submitted_at: 1100,
        }]
    );
    let old = s.get_message(ids[0]).await.unwrap().unwrap();
    assert_eq!(old.status, Status::Sent);
    assert_eq!(
        s.get_message(ids[1]).await.unwrap().unwrap().status,
        Status::Delivered
    );
    }
}

fn job_msg(row: i64, to: &str, due_at: i64) -> JobMessage {
    JobMessage {
        row,
        to: to.into(),
        body: format!("row {row}"),
        encoding: "gsm7",
        segments: 1,
        due_at,
        scheduled: false,
        expires_at: due_at + 3_600_000,
    }
}

fn batch(
    job: &JobRecord,
    start_row: i64,
    msgs: Vec<JobMessage>,
    rejects: Vec<RowReject>,
    next: i64,
    finished: bool,
) -> JobBatch {
    JobBatch {
        job_id: job.id,
        owner_id: job.owner_id,
        from: Some("ACME".into()),
        messages: msgs,
        rejects,
        start_row,
        resume: ResumePoint {
            offset: next * 10,
            line: next,
            row: next,
        },
        finished,
        now: 1000,
    }
}

conformance! {
    async fn job_batches_resume_points_control_and_results(s) {
    let u = user(&s, "alice").await;
    let other = user(&s, "bob").await;
    let job = s
        .create_job(NewJob {
            owner_id: u.id,
            name: Some("n".into()),
            source: "api".into(),
            params: "{}".into(),
            file: Some("/tmp/x.csv".into()),
            created_at: 1000,
        })
        .await
        .unwrap();
    assert_eq!(
        (job.state, job.next_row, job.imported_at),
        (JobState::Running, 2, None)
    );
    assert_eq!(s.unfinished_jobs().await.unwrap().len(), 1);
    // Batch 1: rows 2-4, one refused; it records the resume point.
    let b1 = batch(
        &job,
        2,
        vec![
            job_msg(2, "+15550000002", 1000),
            job_msg(4, "+15550000004", 1000),
        ],
        vec![RowReject {
            row: 3,
            number: "x".into(),
            message: "invalid number".into(),
            duplicate: false,
        }],
        5,
        false,
    );
    assert_eq!(
        s.append_job_batch(b1.clone()).await.unwrap(),
        BatchStored::Stored
    );
    // The same batch again (a second importer, or a replay after a restart): refused.
    assert_eq!(s.append_job_batch(b1).await.unwrap(), BatchStored::Stopped);
    let j = s.get_job(job.id).await.unwrap().unwrap();
    assert_eq!((j.total, j.accepted, j.rejected, j.segments), (3, 2, 1, 2));
    assert_eq!((j.file_offset, j.file_line, j.next_row), (50, 5, 5));
    // API texts go before job rows, whatever their ids.
    let api = insert(&s, vec![msg(u.id, "+15559999999", 1000)]).await;
    let claimed = s.claim(2000, 60_000, 1).await.unwrap();
    assert_eq!(claimed[0].id, api[0]);
    // Pause holds the waiting rows: not claimable, not promoted, shown scheduled.
    let JobControl::Done(p) = s
        .control_job(job.id, Some(u.id), JobAction::Pause, 3000)
        .await
        .unwrap()
    else {
        panic!("pause")
    };
    assert_eq!(p.state, JobState::Paused);
    assert_eq!(
        s.control_job(job.id, Some(other.id), JobAction::Resume, 3000)
            .await
            .unwrap(),
        JobControl::NotFound
    );
    s.maintain(30_000).await.unwrap();
    assert!(s.claim(30_000, 90_000, 10).await.unwrap().is_empty());
    // A batch stored while paused is held too; the last batch ends the import.
    let b2 = batch(
        &job,
        5,
        vec![job_msg(5, "+15550000005", 1000)],
        vec![],
        6,
        true,
    );
    assert_eq!(s.append_job_batch(b2).await.unwrap(), BatchStored::Stored);
    let counts = s.job_counts(job.id).await.unwrap();
    assert_eq!(counts, vec![(Status::Scheduled, 3)]);
    assert!(s.unfinished_jobs().await.unwrap().is_empty());
    // Resume: back in the queue, claimable.
    assert!(matches!(
        s.control_job(job.id, None, JobAction::Resume, 4000)
            .await
            .unwrap(),
        JobControl::Done(_)
    ));
    let got = s.claim(30_000, 90_000, 10).await.unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got
        .iter()
        .all(|m| m.priority == JOB_PRIORITY && m.job_id == Some(job.id)));
    // Results in row order, refused rows on their own page.
    let res = s.job_results(job.id, 0, 10).await.unwrap();
    assert_eq!(res.iter().map(|r| r.row).collect::<Vec<_>>(), vec![2, 4, 5]);
    assert_eq!(res[0].to, "+15550000002");
    let rej = s.job_rejects(job.id, 0, 10).await.unwrap();
    assert_eq!((rej[0].row, rej[0].message.as_str()), (3, "invalid number"));
    // Cancel: what is still waiting is cancelled (here nothing: all are sending).
    let (a, b) = (got[0].id, got[0].attempts);
    s.record_outcomes(vec![Outcome::Retry {
        id: a,
        attempt: b,
        device: None,
        due_at: 5000,
        code: None,
        error: "x".into(),
        refund: true,
        at: 0,
    }])
    .await
    .unwrap();
    let JobControl::Done(c) = s
        .control_job(job.id, Some(u.id), JobAction::Cancel, 6000)
        .await
        .unwrap()
    else {
        panic!("cancel")
    };
    assert_eq!(c.state, JobState::Cancelled);
    assert_eq!(
        s.get_message(a).await.unwrap().unwrap().status,
        Status::Cancelled
    );
    assert_eq!(
        s.control_job(job.id, None, JobAction::Pause, 7000)
            .await
            .unwrap(),
        JobControl::Invalid(JobState::Cancelled)
    );
    let list = s.list_jobs(Some(u.id), None, 10).await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(s
        .list_jobs(Some(other.id), None, 10)
        .await
        .unwrap()
        .is_empty());
    s.fail_job(job.id, "broken".into(), 8000).await.unwrap();
    assert_eq!(
        s.get_job(job.id).await.unwrap().unwrap().error.as_deref(),
        Some("broken")
    );
    }
}

fn purge(what: Purge, before: i64, after: Id, strip: bool) -> PurgeBatch {
    PurgeBatch {
        what,
        before,
        after,
        limit: 2,
        strip,
    }
}

/// Runs a retention pass to its end, batch by batch; the rows it took.
async fn purge_all(s: &Store, what: Purge, before: i64, strip: bool) -> u64 {
    let (mut after, mut rows) = (0, 0);
    loop {
        let p = s.purge(purge(what, before, after, strip)).await.unwrap();
        rows += p.rows;
        match p.next {
            Some(n) => after = n,
            None => return rows,
        }
    }
}

conformance! {
    async fn retention_deletes_or_strips_old_finished_messages_only(s) {
    let a = user(&s, "a").await;
    let ids = insert(
        &s,
        vec![
            msg(a.id, "+15550000001", 1000),
            msg(a.id, "+15550000002", 1100),
            msg(a.id, "+15550000003", 1200),
            msg(a.id, "+15550000004", 9000),
        ],
    )
    .await;
    // 1 and 3 end; 2 is still queued; 4 ends but is too young.
    for id in [ids[0], ids[2], ids[3]] {
        assert!(matches!(
            s.cancel_message(id, None, 1300).await.unwrap(),
            Cancel::Cancelled(_)
        ));
    }
    // Stripped: the rows stay, without their text.
    assert_eq!(purge_all(&s, Purge::Messages, 5000, true).await, 2);
    let m = s.get_message(ids[0]).await.unwrap().unwrap();
    assert_eq!((m.body.as_str(), m.status), ("", Status::Cancelled));
    assert_eq!(s.get_message(ids[1]).await.unwrap().unwrap().body, "hello");
    assert_eq!(
        purge_all(&s, Purge::Messages, 5000, true).await,
        0,
        "nothing twice"
    );
    // Deleted: finished and old only.
    assert_eq!(purge_all(&s, Purge::Messages, 5000, false).await, 2);
    assert!(s.get_message(ids[0]).await.unwrap().is_none());
    assert!(s.get_message(ids[2]).await.unwrap().is_none());
    assert!(
        s.get_message(ids[1]).await.unwrap().is_some(),
        "not final: kept"
    );
    assert!(
        s.get_message(ids[3]).await.unwrap().is_some(),
        "too young: kept"
    );
    }
}

conformance! {
    async fn retention_deletes_old_inbound_texts_with_their_inboxes_and_done_deliveries(s) {
    let root = admin(&s, "root").await;
    let routing = || InboundRouting {
        matched: true,
        webhooks: vec!["http://a/h".into()],
        users: vec!["root".into()],
        give_up_at: 99_000,
        ..Default::default()
    };
    let old = new_id(&s, text("+15550000001", "old", 1000, routing())).await;
    let young = new_id(&s, text("+15550000002", "young", 9000, routing())).await;
    assert_eq!(inbox(&s, Some(root.id)).await.len(), 2);
    // Deliveries: the old text's is delivered, the young one's still pending.
    let got = s
        .claim_deliveries("webhook", 10_000, 20_000, 10)
        .await
        .unwrap();
    let old_delivery = got.iter().find(|d| d.inbound_id == Some(old)).unwrap().id;
    s.finish_deliveries(vec![DeliveryResult::Delivered {
        id: old_delivery,
        attempt: 1,
        code: Some(200),
        at: 10_100,
    }])
    .await
    .unwrap();
    assert_eq!(
        purge_all(&s, Purge::Deliveries, 99_999, false).await,
        1,
        "done ones only"
    );
    assert!(s.get_delivery(old_delivery).await.unwrap().is_none());
    assert!(s.delivery_attempts(old_delivery).await.unwrap().is_empty());
    // Inbound texts before 5000: the old one, out of the inbox too.
    assert_eq!(purge_all(&s, Purge::Inbound, 5000, true).await, 1);
    assert_eq!(s.get_inbound(old, None).await.unwrap().unwrap().body, "");
    assert_eq!(purge_all(&s, Purge::Inbound, 5000, false).await, 1);
    assert!(s.get_inbound(old, None).await.unwrap().is_none());
    assert_eq!(
        s.get_inbound(young, None).await.unwrap().unwrap().body,
        "young"
    );
    assert_eq!(inbox(&s, Some(root.id)).await, vec!["young".to_string()]);
    }
}

conformance! {
    /// Web sessions: found until idle or past their end, ended by sign-out, and ended by a
    /// password change except the one that made it.
    async fn web_sessions_expire_end_and_fall_with_a_password_change(s) {
    let u = user(&s, "alice").await;
    let new = |token: &str, at: i64| NewWebSession {
        token_hash: token.into(),
        user_id: u.id,
        csrf: format!("csrf-{token}"),
        created_at: at,
        expires_at: at + 10_000,
    };
    s.create_session(new("a", 1000)).await.unwrap();
    s.create_session(new("b", 1000)).await.unwrap();
    let found = s.session("a", 1500, 1000).await.unwrap().expect("live session");
    assert_eq!(found.user.name, "alice");
    assert_eq!(found.csrf, "csrf-a");
    assert!(s.session("a", 2500, 1000).await.unwrap().is_none(), "idle past 1 s");
    s.touch_session("a", 2400).await.unwrap();
    assert!(s.session("a", 2500, 1000).await.unwrap().is_some(), "used at 2.4 s");
    assert!(s.session("a", 11_000, 100_000).await.unwrap().is_none(), "past its end");
    assert!(s.session("nope", 1500, 1000).await.unwrap().is_none());

    assert!(s.set_password(u.id, "$argon2id$new", Some("a")).await.unwrap());
    assert!(s.session("a", 2500, 1000).await.unwrap().is_some(), "the changer's stays");
    assert!(s.session("b", 1500, 1000).await.unwrap().is_none(), "the others end");
    assert_eq!(
        s.user_by_id(u.id).await.unwrap().unwrap().password_hash.as_deref(),
        Some("$argon2id$new")
    );
    assert!(!s.set_password(9999, "x", None).await.unwrap());
    s.end_session("a").await.unwrap();
    assert!(s.session("a", 2500, 1000).await.unwrap().is_none(), "signed out");
    // A new sign-in sweeps the sessions past their end.
    s.create_session(new("c", 20_000)).await.unwrap();
    assert!(s.session("c", 20_001, 1000).await.unwrap().is_some());
    }
}

conformance! {
    /// The personal inbox: newest first, unread counted, read and archived marks per user,
    /// and a conversation that interleaves both ways.
    async fn inbox_marks_and_conversations_are_per_user(s) {
    let alice = user(&s, "alice").await;
    let bob = user(&s, "bob").await;
    let to = |names: &[&str]| InboundRouting {
        matched: true,
        users: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    };
    let t1 = new_id(&s, text("+15551110001", "one", 1000, to(&["alice", "bob"]))).await;
    let mut sent = msg(alice.id, "+15551110001", 1500);
    sent.body = "reply".into();
    insert(&s, vec![sent]).await;
    let t2 = new_id(&s, text("+15551110001", "two", 2000, to(&["alice"]))).await;
    let t3 = new_id(&s, text("+15552220002", "other", 3000, to(&["alice"]))).await;

    let list = |user: Id, archived: bool, from: Option<&str>| {
        let s = s.clone();
        let from = from.map(str::to_string);
        async move {
            s.inbox(InboxFilter { user_id: user, archived, from, before: None, limit: 10 })
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.text.id, e.read_at.is_some()))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(alice.id, false, None).await, vec![(t3, false), (t2, false), (t1, false)]);
    assert_eq!(list(bob.id, false, None).await, vec![(t1, false)]);
    assert_eq!(s.unread(alice.id, 100).await.unwrap(), 3);
    assert_eq!(s.unread(alice.id, 2).await.unwrap(), 2, "counted up to the cap");

    let mark = |user: Id, what: InboxMarkKind, id: Option<Id>, from: Option<&str>| InboxMark {
        user_id: user,
        what,
        id,
        from: from.map(str::to_string),
    };
    let n = s
        .mark_inbox(mark(alice.id, InboxMarkKind::Read, None, Some("+15551110001")), 5000)
        .await
        .unwrap();
    assert_eq!(n, 2, "both texts from that number");
    assert_eq!(s.unread(alice.id, 100).await.unwrap(), 1);
    assert_eq!(s.unread(bob.id, 100).await.unwrap(), 1, "bob's marks are his own");
    s.mark_inbox(mark(alice.id, InboxMarkKind::Archived, Some(t3), None), 5000)
        .await
        .unwrap();
    assert_eq!(list(alice.id, false, None).await, vec![(t2, true), (t1, true)]);
    assert_eq!(list(alice.id, true, None).await, vec![(t3, false)]);
    assert_eq!(s.unread(alice.id, 100).await.unwrap(), 0, "archived texts are not counted");
    // Bob cannot mark Alice's text: the mark is of his inbox, where it is not.
    let n = s
        .mark_inbox(mark(bob.id, InboxMarkKind::Read, Some(t2), None), 5000)
        .await
        .unwrap();
    assert_eq!(n, 0);
    s.mark_inbox(mark(alice.id, InboxMarkKind::Unarchived, Some(t3), None), 6000)
        .await
        .unwrap();
    assert_eq!(list(alice.id, true, None).await, vec![]);
    assert_eq!(list(alice.id, false, Some("+15552220002")).await, vec![(t3, false)]);

    let conv: Vec<String> = s
        .conversation(alice.id, "+15551110001", 50)
        .await
        .unwrap()
        .into_iter()
        .map(|i| match i {
            ConversationItem::In(e) => format!("in:{}", e.text.body),
            ConversationItem::Out(m) => format!("out:{}", m.body),
        })
        .collect();
    assert_eq!(conv, vec!["in:one", "out:reply", "in:two"]);
    let bobs = s.conversation(bob.id, "+15551110001", 50).await.unwrap();
    assert_eq!(bobs.len(), 1, "bob sees his text, not alice's reply");
    }
}

conformance! {
    /// The dashboard's counts read only the rows of their period, by the hour messages were
    /// accepted and their status now.
    async fn dashboard_counts_by_status_hour_and_period(s) {
    let alice = user(&s, "alice").await;
    let bob = user(&s, "bob").await;
    let hour = 3_600_000;
    for (i, at) in [hour, 2 * hour, 2 * hour + 10, 3 * hour].into_iter().enumerate() {
        let mut m = msg(if i == 3 { bob.id } else { alice.id }, "+15550000001", at);
        m.created_at = at;
        insert(&s, vec![m]).await;
    }
    assert_eq!(
        s.hourly(None, 0).await.unwrap(),
        vec![(hour, Status::Queued, 1), (2 * hour, Status::Queued, 2), (3 * hour, Status::Queued, 1)]
    );
    assert_eq!(
        s.hourly(Some(alice.id), 2 * hour).await.unwrap(),
        vec![(2 * hour, Status::Queued, 2)]
    );
    assert_eq!(s.hourly(None, 3 * hour + 1).await.unwrap(), vec![]);
    // Sent: they stay in the hour they were accepted, with their status now.
    let claimed = s.claim(10 * hour, 10 * hour + 60_000, 10).await.unwrap();
    let outcomes = claimed
        .iter()
        .map(|m| Outcome::Sent {
            id: m.id,
            attempt: m.attempts,
            device: "lb".into(),
            part_ids: vec![format!("p{}", m.id)],
            receipts: vec![],
            at: 5 * hour + 5,
        })
        .collect::<Vec<_>>();
    s.record_outcomes(outcomes).await.unwrap();
    assert_eq!(
        s.hourly(Some(bob.id), 0).await.unwrap(),
        vec![(3 * hour, Status::Sent, 1)]
    );
    let alice_in = InboundRouting { matched: true, users: vec!["alice".into()], ..Default::default() };
    new_id(&s, text("+15551110001", "a", 100, alice_in.clone())).await;
    new_id(&s, text("+15551110001", "b", 200, alice_in)).await;
    assert_eq!(s.inbound_count(None, 150).await.unwrap(), 1);
    assert_eq!(s.inbound_count(Some(alice.id), 0).await.unwrap(), 2);
    assert_eq!(s.inbound_count(Some(bob.id), 0).await.unwrap(), 0);
    }
}

conformance! {
    /// A disabled user: their keys, sessions and e-mail address stop working (and a node's
    /// revocation watch hears of their keys), and nothing of theirs is removed; enabling
    /// brings the keys back.
    async fn disabled_users_lose_keys_sessions_and_mail_until_enabled(s) {
    let u = user(&s, "alice").await;
    user(&s, "bob").await;
    let key = s.create_api_key(u.id, "h-alice".into(), "k".into(), None).await.unwrap();
    s.create_session(NewWebSession {
        token_hash: "t".into(),
        user_id: u.id,
        csrf: "c".into(),
        created_at: 1000,
        expires_at: i64::MAX / 2,
    })
    .await
    .unwrap();
    let changed = s
        .update_user(
            u.id,
            UserUpdate {
                role: Some(Role::Admin),
                email: Some(Some("Alice@Example.com".into())),
                disabled: None,
                senders: None,
                quota: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.role, Role::Admin);
    assert_eq!(s.active_admins().await.unwrap(), 1);
    assert_eq!(s.user_by_email("alice@example.com").await.unwrap().map(|u| u.id), Some(u.id));
    let before = textgate_core::clock::now_ms() - 1;
    let off = s
        .update_user(u.id, UserUpdate { disabled: Some(true), ..Default::default() })
        .await
        .unwrap()
        .unwrap();
    assert!(off.disabled_at.is_some());
    assert!(s.api_key_by_hash("h-alice").await.unwrap().is_none());
    assert!(s.session("t", 2000, i64::MAX / 4).await.unwrap().is_none());
    assert!(s.user_by_email("alice@example.com").await.unwrap().is_none());
    assert_eq!(s.active_admins().await.unwrap(), 0);
    let revoked = s.revoked_api_keys_since(before).await.unwrap();
    assert_eq!(revoked.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![key]);
    let at = s.users_disabled_since(before).await.unwrap();
    assert!(at.is_some_and(|t| t > before), "the disabling is seen: {at:?}");
    assert_eq!(s.users_disabled_since(at.unwrap()).await.unwrap(), None);
    let names: Vec<_> = s.list_users().await.unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, vec!["alice", "bob"], "a disabled user is still listed");
    s.update_user(u.id, UserUpdate { disabled: Some(false), ..Default::default() })
        .await
        .unwrap();
    assert!(s.api_key_by_hash("h-alice").await.unwrap().is_some());
    assert!(s.update_user(9999, UserUpdate::default()).await.unwrap().is_none());

    }
}

conformance! {
    /// The outbox's filters: device, period, a number's digits or a piece of the text (its
    /// wildcards taken literally), with an owner and a cursor.
    async fn messages_are_filtered_by_device_period_and_search(s) {
    let alice = user(&s, "alice").await;
    let bob = user(&s, "bob").await;
    let mut rows = Vec::new();
    for (i, (owner, to, body)) in [
        (alice.id, "+15551110001", "Your code is 1234"),
        (alice.id, "+15552220002", "Meeting at 10"),
        (bob.id, "+15551110003", "100% off today"),
        (alice.id, "+15553330004", "Payment DUE soon"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut m = msg(owner, to, 1000 + i as i64 * 1000);
        m.created_at = 1000 + i as i64 * 1000;
        m.body = body.into();
        rows.push(m);
    }
    for m in rows {
        insert(&s, vec![m]).await;
    }
    // The first two go to device "a", the others to "b".
    let claimed = s.claim(10_000, 70_000, 10).await.unwrap();
    let outcomes = claimed
        .iter()
        .map(|m| Outcome::Sent {
            id: m.id,
            attempt: m.attempts,
            device: if m.created_at < 3000 { "a" } else { "b" }.into(),
            part_ids: vec![format!("p{}", m.id)],
            receipts: vec![],
            at: 10_000,
        })
        .collect::<Vec<_>>();
    s.record_outcomes(outcomes).await.unwrap();
    let bodies = |f: MessageFilter| {
        let s = s.clone();
        async move {
            s.list_messages(MessageFilter { limit: 10, ..f })
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.body)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        bodies(MessageFilter { device: Some("a".into()), ..Default::default() }).await,
        vec!["Meeting at 10", "Your code is 1234"]
    );
    assert_eq!(
        bodies(MessageFilter { since: Some(2000), until: Some(4000), ..Default::default() }).await,
        vec!["100% off today", "Meeting at 10"]
    );
    assert_eq!(
        bodies(MessageFilter { search: Some("111 000".into()), ..Default::default() }).await,
        vec!["100% off today", "Your code is 1234"],
        "digits match the number"
    );
    assert_eq!(
        bodies(MessageFilter { search: Some("due".into()), ..Default::default() }).await,
        vec!["Payment DUE soon"],
        "text, without regard to case"
    );
    assert_eq!(
        bodies(MessageFilter { search: Some("0% o".into()), ..Default::default() }).await,
        vec!["100% off today"],
        "% is a character, not a wildcard"
    );
    assert_eq!(
        bodies(MessageFilter { search: Some("_".into()), ..Default::default() }).await,
        Vec::<String>::new()
    );
    assert_eq!(
        bodies(MessageFilter {
            owner_id: Some(alice.id),
            device: Some("b".into()),
            ..Default::default()
        })
        .await,
        vec!["Payment DUE soon"]
    );
    }
}

conformance! {
    /// The address book: a user sees their contacts and the shared ones, a number is one
    /// contact per owner (added again, it is updated), groups hold contacts, and deleting
    /// either leaves the other.
    async fn contacts_and_groups_are_personal_or_shared(s) {
    let alice = user(&s, "alice").await;
    let bob = user(&s, "bob").await;
    let new = |owner: Option<Id>, name: &str, number: &str| NewContact {
        owner_id: owner,
        name: name.into(),
        number: number.into(),
        fields: r#"{"city":"Oslo"}"#.into(),
        created_at: 1,
    };
    let (ann, added) = s.upsert_contact(new(Some(alice.id), "Ann", "+15551000001")).await.unwrap();
    assert!(added);
    let (again, added) = s.upsert_contact(new(Some(alice.id), "Ann B", "+15551000001")).await.unwrap();
    assert_eq!((again, added), (ann, false), "the same number is the same contact");
    s.upsert_contact(new(Some(bob.id), "Ann (bob's)", "+15551000001")).await.unwrap();
    let (desk, _) = s.upsert_contact(new(None, "Help desk", "+15551000009")).await.unwrap();
    assert_eq!(
        s.upsert_contacts(vec![new(Some(alice.id), "Cy", "+15551000003"), new(Some(alice.id), "Ann C", "+15551000001")])
            .await
            .unwrap(),
        (1, 1)
    );
    let names = |v: Vec<Contact>| v.into_iter().map(|c| c.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.list_contacts(alice.id, None, 0, 10).await.unwrap()),
        vec!["Ann C", "Cy", "Help desk"]
    );
    assert_eq!(names(s.list_contacts(alice.id, Some("desk".into()), 0, 10).await.unwrap()), vec!["Help desk"]);
    assert_eq!(names(s.list_contacts(alice.id, Some("1000003".into()), 0, 10).await.unwrap()), vec!["Cy"]);
    assert_eq!(names(s.list_contacts(bob.id, None, 0, 10).await.unwrap()), vec!["Ann (bob's)", "Help desk"]);

    let g = s.create_group(Some(alice.id), "Team").await.unwrap();
    assert!(matches!(s.create_group(Some(alice.id), "Team").await, Err(StoreError::Conflict(_))));
    s.create_group(Some(bob.id), "Team").await.unwrap();
    assert!(s.set_group_member(g, ann, true).await.unwrap());
    assert!(!s.set_group_member(g, ann, true).await.unwrap(), "once");
    s.set_group_member(g, desk, true).await.unwrap();
    assert_eq!(s.group_named(alice.id, "Team").await.unwrap().unwrap().members, 2);
    assert_eq!(names(s.group_members(g).await.unwrap()), vec!["Ann C", "Help desk"]);
    assert_eq!(s.groups_of_contact(ann).await.unwrap(), vec![g]);
    assert!(s.delete_contact(desk).await.unwrap());
    assert_eq!(names(s.group_members(g).await.unwrap()), vec!["Ann C"]);
    assert!(s.update_contact(ann, "Ann D".into(), "+15551000002".into(), "{}".into()).await.unwrap());
    assert_eq!(s.get_contact(ann).await.unwrap().unwrap().number, "+15551000002");
    assert!(s.delete_group(g).await.unwrap());
    assert!(s.get_contact(ann).await.unwrap().is_some(), "its contacts stay");
    assert_eq!(s.list_groups(alice.id).await.unwrap().len(), 0);
    assert_eq!(s.list_groups(bob.id).await.unwrap().len(), 1);
    }
}

conformance! {
    /// Devices disabled by administrators are kept (once each), and enabled again.
    async fn devices_are_disabled_and_enabled(s) {
    assert!(s.disabled_devices().await.unwrap().is_empty());
    s.set_device_disabled("smsc-a", true, "boss").await.unwrap();
    s.set_device_disabled("smsc-a", true, "root").await.unwrap();
    s.set_device_disabled("modem", true, "boss").await.unwrap();
    let list = s.disabled_devices().await.unwrap();
    let names: Vec<(&str, &str)> = list.iter().map(|(n, _, by)| (n.as_str(), by.as_str())).collect();
    assert_eq!(names, vec![("modem", "boss"), ("smsc-a", "root")]);
    s.set_device_disabled("smsc-a", false, "boss").await.unwrap();
    let list = s.disabled_devices().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].0, "modem");
    }
}

conformance! {
    async fn attempts_that_did_not_send_are_kept_for_the_timeline(s) {
    let a = user(&s, "a").await;
    let ids = insert(
        &s,
        vec![
            msg(a.id, "+15550000001", 1),
            msg(a.id, "+15550000002", 1),
            msg(a.id, "+15550000003", 1),
            msg(a.id, "+15550000004", 1),
        ],
    )
    .await;
    assert_eq!(s.claim(10, 1000, 10).await.unwrap().len(), 4);
    let retry = |id: Id, device: Option<&str>| Outcome::Retry {
        id,
        attempt: 1,
        device: device.map(str::to_string),
        due_at: 0,
        code: Some("0x58".into()),
        error: "throttled".into(),
        refund: false,
        at: 100,
    };
    let applied = s
        .record_outcomes(vec![
            retry(ids[0], Some("smsc1")),
            // Waiting for a disabled device is no attempt.
            retry(ids[1], None),
            failed(ids[2], 200),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, true, true]);
    let got = s.message_attempts(ids[0]).await.unwrap();
    assert_eq!(
        got,
        vec![Attempt {
            attempt: 1,
            device: Some("smsc1".into()),
            at: 100,
            outcome: "retry".into(),
            code: Some("0x58".into()),
            error: Some("throttled".into()),
        }]
    );
    assert!(s.message_attempts(ids[1]).await.unwrap().is_empty());
    let f = s.message_attempts(ids[2]).await.unwrap();
    assert_eq!(
        (f.len(), f[0].outcome.as_str(), f[0].error.as_deref()),
        (1, "failed", Some("bad number"))
    );
    // A claim whose worker stopped: its lease runs out and maintenance puts it back.
    let m = s.maintain(2000).await.unwrap();
    assert_eq!(m.requeued, 1, "the fourth was still claimed");
    let lost = s.message_attempts(ids[3]).await.unwrap();
    assert_eq!(
        (lost.len(), lost[0].outcome.as_str(), lost[0].at),
        (1, "lease", 2000)
    );
    // The history goes with its message.
    assert_eq!(purge_all(&s, Purge::Messages, 5000, false).await, 1);
    assert!(s.message_attempts(ids[2]).await.unwrap().is_empty());
    }
}

conformance! {
    async fn a_user_s_senders_are_kept_in_order(s) {
    let a = user(&s, "a").await;
    assert!(a.senders.is_empty());
    let update = UserUpdate {
        senders: Some(vec!["ACME".into(), "+15550001234".into()]),
        ..UserUpdate::default()
    };
    let u = s.update_user(a.id, update).await.unwrap().unwrap();
    assert_eq!(u.senders, ["ACME", "+15550001234"]);
    let listed = s.list_users().await.unwrap();
    assert_eq!(listed[0].senders, ["ACME", "+15550001234"]);
    let cleared = UserUpdate {
        senders: Some(Vec::new()),
        ..UserUpdate::default()
    };
    let u = s.update_user(a.id, cleared).await.unwrap().unwrap();
    assert!(u.senders.is_empty());
    }
}

conformance! {
    /// A device that holds a message (a port server) reports it late, while the message
    /// waits for another attempt: recorded whatever the attempt, once, and never over a
    /// message that has ended.
    async fn a_late_outcome_from_the_holder_is_recorded_while_the_message_is_open(s) {
    let u = user(&s, "alice").await;
    let ids = insert(&s, vec![msg(u.id, "+15550000001", 1000), msg(u.id, "+15550000002", 1000)]).await;
    assert_eq!(s.claim(1000, 60_000, 10).await.unwrap().len(), 2);
    // Both wait for their holder to report (refunded: no attempt counted).
    let wait = |id: Id| Outcome::Retry {
        id,
        attempt: 1,
        device: Some("branch".into()),
        due_at: 1500,
        code: Some("PORT-HELD".into()),
        error: "held".into(),
        refund: true,
        at: 1100,
    };
    assert_eq!(s.record_outcomes(vec![wait(ids[0]), wait(ids[1])]).await.unwrap(), vec![true, true]);
    let late_sent = Outcome::Sent {
        id: ids[0],
        attempt: LATE,
        device: "branch".into(),
        part_ids: vec!["p1".into()],
        receipts: vec![],
        at: 1200,
    };
    let late_refused = Outcome::Final {
        id: ids[1],
        attempt: LATE,
        status: Status::Failed,
        device: Some("branch".into()),
        code: Some("0x0b".into()),
        error: "invalid number".into(),
        at: 1200,
    };
    assert_eq!(s.record_outcomes(vec![late_sent.clone(), late_refused]).await.unwrap(), vec![true, true]);
    let m = s.get_message(ids[0]).await.unwrap().unwrap();
    assert_eq!((m.status, m.device.as_deref()), (Status::Sent, Some("branch")));
    assert_eq!(s.get_message(ids[1]).await.unwrap().unwrap().status, Status::Failed);
    // Once recorded, a second copy changes nothing.
    assert_eq!(s.record_outcomes(vec![late_sent]).await.unwrap(), vec![false]);
    }
}

conformance! {
    /// Nodes register and beat; a lease is one node's at a time, renewed by it, taken over
    /// once it runs out, and given up when its node stops.
    async fn nodes_beat_and_leases_go_to_one_node_at_a_time(s) {
    let node = |id: &str| Node {
        id: id.into(),
        name: format!("host-{id}"),
        address: "127.0.0.1:8080".into(),
        version: "0.1.0".into(),
        started_at: 1000,
        seen_at: 0,
        stopped_at: None,
    };
    s.node_beat(&node("a")).await.unwrap();
    s.node_beat(&node("b")).await.unwrap();
    let all = s.nodes(0, 0).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|n| n.seen_at > 1000 && n.stopped_at.is_none()));
    let far = textgate_core::clock::now_ms() + 60_000;
    assert!(s.take_lease("purge", "a", far).await.unwrap());
    assert!(!s.take_lease("purge", "b", far).await.unwrap(), "a holds it");
    assert!(s.take_lease("purge", "a", far + 1).await.unwrap(), "renewed by its holder");
    assert!(s.take_lease("spool", "b", far).await.unwrap(), "another name is another lease");
    // Run out: the next node takes it over.
    assert!(s.take_lease("gone", "a", 1).await.unwrap());
    assert!(s.take_lease("gone", "b", far).await.unwrap());
    let held: Vec<(String, String)> = s.leases().await.unwrap().into_iter().map(|(n, h, _)| (n, h)).collect();
    assert_eq!(held, vec![("gone".into(), "b".into()), ("purge".into(), "a".into()), ("spool".into(), "b".into())]);
    // A clean stop gives up its leases at once.
    s.node_stopped("a").await.unwrap();
    assert!(s.take_lease("purge", "b", far).await.unwrap());
    let a = s.nodes(0, 0).await.unwrap().into_iter().find(|n| n.id == "a").unwrap();
    assert!(a.stopped_at.is_some());
    s.release_lease("spool", "a").await.unwrap();
    assert!(!s.take_lease("spool", "a", far).await.unwrap(), "only its holder gives it up");
    // Nodes gone long ago are forgotten.
    assert!(s.nodes(0, textgate_core::clock::now_ms() + 1).await.unwrap().is_empty());
    }
}

conformance! {
    /// A text whose content key was stored within its window is not stored again (an SMSC's
    /// redelivery to another bind); after the window, or with another key, it is.
    async fn a_text_seen_within_its_window_is_stored_once(s) {
    let with = |key: &str, at: i64| NewInbound {
        same_within: Some((key.to_string(), 60_000)),
        ..text("+15550001", "same words", at, InboundRouting::default())
    };
    let stored = s
        .insert_inbound_many(vec![with("k1", 1_000_000), with("k1", 1_001_000), with("k2", 1_001_000)])
        .await
        .unwrap();
    assert!(matches!(stored[..], [InboundStored::New(_), InboundStored::Duplicate, InboundStored::New(_)]), "{stored:?}");
    // Again in another commit, within the window: still the same text.
    let again = s.insert_inbound_many(vec![with("k1", 1_050_000)]).await.unwrap();
    assert!(matches!(again[..], [InboundStored::Duplicate]), "{again:?}");
    // Past the window: a new text, though the words are the same.
    let later = s.insert_inbound_many(vec![with("k1", 1_070_000)]).await.unwrap();
    assert!(matches!(later[..], [InboundStored::New(_)]), "{later:?}");
    }
}

conformance! {
    /// Requests that arrive together are stored together on PostgreSQL (one statement): each
    /// still gets its own messages' ids, in its own order.
    async fn concurrent_requests_each_get_their_own_ids(s) {
    let a = user(&s, "a").await;
    let requests: Vec<_> = (0..40).map(|r| {
        let s = s.clone();
        let owner = a.id;
        tokio::spawn(async move {
            let msgs: Vec<NewMessage> = (0..(r % 3 + 1))
                .map(|i| msg(owner, &format!("+1555{r:04}{i:03}"), 1))
                .collect();
            (r, insert(&s, msgs).await)
        })
    }).collect();
    let mut seen = std::collections::HashSet::new();
    for request in requests {
        let (r, ids) = request.await.unwrap();
        assert_eq!(ids.len(), r % 3 + 1);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        for (i, id) in ids.iter().enumerate() {
            assert!(seen.insert(*id), "id {id} given twice");
            let m = s.get_message(*id).await.unwrap().unwrap();
            assert_eq!(m.to, format!("+1555{r:04}{i:03}"));
        }
    }
    }
}

conformance! {
    /// Two outcomes of one message in one round: the first applies, the second sees it.
    async fn two_outcomes_of_one_message_in_one_round_apply_in_order(s) {
    let a = user(&s, "a").await;
    let ids = insert(&s, vec![msg(a.id, "+15550000001", 1), msg(a.id, "+15550000002", 1)]).await;
    assert_eq!(s.claim(10, 1000, 10).await.unwrap().len(), 2);
    let applied = s
        .record_outcomes(vec![
            sent(ids[0], &["A1"], vec![]),
            sent(ids[1], &["B1"], vec![]),
            sent(ids[0], &["A2"], vec![]),
            failed(ids[1], 30),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, true, false, false]);
    let parts = s.message_parts(ids[0]).await.unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].device_msg_id, "A1");
    let m = s.get_message(ids[1]).await.unwrap().unwrap();
    assert_eq!((m.status, m.sent_at), (Status::Sent, Some(20)));
    }
}

/// On PostgreSQL a request whose row is refused (here: a text with a NUL, which PostgreSQL
/// cannot store; the API refuses one long before) fails alone, never the requests stored in
/// the same statement. (SQLite stores a NUL.)
#[tokio::test]
async fn a_refused_request_fails_alone_in_a_group_commit() {
    let (s, _schema) = postgres().await;
    let a = user(&s, "a").await;
    let requests: Vec<_> = (0..30)
        .map(|r| {
            let s = s.clone();
            let mut m = msg(a.id, &format!("+1555{r:07}"), 1);
            if r == 7 {
                m.body = "a\0b".into();
            }
            tokio::spawn(async move {
                let got = s.insert_messages(vec![m], None, render_ids()).await;
                (r, got)
            })
        })
        .collect();
    for request in requests {
        let (r, got) = request.await.unwrap();
        match got {
            Ok(Inserted::New { ids, .. }) if r != 7 => {
                let m = s.get_message(ids[0]).await.unwrap().unwrap();
                assert_eq!(m.to, format!("+1555{r:07}"));
            }
            Err(StoreError::Backend(_)) if r == 7 => {}
            other => panic!("request {r}: {other:?}"),
        }
    }
}

conformance! {
    /// A node renews the leases of what it still holds: only those, at the attempt it holds,
    /// outlive their first lease.
    async fn renewed_leases_outlive_their_first_lease(s) {
    let a = user(&s, "a").await;
    let ids = insert(
        &s,
        vec![msg(a.id, "+15550000001", 1), msg(a.id, "+15550000002", 1), msg(a.id, "+15550000003", 1)],
    )
    .await;
    assert_eq!(s.claim(10, 1000, 10).await.unwrap().len(), 3);
    // The first at its attempt, the second at an attempt it is no longer at.
    let renewed = s
        .renew_leases(vec![(ids[0], 1), (ids[1], 2)], 5000)
        .await
        .unwrap();
    assert_eq!(renewed, 1);
    let m = s.maintain(2000).await.unwrap();
    assert_eq!(m.requeued, 2);
    let status = |id| {
        let s = s.clone();
        async move { s.get_message(id).await.unwrap().unwrap().status }
    };
    assert_eq!(status(ids[0]).await, Status::Sending);
    assert_eq!(status(ids[1]).await, Status::Queued);
    assert_eq!(status(ids[2]).await, Status::Queued);
    }
}

conformance! {
    /// One round of receipts of every kind at once: one-part messages, both parts of a
    /// two-part message, one part of another, the same receipt twice, an unknown one, and
    /// one for a message settled before. (PostgreSQL applies most of them in one statement;
    /// the answers and the result are the same.)
    async fn a_round_of_mixed_receipts_settles_each_message_as_one_at_a_time_would(s) {
    let a = user(&s, "a").await;
    let mut two = msg(a.id, "+15550000002", 1);
    two.segments = 2;
    let mut other_two = msg(a.id, "+15550000003", 1);
    other_two.segments = 2;
    let ids = insert(
        &s,
        vec![msg(a.id, "+15550000001", 1), two, other_two, msg(a.id, "+15550000004", 1)],
    )
    .await;
    assert_eq!(s.claim(10, 1000, 10).await.unwrap().len(), 4);
    s.record_outcomes(vec![
        sent(ids[0], &["A"], vec![]),
        sent(ids[1], &["B1", "B2"], vec![]),
        sent(ids[2], &["C1", "C2"], vec![]),
        sent(ids[3], &["D"], vec![]),
    ])
    .await
    .unwrap();
    let r = |id: &str, ok: bool, at: i64| Receipt {
        device: "lb".into(),
        device_msg_id: id.into(),
        delivered: ok,
        code: (!ok).then(|| "0B".into()),
        at,
    };
    // D is settled before the round.
    s.apply_receipts(vec![r("D", true, 25)]).await.unwrap();
    let got = s
        .apply_receipts(vec![
            r("A", false, 30),
            r("B1", true, 31),
            r("C1", true, 32),
            r("B2", true, 33),
            r("nope", true, 34),
            r("D", false, 35),
            r("A", true, 36),
        ])
        .await
        .unwrap();
    let part = |i: usize, st: Option<Status>| ReceiptMatch::Part {
        message_id: ids[i],
        status: st,
        submitted_at: 20,
    };
    assert_eq!(
        got,
        vec![
            part(0, Some(Status::Undelivered)),
            part(1, None),
            part(2, None),
            part(1, Some(Status::Delivered)),
            ReceiptMatch::Unknown,
            part(3, None),
            part(0, None),
        ]
    );
    let m = |i: usize| {
        let s = s.clone();
        let id = ids[i];
        async move { s.get_message(id).await.unwrap().unwrap() }
    };
    let m0 = m(0).await;
    assert_eq!((m0.status, m0.error_code.as_deref(), m0.done_at), (Status::Undelivered, Some("0B"), Some(30)));
    assert_eq!((m(1).await.status, m(1).await.done_at), (Status::Delivered, Some(33)));
    assert_eq!(m(2).await.status, Status::Sent);
    assert_eq!((m(3).await.status, m(3).await.done_at), (Status::Delivered, Some(25)));
    // The parts keep the last receipt each got.
    let parts = s.message_parts(ids[0]).await.unwrap();
    assert_eq!(parts[0].status, "delivered");
    let parts = s.message_parts(ids[2]).await.unwrap();
    assert_eq!((parts[0].status.as_str(), parts[1].status.as_str()), ("delivered", "sent"));
    }
}

conformance! {
    /// The audit log is read newest first, by exact action, by action prefix (`user.`), by
    /// actor, and a page at a time below a cursor.
    async fn audit_log_filters_and_pages(s) {
    let entry = |at: i64, actor: &str, action: &str, target: &str| NewAudit {
        at,
        actor: actor.into(),
        via: "api".into(),
        address: Some("192.0.2.7".into()),
        action: action.into(),
        target: target.into(),
        detail: (action == "user.created").then(|| "role user".to_string()),
    };
    for (at, actor, action, target) in [
        (1, "root", "user.created", "alice"),
        (2, "root", "apikey.created", "1"),
        (3, "alice", "signin.succeeded", "alice"),
        (4, "root", "user.disabled", "alice"),
        (5, "bob", "signin.failed", "bob"),
        (6, "root", "users.x", "not a user. action"),
    ] {
        s.audit(entry(at, actor, action, target)).await.unwrap();
    }
    let read = |action: Option<&str>, actor: Option<&str>, before: Option<i64>, limit: usize| {
        let s = s.clone();
        let f = AuditFilter {
            action: action.map(str::to_string),
            actor: actor.map(str::to_string),
            before,
            limit,
        };
        async move { s.audit_log(f).await.unwrap() }
    };
    let all = read(None, None, None, 100).await;
    let ats: Vec<i64> = all.iter().map(|e| e.at).collect();
    assert_eq!(ats, [6, 5, 4, 3, 2, 1]);
    assert_eq!(all[5].detail.as_deref(), Some("role user"));
    assert_eq!(all[5].address.as_deref(), Some("192.0.2.7"));
    let users: Vec<i64> = read(Some("user."), None, None, 100).await.iter().map(|e| e.at).collect();
    assert_eq!(users, [4, 1], "a prefix takes user.* and not users.*");
    let failed = read(Some("signin.failed"), None, None, 100).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].actor, "bob");
    let roots: Vec<i64> = read(None, Some("root"), None, 2).await.iter().map(|e| e.at).collect();
    assert_eq!(roots, [6, 4]);
    let next: Vec<i64> = read(None, Some("root"), Some(all[2].id), 10).await.iter().map(|e| e.at).collect();
    assert_eq!(next, [2, 1]);
    }
}

conformance! {
    /// Quotas count texts per UTC day and month, all or none: a request that would pass
    /// either limit counts nothing; given-back texts can be taken again; a user's own limits
    /// are stored and read back.
    async fn quota_usage_is_counted_all_or_none(s) {
    let u = user(&s, "quota").await;
    let day = 1_765_000_000_000; // 2025-12-06T05:46:40Z
    let next_day = day + 86_400_000;
    assert_eq!(s.take_quota(u.id, 3, Some(5), Some(6), day).await.unwrap(), None);
    assert_eq!(s.quota_used(u.id, day).await.unwrap(), (3, 3));
    // 3 + 3 passes the day's 5: nothing is counted.
    assert_eq!(s.take_quota(u.id, 3, Some(5), Some(6), day).await.unwrap(), Some((0, 3)));
    assert_eq!(s.quota_used(u.id, day).await.unwrap(), (3, 3));
    // A new day: the day's count starts again, the month's goes on, and passing the month's
    // limit undoes the day's count taken first.
    assert_eq!(s.take_quota(u.id, 2, Some(5), Some(6), next_day).await.unwrap(), None);
    assert_eq!(s.take_quota(u.id, 2, Some(5), Some(6), next_day).await.unwrap(), Some((1, 5)));
    assert_eq!(s.quota_used(u.id, next_day).await.unwrap(), (2, 5));
    // More than a whole limit at once is refused even on a fresh period.
    let other = user(&s, "quota2").await;
    assert_eq!(s.take_quota(other.id, 9, Some(5), None, day).await.unwrap(), Some((0, 0)));
    assert_eq!(s.quota_used(other.id, day).await.unwrap(), (0, 0));
    // No limits: counted all the same.
    assert_eq!(s.take_quota(other.id, 9, None, None, day).await.unwrap(), None);
    s.give_quota(other.id, 4, day).await.unwrap();
    assert_eq!(s.quota_used(other.id, day).await.unwrap(), (5, 5));
    // A user's own limits.
    let q = Quota { daily: Some(100), monthly: None, rate: Some(0) };
    let changed = s
        .update_user(u.id, UserUpdate { quota: Some(q), ..Default::default() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.quota, q);
    assert_eq!(s.user_by_name("quota").await.unwrap().unwrap().quota, q);
    }
}
