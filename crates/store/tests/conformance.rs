//! One behaviour, two backends: every test here runs against SQLite (a fresh file) and
//! against the PostgreSQL that CI runs at 127.0.0.1:5432 (a fresh schema in database `test`;
//! `TEXTGATE_TEST_POSTGRES` overrides the URL).

use std::future::Future;

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

async fn postgres() -> Store {
    let base = std::env::var("TEXTGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
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
    Store::open(&format!("{base}{sep}options=-csearch_path%3D{schema}"))
        .await
        .expect("open postgres")
}

async fn both<F, Fut>(f: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    f(sqlite().await).await;
    f(postgres().await).await;
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

#[tokio::test]
async fn users_and_api_keys() {
    both(|s| async move {
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
        s.create_api_key(u.id, "h1".into(), "tg_ab…".into())
            .await
            .unwrap();
        assert_eq!(
            s.user_by_api_key("h1").await.unwrap().map(|x| x.id),
            Some(u.id)
        );
        assert_eq!(s.user_by_api_key("h2").await.unwrap(), None);
        assert_eq!(s.count_users().await.unwrap(), 1);
        s.health().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn users_by_email_ignore_case_and_take_the_oldest() {
    both(|s| async move {
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
    })
    .await;
}

#[tokio::test]
async fn insert_get_list_with_owner_and_cursor() {
    both(|s| async move {
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
    })
    .await;
}

#[tokio::test]
async fn idempotency_replays_and_refuses_a_different_request() {
    both(|s| async move {
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
    })
    .await;
}

#[tokio::test]
async fn claim_is_ordered_leased_and_exclusive() {
    both(|s| async move {
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
    })
    .await;
}

#[tokio::test]
async fn concurrent_claims_never_share_a_message() {
    both(|s| async move {
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
    })
    .await;
}

#[tokio::test]
async fn outcomes_are_fenced_by_attempt_and_receipts_complete_messages() {
    both(|s| async move {
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
        let sent = |id, parts: Vec<&str>| Outcome::Sent {
            id,
            attempt: 1,
            device: "lb".into(),
            part_ids: parts.into_iter().map(String::from).collect(),
            receipts: vec![],
            at: 20,
        };
        let applied = s
            .record_outcomes(vec![
                sent(ids[0], vec!["A1"]),
                sent(ids[1], vec!["B1", "B2"]),
                Outcome::Retry {
                    id: ids[2],
                    attempt: 1,
                    device: Some("lb".into()),
                    due_at: 500,
                    code: Some("88".into()),
                    error: "throttled".into(),
                    refund: true,
                },
                Outcome::Final {
                    id: ids[3],
                    attempt: 1,
                    status: Status::Failed,
                    device: Some("lb".into()),
                    code: Some("11".into()),
                    error: "bad number".into(),
                    at: 20,
                },
                // A stale worker's outcome (attempt 0) is ignored.
                sent(ids[2], vec!["X"]),
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
                    status: Some(Status::Delivered)
                },
                ReceiptMatch::Part {
                    message_id: ids[1],
                    status: None
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
                status: Some(Status::Undelivered)
            }]
        );
        let parts = s.message_parts(ids[1]).await.unwrap();
        assert_eq!(
            parts.iter().map(|p| p.status.as_str()).collect::<Vec<_>>(),
            ["delivered", "undelivered"]
        );
        assert_eq!(parts[1].device_msg_id, "B2");
    })
    .await;
}

#[tokio::test]
async fn cancel_only_before_sending_and_only_own() {
    both(|s| async move {
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
    })
    .await;
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

#[tokio::test]
async fn inbound_texts_are_stored_once_per_dedup_key() {
    both(|s| async move {
        let t = NewInbound {
            device: "lb".into(),
            from: "+15550000001".into(),
            to: "+15550000002".into(),
            body: "hi".into(),
            encoding: "gsm7".into(),
            parts: 1,
            partial: false,
            dedup_key: Some("lb:abc".into()),
            received_at: 5,
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
    })
    .await;
}

#[tokio::test]
async fn unreceipted_parts_and_receipt_expiry() {
    both(|s| async move {
        let a = user(&s, "a").await;
        let mut long = msg(a.id, "+15550000002", 1);
        long.segments = 2;
        long.expires_at = 10_000;
        let ids = insert(&s, vec![msg(a.id, "+15550000001", 1), long]).await;
        s.claim(10, 1000, 10).await.unwrap();
        let sent = |id, parts: &[&str]| Outcome::Sent {
            id,
            attempt: 1,
            device: "lb".into(),
            part_ids: parts.iter().map(|p| p.to_string()).collect(),
            receipts: vec![],
            at: 20,
        };
        s.record_outcomes(vec![sent(ids[0], &["A"]), sent(ids[1], &["B1", "B2"])])
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
    })
    .await;
}

#[tokio::test]
async fn messages_stored_already_claimed_skip_the_queue() {
    both(|s| async move {
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
    })
    .await;
}

#[tokio::test]
async fn receipts_known_at_submit_are_written_with_the_parts() {
    both(|s| async move {
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
        let sent = |id, parts: &[&str], receipts| Outcome::Sent {
            id,
            attempt: 1,
            device: "lb".into(),
            part_ids: parts.iter().map(|p| p.to_string()).collect(),
            receipts,
            at: 20,
        };
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
                status: Some(Status::Delivered)
            }]
        );
    })
    .await;
}
