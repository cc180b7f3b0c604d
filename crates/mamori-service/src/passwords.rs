//! Password hashing (ENC-1): Argon2id on a bounded pool of dedicated threads.
//!
//! At most `max_concurrent` hashes run at once (by default one per core), each on a thread of
//! the pool; further requests wait in the pool's queue. Each hash holds `memory_kib` of memory,
//! so memory under a login storm is bounded by `max_concurrent x memory_kib` whatever the
//! number of clients. A thread that finishes a hash takes the next queued one at once, with
//! its buffer, so a busy pool never waits for a hand-off between two hashes.

use crate::ServiceError;
pub use argon2::Block;
use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub max_concurrent: usize,
}

impl Default for PasswordParams {
    /// The OWASP minimum for Argon2id: m=19456 KiB, t=2, p=1.
    fn default() -> Self {
        PasswordParams {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            max_concurrent: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// The result of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Mismatch,
    Match { needs_rehash: bool },
}

/// How long a pool thread with nothing to do waits for work before it ends.
const THREAD_KEEP_ALIVE: Duration = Duration::from_secs(10);

pub struct PasswordHashing {
    params: Params,
    pool: Arc<Pool>,
    /// A hash of a random password with the current parameters. Verifying against it makes a
    /// login for an unknown email cost the same as a real one.
    dummy_hash: Arc<str>,
}

impl PasswordHashing {
    pub fn new(config: PasswordParams) -> Result<PasswordHashing, ServiceError> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("argon2 parameters: {error}")))?;
        let random = crate::tokens::random_bytes::<32>()?;
        // The start-up hash's buffer is freed on return: an idle server holds none.
        let dummy_hash = hash_into(&params, &random, &mut Vec::new())?;
        Ok(PasswordHashing {
            params,
            pool: Arc::new(Pool::new(config.max_concurrent.max(1))),
            dummy_hash: Arc::from(dummy_hash),
        })
    }

    /// Hashes a password (already normalized) to a PHC string.
    pub async fn hash(&self, password: &str) -> Result<String, ServiceError> {
        let password = Zeroizing::new(password.to_owned());
        let params = self.params.clone();
        self.with_buffer(move |buffer| hash_into(&params, password.as_bytes(), buffer))
            .await?
    }

    /// Checks a password against a stored PHC string. With `None` (no such account, or one
    /// without a password) it does the same work against a dummy hash and reports a mismatch.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<Verification, ServiceError> {
        let password = Zeroizing::new(password.to_owned());
        let real = stored.is_some();
        let stored: Arc<str> = stored.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let current = self.params.clone();
        self.with_buffer(move |buffer| {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Verification::Mismatch;
            };
            let matched = verify_into(&parsed, password.as_bytes(), buffer);
            if !(matched && real) {
                return Verification::Mismatch;
            }
            let needs_rehash = match Params::try_from(&parsed) {
                Ok(stored_params) => {
                    stored_params.m_cost() != current.m_cost()
                        || stored_params.t_cost() != current.t_cost()
                        || stored_params.p_cost() != current.p_cost()
                        || parsed.algorithm.as_str() != "argon2id"
                }
                Err(_) => true,
            };
            Verification::Match { needs_rehash }
        })
        .await
    }

    /// Runs `work` on a thread of the pool with a working buffer, at most `max_concurrent` at
    /// a time, queued beyond that. A queued job whose caller went away (a client hung up) is
    /// dropped unrun; one already running finishes and counts against the limit until it ends.
    async fn with_buffer<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let (sender, receiver) = oneshot::channel();
        self.pool.submit(Box::new(move |buffer: &mut Vec<Block>| {
            if sender.is_closed() {
                return;
            }
            let _ = sender.send(work(buffer));
        }))?;
        receiver
            .await
            .map_err(|_| ServiceError::Unexpected(anyhow::anyhow!("hashing job ended unanswered")))
    }
}

impl Drop for PasswordHashing {
    /// The pool's threads end once the queue is empty.
    fn drop(&mut self) {
        self.pool.close();
    }
}

/// A queued hash: runs with a buffer of the pool.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The hashing threads and their queue. At most `max_threads` threads exist, each with at
/// most one Argon2 buffer, so at most `max_threads` buffers exist. A thread keeps its buffer
/// from one job to the next while jobs are queued; when none is, it parks its buffer for the
/// others while any of them still runs a job, and the last one to finish frees every buffer
/// so an idle pool holds none.
struct Pool {
    state: Mutex<PoolState>,
    /// Signalled when a job is queued or the pool closes.
    work: Condvar,
    max_threads: usize,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Job>,
    /// Threads alive, and how many of them wait for work.
    threads: usize,
    waiting: usize,
    /// Buffers of threads waiting while others run: reused by the next job.
    parked: Vec<Vec<Block>>,
    closed: bool,
}

