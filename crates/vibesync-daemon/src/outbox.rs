//! What the rest of the daemon holds of a connected session: its writer queue (`Outbox`),
//! the socket it writes to, and the handle to kick it. Kept apart from the connection loop
//! (`session`) so that the daemon's core can send to sessions without depending on how
//! connections are served.
//!
//! # Written where they are sent, when nothing waits
//! Frames reach the socket in the order they were sent, by one of two writers: the sender
//! itself, or the session's writer task ([`Writer`]). A sender holding the session's send
//! turn writes its frames straight to the socket (a non-blocking write, no task hand-off)
//! when nothing it must follow is still unwritten: the queue holds no frame and the writer
//! task is not writing. Otherwise — and for what the socket did not take at once — the
//! frames go into the queue, behind what is there, and the writer task writes them. So a
//! `live` preview or an `ack` to an idle session is on the wire before its sender's step
//! ends, instead of after a wake-up of the writer task (docs/BENCHMARKS.md, "Live sync
//! against a plain relay"); a session that is behind on reading still fills its queue and is
//! noticed as before (`SLOW_CONSUMER`, docs/PROTOCOL.md §4).
//!
//! *Invariant:* bytes reach the socket in send order and never interleave: a direct write
//! happens only under the send turn, with [`Wire::unwritten`] at 0, while holding the
//! socket ([`Wire::claim`]); the writer task holds the socket while it writes queued
//! frames, and a queued frame counts as unwritten until it is on the socket.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::Encoder;
use vibesync_protocol::{Frame, FrameCodec};

/// The writer task writes the frames already waiting in a session's queue together, up to
/// about this many bytes a write (a frame bigger than this is written alone). Frames sent
/// together that are larger than this in all go through the queue, never straight to the
/// socket: a sender never encodes a big batch on its own task.
pub(crate) const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// A session's writer queue (`server.send_queue_frames` frames, `server.send_queue_bytes`
/// bytes: a consumer that stops reading holds at most that much memory, however big the
/// frames). What is sent together — one
/// frame, or every frame of a fenced batch (`batch_begin`, its `apply`s, `batch_end`) — is
/// written together: a sender holds the session's send turn while its frames go onto the
/// socket or into the queue, so nothing anyone else sends lands between them
/// (docs/PROTOCOL.md §6.3). Each queued frame still waits for room on its own, so a
/// consumer that stops reading is noticed mid-batch (`SLOW_CONSUMER`), whatever the batch's
/// size.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Out>,
    turn: Arc<tokio::sync::Mutex<()>>,
    wire: Arc<Wire>,
    /// Room in the queue, in bytes: a queued frame holds its size (at most all of it) until
    /// the writer task has written it.
    room: Arc<Semaphore>,
    room_bytes: u32,
}

/// What waits in the queue: a frame, or the rest of a direct write the socket did not take.
enum Out {
    /// A frame and the room it holds in the queue (released once written or dropped).
    Frame(Frame, OwnedSemaphorePermit),
    Bytes(Bytes),
    /// Wakes the writer task when the session gives up on its consumer ([`Outbox::give_up`]).
    Stop,
}

/// The session's socket (write half), shared by the writer task and direct senders.
struct Wire {
    sock: OwnedWriteHalf,
    /// Frames and byte runs queued and not yet on the socket (incremented before queueing,
    /// decremented by the writer task once written).
    unwritten: AtomicUsize,
    /// Whoever writes to the socket holds this.
    busy: AtomicBool,
    /// The writer task has ended (the socket failed or the session closed).
    closed: AtomicBool,
    /// Set by the session while more requests of its own are already read: its replies then
    /// go through the queue, and the writer task writes them many to a write instead of one
    /// write each ([`Outbox::cork`]).
    corked: AtomicBool,
    max_frame: u32,
    /// The session gave up on its consumer ([`Outbox::give_up`]): nothing more is written
    /// but what is being written and then `last_word`.
    abandoned: AtomicBool,
    /// The frame written after the queue is discarded (the `SLOW_CONSUMER` error).
    last_word: std::sync::Mutex<Option<Frame>>,
}

