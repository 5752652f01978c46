//! The `smpp` device: an SMSC account over SMPP 3.4.
//!
//! - [`Smpp`]: the device; its sessions share one queue of submits.
//! - [`session`]: one bound connection: window, enquire_link, receipts, inbound, reconnect.
//! - [`codec`]: framing, and `generic_nack` for PDUs that do not decode (PDUs by `rusmpp`).
//! - [`pdu`]: submit_sm PDUs from an outbound message (addresses, encodings, long texts).
//! - [`receipt`]: delivery receipts from TLVs or the Appendix B text, and message-id matching.
//! - [`text`]: inbound short_message decoding by data_coding.
//! - [`reassembly`]: inbound concatenated texts (UDH or SAR), with a timeout to partial.

pub mod codec;
mod device;
pub mod pdu;
pub mod reassembly;
pub mod receipt;
pub mod session;
pub mod text;

pub use device::{Shared, Smpp};
