//! A contacts file uploaded to the address book: arbitrary bytes read by
//! `contacts::read_csv`. Never panics; every bad row is numbered after the header, and what
//! `write_csv` writes of the contacts reads back as the same contacts, but for the values a
//! spreadsheet would run as formulas, which it writes with a `'` in front (on purpose).
#![no_main]

use libfuzzer_sys::fuzz_target;
use textgate_jobs::contacts::{read_csv, write_csv};
use textgate_store::Contact;

fuzz_target!(|data: &[u8]| {
    let Ok((contacts, bad)) = read_csv(data, Some(1), None) else {
        return;
    };
    assert!(bad.iter().all(|(row, _)| *row >= 2), "{bad:?}");
    let stored: Vec<Contact> = contacts
        .iter()
        .enumerate()
        .map(|(i, c)| Contact {
            id: i as i64,
            owner_id: c.owner_id,
            name: c.name.clone(),
            number: c.number.clone(),
            fields: c.fields.clone(),
            created_at: 0,
        })
        .collect();
    let written = write_csv(&stored);
    let (again, bad_again) = read_csv(written.as_bytes(), Some(1), None)
        .expect("what write_csv writes has a header read_csv takes");
    assert!(bad_again.is_empty(), "{bad_again:?}\n{written}");
    let key = |c: &textgate_store::NewContact| (c.name.clone(), c.number.clone(), c.fields.clone());
    let expected: Vec<_> = contacts
        .iter()
        .map(|c| {
            let fields: std::collections::BTreeMap<String, String> =
                serde_json::from_str(&c.fields).expect("fields are a JSON object");
            let fields: std::collections::BTreeMap<String, String> =
                fields.into_iter().map(|(k, v)| (k, defused(&v))).collect();
            (
                defused(&c.name).trim().to_string(),
                c.number.clone(),
                serde_json::to_string(&fields).expect("fields"),
            )
        })
        .collect();
    assert_eq!(
        expected,
        again.iter().map(key).collect::<Vec<_>>(),
        "{written}"
    );
});

/// A value as `write_csv` writes it (through `results::field`, which puts a `'` before one a
/// spreadsheet would run as a formula), read back as a CSV field.
fn defused(s: &str) -> String {
    // After another field: a reader drops a byte-order mark at the start of its input.
    let line = format!("x,{}", textgate_jobs::results::field(s));
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_bytes());
    r.records()
        .next()
        .and_then(|rec| rec.ok())
        .and_then(|rec| rec.get(1).map(str::to_string))
        .unwrap_or_default()
}
