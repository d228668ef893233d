//! A compact set of domain names for the blocking check, built once per list change and then
//! only read.
//!
//! A million names as `HashSet<String>` cost about 80 MiB (a heap block, a pointer and a length
//! each, plus the table). Here every name sits once in one byte arena (`[flags][len][bytes]`),
//! and the table is open addressing over `u32` arena offsets at most half full: about
//! 2 + the name's length bytes per name plus 8 bytes of table, ~30 MiB for a million.

/// The name itself is blocked (hosts and plain-domain lines).
pub const EXACT: u8 = 1;
/// The name and every name below it are blocked (AdBlock `||domain^`).
pub const SUBTREE: u8 = 2;

/// Names (lower-case, dotted, no trailing dot) with their [`EXACT`]/[`SUBTREE`] flags.
#[derive(Debug, Clone, Default)]
pub struct DomainSet {
    /// Entries back to back: flags, length, name bytes.
    arena: Vec<u8>,
    /// 0 for an empty slot, else the entry's arena offset + 1; a power of two long.
    slots: Vec<u32>,
    len: usize,
    /// Whether any entry has [`SUBTREE`]: without one, parents need no lookup.
    any_subtree: bool,
}

impl DomainSet {
    /// An empty set with room for `names` names before it grows.
    pub fn with_capacity(names: usize) -> Self {
        DomainSet {
            arena: Vec::with_capacity(names.saturating_mul(32)),
            slots: vec![0; table_size(names)],
            len: 0,
            any_subtree: false,
        }
    }

    /// How many distinct names it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no name.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Gives back the arena's spare room once every name is in.
    pub fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.slots.capacity() * std::mem::size_of::<u32>()
    }

    /// Adds `name` with `flags` (or-ed into the flags it already has). Returns false, adding
    /// nothing, for a name longer than 255 bytes or when the arena is full (4 GiB).
    pub fn insert(&mut self, name: &[u8], flags: u8) -> bool {
        let Ok(len) = u8::try_from(name.len()) else {
            return false;
        };
        if let Some(at) = self.find(name) {
            if let Some(f) = self.arena.get_mut(at) {
                *f |= flags;
            }
            self.any_subtree |= flags & SUBTREE != 0;
            return true;
        }
        let Ok(offset) = u32::try_from(self.arena.len()) else {
            return false;
        };
        if offset == u32::MAX {
            return false;
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.arena.push(flags);
        self.arena.push(len);
        self.arena.extend_from_slice(name);
        place(&mut self.slots, hash(name), offset + 1);
        self.len += 1;
        self.any_subtree |= flags & SUBTREE != 0;
        true
    }

    /// The flags of `name`, 0 when it is not in the set.
    pub fn flags(&self, name: &[u8]) -> u8 {
        self.find(name)
            .and_then(|at| self.arena.get(at).copied())
            .unwrap_or(0)
    }

    /// Whether `name` (lower-case, dotted, no trailing dot) is blocked: it is in the set, or a
    /// parent is with [`SUBTREE`]. `starts` are the offsets in `name` where each label begins,
    /// the first being 0.
    pub fn blocks(&self, name: &[u8], starts: &[usize]) -> bool {
        if self.len == 0 {
            return false;
        }
        if self.flags(name) != 0 {
            return true;
        }
        if !self.any_subtree {
            return false;
        }
        starts
            .iter()
            .skip(1)
            .filter_map(|&s| name.get(s..))
            .any(|parent| self.flags(parent) & SUBTREE != 0)
    }

    /// The arena offset of `name`'s flags byte.
    fn find(&self, name: &[u8]) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = (hash(name) as usize) & mask;
        // At most half full, so an empty slot ends every probe; the count bound is for safety.
        for _ in 0..self.slots.len() {
            let slot = *self.slots.get(i)?;
            if slot == 0 {
                return None;
            }
            let at = (slot - 1) as usize;
            if self.entry(at) == Some(name) {
                return Some(at);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// The name stored at `at`.
    fn entry(&self, at: usize) -> Option<&[u8]> {
        let len = usize::from(*self.arena.get(at + 1)?);
        self.arena.get(at + 2..at + 2 + len)
    }

    /// Doubles the table and places every entry again.
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(16);
        self.slots = vec![0; size];
        let mut at = 0;
        while let Some(len) = self.arena.get(at + 1).map(|&l| usize::from(l)) {
            let name = self.arena.get(at + 2..at + 2 + len).unwrap_or_default();
            place(&mut self.slots, hash(name), at as u32 + 1);
            at += 2 + len;
        }
    }
}

/// Puts `value` in the first free slot from `hash` on.
fn place(slots: &mut [u32], hash: u64, value: u32) {
    let mask = slots.len().saturating_sub(1);
    let mut i = (hash as usize) & mask;
    for _ in 0..slots.len() {
        match slots.get_mut(i) {
            Some(slot) if *slot == 0 => {
                *slot = value;
                return;
            }
            _ => i = (i + 1) & mask,
        }
    }
}

/// A power of two at least twice `names` (and at least 16).
fn table_size(names: usize) -> usize {
    names
        .saturating_mul(2)
        .max(16)
        .checked_next_power_of_two()
        .unwrap_or(1 << 31)
}

/// FNV-1a: names are short, and a keyed hash would cost more than the rest of the lookup. The
/// table's contents are the operator's lists, so a client choosing names cannot lengthen its
/// probe chains.
fn hash(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Fold the high bits in: the mask keeps only the low ones.
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(name: &str) -> Vec<usize> {
        let mut s = vec![0];
        s.extend(name.match_indices('.').map(|(i, _)| i + 1));
        s
    }

    fn blocks(set: &DomainSet, name: &str) -> bool {
        set.blocks(name.as_bytes(), &starts(name))
    }

    #[test]
    fn exact_names_and_subtrees() {
        let mut set = DomainSet::with_capacity(0);
        assert!(set.insert(b"ads.example.com", EXACT));
        assert!(set.insert(b"tracker.net", SUBTREE));
        assert!(blocks(&set, "ads.example.com"));
        assert!(!blocks(&set, "x.ads.example.com"));
        assert!(!blocks(&set, "example.com"));
        assert!(blocks(&set, "tracker.net"));
        assert!(blocks(&set, "a.b.tracker.net"));
        assert!(!blocks(&set, "nottracker.net"));
        assert!(!blocks(&set, "net"));
        // Both kinds for one name: the flags add up, the name is stored once.
        assert!(set.insert(b"ads.example.com", SUBTREE));
        assert!(blocks(&set, "x.ads.example.com"));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn growing_keeps_every_name() {
        let mut set = DomainSet::with_capacity(1);
        for i in 0..5000 {
            assert!(set.insert(format!("host{i}.example").as_bytes(), EXACT));
        }
        assert_eq!(set.len(), 5000);
        for i in 0..5000 {
            assert!(blocks(&set, &format!("host{i}.example")), "{i}");
        }
        assert!(!blocks(&set, "host5000.example"));
        assert!(!set.insert(&[b'a'; 256], EXACT));
    }
}
