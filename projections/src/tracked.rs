//! [`Tracked`]: a `BTreeMap` that remembers which keys changed since the
//! changes were last taken, so a checkpoint writes only those entries.
//!
//! Reads go through `Deref` to the map. Every way to change the map is a
//! method here (`get_mut`, `entry`, `insert`, `remove`, `update_where`) and
//! marks the keys it may change; there is deliberately no `DerefMut` and no
//! `values_mut`, so a fold cannot change an entry without it being marked.
//! A deserialized or default map has no marked keys: it equals what is
//! stored. Equality, `Debug` and the serialized form are the map's alone.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::collections::btree_map::{self, BTreeMap};
use std::collections::BTreeSet;
use std::ops::Deref;

/// A map whose changed keys are kept until [`Tracked::take_changed`].
#[derive(Clone)]
pub struct Tracked<K: Ord, V> {
    map: BTreeMap<K, V>,
    changed: BTreeSet<K>,
}

impl<K: Ord, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            changed: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone, V> Tracked<K, V> {
    /// The value at `key`, for changing (the key is marked changed).
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        let value = self.map.get_mut(key)?;
        self.changed.insert(key.to_owned());
        Some(value)
    }

    /// The entry at `key`, for changing (the key is marked changed).
    pub fn entry(&mut self, key: K) -> btree_map::Entry<'_, K, V> {
        self.changed.insert(key.clone());
        self.map.entry(key)
    }

    /// Inserts `value` at `key`; the previous value, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.changed.insert(key.clone());
        self.map.insert(key, value)
    }

    /// Removes `key`; its value, if any (a removal is a change too).
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        let value = self.map.remove(key)?;
        self.changed.insert(key.to_owned());
        Some(value)
    }

    /// The value at `key` for changing without marking it: for the code
    /// that saves marks of the value's own tables, never for a fold.
    pub(crate) fn get_mut_unmarked<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.get_mut(key)
    }

    /// Inserts without marking: the entry is already stored (a restore).
    pub(crate) fn insert_stored(&mut self, key: K, value: V) {
        self.map.insert(key, value);
    }

    /// Runs `f` on every value `pick` selects, marking those keys only (a
    /// change to many entries, without a `values_mut` that marks none).
    pub fn update_where(&mut self, pick: impl Fn(&V) -> bool, mut f: impl FnMut(&mut V)) {
        for (key, value) in self.map.iter_mut() {
            if pick(value) {
                f(value);
                self.changed.insert(key.clone());
            }
        }
    }

    /// The keys changed since the last call (their current value, or `None`
    /// when removed), forgetting them.
    pub fn take_changed(&mut self) -> Vec<(K, Option<&V>)> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .map(|k| {
                let v = self.map.get(&k);
                (k, v)
            })
            .collect()
    }

    /// Keys changed and not yet taken.
    pub fn changed_len(&self) -> usize {
        self.changed.len()
    }

    /// Forgets the changed keys (the whole map was written).
    pub fn clear_changed(&mut self) {
        self.changed.clear();
    }
}

impl<K: Ord, V> Deref for Tracked<K, V> {
    type Target = BTreeMap<K, V>;
    fn deref(&self) -> &BTreeMap<K, V> {
        &self.map
    }
}

impl<K: Ord, V> From<BTreeMap<K, V>> for Tracked<K, V> {
    fn from(map: BTreeMap<K, V>) -> Self {
        Self {
            map,
            changed: BTreeSet::new(),
        }
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for Tracked<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        BTreeMap::from_iter(iter).into()
    }
}

impl<'a, K: Ord, V> IntoIterator for &'a Tracked<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = btree_map::Iter<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl<K: Ord, V: PartialEq> PartialEq for Tracked<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<K: Ord + std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for Tracked<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.map.fmt(f)
    }
}

impl<K: Ord + Serialize, V: Serialize> Serialize for Tracked<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Tracked<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_every_kind_of_change_and_forgets_them_once_taken() {
        let mut m: Tracked<String, u32> = Tracked::default();
        m.insert("a".into(), 1);
        m.insert("b".into(), 2);
        *m.entry("c".into()).or_default() += 3;
        let taken: Vec<_> = m
            .take_changed()
            .into_iter()
            .map(|(k, v)| (k, v.copied()))
            .collect();
        assert_eq!(
            taken,
            vec![
                ("a".into(), Some(1)),
                ("b".into(), Some(2)),
                ("c".into(), Some(3))
            ]
        );
        assert_eq!(m.changed_len(), 0);

        // A read marks nothing; a missing key's get_mut marks nothing.
        assert_eq!(m.get("a"), Some(&1));
        assert!(m.get_mut(&"zz".to_string()).is_none());
        assert!(m.remove(&"zz".to_string()).is_none());
        assert_eq!(m.changed_len(), 0);

        *m.get_mut(&"a".to_string()).unwrap() = 10;
        m.remove(&"b".to_string());
        m.update_where(|v| *v == 3, |v| *v = 30);
        let taken: Vec<_> = m
            .take_changed()
            .into_iter()
            .map(|(k, v)| (k, v.copied()))
            .collect();
        assert_eq!(
            taken,
            vec![
                ("a".into(), Some(10)),
                ("b".into(), None),
                ("c".into(), Some(30))
            ]
        );
    }

    #[test]
    fn equality_and_encoding_ignore_the_marks() {
        let mut a: Tracked<String, u32> = Tracked::default();
        a.insert("x".into(), 1);
        let b: Tracked<String, u32> = [("x".to_string(), 1)].into_iter().collect();
        assert_eq!(a, b);
        let mut bytes = Vec::new();
        ciborium::into_writer(&a, &mut bytes).unwrap();
        let mut plain = Vec::new();
        ciborium::into_writer(&*b, &mut plain).unwrap();
        assert_eq!(bytes, plain);
        let back: Tracked<String, u32> = ciborium::from_reader(&bytes[..]).unwrap();
        assert_eq!(back.changed_len(), 0);
        assert_eq!(back, a);
    }
}
