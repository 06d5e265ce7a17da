//! Fuzzes the milter codec: framing and decoding of arbitrary bytes, in both
//! directions, must never panic, must respect the packet limit, and whatever decodes
//! must encode back to a packet that decodes to the same thing.
#![no_main]

use chaff_milter::protocol::{Command, Response, split_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the packet limit, so small limits get exercised too.
    let Some((&k, mut rest)) = data.split_first() else {
        return;
    };
    let max = 1 + usize::from(k) * 8;
    while let Ok(Some((frame, used))) = split_frame(rest, max) {
        assert!(used >= 5 && used <= rest.len() && used - 4 <= max);
        if let Ok(cmd) = Command::parse(frame) {
            let mut wire = Vec::new();
            cmd.encode(&mut wire);
            let (again, n) = split_frame(&wire, usize::MAX)
                .expect("re-encoded command frames")
                .expect("re-encoded command is complete");
            assert_eq!(n, wire.len());
            // NULs inside strings are dropped on encoding, so compare only when
            // the original had none where strings are.
            if let Ok(back) = Command::parse(again)
                && !frame.payload.contains(&0)
            {
                assert_eq!(back.code(), cmd.code());
            }
        }
        if let Ok(resp) = Response::parse(frame) {
            let mut wire = Vec::new();
            resp.encode(&mut wire);
            let (again, _) = split_frame(&wire, usize::MAX)
                .expect("re-encoded response frames")
                .expect("complete");
            assert_eq!(Response::parse(again).map(|r| r.code()), Ok(resp.code()));
        }
        rest = &rest[used..];
    }
});
