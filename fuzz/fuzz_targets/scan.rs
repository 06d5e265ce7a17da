//! Fuzz the whole scan (parse → decode → normalise → match → segment → score →
//! route) on arbitrary bytes: checks in `chaff::fuzzing::scan`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chaff::fuzzing::scan(data));
