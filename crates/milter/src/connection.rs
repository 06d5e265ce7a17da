//! The connection driver: one MTA connection, read, handed packet by packet to its
//! [`Session`], decided and answered, until the MTA quits, the connection fails, the
//! service drains (`shutdown`) or its slot is given to a new connection
//! (module `slots`).
//!
//! Reads are bounded by deadlines, not per read, so a byte now and then keeps
//! nothing alive: the option negotiation must end within `negotiate_timeout_secs` of
//! the accept, a packet within `packet_timeout_secs` of its first byte, a message
//! within `message_timeout_secs` of its first command, and a negotiated connection
//! may be quiet between packets for `read_timeout_secs`. Each write has
//! `write_timeout_secs`.

use super::metrics::ErrorKind;
use super::policy::{Decision, Outcome};
use super::protocol::{self, Command, ProtocolError};
use super::service::Service;
use super::session::{Session, Step};
use super::slots::{Slot, SlotGuard, State};
use super::throttle::Shared;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Read-buffer capacity a connection keeps while no message is in progress
/// (16 KiB); with the message buffer's `session::IDLE_MESSAGE_CAPACITY` an idle
/// open connection holds at most 64 KiB of buffers.
pub(crate) const IDLE_READ_CAPACITY: usize = 16 * 1024;

/// Packets longer than this (the MTA's 64 KiB body chunk with its five bytes of
/// framing) are read into room drawn from the buffer budget (`max_buffered_bytes`),
/// so connections each holding an unfinished large packet cannot take memory
/// past the budget; a connection whose packet does not fit is closed (the MTA
/// applies its default action). Smaller packets are read without drawing.
pub(crate) const LARGE_PACKET: usize = 64 * 1024 + 5;

/// Room read beyond the packet being received, for a few more small ones.
const READ_AHEAD: usize = 8192;

/// Capacity the reply buffer keeps between writes.
const IDLE_WRITE_CAPACITY: usize = 4096;

/// Registers an accepted socket with the runtime this runs on, and serves it.
pub(crate) async fn serve(
    svc: Arc<Service>,
    conn: Conn,
    peer: String,
    shutdown: watch::Receiver<bool>,
    slot: SlotGuard,
    accepted: Instant,
) {
    let c = Accepted {
        peer,
        slot,
        accepted,
    };
    let unusable = match conn {
        Conn::Tcp(s) => match tokio::net::TcpStream::from_std(s) {
            Ok(s) => return connection(svc, s, c, shutdown).await,
            Err(e) => e,
        },
        Conn::Unix(s) => match tokio::net::UnixStream::from_std(s) {
            Ok(s) => return connection(svc, s, c, shutdown).await,
            Err(e) => e,
        },
    };
    let peer = c.peer;
    if let Some(n) = svc.conn_logs().register.tick() {
        warn!(peer = %peer, error = %unusable, since_last = n, "cannot register a connection");
    }
}

/// An accepted connection on its way to the network runtime that will serve it.
pub(crate) enum Conn {
    /// A TCP connection.
    Tcp(std::net::TcpStream),
    /// A Unix-domain socket connection.
    Unix(std::os::unix::net::UnixStream),
}

/// An accepted connection's peer, slot and time of accept.
struct Accepted {
    peer: String,
    slot: SlotGuard,
    accepted: Instant,
}

