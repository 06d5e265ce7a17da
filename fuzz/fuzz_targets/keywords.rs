//! Fuzz the keyword-list parser on arbitrary text: checks in
//! `chaff::fuzzing::keywords`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chaff::fuzzing::keywords(data));
