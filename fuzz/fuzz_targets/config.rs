//! Fuzz the configuration pipeline (engine and service tables) and the SMTP reply
//! parser: checks in `chaff_milter::fuzzing::config`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chaff_milter::fuzzing::config(data));
