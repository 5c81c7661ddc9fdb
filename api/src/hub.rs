//! The WebSocket hub: which connections are open, and whom to wake when entries apply.
//!
//! Live delivery is *pull after push*: the hub only wakes the connections an applied entry may
//! concern (its [`Audience`] hint, plus the online members of its group); each woken
//! connection then reads its updates with the same [`Store::sync`] query HTTP sync uses, from
//! its own cursor. So a live stream can never differ from what sync returns: no gap, no
//! duplicate, and a slow socket never delays others (each connection pulls on its own task).
//!
//! Invariant: for any entry applied after a connection registered, the hub wakes it if the
//! entry concerns its user. The group index is loaded from the store at registration and then
//! follows membership events in log order, so it is exact from then on; entries committed
//! between the load and the hub seeing them are covered by the connection's catch-up read,
//! which starts after registration.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use parley_raft::ApplyListener;
use parley_storage::{AppliedEntry, Event, Store};
use tokio::sync::{watch, Notify};

/// Why the server closes a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    None,
    /// The session was revoked (close 4001).
    Revoked,
    /// The server is shutting down (close 1001).
    Shutdown,
}

/// A connection's handle in the hub.
pub struct ConnHandle {
    pub user_id: String,
    pub session_id: String,
    pub wake: Arc<Notify>,
    pub kick: watch::Sender<Kick>,
}

#[derive(Default)]
struct HubState {
    next_id: u64,
    conns: HashMap<u64, ConnHandle>,
    by_user: HashMap<String, HashSet<u64>>,
    /// Group id -> online users who are members.
    group_online: HashMap<u64, HashSet<String>>,
}

pub struct Hub {
    store: Store,
    state: Mutex<HubState>,
    applied: watch::Sender<u64>,
    metrics_applied: std::sync::atomic::AtomicU64,
}

/// Removes the connection from the hub when dropped.
pub struct Registration {
    hub: Arc<Hub>,
    id: u64,
    pub wake: Arc<Notify>,
    pub kick: watch::Receiver<Kick>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
    }
}

impl Hub {
    pub fn new(store: Store) -> Arc<Hub> {
        let (applied, _) = watch::channel(store.applied_cursor());
        Arc::new(Hub { store, state: Mutex::new(HubState::default()), applied, metrics_applied: Default::default() })
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding this lock cannot leave it half-updated in a way that matters
        // more than losing every socket, so keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver of the applied cursor (long-polls and read-your-writes wait on it).
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Journal entries applied on this node since start.
    pub fn entries_applied(&self) -> u64 {
        self.metrics_applied.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn open_connections(&self) -> usize {
        self.lock().conns.len()
    }

    /// Registers a connection before its catch-up read.
    pub fn register(
        self: &Arc<Self>,
        user_id: &str,
        session_id: &str,
    ) -> Result<Registration, parley_storage::StoreError> {
        let wake = Arc::new(Notify::new());
        let (kick_tx, kick_rx) = watch::channel(Kick::None);
        let mut st = self.lock();
        let groups = self.store.groups_of(user_id)?;
        st.next_id += 1;
        let id = st.next_id;
        st.conns.insert(
            id,
            ConnHandle {
                user_id: user_id.to_owned(),
                session_id: session_id.to_owned(),
                wake: wake.clone(),
                kick: kick_tx,
            },
        );
        st.by_user.entry(user_id.to_owned()).or_default().insert(id);
        for g in groups {
            st.group_online.entry(g).or_default().insert(user_id.to_owned());
        }
        drop(st);
        // The session may have been revoked between authentication and registration.
        let reg = Registration { hub: self.clone(), id, wake, kick: kick_rx };
        if self.store.session(session_id)?.is_none() {
            self.kick_session(session_id, Kick::Revoked);
        }
        Ok(reg)
    }

    fn unregister(&self, id: u64) {
        let mut st = self.lock();
        let Some(conn) = st.conns.remove(&id) else { return };
        let now_offline = match st.by_user.get_mut(&conn.user_id) {
            Some(ids) => {
                ids.remove(&id);
                ids.is_empty()
            }
            None => true,
        };
        if now_offline {
            st.by_user.remove(&conn.user_id);
            st.group_online.retain(|_, users| {
                users.remove(&conn.user_id);
                !users.is_empty()
            });
        }
    }

    fn kick_session(&self, session_id: &str, why: Kick) {
        let st = self.lock();
        for c in st.conns.values().filter(|c| c.session_id == session_id) {
            let _ = c.kick.send(why);
        }
    }

    /// Closes every connection (server shutdown).
    pub fn shutdown(&self) {
        let st = self.lock();
        for c in st.conns.values() {
            let _ = c.kick.send(Kick::Shutdown);
        }
    }

    fn wake_user(st: &HubState, user: &str) {
        if let Some(ids) = st.by_user.get(user) {
            for id in ids {
                if let Some(c) = st.conns.get(id) {
                    c.wake.notify_one();
                }
            }
        }
    }

    fn wake_all(st: &HubState) {
        for c in st.conns.values() {
            c.wake.notify_one();
        }
    }
}

impl ApplyListener for Hub {
    fn applied(&self, entries: &[AppliedEntry], applied_cursor: u64) {
        self.metrics_applied.fetch_add(entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut revoked = Vec::new();
        {
            let mut st = self.lock();
            if entries.is_empty() {
                // A snapshot was installed: anything may have changed. Rebuild the group index
                // and let every connection pull.
                let users: Vec<String> = st.by_user.keys().cloned().collect();
                st.group_online.clear();
                for u in users {
                    if let Ok(groups) = self.store.groups_of(&u) {
                        for g in groups {
                            st.group_online.entry(g).or_default().insert(u.clone());
                        }
                    }
                }
                Self::wake_all(&st);
            }
            for e in entries {
                // Membership first for joins (new members hear about their own join) ...
                match &e.event {
                    Event::GroupCreated { group_id, .. } | Event::MembersAdded { group_id, .. } => {
                        for u in &e.audience.users {
                            if st.by_user.contains_key(u) {
                                st.group_online.entry(*group_id).or_default().insert(u.clone());
                            }
                        }
                    }
                    Event::SessionRevoked { session_id, .. } => revoked.push(session_id.clone()),
                    _ => {}
                }
                for u in &e.audience.users {
                    Self::wake_user(&st, u);
                }
                if let Some(g) = e.audience.group {
                    if let Some(users) = st.group_online.get(&g) {
                        for u in users {
                            Self::wake_user(&st, u);
                        }
                    }
                }
                // ... and after waking for leaves (removed members hear about their removal).
                match &e.event {
                    Event::MemberRemoved { group_id, user_id, .. } => {
                        if let Some(users) = st.group_online.get_mut(group_id) {
                            users.remove(user_id);
                        }
                    }
                    Event::GroupDismissed { group_id, .. } => {
                        st.group_online.remove(group_id);
                    }
                    _ => {}
                }
            }
        }
        for sid in revoked {
            self.kick_session(&sid, Kick::Revoked);
        }
        self.applied.send_replace(applied_cursor);
    }
}
