//! Fuzz the model loader on arbitrary bytes: checks in `chaff::fuzzing::model`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chaff::fuzzing::model(data));
