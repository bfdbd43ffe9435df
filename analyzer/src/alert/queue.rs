//! What one Alertmanager has not received yet.
//!
//! A bounded queue keyed by label set: a newer version of an alert replaces
//! the queued one (and moves to the back), so an Alertmanager that was down
//! gets the latest state of each alert once, not every version it missed.
//! When full, the oldest entries are dropped and counted. A batch taken for
//! sending goes back in front if the send fails, unless a newer version
//! arrived meanwhile.

use std::collections::{BTreeMap, HashMap};

use super::{Alert, AlertKey};

/// One queued alert with its place in the queue.
#[derive(Debug, Clone)]
pub struct Queued {
    seq: u64,
    /// The alert to send.
    pub alert: Alert,
    /// Whether it was resolved when queued.
    pub resolved: bool,
}

/// A bounded, coalescing queue of alerts for one Alertmanager.
#[derive(Debug)]
pub struct AlertQueue {
    capacity: usize,
    next_seq: u64,
    by_key: HashMap<AlertKey, Queued>,
    order: BTreeMap<u64, AlertKey>,
}

impl AlertQueue {
    /// An empty queue holding at most `capacity` alerts (at least 1).
    pub fn new(capacity: usize) -> AlertQueue {
        AlertQueue {
            capacity: capacity.max(1),
            next_seq: 0,
            by_key: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// Number of alerts waiting.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The most alerts the queue holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues `alert` at the back, replacing a queued alert with the same
    /// labels. Returns how many alerts were dropped to make room.
    pub fn push(&mut self, alert: Alert, resolved: bool) -> usize {
        let key = alert.labels.clone();
        if let Some(old) = self.by_key.remove(&key) {
            self.order.remove(&old.seq);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.by_key.insert(
            key,
            Queued {
                seq,
                alert,
                resolved,
            },
        );
        self.trim()
    }

    /// Takes up to `max` alerts from the front.
    pub fn take(&mut self, max: usize) -> Vec<Queued> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(q) = self.by_key.remove(&key) {
                out.push(q);
            }
        }
        out
    }

    /// Puts back alerts whose send failed, in their old places, except those
    /// replaced by a newer version meanwhile. Returns how many were dropped
    /// to make room.
    pub fn put_back(&mut self, items: Vec<Queued>) -> usize {
        for q in items {
            if self.by_key.contains_key(&q.alert.labels) {
                continue;
            }
            self.order.insert(q.seq, q.alert.labels.clone());
            self.by_key.insert(q.alert.labels.clone(), q);
        }
        self.trim()
    }

    /// Removes the queued alert with these labels if it is a resolved one
    /// (used when the notifier forgets a resolved alert).
    pub fn forget_resolved(&mut self, key: &AlertKey) {
        if self.by_key.get(key).is_some_and(|q| q.resolved)
            && let Some(q) = self.by_key.remove(key)
        {
            self.order.remove(&q.seq);
        }
    }

    /// Drops the oldest alerts above capacity; returns how many.
    fn trim(&mut self) -> usize {
        let mut dropped = 0;
        while self.by_key.len() > self.capacity {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            self.by_key.remove(&key);
            dropped += 1;
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn a(name: &str, ann: &str) -> Alert {
        Alert::new([("alertname", name)], Timestamp::UNIX_EPOCH).with_annotation("v", ann)
    }

    fn names(items: &[Queued]) -> Vec<String> {
        items
            .iter()
            .map(|q| {
                format!(
                    "{}{}",
                    q.alert.labels["alertname"], q.alert.annotations["v"]
                )
            })
            .collect()
    }

    #[test]
    fn newer_versions_replace_and_move_back() {
        let mut q = AlertQueue::new(10);
        q.push(a("A", "1"), false);
        q.push(a("B", "1"), false);
        q.push(a("A", "2"), true);
        assert_eq!(q.len(), 2);
        let got = q.take(10);
        assert_eq!(names(&got), ["B1", "A2"]);
        assert!(got[1].resolved);
        assert!(q.is_empty());
    }

    #[test]
    fn full_queue_drops_the_oldest() {
        let mut q = AlertQueue::new(2);
        assert_eq!(q.push(a("A", "1"), false), 0);
        assert_eq!(q.push(a("B", "1"), false), 0);
        assert_eq!(q.push(a("C", "1"), false), 1);
        assert_eq!(q.len(), 2);
        assert_eq!(names(&q.take(1)), ["B1"]);
        assert_eq!(names(&q.take(5)), ["C1"]);
        assert_eq!(AlertQueue::new(0).capacity(), 1);
    }

    #[test]
    fn failed_batches_go_back_in_front_unless_superseded() {
        let mut q = AlertQueue::new(3);
        q.push(a("A", "1"), false);
        q.push(a("B", "1"), false);
        q.push(a("C", "1"), false);
        let batch = q.take(2);
        q.push(a("B", "2"), false);
        q.push(a("D", "1"), false);
        // A goes back in front; B's old version is superseded; over
        // capacity (A, C, B2, D) the oldest, A, is dropped.
        assert_eq!(q.put_back(batch), 1);
        assert_eq!(names(&q.take(10)), ["C1", "B2", "D1"]);
    }

    #[test]
    fn forgetting_removes_only_resolved_entries() {
        let mut q = AlertQueue::new(3);
        q.push(a("A", "1"), true);
        q.push(a("B", "1"), false);
        q.forget_resolved(&a("A", "").labels);
        q.forget_resolved(&a("B", "").labels);
        assert_eq!(names(&q.take(10)), ["B1"]);
    }
}
