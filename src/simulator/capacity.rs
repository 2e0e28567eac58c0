//! eSight's capacity, modelled: at most `concurrent` consumption posts are
//! in service at once; the next ones wait in a FIFO queue of at most `queue`
//! posts; beyond that a post is answered `429` with `Retry-After: 1` at once.
//!
//! Decisions:
//! - Only `POST /consumption` goes through the gate; token and catalog calls
//!   and the `/_sim/` control API are never queued.
//! - No capacity (the default) means unlimited: every post is in service at
//!   once, as before capacities existed (`in_service` is still counted).
//! - A post enters service only while fewer than `concurrent` are in service
//!   and no earlier post is waiting, so the queue is strictly FIFO.
//! - A change takes effect at once: after a cut (64 → 16) with 64 in service
//!   no post enters service until fewer than 16 are in service; a raise (or
//!   removing the capacity) lets waiting posts in at once, oldest first. A
//!   smaller queue bound does not evict posts already waiting; new posts get
//!   `429` until the queue is below the bound.
//! - A waiting post whose request is dropped (its client disconnected)
//!   leaves the queue and never takes a slot.
//!
//! Hand-written (a mutex over a counter and a queue of one-shot wake-ups)
//! rather than `tokio::sync::Semaphore`, which cannot shrink below the
//! permits it has handed out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::oneshot;

use super::{SimError, lock};

/// Largest `concurrent` accepted.
pub const MAX_CONCURRENT: usize = 1_000_000;
/// Largest `queue` accepted.
pub const MAX_QUEUE: usize = 1_000_000;

/// A capacity: how many consumption posts are served at once and how many
/// may wait. Built only through [`Capacity::new`], so always in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capacity {
    concurrent: usize,
    queue: usize,
}

impl Capacity {
    /// `concurrent` posts in service at once (1 to [`MAX_CONCURRENT`]) and at
    /// most `queue` waiting (0 to [`MAX_QUEUE`]; default twice `concurrent`).
    pub fn new(concurrent: u64, queue: Option<u64>) -> Result<Self, SimError> {
        let bad = |m: String| Err(SimError::InvalidCapacity(m));
        let concurrent = match usize::try_from(concurrent) {
            Ok(n) if (1..=MAX_CONCURRENT).contains(&n) => n,
            _ => return bad(format!("capacity must be between 1 and {MAX_CONCURRENT}")),
        };
        let queue = match queue.map(usize::try_from) {
            None => concurrent.saturating_mul(2).min(MAX_QUEUE),
            Some(Ok(q)) if q <= MAX_QUEUE => q,
            Some(_) => return bad(format!("queue must be between 0 and {MAX_QUEUE}")),
        };
        Ok(Self { concurrent, queue })
    }

    /// Posts served at once.
    pub fn concurrent(&self) -> usize {
        self.concurrent
    }

    /// Posts that may wait for service.
    pub fn queue(&self) -> usize {
        self.queue
    }
}

/// The capacity and the load now (`GET /_sim/capacity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CapacityView {
    /// Posts served at once; `None` = unlimited.
    pub capacity: Option<usize>,
    /// Posts that may wait; `None` when unlimited.
    pub queue: Option<usize>,
    /// Consumption posts in service now.
    pub in_service: usize,
    /// Consumption posts waiting now.
    pub queued: usize,
}

/// High-water marks since start or the last reset.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Marks {
    pub(crate) max_in_service: u64,
    pub(crate) max_concurrent_posts: u64,
}

/// Shared, thread-safe access to the capacity gate; cheap to clone.
#[derive(Clone)]
pub struct CapacityHandle {
    inner: Arc<Gate>,
}

struct Gate {
    state: Mutex<GateState>,
    initial: Option<Capacity>,
}

struct GateState {
    limit: Option<Capacity>,
    in_service: usize,
    waiting: VecDeque<Waiter>,
    next_ticket: u64,
    marks: Marks,
}

struct Waiter {
    ticket: u64,
    wake: oneshot::Sender<()>,
}

impl GateState {
    fn has_room(&self) -> bool {
        self.limit.is_none_or(|c| self.in_service < c.concurrent)
    }

    /// Lets waiting posts in, oldest first, while there is room.
    fn admit_waiting(&mut self) {
        while self.has_room() {
            let Some(waiter) = self.waiting.pop_front() else { break };
            // Counted as in service even if its request is gone: the
            // `Slot` being dropped releases it.
            self.in_service += 1;
            let _ = waiter.wake.send(());
        }
        self.note_marks();
    }

    fn note_marks(&mut self) {
        let marks = &mut self.marks;
        marks.max_in_service = marks.max_in_service.max(self.in_service as u64);
        marks.max_concurrent_posts =
            marks.max_concurrent_posts.max((self.in_service + self.waiting.len()) as u64);
    }
}

impl CapacityHandle {
    pub(crate) fn new(initial: Option<Capacity>) -> Self {
        let state = GateState {
            limit: initial,
            in_service: 0,
            waiting: VecDeque::new(),
            next_ticket: 0,
            marks: Marks::default(),
        };
        Self { inner: Arc::new(Gate { state: Mutex::new(state), initial }) }
    }

    /// Sets the capacity from now on (`None` = unlimited); waiting posts
    /// enter service at once if there is room.
    pub fn set(&self, capacity: Option<Capacity>) {
        let mut state = lock(&self.inner.state);
        state.limit = capacity;
        state.admit_waiting();
    }

    /// The capacity in force.
    pub fn get(&self) -> Option<Capacity> {
        lock(&self.inner.state).limit
    }

