//! The scrollback ring: the last `capacity` bytes of a session's output, addressed by absolute
//! offsets since the session started, so that a reader can say exactly which bytes it has seen.

use std::collections::VecDeque;

use bytes::Bytes;

pub struct ScrollbackRing {
    buf: VecDeque<u8>,
    capacity: usize,
    /// Absolute offset of `buf[0]`.
    start: u64,
}

impl ScrollbackRing {
    pub fn new(capacity: usize) -> Self {
        // Grows on demand: an idle session costs little.
        ScrollbackRing { buf: VecDeque::new(), capacity, start: 0 }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Offset of the oldest byte still held.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Offset one past the newest byte.
    pub fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// Appends `data`, dropping the oldest bytes beyond capacity; `dropped` is given them, in
    /// order, each piece with its offset.
    pub fn push(&mut self, data: &[u8], mut dropped: impl FnMut(u64, &[u8])) {
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.capacity);
        let from_buf = overflow.min(self.buf.len());
        if from_buf > 0 {
            let (a, b) = self.buf.as_slices();
            let from_a = from_buf.min(a.len());
            dropped(self.start, &a[..from_a]);
            if from_buf > from_a {
                dropped(self.start + from_a as u64, &b[..from_buf - from_a]);
            }
            self.buf.drain(..from_buf);
            self.start += from_buf as u64;
        }
        let data = if data.len() > self.capacity {
            let skip = data.len() - self.capacity;
            dropped(self.start, &data[..skip]);
            self.start += skip as u64;
            &data[skip..]
        } else {
            data
        };
        self.buf.extend(data);
    }

    /// Up to `max` bytes from absolute offset `from` (clamped to what is held).
    pub fn read(&self, from: u64, max: usize) -> Bytes {
        let from = from.max(self.start);
        let skip = (from - self.start) as usize;
        if skip >= self.buf.len() {
            return Bytes::new();
        }
        let take = (self.buf.len() - skip).min(max);
        let (a, b) = self.buf.as_slices();
        let mut out = Vec::with_capacity(take);
        if skip < a.len() {
            let end = (skip + take).min(a.len());
            out.extend_from_slice(&a[skip..end]);
            out.extend_from_slice(&b[..take - (end - skip)]);
        } else {
            out.extend_from_slice(&b[skip - a.len()..skip - a.len() + take]);
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_bytes_with_absolute_offsets() {
        let mut ring = ScrollbackRing::new(8);
        let mut dropped = Vec::new();
        let mut keep = |at: u64, d: &[u8]| dropped.push((at, d.to_vec()));
        ring.push(b"abcdef", &mut keep);
        ring.push(b"ghij", &mut keep);
        assert_eq!((ring.start(), ring.end()), (2, 10));
        assert_eq!(&ring.read(0, 100)[..], b"cdefghij");
        assert_eq!(&ring.read(5, 3)[..], b"fgh");
        assert_eq!(&ring.read(10, 3)[..], b"");
        ring.push(b"0123456789ABC", &mut keep);
        assert_eq!((ring.start(), ring.end()), (15, 23));
        assert_eq!(&ring.read(0, 100)[..], b"56789ABC");
        // Every byte that left, once, in order, each piece at its offset.
        let mut next = 0;
        let mut left = Vec::new();
        for (at, piece) in dropped {
            assert_eq!(at, next);
            next += piece.len() as u64;
            left.extend(piece);
        }
        assert_eq!(left, b"abcdefghij01234");
    }

    #[test]
    fn reads_across_the_wrap() {
        let mut ring = ScrollbackRing::new(4);
        for chunk in [&b"ab"[..], b"cd", b"ef", b"g"] {
            ring.push(chunk, |_, _| {});
        }
        assert_eq!(&ring.read(3, 4)[..], b"defg");
        assert_eq!(&ring.read(4, 2)[..], b"ef");
    }
}
