//! Input on its way to a session's process, bounded in bytes.
//!
//! Invariants:
//! - At most [`INPUT_BUDGET`] bytes are queued for a process at once (counted by a semaphore
//!   whose permits travel with each chunk and return when the chunk has been written). A
//!   sender that finds no room waits, and while it waits the terminal bridge reads no more from
//!   its client: backpressure reaches the WebSocket instead of memory growing.
//! - Input is queued in chunks of at most [`INPUT_CHUNK`] bytes, in order; a frame larger than
//!   the budget goes through piece by piece.
//! - [`InputQueue::send_some`] is cancel-safe: nothing is taken from the caller's bytes unless
//!   it was queued.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Bytes queued for a process before senders wait.
pub const INPUT_BUDGET: usize = 256 * 1024;
/// The largest piece queued at once.
pub const INPUT_CHUNK: usize = 16 * 1024;

/// A piece of input and its share of the budget (returned when dropped, after the write).
pub struct InputChunk {
    pub data: Bytes,
    _room: OwnedSemaphorePermit,
}

/// The process has stopped taking input (it ended).
#[derive(Debug)]
pub struct InputClosed;

/// The sending side; the session's input writer holds the receiver.
pub struct InputQueue {
    tx: mpsc::UnboundedSender<InputChunk>,
    room: Arc<Semaphore>,
}

impl InputQueue {
    pub fn new() -> (InputQueue, mpsc::UnboundedReceiver<InputChunk>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (InputQueue { tx, room: Arc::new(Semaphore::new(INPUT_BUDGET)) }, rx)
    }

    /// Queues as much of `data` as there is room for now; the rest stays in `data`.
    pub fn offer(&self, data: &mut Bytes) -> Result<(), InputClosed> {
        while !data.is_empty() {
            let len = data.len().min(INPUT_CHUNK);
            let Ok(permit) = self.room.clone().try_acquire_many_owned(len as u32) else {
                return Ok(());
            };
            self.queue(data.split_to(len), permit)?;
        }
        Ok(())
    }

    /// Waits for room for the next piece of `data` and queues it (the rest stays in `data`).
    pub async fn send_some(&self, data: &mut Bytes) -> Result<(), InputClosed> {
        if data.is_empty() {
            return Ok(());
        }
        let len = data.len().min(INPUT_CHUNK);
        let permit =
            self.room.clone().acquire_many_owned(len as u32).await.map_err(|_| InputClosed)?;
        self.queue(data.split_to(len), permit)
    }

    /// Queues all of `data`, waiting for room as needed.
    pub async fn send_all(&self, mut data: Bytes) -> Result<(), InputClosed> {
        while !data.is_empty() {
            self.send_some(&mut data).await?;
        }
        Ok(())
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        INPUT_BUDGET - self.room.available_permits()
    }

    fn queue(&self, data: Bytes, room: OwnedSemaphorePermit) -> Result<(), InputClosed> {
        self.tx.send(InputChunk { data, _room: room }).map_err(|_| InputClosed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_queue_holds_at_most_the_budget() {
        let (queue, mut rx) = InputQueue::new();
        let mut big = Bytes::from(vec![b'x'; 1 << 20]);
        queue.offer(&mut big).unwrap();
        assert_eq!(queue.queued(), INPUT_BUDGET);
        assert_eq!(big.len(), (1 << 20) - INPUT_BUDGET, "the rest waits with the sender");
        let first = rx.recv().await.unwrap();
        assert_eq!(first.data.len(), INPUT_CHUNK);
        drop(first);
        queue.send_some(&mut big).await.unwrap();
        assert_eq!(queue.queued(), INPUT_BUDGET);
        let mut more = Bytes::from_static(b"late");
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), queue.send_some(&mut more));
        assert!(waiting.await.is_err(), "no room: the sender waits");
        assert_eq!(&more[..], b"late", "nothing taken while waiting");
        drop(rx);
        assert!(queue.send_some(&mut more).await.is_err(), "the process is gone");
    }
}
