//! How an API key's secret is kept: its SHA-256, never the secret. The
//! master's keys file holds the hex form that `rcronctl key hash` prints;
//! both use this module, so they cannot disagree.

use sha2::{Digest, Sha256};

/// The SHA-256 of a secret.
pub fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The hex SHA-256 of a secret, as the keys file holds it.
pub fn hash_secret(secret: &str) -> String {
    sha256(secret).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha256_in_lowercase_hex() {
        // `printf abc | sha256sum`
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
