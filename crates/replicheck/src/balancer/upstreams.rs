//! The balancer's view of the replicas: who is there, where, and who takes traffic.
//!
//! Membership changes (a restart, a new replica) swap the whole table atomically; readiness
//! and deregistration flip flags in place. Routing a request reads both without a lock.
//!
//! A replica that got SIGTERM is *held*: it keeps receiving its traffic, whatever its
//! readiness says, until it is removed after the deregistration delay, as Kubernetes
//! endpoints keep a terminating pod until the removal has propagated.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::vocab::replica::Endpoint;
use crate::vocab::replica::{Incarnation, ReplicaId};

#[derive(Debug)]
pub struct Upstream {
    pub replica: Incarnation,
    pub addr: SocketAddr,
    /// The `x-replicheck-replica` value of its answers, made once rather than per request.
    pub served_by: HeaderValue,
    /// `addr` as the `Host` of requests whose client sent none (HTTP/1.0), made once too.
    pub host: HeaderValue,
    ready: AtomicBool,
    held: AtomicBool,
    /// Readiness probes failed in a row.
    failed_probes: AtomicU32,
    /// Requests sent to it that have no answer yet, for a balancer that drains a replica
    /// before it stops.
    in_flight: AtomicU32,
    /// Requests and probes in a row that got no answer at all (not even an error
    /// status), and when the first of them was sent: a replica that stopped answering.
    /// Atomics, not a lock: every proxied request marks its answer.
    unanswered: AtomicU32,
    /// When the first unanswered one was sent, in milliseconds after `created`, plus one
    /// (0: none).
    silent_since_ms: AtomicU64,
    created: std::time::Instant,
}

