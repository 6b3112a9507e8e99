//! Text helpers for event data: UTF-16LE and ASCII strings as firmware writes them (NUL-terminated
//! or not), and escaping for one-line summaries.

/// The UTF-16LE code units of `bytes`; an odd trailing byte is ignored.
pub(crate) fn utf16_units(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    let (units, _odd) = bytes.as_chunks::<2>();
    units.iter().map(|&unit| u16::from_le_bytes(unit))
}

/// Decodes UTF-16LE code units up to the first NUL unit (or the end); unpaired surrogates become
/// U+FFFD and an odd trailing byte is ignored.
pub(crate) fn utf16_lossy_until_nul(bytes: &[u8]) -> String {
    let units = utf16_units(bytes).take_while(|&unit| unit != 0);
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Strictly decodes a NUL-terminated UTF-16LE string: whole code units, valid UTF-16, no control
/// characters, NULs only as the terminator (and padding after it). `None` if `bytes` is not such a
/// string.
pub(crate) fn utf16_text(bytes: &[u8]) -> Option<String> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let mut units: Vec<u16> = utf16_units(bytes).collect();
    if units.last() != Some(&0) {
        return None;
    }
    while units.last() == Some(&0) {
        units.pop();
    }
    let text = String::from_utf16(&units).ok()?;
    (!text.chars().any(char::is_control)).then_some(text)
}

/// Whether `bytes` holds UTF-16LE text rather than ASCII/UTF-8: the first character has a zero
/// high byte and there are NULs before the trailing NUL padding (ASCII strings have no interior
/// NULs; UTF-16 text of Latin characters is half NULs). The length may be odd: systemd-boot has
/// logged UTF-16 command lines with one byte too many.
pub(crate) fn looks_like_utf16(bytes: &[u8]) -> bool {
    bytes.get(1) == Some(&0) && trim_trailing_nuls(bytes).contains(&0)
}

/// Decodes ASCII or UTF-8 text, replacing invalid sequences and dropping trailing NULs.
pub(crate) fn ascii_lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(trim_trailing_nuls(bytes)).into_owned()
}

/// The text if `bytes`, less trailing NULs, is non-empty printable ASCII (tabs and line breaks
/// allowed), else `None`.
pub(crate) fn printable_ascii(bytes: &[u8]) -> Option<String> {
    let trimmed = trim_trailing_nuls(bytes);
    let printable = |b: &u8| matches!(b, b' '..=b'~' | b'\t' | b'\n' | b'\r');
    (!trimmed.is_empty() && trimmed.iter().all(printable))
        .then(|| String::from_utf8_lossy(trimmed).into_owned())
}

/// Text or UTF-16 text, whichever the bytes look like.
pub(crate) fn any_text(bytes: &[u8]) -> String {
    if looks_like_utf16(bytes) {
        utf16_lossy_until_nul(bytes)
    } else {
        ascii_lossy(bytes)
    }
}

pub(crate) fn trim_trailing_nuls(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes.get(..end).unwrap_or_default()
}

/// `text` with control characters escaped (`\n`, `\u{1b}`, ...) so that it fits on one line.
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` cut to at most `max` characters, with an ellipsis if it was cut.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or_default()),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn utf16_decoding_stops_at_nul_and_survives_bad_input() {
        assert_eq!(utf16_lossy_until_nul(&utf16("db\0junk")), "db");
        assert_eq!(
            utf16_lossy_until_nul(&[b'a', 0, b'b']),
            "a",
            "odd byte ignored"
        );
        assert_eq!(
            utf16_lossy_until_nul(&[0x00, 0xd8]),
            "\u{fffd}",
            "unpaired surrogate"
        );
        assert_eq!(utf16_text(&utf16("1.02\0")).as_deref(), Some("1.02"));
        assert_eq!(utf16_text(&utf16("1.02")), None, "not NUL-terminated");
        assert_eq!(utf16_text(&[0, 0]).as_deref(), Some(""));
        assert_eq!(utf16_text(&[0x00, 0xd8]), None);
        assert_eq!(utf16_text(&utf16("a\nb")), None, "control character");
        assert_eq!(utf16_text(b"a"), None);
    }

    #[test]
    fn utf16_is_told_apart_from_ascii() {
        assert!(looks_like_utf16(&utf16(" console=ttyS0\0")));
        assert!(!looks_like_utf16(b"grub_cmd: linux /vmlinuz\0"));
        assert!(!looks_like_utf16(b"ab\0\0"));
        let mut odd = utf16("initrd=\\x.img\0");
        odd.push(0);
        assert!(looks_like_utf16(&odd), "odd length from systemd-boot");
        assert_eq!(any_text(&odd), "initrd=\\x.img");
        assert_eq!(any_text(&utf16("quiet\0")), "quiet");
        assert_eq!(any_text(b"grub_cmd: ls\0"), "grub_cmd: ls");
    }

    #[test]
    fn ascii_helpers() {
        assert_eq!(ascii_lossy(b"abc\0\0"), "abc");
        assert_eq!(ascii_lossy(b"\0"), "");
        assert_eq!(printable_ascii(b"ACPI DATA").as_deref(), Some("ACPI DATA"));
        assert_eq!(printable_ascii(b"\x00\x00\x90\x00"), None);
        assert_eq!(printable_ascii(b"\0\0"), None);
        assert_eq!(one_line("sbat,1\n\x1b"), "sbat,1\\n\\u{1b}");
        assert_eq!(truncate_chars("héllo", 3), "hél…");
        assert_eq!(truncate_chars("hé", 3), "hé");
    }
}
