//! Open sessions by grant, so the control plane can end them, and the cancel keys handed to
//! clients, mapped to the upstream backends they stand for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use jitgate_core::Timestamp;
use tokio::sync::watch;

/// What a session is told: its current deadline, or that it must close now and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub deadline: Timestamp,
    pub closed: Option<String>,
}

/// Where a client's cancel key really points.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CancelTarget {
    pub addr: SocketAddr,
    pub pid: i32,
    pub secret: i32,
}

#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    sessions: Mutex<HashMap<String, HashMap<u64, watch::Sender<Control>>>>,
    /// Grants that have ended, and why. A grant never becomes active again, so a session that
    /// registers after its grant ended (a revoke between its login check and its start) is
    /// told to close at once.
    ended: Mutex<HashMap<String, String>>,
    cancels: Mutex<HashMap<(i32, i32), CancelTarget>>,
}

impl Registry {
    /// Ends every session of the grant now, with `reason` in the message clients get.
    pub fn close_grant(&self, grant_id: &str, reason: &str) {
        let sessions = self.sessions.lock().expect("registry lock");
        self.ended
            .lock()
            .expect("registry lock")
            .entry(grant_id.to_owned())
            .or_insert_with(|| reason.to_owned());
        if let Some(sessions) = sessions.get(grant_id) {
            for tx in sessions.values() {
                tx.send_modify(|c| c.closed = Some(reason.to_owned()));
            }
        }
    }

    /// Moves the deadline of every session of the grant (an extension).
    pub fn set_deadline(&self, grant_id: &str, deadline: Timestamp) {
        if let Some(sessions) = self.sessions.lock().expect("registry lock").get(grant_id) {
            for tx in sessions.values() {
                tx.send_if_modified(|c| {
                    let moved = c.deadline != deadline;
                    c.deadline = deadline;
                    moved
                });
            }
        }
    }

    /// How many sessions are open under the grant.
    pub fn open_sessions(&self, grant_id: &str) -> usize {
        self.sessions
            .lock()
            .expect("registry lock")
            .get(grant_id)
            .map_or(0, HashMap::len)
    }

    pub(crate) fn register(
        &self,
        grant_id: &str,
        deadline: Timestamp,
    ) -> (u64, watch::Receiver<Control>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        // Under the sessions lock, so a concurrent close_grant either sees this session or has
        // already marked the grant ended.
        let mut sessions = self.sessions.lock().expect("registry lock");
        let closed = self
            .ended
            .lock()
            .expect("registry lock")
            .get(grant_id)
            .cloned();
        let (tx, rx) = watch::channel(Control { deadline, closed });
        sessions
            .entry(grant_id.to_owned())
            .or_default()
            .insert(id, tx);
        (id, rx)
    }

    pub(crate) fn unregister(&self, grant_id: &str, id: u64) {
        let mut sessions = self.sessions.lock().expect("registry lock");
        if let Some(map) = sessions.get_mut(grant_id) {
            map.remove(&id);
            if map.is_empty() {
                sessions.remove(grant_id);
            }
        }
    }

    /// A fresh random key for the client that stands for `target`.
    pub(crate) fn issue_cancel_key(&self, target: CancelTarget) -> (i32, i32) {
        let mut cancels = self.cancels.lock().expect("registry lock");
        loop {
            let key = (rand::random::<i32>() & 0x7fff_ffff, rand::random::<i32>());
            if let std::collections::hash_map::Entry::Vacant(e) = cancels.entry(key) {
                e.insert(target);
                return key;
            }
        }
    }

    pub(crate) fn cancel_target(&self, key: (i32, i32)) -> Option<CancelTarget> {
        self.cancels
            .lock()
            .expect("registry lock")
            .get(&key)
            .copied()
    }

    pub(crate) fn forget_cancel_key(&self, key: (i32, i32)) {
        self.cancels.lock().expect("registry lock").remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn a_session_registering_after_its_grant_ended_is_closed_at_once() {
        let r = Registry::default();
        r.close_grant("grt_a", "was revoked by an admin");
        let (_, rx) = r.register("grt_a", t("2030-01-01T00:00:00Z"));
        assert_eq!(
            rx.borrow().closed.as_deref(),
            Some("was revoked by an admin"),
            "closed from the start"
        );
        let (_, rx) = r.register("grt_b", t("2030-01-01T00:00:00Z"));
        assert_eq!(rx.borrow().closed, None);
    }

    #[tokio::test]
    async fn closing_and_extending_reach_open_sessions() {
        let r = Registry::default();
        let (id, mut rx) = r.register("grt_a", t("2030-01-01T00:00:00Z"));
        assert_eq!(r.open_sessions("grt_a"), 1);
        r.set_deadline("grt_a", t("2030-01-01T01:00:00Z"));
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().deadline, t("2030-01-01T01:00:00Z"));
        r.close_grant("grt_a", "expired");
        assert_eq!(rx.borrow_and_update().closed.as_deref(), Some("expired"));
        r.unregister("grt_a", id);
        assert_eq!(r.open_sessions("grt_a"), 0);
    }
}