    /// The capacity and the load now.
    pub fn view(&self) -> CapacityView {
        let state = lock(&self.inner.state);
        CapacityView {
            capacity: state.limit.map(|c| c.concurrent),
            queue: state.limit.map(|c| c.queue),
            in_service: state.in_service,
            queued: state.waiting.len(),
        }
    }

    /// Restores the capacity given at start and restarts the high-water
    /// marks from the load now.
    pub(crate) fn restore_initial(&self) {
        let mut state = lock(&self.inner.state);
        state.limit = self.inner.initial;
        state.marks = Marks::default();
        state.admit_waiting();
    }

    pub(crate) fn marks(&self) -> Marks {
        lock(&self.inner.state).marks
    }

    /// Waits for service: `None` at once when the queue is full, else a
    /// [`Slot`] once in service. Dropping the future while it waits gives
    /// the place in the queue up.
    pub(crate) async fn enter(&self) -> Option<Slot> {
        let (mut slot, wake) = {
            let mut state = lock(&self.inner.state);
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            if state.waiting.is_empty() && state.has_room() {
                state.in_service += 1;
                state.note_marks();
                return Some(Slot { gate: self.inner.clone(), ticket, queued: false });
            }
            if state.waiting.len() >= state.limit.map_or(usize::MAX, |c| c.queue) {
                return None;
            }
            let (wake, woken) = oneshot::channel();
            state.waiting.push_back(Waiter { ticket, wake });
            state.note_marks();
            (Slot { gate: self.inner.clone(), ticket, queued: true }, woken)
        };
        // An error means the sender was dropped after being taken from the
        // queue, which counts it in service just the same.
        let _ = wake.await;
        slot.queued = false;
        Some(slot)
    }
}

/// A post's place: in service, or (while `queued`) perhaps still waiting.
/// Dropping it leaves the queue or frees the service slot.
pub(crate) struct Slot {
    gate: Arc<Gate>,
    ticket: u64,
    queued: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = lock(&self.gate.state);
        if self.queued
            && let Some(at) = state.waiting.iter().position(|w| w.ticket == self.ticket)
        {
            state.waiting.remove(at);
            return;
        }
        state.in_service -= 1;
        state.admit_waiting();
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn cap(concurrent: u64, queue: u64) -> Option<Capacity> {
        Some(Capacity::new(concurrent, Some(queue)).unwrap())
    }

    /// Polls once without a runtime (the gate needs none).
    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    fn enter_now(gate: &CapacityHandle) -> Option<Slot> {
        match poll_once(pin!(gate.enter())) {
            Poll::Ready(slot) => slot,
            Poll::Pending => panic!("queued"),
        }
    }

    #[test]
    fn ranges_and_the_default_queue() {
        assert!(Capacity::new(0, None).is_err());
        assert!(Capacity::new(MAX_CONCURRENT as u64 + 1, None).is_err());
        assert!(Capacity::new(4, Some(MAX_QUEUE as u64 + 1)).is_err());
        assert_eq!(Capacity::new(4, None).unwrap().queue(), 8);
        assert_eq!(Capacity::new(4, Some(0)).unwrap().queue(), 0);
    }

    #[test]
    fn waiting_posts_enter_in_order_and_a_cut_holds_them_back() {
        let gate = CapacityHandle::new(cap(2, 2));
        let first = enter_now(&gate).unwrap();
        let second = enter_now(&gate).unwrap();
        let mut third = Box::pin(gate.enter());
        let mut fourth = Box::pin(gate.enter());
        assert!(poll_once(third.as_mut()).is_pending());
        assert!(poll_once(fourth.as_mut()).is_pending());
        assert!(enter_now(&gate).is_none(), "the queue is full");
        assert_eq!(gate.view(), CapacityView { capacity: Some(2), queue: Some(2), in_service: 2, queued: 2 });

        gate.set(cap(1, 2));
        drop(first);
        assert_eq!(gate.view().in_service, 1, "nobody enters above the new capacity");
        assert!(poll_once(third.as_mut()).is_pending());
        drop(second);
        let Poll::Ready(Some(third)) = poll_once(third.as_mut()) else { panic!("third waits") };
        assert!(poll_once(fourth.as_mut()).is_pending(), "fourth comes after third");
        gate.set(None);
        let Poll::Ready(Some(_fourth)) = poll_once(fourth.as_mut()) else { panic!("fourth waits") };
        assert_eq!(gate.view().in_service, 2);
        drop(third);
        let marks = gate.marks();
        assert_eq!((marks.max_in_service, marks.max_concurrent_posts), (2, 4));
    }

    #[test]
    fn a_dropped_waiter_gives_its_place_up() {
        let gate = CapacityHandle::new(cap(1, 1));
        let first = enter_now(&gate).unwrap();
        let mut gone = Box::pin(gate.enter());
        assert!(poll_once(gone.as_mut()).is_pending());
        drop(gone);
        assert_eq!(gate.view().queued, 0);
        let mut next = Box::pin(gate.enter());
        assert!(poll_once(next.as_mut()).is_pending(), "there is room in the queue again");
        drop(first);
        assert!(matches!(poll_once(next.as_mut()), Poll::Ready(Some(_))));
        assert_eq!(gate.view().in_service, 0, "the slot is freed with the finished future");
    }

    #[test]
    fn a_waiter_dropped_after_admission_frees_its_slot() {
        let gate = CapacityHandle::new(cap(1, 1));
        let first = enter_now(&gate).unwrap();
        let mut admitted = Box::pin(gate.enter());
        assert!(poll_once(admitted.as_mut()).is_pending());
        drop(first);
        assert_eq!(gate.view().in_service, 1);
        drop(admitted);
        assert_eq!(gate.view(), CapacityView { capacity: Some(1), queue: Some(1), in_service: 0, queued: 0 });
    }
}
