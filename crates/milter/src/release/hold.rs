//! Releasing a message from Postfix's hold queue (`[quarantine] mode = "hold"`).
//!
//! The milter answered QUARANTINE, so Postfix keeps the message in its hold
//! queue under the queue id chaff logged. Releasing it is
//! `postsuper -H QUEUE_ID`, which moves it to the deferred queue, then
//! `postqueue -i QUEUE_ID`, which asks for its delivery now rather than at the
//! next queue run (up to `queue_run_delay`, 5 minutes by default, later). The
//! message is not handed to the milters again: they run when mail is received,
//! and this one was received already.
//!
//! `postsuper` is for root only. The `chaff quarantine release` command does it
//! when run as root on the MTA host; the service (which never runs as root) or an
//! admin's account can be allowed the one command through sudo
//! ([`Privilege::Sudo`], rule in `contrib/sudoers.chaff`). Anything else is
//! refused before running a command, with an error that says so.
//!
//! Before and after, the queue is read with `postqueue -j` (one JSON object per
//! queue file): a queue id that is not in the hold queue is not released but
//! reported where it is ([`HoldOutcome::NotHeld`]) or that it is gone
//! ([`HoldOutcome::NotFound`]: delivered after an earlier release, deleted, or
//! expired), and a release that left the message on hold is an error.
//!
//! A message held for longer than Postfix's `maximal_queue_lifetime` (5 days by
//! default) bounces as soon as it is released: Postfix counts its age from its
//! arrival.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Shortest queue id accepted: Postfix's short ids are 5 hex digits of
/// microseconds and then the queue file's inode number in hex; its long ids are
/// 12 characters or more. Shorter words (`ALL`) mean more to `postsuper`.
pub const MIN_QUEUE_ID_LEN: usize = 6;

/// Longest queue id accepted (Postfix's long ids are 12–17 characters).
pub const MAX_QUEUE_ID_LEN: usize = 32;

/// Longest line of `postqueue -j` read (a message with a thousand recipients
/// is about 100 KB); a longer one is skipped.
const MAX_JSON_LINE: usize = 4 << 20;

/// How `postsuper` gets root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Privilege {
    /// The caller is root (checked: the effective user id must be 0).
    #[default]
    Root,
    /// Through `sudo -n` (no password prompt), as `contrib/sudoers.chaff`
    /// allows, when the caller is not root (as root, directly).
    Sudo,
}

/// The Postfix commands and instance to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postfix {
    /// `postsuper` (default `/usr/sbin/postsuper`).
    pub postsuper: PathBuf,
    /// `postqueue` (default `/usr/sbin/postqueue`).
    pub postqueue: PathBuf,
    /// `sudo` (default `/usr/bin/sudo`), for [`Privilege::Sudo`].
    pub sudo: PathBuf,
    /// The instance's configuration directory (`-c DIR`); `None`: the default
    /// instance.
    pub config_dir: Option<PathBuf>,
    /// How `postsuper` gets root.
    pub privilege: Privilege,
    /// Longest any one command may run.
    pub timeout: Duration,
}

impl Default for Postfix {
    fn default() -> Self {
        Postfix {
            postsuper: "/usr/sbin/postsuper".into(),
            postqueue: "/usr/sbin/postqueue".into(),
            sudo: "/usr/bin/sudo".into(),
            config_dir: None,
            privilege: Privilege::Root,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a release from the hold queue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Moved out of the hold queue and scheduled for delivery. `queue` is where
    /// it was seen afterwards (`deferred`, `active`), or `None` when it was
    /// already delivered and gone.
    Released {
        /// Where the message is now, if still queued.
        queue: Option<String>,
        /// `postqueue -i` failed: delivery waits for the next queue run. Why.
        flush_failed: Option<String>,
    },
    /// The queue id is queued, but not on hold (released already): nothing done.
    NotHeld {
        /// The queue it is in.
        queue: String,
    },
    /// No message with that queue id is queued: delivered after an earlier
    /// release, deleted (`postsuper -d`), or expired. Nothing done.
    NotFound,
    /// `postsuper -H` ran (or was killed at its time limit) but where the message
    /// went could not be seen: it may be released.
    Unconfirmed {
        /// Why it could not be confirmed.
        reason: String,
    },
}

/// Why a message could not be released from the hold queue.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    /// Not a Postfix queue id ([`valid_queue_id`]; never `ALL` or `-`, which
    /// mean more to `postsuper`).
    #[error("{0:?} is not a Postfix queue id")]
    BadQueueId(String),
    /// Not root and not allowed to use sudo.
    #[error(
        "releasing mail from Postfix's hold queue needs root (postsuper -H), and this \
         process runs as user id {euid}: run `chaff quarantine release` as root on the \
         mail host, or let this user run postsuper through sudo (the rule is in \
         contrib/sudoers.chaff)"
    )]
    NotRoot {
        /// The effective user id.
        euid: u32,
    },
    /// A command could not be run.
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr (the first 2,000 bytes).
        stderr: String,
    },
    /// A command ran past [`Postfix::timeout`] and was killed.
    #[error("{command} did not finish within {secs} s")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        secs: u64,
    },
    /// `postsuper -H` succeeded but the message is still on hold.
    #[error("{queue_id} is still on hold after postsuper -H: {detail}")]
    StillHeld {
        /// The queue id.
        queue_id: String,
        /// What postsuper said.
        detail: String,
    },
}

