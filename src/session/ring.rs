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

    /// Appends `data`, dropping the oldest bytes beyond capacity.
    pub fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.capacity {
            self.start += (data.len() - self.capacity) as u64;
            &data[data.len() - self.capacity..]
        } else {
            data
        };
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.capacity);
        if overflow > 0 {
            self.buf.drain(..overflow);
            self.start += overflow as u64;
        }
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
        ring.push(b"abcdef");
        ring.push(b"ghij");
        assert_eq!((ring.start(), ring.end()), (2, 10));
        assert_eq!(&ring.read(0, 100)[..], b"cdefghij");
        assert_eq!(&ring.read(5, 3)[..], b"fgh");
        assert_eq!(&ring.read(10, 3)[..], b"");
        ring.push(b"0123456789ABC");
        assert_eq!((ring.start(), ring.end()), (15, 23));
        assert_eq!(&ring.read(0, 100)[..], b"56789ABC");
    }

    #[test]
    fn reads_across_the_wrap() {
        let mut ring = ScrollbackRing::new(4);
        for chunk in [&b"ab"[..], b"cd", b"ef", b"g"] {
            ring.push(chunk);
        }
        assert_eq!(&ring.read(3, 4)[..], b"defg");
        assert_eq!(&ring.read(4, 2)[..], b"ef");
    }
}
