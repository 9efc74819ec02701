//! The shard's shutdown signal (§14.1): fired once by the `Shutdown` mesh message;
//! the accept loop stops, sessions drain and close with 1001, and the shard ends
//! once no connection is left on any shard.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct ShutdownSignal {
    fired: Cell<bool>,
    waiting: RefCell<Vec<Waker>>,
}

impl ShutdownSignal {
    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    pub fn fire(&self) {
        self.fired.set(true);
        for waker in self.waiting.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Completes once the signal has fired.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.fired.get() {
                Poll::Ready(())
            } else {
                let mut waiting = self.waiting.borrow_mut();
                if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    waiting.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}
