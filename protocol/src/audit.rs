//! The audit trail's hash chain, pure: the canonical encoding of one entry, its hash, the signed
//! chain head, and a streaming check of a whole chain (`docs/audit.md` documents the bytes).

use crate::bytes::Sha256Digest;
use crate::device::Actor;
use crate::verifier::AuditRecord;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Domain-separation prefix of an entry's canonical encoding (version 1).
pub const ENTRY_DOMAIN: &[u8] = b"vouch-audit-entry-v1\0";
/// Domain-separation prefix of the signed head message (version 1).
pub const HEAD_DOMAIN: &[u8] = b"vouch-audit-head-v1\0";

fn put_str(out: &mut Vec<u8>, s: &str) {
    // A u32 length always fits: entries are built from bounded strings (reasons, names, ids).
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// The canonical bytes of entry `seq` whose predecessor's hash is `prev`.
pub fn entry_bytes(seq: u64, rec: &AuditRecord, prev: &Sha256Digest) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + rec.reason.len());
    out.extend_from_slice(ENTRY_DOMAIN);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&rec.at.to_be_bytes());
    put_opt(&mut out, rec.device.as_ref().map(|d| d.as_str()));
    put_str(&mut out, rec.action.as_str());
    match &rec.actor {
        Actor::Verifier => out.push(0),
        Actor::Operator(name) => {
            out.push(1);
            put_str(&mut out, name);
        }
    }
    put_str(&mut out, &rec.reason);
    out.extend_from_slice(&prev.0);
    out
}

/// SHA-256 of [`entry_bytes`].
pub fn entry_hash(seq: u64, rec: &AuditRecord, prev: &Sha256Digest) -> Sha256Digest {
    Sha256Digest(Sha256::digest(entry_bytes(seq, rec, prev)).into())
}

/// The chain's last entry: its sequence number and hash (seq 0 and zeros for an empty chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Sha256Digest,
}

impl Head {
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: Sha256Digest::ZERO,
    };

    /// The message the verifier signs: [`HEAD_DOMAIN`] ‖ seq (u64 BE) ‖ hash.
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(HEAD_DOMAIN.len() + 40);
        m.extend_from_slice(HEAD_DOMAIN);
        m.extend_from_slice(&self.seq.to_be_bytes());
        m.extend_from_slice(&self.hash.0);
        m
    }

    pub fn sign(&self, key: &SigningKey) -> [u8; 64] {
        key.sign(&self.message()).to_bytes()
    }

    pub fn signature_valid(&self, key: &VerifyingKey, sig: &[u8]) -> bool {
        Signature::from_slice(sig).is_ok_and(|s| key.verify(&self.message(), &s).is_ok())
    }
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash.to_hex())
    }
}

impl FromStr for Head {
    type Err = String;

    /// `SEQ:HASH` (decimal sequence number, 64 hex digits), as `audit verify` prints it.
    fn from_str(s: &str) -> Result<Self, String> {
        let (seq, hash) = s
            .split_once(':')
            .ok_or_else(|| format!("head {s:?} is not SEQ:HASH"))?;
        let seq = seq
            .parse()
            .map_err(|_| format!("head {s:?}: sequence number {seq:?} is not a decimal number"))?;
        let hash = hash
            .parse()
            .map_err(|_| format!("head {s:?}: hash {hash:?} is not 64 hex digits"))?;
        Ok(Head { seq, hash })
    }
}

/// What is wrong with a chain, at the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The entry's stored hash is not the hash of its contents.
    HashMismatch { seq: u64 },
    /// The entry's `prev` is not the previous entry's hash.
    BrokenLink { seq: u64 },
    /// Entries before `seq` are missing (seq continuity broken).
    MissingEntry { seq: u64 },
    /// The entry could not be read at all.
    Unreadable { seq: u64, error: String },
    /// The stored head names an entry after the last one.
    HeadBeyondLast { head: u64, last: u64 },
    /// The stored head is not the last entry's seq and hash.
    HeadMismatch { head: u64, last: u64 },
    /// The head has no signature, or one that does not verify with the verifier's key.
    HeadSignatureInvalid { head: u64 },
    /// An auditor's recorded head is not in the chain.
    ExpectedHeadMissing { expected: Head },
}

impl Problem {
    /// The sequence number of the first bad entry (or of the head).
    pub fn seq(&self) -> u64 {
        match self {
            Problem::HashMismatch { seq }
            | Problem::BrokenLink { seq }
            | Problem::MissingEntry { seq }
            | Problem::Unreadable { seq, .. } => *seq,
            Problem::HeadBeyondLast { head, .. }
            | Problem::HeadMismatch { head, .. }
            | Problem::HeadSignatureInvalid { head } => *head,
            Problem::ExpectedHeadMissing { expected } => expected.seq,
        }
    }

