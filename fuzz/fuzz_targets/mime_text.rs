//! `text::read_mail` on arbitrary bytes (a whole message as received after DATA), and the
//! text reduction it uses on the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use textgate_smtp::text::{clean, html_to_text, read_mail, truncate_to_fit};

fuzz_target!(|data: &[u8]| {
    let mail = read_mail(data);
    let _ = clean(&mail.text);
    let _ = html_to_text(&String::from_utf8_lossy(data));
    if let Ok(body) = truncate_to_fit(&mail.text, 2) {
        assert!(body.segments() <= 2);
        assert!(
            mail.text.starts_with(body.text()),
            "truncation keeps a prefix"
        );
    }
});
