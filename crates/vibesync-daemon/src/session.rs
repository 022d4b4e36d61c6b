//! One client connection: handshake, then a read loop that handles requests one at a time,
//! in order (while one waits, the next frame is read and parsed: [`read_ahead`]), and a
//! writer task fed by a bounded queue. Nothing a client sends can take the daemon down
//! or reach another session: every error is answered on this connection only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::{debug, info, info_span, warn, Instrument};
use vibesync_protocol::frame::looks_like_http;
use vibesync_protocol::message::{parse_inbound, Hello, MessageError};
use vibesync_protocol::validate;
use vibesync_protocol::{
    ErrorCode, Frame, FrameCodec, FrameError, Inbound, Outbound, PRE_AUTH_MAX_FRAME_BYTES, PROTOCOL_VERSION,
};

use crate::admission::Ticket;
use crate::core::{Daemon, SessionInfo};
use crate::outbox::{Outbox, SendError, SessionHandle};
use crate::ratelimit::Overflow;
use vibesync_engine::governance::Bucket;
use vibesync_protocol::message::ItemResult;
use vibesync_protocol::ItemStatus;

/// How long a connection evicted from the queue for `hello` still waits for its first frame
/// to arrive whole before it is told `TOO_MANY_CONNECTIONS` (docs/PROTOCOL.md §3).
const EVICTION_GRACE: Duration = Duration::from_millis(100);

/// Frames whose JSON is larger than this are parsed off the async workers.
const BIG_FRAME_BYTES: usize = 256 * 1024;