    /// A stable snake_case name of the problem.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::HashMismatch { .. } => "hash_mismatch",
            Problem::BrokenLink { .. } => "broken_link",
            Problem::MissingEntry { .. } => "missing_entry",
            Problem::Unreadable { .. } => "unreadable_entry",
            Problem::HeadBeyondLast { .. } => "head_beyond_last",
            Problem::HeadMismatch { .. } => "head_mismatch",
            Problem::HeadSignatureInvalid { .. } => "head_signature_invalid",
            Problem::ExpectedHeadMissing { .. } => "expected_head_missing",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::HashMismatch { seq } => {
                write!(f, "entry {seq}: hash mismatch (its contents were changed)")
            }
            Problem::BrokenLink { seq } => write!(
                f,
                "entry {seq}: broken link (prev is not the previous entry's hash)"
            ),
            Problem::MissingEntry { seq } => write!(f, "entry {seq}: missing entry"),
            Problem::Unreadable { seq, error } => write!(f, "entry {seq}: unreadable: {error}"),
            Problem::HeadBeyondLast { head, last } => write!(
                f,
                "head {head} is beyond the last entry {last} (entries were removed)"
            ),
            Problem::HeadMismatch { head, last } => {
                write!(f, "head {head} does not match the last entry {last}")
            }
            Problem::HeadSignatureInvalid { head } => write!(
                f,
                "head {head}: head signature invalid (not signed by this verifier's key)"
            ),
            Problem::ExpectedHeadMissing { expected } => write!(
                f,
                "expected head {expected} is not in the chain (truncated or rewritten)"
            ),
        }
    }
}

/// Checks a chain entry by entry, in seq order, holding only the previous entry.
#[derive(Debug, Clone)]
pub struct ChainCheck {
    last: Head,
    entries: u64,
    expect: Option<Head>,
    expect_seen: bool,
}

impl ChainCheck {
    /// A check that also requires `expect` (an auditor's recorded head) to be an entry.
    pub fn new(expect: Option<Head>) -> Self {
        Self {
            last: Head::EMPTY,
            entries: 0,
            expect,
            expect_seen: false,
        }
    }

    /// The next stored entry: its seq, contents, stored `prev` and stored `hash`.
    pub fn entry(
        &mut self,
        seq: u64,
        rec: &AuditRecord,
        prev: &Sha256Digest,
        hash: &Sha256Digest,
    ) -> Result<(), Problem> {
        let want = self.last.seq.saturating_add(1);
        if seq != want {
            return Err(Problem::MissingEntry { seq: want });
        }
        if entry_hash(seq, rec, prev) != *hash {
            return Err(Problem::HashMismatch { seq });
        }
        if *prev != self.last.hash {
            return Err(Problem::BrokenLink { seq });
        }
        if let Some(e) = self.expect
            && e.seq == seq
        {
            if e.hash != *hash {
                return Err(Problem::ExpectedHeadMissing { expected: e });
            }
            self.expect_seen = true;
        }
        self.last = Head { seq, hash: *hash };
        self.entries += 1;
        Ok(())
    }

    /// An entry that did not decode.
    pub fn unreadable(&self, seq: u64, error: String) -> Problem {
        Problem::Unreadable { seq, error }
    }

