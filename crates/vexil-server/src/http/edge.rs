//! The HTTP edge: how connections are accepted and how long and how much a client may take,
//! so that slow or idle clients are cut off and a flood of connections never exhausts the
//! process's file handles (which the store needs too).
//!
//! - [`serve`] accepts at most `max_connections` at once (more wait in the listen backlog) and
//!   serves each with hyper's HTTP/1.1 connection, shutting down gracefully on cancellation;
//! - [`EdgeIo`] wraps each socket with the two timers hyper does not keep the way SPEC 4 needs:
//!   the headers of a request must arrive within `header_read_timeout` of its first byte (or
//!   of the connection's opening), answered with a 408 in the API's error shape, and a
//!   connection may idle between requests for `keep_alive_timeout`. It also rewrites hyper's
//!   own bodiless rejections of requests it cannot parse (400, 414 and 431 past hyper's hard
//!   limits) into the error shape with the common headers;
//! - the request's own bounds (target and header sizes, the body's size and time) are checked
//!   by the service-wide [`crate::http::middleware::Edge`], before any route.

use crate::config::EdgeConfig;
use crate::http::error::ApiError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};

/// Serves `app` on `listener` until `shutdown`, then lets open connections finish their
/// requests (the caller bounds how long) and returns once they have.
pub async fn serve<S>(listener: TcpListener, app: S, limits: EdgeConfig, shutdown: CancellationToken)
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file handles or a connection reset before it was accepted: wait
                    // rather than spin, as the condition usually lasts a moment.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(
            TokioIo::new(EdgeIo::new(stream, limits)),
            TowerToHyperService::new(app.clone().map_request(move |request: hyper::Request<Incoming>| {
                let mut request = request.map(Body::new);
                // Only sign-in counts failures by client address; an extension on every
                // request would cost an allocation on the hot path.
                if request.uri().path() == crate::http::session::SESSION_PATH {
                    request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                }
                request
            })),
        );
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// Where a connection stands, as far as its bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request's headers; the `header_read_timeout` runs.
    Head,
    /// Headers complete: the body is read under the body deadline of [`crate::http::middleware::Edge`] and the handler
    /// runs, however long it takes.
    Request,
    /// A response was written: the `keep_alive_timeout` runs until the next request begins.
    Idle,
}

const END_OF_HEAD: &[u8; 4] = b"\r\n\r\n";

/// A socket with the edge's timers and the rewriting of hyper's bare rejections.
///
/// The timer is re-armed lazily, as resetting it on every request costs the timer wheel twice
/// per request: the phase's deadline is kept in `due`, the [`Sleep`] is moved only when it must
/// fire earlier than it would, and when it fires before `due` it is armed again for `due`. A
/// head that arrives whole in one read never starts the header timer.
pub struct EdgeIo {
    stream: TcpStream,
    limits: EdgeConfig,
    phase: Phase,
    /// When the current phase times out (none while a request is handled).
    due: Option<Instant>,
    /// Fires at or before `due`.
    timer: Pin<Box<Sleep>>,
    /// Whether `timer`, as armed now, has been polled, so it will wake the connection's task.
    timer_polled: bool,
    /// How many bytes of [`END_OF_HEAD`] the bytes read so far end with.
    matched: usize,
    /// A rejection being written in place of hyper's: its bytes, how many are written, and
    /// the length of hyper's that it stands for.
    replacement: Option<(Vec<u8>, usize, usize)>,
}

impl EdgeIo {
    fn new(stream: TcpStream, limits: EdgeConfig) -> EdgeIo {
        let due = Instant::now() + limits.header_read_timeout;
        let timer = Box::pin(tokio::time::sleep_until(due));
        EdgeIo {
            stream,
            limits,
            phase: Phase::Head,
            due: Some(due),
            timer,
            timer_polled: false,
            matched: 0,
            replacement: None,
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        let timeout = match phase {
            Phase::Head => self.limits.header_read_timeout,
            Phase::Idle => self.limits.keep_alive_timeout,
            Phase::Request => {
                self.due = None;
                return;
            }
        };
        let due = Instant::now() + timeout;
        self.due = Some(due);
        if self.timer.is_elapsed() || self.timer.deadline() > due {
            self.timer.as_mut().reset(due);
            self.timer_polled = false;
        }
    }

    /// Whether the current phase has run out of time; otherwise makes sure the timer will wake
    /// the connection's task by the phase's deadline.
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(due) = self.due else { return false };
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                self.timer_polled = true;
                return false;
            }
            if self.timer.deadline() >= due {
                return true;
            }
            // It fired for an earlier deadline than this phase's: wait on.
            self.timer.as_mut().reset(due);
        }
    }

    /// Follows the bytes of a request head until its blank line.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let starting = self.phase == Phase::Idle;
        if starting {
            self.matched = 0;
        } else if self.phase != Phase::Head {
            return;
        }
        // The blank line may straddle reads: a match begun in the last one goes on byte by
        // byte, the rest is searched at memchr's speed (most heads arrive in one read).
        let mut rest = bytes;
        while self.matched > 0 {
            let Some((&byte, tail)) = rest.split_first() else { return };
            self.matched =
                if byte == END_OF_HEAD[self.matched] { self.matched + 1 } else { usize::from(byte == END_OF_HEAD[0]) };
            rest = tail;
            if self.matched == END_OF_HEAD.len() {
                self.enter(Phase::Request);
                return;
            }
        }
        if holds_blank_line(rest) {
            self.enter(Phase::Request);
            return;
        }
        if starting {
            self.enter(Phase::Head);
        }
        self.matched = (1..END_OF_HEAD.len()).rev().find(|&n| rest.ends_with(&END_OF_HEAD[..n])).unwrap_or(0);
    }

    /// Writes the pending replacement; answers the length of what it stands for once done.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some((bytes, written, stands_for)) = &mut self.replacement else { return Poll::Ready(Ok(0)) };
        while *written < bytes.len() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let stands_for = *stands_for;
        self.replacement = None;
        self.answered(cx);
        Poll::Ready(Ok(stands_for))
    }

    /// Bytes of a response went out: the keep-alive timer starts (again). hyper polled the
    /// socket for reading before it wrote and will not poll again until woken, so the timer is
    /// polled here to wake the connection's task when it runs out.
    fn answered(&mut self, cx: &mut Context<'_>) {
        self.enter(Phase::Idle);
        if !self.timer_polled {
            let _ = self.timed_out(cx);
        }
    }
}