pub async fn serve_connection(
    daemon: Arc<Daemon>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    ticket: Ticket,
) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let max_frame = daemon.config().server.max_frame_bytes;
    // Before hello: a small frame limit (docs/PROTOCOL.md §3), raised once authenticated.
    let mut reader = FramedRead::with_capacity(rd, FrameCodec::new(PRE_AUTH_MAX_FRAME_BYTES), 1024);
    let mut writer = FramedWrite::new(wr, FrameCodec::new(max_frame));

    // Handshake, with the writer still inline (nothing else can send to us yet). The
    // deadline covers the whole first frame, however slowly its bytes arrive.
    let timeout = Duration::from_secs(daemon.config().server.handshake_timeout_secs);
    // Biased: a hello already received wins over an eviction that came meanwhile (an editor
    // sends it at once, so it gets in even while hostile sockets churn the quota).
    let first = tokio::select! {
        biased;
        r = tokio::time::timeout(timeout, reader.next()) => r,
        _ = ticket.evicted.notified() => {
            // A `hello` the client sent may not have been read yet: on a loaded machine the
            // runtime can learn that the socket is readable after the eviction. It gets
            // `EVICTION_GRACE` to arrive whole (docs/PROTOCOL.md §3, "Before `hello`").
            match tokio::time::timeout(EVICTION_GRACE, reader.next()).await {
                Ok(Some(Ok(frame))) => Ok(Some(Ok(frame))),
                _ => {
                    debug!(%peer, "connection waiting for hello evicted to admit a newer one");
                    let msg = "too many connections are waiting for `hello` and this one was the oldest; send `hello` right after connecting, then reconnect";
                    let _ = tokio::time::timeout(Duration::from_secs(1), send_error_and_close(&mut writer, ErrorCode::TooManyConnections, msg, None)).await;
                    return;
                }
            }
        }
        _ = shutdown.changed() => return,
    };
    let hello = match first {
        Err(_) => {
            let _ = send_error_and_close(
                &mut writer,
                ErrorCode::HandshakeTimeout,
                format!("no `hello` within {} s of connecting; send hello first", timeout.as_secs()),
                None,
            )
            .await;
            return;
        }
        Ok(None) => return,
        Ok(Some(Err(e))) => {
            if looks_like_http(reader.read_buffer()) {
                debug!(%peer, "HTTP request refused");
                return; // plain close: never talk to browsers
            }
            frame_error(&mut writer, e).await;
            return;
        }
        Ok(Some(Ok(frame))) => match parse_inbound(&frame.json) {
            // Only a `change` may carry an attachment (docs/PROTOCOL.md §1).
            Ok(Inbound::Hello(_)) if !frame.attachment.is_empty() => {
                let msg = format!(
                    "attachment: `hello` carries no attachment, got {} bytes; send it with an empty attachment",
                    frame.attachment.len()
                );
                let _ = send_error_and_close(&mut writer, ErrorCode::BadMessage, msg, None).await;
                return;
            }
            Ok(Inbound::Hello(h)) => h,
            Ok(other) => {
                let _ = send_error_and_close(
                    &mut writer,
                    ErrorCode::NotAuthenticated,
                    format!("first message was `{}`; the first frame must be `hello`", other.type_name()),
                    other.request_id().map(str::to_string),
                )
                .await;
                return;
            }
            // A first frame of an unknown `type` is not a `hello` either (docs/PROTOCOL.md §3).
            Err(e) if e.code == ErrorCode::UnknownType => {
                let msg = format!("{}; the first frame must be `hello`", e.message);
                let _ = send_error_and_close(&mut writer, ErrorCode::NotAuthenticated, msg, e.request_id).await;
                return;
            }
            Err(e) => {
                let _ = send_error_and_close(&mut writer, e.code, e.message, e.request_id).await;
                return;
            }
        },
    };
    let editor = match check_hello(&daemon, &hello) {
        Ok(editor) => editor,
        Err((code, msg)) => {
            warn!(%peer, code = code.as_str(), editor = %hello.editor, project_id = ?hello.project_id, "handshake refused");
            let _ = send_error_and_close(&mut writer, code, msg, None).await;
            return;
        }
    };
    let project_id = match &hello.project_id {
        Some(p) => p.clone(),
        None => daemon.assign_project(editor),
    };
    drop(ticket);
    let max_sessions = daemon.config().server.max_connections;
    if daemon.session_count() >= max_sessions {
        warn!(%peer, max_sessions, "connection refused: too many sessions");
        let msg = format!(
            "the daemon already serves {max_sessions} sessions (server.max_connections); close one and reconnect"
        );
        let _ = send_error_and_close(&mut writer, ErrorCode::TooManyConnections, msg, None).await;
        return;
    }
    reader.decoder_mut().set_max_frame_bytes(max_frame);

    let info = SessionInfo::new(&hello, editor, project_id.clone(), peer);
    let session_id = info.session_id.clone();
    let span = info_span!("session", session_id = %session_id, editor = %hello.editor, project_id = %project_id);
    let kick = Arc::new(tokio::sync::Notify::new());
    let restarted = Arc::new(tokio::sync::Notify::new());
    // From here on frames go through the outbox: written at once by their sender when
    // nothing waits before them, else by the writer task (crate::outbox). Until `welcome`
    // is written everything others send waits in the queue behind it.
    let server = &daemon.config().server;
    let (tx, writer_loop) =
        Outbox::new((server.send_queue_frames, server.send_queue_bytes), writer.into_inner(), max_frame);
    daemon
        .add_session(info.clone(), SessionHandle { tx: tx.clone(), kick: kick.clone(), restarted: restarted.clone() });
    let limits = daemon.config().limits.clone();
    let clock = std::time::Instant::now();
    let mut msg_bucket = Bucket::new(limits.messages_per_sec, limits.messages_burst, 0);
    let mut byte_bucket = Bucket::new(limits.bytes_per_sec, limits.bytes_burst, 0);
    info!(parent: &span, %peer, client_id = %hello.client_id, assigned = hello.project_id.is_none(), "session opened");

    // One read: the flag and its reason change together (`Daemon::set_safe_mode`).
    let safe_mode_reason = daemon.safe_mode_reason();
    let welcome = Outbound::Welcome {
        session_id: session_id.clone(),
        daemon_version: crate::DAEMON_VERSION.to_string(),
        protocol: PROTOCOL_VERSION,
        seq: daemon.last_seq(),
        safe_mode: safe_mode_reason.is_some(),
        safe_mode_reason,
        project_id,
    };
    if tx.send_first(welcome.to_frame()).await.is_err() {
        daemon.remove_session(&session_id);
        return;
    }
    daemon.session_ready(&info);

    let writer_task = tokio::spawn(writer_loop.run().instrument(span.clone()));

    // Over-budget coalescible changes, merged until the budget allows (crate::ratelimit).
    let mut overflow = Overflow::default();
    let retry = Duration::from_micros((1e6 / limits.messages_per_sec.max(1e-3)).clamp(1000.0, 1e6) as u64);
    // A frame read (and parsed) while the request before it was handled (`read_ahead`).
    let mut ahead: Option<Ahead> = None;
    let patience = Duration::from_millis(limits.slow_consumer_ms);
    let mut gave_up = false;
    async {
        loop {
            let next = if let Some(a) = ahead.take() {
                a.resolve().await
            } else {
                tokio::select! {
                    n = reader.next() => match n {
                        None => None,
                        Some(Err(e)) => Some(Err(e)),
                        Some(Ok(frame)) => Ahead::parse(frame).resolve().await,
                    },
                    _ = tokio::time::sleep(retry), if !overflow.is_empty() => {
                        if msg_bucket.take(1.0, clock.elapsed().as_millis() as u64)
                            && !submit_overflow(&daemon, &session_id, &tx, &mut overflow).await
                        {
                            break;
                        }
                        continue;
                    }
                    _ = kick.notified() => {
                        warn!("slow consumer: disconnecting (it gets the latest state when it reconnects)");
                        give_up(&tx, ErrorCode::SlowConsumer, SLOW);
                        gave_up = true;
                        break;
                    }
                    _ = restarted.notified() => {
                        warn!("the project's sync restarted: disconnecting (its editor reconnects and re-sends what has no batch_result)");
                        give_up(&tx, ErrorCode::SyncRestarted, RESTARTED);
                        gave_up = true;
                        break;
                    }
                    _ = shutdown.changed() => {
                        let _ = tx.send(Outbound::error(ErrorCode::ShuttingDown, "daemon is shutting down; reconnect when it is back", None).to_frame()).await;
                        break;
                    }
                }
            };
            let (frame, parsed) = match next {
                None => break,
                Some(Ok(read)) => read,
                Some(Err(_)) if looks_like_http(reader.read_buffer()) => {
                    debug!("HTTP request refused");
                    break; // plain close: never talk to browsers (docs/PROTOCOL.md §3)
                }
                Some(Err(e)) => {
                    let (code, msg) = frame_error_message(&e, false);
                    if let Some(code) = code {
                        let _ = tx.send(Outbound::error(code, msg, None).to_frame()).await;
                    }
                    break;
                }
            };
            // More requests already read (a burst): replies are queued for the writer task to
            // write together rather than written one by one here (crate::outbox).
            tx.cork(ahead.is_some() || !reader.read_buffer().is_empty());
            let now_ms = clock.elapsed().as_millis() as u64;
            let size = (frame.json.len() + frame.attachment.len()) as f64;
            // Counted, never refused (docs/PROTOCOL.md §2): an `applied` answers a batch the
            // daemon sent (refused, the batch would roll back, VERIFY_TIMEOUT); a
            // `user_activity` or `editor_state` is an editor's state, with no request to answer
            // (refused, a person's edit would not hold automation back, or a closing editor's
            // leave would count as evidence against the objects).
            let answer = matches!(
                &parsed,
                Ok(Inbound::Applied(_) | Inbound::UserActivity(_) | Inbound::EditorState(_))
            );
            let within = msg_bucket.take(1.0, now_ms) && byte_bucket.take(size, now_ms);
            if !within && !answer {
                if let Ok(Inbound::Change(c)) = &parsed {
                    if overflow.accepts(c, !frame.attachment.is_empty()) {
                        let Ok(Inbound::Change(c)) = parsed else { unreachable!() };
                        overflow.push(c);
                        continue;
                    }
                }
                // Replies keep request order: what is held is submitted before this refusal.
                if !submit_overflow(&daemon, &session_id, &tx, &mut overflow).await {
                    break;
                }
                let rid = parsed.ok().and_then(|m| m.request_id().map(str::to_string));
                let msg = format!(
                    "over this session's limit ({} messages/s, {} bytes/s); this request was not run — slow down and retry",
                    limits.messages_per_sec, limits.bytes_per_sec
                );
                if let Err(e) = reply(&tx, vec![Outbound::error(ErrorCode::RateLimited, msg, rid).to_frame()], patience).await {
                    gave_up = e == SendError::Slow;
                    break;
                }
                continue;
            }
            match parsed {
                Err(e) => {
                    debug!(code = e.code.as_str(), "bad message: {}", e.message);
                    if let Err(e) = reply(&tx, vec![Outbound::error(e.code, e.message, e.request_id).to_frame()], patience).await {
                        gave_up = e == SendError::Slow;
                        break;
                    }
                }
                Ok(Inbound::Hello(h)) => {
                    let _ = tx.send(Outbound::error(ErrorCode::BadMessage, "field `type`: `hello` was already accepted on this connection", h.request_id).to_frame()).await;
                }
                Ok(Inbound::Change(c)) if !overflow.is_empty() && overflow.accepts(&c, !frame.attachment.is_empty()) => {
                    overflow.push(c);
                    if !submit_overflow(&daemon, &session_id, &tx, &mut overflow).await {
                        break;
                    }
                }
                Ok(msg) => {
                    if !submit_overflow(&daemon, &session_id, &tx, &mut overflow).await {
                        break;
                    }
                    let replies = read_ahead(daemon.handle(&session_id, msg, frame.attachment), &mut reader, &mut ahead);
                    if let Err(e) = reply(&tx, replies.await, patience).await {
                        gave_up = e == SendError::Slow;
                        break;
                    }
                }
            }
        }
    }
    .instrument(span.clone())
    .await;
    // Held changes are never dropped: submitted even when the editor is gone.
    submit_overflow(&daemon, &session_id, &tx, &mut overflow).await;

    daemon.remove_session(&session_id);
    drop(tx);
    if gave_up {
        // The session is gone; its writer finishes the frame it is writing, then the last
        // word, for a client that reads again within LAST_WORD_WAIT. Meanwhile what the
        // client still sends is read and dropped: a socket closed with unread input is
        // reset, and a reset discards the last word before it reaches the client.
        let mut writer_task = writer_task;
        let mut input = reader.into_inner();
        tokio::spawn(async move {
            let linger = async {
                let _ = (&mut writer_task).await;
                let mut sink = vec![0u8; 64 * 1024];
                while matches!(input.read(&mut sink).await, Ok(n) if n > 0) {}
            };
            if tokio::time::timeout(LAST_WORD_WAIT, linger).await.is_err() {
                writer_task.abort();
            }
        });
    } else {
        let _ = writer_task.await;
    }
    info!(parent: &span, "session closed");
}

