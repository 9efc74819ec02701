//! Coarse per-shard deadlines: the handshake timer, the idle timer and the close
//! wait of every connection share one ticking task instead of arming one kernel
//! timer each (each glommio timer costs io_uring timeout submissions and hrtimer
//! reprogramming, which dominated the cost of a short connection). A deadline
//! fires at most `DEADLINE_TICK` late.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::limits::DEADLINE_TICK;

/// The shard's registry of pending deadlines, ordered by time.
#[derive(Default)]
pub struct Deadlines {
    pending: RefCell<BTreeMap<(Instant, u64), Waker>>,
    next_id: Cell<u64>,
}

impl Deadlines {
    /// A future that completes at `at` (up to one tick late).
    pub fn at(self: &Rc<Self>, at: Instant) -> Deadline {
        Deadline {
            wheel: Rc::clone(self),
            at,
            registered: None,
        }
    }

    /// Wakes every deadline that has passed; runs for the life of the shard.
    pub async fn run(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(DEADLINE_TICK).await;
            let now = Instant::now();
            let due: Vec<Waker> = {
                let mut pending = self.pending.borrow_mut();
                let later = pending.split_off(&(now, u64::MAX));
                std::mem::replace(&mut *pending, later)
                    .into_values()
                    .collect()
            };
            for waker in due {
                waker.wake();
            }
        }
    }
}

/// One deadline; dropping it unregisters it.
pub struct Deadline {
    wheel: Rc<Deadlines>,
    at: Instant,
    registered: Option<(Instant, u64)>,
}

impl Deadline {
    /// Moves the deadline.
    pub fn reset(&mut self, at: Instant) {
        self.unregister();
        self.at = at;
    }

    /// When it fires.
    pub fn at(&self) -> Instant {
        self.at
    }

    pub fn is_due(&self) -> bool {
        Instant::now() >= self.at
    }

    fn unregister(&mut self) {
        if let Some(key) = self.registered.take() {
            self.wheel.pending.borrow_mut().remove(&key);
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_due() {
            self.unregister();
            return Poll::Ready(());
        }
        let key = match self.registered {
            Some(key) => key,
            None => {
                let id = self.wheel.next_id.get();
                self.wheel.next_id.set(id + 1);
                let key = (self.at, id);
                self.registered = Some(key);
                key
            }
        };
        let mut pending = self.wheel.pending.borrow_mut();
        match pending.get_mut(&key) {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            Some(waker) => *waker = cx.waker().clone(),
            None => {
                pending.insert(key, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.unregister();
    }
}
