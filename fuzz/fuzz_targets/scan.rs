//! Fuzz the whole scan (parse → decode → normalise → match → segment → score →
//! route) on arbitrary bytes: checks in `chaff::fuzzing::scan`.
//!
//! A panic inside mail-parser is caught by chaff's parser (the message is then
//! read as headers and raw body); libFuzzer's panic hook would abort on it all the
//! same, so the hook is made silent here. A panic that escapes still aborts: the
//! harness catches it and reports the crash.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    chaff::fuzzing::scan(data)
});
