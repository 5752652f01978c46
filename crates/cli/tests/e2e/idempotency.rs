//! `Idempotency-Key`: a repeated request gets the first answer again and stores nothing new;
//! the same key with a different request is refused.

use serde_json::json;

use crate::helpers::*;

#[test]
fn a_repeated_key_replays_the_first_answer() {
    let app = spawn_app_with(Opts {
        users: &[("alice", "user"), ("bob", "user")],
        ..Opts::default()
    });
    let body = json!({"to": ["+15550004001", "+15550004002"], "body": "once"}).to_string();
    let post = |key: &str, idem: &str, body: &str| {
        app.req_as(
            key,
            "POST",
            "/api/v1/messages",
            Some(body),
            &[("Idempotency-Key", idem)],
        )
    };
    let first = post(&app.key, "order-42", &body);
    assert_eq!(first.status, 202, "{}", first.text());
    let second = post(&app.key, "order-42", &body);
    assert_eq!(second.status, first.status);
    assert_eq!(
        second.text(),
        first.text(),
        "the replay must be byte-identical"
    );
    assert_eq!(
        app.count(),
        2,
        "one request, two recipients: two messages stored"
    );

    // Same key, different request: 422 and nothing new.
    let other = json!({"to": ["+15550004001", "+15550004002"], "body": "twice"}).to_string();
    post(&app.key, "order-42", &other).assert_error(422, "idempotency_key_reused");
    assert_eq!(app.count(), 2);

    // Keys are per user: bob's order-42 is his own request.
    let bobs = post(app.key_of("bob"), "order-42", &body);
    assert_eq!(bobs.status, 202, "{}", bobs.text());
    assert_ne!(bobs.text(), first.text());
    assert_eq!(app.all_messages(app.key_of("bob")).len(), 2);
    assert_eq!(app.count(), 2);

    // The replayed ids are the stored ones.
    let ids: Vec<i64> = first.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    let mut stored: Vec<i64> = app.all_messages(&app.key).into_keys().collect();
    stored.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(stored, want);
}

#[test]
fn concurrent_requests_with_one_key_store_one_message() {
    let app = spawn_app("");
    let body = json!({"to": "+15550004100", "body": "race"}).to_string();
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    app.req_as(
                        &app.key,
                        "POST",
                        "/api/v1/messages",
                        Some(&body),
                        &[("Idempotency-Key", "same")],
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for a in &answers {
        assert_eq!(a.status, 202, "{}", a.text());
        assert_eq!(a.text(), answers[0].text(), "every answer is the first one");
    }
    assert_eq!(app.count(), 1);
}
