//! The port server link's frames: `Frame::decode` on any text; whatever it reads is written
//! again by `encode` and read back as the same frame. The first frame's lenient reader,
//! `decode_hello`, on the same text: no panic, and a hello it reads passes the strict
//! reader's checks once written again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use textgate_port::link::{decode_hello, Frame};

fuzz_target!(|text: &str| {
    if let Ok(f) = Frame::decode(text) {
        let again = Frame::decode(&f.encode()).expect("an encoded frame reads back");
        assert_eq!(again, f);
    }
    if let (_, Ok(hello)) = decode_hello(text) {
        assert_eq!(Frame::decode(&hello.encode()).expect("a hello reads back"), hello);
    }
});
