//! Fuzz the parse and decode stages, and the offset map of normalisation, on
//! arbitrary bytes.
#![no_main]

use chaff::decode::decode;
use chaff::normalise::{Normalised, normalise_into};
use chaff::parse::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = decode(&parse(data));
    let mut out = Normalised::default();
    for (_, text) in decoded.all_texts() {
        normalise_into(text, &mut out);
        assert_eq!(out.origin.len(), out.text.len());
        assert!(out.origin.iter().all(|&o| (o as usize) < text.len().max(1)));
    }
});
