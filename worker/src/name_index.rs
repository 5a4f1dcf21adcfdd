//! The scheduler's index from job name to slot: a hash table of slot
//! numbers that reads each name from the slot's job, instead of a map that
//! keeps a second copy of every name (with 100k jobs, ~6 MiB of keys).
//!
//! The caller passes how to read a slot's name; the invariant it keeps is
//! that an indexed slot's job keeps its name until the slot is removed
//! from the index.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rcron_shared::JobName;

/// Slot numbers by the name of the job in the slot.
#[derive(Default)]
pub struct NameIndex {
    table: HashTable<u32>,
    hasher: std::hash::RandomState,
}

impl NameIndex {
    /// The slot of `name`, if indexed.
    pub fn get<'a>(&self, name: &JobName, name_of: impl Fn(u32) -> &'a JobName) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        self.table
            .find(hash, |&slot| name_of(slot) == name)
            .copied()
    }

    /// Indexes `slot` under its job's name, which is not indexed yet.
    pub fn insert<'a>(&mut self, slot: u32, name_of: impl Fn(u32) -> &'a JobName) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(name_of(slot));
        self.table
            .insert_unique(hash, slot, |&s| hasher.hash_one(name_of(s)));
    }

    /// Removes `name`; returns its slot.
    pub fn remove<'a>(
        &mut self,
        name: &JobName,
        name_of: impl Fn(u32) -> &'a JobName,
    ) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        match self.table.find_entry(hash, |&slot| name_of(slot) == name) {
            Ok(entry) => Some(entry.remove().0),
            Err(_) => None,
        }
    }

    /// Every indexed slot, in no order.
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.iter().copied()
    }

    /// How many names are indexed.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no name is indexed.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_inserts_and_removes_by_the_name_in_the_slot() {
        let names: Vec<JobName> = (0..1000)
            .map(|i| JobName::new(format!("job-{i}")).expect("valid name"))
            .collect();
        let name_of = |slot: u32| &names[slot as usize];
        let mut index = NameIndex::default();
        for slot in 0..1000 {
            index.insert(slot, name_of);
        }
        assert_eq!(index.len(), 1000);
        assert_eq!(index.get(&names[417], name_of), Some(417));
        let unknown = JobName::new("job-1000").expect("valid name");
        assert_eq!(index.get(&unknown, name_of), None);
        assert_eq!(index.remove(&names[417], name_of), Some(417));
        assert_eq!(index.remove(&names[417], name_of), None);
        assert_eq!(index.get(&names[417], name_of), None);
        assert_eq!(index.get(&names[418], name_of), Some(418));
        let mut all: Vec<u32> = index.slots().collect();
        all.sort_unstable();
        assert_eq!(all.len(), 999);
        assert!(!all.contains(&417) && all.contains(&999));
        assert!(!index.is_empty());
    }
}
