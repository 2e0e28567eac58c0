//! `PasswordHasherPool`: the async front of [`super::passwords`]. It lets at
//! most N argon2 computations run at once (N defaults to the number of cores)
//! and makes a caller that cannot get a slot within the queue timeout fail
//! with [`PasswordError::Overloaded`] (the server answers `503` with
//! `Retry-After`) instead of queueing without bound.
//!
//! Why: each computation allocates its full memory cost (19 MiB by default,
//! 100 MiB for the original service's hashes) for its whole duration, so the
//! permits bound memory to N × the largest memory cost, whatever the number of
//! concurrent logins, and keep the tokio executor free for other requests.
//!
//! A permit is moved into the blocking task and released only when the
//! computation has finished, even if the awaiting request was dropped in the
//! meantime (client gone): cancelled logins cannot pile up hidden work.
//!
//! Each running computation borrows one [`WorkMemory`] from the pool and
//! gives it back afterwards, so at most N buffers exist and they are reused
//! rather than allocated and page-faulted per hash.
//!
//! The computations run on the pool's own N threads, which lower their CPU
//! priority (nice 19): a storm of logins then slows logins, while the tokio
//! threads serving every other request keep the processor they need. The pool therefore keeps
//! up to N × the largest memory cost seen resident (2 × 100 MiB on a 2-core
//! machine once a legacy hash has been checked) — the same bound it enforces
//! while busy.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};

use super::passwords::{self, Argon2Settings, PasswordError, WorkMemory};
use crate::domain::user::NewPassword;

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCheck {
    /// The password matches the stored hash.
    pub matches: bool,
    /// The password matched and the stored hash is weaker than the current
    /// settings: store a fresh hash of it (re-hash on login).
    pub needs_rehash: bool,
}

/// Niceness of the hashing threads: below request handling.
const HASHING_NICE: i32 = 19;

type Job = Box<dyn FnOnce() + Send>;

/// Starts `n` low-priority threads that run jobs from one queue; they end
/// when every sender is gone.
fn start_threads(n: usize) -> Sender<Job> {
    let (tx, rx) = channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx: Arc<Mutex<Receiver<Job>>> = Arc::clone(&rx);
        let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
            // On Linux this lowers the priority of this thread only.
            if let Err(e) = rustix::process::setpriority_process(None, HASHING_NICE) {
                tracing::debug!(error = %e, "cannot lower the hashing thread's priority");
            }
            loop {
                let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a hashing thread");
        }
    }
    tx
}

/// A bounded, cloneable pool of argon2 computations. Clones share the bound.
#[derive(Debug, Clone)]
pub struct PasswordHasherPool {
    threads: Arc<Mutex<Sender<Job>>>,
    permits: Arc<Semaphore>,
    /// Idle work buffers; never more than there are permits.
    memories: Arc<Mutex<Vec<WorkMemory>>>,
    queue_timeout: Duration,
    settings: Argon2Settings,
    dummy_phc: Arc<str>,
}

impl PasswordHasherPool {
    /// A pool hashing with `settings`, running at most `max_concurrent`
    /// computations at once (at least 1), where a caller waits at most
    /// `queue_timeout` for a free slot.
    pub fn new(settings: Argon2Settings, max_concurrent: usize, queue_timeout: Duration) -> Self {
        Self {
            threads: Arc::new(Mutex::new(start_threads(max_concurrent.max(1)))),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            memories: Arc::new(Mutex::new(Vec::new())),
            queue_timeout,
            settings,
            dummy_phc: passwords::dummy_hash(&settings).into(),
        }
    }

    /// The default bound: the number of cores this process may use.
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// The settings new hashes are made with.
    pub fn settings(&self) -> &Argon2Settings {
        &self.settings
    }

    /// Checks `password` against the stored PHC hash of the account named in
    /// a login; `None` when there is no such account, in which case the
    /// password is checked against a dummy hash with the current settings, so
    /// the answer (never a match) takes as long as for a real account.
    pub async fn verify(
        &self,
        password: String,
        stored_phc: Option<String>,
    ) -> Result<PasswordCheck, PasswordError> {
        let settings = self.settings;
        let dummy_phc = Arc::clone(&self.dummy_phc);
        self.run(move |memory| match stored_phc {
            Some(phc) => {
                let matches = passwords::verify_password_in(&password, &phc, memory)?;
                let needs_rehash = matches && passwords::needs_rehash(&phc, &settings);
                Ok(PasswordCheck { matches, needs_rehash })
            }
            None => {
                passwords::verify_password_in(&password, &dummy_phc, memory)?;
                Ok(PasswordCheck { matches: false, needs_rehash: false })
            }
        })
        .await
    }

    /// Hashes a new password with the current settings into a PHC string.
    pub async fn hash(&self, password: NewPassword) -> Result<String, PasswordError> {
        let settings = self.settings;
        self.run(move |memory| passwords::hash_password_in(&password, &settings, memory)).await
    }

