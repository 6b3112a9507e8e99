//! A bounds-checked little-endian reader over a byte slice.
//!
//! Every read either returns the requested bytes or `None`; nothing here indexes, panics or
//! allocates. The parser turns a `None` into an [`EventLogError`](super::EventLogError) that names
//! the event, offset and field; the event-data decoders turn it into a "malformed" note.

/// A cursor over `data`; `pos <= data.len()` always holds.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Offset of the next byte to be read, from the start of `data`.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Number of bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Consumes and returns the next `n` bytes, or `None` (consuming nothing) if fewer remain.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    /// Like [`Reader::take`] for a length read from the input as a `u64`.
    pub(crate) fn take_u64(&mut self, n: u64) -> Option<&'a [u8]> {
        self.take(usize::try_from(n).ok()?)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::Reader;

    #[test]
    fn reads_little_endian_and_stops_at_the_end() {
        let mut r = Reader::new(&[1, 2, 0, 3, 0, 0, 0, 9]);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u16(), Some(2));
        assert_eq!(r.u32(), Some(3));
        assert_eq!(r.pos(), 7);
        assert_eq!(r.u16(), None, "a failed read consumes nothing");
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.take(1), Some(&[9][..]));
        assert!(r.is_empty());
        assert_eq!(r.take(0), Some(&[][..]));
    }

    #[test]
    fn huge_lengths_are_refused_without_overflow() {
        let mut r = Reader::new(&[0; 4]);
        assert_eq!(r.u8(), Some(0));
        assert_eq!(r.take(usize::MAX), None);
        assert_eq!(r.take_u64(u64::MAX), None);
        assert_eq!(r.remaining(), 3);
    }
}
