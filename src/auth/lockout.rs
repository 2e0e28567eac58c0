//! Brute-force protection: sliding windows of failed logins per username and
//! per client network (an IPv4 address, an IPv6 /64). After
//! `auth.lockout_failures` failures within `auth.lockout_window`, further
//! attempts are refused with `429` without checking the password. Attempts
//! while locked add no failures, so the lock lifts by itself when the window
//! passes: an attacker cannot keep a real user out for longer than one window
//! (a soft lock, as ASVS asks).
//!
//! A login takes its failure slot *before* the password is checked
//! ([`Lockout::reserve`]): the check and the reservation happen under one
//! lock, so however many attempts arrive at once, at most
//! `auth.lockout_failures` password checks per username (and
//! `auth.lockout_ip_failures` per network) run per window. The slot then
//! becomes a failure ([`Lockout::fail`]), or is given back: on success
//! ([`Lockout::succeed`], which also forgets the username's failures) or when
//! no password check ran ([`Lockout::release`], e.g. the hashing pool was
//! busy). A login abandoned in between (client gone) keeps its slot as a
//! failure until the window passes: the hash it started runs to the end.
//!
//! The username map is keyed only by a parsed [`Username`] (at most 64
//! ASCII characters, lower-cased), so it can never hold attacker-sized keys.
//!
//! Lifting a username lock early (an operator unlocks a user, not a
//! network: the per-IP windows stay in memory and only lift with time).
//! The windows live in this process, but `energyload user unlock` and
//! `user passwd` run in another one, on the same database. So:
//! - when a failure of a known user reaches the username limit, the server
//!   records the lock in `user_locks` (`locked_until`, in the transaction of
//!   its `account_locked` event), which `user list` and the management API
//!   show;
//! - whoever lifts a lock (CLI `user unlock`, the API's unlock, any password
//!   change) clears `locked_until` and sets the user's unlock marker
//!   `unlocked_at`, in the transaction of the change and its audit event;
//! - only when a login is refused because its username is locked does the
//!   server read the marker ([`Lockout::may_read_unlock_marker`] bounds
//!   those reads per username); if the unlock came after the lock began
//!   ([`Lockout::lift_if_unlocked_after_lock`]) the window is forgotten and
//!   the login proceeds as a first attempt. A login that is not refused
//!   reads nothing new, and a wrong password after an unlock counts as
//!   before: a new lock begins after the marker, which then no longer
//!   lifts it.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::clock::now_millis;
use crate::domain::user::Username;

/// Entries kept per map at most; older idle entries are dropped first.
const MAX_TRACKED: usize = 100_000;

/// Unlock-marker reads a locked username may cause at once ...
const MARKER_READ_BURST: f64 = 5.0;
/// ... and per second after that.
const MARKER_READS_PER_SEC: f64 = 10.0;

/// Who is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockedBy {
    /// The username.
    Username,
    /// The client IP (IPv4 address or IPv6 /64).
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

/// The key of the per-IP window: an IPv4 address as it is (also when it
/// arrives IPv4-mapped in IPv6), an IPv6 address cut to its /64 network,
/// the smallest block a single subscriber is normally given, so one
/// attacker cannot get a fresh window per address.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

/// A failure slot taken by [`Lockout::reserve`] before a password check.
/// Hand it back with exactly one of [`Lockout::fail`], [`Lockout::succeed`]
/// or [`Lockout::release`]; dropped otherwise, it stays counted as a failure.
#[derive(Debug)]
#[must_use = "a reserved slot must be settled as a failure, a success or a release"]
pub struct Reservation {
    username: Option<String>,
    ip: IpAddr,
    at: Instant,
    reaches: Vec<LockedBy>,
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

