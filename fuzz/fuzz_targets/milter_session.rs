//! Fuzzes the per-connection state machine with whatever commands decode from
//! arbitrary bytes: it must never panic, never buffer a message past the size limit,
//! and always answer a command that expects an answer.
#![no_main]

use chaff_milter::protocol::{Command, split_frame};
use chaff_milter::session::{Session, Step};
use chaff_milter::settings::Settings;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let settings = Settings {
        max_message_size: 300,
        ..Settings::default()
    };
    let mut session = Session::new(Arc::new(settings));
    let mut rest = data;
    while let Ok(Some((frame, used))) = split_frame(rest, 4096) {
        rest = &rest[used..];
        let Ok(cmd) = Command::parse(frame) else {
            continue;
        };
        match session.handle(cmd) {
            Ok(Step::Scan(job)) => {
                assert!(job.raw.len() <= 300, "buffered past the limit");
                let d =
                    chaff_milter::policy::Decision::fallback(session.settings(), "fuzz".into());
                assert!(!session.finish(&d).is_empty());
            }
            Ok(Step::Close) => return,
            Ok(_) | Err(_) => {}
        }
    }
});
