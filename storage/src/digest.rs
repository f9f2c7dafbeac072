//! Content digests: `sha256:<64 lowercase hex>`.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::error::StorageError;

/// A validated sha256 content digest, written `sha256:<64 lowercase hex digits>`.
///
/// Other algorithms (`sha512:`, …) and any other spelling (uppercase hex, wrong length) are rejected, so a
/// `Digest` can safely be used as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The algorithm prefix, without the colon.
    pub const ALGORITHM: &'static str = "sha256";

    /// Parses `sha256:<hex>`.
    pub fn parse(s: &str) -> Result<Self, StorageError> {
        let invalid = |reason| StorageError::InvalidDigest {
            input: s.to_owned(),
            reason,
        };
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| invalid("missing \"sha256:\" prefix"))?;
        if alg != Self::ALGORITHM {
            return Err(invalid("unsupported algorithm (only sha256 is accepted)"));
        }
        Self::from_hex(hex)
            .map_err(|_| invalid("expected 64 lowercase hex digits after \"sha256:\""))
    }

    /// Builds a digest from its 64 lowercase hex digits (no prefix).
    pub fn from_hex(hex: &str) -> Result<Self, StorageError> {
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(StorageError::InvalidDigest {
                input: hex.to_owned(),
                reason: "expected 64 lowercase hex digits",
            });
        }
        Ok(Digest {
            hex: hex.to_owned(),
        })
    }

    /// The digest of `data`.
    pub fn of_bytes(data: &[u8]) -> Self {
        Self::from_hasher(sha2::Sha256::new_with_prefix(data))
    }

    pub(crate) fn from_hasher(hasher: sha2::Sha256) -> Self {
        let bytes = hasher.finalize();
        let mut hex = String::with_capacity(64);
        for b in bytes {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            hex.push(char::from(DIGITS[usize::from(b >> 4)]));
            hex.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
        Digest { hex }
    }

    /// The 64 hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", Self::ALGORITHM, self.hex)
    }
}

impl FromStr for Digest {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_displays() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::of_bytes(b""), d);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "sha256:../../../../../../../../../../../../../../../../../../../etc/passwd",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            let err = Digest::parse(bad).unwrap_err();
            assert!(
                matches!(err, StorageError::InvalidDigest { .. }),
                "{bad}: {err}"
            );
        }
    }
}
