//! Bounded per-destination queues for messages the kernel could not take yet (EAGAIN on a
//! full send buffer). A full queue is an error returned to the caller, never a silent drop.
//! Pure data structure; the transport drains it when the socket is writable again.
//!
//! Order per destination holds across the drainer: the item it has taken stays *in flight*
//! until it reports back ([`SendQueues::done`] or [`SendQueues::unpop`]), and [`SendQueues::has`]
//! says yes meanwhile, so a new message for that destination queues behind it instead of
//! overtaking it on the wire.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// The queue for a destination is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("send queue full ({limit} messages waiting for this destination)")]
pub struct QueueFull {
    /// The per-destination limit.
    pub limit: usize,
}

/// Queues keyed by destination `K`, each holding at most `limit` items.
#[derive(Debug)]
pub struct SendQueues<K, T> {
    queues: HashMap<K, VecDeque<T>>,
    limit: usize,
    len: usize,
    /// The key whose item the (single) drainer has taken and not yet reported back.
    in_flight: Option<K>,
}

impl<K: Eq + Hash + Clone, T> SendQueues<K, T> {
    /// Empty queues with a per-destination limit.
    pub fn new(limit: usize) -> Self {
        SendQueues {
            queues: HashMap::new(),
            limit,
            len: 0,
            in_flight: None,
        }
    }

    /// Appends `item` for `key`; hands it back inside the error when that queue is full.
    ///
    /// # Errors
    /// `(QueueFull, item)` when `limit` items are already waiting for `key`.
    pub fn push(&mut self, key: K, item: T) -> Result<(), (QueueFull, T)> {
        let q = self.queues.entry(key).or_default();
        if q.len() >= self.limit {
            return Err((QueueFull { limit: self.limit }, item));
        }
        q.push_back(item);
        self.len += 1;
        Ok(())
    }

    /// Whether anything waits for `key`, or is in flight to it (new sends must queue behind
    /// it to keep order).
    pub fn has(&self, key: &K) -> bool {
        self.in_flight.as_ref() == Some(key) || self.queues.get(key).is_some_and(|q| !q.is_empty())
    }

    /// The drainer takes the oldest item of any non-empty queue; that key is in flight until
    /// [`SendQueues::done`] or [`SendQueues::unpop`].
    pub fn pop_any(&mut self) -> Option<(K, T)> {
        let key = self.queues.iter().find(|(_, q)| !q.is_empty())?.0.clone();
        let t = self.pop(&key)?;
        self.in_flight = Some(key.clone());
        Some((key, t))
    }

    /// The drainer is finished with the item it took for `key` (sent, or failed for good).
    pub fn done(&mut self, key: &K) {
        if self.in_flight.as_ref() == Some(key) {
            self.in_flight = None;
        }
    }

    /// Takes the oldest item for `key`.
    fn pop(&mut self, key: &K) -> Option<T> {
        let q = self.queues.get_mut(key)?;
        let t = q.pop_front();
        if q.is_empty() {
            self.queues.remove(key);
        }
        if t.is_some() {
            self.len -= 1;
        }
        t
    }

    /// Puts the drainer's item back at the front (the kernel refused it again).
    pub fn unpop(&mut self, key: K, item: T) {
        self.done(&key);
        self.queues.entry(key).or_default().push_front(item);
        self.len += 1;
    }

    /// Removes and returns everything waiting for `key` (its association is gone).
    pub fn take(&mut self, key: &K) -> Vec<T> {
        let items: Vec<T> = self.queues.remove(key).map(Vec::from).unwrap_or_default();
        self.len -= items.len();
        items
    }

    /// Items waiting in all queues.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo_per_key() {
        let mut q = SendQueues::new(2);
        q.push("a", 1).unwrap();
        q.push("a", 2).unwrap();
        assert_eq!(q.push("a", 3), Err((QueueFull { limit: 2 }, 3)));
        q.push("b", 9).unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(&"a"), Some(1));
        q.unpop("a", 1);
        assert_eq!(q.pop(&"a"), Some(1));
        assert_eq!(q.pop(&"a"), Some(2));
        assert!(!q.has(&"a"));
        assert_eq!(q.take(&"b"), vec![9]);
        assert!(q.is_empty());
        assert_eq!(q.pop_any(), None);
    }

    #[test]
    fn the_drainers_item_keeps_its_key_busy_until_reported() {
        let mut q = SendQueues::new(4);
        q.push("a", 1).unwrap();
        let (k, item) = q.pop_any().unwrap();
        assert_eq!((k, item), ("a", 1));
        // The queue is empty, but 1 is still on its way: 2 must wait behind it.
        assert!(q.has(&"a"));
        assert!(!q.has(&"b"));
        q.unpop("a", 1);
        assert!(q.has(&"a"));
        assert_eq!(q.pop_any(), Some(("a", 1)));
        q.done(&"b");
        assert!(
            q.has(&"a"),
            "done for another key leaves this one in flight"
        );
        q.done(&"a");
        assert!(!q.has(&"a"));
        assert!(q.is_empty());
    }
}
