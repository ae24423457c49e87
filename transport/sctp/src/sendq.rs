//! Bounded per-destination queues for messages the kernel should not or could not take yet:
//! the send buffer was full (EAGAIN), or the destination's association is still being set up
//! and its messages are *held* until it is up. A message that does not fit is an error
//! returned to the caller with the bound it hit ([`QueueFull`]), never a silent drop.
//!
//! Four bounds ([`QueueLimits`]): messages and bytes per destination, bytes across all
//! destinations, and the number of destinations with something waiting; so one destination
//! that never drains cannot take more than its share, and many of them cannot take
//! everything.
//!
//! Pure data structure: no sockets, no clock. The endpoint core decides what to queue, hold
//! and release; one drainer per group of keys (a listener) takes messages back.
//!
//! Order per destination holds across the drainers: the item a drainer has taken stays *in
//! flight* until it reports back ([`SendQueues::done`] or [`SendQueues::unpop`]), and
//! [`SendQueues::has`] says yes meanwhile, so a new message for that destination queues behind
//! it instead of overtaking it on the wire.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

use crate::counters::SendDropCause;

/// A message did not fit; which bound it hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueFull {
    /// The destination already has `limit` messages waiting.
    #[error("send queue full ({limit} messages waiting for this destination)")]
    Messages {
        /// Messages per destination.
        limit: usize,
    },
    /// The destination's waiting messages would exceed `limit` bytes.
    #[error("send queue full ({queued} bytes waiting for this destination, limit {limit})")]
    Bytes {
        /// Bytes per destination.
        limit: usize,
        /// Bytes waiting for it already.
        queued: usize,
    },
    /// All waiting messages together would exceed `limit` bytes.
    #[error("send queues full ({queued} bytes waiting for all destinations, limit {limit})")]
    TotalBytes {
        /// Bytes across destinations.
        limit: usize,
        /// Bytes waiting already.
        queued: usize,
    },
    /// `limit` destinations already have messages waiting.
    #[error("send queues full ({limit} destinations have messages waiting)")]
    Destinations {
        /// Destinations with something waiting.
        limit: usize,
    },
}

impl QueueFull {
    /// The drop counter it is counted under.
    pub fn cause(&self) -> SendDropCause {
        match self {
            QueueFull::Messages { .. } => SendDropCause::QueueMessages,
            QueueFull::Bytes { .. } => SendDropCause::QueueBytes,
            QueueFull::TotalBytes { .. } => SendDropCause::TotalBytes,
            QueueFull::Destinations { .. } => SendDropCause::Destinations,
        }
    }
}

/// The bounds of [`SendQueues`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Messages waiting per destination.
    pub messages: usize,
    /// Bytes waiting per destination.
    pub bytes: usize,
    /// Bytes waiting across all destinations.
    pub total_bytes: usize,
    /// Destinations with messages waiting.
    pub destinations: usize,
}

impl QueueLimits {
    /// Only the per-destination message count bounded (the other bounds at their maximum).
    pub fn messages(limit: usize) -> QueueLimits {
        QueueLimits {
            messages: limit,
            bytes: usize::MAX,
            total_bytes: usize::MAX,
            destinations: usize::MAX,
        }
    }
}

#[derive(Debug)]
struct Queue<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            items: VecDeque::new(),
            bytes: 0,
        }
    }
}

/// Queues keyed by destination `K` (see the module doc).
#[derive(Debug)]
pub struct SendQueues<K, T> {
    queues: HashMap<K, Queue<T>>,
    limits: QueueLimits,
    len: usize,
    bytes: usize,
    /// Keys whose item a drainer has taken and not yet reported back.
    in_flight: HashSet<K>,
    /// Keys whose messages wait for their association to come up: never handed to a drainer.
    held: HashSet<K>,
}

