//! Writes a [`Plan`] to the client: one flushed chunk per frame, with the configured pauses.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::protocols::http::ServerSession;

use crate::http::{self, Outcome};
use crate::render::{End, Frame, Plan};
use crate::replies;
use crate::state::Counters;

/// Gap between the two halves of a split event: long enough to land in separate reads.
const SPLIT_PAUSE: Duration = Duration::from_millis(5);

async fn write(s: &mut ServerSession, b: Bytes) -> bool {
    s.write_response_body(b, false).await.is_ok()
}

async fn finish(s: &mut ServerSession, end: End, counters: &Counters) -> Outcome {
    match end {
        End::Finish => Outcome::from_write(s.write_response_body(Bytes::new(), true).await.is_ok()),
        End::Disconnect => Outcome::Close,
        End::Reset => {
            abort_with_rst(s);
            Outcome::Close
        }
        End::Hang => {
            if replies::hang(s).await {
                Counters::bump(&counters.streams_aborted_by_client);
            }
            Outcome::Close
        }
    }
}

/// A zero linger time makes the close that follows send a RST instead of a FIN.
fn abort_with_rst(s: &ServerSession) {
    use std::os::fd::BorrowedFd;
    let Some(stream) = s.stream() else { return };
    // SAFETY: the session owns the descriptor and outlives this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.id()) };
    let _ = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO));
}

pub async fn stream_plan(
    s: &mut ServerSession,
    plan: &Plan,
    delay_ms: u64,
    gzip: bool,
    counters: &Counters,
) -> Outcome {
    if !http::start_sse(s, gzip).await {
        return Outcome::Close;
    }
    if gzip {
        // A compressed stream is only useful as a whole; timing faults do not apply.
        let chunks = plan.chunks();
        let mut all = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
        for c in &chunks {
            all.extend_from_slice(c);
        }
        if !write(s, http::gzip(&all)).await {
            return Outcome::Close;
        }
        return finish(s, plan.end, counters).await;
    }
    let delay = Duration::from_millis(delay_ms);
    let mut first = true;
    for frame in &plan.frames {
        let data = matches!(frame, Frame::Data(_) | Frame::Split(..));
        if data && !first && delay_ms > 0 {
            tokio::time::sleep(delay).await;
        }
        first &= !data;
        let ok = match frame {
            Frame::Data(b) => write(s, b.clone()).await,
            Frame::Split(b, at) => {
                let ok = write(s, b.slice(..*at)).await;
                tokio::time::sleep(SPLIT_PAUSE).await;
                ok && write(s, b.slice(*at..)).await
            }
            Frame::Pause(ms) => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                true
            }
        };
        if !ok {
            Counters::bump(&counters.streams_aborted_by_client);
            return Outcome::Close;
        }
    }
    finish(s, plan.end, counters).await
}
