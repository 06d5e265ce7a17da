//! Issue 14 (6): answering "oversize" for a huge input costs no more memory than
//! the size limit (its own test binary: it measures its children's peak RSS).

use std::process::{Command, Stdio};

#[test]
fn a_huge_sparse_file_and_dev_zero_stay_small() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("chaff.toml");
    std::fs::write(&cfg, "[limits]\nmax_message_size = \"1M\"\n").unwrap();
    let sparse = dir.path().join("sparse.eml");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chaff"))
        .args(["score", "--jobs", "1", "--config"])
        .arg(&cfg)
        .arg(&sparse)
        .arg("/dev/zero")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed().as_secs() > 60 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("score /dev/zero never finished");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    let peak_kib = usage.ru_maxrss;
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
}
