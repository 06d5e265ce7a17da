//! Fuzz the `Authentication-Results` parser (issue 14): checks in
//! `chaff::fuzzing::auth_results`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chaff::fuzzing::auth_results(data));