/// How long the writer of a session given up on (`SLOW_CONSUMER`) still waits for its
/// client to read the frame it was writing and the error after it (docs/PROTOCOL.md §4).
const LAST_WORD_WAIT: Duration = Duration::from_secs(30);

/// Give up on a session: its queue is dropped and the error `code` is the last frame written
/// (`SLOW_CONSUMER`, `SYNC_RESTARTED`: docs/PROTOCOL.md §4).
fn give_up(tx: &Outbox, code: ErrorCode, message: &str) {
    tx.give_up(Outbound::error(code, message, None).to_frame());
}

/// The last word to a slow consumer (docs/PROTOCOL.md §4).
const SLOW: &str = "you did not read your messages fast enough; reconnect to get the latest state";

/// The last word to a session whose project's sync restarted (docs/PROTOCOL.md §4, §6.6).
const RESTARTED: &str = "this project's sync stopped on a bug (see the daemon log) and restarted from the WAL; \
reconnect: the replay brings what you missed, and re-send your changes that have no batch_result";

/// Send a session its replies. A client that does not read its own replies is a slow
/// consumer too: they wait at most `limits.slow_consumer_ms` for room, then the session
/// gives up on it (`SendError::Slow`).
async fn reply(tx: &Outbox, frames: Vec<Frame>, patience: Duration) -> Result<(), SendError> {
    let sent = tx.send_all(frames, Some(patience)).await;
    if sent == Err(SendError::Slow) {
        warn!("slow consumer: it does not read its replies; disconnecting");
        give_up(tx, ErrorCode::SlowConsumer, SLOW);
    }
    sent
}