impl<K: Eq + Hash + Clone, T> SendQueues<K, T> {
    /// Empty queues with these bounds.
    pub fn new(limits: QueueLimits) -> Self {
        SendQueues {
            queues: HashMap::new(),
            limits,
            len: 0,
            bytes: 0,
            in_flight: HashSet::new(),
            held: HashSet::new(),
        }
    }

    /// The bounds.
    pub fn limits(&self) -> QueueLimits {
        self.limits
    }

    /// Appends `item` of `bytes` for `key`; hands it back inside the error when a bound would
    /// be exceeded.
    ///
    /// # Errors
    /// `(QueueFull, item)` naming the bound, checked in this order: messages and bytes for
    /// `key`, destinations, total bytes.
    pub fn push(&mut self, key: K, item: T, bytes: usize) -> Result<(), (QueueFull, T)> {
        let l = self.limits;
        let (count, queued) = self
            .queues
            .get(&key)
            .map_or((0, 0), |q| (q.items.len(), q.bytes));
        let full = if count >= l.messages {
            Some(QueueFull::Messages { limit: l.messages })
        } else if queued.saturating_add(bytes) > l.bytes {
            Some(QueueFull::Bytes {
                limit: l.bytes,
                queued,
            })
        } else if count == 0 && self.queues.len() >= l.destinations {
            Some(QueueFull::Destinations {
                limit: l.destinations,
            })
        } else if self.bytes.saturating_add(bytes) > l.total_bytes {
            Some(QueueFull::TotalBytes {
                limit: l.total_bytes,
                queued: self.bytes,
            })
        } else {
            None
        };
        if let Some(e) = full {
            return Err((e, item));
        }
        let q = self.queues.entry(key).or_default();
        q.items.push_back((item, bytes));
        q.bytes = q.bytes.saturating_add(bytes);
        self.len += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        Ok(())
    }

    /// Whether anything waits for `key`, or is in flight to it (new sends must queue behind
    /// it to keep order).
    pub fn has(&self, key: &K) -> bool {
        self.in_flight.contains(key) || self.queues.contains_key(key)
    }

    /// A drainer takes the oldest item of a non-empty queue whose key satisfies `mine`, is not
    /// held and not in flight; that key is in flight until [`SendQueues::done`] or
    /// [`SendQueues::unpop`].
    pub fn pop_where(&mut self, mine: impl Fn(&K) -> bool) -> Option<(K, T)> {
        let key = self
            .queues
            .keys()
            .find(|k| mine(k) && !self.held.contains(*k) && !self.in_flight.contains(*k))?
            .clone();
        let (t, _) = self.pop(&key)?;
        self.in_flight.insert(key.clone());
        Some((key, t))
    }

    /// As [`SendQueues::pop_where`] over every key (one drainer for all).
    pub fn pop_any(&mut self) -> Option<(K, T)> {
        self.pop_where(|_| true)
    }

    /// The drainer is finished with the item it took for `key` (sent, or failed for good).
    pub fn done(&mut self, key: &K) {
        self.in_flight.remove(key);
    }

    /// Takes the oldest item for `key`, with its size.
    fn pop(&mut self, key: &K) -> Option<(T, usize)> {
        let q = self.queues.get_mut(key)?;
        let t = q.items.pop_front();
        if let Some((_, bytes)) = &t {
            q.bytes = q.bytes.saturating_sub(*bytes);
            self.len -= 1;
            self.bytes = self.bytes.saturating_sub(*bytes);
        }
        if q.items.is_empty() {
            self.queues.remove(key);
        }
        t
    }

