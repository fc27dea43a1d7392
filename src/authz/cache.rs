//! A small bounded map shared by concurrent requests: what a decision
//! prepares or decides, kept per question. Past its bound it starts over (a
//! Lambda instance sees few distinct questions; no eviction order to keep).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

pub(crate) struct Bounded<K, V> {
    max: usize,
    map: Mutex<HashMap<K, V>>,
}

impl<K: Hash + Eq, V: Clone> Bounded<K, V> {
    pub(crate) fn new(max: usize) -> Self {
        Bounded { max, map: Mutex::new(HashMap::new()) }
    }

    /// The value kept for `key`, or `build`'s, kept if it is `Ok`. `build`
    /// runs without the lock held (two requests may both build one value;
    /// they build the same).
    pub(crate) fn get_or_build<E>(&self, key: K, build: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        if let Some(hit) = self.lock().get(&key) {
            return Ok(hit.clone());
        }
        let built = build()?;
        let mut map = self.lock();
        if map.len() >= self.max {
            map.clear();
        }
        map.insert(key, built.clone());
        Ok(built)
    }

    /// How many values are kept (for the tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K, V> std::fmt::Debug for Bounded<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.map.lock().map(|m| m.len()).unwrap_or_default();
        f.debug_struct("Bounded").field("max", &self.max).field("len", &len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_it_built_and_starts_over_past_its_bound() {
        let cache: Bounded<u32, u32> = Bounded::new(3);
        let mut builds = 0;
        for k in [1, 2, 1, 2, 3] {
            cache
                .get_or_build(k, || {
                    builds += 1;
                    Ok::<_, ()>(k * 10)
                })
                .unwrap();
        }
        assert_eq!((builds, cache.len()), (3, 3));
        assert_eq!(cache.get_or_build(4, || Ok::<_, ()>(40)), Ok(40));
        assert_eq!(cache.len(), 1, "full: started over");
        assert_eq!(cache.get_or_build(5, || Err("no")), Err("no"));
        assert_eq!(cache.len(), 1, "a failed build is not kept");
    }
}
