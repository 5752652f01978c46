//! Delivery receipts: `receipt::parse` with the short_message text and optional TLV values,
//! `receipt::parse_text` alone, and the id functions on what they return.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use textgate_drivers::smpp::receipt::{self, IdFormat, ReceiptState};

#[derive(Debug, Arbitrary)]
struct Input {
    text: String,
    receipted_message_id: Option<String>,
    message_state: Option<u8>,
    network_error_code: Option<Vec<u8>>,
    receipt_format: u8,
    resp_format: u8,
}

fn format(b: u8) -> IdFormat {
    [
        IdFormat::Auto,
        IdFormat::Hex,
        IdFormat::Decimal,
        IdFormat::Text,
    ][usize::from(b % 4)]
}

fuzz_target!(|input: Input| {
    let from_text = receipt::parse_text(&input.text);
    if let Some(r) = &from_text {
        // What parse_text promises: a non-empty id and a known state.
        assert!(!r.id.is_empty());
        assert_eq!(ReceiptState::from_stat(r.state.as_stat()), Some(r.state));
    }
    let parsed = receipt::parse(
        &input.text,
        input.receipted_message_id.as_deref(),
        input.message_state,
        input.network_error_code.as_deref(),
    );
    // Without TLVs, parse is parse_text.
    if input.receipted_message_id.is_none()
        && input.message_state.is_none()
        && input.network_error_code.is_none()
    {
        assert_eq!(parsed, from_text);
    }
    if let Some(r) = parsed {
        assert!(!r.id.is_empty());
        let rf = format(input.receipt_format);
        let sf = format(input.resp_format);
        let id = receipt::receipt_id_to_resp(&r.id, rf, sf);
        let _ = receipt::normalize_id(&id, sf);
        let _ = (r.state.is_final(), r.state.delivered());
    }
    if let Some(code) = &input.network_error_code {
        let _ = receipt::format_network_error(code);
    }
    let _ = receipt::normalize_id(&input.text, format(input.receipt_format));
});
