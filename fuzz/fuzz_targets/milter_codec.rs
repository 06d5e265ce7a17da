//! Fuzz the milter codec: checks in `chaff_milter::fuzzing::codec`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chaff_milter::fuzzing::codec(data));
