//! CPU time of the calling thread.
//!
//! A scan's wall time on a busy machine includes the time its thread waited for a
//! core. Logging the thread's CPU time beside it tells an admin whether a slow
//! scan was slow work (a large or odd message) or a starved machine. It is
//! measured for messages of [`MEASURED_FROM_BYTES`] or more.

use std::time::Duration;

/// Scans of messages from this size on have their CPU time measured. Reading the
/// thread's CPU clock is a system call that takes the scheduler's lock: read twice
/// for every message, it was about 4 % of the service's CPU in a `perf` profile
/// under the load benchmark on this project's VM. Below
/// this size a scan takes tens of microseconds and is seldom interrupted, so
/// there is little for the figure to tell.
pub const MEASURED_FROM_BYTES: usize = 16 * 1024;

/// The CPU time the calling thread has used so far, or `None` where the clock is
/// not available.
pub fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` only writes the `timespec` it is given, which lives
    // on this stack frame for the whole call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_work_and_not_with_sleep() {
        let t0 = thread_cpu_time().expect("thread CPU clock");
        std::thread::sleep(Duration::from_millis(50));
        let t1 = thread_cpu_time().expect("thread CPU clock");
        assert!(t1 - t0 < Duration::from_millis(25), "{:?}", t1 - t0);
        // Work until this thread's clock shows 20 ms of CPU. On a busy machine the
        // thread may get a small share of the wall time, so the bound is generous:
        // a clock that does not count this thread's work never gets there.
        let mut x = 0u64;
        let spin = std::time::Instant::now();
        let mut t2 = t1;
        while t2 - t1 < Duration::from_millis(20) && spin.elapsed() < Duration::from_secs(20) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            t2 = thread_cpu_time().expect("thread CPU clock");
        }
        assert!(t2 - t1 >= Duration::from_millis(20), "{:?}", t2 - t1);
    }
}