/// Why a connection ended early.
#[derive(Debug)]
enum ConnError {
    Protocol(ProtocolError),
    Timeout(&'static str),
    Disconnect,
    Io(std::io::Error),
    /// Its slot was given to a new connection (counted by the accepting side).
    Evicted,
    /// A packet of this many bytes does not fit the buffer budget.
    Busy(usize),
}

impl From<ProtocolError> for ConnError {
    fn from(e: ProtocolError) -> Self {
        ConnError::Protocol(e)
    }
}

/// The warnings a connection may end with, each written at most once every
/// `throttle::LOG_INTERVAL` across all connections with the count since the last
/// line (`since_last`), so a reconnect storm writes a few lines, not megabytes.
#[derive(Debug, Default)]
pub(crate) struct ConnLogs {
    protocol: Shared,
    timeout: Shared,
    disconnect: Shared,
    io: Shared,
    busy: Shared,
    register: Shared,
}

/// Serves one MTA connection until it quits, fails or the service drains.
async fn connection<S>(svc: Arc<Service>, stream: S, c: Accepted, shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let peer = &c.peer;
    svc.metrics().connection_opened();
    debug!(peer = %peer, "connection");
    let logs = svc.conn_logs();
    match drive(&svc, stream, shutdown, c.slot.slot(), c.accepted).await {
        Ok(()) => debug!(peer = %peer, "connection closed"),
        Err(ConnError::Protocol(e)) => {
            svc.metrics().error(ErrorKind::Protocol);
            if let Some(n) = logs.protocol.tick() {
                warn!(peer = %peer, error = %e, since_last = n, "dropping connection: protocol error");
            }
        }
        Err(ConnError::Timeout(what)) => {
            svc.metrics().error(ErrorKind::Timeout);
            if let Some(n) = logs.timeout.tick() {
                warn!(peer = %peer, since_last = n, "dropping connection: {what} timed out");
            }
        }
        Err(ConnError::Disconnect) => {
            svc.metrics().error(ErrorKind::Disconnect);
            if let Some(n) = logs.disconnect.tick() {
                info!(peer = %peer, since_last = n, "peer disconnected in the middle of a message");
            }
        }
        Err(ConnError::Io(e)) => {
            svc.metrics().error(ErrorKind::Io);
            if let Some(n) = logs.io.tick() {
                warn!(peer = %peer, error = %e, since_last = n, "dropping connection: I/O error");
            }
        }
        Err(ConnError::Busy(len)) => {
            svc.metrics().error(ErrorKind::Io);
            if let Some(n) = logs.busy.tick() {
                warn!(
                    peer = %peer,
                    packet = len,
                    since_last = n,
                    "dropping connection: its packet does not fit max_buffered_bytes"
                );
            }
        }
        Err(ConnError::Evicted) => {
            debug!(peer = %peer, "connection closed: its slot went to a new connection");
        }
    }
    svc.metrics().connection_closed();
}

/// `t` + `d`, or about 30 years on when a configured timeout is too large to add.
fn after(t: Instant, d: std::time::Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(std::time::Duration::from_secs(30 * 365 * 86_400)))
        .unwrap_or(t)
}