    /// Puts the drainer's item back at the front (the kernel refused it again). It was just
    /// in the queue, so no bound applies.
    pub fn unpop(&mut self, key: K, item: T, bytes: usize) {
        self.done(&key);
        let q = self.queues.entry(key).or_default();
        q.items.push_front((item, bytes));
        q.bytes = q.bytes.saturating_add(bytes);
        self.len += 1;
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Removes and returns everything waiting, with its key (the endpoint is going away).
    pub fn take_all(&mut self) -> Vec<(K, T)> {
        self.len = 0;
        self.bytes = 0;
        self.queues
            .drain()
            .flat_map(|(k, q)| q.items.into_iter().map(move |(t, _)| (k.clone(), t)))
            .collect()
    }

    /// Removes and returns everything waiting for `key` (its association is gone).
    pub fn take(&mut self, key: &K) -> Vec<T> {
        let Some(q) = self.queues.remove(key) else {
            return Vec::new();
        };
        self.len -= q.items.len();
        self.bytes = self.bytes.saturating_sub(q.bytes);
        q.items.into_iter().map(|(t, _)| t).collect()
    }

    /// Moves everything waiting for `from` in front of what waits for `to` (the association a
    /// destination's messages waited for is up: they now go on it, before anything newer).
    /// Totals do not change, so no bound applies.
    pub fn rekey(&mut self, from: &K, to: K) {
        if *from == to {
            return;
        }
        let Some(mut moved) = self.queues.remove(from) else {
            return;
        };
        if let Some(rest) = self.queues.remove(&to) {
            moved.items.extend(rest.items);
            moved.bytes = moved.bytes.saturating_add(rest.bytes);
        }
        self.queues.insert(to, moved);
    }

    /// Holds `key`: its messages stay queued (and new ones queue behind them) but no drainer
    /// takes them until [`SendQueues::release`].
    pub fn hold(&mut self, key: K) {
        self.held.insert(key);
    }

    /// Lets drainers take `key`'s messages again.
    pub fn release(&mut self, key: &K) {
        self.held.remove(key);
    }

    /// Whether `key` is held.
    pub fn is_held(&self, key: &K) -> bool {
        self.held.contains(key)
    }

    /// Items waiting in all queues.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes waiting in all queues.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Destinations with something waiting.
    pub fn destinations(&self) -> usize {
        self.queues.len()
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
        let mut q = SendQueues::new(QueueLimits::messages(2));
        q.push("a", 1, 1).unwrap();
        q.push("a", 2, 1).unwrap();
        assert_eq!(
            q.push("a", 3, 1),
            Err((QueueFull::Messages { limit: 2 }, 3))
        );
        q.push("b", 9, 1).unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(&"a"), Some((1, 1)));
        q.unpop("a", 1, 1);
        assert_eq!(q.pop(&"a"), Some((1, 1)));
        assert_eq!(q.pop(&"a"), Some((2, 1)));
        assert!(!q.has(&"a"));
        assert_eq!(q.take(&"b"), vec![9]);
        assert!(q.is_empty());
        assert_eq!(q.pop_any(), None);
    }

