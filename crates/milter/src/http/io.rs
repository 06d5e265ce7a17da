//! A connection whose writes have a time limit: a client that stops taking an
//! answer's bytes (its receive window full) fails the write after
//! `[http] write_timeout_secs` instead of holding the connection and its slot
//! forever. Reads are bounded elsewhere (header and request time limits).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `T` with a limit on how long a write may stay blocked.
pub(crate) struct TimedWrites<T> {
    inner: T,
    limit: Duration,
    /// Started when a write first blocks; cleared when one makes progress.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> TimedWrites<T> {
    pub(crate) fn new(inner: T, limit: Duration) -> TimedWrites<T> {
        TimedWrites {
            inner,
            limit,
            deadline: None,
        }
    }

    /// After a write-side poll: Ready clears the deadline; Pending starts it, and
    /// fails once it has passed.
    fn check<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if r.is_ready() {
            self.deadline = None;
            return r;
        }
        let limit = self.limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not take the answer in time",
        )))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedWrites<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedWrites<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_blocked_write_fails_after_the_limit_and_a_taken_one_does_not() {
        // A pipe of 64 bytes that nobody reads.
        let (a, mut b) = tokio::io::duplex(64);
        let mut w = TimedWrites::new(a, Duration::from_millis(100));
        w.write_all(&[0u8; 64]).await.unwrap();
        let t = std::time::Instant::now();
        let e = w.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(100));
        // Drained in time: no error.
        let (a, mut b2) = tokio::io::duplex(64);
        let mut w = TimedWrites::new(a, Duration::from_millis(500));
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b2, &mut sink)
                .await
                .map(|_| sink.len())
        });
        w.write_all(&[1u8; 1000]).await.unwrap();
        w.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), 1000);
        drop(b.write_all(b"x").await);
    }
}
