//! Local files that keep what could not be delivered (run records while
//! MongoDB is down, warnings while etcd is down) until it can be, across
//! restarts. One JSON document per line.
//!
//! Files are named `<kind>-<worker>-<n>.jsonl`. A worker takes over every
//! file of its kind at start by renaming it (atomic), so two workers
//! sharing a directory never send the same file twice at once; what they
//! send is idempotent anyway (record `_id`, warning key).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// Spill files of one kind (`logs` or `warnings`) in one directory.
pub struct Spill {
    dir: PathBuf,
    kind: &'static str,
    owner: String,
    counter: AtomicU64,
}

impl Spill {
    /// Spill files of `kind` in `dir`, written by `owner` (the worker id).
    pub fn new(dir: &Path, kind: &'static str, owner: &str) -> Self {
        // The owner ends up in a file name: keep it to safe characters.
        let owner = owner
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            dir: dir.to_path_buf(),
            kind,
            owner,
            counter: AtomicU64::new(0),
        }
    }

    /// Writes `items` to a new file and syncs it to disk.
    pub fn write<T: Serialize>(&self, items: &[T]) -> Result<PathBuf, Error> {
        std::fs::create_dir_all(&self.dir)?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let stamp = chrono::Utc::now().timestamp_millis();
        let path = self
            .dir
            .join(format!("{}-{}-{stamp}-{n}.jsonl", self.kind, self.owner));
        let tmp = path.with_extension("tmp");
        {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            for item in items {
                serde_json::to_writer(&mut file, item).map_err(std::io::Error::other)?;
                file.write_all(b"\n")?;
            }
            file.flush()?;
            file.get_ref().sync_all()?;
        }
        // Only complete files carry the `.jsonl` name that `claim` looks for.
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Takes over every file of this kind in the directory (left by this
    /// worker, by an earlier run, or by a crashed one) and returns them.
    pub fn claim(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let prefix = format!("{}-", self.kind);
        let mut claimed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&prefix) || !name.ends_with(".jsonl") {
                continue;
            }
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let target = self
                .dir
                .join(format!("{}-{}-claimed-{n}.jsonl", self.kind, self.owner));
            if std::fs::rename(entry.path(), &target).is_ok() {
                claimed.push(target);
            }
        }
        claimed.sort();
        claimed
    }

    /// Reads a claimed file. Lines that do not decode (a torn write from a
    /// crash) are reported and skipped.
    pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, Error> {
        let file = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut items = Vec::new();
        for (i, line) in file.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(item) => items.push(item),
                Err(e) => {
                    tracing::error!(file = %path.display(), line = i + 1, error = %e, "unreadable spilled item")
                }
            }
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_items_are_claimed_and_read_back() {
        let dir = std::env::temp_dir().join(format!("rcron-spill-{}", uuid::Uuid::now_v7()));
        let a = Spill::new(&dir, "logs", "host/1");
        a.write(&[1, 2]).expect("write");
        a.write(&[3]).expect("write");
        Spill::new(&dir, "warnings", "x")
            .write(&["w"])
            .expect("other kind");
        let b = Spill::new(&dir, "logs", "other");
        let files = b.claim();
        assert_eq!(files.len(), 2);
        let mut all: Vec<i32> = files
            .iter()
            .flat_map(|f| Spill::read::<i32>(f).expect("read"))
            .collect();
        all.sort();
        assert_eq!(all, vec![1, 2, 3]);
        assert!(
            a.claim().len() == 2,
            "claimed files can be taken over again after a crash"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
