//! How a master proves to a worker that it may read one run's live output
//! (ARCHITECTURE §6, "Live output"): masters and workers share a cluster
//! secret (`cluster_secret_file`); for each stream a master signs a grant
//! for that run id, valid for [`GRANT_TTL_SECS`], and sends it as
//! `Authorization: Bearer <grant>`. The secret itself never travels, so an
//! address in the registry that is not a real worker learns nothing it
//! could reuse, and a leaked grant opens one run for a minute.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::Error;

/// How long a grant is accepted after it is signed (seconds). Only the
/// request that opens a stream needs it: the stream then lasts as long as
/// the run.
pub const GRANT_TTL_SECS: i64 = 60;

/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// Clock difference between a master and a worker that a grant survives
/// (seconds); workers refuse to fire beyond half a second of skew anyway.
const SKEW_SECS: i64 = 5;

/// The secret masters and workers share; never printed.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(…)")
    }
}

/// Why a worker refuses a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// No `Authorization: Bearer` header.
    #[error(
        "missing credential: send `Authorization: Bearer <grant>` signed with the cluster secret"
    )]
    Missing,
    /// Not of the form `<expiry>.<signature>`.
    #[error("malformed grant")]
    Malformed,
    /// Its time is over.
    #[error("the grant expired; the master's and this worker's clocks may differ")]
    Expired,
    /// Not signed with this worker's secret, or for another run.
    #[error(
        "the grant is not valid for this run (is cluster_secret_file the same on masters and workers?)"
    )]
    BadSignature,
}

impl ClusterSecret {
    /// A secret from its bytes; at least [`MIN_SECRET_BYTES`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(Error::Config(format!(
                "the cluster secret must be at least {MIN_SECRET_BYTES} bytes"
            )));
        }
        Ok(Self(bytes))
    }

    /// Reads the secret from `path`, without its trailing newline.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read(path).map_err(|e| {
            Error::Config(format!(
                "cannot read cluster secret file {}: {e}",
                path.display()
            ))
        })?;
        let end = text
            .iter()
            .rposition(|b| !matches!(b, b'\n' | b'\r'))
            .map_or(0, |i| i + 1);
        Self::new(&text[..end]).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Reads the secret at `path`, if one is configured.
    pub fn load(path: Option<&Path>) -> Result<Option<Self>, Error> {
        path.map(Self::from_file).transpose()
    }

    fn mac(&self, run_id: &str, expiry: i64) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"rcron live output v1\n");
        mac.update(run_id.as_bytes());
        mac.update(b"\n");
        mac.update(expiry.to_string().as_bytes());
        mac
    }

    /// A grant to read run `run_id`'s output, signed at `now_secs` (Unix
    /// seconds): `<expiry>.<hex HMAC-SHA256>`.
    pub fn grant(&self, run_id: &str, now_secs: i64) -> String {
        let expiry = now_secs + GRANT_TTL_SECS;
        let tag = self.mac(run_id, expiry).finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("{expiry}.{hex}")
    }

    /// Whether `grant` allows reading run `run_id` at `now_secs`.
    pub fn verify(&self, grant: &str, run_id: &str, now_secs: i64) -> Result<(), GrantError> {
        let (expiry, hex) = grant.split_once('.').ok_or(GrantError::Malformed)?;
        let expiry: i64 = expiry.parse().map_err(|_| GrantError::Malformed)?;
        let tag = decode_hex(hex).ok_or(GrantError::Malformed)?;
        // The signature first: an unsigned expiry says nothing.
        self.mac(run_id, expiry)
            .verify_slice(&tag)
            .map_err(|_| GrantError::BadSignature)?;
        if now_secs > expiry + SKEW_SECS || expiry > now_secs + GRANT_TTL_SECS + SKEW_SECS {
            return Err(GrantError::Expired);
        }
        Ok(())
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> ClusterSecret {
        ClusterSecret::new(s.as_bytes()).expect("long enough")
    }

    #[test]
    fn a_grant_opens_its_run_only_and_only_for_a_minute() {
        let s = secret("0123456789abcdef-cluster");
        let g = s.grant("run-1", 1_000);
        assert_eq!(s.verify(&g, "run-1", 1_000), Ok(()));
        assert_eq!(s.verify(&g, "run-1", 1_000 + GRANT_TTL_SECS), Ok(()));
        assert_eq!(
            s.verify(&g, "run-1", 1_000 + GRANT_TTL_SECS + SKEW_SECS + 1),
            Err(GrantError::Expired)
        );
        assert_eq!(s.verify(&g, "run-2", 1_000), Err(GrantError::BadSignature));
        let other = secret("another-secret-of-16+");
        assert_eq!(
            other.verify(&g, "run-1", 1_000),
            Err(GrantError::BadSignature)
        );
        // A longer expiry cannot be written in: the signature covers it.
        let (_, sig) = g.split_once('.').expect("two parts");
        let forged = format!("{}.{sig}", 1_000 + 3600);
        assert_eq!(
            s.verify(&forged, "run-1", 2_000),
            Err(GrantError::BadSignature)
        );
        assert_eq!(
            s.verify("nonsense", "run-1", 1_000),
            Err(GrantError::Malformed)
        );
        assert_eq!(
            s.verify("12.zz", "run-1", 1_000),
            Err(GrantError::Malformed)
        );
    }

    #[test]
    fn short_secrets_are_refused_and_files_lose_their_newline() {
        assert!(ClusterSecret::new(b"short".to_vec()).is_err());
        let path = std::env::temp_dir().join(format!("rcron-secret-{}", uuid::Uuid::now_v7()));
        std::fs::write(&path, "0123456789abcdef\n").expect("write");
        let from_file = ClusterSecret::from_file(&path).expect("loads");
        let g = from_file.grant("r", 5);
        assert_eq!(secret("0123456789abcdef").verify(&g, "r", 5), Ok(()));
        assert!(format!("{from_file:?}").contains('…'), "never printed");
        let _ = std::fs::remove_file(path);
    }
}
