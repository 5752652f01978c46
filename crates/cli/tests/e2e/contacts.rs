//! The address book through the API: contacts and groups are a user's own or shared; a user
//! sees their own and the shared ones, changes only their own; administrators keep the shared
//! ones. Another user's contact or group answers as one that does not exist.

use serde_json::json;

use crate::helpers::*;

#[test]
fn contacts_and_groups_are_personal_or_shared() {
    let app = spawn_app_with(Opts {
        users: &[("alice", "user"), ("bob", "user"), ("boss", "admin")],
        ..Opts::default()
    });
    let (alice, bob, boss) = (app.key_of("alice"), app.key_of("bob"), app.key_of("boss"));
    let post = |key: &str, path: &str, body: serde_json::Value| {
        app.req_as(key, "POST", path, Some(&body.to_string()), &[])
    };
    let r = post(
        alice,
        "/api/v1/contacts",
        json!({"name": "Ann", "number": "(555) 100-0001", "fields": {"city": "Oslo"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let ann = r.json();
    assert_eq!(
        ann["number"], "+15551000001",
        "normalised with the default country"
    );
    let ann_id = ann["id"].as_i64().unwrap();
    let r = post(
        alice,
        "/api/v1/contacts",
        json!({"name": "Ann B", "number": "+15551000001"}),
    );
    assert_eq!(r.status, 200, "the same number updates: {}", r.text());
    assert_eq!(r.json()["id"], ann_id);
    let r = post(
        alice,
        "/api/v1/contacts",
        json!({"name": "", "number": "nope"}),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    let r = post(
        alice,
        "/api/v1/contacts",
        json!({"name": "X", "number": "+15551000002", "fields": {"Bad Key": "x"}}),
    );
    assert_eq!(r.status, 422, "{}", r.text());

    // Shared contacts: administrators only; everyone sees them, only administrators change them.
    let r = post(
        bob,
        "/api/v1/contacts",
        json!({"name": "Desk", "number": "+15551000009", "shared": true}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = post(
        boss,
        "/api/v1/contacts",
        json!({"name": "Desk", "number": "+15551000009", "shared": true}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let desk = r.json()["id"].as_i64().unwrap();
    let names = |key: &str| -> Vec<String> {
        app.req_as(key, "GET", "/api/v1/contacts", None, &[]).json()["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(alice), vec!["Ann B", "Desk"]);
    assert_eq!(names(bob), vec!["Desk"]);
    let r = app.req_as(bob, "GET", &format!("/api/v1/contacts/{ann_id}"), None, &[]);
    assert_eq!(r.status, 404, "another's contact: {}", r.text());
    let r = app.req_as(
        bob,
        "PATCH",
        &format!("/api/v1/contacts/{desk}"),
        Some(r#"{"name":"Mine"}"#),
        &[],
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = app.req_as(
        alice,
        "PATCH",
        &format!("/api/v1/contacts/{ann_id}"),
        Some(r#"{"fields":{"city":"Bergen"}}"#),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["fields"]["city"], "Bergen");

    // Groups.
    let r = post(alice, "/api/v1/groups", json!({"name": "Team"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let team = r.json()["id"].as_i64().unwrap();
    assert_eq!(
        post(alice, "/api/v1/groups", json!({"name": "Team"})).status,
        409
    );
    let members = format!("/api/v1/groups/{team}/members");
    assert_eq!(
        post(alice, &members, json!({"contact_id": ann_id})).status,
        200
    );
    assert_eq!(
        post(alice, &members, json!({"contact_id": desk})).status,
        200
    );
    let g = app
        .req_as(alice, "GET", &format!("/api/v1/groups/{team}"), None, &[])
        .json();
    assert_eq!(g["members"], 2);
    assert_eq!(g["contacts"].as_array().unwrap().len(), 2);
    assert_eq!(
        post(bob, &members, json!({"contact_id": desk})).status,
        404,
        "another's group"
    );
    // A group as a job's rows: its contacts' fields are the template's columns.
    let csv_post = |key: &str, path: &str| {
        let auth = format!("Bearer {key}");
        http(
            &app.addr,
            "POST",
            path,
            &[("Authorization", &auth), ("Content-Type", "text/csv")],
            Some(b""),
        )
        .expect("the server answers")
    };
    let r = csv_post(
        alice,
        "/api/v1/jobs?group=Team&dry_run=true&template=Hi%20%7B%7Bname%7D%7D%20in%20%7B%7Bcity%7D%7D",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let preview = r.json()["preview"].to_string();
    assert!(preview.contains("Hi Ann B in Bergen"), "{preview}");
    let r = csv_post(bob, "/api/v1/jobs?group=Team&dry_run=true");
    assert_eq!(r.status, 422, "another's group: {}", r.text());
    let r = app.req_as(alice, "DELETE", &format!("{members}/{desk}"), None, &[]);
    assert_eq!(r.status, 204, "{}", r.text());
    let r = app.req_as(
        alice,
        "DELETE",
        &format!("/api/v1/groups/{team}"),
        None,
        &[],
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = app.req_as(
        alice,
        "GET",
        &format!("/api/v1/contacts/{ann_id}"),
        None,
        &[],
    );
    assert_eq!(r.status, 200, "a group's contacts stay");
    let r = app.req_as(
        alice,
        "DELETE",
        &format!("/api/v1/contacts/{ann_id}"),
        None,
        &[],
    );
    assert_eq!(r.status, 204);
    assert_eq!(names(alice), vec!["Desk"]);
}

#[test]
fn a_contact_page_size_out_of_range_is_refused() {
    let app = spawn_app("");
    for limit in ["0", "1001", "x"] {
        let r = app.req("GET", &format!("/api/v1/contacts?limit={limit}"), None);
        assert_eq!(r.status, 400, "limit={limit}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "invalid_limit");
    }
    assert_eq!(
        app.req("GET", "/api/v1/contacts?limit=1000", None).status,
        200
    );
    let r = app.req("GET", "/api/v1/contacts?offset=18446744073709551615", None);
    assert_eq!(r.status, 400, "{}", r.text());
}
