//! Fuzz the parse and decode stages, and the offset map of normalisation, on
//! arbitrary bytes: checks in `chaff::fuzzing::decode`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chaff::fuzzing::decode(data));