    /// Takes back one slot added at `at` (if it has not expired meanwhile).
    fn remove_one(&mut self, key: &K, at: Instant) {
        if let Some(q) = self.failures.get_mut(key) {
            if let Some(i) = q.iter().rposition(|t| *t == at) {
                q.remove(i);
            }
            if q.is_empty() {
                self.failures.remove(key);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The lockout state.
pub struct Lockout {
    user_limit: u32,
    ip_limit: u32,
    window: Duration,
    users: Mutex<Windows<String>>,
    ips: Mutex<Windows<IpAddr>>,
    /// Per username: unlock-marker reads left (a token bucket) and when it
    /// was last filled.
    marker_reads: Mutex<HashMap<String, (f64, Instant)>>,
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
            marker_reads: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a failure slot for `username` (if it parsed; `None` counts
    /// only against the IP) and the client's network, or refuses when either
    /// is locked. Check and reservation are one step under both locks (always
    /// taken users first, then IPs), so concurrent attempts cannot all pass
    /// the check before any of them is counted.
    pub fn reserve(&self, username: Option<&Username>, ip: IpAddr) -> Result<Reservation, Locked> {
        let now = Instant::now();
        let name = username.map(|u| u.as_str().to_lowercase());
        let ip = ip_key(ip);
        let mut users = lock(&self.users);
        let mut ips = lock(&self.ips);
        if let Some(name) = &name
            && let Some(retry_after) = users.locked(name, self.user_limit, self.window, now)
        {
            return Err(Locked { by: LockedBy::Username, retry_after });
        }
        if let Some(retry_after) = ips.locked(&ip, self.ip_limit, self.window, now) {
            return Err(Locked { by: LockedBy::Ip, retry_after });
        }
        let mut reaches = Vec::new();
        if let Some(name) = &name
            && users.add(name.clone(), self.user_limit, self.window, now)
        {
            reaches.push(LockedBy::Username);
        }
        if ips.add(ip, self.ip_limit, self.window, now) {
            reaches.push(LockedBy::Ip);
        }
        Ok(Reservation { username: name, ip, at: now, reaches })
    }

    /// The password check failed: the slot stays a failure. Returns which
    /// limits this failure reached (each reported once, to audit
    /// `account_locked` once).
    pub fn fail(&self, reservation: Reservation) -> Vec<LockedBy> {
        reservation.reaches
    }

    /// The password check succeeded: the IP slot is given back and the
    /// username's failures are forgotten.
    pub fn succeed(&self, reservation: Reservation) {
        if let Some(name) = &reservation.username {
            lock(&self.users).failures.remove(name);
        }
        lock(&self.ips).remove_one(&reservation.ip, reservation.at);
    }

    /// No password check ran (e.g. the hashing pool was busy): both slots
    /// are given back.
    pub fn release(&self, reservation: Reservation) {
        if let Some(name) = &reservation.username {
            lock(&self.users).remove_one(name, reservation.at);
        }
        lock(&self.ips).remove_one(&reservation.ip, reservation.at);
    }

    /// Refuses the attempt if the username or the IP is locked (without
    /// reserving anything; prefer [`Lockout::reserve`] before a password check).
    pub fn check(&self, username: &str, ip: IpAddr) -> Result<(), Locked> {
        let now = Instant::now();
        let name = username.to_lowercase();
        if let Some(retry_after) = lock(&self.users).locked(&name, self.user_limit, self.window, now) {
            return Err(Locked { by: LockedBy::Username, retry_after });
        }
        if let Some(retry_after) = lock(&self.ips).locked(&ip_key(ip), self.ip_limit, self.window, now) {
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
        if lock(&self.users).add(name, self.user_limit, self.window, now) {
            reached.push(LockedBy::Username);
        }
        if lock(&self.ips).add(ip_key(ip), self.ip_limit, self.window, now) {
            reached.push(LockedBy::Ip);
        }
        reached
    }

    /// Forgets a username's failures (after a successful login or an admin
    /// unlock).
    pub fn clear(&self, username: &str) {
        lock(&self.users).failures.remove(&username.to_lowercase());
    }

    /// How long the username lock of `name` still holds, if it is locked.
    pub fn username_locked_for(&self, name: &Username) -> Option<Duration> {
        let key = name.as_str().to_lowercase();
        lock(&self.users).locked(&key, self.user_limit, self.window, Instant::now())
    }

    /// Whether a login refused because `name` is locked may read the user's
    /// unlock marker now: [`MARKER_READ_BURST`] reads at once, then
    /// [`MARKER_READS_PER_SEC`] per username, so hammering a locked name
    /// cannot keep the database busy. Ask only for names of known users.
    pub fn may_read_unlock_marker(&self, name: &Username) -> bool {
        self.may_read_unlock_marker_at(name, Instant::now())
    }

    fn may_read_unlock_marker_at(&self, name: &Username, now: Instant) -> bool {
        let mut reads = lock(&self.marker_reads);
        if reads.len() >= MAX_TRACKED {
            // An entry idle for a second is full again: the same as none.
            reads.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(1));
        }
        let (left, at) = reads.entry(name.as_str().to_lowercase()).or_insert((MARKER_READ_BURST, now));
        *left = (*left + now.duration_since(*at).as_secs_f64() * MARKER_READS_PER_SEC).min(MARKER_READ_BURST);
        *at = now;
        if *left < 1.0 {
            return false;
        }
        *left -= 1.0;
        true
    }

    /// Forgets the window of `name` if it is locked and the lock began
    /// before `unlocked_at` (Unix ms, the user's unlock marker); true when
    /// it did. The lock's start is the failure that reached the limit, taken
    /// to the wall clock rounded up, and the marker must be later still: a
    /// marker in the same millisecond leaves the lock in place.
    pub fn lift_if_unlocked_after_lock(&self, name: &Username, unlocked_at: i64) -> bool {
        let now = Instant::now();
        let key = name.as_str().to_lowercase();
        let mut users = lock(&self.users);
        let Some(q) = users.recent(&key, self.window, now) else { return false };
        let Some(began) = q.back().copied().filter(|_| q.len() >= self.user_limit as usize) else {
            return false;
        };
        let ago = i64::try_from(now.duration_since(began).as_millis()).unwrap_or(i64::MAX);
        let began_at_most = now_millis().saturating_add(1).saturating_sub(ago);
        if unlocked_at <= began_at_most {
            return false;
        }
        users.failures.remove(&key);
        true
    }

    /// How many usernames and IP keys have failures on record (for tests and
    /// diagnostics).
    pub fn tracked(&self) -> (usize, usize) {
        (lock(&self.users).failures.len(), lock(&self.ips).failures.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::*;

    fn name(raw: &str) -> Username {
        Username::parse(raw).unwrap()
    }

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

    #[test]
    fn reservations_are_taken_before_the_check_runs_and_refused_beyond_the_limit() {
        let l = Lockout::new(3, 100, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<Reservation> = (0..3).map(|_| l.reserve(Some(&name("Bob")), ip).unwrap()).collect();
        // Three checks in flight, none settled: the fourth is refused already.
        assert_eq!(l.reserve(Some(&name("bob")), ip).unwrap_err().by, LockedBy::Username);
        let reached: Vec<Vec<LockedBy>> = held.into_iter().map(|r| l.fail(r)).collect();
        assert_eq!(reached, vec![vec![], vec![], vec![LockedBy::Username]], "the third reached the limit");
        assert!(l.reserve(Some(&name("BOB")), ip).is_err());
    }

    #[test]
    fn a_released_slot_is_given_back_and_a_success_forgets_the_username() {
        let l = Lockout::new(2, 100, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.3".parse().unwrap();
        let first = l.reserve(Some(&name("carol")), ip).unwrap();
        let second = l.reserve(Some(&name("carol")), ip).unwrap();
        assert!(l.reserve(Some(&name("carol")), ip).is_err());
        l.release(second);
        let third = l.reserve(Some(&name("carol")), ip).unwrap();
        let _ = l.fail(first);
        l.succeed(third);
        assert_eq!(
            l.tracked(),
            (0, 1),
            "the success cleared carol; the first failure still counts for the IP"
        );
        assert!(l.reserve(Some(&name("carol")), ip).is_ok());
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let l = Lockout::new(5, 1000, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.4".parse().unwrap();
        let barrier = Barrier::new(64);
        let granted = std::thread::scope(|s| {
            let handles: Vec<_> = (0..64)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        l.reserve(Some(&name("dave")), ip).map(|r| l.fail(r)).is_ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count()
        });
        assert_eq!(granted, 5);
    }

    #[test]
    fn unparsed_usernames_count_only_against_the_ip_and_are_never_stored() {
        let l = Lockout::new(1, 3, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        for _ in 0..3 {
            let r = l.reserve(None, ip).unwrap();
            let _ = l.fail(r);
        }
        assert_eq!(l.tracked(), (0, 1));
        assert_eq!(l.reserve(Some(&name("erin")), ip).unwrap_err().by, LockedBy::Ip);
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_window_and_ipv4_is_keyed_by_address() {
        let l = Lockout::new(100, 3, Duration::from_secs(60));
        for addr in ["2001:db8:1:2::1", "2001:db8:1:2:ffff::7", "2001:db8:1:2:dead:beef:0:1"] {
            let r = l.reserve(Some(&name("frank")), addr.parse().unwrap()).unwrap();
            let _ = l.fail(r);
        }
        let same_64: IpAddr = "2001:db8:1:2:1234:5678:9abc:def0".parse().unwrap();
        assert_eq!(l.reserve(Some(&name("grace")), same_64).unwrap_err().by, LockedBy::Ip);
        assert_eq!(l.check("grace", same_64).unwrap_err().by, LockedBy::Ip);
        let next_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.reserve(Some(&name("grace")), next_64).is_ok(), "the neighbouring /64 is not locked");

        for addr in ["192.0.2.1", "::ffff:192.0.2.1", "192.0.2.1"] {
            let _ = l.fail(l.reserve(None, addr.parse().unwrap()).unwrap());
        }
        assert!(
            l.reserve(None, "192.0.2.1".parse().unwrap()).is_err(),
            "an IPv4-mapped address is that IPv4"
        );
        assert!(l.reserve(None, "192.0.2.2".parse().unwrap()).is_ok(), "IPv4 keyed by the full address");
        assert_eq!(ip_key("2001:db8::1:2:3:4".parse().unwrap()), "2001:db8::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn an_unlock_after_the_lock_began_lifts_it_and_an_earlier_one_does_not() {
        let l = Lockout::new(2, 100, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.6".parse().unwrap();
        let hal = name("hal");
        let before = now_millis() - 1;
        std::thread::sleep(Duration::from_millis(3));
        for _ in 0..2 {
            let _ = l.fail(l.reserve(Some(&hal), ip).unwrap());
        }
        assert!(l.username_locked_for(&hal).is_some());
        assert!(!l.lift_if_unlocked_after_lock(&hal, before), "an unlock before the lock");
        assert!(l.reserve(Some(&hal), ip).is_err());
        std::thread::sleep(Duration::from_millis(3));
        let unlocked = now_millis();
        assert!(l.lift_if_unlocked_after_lock(&hal, unlocked));
        assert!(l.username_locked_for(&hal).is_none());

        // Wrong passwords after the unlock count again; the old marker no
        // longer lifts the new lock.
        std::thread::sleep(Duration::from_millis(3));
        for _ in 0..2 {
            let _ = l.fail(l.reserve(Some(&hal), ip).unwrap());
        }
        assert!(!l.lift_if_unlocked_after_lock(&hal, unlocked));
        assert_eq!(l.reserve(Some(&hal), ip).unwrap_err().by, LockedBy::Username);
        assert!(!l.lift_if_unlocked_after_lock(&name("ivy"), now_millis()), "not locked: nothing to lift");
    }

    #[test]
    fn an_unlock_does_not_lift_the_ip_lock() {
        let l = Lockout::new(100, 2, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        for _ in 0..2 {
            let _ = l.fail(l.reserve(Some(&name("jay")), ip).unwrap());
        }
        std::thread::sleep(Duration::from_millis(3));
        assert!(!l.lift_if_unlocked_after_lock(&name("jay"), now_millis()));
        assert_eq!(l.reserve(Some(&name("jay")), ip).unwrap_err().by, LockedBy::Ip);
    }

    #[test]
    fn marker_reads_per_username_are_bounded() {
        let l = Lockout::new(1, 100, Duration::from_secs(60));
        let t0 = Instant::now();
        let kim = name("kim");
        let granted = (0..100).filter(|_| l.may_read_unlock_marker_at(&kim, t0)).count();
        assert_eq!(granted, MARKER_READ_BURST as usize, "a burst at once");
        let later = t0 + Duration::from_millis(250);
        let granted = (0..100).filter(|_| l.may_read_unlock_marker_at(&kim, later)).count();
        assert_eq!(granted, 2, "then 10 per second");
        assert!(l.may_read_unlock_marker_at(&name("lou"), later), "another username has its own budget");
    }
}
