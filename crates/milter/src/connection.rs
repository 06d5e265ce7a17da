//! The connection driver: one MTA connection, read, handed packet by packet to its
//! [`Session`], decided and answered, with a timeout on every read and write, until
//! the MTA quits, the connection fails or the service drains (`shutdown`).

use super::metrics::ErrorKind;
use super::policy::{Decision, Outcome};
use super::protocol::{self, Command, ProtocolError};
use super::service::Service;
use super::session::{Session, Step};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Registers an accepted socket with the runtime this runs on, and serves it.
pub(crate) async fn serve(
    svc: Arc<Service>,
    conn: Conn,
    peer: String,
    shutdown: watch::Receiver<bool>,
) {
    let unusable = match conn {
        Conn::Tcp(s) => match tokio::net::TcpStream::from_std(s) {
            Ok(s) => return connection(svc, s, peer, shutdown).await,
            Err(e) => e,
        },
        Conn::Unix(s) => match tokio::net::UnixStream::from_std(s) {
            Ok(s) => return connection(svc, s, peer, shutdown).await,
            Err(e) => e,
        },
    };
    warn!(peer = %peer, error = %unusable, "cannot register a connection");
}

/// An accepted connection on its way to the network runtime that will serve it.
pub(crate) enum Conn {
    /// A TCP connection.
    Tcp(std::net::TcpStream),
    /// A Unix-domain socket connection.
    Unix(std::os::unix::net::UnixStream),
}

/// Why a connection ended early.
#[derive(Debug)]
enum ConnError {
    Protocol(ProtocolError),
    Timeout(&'static str),
    Disconnect,
    Io(std::io::Error),
}

impl From<ProtocolError> for ConnError {
    fn from(e: ProtocolError) -> Self {
        ConnError::Protocol(e)
    }
}

/// Serves one MTA connection until it quits, fails or the service drains.
async fn connection<S>(svc: Arc<Service>, stream: S, peer: String, shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    svc.metrics().connection_opened();
    debug!(peer = %peer, "connection");
    match drive(&svc, stream, shutdown).await {
        Ok(()) => debug!(peer = %peer, "connection closed"),
        Err(ConnError::Protocol(e)) => {
            svc.metrics().error(ErrorKind::Protocol);
            warn!(peer = %peer, error = %e, "dropping connection: protocol error");
        }
        Err(ConnError::Timeout(what)) => {
            svc.metrics().error(ErrorKind::Timeout);
            warn!(peer = %peer, "dropping connection: {what} timed out");
        }
        Err(ConnError::Disconnect) => {
            svc.metrics().error(ErrorKind::Disconnect);
            info!(peer = %peer, "peer disconnected in the middle of a message");
        }
        Err(ConnError::Io(e)) => {
            svc.metrics().error(ErrorKind::Io);
            warn!(peer = %peer, error = %e, "dropping connection: I/O error");
        }
    }
    svc.metrics().connection_closed();
}

/// Reads packets, feeds them to the session and writes its answers, each read and
/// write within its timeout; stops after the message in progress on shutdown.
async fn drive<S>(
    svc: &Arc<Service>,
    mut stream: S,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session::with_budget(
        Arc::clone(&svc.current().settings),
        Arc::clone(svc.budget()),
    );
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
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
                    svc.record(&d, &envelope, size);
                    response.encode(&mut out);
                }
                Step::Busy {
                    response,
                    size,
                    envelope,
                } => {
                    svc.record(&Decision::busy(), &envelope, size);
                    response.encode(&mut out);
                }
                Step::Scan(job) => {
                    let envelope = job.envelope.clone();
                    let size = job.raw.len();
                    let generation = svc.current();
                    let d = svc.decide(generation, job).await;
                    svc.record(&d, &envelope, size);
                    if d.outcome == Outcome::Quarantine
                        && !session
                            .negotiated()
                            .is_some_and(|n| n.can(protocol::actions::QUARANTINE))
                    {
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
        }
        if !out.is_empty() {
            let write_timeout = session.settings().write_timeout();
            match tokio::time::timeout(write_timeout, stream.write_all(&out)).await {
                Ok(Ok(())) => out.clear(),
                Ok(Err(e)) => return Err(ConnError::Io(e)),
                Err(_) => return Err(ConnError::Timeout("write")),
            }
        }
        if close || (*shutdown.borrow() && session.is_idle()) {
            return Ok(());
        }
        // Room for the rest of the packet being received (its length is known and
        // already checked), or for a few more small ones.
        let missing = match protocol::announced_len(&buf, max_packet)? {
            Some(len) => (4 + len).saturating_sub(buf.len()),
            None => 0,
        };
        buf.reserve(missing.max(8192));
        let read_timeout = session.settings().read_timeout();
        let idle = session.is_idle();
        let n = tokio::select! {
            r = tokio::time::timeout(read_timeout, stream.read_buf(&mut buf)) => match r {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(ConnError::Io(e)),
                Err(_) => return Err(ConnError::Timeout("read")),
            },
            _ = shutdown.changed(), if idle => return Ok(()),
        };
        if n == 0 {
            return if buf.is_empty() && session.is_idle() {
                Ok(())
            } else {
                Err(ConnError::Disconnect)
            };
        }
    }
}
