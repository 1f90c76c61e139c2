//! A mirror's `<file>.sha256`: what comes out is a SHA-256 in lower-case hex, or nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(digest) = kinit::download::digest_in_sums(data) {
        assert_eq!(digest.len(), 64);
        assert!(
            digest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        );
    }
});