impl Wire {
    fn claim(&self) -> bool {
        self.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    fn release(&self) {
        self.busy.store(false, Ordering::Release);
    }

    /// Write `buf` — `items` queued frames or byte runs (the welcome counts as one) — as the
    /// writer that waits for the socket: a direct sender holds it only for one non-blocking
    /// write, so the wait is short. They stop counting as unwritten once written (or failed).
    async fn write_claimed(&self, buf: &[u8], items: usize) -> std::io::Result<()> {
        while !self.claim() {
            tokio::task::yield_now().await;
        }
        let written = write_all(&self.sock, buf).await;
        self.unwritten.fetch_sub(items, Ordering::AcqRel);
        self.release();
        written
    }
}

/// Why frames were not (all) queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The session's writer is gone.
    Closed,
    /// A frame found no room within the patience given: the consumer does not read.
    Slow,
}

/// What a direct write did with the frames it was given.
enum Direct {
    /// On the socket, or (what the socket did not take) first in the queue.
    Written,
    /// Not written: they go into the queue.
    Queue(Vec<Frame>),
}

impl Outbox {
    /// The outbox of a session writing to `sock` (frames up to `max_frame` bytes), and its
    /// writer task's body.
    pub(crate) fn new((frames, bytes): (usize, u32), sock: OwnedWriteHalf, max_frame: u32) -> (Outbox, Writer) {
        let (tx, rx) = mpsc::channel(frames.max(1));
        let room_bytes = bytes.max(1);
        let wire = Arc::new(Wire {
            sock,
            // The first frame (`welcome`, [`Outbox::send_first`]) is unwritten until written.
            unwritten: AtomicUsize::new(1),
            busy: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            corked: AtomicBool::new(false),
            max_frame,
            abandoned: AtomicBool::new(false),
            last_word: std::sync::Mutex::new(None),
        });
        let room = Arc::new(Semaphore::new(room_bytes as usize));
        (
            Outbox { tx, turn: Arc::new(tokio::sync::Mutex::new(())), wire: wire.clone(), room, room_bytes },
            Writer { rx, wire },
        )
    }

    /// The room `f` takes in the queue: its size on the wire, at most the whole queue.
    fn cost(&self, f: &Frame) -> u32 {
        u32::try_from(8 + f.json.len() + f.attachment.len()).unwrap_or(u32::MAX).min(self.room_bytes)
    }

    /// Whether the queue is at most half full, in frames and in bytes.
    fn half_empty(&self) -> bool {
        self.tx.capacity() * 2 >= self.tx.max_capacity()
            && self.room.available_permits() * 2 >= self.room_bytes as usize
    }

    /// While `on`, frames are queued, never written by their sender: the session sets it
    /// while requests it has already read wait behind the one it handles (a burst), so their
    /// replies are written many to a write by the writer task — on the other core — instead
    /// of one system call each on the session's. One request at a time (an editor's edits at
    /// a person's pace) is answered at once.
    pub(crate) fn cork(&self, on: bool) {
        self.wire.corked.store(on, Ordering::Relaxed);
    }

    /// Write the session's first frame (`welcome`) before the writer task starts: whatever
    /// others send meanwhile waits in the queue behind it.
    pub(crate) async fn send_first(&self, frame: Frame) -> Result<(), SendError> {
        let mut buf = BytesMut::new();
        FrameCodec::new(self.wire.max_frame).encode(frame, &mut buf).map_err(|_| SendError::Closed)?;
        self.wire.write_claimed(&buf, 1).await.map_err(|_| SendError::Closed)
    }

    /// Queue `frames` back to back under the send turn (or write them at once, see the
    /// module docs); each queued frame waits for room at most `patience` (None: as long as
    /// the writer lives).
    pub async fn send_all(&self, frames: Vec<Frame>, patience: Option<Duration>) -> Result<(), SendError> {
        if frames.is_empty() {
            return Ok(());
        }
        let _turn = self.turn.lock().await;
        let frames = match self.write_now(frames)? {
            Direct::Written => return Ok(()),
            Direct::Queue(frames) => frames,
        };
        for f in frames {
            self.wire.unwritten.fetch_add(1, Ordering::AcqRel);
            // Room in bytes, then a place in the queue, both within the frame's patience.
            // Room is nearly always there: taken without a future or a timer.
            let need = self.cost(&f);
            let deadline = patience.map(|p| tokio::time::Instant::now() + p);
            let room = match self.room.clone().try_acquire_many_owned(need) {
                Ok(permit) => Ok(Ok(permit)),
                Err(_) => {
                    let room = self.room.clone().acquire_many_owned(need);
                    match deadline {
                        Some(d) => tokio::time::timeout_at(d, room).await.map_err(|_| SendError::Slow),
                        None => Ok(room.await),
                    }
                }
            };
            let sent = match room {
                Ok(Ok(permit)) => match deadline {
                    Some(d) => tokio::time::timeout_at(d, self.tx.send(Out::Frame(f, permit)))
                        .await
                        .map_err(|_| SendError::Slow)
                        .and_then(|sent| sent.map_err(|_| SendError::Closed)),
                    None => self.tx.send(Out::Frame(f, permit)).await.map_err(|_| SendError::Closed),
                },
                Ok(Err(_closed)) => Err(SendError::Closed),
                Err(slow) => Err(slow),
            };
            if let Err(e) = sent {
                self.wire.unwritten.fetch_sub(1, Ordering::AcqRel);
                return Err(e);
            }
        }
        Ok(())
    }