    /// Waits up to the queue timeout for a permit, then runs `work` with a
    /// work buffer on a blocking thread that holds the permit until `work`
    /// returns and the buffer is back in the pool.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut WorkMemory) -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let acquire = Arc::clone(&self.permits).acquire_owned();
        let permit = match tokio::time::timeout(self.queue_timeout, acquire).await {
            Ok(Ok(permit)) => permit,
            // Timed out, or the semaphore was closed (it never is).
            Ok(Err(_)) | Err(_) => {
                return Err(PasswordError::Overloaded { retry_after_secs: self.retry_after_secs() });
            }
        };
        let memories = Arc::clone(&self.memories);
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let idle = memories.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let mut memory = idle.unwrap_or_default();
            let outcome = work(&mut memory);
            memories.lock().unwrap_or_else(PoisonError::into_inner).push(memory);
            drop(permit);
            let _ = reply.send(outcome);
        });
        let sent = self.threads.lock().unwrap_or_else(PoisonError::into_inner).send(job);
        sent.map_err(|_| PasswordError::WorkerFailed)?;
        answer.await.map_err(|_| PasswordError::WorkerFailed)?
    }

    /// The queue timeout in whole seconds, rounded up, at least 1: by then
    /// the computations that filled the pool have had time to finish.
    fn retry_after_secs(&self) -> u64 {
        let timeout = self.queue_timeout;
        (timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0)).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap_pool(max_concurrent: usize, queue_timeout: Duration) -> PasswordHasherPool {
        let settings = Argon2Settings::new(1024, 1, 1).unwrap();
        PasswordHasherPool::new(settings, max_concurrent, queue_timeout)
    }

    fn new_password(raw: &str) -> NewPassword {
        NewPassword::parse(raw.to_owned(), 12).unwrap()
    }

    #[tokio::test]
    async fn hashes_and_verifies_through_the_pool() {
        let pool = cheap_pool(2, Duration::from_secs(5));
        let phc = pool.hash(new_password("Pool-password-1")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        let good = pool.verify("Pool-password-1".into(), Some(phc.clone())).await.unwrap();
        assert_eq!(good, PasswordCheck { matches: true, needs_rehash: false });
        let bad = pool.verify("Pool-password-2".into(), Some(phc)).await.unwrap();
        assert_eq!(bad, PasswordCheck { matches: false, needs_rehash: false });
    }

    #[tokio::test]
    async fn unknown_users_never_match() {
        let pool = cheap_pool(1, Duration::from_secs(5));
        let check = pool.verify("Pool-password-1".into(), None).await.unwrap();
        assert_eq!(check, PasswordCheck { matches: false, needs_rehash: false });
    }

    #[tokio::test]
    async fn a_matching_weaker_hash_asks_for_a_rehash() {
        let weak = Argon2Settings::new(512, 1, 1).unwrap();
        let phc = passwords::hash_password(&new_password("Weak-password-1"), &weak).unwrap();
        let pool = cheap_pool(1, Duration::from_secs(5));
        let good = pool.verify("Weak-password-1".into(), Some(phc.clone())).await.unwrap();
        assert_eq!(good, PasswordCheck { matches: true, needs_rehash: true });
        let bad = pool.verify("Weak-password-2".into(), Some(phc)).await.unwrap();
        assert_eq!(bad, PasswordCheck { matches: false, needs_rehash: false });
    }

    #[tokio::test]
    async fn malformed_stored_hashes_are_errors() {
        let pool = cheap_pool(1, Duration::from_secs(5));
        let outcome = pool.verify("Pool-password-1".into(), Some("garbage".into())).await;
        assert_eq!(outcome, Err(PasswordError::MalformedHash));
    }

    #[tokio::test]
    async fn a_full_pool_answers_overloaded_after_the_queue_timeout() {
        let pool = cheap_pool(1, Duration::from_millis(1500));
        let held = Arc::clone(&pool.permits).acquire_owned().await.unwrap();
        let started = std::time::Instant::now();
        let outcome = pool.verify("Pool-password-1".into(), None).await;
        assert_eq!(outcome, Err(PasswordError::Overloaded { retry_after_secs: 2 }));
        assert!(started.elapsed() >= Duration::from_millis(1500));
        let outcome = pool.hash(new_password("Pool-password-1")).await;
        assert!(matches!(outcome, Err(PasswordError::Overloaded { .. })));
        drop(held);
        assert!(pool.verify("Pool-password-1".into(), None).await.is_ok());
    }

    #[tokio::test]
    async fn a_waiting_caller_gets_the_slot_when_it_frees_in_time() {
        let pool = cheap_pool(1, Duration::from_secs(10));
        let held = Arc::clone(&pool.permits).acquire_owned().await.unwrap();
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.verify("Pool-password-1".into(), None).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_computations_at_once_than_permits() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = cheap_pool(2, Duration::from_secs(30));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(move |_memory| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(pool.permits.available_permits(), 2);
        assert!(pool.memories.lock().unwrap().len() <= 2, "one buffer per permit at most");
    }

    #[test]
    fn retry_after_rounds_the_timeout_up_to_whole_seconds() {
        assert_eq!(cheap_pool(1, Duration::from_millis(1)).retry_after_secs(), 1);
        assert_eq!(cheap_pool(1, Duration::from_secs(2)).retry_after_secs(), 2);
        assert_eq!(cheap_pool(1, Duration::from_millis(2001)).retry_after_secs(), 3);
        assert!(PasswordHasherPool::default_concurrency() >= 1);
    }
}
