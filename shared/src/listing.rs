//! Reading a whole etcd prefix in pages, at one revision.
//!
//! One range request for a big prefix does not fit in a gRPC answer: the
//! client refuses messages over 4 MiB, which 100,000 jobs (~26 MB) pass by
//! far, and then nothing is listed at all — a master could not fill its job
//! cache, a worker could not learn its jobs. So every full read of a prefix
//! goes through [`list_prefix`]: pages of [`PAGE_KEYS`] keys, every page
//! after the first read at the first page's revision, so the pages together
//! are one snapshot (a compaction in between fails the read, and the caller
//! reads again as after any error). A page that is still too big (values of
//! up to etcd's 1.5 MiB each) is asked for again with half as many keys.

use etcd_client::{Client, GetOptions, KeyValue};

/// Keys per page: ~260 KB for typical jobs, well under the 4 MiB answer
/// limit; halved for a page of big values.
pub const PAGE_KEYS: i64 = 1000;

/// Every key under a prefix, as of one revision.
#[derive(Debug, Default)]
pub struct Listing {
    /// The revision the listing is a snapshot of (watch from the next one).
    pub revision: i64,
    /// Keys (and values, unless listed keys-only) in key order.
    pub kvs: Vec<KeyValue>,
}

/// What to read of each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Keys and values.
    Values,
    /// Keys only (values empty).
    KeysOnly,
}

/// Every key under `prefix` (with its value, unless `read` says keys
/// only), in key order, as one snapshot.
pub async fn list_prefix(
    client: &Client,
    prefix: &str,
    read: Read,
) -> Result<Listing, etcd_client::Error> {
    let mut client = client.clone();
    let end = prefix_end(prefix.as_bytes());
    let mut from = prefix.as_bytes().to_vec();
    let mut listing = Listing::default();
    let mut limit = PAGE_KEYS;
    loop {
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(limit)
            .with_revision(listing.revision);
        if read == Read::KeysOnly {
            options = options.with_keys_only();
        }
        let mut resp = match client.get(from.clone(), Some(options)).await {
            Ok(resp) => resp,
            Err(e) if too_big(&e) && limit > 1 => {
                limit = (limit / 2).max(1);
                continue;
            }
            Err(e) => return Err(e),
        };
        if listing.revision == 0 {
            listing.revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        }
        let more = resp.more();
        let kvs = resp.take_kvs();
        match kvs.last() {
            Some(last) if more => {
                // The key right after the last one read.
                from = last.key().to_vec();
                from.push(0);
            }
            _ => {
                listing.kvs.extend(kvs);
                return Ok(listing);
            }
        }
        listing.kvs.extend(kvs);
        limit = PAGE_KEYS;
    }
}

/// The end of the range of keys starting with `prefix`: the prefix with its
/// last byte below 0xff incremented (every rcron prefix ends in `/`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // A prefix of only 0xff bytes: to the end of the keyspace.
    vec![0]
}

/// Whether etcd's answer was refused for its size (the client's 4 MiB
/// limit on a decoded message).
fn too_big(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_of_a_prefix_ends_after_its_last_key() {
        assert_eq!(prefix_end(b"/cron/jobs/"), b"/cron/jobs0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