    /// The consumer does not take its messages: what is queued and not yet being written is
    /// discarded, and `last_word` (the `SLOW_CONSUMER` error, docs/PROTOCOL.md §4) follows
    /// the frame being written, the last thing on the connection — a client that reads
    /// again learns why it was cut off, between whole frames. Nothing sent afterwards is
    /// written.
    pub fn give_up(&self, last_word: Frame) {
        *self.wire.last_word.lock().unwrap() = Some(last_word);
        self.wire.abandoned.store(true, Ordering::Release);
        // A writer waiting on an empty queue wakes up; a full queue means it is writing, and
        // it sees `abandoned` when it takes its next item.
        let _ = self.tx.try_send(Out::Stop);
    }

    /// Queue one frame, waiting for room.
    pub async fn send(&self, frame: Frame) -> Result<(), SendError> {
        self.send_all(vec![frame], None).await
    }

    /// Queue best-effort frames (live previews, docs/PROTOCOL.md §6.3), never out of order
    /// and never waiting for the consumer: the send turn is awaited at most `turn_wait` (another
    /// sender's frames going in), then frames go only while the queue is at most half full;
    /// the others are dropped. Returns how many were queued (or written).
    pub async fn offer(&self, frames: Vec<Frame>, turn_wait: Duration) -> usize {
        // The turn is nearly always free: take it without arming a timer.
        let _turn = match self.turn.try_lock() {
            Ok(turn) => turn,
            Err(_) => match tokio::time::timeout(turn_wait, self.turn.lock()).await {
                Ok(turn) => turn,
                Err(_) => return 0,
            },
        };
        let n = frames.len();
        let frames = match self.write_now(frames) {
            Ok(Direct::Written) => return n,
            Ok(Direct::Queue(frames)) => frames,
            Err(_) => return 0,
        };
        let mut queued = 0;
        for f in frames {
            if !self.half_empty() {
                break;
            }
            let Ok(permit) = self.room.clone().try_acquire_many_owned(self.cost(&f)) else { break };
            self.wire.unwritten.fetch_add(1, Ordering::AcqRel);
            if self.tx.try_send(Out::Frame(f, permit)).is_err() {
                self.wire.unwritten.fetch_sub(1, Ordering::AcqRel);
                break;
            }
            queued += 1;
        }
        queued
    }

    /// Queue one frame without waiting: at once when the turn is free and there is room; when
    /// another sender holds the turn (a batch going out), right after it, from a task of its
    /// own. Err when the queue is full or the writer is gone.
    pub fn try_send(&self, frame: Frame) -> Result<(), SendError> {
        match self.turn.try_lock() {
            Ok(_turn) => {
                let frame = match self.write_now(vec![frame])? {
                    Direct::Written => return Ok(()),
                    Direct::Queue(mut frames) => frames.remove(0),
                };
                let permit = self.room.clone().try_acquire_many_owned(self.cost(&frame)).map_err(|e| match e {
                    tokio::sync::TryAcquireError::NoPermits => SendError::Slow,
                    tokio::sync::TryAcquireError::Closed => SendError::Closed,
                })?;
                self.wire.unwritten.fetch_add(1, Ordering::AcqRel);
                self.tx.try_send(Out::Frame(frame, permit)).map_err(|e| {
                    self.wire.unwritten.fetch_sub(1, Ordering::AcqRel);
                    match e {
                        mpsc::error::TrySendError::Full(_) => SendError::Slow,
                        mpsc::error::TrySendError::Closed(_) => SendError::Closed,
                    }
                })
            }
            Err(_) => {
                let Ok(rt) = tokio::runtime::Handle::try_current() else { return Err(SendError::Slow) };
                let me = self.clone();
                rt.spawn(async move {
                    let _ = me.send(frame).await;
                });
                Ok(())
            }
        }
    }

