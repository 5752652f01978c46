//! The address book's rules, the same from the API and the web UI: what a contact may hold,
//! who may change what (a user their own contacts and groups; administrators the shared
//! ones too), and contacts read from and written as CSV. Here, beside the bulk jobs, because
//! a contact's fields are what a job's template columns are.

use std::collections::BTreeMap;

use textgate_core::address::{Country, Recipient};
use textgate_core::clock::now_ms;
use textgate_store::{Contact, Id, NewContact};

/// The longest name.
pub const MAX_NAME: usize = 100;
/// The most extra fields a contact has.
pub const MAX_FIELDS: usize = 20;
/// The longest field value.
pub const MAX_VALUE: usize = 500;
/// The most contacts one import reads.
pub const MAX_IMPORT: usize = 100_000;

/// May `user` (an administrator or not) change this contact or group, owned by `owner`?
pub fn may_edit(owner: Option<Id>, user: Id, admin: bool) -> bool {
    match owner {
        Some(o) => o == user,
        None => admin,
    }
}

/// The owner of a new contact or group: the user's own, or shared (`None`) when asked for
/// by an administrator; `Err` when a user who is not one asks for a shared one.
pub fn owner_for(shared: bool, user: Id, admin: bool) -> Result<Option<Id>, &'static str> {
    match (shared, admin) {
        (false, _) => Ok(Some(user)),
        (true, true) => Ok(None),
        (true, false) => Err("shared contacts and groups are made by administrators"),
    }
}

/// May `user` see what `owner` owns (their own, or shared)?
pub fn may_see(owner: Option<Id>, user: Id) -> bool {
    owner.is_none_or(|o| o == user)
}

/// A field name usable in a template: 1-32 lowercase letters, digits or `_`.
fn field_name_ok(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 32
        && k.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !matches!(k, "name" | "number")
}

/// A contact checked: the name trimmed, the number in E.164, the fields as a JSON object.
pub fn check(
    owner: Option<Id>,
    name: &str,
    number: &str,
    fields: &BTreeMap<String, String>,
    country: Option<Country>,
) -> Result<NewContact, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(format!("name: give 1 to {MAX_NAME} characters"));
    }
    let number = Recipient::parse(number.trim(), country)
        .map_err(|e| format!("number: {e}"))?
        .as_str()
        .to_string();
    if fields.len() > MAX_FIELDS {
        return Err(format!("fields: at most {MAX_FIELDS}"));
    }
    for (k, v) in fields {
        if !field_name_ok(k) {
            return Err(format!("fields: \"{k}\" is not a field name: use 1-32 lowercase letters, digits or _ (not name or number)"));
        }
        if v.chars().count() > MAX_VALUE {
            return Err(format!("fields: {k} is longer than {MAX_VALUE} characters"));
        }
    }
    Ok(NewContact {
        owner_id: owner,
        name: name.to_string(),
        number,
        fields: serde_json::to_string(fields).map_err(|e| e.to_string())?,
        created_at: now_ms(),
    })
}

/// A contact's fields, read back.
pub fn fields_of(c: &Contact) -> BTreeMap<String, String> {
    serde_json::from_str(&c.fields).unwrap_or_default()
}

/// What an import read: the contacts, and the rows that are not contacts (row number, why).
pub type Imported = (Vec<NewContact>, Vec<(usize, String)>);

