//! Fuzz the per-connection state machine: checks in
//! `chaff_milter::fuzzing::session`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chaff_milter::fuzzing::session(data));
