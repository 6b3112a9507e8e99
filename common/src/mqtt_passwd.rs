//! MQTT credentials in Mosquitto's own formats: random passwords, and the `$7$` PBKDF2-SHA512
//! password-file hashes (`$7$<iterations>$<salt b64>$<hash b64>`, what `mosquitto_passwd`
//! writes). The agent puts only the hash of its password into its signed enrollment request; the
//! verifier puts hashes into the password file its managed Mosquitto reads. Passwords never
//! leave the host that generated them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::keys::{KeyError, random_bytes};

/// PBKDF2 iterations of the hashes vouch writes: Mosquitto's default (101). A low count is fine
/// here because every vouch password is 32 random bytes (256 bits of entropy): the work factor
/// protects guessable human passwords, and these cannot be guessed at any iteration count.
pub const ITERATIONS: u32 = 101;

/// Salt length Mosquitto uses (12 bytes).
pub const SALT_LEN: usize = 12;

/// A fresh password: 32 bytes from the OS CSPRNG, hex-encoded (64 characters).
pub fn generate_password() -> Result<Zeroizing<String>, KeyError> {
    let bytes = random_bytes::<32>()?;
    Ok(Zeroizing::new(hex::encode(bytes.as_ref())))
}

/// The password-file hash of `password` with `salt`.
pub fn hash_with_salt(password: &str, salt: &[u8; SALT_LEN], iterations: u32) -> String {
    let mut out = Zeroizing::new([0u8; 64]);
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, out.as_mut());
    format!(
        "$7${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(out.as_ref())
    )
}

/// The hash of a vouch-generated password with a salt derived from the password itself, so
/// hashing the same password again gives the same line (re-running `enroll` reproduces the same
/// request). A per-password salt exists to defeat precomputation over likely passwords; a
/// 256-bit random password has no likely values, so deriving the salt from it loses nothing.
/// Do not use this for human-chosen passwords: use [`hash_with_salt`] with a random salt.
pub fn hash_generated(password: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"vouch mqtt password salt v1\0")
        .chain_update(password.as_bytes())
        .finalize();
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&digest[..SALT_LEN]);
    hash_with_salt(password, &salt, ITERATIONS)
}

/// The hash of a password with a fresh random salt.
pub fn hash_random_salt(password: &str) -> Result<String, KeyError> {
    let salt = random_bytes::<SALT_LEN>()?;
    Ok(hash_with_salt(password, &salt, ITERATIONS))
}

/// Whether `password` matches the `$7$` line `hash` (used by tests and self-checks).
pub fn verify(password: &str, hash: &str) -> bool {
    let mut parts = hash.split('$');
    let (Some(""), Some("7"), Some(iter), Some(salt), Some(want), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(want)) = (
        iter.parse::<u32>(),
        STANDARD.decode(salt),
        STANDARD.decode(want),
    ) else {
        return false;
    };
    let mut got = Zeroizing::new(vec![0u8; want.len()]);
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, iterations, got.as_mut());
    got.iter().zip(&want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 && !want.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_hash_written_by_mosquitto_passwd() {
        // `mosquitto_passwd -b FILE t1 pw1` (mosquitto 2.0.11) wrote this line.
        let line = "$7$101$wAYrhYI0sy/Kr09q$Gz3FBqER4IbB4vdN6Pqm4i3pNkRLjmyASs5JnGO+MTVFFcguGwJUZUPY1gjeDtYULDrKDdnUimago4n4sSJ4Rg==";
        assert!(verify("pw1", line));
        assert!(!verify("pw2", line));
        let salt: [u8; SALT_LEN] = STANDARD
            .decode("wAYrhYI0sy/Kr09q")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(hash_with_salt("pw1", &salt, 101), line);
    }

    #[test]
    fn generated_passwords_hash_reproducibly_and_differ() {
        let a = generate_password().unwrap();
        let b = generate_password().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(*a, *b);
        assert_eq!(hash_generated(&a), hash_generated(&a));
        assert!(verify(&a, &hash_generated(&a)));
        assert!(!verify(&b, &hash_generated(&a)));
        assert_ne!(hash_random_salt(&a).unwrap(), hash_random_salt(&a).unwrap());
    }

    #[test]
    fn malformed_hashes_never_verify() {
        for bad in [
            "",
            "$7$",
            "$6$101$aaaa$bbbb",
            "$7$x$aaaa$bbbb",
            "$7$101$!!$bbbb",
        ] {
            assert!(!verify("pw", bad), "{bad}");
        }
    }
}