    /// Under the send turn: write `frames` straight to the socket when nothing waits to be
    /// written before them and they are small; what the socket does not take at once goes
    /// first into the queue (it is empty) for the writer task. `Direct::Queue` (untouched)
    /// when they must be queued instead.
    fn write_now(&self, frames: Vec<Frame>) -> Result<Direct, SendError> {
        let wire = &*self.wire;
        let size: usize = frames.iter().map(|f| 8 + f.json.len() + f.attachment.len()).sum();
        if size > WRITE_BATCH_BYTES
            || frames.iter().any(|f| 4 + f.json.len() + f.attachment.len() > wire.max_frame as usize)
            || wire.corked.load(Ordering::Relaxed)
            || wire.unwritten.load(Ordering::Acquire) != 0
            || !wire.claim()
        {
            return Ok(Direct::Queue(frames));
        }
        // Holding the socket: the writer task is not writing, and with the turn held and
        // nothing unwritten, nothing can be queued before these frames.
        if wire.closed.load(Ordering::Acquire) || wire.abandoned.load(Ordering::Acquire) || self.tx.is_closed() {
            wire.release();
            return Err(SendError::Closed);
        }
        let mut buf = BytesMut::with_capacity(size);
        let mut codec = FrameCodec::new(wire.max_frame);
        for f in frames {
            // Sizes were checked above: encoding cannot fail.
            let _ = codec.encode(f, &mut buf);
        }
        let written = match wire.sock.try_write(&buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                // The writer task meets the same error on its next write and ends.
                wire.release();
                return Err(SendError::Closed);
            }
        };
        let outcome = if written == buf.len() {
            Ok(Direct::Written)
        } else {
            let rest = buf.split_off(written).freeze();
            wire.unwritten.fetch_add(1, Ordering::AcqRel);
            // The queue is empty (nothing unwritten, the turn held): there is room.
            match self.tx.try_send(Out::Bytes(rest)) {
                Ok(()) => Ok(Direct::Written),
                Err(_) => {
                    wire.unwritten.fetch_sub(1, Ordering::AcqRel);
                    Err(SendError::Closed)
                }
            }
        };
        wire.release();
        outcome
    }
}

/// The session's writer task: writes what is queued, in order, several frames a write.
pub(crate) struct Writer {
    rx: mpsc::Receiver<Out>,
    wire: Arc<Wire>,
}

impl Writer {
    /// Write queued frames until the socket fails, every sender is gone or the session gives
    /// up on its consumer (then the queue is discarded and only the last word written), then
    /// shut the socket's write side down (the client reads the end of the stream after the
    /// last frame).
    pub(crate) async fn run(mut self) {
        let mut codec = FrameCodec::new(self.wire.max_frame);
        let mut buf = BytesMut::new();
        let mut failed = false;
        let mut held = Vec::new();
        // An item taken when the session had given up: the rest of a frame it must finish.
        let mut pending = None;
        'items: while let Some(first) = self.rx.recv().await {
            if self.wire.abandoned.load(Ordering::Acquire) {
                pending = Some(first);
                break;
            }
            // One write for every item already queued (up to WRITE_BATCH_BYTES), not one per
            // frame: a fenced batch or a drag's live previews go out in a few writes.
            let mut taken = 0;
            let mut next = Some(first);
            while let Some(item) = next.take() {
                taken += 1;
                match item {
                    Out::Frame(f, permit) => {
                        if codec.encode(f, &mut buf).is_err() {
                            break 'items; // a frame over the limit: the session cannot go on
                        }
                        // Encoded: the frame's room is the buffer's now, held until written.
                        held.push(permit);
                    }
                    Out::Bytes(b) => buf.extend_from_slice(&b),
                    Out::Stop => taken -= 1, // never counted as unwritten
                }
                if buf.len() < WRITE_BATCH_BYTES {
                    next = self.rx.try_recv().ok();
                }
            }
            let written = self.wire.write_claimed(&buf, taken).await;
            buf.clear();
            held.clear();
            if written.is_err() {
                failed = true;
                break;
            }
        }
        if self.wire.abandoned.load(Ordering::Acquire) {
            // Queued frames are dropped; the rest of a frame a sender wrote in part is not:
            // the last word must follow whole frames.
            self.rx.close();
            buf.clear();
            while let Some(item) = pending.take().or_else(|| self.rx.try_recv().ok()) {
                if let Out::Bytes(b) = item {
                    buf.extend_from_slice(&b);
                }
            }
            let last = self.wire.last_word.lock().unwrap().take();
            if let (false, Some(f)) = (failed, last) {
                if codec.encode(f, &mut buf).is_ok() {
                    let _ = self.wire.write_claimed(&buf, 0).await;
                }
            }
        }
        self.wire.closed.store(true, Ordering::Release);
        let _ = socket2::SockRef::from(self.wire.sock.as_ref()).shutdown(std::net::Shutdown::Write);
    }
}