/// Whether `bytes` hold a blank line (`\r\n\r\n`). Whether a head is complete is whether one
/// arrived at all (a head holds none before its end), so the search starts from the end: it
/// then passes over only the body that came with the head, usually to the first line feed.
fn holds_blank_line(bytes: &[u8]) -> bool {
    memchr::memrchr_iter(b'\n', bytes).any(|at| at >= 3 && bytes[at - 3..=at] == *END_OF_HEAD)
}

impl AsyncRead for EdgeIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let this = &mut *self;
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.timed_out(cx) => {
                if self.phase == Phase::Head {
                    // Best effort: the answer is small enough for the socket's buffer, and a
                    // client too slow to send its headers may not read it anyway.
                    let _ = self.stream.try_write(&rejection(StatusCode::REQUEST_TIMEOUT));
                    // Closing a socket with unread input resets the connection, and a reset can
                    // overtake the answer on its way to the client: read what has arrived.
                    let mut unread = [0u8; 1024];
                    while matches!(self.stream.try_read(&mut unread), Ok(n) if n > 0) {}
                }
                // End of input: hyper closes the connection without answering again.
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for EdgeIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.replacement.is_none() && self.phase != Phase::Idle {
            if let Some(status) = hyper_rejection(buf) {
                self.replacement = Some((rejection(status), 0, buf.len()));
            }
        }
        if self.replacement.is_some() {
            return self.poll_replacement(cx);
        }
        let written = ready!(Pin::new(&mut self.stream).poll_write(cx, buf))?;
        self.answered(cx);
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A head is always the first slice, and hyper's rejections have no body.
        if self.replacement.is_some()
            || (self.phase != Phase::Idle && bufs.first().is_some_and(|head| hyper_rejection(head).is_some()))
        {
            return self.poll_write(cx, &bufs[0]);
        }
        let written = ready!(Pin::new(&mut self.stream).poll_write_vectored(cx, bufs))?;
        self.answered(cx);
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The status of a response head hyper wrote on its own, for a request it could not parse:
/// the service's responses all carry `x-request-id`, hyper's never do.
fn hyper_rejection(head: &[u8]) -> Option<StatusCode> {
    let status = match head.get(..13)? {
        b"HTTP/1.1 400 " => StatusCode::BAD_REQUEST,
        b"HTTP/1.1 414 " => StatusCode::URI_TOO_LONG,
        b"HTTP/1.1 431 " => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let has_request_id = head.windows(b"x-request-id".len()).any(|w| w.eq_ignore_ascii_case(b"x-request-id"));
    (!has_request_id).then_some(status)
}

/// The error of a rejection the edge makes itself.
pub fn edge_error(status: StatusCode) -> ApiError {
    let (code, message) = match status {
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request did not arrive within the time allowed"),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "the request target is longer than the limit"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            ("headers_too_large", "the request headers are larger than the limit, or too many")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body exceeds the size limit"),
        _ => ("invalid_request", "the request is not valid HTTP/1.1"),
    };
    ApiError::new(status, code, message)
}

/// A whole HTTP/1.1 response for a rejection made below the service: the API's error shape
/// and the headers every response carries, then the connection closes.
fn rejection(status: StatusCode) -> Vec<u8> {
    let error = edge_error(status);
    let body = serde_json::to_vec(&serde_json::json!({"error": error.body()})).expect("error bodies serialise");
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {}\r\n\
         x-content-type-options: nosniff\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        uuid::Uuid::new_v4(),
    );
    [head.into_bytes(), body].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_line_is_found_wherever_it_is() {
        let head = b"POST /v1/evaluate HTTP/1.1\r\nHost: x\r\n\r\n{\"user_id\":\"u\\n\"}\n\r\n";
        for end in 0..=head.len() {
            for start in 0..=end {
                let bytes = &head[start..end];
                let expected = bytes.windows(END_OF_HEAD.len()).any(|w| w == END_OF_HEAD);
                assert_eq!(holds_blank_line(bytes), expected, "{:?}", String::from_utf8_lossy(bytes));
            }
        }
    }

    #[test]
    fn only_bodiless_heads_without_a_request_id_are_hyper_rejections() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(hyper_rejection(hyper), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nX-Request-Id: 1\r\n\r\n";
        assert_eq!(hyper_rejection(ours), None);
        assert_eq!(hyper_rejection(b"HTTP/1.1 200 OK\r\n\r\n"), None);
    }

    #[test]
    fn a_rejection_is_a_whole_response_in_the_error_shape() {
        let text = String::from_utf8(rejection(StatusCode::REQUEST_TIMEOUT)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "request_timeout");
    }
}
