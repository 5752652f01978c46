//! The `smpp` device: an SMSC account over SMPP 3.4.
//!
//! - [`codec`]: framing, and `generic_nack` for PDUs that do not decode (PDUs by `rusmpp`).
//! - [`pdu`]: submit_sm PDUs from an outbound message (addresses, encodings, long texts).
//! - [`receipt`]: delivery receipts from TLVs or the Appendix B text, and message-id matching.
//! - [`text`]: inbound short_message decoding by data_coding.
//! - [`reassembly`]: inbound concatenated texts (UDH or SAR), with a timeout to partial.

pub mod codec;
pub mod pdu;
pub mod reassembly;
pub mod receipt;
pub mod text;