    /// Ends the walk: the stored head must be the last entry and be signed by `key`.
    pub fn finish(
        self,
        head: Head,
        signature: Option<&[u8]>,
        key: &VerifyingKey,
    ) -> Result<(u64, Head), Problem> {
        if head.seq > self.last.seq {
            return Err(Problem::HeadBeyondLast {
                head: head.seq,
                last: self.last.seq,
            });
        }
        if head != self.last {
            return Err(Problem::HeadMismatch {
                head: head.seq,
                last: self.last.seq,
            });
        }
        if !signature.is_some_and(|s| head.signature_valid(key, s)) {
            return Err(Problem::HeadSignatureInvalid { head: head.seq });
        }
        if let Some(e) = self.expect
            && !self.expect_seen
        {
            return Err(Problem::ExpectedHeadMissing { expected: e });
        }
        Ok((self.entries, head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::AuditAction;

    fn rec(i: u64) -> AuditRecord {
        AuditRecord {
            at: 1000 + i,
            device: i.is_multiple_of(2).then(|| "t1".parse().unwrap()),
            action: AuditAction::Quarantined,
            actor: Actor::Operator("ops".into()),
            reason: format!("reason {i}"),
        }
    }

    /// (seq, record, prev, hash) of a valid chain of `n` entries.
    fn chain(n: u64) -> Vec<(u64, AuditRecord, Sha256Digest, Sha256Digest)> {
        let mut prev = Sha256Digest::ZERO;
        (1..=n)
            .map(|s| {
                let r = rec(s);
                let h = entry_hash(s, &r, &prev);
                let e = (s, r, prev, h);
                prev = h;
                e
            })
            .collect()
    }

    fn check(
        entries: &[(u64, AuditRecord, Sha256Digest, Sha256Digest)],
        head: Head,
        sig: Option<&[u8]>,
        expect: Option<Head>,
    ) -> Result<(u64, Head), Problem> {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut c = ChainCheck::new(expect);
        for (s, r, p, h) in entries {
            c.entry(*s, r, p, h)?;
        }
        c.finish(head, sig, &key.verifying_key())
    }

    fn signed(h: Head) -> [u8; 64] {
        h.sign(&SigningKey::from_bytes(&[7; 32]))
    }

    #[test]
    fn a_valid_chain_passes_and_reports_its_head() {
        let c = chain(4);
        let head = Head {
            seq: 4,
            hash: c[3].3,
        };
        assert_eq!(check(&c, head, Some(&signed(head)), None), Ok((4, head)));
        let empty = check(&[], Head::EMPTY, Some(&signed(Head::EMPTY)), None);
        assert_eq!(empty, Ok((0, Head::EMPTY)));
    }

    #[test]
    fn each_field_is_covered_by_the_hash() {
        let base = rec(2);
        let h = entry_hash(2, &base, &Sha256Digest::ZERO);
        let mut other = base.clone();
        other.reason.push('!');
        assert_ne!(entry_hash(2, &other, &Sha256Digest::ZERO), h);
        let mut other = base.clone();
        other.device = None;
        assert_ne!(entry_hash(2, &other, &Sha256Digest::ZERO), h);
        let mut other = base.clone();
        other.actor = Actor::Verifier;
        assert_ne!(entry_hash(2, &other, &Sha256Digest::ZERO), h);
        assert_ne!(entry_hash(3, &base, &Sha256Digest::ZERO), h);
        assert_ne!(entry_hash(2, &base, &Sha256Digest([1; 32])), h);
    }

    #[test]
    fn an_edited_entry_is_a_hash_mismatch_at_its_seq() {
        let mut c = chain(4);
        c[1].1.reason = "nothing happened".into();
        let head = Head {
            seq: 4,
            hash: c[3].3,
        };
        let e = check(&c, head, Some(&signed(head)), None).unwrap_err();
        assert_eq!(e, Problem::HashMismatch { seq: 2 });
        assert!(e.to_string().contains("entry 2: hash mismatch"), "{e}");
    }

    #[test]
    fn an_edited_prev_with_a_recomputed_hash_is_a_broken_link() {
        let mut c = chain(4);
        c[2].2 = Sha256Digest([9; 32]);
        c[2].3 = entry_hash(3, &c[2].1, &c[2].2);
        let head = Head {
            seq: 4,
            hash: c[3].3,
        };
        let e = check(&c, head, Some(&signed(head)), None).unwrap_err();
        assert_eq!(e, Problem::BrokenLink { seq: 3 });
    }

    #[test]
    fn a_removed_entry_is_missing() {
        let mut c = chain(4);
        c.remove(1);
        let head = Head {
            seq: 4,
            hash: c[2].3,
        };
        let e = check(&c, head, Some(&signed(head)), None).unwrap_err();
        assert_eq!(e, Problem::MissingEntry { seq: 2 });
    }

    #[test]
    fn a_truncated_tail_is_caught_by_the_head_or_the_expected_head() {
        let c = chain(4);
        let full = Head {
            seq: 4,
            hash: c[3].3,
        };
        let e = check(&c[..2], full, Some(&signed(full)), None).unwrap_err();
        assert_eq!(e, Problem::HeadBeyondLast { head: 4, last: 2 });
        // The head was put back to an older, genuinely signed one: only --expect sees it.
        let old = Head {
            seq: 2,
            hash: c[1].3,
        };
        assert!(check(&c[..2], old, Some(&signed(old)), None).is_ok());
        let e = check(&c[..2], old, Some(&signed(old)), Some(full)).unwrap_err();
        assert_eq!(e, Problem::ExpectedHeadMissing { expected: full });
        // A recorded head still in the chain passes.
        assert!(check(&c, full, Some(&signed(full)), Some(old)).is_ok());
        let wrong = Head {
            seq: 2,
            hash: Sha256Digest([3; 32]),
        };
        assert!(check(&c, full, Some(&signed(full)), Some(wrong)).is_err());
    }

    #[test]
    fn a_rewritten_chain_needs_the_key() {
        let c = chain(3);
        let head = Head {
            seq: 3,
            hash: c[2].3,
        };
        let forged = SigningKey::from_bytes(&[8; 32])
            .sign(&head.message())
            .to_bytes();
        let e = check(&c, head, Some(&forged), None).unwrap_err();
        assert_eq!(e, Problem::HeadSignatureInvalid { head: 3 });
        assert!(check(&c, head, None, None).is_err());
        let older = Head {
            seq: 3,
            hash: c[1].3,
        };
        assert!(check(&c, head, Some(&signed(older)), None).is_err());
    }

    #[test]
    fn heads_parse_and_print_as_seq_colon_hash() {
        let h = Head {
            seq: 12,
            hash: Sha256Digest([0xab; 32]),
        };
        assert_eq!(h.to_string().parse::<Head>(), Ok(h));
        assert!("12".parse::<Head>().unwrap_err().contains("SEQ:HASH"));
        assert!("x:00".parse::<Head>().unwrap_err().contains("decimal"));
        assert!("1:zz".parse::<Head>().unwrap_err().contains("64 hex"));
    }
}