/// A frame off the socket with its message parsed, or why the stream cannot go on.
type ReadFrame = Result<(Frame, Result<Inbound, MessageError>), FrameError>;

/// What the session read while it handled the request before.
enum Ahead {
    /// Boxed: a parsed message is large, and most frames never wait here.
    Read(Box<ReadFrame>),
    /// A big frame whose message is being parsed on the blocking pool.
    Parsing(Frame, tokio::task::JoinHandle<Result<Inbound, MessageError>>),
    /// The connection ended.
    End,
}

impl Ahead {
    /// Start parsing `frame`'s message. Parsing a frame of many megabytes takes long enough
    /// to stall other sessions on this worker: big ones are parsed on the blocking pool.
    fn parse(frame: Frame) -> Ahead {
        if frame.json.len() > BIG_FRAME_BYTES {
            let json = frame.json.clone();
            Ahead::Parsing(frame, tokio::task::spawn_blocking(move || parse_inbound(&json)))
        } else {
            let parsed = parse_inbound(&frame.json);
            Ahead::Read(Box::new(Ok((frame, parsed))))
        }
    }

    /// The frame and its parsed message; None when the connection ended (or the parser
    /// panicked: the session closes).
    async fn resolve(self) -> Option<ReadFrame> {
        match self {
            Ahead::Read(r) => Some(*r),
            Ahead::Parsing(frame, parsing) => parsing.await.ok().map(|parsed| Ok((frame, parsed))),
            Ahead::End => None,
        }
    }
}

