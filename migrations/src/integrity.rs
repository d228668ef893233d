//! rind's own check on the records tree: how many records there are and an order-independent
//! digest of them, kept in [`crate::META_TREE`] and changed with every record (the server
//! keeps it in a larger "ledger" value there, with the number of changes; this crate writes
//! the bare form for stores that predate it).
//!
//! sled opens some damaged stores without an error and with entries missing; comparing the
//! tree against this on open is how rind notices.
//!
//! The digest is the wrapping sum of one 64-bit hash per entry, so a write updates it from the
//! old and new entry alone (subtract one, add the other) without reading the tree. It guards
//! against damage, not against an adversary, so FNV-1a with a strong final mix is enough, and
//! it is spelled out here so it never changes with a Rust release.

use sled::Tree;

/// Name of the tree holding the local records (created by schema version 1).
pub const RECORDS_TREE: &str = "records";
/// Key of the records' integrity data in [`crate::META_TREE`].
pub const INTEGRITY_KEY: &[u8] = b"records_integrity";

/// Count and digest of a records tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Integrity {
    /// Number of entries.
    pub count: u64,
    /// Wrapping sum of [`entry_hash`] over the entries.
    pub digest: u64,
}

impl Integrity {
    /// Adds one entry.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        self.count = self.count.wrapping_add(1);
        self.digest = self.digest.wrapping_add(entry_hash(key, value));
    }

    /// Takes away one entry that [`Integrity::add`] added.
    pub fn remove(&mut self, key: &[u8], value: &[u8]) {
        self.count = self.count.wrapping_sub(1);
        self.digest = self.digest.wrapping_sub(entry_hash(key, value));
    }

    /// The integrity of `tree` as it is now.
    pub fn compute(tree: &Tree) -> sled::Result<Integrity> {
        let mut integrity = Integrity::default();
        for entry in tree.iter() {
            let (key, value) = entry?;
            integrity.add(&key, &value);
        }
        Ok(integrity)
    }

    /// The stored form: count then digest, big-endian.
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0; 16];
        let (count, digest) = out.split_at_mut(8);
        count.copy_from_slice(&self.count.to_be_bytes());
        digest.copy_from_slice(&self.digest.to_be_bytes());
        out
    }

    /// Reads the stored form written by [`Integrity::encode`].
    pub fn decode(bytes: &[u8]) -> Option<Integrity> {
        let raw: [u8; 16] = bytes.try_into().ok()?;
        let (count, digest) = raw.split_at(8);
        Some(Integrity {
            count: u64::from_be_bytes(count.try_into().ok()?),
            digest: u64::from_be_bytes(digest.try_into().ok()?),
        })
    }

    /// Writes this into `meta` (the migration, which runs with no writer about).
    pub fn store(&self, meta: &Tree) -> sled::Result<()> {
        meta.insert(INTEGRITY_KEY, &self.encode())?;
        Ok(())
    }
}

/// The hash of one entry: FNV-1a over the key's length, the key and the value, then the
/// splitmix64 finaliser so that similar entries spread over all 64 bits.
pub fn entry_hash(key: &[u8], value: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let key_len = u64::try_from(key.len()).unwrap_or(u64::MAX).to_be_bytes();
    let mut h = OFFSET;
    for &b in key_len.iter().chain(key).chain(value) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fixed_across_builds() {
        // A changed hash would make every existing store look damaged.
        // Values computed outside Rust from the definition above.
        assert_eq!(entry_hash(b"", b""), 0x813f_0174_a236_7c13);
        assert_eq!(entry_hash(b"id1", b"{\"a\":1}"), 0xffdc_4113_4a52_75f1);
        assert_ne!(entry_hash(b"ab", b"c"), entry_hash(b"a", b"bc"));
    }

    #[test]
    fn adding_and_removing_is_order_free_and_round_trips() {
        let mut a = Integrity::default();
        a.add(b"k1", b"v1");
        a.add(b"k2", b"v2");
        let mut b = Integrity::default();
        b.add(b"k2", b"v2");
        b.add(b"k1", b"v1");
        assert_eq!(a, b);
        b.remove(b"k2", b"v2");
        assert_eq!(b.count, 1);
        assert_ne!(a, b);
        assert_eq!(Integrity::decode(&a.encode()), Some(a));
        assert_eq!(Integrity::decode(b"short"), None);
    }
}