async fn write_all(sock: &OwnedWriteHalf, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        sock.writable().await?;
        match sock.try_write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What the rest of the daemon may send to a connected session.
#[derive(Clone)]
pub struct SessionHandle {
    pub tx: Outbox,
    /// Notified when the session must be disconnected (it does not take its messages).
    pub kick: Arc<tokio::sync::Notify>,
    /// Notified when its project's sync restarted after a step panicked: the session is
    /// disconnected (`SYNC_RESTARTED`) and its editor reconnects (docs/PROTOCOL.md §6.6).
    pub restarted: Arc<tokio::sync::Notify>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::codec::FramedRead;
    use vibesync_protocol::{Frame, FrameCodec};

    use super::{Outbox, WRITE_BATCH_BYTES};

    /// A session's outbox on one end of a loopback connection, and the client's end.
    async fn pair(capacity: usize) -> (Outbox, tokio::task::JoinHandle<()>, FramedRead<TcpStream, FrameCodec>) {
        pair_bounded((capacity, 256 << 20)).await
    }

    /// [`pair`] with the queue bounded to `(frames, bytes)`.
    async fn pair_bounded(
        bound: (usize, u32),
    ) -> (Outbox, tokio::task::JoinHandle<()>, FramedRead<TcpStream, FrameCodec>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_rd, wr) = server.into_split();
        std::mem::forget(_rd); // keep the connection open for the test's length
        let (tx, writer) = Outbox::new(bound, wr, 64 << 20);
        tx.send_first(frame("welcome", 0)).await.unwrap();
        let task = tokio::spawn(writer.run());
        (tx, task, FramedRead::new(client, FrameCodec::new(64 << 20)))
    }

    fn frame(tag: &str, pad: usize) -> Frame {
        Frame::new(format!("{{\"t\":\"{tag}\",\"p\":\"{}\"}}", "x".repeat(pad)).into_bytes(), Vec::new())
    }

    fn tag(f: &Frame) -> String {
        let v: serde_json::Value = serde_json::from_slice(&f.json).unwrap();
        v["t"].as_str().unwrap().to_string()
    }

    /// Four senders, each sending numbered groups of frames (one frame, small groups written
    /// at once, groups over the direct-write size that must be queued), while the client
    /// does not read at first: the socket fills, direct writes are cut short and their rest
    /// queued, later sends queue behind it. Every frame arrives once, each sender's in order,
    /// each group contiguous.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_arrive_in_send_order_and_groups_stay_whole_whatever_writes_them() {
        let (tx, _writer, mut client) = pair(4096).await;
        let mut senders = Vec::new();
        for s in 0..4 {
            let tx = tx.clone();
            senders.push(tokio::spawn(async move {
                for g in 0..150 {
                    // Every third group is bigger than a direct write may be.
                    let (n, pad) = if g % 3 == 2 { (3, WRITE_BATCH_BYTES / 2) } else { (1 + g % 4, 200) };
                    let frames = (0..n).map(|i| frame(&format!("{s}:{g}:{i}:{n}"), pad)).collect();
                    tx.send_all(frames, None).await.unwrap();
                }
            }));
        }
        // Let the socket's buffers fill before reading anything.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(tag(&client.next().await.unwrap().unwrap()), "welcome");
        let mut next_group = [0usize; 4];
        let mut open: Option<(usize, usize, usize, usize)> = None; // sender, group, next index, count
        let mut frames = 0;
        while next_group.iter().any(|&g| g < 150) {
            let f =
                tokio::time::timeout(Duration::from_secs(20), client.next()).await.expect("a frame").unwrap().unwrap();
            frames += 1;
            let t = tag(&f);
            let p: Vec<usize> = t.split(':').map(|x| x.parse().unwrap()).collect();
            let (s, g, i, n) = (p[0], p[1], p[2], p[3]);
            match open {
                Some((os, og, oi, on)) => {
                    assert_eq!((s, g, i, n), (os, og, oi, on), "frame {t} inside another sender's group");
                }
                None => {
                    assert_eq!(i, 0, "frame {t} is not the first of its group");
                    assert_eq!(g, next_group[s], "sender {s}'s group {g} out of order");
                }
            }
            open = if i + 1 == n {
                next_group[s] += 1;
                None
            } else {
                Some((s, g, i + 1, n))
            };
        }
        for s in senders {
            s.await.unwrap();
        }
        assert!(frames > 600);
    }

    /// Frames sent before `welcome` is written (others can send once the session is added)
    /// reach the client after it, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_is_sent_before_welcome_follows_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_rd, wr) = server.into_split();
        let (tx, writer) = Outbox::new((16, 256 << 20), wr, 1 << 20);
        tx.send(frame("early-1", 10)).await.unwrap();
        assert_eq!(tx.offer(vec![frame("early-2", 10)], Duration::from_millis(5)).await, 1);
        tx.send_first(frame("welcome", 0)).await.unwrap();
        tokio::spawn(writer.run());
        tx.send(frame("late", 10)).await.unwrap();
        let mut client = FramedRead::new(client, FrameCodec::new(1 << 20));
        for want in ["welcome", "early-1", "early-2", "late"] {
            assert_eq!(tag(&client.next().await.unwrap().unwrap()), want);
        }
    }

    /// The queue is bounded in bytes as well as in frames: a client that does not read is
    /// found slow once that many bytes wait for it, however few the frames (an independent
    /// client held ~96 MB of resync meshes in a daemon's memory with 150 frames). A frame
    /// bigger than the whole bound still goes alone to a client that reads, whole and in
    /// order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_does_not_read_is_slow_once_the_bytes_bound_is_full() {
        // 1,024 frames but 1 MiB of room; the client reads nothing.
        let (tx, _writer, _client) = pair_bounded((1024, 1 << 20)).await;
        let patience = Some(Duration::from_millis(300));
        let mut sent = 0;
        let outcome = loop {
            match tx.send_all(vec![frame(&format!("big-{sent}"), 512 << 10)], patience).await {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 200, "100 MB queued for a client that reads nothing");
        };
        assert_eq!(outcome, super::SendError::Slow);
        // The socket's buffers take some; the queue no more than its 1 MiB.
        assert!((2..100).contains(&sent), "{sent} frames of 512 KiB went before the client was found slow");

        let (tx, _writer, mut reader) = pair_bounded((1024, 1 << 20)).await;
        let sender = tokio::spawn(async move {
            for (i, pad) in [(0, 3 << 20), (1, 100), (2, 5 << 20)] {
                tx.send_all(vec![frame(&format!("f{i}"), pad)], Some(Duration::from_secs(20))).await.unwrap();
            }
        });
        for want in ["welcome", "f0", "f1", "f2"] {
            let f =
                tokio::time::timeout(Duration::from_secs(20), reader.next()).await.expect("a frame").unwrap().unwrap();
            assert_eq!(tag(&f), want);
        }
        sender.await.unwrap();
    }

    /// The writer ends when every sender is gone, and the client reads the end of the stream
    /// after the last frame; sends after the writer ended fail `Closed`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stream_ends_after_the_last_frame() {
        let (tx, writer, mut client) = pair(16).await;
        tx.send(frame("last", 10)).await.unwrap();
        drop(tx);
        writer.await.unwrap();
        assert_eq!(tag(&client.next().await.unwrap().unwrap()), "welcome");
        assert_eq!(tag(&client.next().await.unwrap().unwrap()), "last");
        assert!(client.next().await.is_none(), "the stream ends");
    }
}
