//! Sharding: N analyzer replicas split the series among themselves without
//! talking to each other. Each series belongs to the replica whose index is
//! a stable hash of its sorted label set modulo N, the idea of Prometheus'
//! `hashmod` relabelling. The hash is 64-bit FNV-1a (the `fnv` crate) over
//! the label names and values with a 0xff byte after each, so it is the same
//! on every machine, in every run and with every Rust version (std's
//! `DefaultHasher` is not).

use std::hash::Hasher;

use crate::read::Labels;

/// This replica's part of the series: `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// Which part this replica analyses, `0..count`.
    pub index: u64,
    /// How many replicas share the series.
    pub count: u64,
}

/// Why `--shard.index` / `--shard.count` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    /// `--shard.count` is 0.
    #[error("--shard.count must be at least 1")]
    ZeroCount,
    /// The index is not below the count.
    #[error("--shard.index {index} is not below --shard.count {count}")]
    IndexTooLarge {
        /// The index given or derived.
        index: u64,
        /// The count given.
        count: u64,
    },
    /// `--shard.index` is neither a number nor `auto`.
    #[error("--shard.index must be a number or `auto`, is {0:?}")]
    BadIndex(String),
    /// `auto` and the host name has no `-<ordinal>` suffix.
    #[error(
        "--shard.index=auto needs a host name ending in -<ordinal> (a StatefulSet pod's name), \
         host name is {0:?}"
    )]
    NoOrdinal(String),
}

impl Shard {
    /// The shard from the flags: `index` is a number or `auto` (the ordinal
    /// at the end of `hostname`, as a StatefulSet names its pods:
    /// `imd-analyzer-2` is index 2). `None` when `count` is 1 and no index
    /// other than 0 was asked for: there is nothing to split.
    pub fn from_flags(
        index: Option<&str>,
        count: u64,
        hostname: &str,
    ) -> Result<Option<Shard>, ShardError> {
        if count == 0 {
            return Err(ShardError::ZeroCount);
        }
        let index = match index.map(str::trim) {
            None => 0,
            Some("auto") => {
                ordinal(hostname).ok_or_else(|| ShardError::NoOrdinal(hostname.into()))?
            }
            Some(s) => s.parse().map_err(|_| ShardError::BadIndex(s.into()))?,
        };
        if index >= count {
            return Err(ShardError::IndexTooLarge { index, count });
        }
        Ok((count > 1).then_some(Shard { index, count }))
    }

    /// Whether the series with these labels belongs to this shard.
    pub fn owns(&self, labels: &Labels) -> bool {
        owner(labels, self.count) == self.index
    }

    /// As the engine keeps it (`(index, count)`).
    pub fn pair(&self) -> (u64, u64) {
        (self.index, self.count)
    }
}

