//! What the rest of the daemon holds of a connected session: its writer queue (`Outbox`) and
//! the handle to kick it. Kept apart from the connection loop (`session`) so that the
//! daemon's core can send to sessions without depending on how connections are served.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use vibesync_protocol::Frame;

/// A session's writer queue (`server.send_queue_frames` frames). What is sent together — one
/// frame, or every frame of a fenced batch (`batch_begin`, its `apply`s, `batch_end`) — is
/// written together: a sender holds the session's send turn while its frames go into the
/// queue, so nothing anyone else sends lands between them (docs/PROTOCOL.md §6.3). Each frame
/// still waits for room on its own, so a consumer that stops reading is noticed mid-batch
/// (`SLOW_CONSUMER`), whatever the batch's size.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Frame>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// Why frames were not (all) queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The session's writer is gone.
    Closed,
    /// A frame found no room within the patience given: the consumer does not read.
    Slow,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> (Outbox, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Outbox { tx, turn: Arc::new(tokio::sync::Mutex::new(())) }, rx)
    }

    /// Queue `frames` back to back under the send turn; each waits for room at most
    /// `patience` (None: as long as the writer lives).
    pub async fn send_all(&self, frames: Vec<Frame>, patience: Option<Duration>) -> Result<(), SendError> {
        if frames.is_empty() {
            return Ok(());
        }
        let _turn = self.turn.lock().await;
        for f in frames {
            let sent = match patience {
                Some(p) => tokio::time::timeout(p, self.tx.send(f)).await.map_err(|_| SendError::Slow)?,
                None => self.tx.send(f).await,
            };
            sent.map_err(|_| SendError::Closed)?;
        }
        Ok(())
    }

    /// Queue one frame, waiting for room.
    pub async fn send(&self, frame: Frame) -> Result<(), SendError> {
        self.send_all(vec![frame], None).await
    }

    /// Queue best-effort frames (live previews, docs/PROTOCOL.md §6.3), never out of order
    /// and never waiting for the consumer: the send turn is awaited at most `turn_wait` (another
    /// sender's frames going in), then frames go only while the queue is at most half full;
    /// the others are dropped. Returns how many were queued.
    pub async fn offer(&self, frames: Vec<Frame>, turn_wait: Duration) -> usize {
        // The turn is nearly always free: take it without arming a timer.
        let _turn = match self.turn.try_lock() {
            Ok(turn) => turn,
            Err(_) => match tokio::time::timeout(turn_wait, self.turn.lock()).await {
                Ok(turn) => turn,
                Err(_) => return 0,
            },
        };
        let mut queued = 0;
        for f in frames {
            if self.tx.capacity() * 2 < self.tx.max_capacity() || self.tx.try_send(f).is_err() {
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
            Ok(_turn) => self.tx.try_send(frame).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SendError::Slow,
                mpsc::error::TrySendError::Closed(_) => SendError::Closed,
            }),
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
}

/// What the rest of the daemon may send to a connected session.
#[derive(Clone)]
pub struct SessionHandle {
    pub tx: Outbox,
    /// Notified when the session must be disconnected (it does not take its messages).
    pub kick: Arc<tokio::sync::Notify>,
}