impl Pool {
    fn new(max_threads: usize) -> Pool {
        Pool {
            state: Mutex::new(PoolState::default()),
            work: Condvar::new(),
            max_threads,
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A job runs outside the lock, so a poisoned lock holds consistent state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn submit(self: &Arc<Self>, job: Job) -> Result<(), ServiceError> {
        let mut state = self.lock();
        if state.closed {
            return Err(ServiceError::Unexpected(anyhow::anyhow!(
                "hashing pool closed"
            )));
        }
        state.queue.push_back(job);
        // A waiting thread takes it; otherwise a new thread, up to the limit; otherwise it
        // waits for the first thread to finish its job.
        if state.waiting > state.queue.len().saturating_sub(1) {
            drop(state);
            self.work.notify_one();
            return Ok(());
        }
        if state.threads < self.max_threads {
            state.threads += 1;
            drop(state);
            let pool = self.clone();
            let spawned = std::thread::Builder::new()
                .name(String::from("mamori-hash"))
                .spawn(move || pool.run());
            if let Err(error) = spawned {
                let mut state = self.lock();
                state.threads -= 1;
                if state.threads == 0 {
                    // No thread will take the queue: its callers get an error.
                    state.queue.clear();
                }
                return Err(ServiceError::Unexpected(anyhow::anyhow!(
                    "hashing thread: {error}"
                )));
            }
        }
        Ok(())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
    }

    /// A pool thread: takes jobs until the pool closes or no job comes for a while.
    fn run(&self) {
        let mut buffer: Vec<Block> = Vec::new();
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                if buffer.is_empty() {
                    buffer = state.parked.pop().unwrap_or_default();
                }
                drop(state);
                // A panicking job loses its caller's answer, not the thread.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    job(&mut buffer);
                }));
                state = self.lock();
                continue;
            }
            // Nothing queued. While other threads run jobs, park the buffer for them; the
            // last thread to go idle frees them all.
            let others_busy = state.threads - state.waiting - 1 > 0;
            if others_busy {
                if !buffer.is_empty() {
                    state.parked.push(std::mem::take(&mut buffer));
                }
            } else {
                let mut free = std::mem::take(&mut state.parked);
                if !buffer.is_empty() || !free.is_empty() {
                    free.push(std::mem::take(&mut buffer));
                    drop(state);
                    drop(free);
                    state = self.lock();
                    // A job may have come in meanwhile.
                    continue;
                }
            }
            if state.closed {
                break;
            }
            state.waiting += 1;
            let (next, timeout) = self
                .work
                .wait_timeout_while(state, THREAD_KEEP_ALIVE, |state| {
                    state.queue.is_empty() && !state.closed
                })
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state = next;
            state.waiting -= 1;
            if timeout.timed_out() && state.queue.is_empty() {
                break;
            }
        }
        state.threads -= 1;
        let parked = std::mem::take(&mut state.parked);
        let last = state.threads == 0;
        drop(state);
        drop(buffer);
        if last {
            drop(parked);
        } else if !parked.is_empty() {
            // Give them back for the threads still running.
            self.lock().parked.extend(parked);
        }
    }
}

/// Argon2id of `password` with a fresh random salt, in `buffer`, as a PHC string.
fn hash_into(
    params: &Params,
    password: &[u8],
    buffer: &mut Vec<Block>,
) -> Result<String, ServiceError> {
    let fail = |error: &dyn std::fmt::Display| {
        ServiceError::Unexpected(anyhow::anyhow!("argon2 hashing: {error}"))
    };
    let salt = crate::tokens::random_bytes::<16>()?;
    let mut output = Zeroizing::new([0u8; 32]);
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    buffer.resize(params.block_count(), Block::default());
    argon2
        .hash_password_into_with_memory(password, &salt, &mut output[..], &mut buffer[..])
        .map_err(|error| fail(&error))?;
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|error| fail(&error))?,
        salt: Some(Salt::new(&salt).map_err(|error| fail(&error))?),
        hash: Some(Output::new(&output[..]).map_err(|error| fail(&error))?),
    };
    Ok(hash.to_string())
}

/// Recomputes a stored hash in `buffer` (grown when the stored parameters need more memory)
/// and compares the outputs in constant time.
fn verify_into(stored: &PasswordHash, password: &[u8], buffer: &mut Vec<Block>) -> bool {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(stored) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(stored.algorithm.as_str()) else {
        return false;
    };
    let version = stored
        .version
        .and_then(|version| Version::try_from(version).ok())
        .unwrap_or_default();
    let mut output = Zeroizing::new(vec![0u8; expected.as_bytes().len()]);
    if buffer.len() < params.block_count() {
        buffer.resize(params.block_count(), Block::default());
    }
    let argon2 = Argon2::new(algorithm, version, params.clone());
    if argon2
        .hash_password_into_with_memory(
            password,
            salt,
            &mut output[..],
            &mut buffer[..params.block_count()],
        )
        .is_err()
    {
        return false;
    }
    use subtle::ConstantTimeEq;
    bool::from(output.as_slice().ct_eq(expected.as_bytes()))
}