/// The ordinal at the end of a StatefulSet pod's name (`web-3` → 3).
fn ordinal(hostname: &str) -> Option<u64> {
    // A pod's host name is its name; a fully qualified name is not expected,
    // but only the first DNS label counts if one is given.
    let name = hostname.split('.').next().unwrap_or(hostname);
    let (_, n) = name.rsplit_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The stable 64-bit hash of a label set (sorted by name, as
/// [`crate::read::SeriesData`] keeps it).
pub fn label_hash(labels: &Labels) -> u64 {
    let mut h = fnv::FnvHasher::default();
    for (name, value) in labels {
        h.write(name.as_bytes());
        h.write(&[0xff]);
        h.write(value.as_bytes());
        h.write(&[0xff]);
    }
    h.finish()
}

/// Which of `count` shards a series belongs to.
pub fn owner(labels: &Labels, count: u64) -> u64 {
    label_hash(labels) % count.max(1)
}

/// The group of a series in a multivariate query: its `by` labels
/// (missing ones left out), sorted.
pub fn group_key(labels: &Labels, by: &[String]) -> Labels {
    let mut key: Labels = by
        .iter()
        .filter_map(|g| labels.iter().find(|(k, _)| k == g).cloned())
        .collect();
    key.sort();
    key
}

/// Which series of a read are this replica's: those whose label set hashes
/// to its shard, or, for a multivariate query (`by` its group labels),
/// those whose group does, so that every input series of a group goes to
/// the replica that analyses the group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// This replica's shard.
    pub shard: Shard,
    /// The group labels the ownership is judged on (`None`: all labels).
    pub by: Option<Vec<String>>,
}

impl Owner {
    /// Whether the series with these labels is this replica's.
    pub fn owns(&self, labels: &Labels) -> bool {
        match &self.by {
            None => self.shard.owns(labels),
            Some(by) => self.shard.owns(&group_key(labels, by)),
        }
    }
}

impl From<Shard> for Owner {
    fn from(shard: Shard) -> Owner {
        Owner { shard, by: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn the_hash_is_fnv1a_and_never_changes() {
        // FNV-1a 64 of the empty input is its offset basis; of "a" a
        // published test vector. These pin the hash: if they change, every
        // deployed replica set would reshuffle its series.
        assert_eq!(label_hash(&Vec::new()), 0xcbf2_9ce4_8422_2325);
        let mut h = fnv::FnvHasher::default();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
        // And one label set, worked out independently of this code
        // (FNV-1a over `__name__ 0xff up 0xff instance 0xff a:9100 0xff`).
        let l = labels(&[("__name__", "up"), ("instance", "a:9100")]);
        assert_eq!(label_hash(&l), 0x5753_3db5_c97e_0d4d);
    }

    #[test]
    fn separators_keep_label_boundaries_apart() {
        let a = labels(&[("a", "bc")]);
        let b = labels(&[("ab", "c")]);
        assert_ne!(label_hash(&a), label_hash(&b));
    }

    #[test]
    fn shards_split_series_evenly_and_exactly_once() {
        let count = 3;
        let mut per = [0usize; 3];
        for i in 0..3000 {
            let l = labels(&[("__name__", "x"), ("instance", &format!("host-{i}"))]);
            let owners: Vec<u64> = (0..count)
                .filter(|&ix| Shard { index: ix, count }.owns(&l))
                .collect();
            assert_eq!(owners.len(), 1, "{l:?} owned by {owners:?}");
            per[owners[0] as usize] += 1;
        }
        for n in per {
            assert!((800..1200).contains(&n), "uneven split {per:?}");
        }
    }

    #[test]
    fn flags_and_statefulset_ordinals() {
        let s = |i: Option<&str>, c, h: &str| Shard::from_flags(i, c, h);
        assert_eq!(s(None, 1, "x"), Ok(None));
        assert_eq!(s(Some("0"), 1, "x"), Ok(None));
        assert_eq!(s(Some("2"), 3, "x"), Ok(Some(Shard { index: 2, count: 3 })));
        assert_eq!(
            s(Some("auto"), 3, "imd-analyzer-1"),
            Ok(Some(Shard { index: 1, count: 3 }))
        );
        assert_eq!(
            s(Some("auto"), 4, "imd-analyzer-3.imd.svc"),
            Ok(Some(Shard { index: 3, count: 4 }))
        );
        assert_eq!(
            s(Some("auto"), 3, "imd-analyzer-5"),
            Err(ShardError::IndexTooLarge { index: 5, count: 3 })
        );
        assert_eq!(
            s(Some("auto"), 3, "laptop"),
            Err(ShardError::NoOrdinal("laptop".into()))
        );
        assert_eq!(
            s(Some("auto"), 3, "imd-analyzer-"),
            Err(ShardError::NoOrdinal("imd-analyzer-".into()))
        );
        assert_eq!(s(Some("x"), 3, "a"), Err(ShardError::BadIndex("x".into())));
        assert_eq!(
            s(Some("-1"), 3, "a"),
            Err(ShardError::BadIndex("-1".into()))
        );
        assert_eq!(s(None, 0, "a"), Err(ShardError::ZeroCount));
        assert_eq!(
            s(Some("3"), 3, "a"),
            Err(ShardError::IndexTooLarge { index: 3, count: 3 })
        );
    }
}