/// Handle one request and, while it waits (a `change` waits for the project's sync actor, a
/// `register` for the registrar), read and parse the next frame into `ahead`, so parsing
/// overlaps that wait instead of following it. A request answered at once (a `ping`) never
/// touches the socket here, and with nothing to read the wait costs nothing. Requests are
/// still handled one at a time, in order, and replies keep request order; at most one frame
/// is read ahead.
async fn read_ahead(
    handled: impl std::future::Future<Output = Vec<Frame>>,
    reader: &mut FramedRead<tokio::net::tcp::OwnedReadHalf, FrameCodec>,
    ahead: &mut Option<Ahead>,
) -> Vec<Frame> {
    tokio::pin!(handled);
    if ahead.is_some() {
        return handled.await;
    }
    tokio::select! {
        biased;
        replies = &mut handled => replies,
        // Cancel-safe: a frame only partly received stays in the reader's buffer.
        next = reader.next() => {
            *ahead = Some(match next {
                None => Ahead::End,
                Some(Err(e)) => Ahead::Read(Box::new(Err(e))),
                Some(Ok(frame)) => Ahead::parse(frame),
            });
            handled.await
        }
    }
}

/// Submit what the overflow holds: each earlier held request is answered with every item
/// `coalesced`, then the last one carries the merged changes (its `ack` comes from the sync
/// actor). False when the session's writer is gone.
async fn submit_overflow(daemon: &Arc<Daemon>, session_id: &str, tx: &Outbox, overflow: &mut Overflow) -> bool {
    let Some((earlier, last)) = overflow.take() else { return true };
    debug!(held = earlier.len() + 1, changes = last.changes.len(), "submitting coalesced over-budget changes");
    let mut alive = true;
    for c in earlier {
        let results = c
            .changes
            .iter()
            .map(|ch| {
                ItemResult::ok(ch.get("uuid").and_then(|u| u.as_str()).unwrap_or_default(), ItemStatus::Coalesced)
            })
            .collect();
        let ack = Outbound::Ack { request_id: c.request_id, seq: daemon.last_seq(), results };
        alive &= tx.send(ack.to_frame()).await.is_ok();
    }
    alive &=
        tx.send_all(daemon.handle(session_id, Inbound::Change(last), bytes::Bytes::new()).await, None).await.is_ok();
    alive
}