    #[test]
    fn the_drainers_item_keeps_its_key_busy_until_reported() {
        let mut q = SendQueues::new(QueueLimits::messages(4));
        q.push("a", 1, 1).unwrap();
        let (k, item) = q.pop_any().unwrap();
        assert_eq!((k, item), ("a", 1));
        // The queue is empty, but 1 is still on its way: 2 must wait behind it.
        assert!(q.has(&"a"));
        assert!(!q.has(&"b"));
        q.unpop("a", 1, 1);
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

    fn limits() -> QueueLimits {
        QueueLimits {
            messages: 10,
            bytes: 100,
            total_bytes: 250,
            destinations: 3,
        }
    }

    #[test]
    fn bytes_are_bounded_per_destination_and_in_total() {
        let mut q = SendQueues::new(limits());
        q.push("a", 1, 60).unwrap();
        q.push("a", 2, 40).unwrap();
        assert_eq!(
            q.push("a", 3, 1),
            Err((
                QueueFull::Bytes {
                    limit: 100,
                    queued: 100
                },
                3
            ))
        );
        q.push("b", 4, 100).unwrap();
        assert_eq!(q.bytes(), 200);
        // "c" is within its own bound, but not within the total.
        assert_eq!(
            q.push("c", 5, 60),
            Err((
                QueueFull::TotalBytes {
                    limit: 250,
                    queued: 200
                },
                5
            ))
        );
        q.push("c", 5, 50).unwrap();
        // Taking frees the bytes.
        assert_eq!(q.take(&"a"), vec![1, 2]);
        assert_eq!(q.bytes(), 150);
        q.push("c", 6, 50).unwrap();
        let (k, _) = q.pop_where(|k| *k == "b").unwrap();
        assert_eq!(k, "b");
        assert_eq!(q.bytes(), 100);
    }

    #[test]
    fn destinations_with_something_waiting_are_bounded() {
        let mut q = SendQueues::new(limits());
        for k in ["a", "b", "c"] {
            q.push(k, 0, 1).unwrap();
        }
        assert_eq!(q.destinations(), 3);
        assert_eq!(
            q.push("d", 1, 1),
            Err((QueueFull::Destinations { limit: 3 }, 1))
        );
        // A destination already waiting still takes more.
        q.push("a", 1, 1).unwrap();
        // An emptied destination no longer counts.
        let (k, _) = q.pop_where(|k| *k == "b").unwrap();
        q.done(&k);
        assert_eq!(q.destinations(), 2);
        q.push("d", 1, 1).unwrap();
    }

    #[test]
    fn each_bound_names_its_drop_cause() {
        let causes = [
            QueueFull::Messages { limit: 1 }.cause(),
            QueueFull::Bytes {
                limit: 1,
                queued: 1,
            }
            .cause(),
            QueueFull::TotalBytes {
                limit: 1,
                queued: 1,
            }
            .cause(),
            QueueFull::Destinations { limit: 1 }.cause(),
        ];
        assert_eq!(
            causes,
            [
                SendDropCause::QueueMessages,
                SendDropCause::QueueBytes,
                SendDropCause::TotalBytes,
                SendDropCause::Destinations
            ]
        );
    }

    #[test]
    fn held_keys_keep_their_messages_from_the_drainers_until_released() {
        let mut q = SendQueues::new(limits());
        q.hold("a");
        q.push("a", 1, 1).unwrap();
        q.push("b", 2, 1).unwrap();
        assert!(q.is_held(&"a"));
        assert!(q.has(&"a"), "new messages for a queue behind the held ones");
        assert_eq!(q.pop_any(), Some(("b", 2)));
        q.done(&"b");
        assert_eq!(q.pop_any(), None, "a is held");
        q.release(&"a");
        assert_eq!(q.pop_any(), Some(("a", 1)));
    }

    #[test]
    fn drainers_take_only_their_own_keys_and_one_item_per_key_at_a_time() {
        let mut q = SendQueues::new(limits());
        q.push((0, "a"), 1, 1).unwrap();
        q.push((0, "a"), 2, 1).unwrap();
        q.push((1, "a"), 3, 1).unwrap();
        assert_eq!(q.pop_where(|k| k.0 == 1), Some(((1, "a"), 3)));
        assert_eq!(q.pop_where(|k| k.0 == 1), None);
        assert_eq!(q.pop_where(|k| k.0 == 0), Some(((0, "a"), 1)));
        // (0, "a") is in flight: its next item waits for the report.
        assert_eq!(q.pop_where(|k| k.0 == 0), None);
        q.done(&(0, "a"));
        assert_eq!(q.pop_where(|k| k.0 == 0), Some(((0, "a"), 2)));
    }

    #[test]
    fn rekey_moves_waiting_messages_in_front_of_newer_ones() {
        let mut q = SendQueues::new(limits());
        q.push("addr", 1, 10).unwrap();
        q.push("addr", 2, 10).unwrap();
        q.push("assoc", 3, 10).unwrap();
        q.rekey(&"addr", "assoc");
        assert!(!q.has(&"addr"));
        assert_eq!((q.len(), q.bytes(), q.destinations()), (3, 30, 1));
        assert_eq!(q.take(&"assoc"), vec![1, 2, 3]);
        q.rekey(&"none", "assoc");
        assert!(q.is_empty());
    }
}