/// True for a Postfix queue id: short (hex) or long (base-52 letters and
/// digits) form, [`MIN_QUEUE_ID_LEN`] to [`MAX_QUEUE_ID_LEN`] characters (as
/// the rule in `contrib/sudoers.chaff` allows).
pub fn valid_queue_id(id: &str) -> bool {
    (MIN_QUEUE_ID_LEN..=MAX_QUEUE_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The effective user id.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A command's output within a time limit.
struct Ran {
    stdout: Vec<u8>,
    stderr: String,
    status: std::process::ExitStatus,
}

impl Postfix {
    /// The arguments naming the instance (`-c DIR`), if any.
    fn instance_args(&self) -> Vec<std::ffi::OsString> {
        match &self.config_dir {
            Some(d) => vec!["-c".into(), d.clone().into_os_string()],
            None => Vec::new(),
        }
    }

    /// `postsuper [-c DIR] -H ID`, through `sudo -n` when `sudo`.
    fn postsuper_command(&self, queue_id: &str, sudo: bool) -> Command {
        let mut c = if sudo {
            let mut c = Command::new(&self.sudo);
            c.arg("-n").arg(&self.postsuper);
            c
        } else {
            Command::new(&self.postsuper)
        };
        c.args(self.instance_args()).arg("-H").arg(queue_id);
        c
    }

    fn postqueue_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.postqueue);
        c.args(self.instance_args()).args(args);
        c
    }

    /// Runs `cmd`, collecting its output, killed after the time limit.
    fn run(&self, mut cmd: Command, collect_stdout: bool) -> Result<Ran, HoldError> {
        let line = format!("{cmd:?}").replace('"', "");
        cmd.stdin(Stdio::null())
            .stdout(if collect_stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| HoldError::Spawn {
            command: line.clone(),
            source: e,
        })?;
        // Read both pipes on their own threads so neither can fill and stall the
        // child while this one waits.
        let out = child.stdout.take().map(|s| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = s.take(256 << 20).read_to_end(&mut v);
                v
            })
        });
        let err = child.stderr.take().map(|s| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = s.take(64 << 10).read_to_end(&mut v);
                v
            })
        });
        let status = wait_for(&mut child, self.timeout).ok_or_else(|| HoldError::Timeout {
            command: line.clone(),
            secs: self.timeout.as_secs(),
        })?;
        let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
        let mut stderr = String::from_utf8_lossy(&stderr).trim().to_string();
        if stderr.len() > 2000 {
            let mut cut = 2000;
            while !stderr.is_char_boundary(cut) {
                cut -= 1;
            }
            stderr.truncate(cut);
        }
        if !status.success() {
            return Err(HoldError::Failed {
                command: line,
                status: status.to_string(),
                stderr,
            });
        }
        Ok(Ran {
            stdout,
            stderr,
            status,
        })
    }

    /// The queue the message with `queue_id` is in (`hold`, `deferred`, `active`,
    /// `incoming`, `maildrop`), from `postqueue -j`, or `None` when it is not
    /// queued.
    pub fn queue_of(&self, queue_id: &str) -> Result<Option<String>, HoldError> {
        if !valid_queue_id(queue_id) {
            return Err(HoldError::BadQueueId(queue_id.into()));
        }
        let ran = self.run(self.postqueue_command(&["-j"]), true)?;
        Ok(find_in_listing(&ran.stdout, queue_id))
    }

    /// Releases the message `queue_id` from the hold queue and asks for its
    /// delivery now. Blocking (it runs Postfix's commands, each within
    /// [`Postfix::timeout`]).
    ///
    /// An error means the message was not moved. Once `postsuper` has run, a
    /// failure to confirm where the message went is not an error but
    /// [`HoldOutcome::Unconfirmed`].
    pub fn release(&self, queue_id: &str) -> Result<HoldOutcome, HoldError> {
        if !valid_queue_id(queue_id) {
            return Err(HoldError::BadQueueId(queue_id.into()));
        }
        let euid = euid();
        if euid != 0 && self.privilege == Privilege::Root {
            return Err(HoldError::NotRoot { euid });
        }
        match self.queue_of(queue_id)? {
            None => return Ok(HoldOutcome::NotFound),
            Some(q) if q != "hold" => return Ok(HoldOutcome::NotHeld { queue: q }),
            Some(_) => {}
        }
        let ran = match self.run(self.postsuper_command(queue_id, euid != 0), false) {
            Ok(ran) => ran,
            // Killed midway, it may have moved the file.
            Err(e @ HoldError::Timeout { .. }) => {
                return Ok(HoldOutcome::Unconfirmed {
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(e),
        };
        debug_assert!(ran.status.success());
        // postsuper exits 0 whether or not it found the file ("Released from
        // hold: 1 message" on stderr when it did): the queue says what happened.
        let now = match self.queue_of(queue_id) {
            Ok(now) => now,
            Err(e) => {
                return Ok(HoldOutcome::Unconfirmed {
                    reason: format!("postsuper -H ran, but the queue could not be read: {e}"),
                });
            }
        };
        if now.as_deref() == Some("hold") {
            return Err(HoldError::StillHeld {
                queue_id: queue_id.into(),
                detail: if ran.stderr.is_empty() {
                    "(postsuper said nothing)".into()
                } else {
                    ran.stderr
                },
            });
        }
        let flush_failed = match now {
            Some(_) => self
                .run(self.postqueue_command(&["-i", queue_id]), false)
                .err()
                .map(|e| e.to_string()),
            None => None,
        };
        Ok(HoldOutcome::Released {
            queue: now,
            flush_failed,
        })
    }
}

/// Waits for `child` up to `limit`; kills it and returns `None` past that.
fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// The queue of `queue_id` in `postqueue -j` output (one JSON object per line).
fn find_in_listing(listing: &[u8], queue_id: &str) -> Option<String> {
    let mut reader = BufReader::new(listing);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader
            .by_ref()
            .take(MAX_JSON_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if line.len() > MAX_JSON_LINE {
            // Skip the rest of an overlong line.
            let mut rest = Vec::new();
            let _ = reader.read_until(b'\n', &mut rest);
            continue;
        }
        // A cheap test first: most lines are other messages.
        if memchr::memmem::find(&line, queue_id.as_bytes()).is_none() {
            continue;
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            queue_name: String,
            queue_id: String,
        }
        if let Ok(e) = serde_json::from_slice::<Entry>(&line)
            && e.queue_id == queue_id
        {
            return Some(e.queue_name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_are_checked_before_anything_runs() {
        for bad in [
            "",
            "ALL",
            "-",
            "ABCDE",
            "4Q2x 7B",
            "../x/../y",
            &"A".repeat(33),
        ] {
            assert!(!valid_queue_id(bad), "{bad:?}");
            let p = Postfix::default();
            assert!(matches!(p.release(bad), Err(HoldError::BadQueueId(_))));
        }
        for good in ["3F1A22C0B1", "4Q2x7B0cZ4z8FgH"] {
            assert!(valid_queue_id(good));
        }
    }

    #[test]
    fn the_listing_tells_where_a_message_is() {
        let listing = br#"{"queue_name": "deferred", "queue_id": "AAA1", "arrival_time": 1, "message_size": 10, "forced_expire": false, "sender": "a@b", "recipients": [{"address": "HOLD1@x"}]}
{"queue_name": "hold", "queue_id": "HOLD1", "arrival_time": 1, "message_size": 10, "sender": "", "recipients": []}
not json
"#;
        assert_eq!(find_in_listing(listing, "HOLD1").as_deref(), Some("hold"));
        assert_eq!(
            find_in_listing(listing, "AAA1").as_deref(),
            Some("deferred")
        );
        assert_eq!(find_in_listing(listing, "HOLD"), None);
        assert_eq!(find_in_listing(b"", "X"), None);
    }

    #[test]
    fn commands_name_the_instance_and_sudo_when_asked() {
        let p = Postfix {
            config_dir: Some("/tmp/pf/etc".into()),
            privilege: Privilege::Sudo,
            ..Postfix::default()
        };
        let c = p.postsuper_command("ABC", true);
        assert_eq!(c.get_program(), "/usr/bin/sudo");
        let args: Vec<_> = c.get_args().collect();
        assert_eq!(
            args,
            [
                "-n",
                "/usr/sbin/postsuper",
                "-c",
                "/tmp/pf/etc",
                "-H",
                "ABC"
            ]
        );
        let c = p.postsuper_command("ABC", false);
        assert_eq!(c.get_program(), "/usr/sbin/postsuper");
        let c = Postfix::default().postqueue_command(&["-i", "ABC"]);
        assert_eq!(c.get_args().collect::<Vec<_>>(), ["-i", "ABC"]);
    }

    #[test]
    fn a_slow_command_is_killed_at_the_limit() {
        let p = Postfix {
            timeout: Duration::from_millis(200),
            ..Postfix::default()
        };
        let mut c = Command::new("sleep");
        c.arg("10");
        let started = Instant::now();
        assert!(matches!(p.run(c, false), Err(HoldError::Timeout { .. })));
        assert!(started.elapsed() < Duration::from_secs(5));
        let mut c = Command::new("sh");
        c.args(["-c", "echo oops >&2; exit 3"]);
        let e = p.run(c, false).err().unwrap();
        assert!(
            matches!(&e, HoldError::Failed { stderr, .. } if stderr == "oops"),
            "{e}"
        );
    }
}
