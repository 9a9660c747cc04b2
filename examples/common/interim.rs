//! 1xx interim responses (RFC 9110 §15.2, e.g. `103 Early Hints`) ahead of
//! a final response on an HTTP/1.1 connection served by hyper.
//!
//! hyper's server gives a service no way to send one (it answers a 1xx
//! `Response` with a 500), so this wraps the connection's socket instead:
//! a handler hands an interim response to [`Interim::send`], and it is
//! written to the socket as soon as nothing of an earlier response is
//! still on its way out — never inside one. [`Interim::around`] keeps the
//! handler's final response back until its interim responses are out.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};

use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection's socket, for hyper to serve.
pub struct InterimStream(Arc<Mutex<Shared>>);

/// Sends interim responses on one connection (a request extension).
#[derive(Clone)]
pub struct Interim(Arc<Mutex<Shared>>);

struct Shared {
    tcp: TcpStream,
    /// Interim responses waiting for an earlier response to be flushed.
    held: Vec<u8>,
    /// Bytes that go out before anything else hyper writes.
    queued: Vec<u8>,
    /// Everything hyper wrote has been flushed: the socket is between
    /// responses.
    idle: bool,
    /// The handler waiting for its interim responses to go out.
    waiting: Option<Waker>,
}

/// Splits `tcp` into the socket hyper serves and the handle that sends
/// interim responses on it.
pub fn connection(tcp: TcpStream) -> (InterimStream, Interim) {
    let shared = Arc::new(Mutex::new(Shared {
        tcp,
        held: Vec::new(),
        queued: Vec::new(),
        idle: true,
        waiting: None,
    }));
    (InterimStream(shared.clone()), Interim(shared))
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Writes the queued interim bytes; ready when none are left.
    fn write_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.queued.is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.queued))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.queued.drain(..n);
        }
        Poll::Ready(Ok(()))
    }

    fn wake_waiting(&mut self) {
        if let Some(waker) = self.waiting.take() {
            waker.wake();
        }
    }
}

impl Interim {
    /// Sends an interim response with `status` (1xx) and `headers`.
    pub fn send(&self, status: StatusCode, headers: &HeaderMap) {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .into_bytes();
        for (name, value) in headers {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let mut shared = lock(&self.0);
        shared.held.extend_from_slice(&head);
        shared.wake_waiting();
    }

    /// Runs `handler`, writing the interim responses it sends meanwhile;
    /// its output is returned once they are all out.
    pub async fn around<F: Future>(&self, handler: F) -> F::Output {
        let mut handler = pin!(handler);
        let mut output = None;
        std::future::poll_fn(|cx| {
            let out = self.poll_out(cx);
            if output.is_none() {
                if let Poll::Ready(value) = handler.as_mut().poll(cx) {
                    output = Some(value);
                }
            }
            match (out, output.is_some()) {
                (Poll::Ready(()), true) => Poll::Ready(output.take().expect("set")),
                _ => Poll::Pending,
            }
        })
        .await
    }

    /// Ready when no interim response of this handler is left to write.
    fn poll_out(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut shared = lock(&self.0);
        // Woken by the next `send`, or when an earlier response is out.
        shared.waiting = Some(cx.waker().clone());
        if shared.idle {
            let held = std::mem::take(&mut shared.held);
            shared.queued.extend_from_slice(&held);
            if let Poll::Ready(written) = shared.write_queued(cx) {
                // A broken socket: hyper finds out on its next write.
                if written.is_err() {
                    shared.queued.clear();
                }
                return Poll::Ready(());
            }
        } else if shared.held.is_empty() {
            // Queued, if anything: hyper writes it before its next bytes.
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl AsyncRead for InterimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for InterimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut shared = lock(&self.0);
        ready!(shared.write_queued(cx))?;
        shared.idle = false;
        Pin::new(&mut shared.tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut shared = lock(&self.0);
        loop {
            ready!(shared.write_queued(cx))?;
            ready!(Pin::new(&mut shared.tcp).poll_flush(cx))?;
            if shared.held.is_empty() {
                shared.idle = true;
                shared.wake_waiting();
                return Poll::Ready(Ok(()));
            }
            // The earlier response is out: the held interim responses follow.
            let held = std::mem::take(&mut shared.held);
            shared.queued.extend_from_slice(&held);
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).tcp).poll_shutdown(cx)
    }
}