/// Contacts from a CSV file with a header: `name` and `number` (or `phone`, `mobile`), the
/// other columns their fields (names lowercased). Rows that are not contacts are reported by
/// their row number (the header is row 1).
pub fn read_csv(
    bytes: &[u8],
    owner: Option<Id>,
    country: Option<Country>,
) -> Result<Imported, String> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes));
    let header: Vec<String> = r
        .headers()
        .map_err(|e| format!("the header row is not readable: {e}"))?
        .iter()
        .map(|h| h.trim().to_lowercase())
        .collect();
    let find = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
    let number_at = find(&["number", "phone", "mobile", "to"])
        .ok_or("no number column: name one column number, phone or mobile")?;
    let name_at = find(&["name"]).ok_or("no name column: name one column name")?;
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    for (i, rec) in r.records().enumerate() {
        let row = i + 2;
        if out.len() + bad.len() >= MAX_IMPORT {
            return Err(format!("more than {MAX_IMPORT} rows: split the file"));
        }
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                bad.push((row, format!("not readable: {e}")));
                continue;
            }
        };
        let get = |i: usize| rec.get(i).unwrap_or("").to_string();
        let fields: BTreeMap<String, String> = header
            .iter()
            .enumerate()
            .filter(|(j, h)| *j != number_at && *j != name_at && !h.is_empty())
            .map(|(j, h)| (h.replace(|c: char| !c.is_ascii_alphanumeric(), "_"), get(j)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        match check(owner, &get(name_at), &get(number_at), &fields, country) {
            Ok(c) => out.push(c),
            Err(e) => bad.push((row, e)),
        }
    }
    Ok((out, bad))
}

/// Contacts as CSV: `name,number`, then every field any of them has.
pub fn write_csv(contacts: &[Contact]) -> String {
    let mut keys: Vec<String> = contacts
        .iter()
        .flat_map(|c| fields_of(c).into_keys())
        .collect();
    keys.sort();
    keys.dedup();
    let field = crate::results::field;
    let mut out = String::from("name,number");
    for k in &keys {
        out.push(',');
        out.push_str(&field(k));
    }
    out.push_str("\r\n");
    for c in contacts {
        let f = fields_of(c);
        out.push_str(&field(&c.name));
        out.push(',');
        out.push_str(&field(&c.number));
        for k in &keys {
            out.push(',');
            out.push_str(&field(f.get(k).map_or("", String::as_str)));
        }
        out.push_str("\r\n");
    }
    out
}

/// A group's name: 1 to 100 characters.
pub fn check_group_name(name: &str) -> Result<&str, String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > MAX_NAME {
        Err(format!("name: give 1 to {MAX_NAME} characters"))
    } else {
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_are_checked() {
        let mut f = BTreeMap::new();
        f.insert("city".to_string(), "Oslo".to_string());
        let c = check(Some(1), " Ann ", "+1 555 100 0001", &f, None).unwrap();
        assert_eq!(
            (c.name.as_str(), c.number.as_str()),
            ("Ann", "+15551000001")
        );
        assert_eq!(c.fields, r#"{"city":"Oslo"}"#);
        assert!(check(Some(1), "", "+15551000001", &f, None).is_err());
        assert!(check(Some(1), "Ann", "nope", &f, None).is_err());
        f.insert("Bad Key".into(), "x".into());
        assert!(check(Some(1), "Ann", "+15551000001", &f, None).is_err());
    }

    #[test]
    fn csv_round_trips_and_reports_bad_rows_by_number() {
        let csv = "\u{feff}Name,Phone,City\nAnn,+15551000001,Oslo\nBob,nope,Bergen\n\"Cy, Jr\",+15551000003,\n";
        let (ok, bad) = read_csv(csv.as_bytes(), Some(1), None).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 3);
        let contacts: Vec<Contact> = ok
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
        let out = write_csv(&contacts);
        assert_eq!(
            out,
            "name,number,city\r\nAnn,+15551000001,Oslo\r\n\"Cy, Jr\",+15551000003,\r\n"
        );
        assert!(
            read_csv(b"number\n+15551000001\n", None, None).is_err(),
            "no name column"
        );
    }

    #[test]
    fn who_may_edit() {
        assert!(may_edit(Some(1), 1, false));
        assert!(
            !may_edit(Some(1), 2, true),
            "another's personal contact, even for an admin"
        );
        assert!(may_edit(None, 2, true));
        assert!(!may_edit(None, 2, false));
    }
}