/// The hello's client kind, or why the handshake is refused.
fn check_hello(daemon: &Daemon, h: &Hello) -> Result<vibesync_protocol::ClientKind, (ErrorCode, String)> {
    if !crate::token::matches(daemon.token(), h.token.trim()) {
        return Err((
            ErrorCode::AuthFailed,
            "token missing or wrong; read it from <data_dir>/token of the daemon you connect to".into(),
        ));
    }
    if h.protocol != PROTOCOL_VERSION {
        return Err((
            ErrorCode::ProtocolMismatch,
            format!(
                "this daemon speaks protocol {PROTOCOL_VERSION}, client sent {}; update the client or the daemon",
                h.protocol
            ),
        ));
    }
    if let Some(p) = &h.project_id {
        if let Err(m) = validate::project_id(p) {
            return Err((ErrorCode::BadProjectId, m));
        }
    }
    let Some(editor) = vibesync_protocol::ClientKind::parse(&h.editor) else {
        return Err((
            ErrorCode::BadMessage,
            format!(
                "field `editor`: `{}` is not one of {}",
                validate::truncate_for_message(&h.editor),
                vibesync_protocol::ClientKind::list()
            ),
        ));
    };
    if h.client_id.len() > validate::MAX_ID_BYTES {
        return Err((
            ErrorCode::BadMessage,
            format!("field `client_id`: at most {} bytes, got {}", validate::MAX_ID_BYTES, h.client_id.len()),
        ));
    }
    if h.editor_version.len() > validate::MAX_SHORT_STRING_BYTES {
        return Err((
            ErrorCode::BadMessage,
            format!(
                "field `editor_version`: at most {} bytes, got {}",
                validate::MAX_SHORT_STRING_BYTES,
                h.editor_version.len()
            ),
        ));
    }
    if let Some(u) = h.unit_scale {
        // Bounded so that every coordinate the daemon converts for this receiver stays
        // finite (|t| ≤ 1e9 in, ÷ unit_scale out): docs/PROTOCOL.md §3.
        if !(u.is_finite() && (validate::MIN_UNIT_SCALE..=validate::MAX_UNIT_SCALE).contains(&u)) {
            return Err((
                ErrorCode::BadMessage,
                format!(
                    "field `unit_scale`: must be a number from {:e} to {:e} (meters per editor unit), got {u:e}",
                    validate::MIN_UNIT_SCALE,
                    validate::MAX_UNIT_SCALE
                ),
            ));
        }
    }
    Ok(editor)
}

/// The `error` for a framing failure; `before_hello`: on a connection still in its handshake
/// (whose frames have a fixed 4096-byte limit, docs/PROTOCOL.md §3).
fn frame_error_message(e: &FrameError, before_hello: bool) -> (Option<ErrorCode>, String) {
    match e {
        FrameError::TooLarge { .. } if before_hello => (
            Some(ErrorCode::FrameTooLarge),
            format!("{e}: a connection's frames before `hello` may be at most 4096 bytes (send `hello` first)"),
        ),
        FrameError::TooLarge { .. } => (
            Some(ErrorCode::FrameTooLarge),
            format!("{e}, or raise `server.max_frame_bytes` in the daemon's config (docs/PROTOCOL.md §1)"),
        ),
        FrameError::BadFrame { .. } => (Some(ErrorCode::BadFrame), e.to_string()),
        FrameError::Io(_) => (None, e.to_string()),
    }
}

async fn frame_error<W>(writer: &mut FramedWrite<W, FrameCodec>, e: FrameError)
where
    W: tokio::io::AsyncWrite + Unpin,
{
    if let (Some(code), msg) = frame_error_message(&e, true) {
        let _ = send_error_and_close(writer, code, msg, None).await;
    }
}

async fn send_error_and_close<W>(
    writer: &mut FramedWrite<W, FrameCodec>,
    code: ErrorCode,
    message: impl Into<String>,
    request_id: Option<String>,
) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let _ = writer.send(Outbound::error(code, message, request_id).to_frame()).await;
    let _ = writer.flush().await;
    writer.get_mut().shutdown().await
}
