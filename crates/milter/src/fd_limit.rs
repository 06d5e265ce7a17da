//! Open files for `max_connections`: each MTA connection is a file descriptor, and
//! the usual soft limit (1024) is below what the default 1,024 connections and the
//! service's own files need. At start the soft limit of `RLIMIT_NOFILE` is raised,
//! up to the hard limit, to `max_connections` plus [`MARGIN`]; if the hard limit is
//! lower, a warning says so (then connections beyond it fail to be accepted and wait
//! in the listen backlog, which the slot rule cannot help).

use tracing::{info, warn};

/// Descriptors beyond one per connection: listeners, metrics, the lock store, log
/// output, threads' files, and connections being closed after losing their slot.
pub const MARGIN: u64 = 256;

fn get() -> std::io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given, which lives here.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(lim)
}

/// Raises the soft limit on open files to `max_connections` + [`MARGIN`] if it is
/// lower (up to the hard limit), and warns when even that is too low. Returns the
/// soft limit in force afterwards, if it could be read.
pub fn ensure(max_connections: usize) -> Option<u64> {
    let want = (max_connections as u64).saturating_add(MARGIN);
    let mut lim = match get() {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "cannot read the open-files limit (RLIMIT_NOFILE)");
            return None;
        }
    };
    let (soft, hard) = (lim.rlim_cur as u64, lim.rlim_max as u64);
    if soft >= want {
        return Some(soft);
    }
    let new = want.min(hard);
    if new > soft {
        lim.rlim_cur = new as libc::rlim_t;
        // SAFETY: setrlimit reads only the struct it is given, which lives here.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            let e = std::io::Error::last_os_error();
            warn!(error = %e, soft, want, "cannot raise the open-files limit");
            return Some(soft);
        }
        info!(
            from = soft,
            to = new,
            "raised the open-files limit (RLIMIT_NOFILE)"
        );
    }
    if new < want {
        warn!(
            limit = new,
            want,
            max_connections,
            "the open-files hard limit is too low for max_connections: raise it \
             (systemd LimitNOFILE=, ulimit -Hn) or lower max_connections"
        );
    }
    Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_covers_the_connections_after_ensure() {
        let hard = get().unwrap().rlim_max as u64;
        let want = 1024.min(hard.saturating_sub(MARGIN)) as usize;
        let got = ensure(want).unwrap();
        assert!(got >= want as u64 + MARGIN.min(hard), "{got}");
        assert_eq!(get().unwrap().rlim_cur as u64, got);
    }
}
