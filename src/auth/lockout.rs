//! Brute-force protection: sliding windows of failed logins per username and
//! per client IP. After `auth.lockout_failures` failures within
//! `auth.lockout_window`, further attempts are refused with `429` without
//! checking the password. Attempts while locked add no failures, so the lock
//! lifts by itself when the window passes: an attacker cannot keep a real
//! user out for longer than one window (a soft lock, as ASVS asks).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept per map at most; older idle entries are dropped first.
const MAX_TRACKED: usize = 100_000;

/// Who is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockedBy {
    /// The username.
    Username,
    /// The client IP.
    Ip,
}

/// A refusal: which limit and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// Which limit was hit.
    pub by: LockedBy,
    /// When it lifts.
    pub retry_after: Duration,
}

struct Windows<K> {
    failures: HashMap<K, VecDeque<Instant>>,
}

impl<K> Default for Windows<K> {
    fn default() -> Self {
        Self { failures: HashMap::new() }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Windows<K> {
    fn recent(&mut self, key: &K, window: Duration, now: Instant) -> Option<&mut VecDeque<Instant>> {
        let q = self.failures.get_mut(key)?;
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        Some(q)
    }

    fn locked(&mut self, key: &K, limit: u32, window: Duration, now: Instant) -> Option<Duration> {
        let q = self.recent(key, window, now)?;
        if q.len() < limit as usize {
            return None;
        }
        let oldest = *q.front()?;
        Some(window.saturating_sub(now.duration_since(oldest)).max(Duration::from_secs(1)))
    }

    /// Adds a failure; true when this one reached the limit.
    fn add(&mut self, key: K, limit: u32, window: Duration, now: Instant) -> bool {
        if self.failures.len() >= MAX_TRACKED {
            self.failures.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let q = self.failures.entry(key).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        q.push_back(now);
        q.len() == limit as usize
    }
}

/// The lockout state.
pub struct Lockout {
    user_limit: u32,
    ip_limit: u32,
    window: Duration,
    users: Mutex<Windows<String>>,
    ips: Mutex<Windows<IpAddr>>,
}

impl Lockout {
    /// `user_limit` failures per username and `ip_limit` per IP within `window`.
    pub fn new(user_limit: u32, ip_limit: u32, window: Duration) -> Self {
        Self {
            user_limit,
            ip_limit,
            window,
            users: Mutex::new(Windows::default()),
            ips: Mutex::new(Windows::default()),
        }
    }

    /// Refuses the attempt if the username or the IP is locked.
    pub fn check(&self, username: &str, ip: IpAddr) -> Result<(), Locked> {
        let now = Instant::now();
        let name = username.to_lowercase();
        if let Some(retry_after) = self.users.lock().unwrap_or_else(|e| e.into_inner()).locked(
            &name,
            self.user_limit,
            self.window,
            now,
        ) {
            return Err(Locked { by: LockedBy::Username, retry_after });
        }
        if let Some(retry_after) =
            self.ips.lock().unwrap_or_else(|e| e.into_inner()).locked(&ip, self.ip_limit, self.window, now)
        {
            return Err(Locked { by: LockedBy::Ip, retry_after });
        }
        Ok(())
    }

    /// Records a failed attempt; returns which limits this failure reached
    /// (each is reported once, to audit `account_locked` once).
    pub fn record_failure(&self, username: &str, ip: IpAddr) -> Vec<LockedBy> {
        let now = Instant::now();
        let mut reached = Vec::new();
        let name = username.to_lowercase();
        if self.users.lock().unwrap_or_else(|e| e.into_inner()).add(name, self.user_limit, self.window, now) {
            reached.push(LockedBy::Username);
        }
        if self.ips.lock().unwrap_or_else(|e| e.into_inner()).add(ip, self.ip_limit, self.window, now) {
            reached.push(LockedBy::Ip);
        }
        reached
    }

    /// Forgets a username's failures (after a successful login or an admin
    /// unlock).
    pub fn clear(&self, username: &str) {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).failures.remove(&username.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_limit_and_lifts_after_the_window() {
        let l = Lockout::new(3, 100, Duration::from_millis(200));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.record_failure("Bob", ip).is_empty());
        assert!(l.record_failure("bob", ip).is_empty());
        assert!(l.check("bob", ip).is_ok());
        assert_eq!(l.record_failure("bob", ip), vec![LockedBy::Username]);
        assert_eq!(l.check("BOB", ip).unwrap_err().by, LockedBy::Username);
        assert!(l.check("alice", ip).is_ok());
        std::thread::sleep(Duration::from_millis(250));
        assert!(l.check("bob", ip).is_ok());
    }

    #[test]
    fn clearing_lifts_a_lock() {
        let l = Lockout::new(1, 100, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        l.record_failure("eve", ip);
        assert!(l.check("eve", ip).is_err());
        l.clear("eve");
        assert!(l.check("eve", ip).is_ok());
    }

    #[test]
    fn an_ip_is_locked_across_usernames() {
        let l = Lockout::new(100, 2, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        l.record_failure("a", ip);
        assert_eq!(l.record_failure("b", ip), vec![LockedBy::Ip]);
        assert_eq!(l.check("c", ip).unwrap_err().by, LockedBy::Ip);
    }
}