/// Reads packets, feeds them to the session and writes its answers, reads within
/// their deadlines and each write within its timeout; stops after the message in
/// progress on shutdown, and at once when `slot` is taken away.
async fn drive<S>(
    svc: &Arc<Service>,
    mut stream: S,
    mut shutdown: watch::Receiver<bool>,
    slot: &Slot,
    accepted: Instant,
) -> Result<(), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session::with_budget(
        Arc::clone(&svc.current().settings),
        Arc::clone(svc.budget()),
    );
    let mut buf: Vec<u8> = Vec::with_capacity(IDLE_READ_CAPACITY);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    // The budget drawn for a large packet being received.
    let mut packet_room = svc.budget().reservation();
    // When data last arrived, when the packet in `buf` started arriving, when the
    // message in progress started.
    let mut last_read = accepted;
    let mut packet_start: Option<Instant> = None;
    let mut message_start: Option<Instant> = None;
    loop {
        let max_packet = session.settings().milter.max_packet_size;
        let mut used = 0;
        let mut close = false;
        while let Some((frame, n)) = protocol::split_frame(&buf[used..], max_packet)? {
            let cmd = Command::parse(frame)?;
            if matches!(cmd, Command::Mail(_)) {
                session.refresh(Arc::clone(&svc.current().settings));
            }
            let step = session.handle(cmd)?;
            used += n;
            match step {
                Step::Nothing => {}
                Step::Reply(r) => r.encode(&mut out),
                Step::Oversize {
                    response,
                    size,
                    envelope,
                } => {
                    let d = Decision::oversize(session.settings());
                    svc.record(&d, &envelope, size, &session.client());
                    response.encode(&mut out);
                }
                Step::Busy {
                    response,
                    size,
                    envelope,
                } => {
                    svc.record(&Decision::busy(), &envelope, size, &session.client());
                    response.encode(&mut out);
                }
                Step::Scan(job) => {
                    let envelope = job.envelope.clone();
                    let size = job.raw.len();
                    let generation = svc.current();
                    let client = session.client();
                    let can_quarantine = session
                        .negotiated()
                        .is_some_and(|n| n.can(protocol::actions::QUARANTINE));
                    let d = svc.decide(generation, job, &client, can_quarantine).await;
                    svc.record(&d, &envelope, size, &client);
                    if d.outcome == Outcome::Quarantine && d.kept.is_none() && !can_quarantine {
                        warn!(
                            queue_id = envelope.queue_id.as_deref().unwrap_or("-"),
                            "the MTA did not grant QUARANTINE: delivered with headers instead"
                        );
                    }
                    for r in session.finish(&d) {
                        r.encode(&mut out);
                    }
                }
                Step::Close => {
                    close = true;
                    break;
                }
            }
        }
        if used > 0 {
            buf.drain(..used);
            // What is left was started by the last read.
            packet_start = None;
            // Give back the room of a large packet, and between messages all but
            // a small buffer.
            let keep = if session.is_idle() {
                IDLE_READ_CAPACITY
            } else {
                LARGE_PACKET + READ_AHEAD
            };
            if buf.capacity() > keep {
                buf.shrink_to(keep);
            }
        }
        if buf.is_empty() {
            packet_start = None;
        } else if packet_start.is_none() {
            packet_start = Some(last_read);
        }
        if session.is_idle() {
            message_start = None;
        } else if message_start.is_none() {
            message_start = Some(last_read);
        }
        if !out.is_empty() {
            let write_timeout = session.settings().write_timeout();
            match tokio::time::timeout(write_timeout, stream.write_all(&out)).await {
                Ok(Ok(())) => {
                    out.clear();
                    out.shrink_to(IDLE_WRITE_CAPACITY);
                }
                Ok(Err(e)) => return Err(ConnError::Io(e)),
                Err(_) => return Err(ConnError::Timeout("write")),
            }
        }
        if close || (*shutdown.borrow() && session.is_idle()) {
            return Ok(());
        }
        // Room for the rest of the packet being received (its length is known and
        // already checked), or for a few more small ones.
        let announced = protocol::announced_len(&buf, max_packet)?.map(|len| 4 + len);
        let missing = announced.map_or(0, |total| total.saturating_sub(buf.len()));
        // A large packet is read into room drawn from the budget.
        let draw = announced.filter(|&total| total > LARGE_PACKET).unwrap_or(0);
        if draw != packet_room.held() {
            packet_room.release();
            if draw > 0 && !packet_room.grow(draw) {
                return Err(ConnError::Busy(draw));
            }
        }
        buf.reserve(missing.max(READ_AHEAD));
        let idle = session.is_idle();
        let st = session.settings();
        let (state, since, deadline, what) = if session.negotiated().is_none() {
            let d = after(accepted, st.negotiate_timeout());
            (State::Unnegotiated, accepted, d, "negotiation")
        } else {
            let mut deadline = (after(last_read, st.read_timeout()), "read");
            if let Some(m) = message_start {
                deadline = deadline.min((after(m, st.message_timeout()), "message"));
            }
            match packet_start {
                Some(p) => {
                    deadline = deadline.min((after(p, st.packet_timeout()), "packet"));
                    (State::MidPacket, p, deadline.0, deadline.1)
                }
                None if idle => (State::Idle, last_read, deadline.0, deadline.1),
                None => (State::Busy, last_read, deadline.0, deadline.1),
            }
        };
        if !slot.set(state, since) {
            return Err(ConnError::Evicted);
        }
        let n = tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), stream.read_buf(&mut buf)) => match r {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(ConnError::Io(e)),
                Err(_) => return Err(ConnError::Timeout(what)),
            },
            _ = slot.evicted() => return Err(ConnError::Evicted),
            _ = shutdown.changed(), if idle => return Ok(()),
        };
        last_read = Instant::now();
        if !slot.busy() {
            return Err(ConnError::Evicted);
        }
        if n == 0 {
            return if buf.is_empty() && session.is_idle() {
                Ok(())
            } else {
                Err(ConnError::Disconnect)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_huge_configured_timeout_is_a_far_deadline_not_a_panic() {
        let now = Instant::now();
        assert!(after(now, Duration::from_secs(u64::MAX)) > now + Duration::from_secs(86_400));
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }
}
