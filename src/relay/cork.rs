//! Sends the stream's header and its first chunk in one TCP segment.
//!
//! Pingora's HTTP/1 server flushes a header without `Content-Length` at once, so when the
//! status is only decided at the first output (the default `STREAM_COMMIT=first_output`), the
//! header and the first chunk would leave as two sends, one after the other, and wake the
//! client twice at the moment it waits for most. `TCP_CORK` holds the header in the kernel
//! until the chunk is queued behind it. Only plain TCP connections are corked (TLS writes its
//! own records, and Pingora reaches the socket only through its l4 stream type).

use std::os::fd::{AsRawFd, BorrowedFd};

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::proxy::Session;

/// Sets or clears `TCP_CORK` on the client's socket; `false` when the connection is not a
/// plain TCP stream or the option was refused, in which case nothing changed.
pub(crate) fn set(session: &Session, on: bool) -> bool {
    let Some(stream) = session.downstream_session.stream() else {
        return false;
    };
    let Some(l4) = stream.as_any().downcast_ref::<L4Stream>() else {
        return false;
    };
    let fd = l4.as_raw_fd();
    if fd < 0 {
        // A virtual stream has no descriptor.
        return false;
    }
    // SAFETY: `fd` belongs to `l4`, which is borrowed from the session for the whole life of
    // `borrowed`; the descriptor stays open until the session's stream is dropped.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    socket2::SockRef::from(&borrowed).set_tcp_cork(on).is_ok()
}
