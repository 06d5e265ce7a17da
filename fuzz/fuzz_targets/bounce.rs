//! Fuzz the bounce explainer (DSN fields, free-text reports, Chinese pages) on
//! arbitrary bytes: checks in `chaff::fuzzing::bounce`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chaff::fuzzing::bounce(data));