/// Hashes with the given parameters on the calling thread, reusing `buffer`: the benchmark's
/// baseline, doing exactly the work of one server-side hash.
pub fn hash_blocking(
    config: PasswordParams,
    password: &[u8],
    buffer: &mut Vec<Block>,
) -> Result<String, ServiceError> {
    let params = Params::new(
        config.memory_kib,
        config.iterations,
        config.parallelism,
        None,
    )
    .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("argon2 parameters: {error}")))?;
    hash_into(&params, password, buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PasswordParams {
        PasswordParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 2,
        }
    }

    #[tokio::test]
    async fn hashes_verify_and_report_outdated_parameters() {
        let hashing = PasswordHashing::new(fast()).unwrap();
        let hash = hashing.hash("correct horse battery staple").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(
            hashing
                .verify("correct horse battery staple", Some(&hash))
                .await
                .unwrap(),
            Verification::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            hashing.verify("wrong horse", Some(&hash)).await.unwrap(),
            Verification::Mismatch
        );
        assert_eq!(
            hashing.verify("anything", None).await.unwrap(),
            Verification::Mismatch
        );
        let stronger = PasswordHashing::new(PasswordParams {
            memory_kib: 128,
            ..fast()
        })
        .unwrap();
        assert_eq!(
            stronger
                .verify("correct horse battery staple", Some(&hash))
                .await
                .unwrap(),
            Verification::Match { needs_rehash: true }
        );
    }

    /// At most `max_concurrent` jobs run at once and each has a buffer of its own; a thread
    /// keeps its buffer for the jobs queued behind it, and an idle pool frees every buffer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn runs_at_most_max_concurrent_and_frees_buffers_when_idle() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hashing = Arc::new(PasswordHashing::new(fast()).unwrap());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let fresh = Arc::new(AtomicUsize::new(0));
        let mut jobs = Vec::new();
        for _ in 0..12 {
            let hashing = hashing.clone();
            let (running, most, fresh) = (running.clone(), most.clone(), fresh.clone());
            jobs.push(tokio::spawn(async move {
                hashing
                    .with_buffer(move |buffer| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        if buffer.is_empty() {
                            fresh.fetch_add(1, Ordering::SeqCst);
                            buffer.resize(4, Block::default());
                        }
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                    .unwrap();
            }));
        }
        for job in jobs {
            job.await.unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 2, "at most two at once");
        assert!(
            fresh.load(Ordering::SeqCst) <= 2,
            "queued jobs reuse the buffers of the jobs before them"
        );
        // The pool went idle: no buffer is kept, the next job starts with a new one.
        let empty = hashing
            .with_buffer(|buffer| buffer.is_empty())
            .await
            .unwrap();
        assert!(empty, "an idle pool frees its buffers");
        assert!(hashing.pool.lock().parked.is_empty());
    }

    /// A job whose caller went away before it started is dropped unrun.
    #[tokio::test]
    async fn drops_queued_jobs_whose_caller_went_away() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let hashing = PasswordHashing::new(PasswordParams {
            max_concurrent: 1,
            ..fast()
        })
        .unwrap();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let first = hashing.with_buffer(move |_| {
            let _ = blocked.recv();
        });
        let ran = Arc::new(AtomicBool::new(false));
        let second = {
            let ran = ran.clone();
            hashing.with_buffer(move |_| ran.store(true, Ordering::SeqCst))
        };
        let (first, second) = (Box::pin(first), Box::pin(second));
        // Queue both: the first runs (and blocks), the second waits behind it.
        let mut first = first;
        let mut second = second;
        assert!(futures_poll_once(&mut first).await.is_none());
        assert!(futures_poll_once(&mut second).await.is_none());
        drop(second);
        release.send(()).unwrap();
        first.await.unwrap();
        // Another job after the dropped one: the queue is done once it has run.
        hashing.with_buffer(|_| ()).await.unwrap();
        assert!(!ran.load(Ordering::SeqCst), "the abandoned job did not run");
    }

    /// Polls a future once; `None` while it is pending.
    async fn futures_poll_once<F: std::future::Future + Unpin>(
        future: &mut F,
    ) -> Option<F::Output> {
        std::future::poll_fn(|context| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *future).poll(context) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
