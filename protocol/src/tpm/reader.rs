//! A small bounds-checked big-endian cursor over TPM marshalled bytes. Every read names the
//! structure and field it is for, so a short input is reported as "TPMS_ATTEST.extraData
//! truncated at offset 12" rather than a bare "unexpected end". Offsets are from the start of the
//! top-level input, which is what an operator comparing against a hex dump wants.

use super::TpmError;

/// A cursor over a byte slice that never reads past its end.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    structure: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`, reading the structure called `structure`.
    pub(crate) fn new(buf: &'a [u8], structure: &'static str) -> Self {
        Self {
            buf,
            pos: 0,
            structure,
        }
    }

    /// Offset of the next byte to be read, from the start of the input.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Runs `f` with errors attributed to the nested structure `structure`, then restores the
    /// outer structure's name.
    pub(crate) fn nested<T>(
        &mut self,
        structure: &'static str,
        f: impl FnOnce(&mut Self) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let outer = std::mem::replace(&mut self.structure, structure);
        let result = f(self);
        self.structure = outer;
        result
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], TpmError> {
        let (structure, offset) = (self.structure, self.pos);
        let truncated = move || TpmError::Truncated {
            structure,
            field,
            offset,
        };
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let out = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], TpmError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, TpmError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, TpmError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, TpmError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, TpmError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A TPM2B: a u16 size followed by that many bytes, where the size may not exceed `max` (the
    /// `buffer[]` bound the specification gives the type). The bound is checked before anything is
    /// read past the size, so a hostile size never drives an allocation.
    pub(crate) fn tpm2b(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], TpmError> {
        let size = usize::from(self.u16(field)?);
        if size > max {
            return Err(TpmError::TooLarge {
                structure: self.structure,
                field,
                size,
                max,
            });
        }
        self.bytes(size, field)
    }

    /// Splits off the next `n` bytes as a reader of their own (for the contents of a sized
    /// structure such as TPM2B_PUBLIC), returning it with those bytes. The new reader cannot read
    /// past the window, and its offsets stay relative to the start of the whole input.
    pub(crate) fn window(
        &mut self,
        n: usize,
        field: &'static str,
        structure: &'static str,
    ) -> Result<(Self, &'a [u8]), TpmError> {
        let start = self.pos;
        let contents = self.bytes(n, field)?;
        let inner = Self {
            buf: self.buf.get(..self.pos).unwrap_or_default(),
            pos: start,
            structure,
        };
        Ok((inner, contents))
    }

    /// Succeeds only if every byte of the input has been consumed.
    pub(crate) fn finish(self) -> Result<(), TpmError> {
        // `pos` only advances through `bytes`, which never passes the end.
        match self.buf.len().saturating_sub(self.pos) {
            0 => Ok(()),
            extra => Err(TpmError::TrailingBytes {
                structure: self.structure,
                extra,
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_integers() {
        let data = [1, 0x02, 0x03, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        let mut r = Reader::new(&data, "T");
        assert_eq!(r.u8("a").unwrap(), 1);
        assert_eq!(r.u16("b").unwrap(), 0x0203);
        assert_eq!(r.u32("c").unwrap(), 0x0405_0607);
        assert_eq!(r.u64("d").unwrap(), 0x0809_0a0b_0c0d_0e0f);
        assert_eq!(r.position(), 15);
        r.finish().unwrap();
    }

    #[test]
    fn short_read_names_structure_field_and_offset() {
        let mut r = Reader::new(&[0, 1, 2], "TPMS_X");
        r.u16("first").unwrap();
        assert_eq!(
            r.u16("second"),
            Err(TpmError::Truncated {
                structure: "TPMS_X",
                field: "second",
                offset: 2
            })
        );
    }

    #[test]
    fn tpm2b_checks_bound_before_reading() {
        // Claims 0xffff bytes; the bound is reported, not a truncation.
        let mut r = Reader::new(&[0xff, 0xff, 0], "T");
        assert_eq!(
            r.tpm2b("buf", 64),
            Err(TpmError::TooLarge {
                structure: "T",
                field: "buf",
                size: 0xffff,
                max: 64
            })
        );
        let mut r = Reader::new(&[0, 2, 0xaa, 0xbb, 0, 3, 1], "T");
        assert_eq!(r.tpm2b("a", 2).unwrap(), &[0xaa, 0xbb]);
        assert!(matches!(
            r.tpm2b("b", 8),
            Err(TpmError::Truncated { field: "b", .. })
        ));
    }

    #[test]
    fn window_stops_at_its_end_and_keeps_absolute_offsets() {
        let data = [0xee, 1, 2, 3, 4];
        let mut r = Reader::new(&data, "OUTER");
        r.u8("pad").unwrap();
        let (mut inner, contents) = r.window(2, "body", "INNER").unwrap();
        assert_eq!(contents, &[1, 2]);
        assert_eq!(inner.u8("a").unwrap(), 1);
        assert_eq!(
            inner.u16("b"),
            Err(TpmError::Truncated {
                structure: "INNER",
                field: "b",
                offset: 2
            })
        );
        assert_eq!(r.u16("rest").unwrap(), 0x0304);
        r.finish().unwrap();
    }

    #[test]
    fn nested_restores_outer_structure_name() {
        let mut r = Reader::new(&[0, 0, 0], "OUTER");
        let inner = r.nested("INNER", |r| r.u32("x"));
        assert!(matches!(
            inner,
            Err(TpmError::Truncated {
                structure: "INNER",
                ..
            })
        ));
        r.u8("y").unwrap();
        assert_eq!(
            r.finish(),
            Err(TpmError::TrailingBytes {
                structure: "OUTER",
                extra: 2
            })
        );
    }
}
