//! Fuzz the release token reader: checks in `chaff_milter::fuzzing::release_token`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chaff_milter::fuzzing::release_token(data));
