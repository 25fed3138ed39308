//! What a recording balancer keeps of each request it proxied. Each event loop appends to
//! a list of its own, so recording takes no lock another loop is holding; draining takes
//! every list whole and puts the records back in the order the requests finished.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::ProxyRecord;
use crate::sync::locked;

type List = Arc<Mutex<Vec<ProxyRecord>>>;

pub struct Records {
    /// Tells this balancer's lists from another's on a thread that served both.
    id: usize,
    lists: Mutex<Vec<List>>,
}

thread_local! {
    /// The lists of the balancers this thread records for, by balancer.
    static OWN: RefCell<Vec<(usize, List)>> = const { RefCell::new(Vec::new()) };
}

impl Records {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Self { id: NEXT.fetch_add(1, Ordering::Relaxed), lists: Mutex::new(Vec::new()) }
    }

    pub fn push(&self, record: ProxyRecord) {
        OWN.with_borrow_mut(|own| {
            let list = match own.iter().find(|(id, _)| *id == self.id) {
                Some((_, list)) => list,
                None => {
                    let list = List::default();
                    locked(&self.lists).push(list.clone());
                    own.push((self.id, list));
                    &own[own.len() - 1].1
                }
            };
            locked(list).push(record);
        });
    }

    /// Every record since the last drain, the earliest finished first.
    pub fn drain(&self) -> Vec<ProxyRecord> {
        let mut records: Vec<ProxyRecord> = locked(&self.lists).iter().flat_map(|list| std::mem::take(&mut *locked(list))).collect();
        records.sort_by(|a, b| (a.at_ms + a.took_ms).total_cmp(&(b.at_ms + b.took_ms)));
        records
    }
}