/// Counts one request in flight to an upstream until its answer (or failure) has been
/// relayed whole: a balancer that drains a replica waits for the body too, as a load
/// balancer's connection draining does.
pub struct InFlight(Arc<Upstream>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Probes that must fail in a row before a replica counts as unready, as Kubernetes'
/// `failureThreshold`: one slow answer on a busy machine does not take a replica out.
const FAILURE_THRESHOLD: u32 = 2;

impl Upstream {
    fn new(endpoint: &Endpoint) -> Self {
        Self {
            replica: endpoint.replica,
            addr: endpoint.addr,
            // A replica name (`r1#2`) is always a valid header value.
            served_by: HeaderValue::from_str(&endpoint.replica.to_string()).unwrap_or(HeaderValue::from_static("unknown")),
            // A socket address is always a valid header value.
            host: HeaderValue::from_str(&endpoint.addr.to_string()).unwrap_or(HeaderValue::from_static("localhost")),
            // The cluster waited for readiness before handing the endpoint over.
            ready: AtomicBool::new(true),
            held: AtomicBool::new(false),
            failed_probes: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            unanswered: AtomicU32::new(0),
            silent_since_ms: AtomicU64::new(0),
            created: std::time::Instant::now(),
        }
    }

    /// It answered something (any status): it is not silent. One load when it was not.
    pub fn answered(&self) {
        if self.unanswered.load(Ordering::Relaxed) != 0 {
            self.unanswered.store(0, Ordering::Relaxed);
            self.silent_since_ms.store(0, Ordering::Relaxed);
        }
    }

    /// A request or probe got no answer (refused, reset, timed out).
    pub fn unanswered(&self) {
        if self.unanswered.fetch_add(1, Ordering::Relaxed) == 0 {
            self.silent_since_ms.store(self.created.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        }
    }

    /// How long it has answered nothing, and how many tries got nothing, if it is silent.
    pub fn silent(&self) -> Option<(Duration, u32)> {
        let tries = self.unanswered.load(Ordering::Relaxed);
        let since = self.silent_since_ms.load(Ordering::Relaxed).checked_sub(1)?;
        (tries > 0).then(|| (self.created.elapsed().saturating_sub(Duration::from_millis(since)), tries))
    }

    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Requests sent to it still waiting for their answer.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        if ready {
            self.failed_probes.store(0, Ordering::Release);
        }
        self.ready.store(ready, Ordering::Release);
    }

    /// Takes one readiness probe's answer into account.
    fn probed(&self, ready: bool) {
        if ready {
            self.set_ready(true);
        } else if self.failed_probes.fetch_add(1, Ordering::AcqRel) + 1 >= FAILURE_THRESHOLD {
            self.ready.store(false, Ordering::Release);
        }
    }

    /// Deregistering: still routed to, whatever readiness says.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Whether requests go here.
    pub fn takes_traffic(&self) -> bool {
        self.is_held() || self.is_ready()
    }
}

/// The current table, in replica-name order.
#[derive(Debug, Default)]
pub struct Upstreams {
    table: ArcSwap<Vec<Arc<Upstream>>>,
}

impl Upstreams {
    pub fn new(endpoints: &[Endpoint]) -> Self {
        let upstreams = Self::default();
        upstreams.replace(endpoints);
        upstreams
    }

    /// Installs a new membership. Replicas whose incarnation and address did not change
    /// keep their state; new ones start ready (the cluster waited for them).
    pub fn replace(&self, endpoints: &[Endpoint]) {
        let current = self.table.load();
        let next: Vec<Arc<Upstream>> = endpoints
            .iter()
            .map(|e| {
                current
                    .iter()
                    .find(|u| u.replica == e.replica && u.addr == e.addr)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Upstream::new(e)))
            })
            .collect();
        self.store(next);
    }

    /// Adds an incarnation (a new replica, or a restarted one beside its predecessor).
    pub fn insert(&self, endpoint: &Endpoint) {
        let mut next: Vec<Arc<Upstream>> = self.table.load().iter().filter(|u| u.replica != endpoint.replica).cloned().collect();
        next.push(Arc::new(Upstream::new(endpoint)));
        self.store(next);
    }

    /// Keeps routing to an incarnation that is shutting down, until `remove`.
    pub fn hold(&self, replica: Incarnation) {
        if let Some(upstream) = self.table.load().iter().find(|u| u.replica == replica) {
            upstream.held.store(true, Ordering::Release);
        }
    }

    /// The upstream of an incarnation, if it is in the table.
    pub fn incarnation(&self, replica: Incarnation) -> Option<Arc<Upstream>> {
        self.table.load().iter().find(|u| u.replica == replica).cloned()
    }

    /// Takes an incarnation out of the table.
    pub fn remove(&self, replica: Incarnation) {
        let next = self.table.load().iter().filter(|u| u.replica != replica).cloned().collect();
        self.store(next);
    }

    fn store(&self, mut next: Vec<Arc<Upstream>>) {
        next.sort_by_key(|u| u.replica);
        self.table.store(Arc::new(next));
    }

    pub fn snapshot(&self) -> Arc<Vec<Arc<Upstream>>> {
        self.table.load_full()
    }

    pub fn get(&self, id: ReplicaId) -> Option<Arc<Upstream>> {
        self.table.load().iter().find(|u| u.replica.id == id).cloned()
    }

    /// Records readiness seen by someone else (an experiment that just waited for it).
    pub fn mark_ready(&self, replica: Incarnation) {
        if let Some(upstream) = self.table.load().iter().find(|u| u.replica == replica) {
            upstream.set_ready(true);
        }
    }

    /// Names of the replicas that take traffic, in order, each once.
    pub fn ready_ids(&self) -> Vec<ReplicaId> {
        let mut ids: Vec<ReplicaId> = self.table.load().iter().filter(|u| u.takes_traffic()).map(|u| u.replica.id).collect();
        ids.dedup();
        ids
    }

    /// Where a request for replica `id` goes: a held (deregistering) incarnation while it
    /// is held, else the newest ready one; when `id` takes no traffic, the next replica in
    /// name order that does, as a load balancer routes around an unready endpoint.
    pub fn route(&self, id: ReplicaId) -> Option<Arc<Upstream>> {
        let table = self.table.load();
        let of = |id: ReplicaId| -> Option<&Arc<Upstream>> {
            let mut incarnations = table.iter().filter(move |u| u.replica.id == id);
            incarnations.clone().find(|u| u.is_held()).or_else(|| incarnations.rfind(|u| u.is_ready()))
        };
        if let Some(upstream) = of(id) {
            return Some(upstream.clone());
        }
        let mut ids: Vec<ReplicaId> = table.iter().map(|u| u.replica.id).collect();
        ids.dedup();
        let start = ids.iter().position(|i| *i > id).unwrap_or(0);
        (0..ids.len()).map(|i| ids[(start + i) % ids.len()]).find_map(of).cloned()
    }
}

