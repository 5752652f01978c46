//! The port server link's frames: `Frame::decode` on any text; whatever it reads is written
//! again by `encode` and read back as the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use textgate_port::link::Frame;

fuzz_target!(|text: &str| {
    if let Ok(f) = Frame::decode(text) {
        let again = Frame::decode(&f.encode()).expect("an encoded frame reads back");
        assert_eq!(again, f);
    }
});
