//! Fuzz the `Authentication-Results` parser (issue 14): arbitrary bytes as a
//! header block and as one header value; it must never panic, and whatever it
//! returns is lowercase where it says so.
#![no_main]

use chaff::auth_results::{from_headers, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for a in from_headers(data) {
        for r in &a.results {
            assert_eq!(r.method, r.method.to_ascii_lowercase());
            assert_eq!(r.result, r.result.to_ascii_lowercase());
        }
    }
    let _ = parse(&String::from_utf8_lossy(data));
});