/// Probes every upstream's readiness endpoint forever, as an orchestrator's readiness
/// probe does, and marks the upstream ready or not after each answer.
pub async fn probe_forever(upstreams: Arc<Upstreams>, ready_path: String, interval: Duration) {
    let client = crate::client::probe_client();
    loop {
        tokio::time::sleep(interval).await;
        let table = upstreams.snapshot();
        let probes = table.iter().map(|upstream| {
            let url = format!("http://{}{}", upstream.addr, ready_path);
            let client = &client;
            async move {
                let ready = match client.get(&url).send().await {
                    Ok(r) => {
                        upstream.answered();
                        r.status().is_success() || r.status().is_redirection()
                    }
                    Err(_) => {
                        upstream.unanswered();
                        false
                    }
                };
                upstream.probed(ready);
            }
        });
        futures_util::future::join_all(probes).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: u16, generation: u32, port: u16) -> Endpoint {
        Endpoint {
            replica: Incarnation {
                id: ReplicaId(id),
                generation,
            },
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn routed(upstreams: &Upstreams, id: u16) -> Option<String> {
        upstreams.route(ReplicaId(id)).map(|u| u.replica.to_string())
    }

    #[test]
    fn silence_counts_tries_without_an_answer_until_one_comes() {
        let upstream = Upstream::new(&endpoint(0, 1, 1000));
        assert_eq!(upstream.silent(), None);
        upstream.unanswered();
        upstream.unanswered();
        let (_, tries) = upstream.silent().unwrap();
        assert_eq!(tries, 2);
        upstream.answered();
        assert_eq!(upstream.silent(), None);
    }

    #[test]
    fn a_held_incarnation_keeps_its_traffic_until_removed() {
        let upstreams = Upstreams::new(&[endpoint(0, 1, 1000), endpoint(1, 1, 1001)]);
        upstreams.insert(&endpoint(0, 2, 1002));
        assert_eq!(routed(&upstreams, 0).as_deref(), Some("r0#2"), "the newest ready one");
        let old = endpoint(0, 1, 1000).replica;
        upstreams.hold(old);
        upstreams.get(ReplicaId(0)).unwrap().set_ready(false);
        assert_eq!(routed(&upstreams, 0).as_deref(), Some("r0"), "held: routed whatever readiness says");
        upstreams.remove(old);
        assert_eq!(routed(&upstreams, 0).as_deref(), Some("r0#2"));
    }

    #[test]
    fn an_unready_replica_is_routed_around_in_name_order() {
        let upstreams = Upstreams::new(&[endpoint(0, 1, 1000), endpoint(1, 1, 1001), endpoint(2, 1, 1002)]);
        upstreams.get(ReplicaId(1)).unwrap().set_ready(false);
        assert_eq!(routed(&upstreams, 1).as_deref(), Some("r2"));
        assert_eq!(upstreams.ready_ids(), [ReplicaId(0), ReplicaId(2)]);
        for id in 0..3 {
            upstreams.get(ReplicaId(id)).unwrap().set_ready(false);
        }
        assert_eq!(routed(&upstreams, 1), None);
    }

    #[test]
    fn one_failed_probe_is_not_enough_to_take_a_replica_out() {
        let upstreams = Upstreams::new(&[endpoint(0, 1, 1000)]);
        let upstream = upstreams.get(ReplicaId(0)).unwrap();
        upstream.probed(false);
        assert!(upstream.is_ready());
        upstream.probed(false);
        assert!(!upstream.is_ready());
        upstream.probed(true);
        upstream.probed(false);
        assert!(upstream.is_ready(), "a success resets the count");
    }
}
