//! Passwords: Argon2id with the `argon2` crate's default (OWASP-recommended) parameters —
//! 19 MiB of memory, 2 passes, 1 lane — computed on a small pool of threads of its own
//! (one per core), never on the async threads, where tens of milliseconds of hashing would
//! stall every other request on that thread.
//!
//! Why not tokio's blocking pool: it grows a thread per waiting call (up to 512), and each
//! concurrent hash holds 19 MiB, which glibc's per-thread arenas then keep. Measured with
//! 64 concurrent anonymous sign-ups (256 in all), the process went from 8 MB to 4.4 GB and
//! stayed there. Hashing is CPU-bound, so more threads than cores buy no throughput; a
//! fixed pool bounds the memory to one working set per core, and a bounded queue answers
//! 503 with `Retry-After` past [`QUEUE`] waiting hashes instead of holding them all. The
//! threads run at a lower priority ([`HASHING_NICE`]), so when log-ins flood the CPU the
//! rest of the service still gets it first.

use std::future::Future;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};

use argon2::password_hash::{self, Output, ParamsString, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};

use crate::error::ApiError;

/// Most hashes and verifications waiting for a hashing thread; past it, 503.
pub const QUEUE: usize = 256;

/// Hashes `password` into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`). Blocking.
pub fn hash_blocking(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|err| {
        tracing::error!(error = %err, "no randomness for a salt");
        ApiError::Internal
    })?;
    phc_string(password, &salt).map_err(|err| {
        tracing::error!(error = %err, "password hashing");
        ApiError::Internal
    })
}

/// Argon2id of `password` with `salt` and the default parameters, as a PHC string (what the
/// `argon2` crate's `hash_password` writes).
fn phc_string(password: &str, salt: &[u8]) -> password_hash::Result<String> {
    let params = Params::default();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(
        Algorithm::Argon2id,
        Version::V0x13,
        &params,
        password,
        salt,
        &mut out,
    )?;
    let salt = SaltString::encode_b64(salt)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out)?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches `stored`. With no stored hash (no such account, or one
/// that cannot log in) it checks against a dummy hash of the same cost and answers
/// `false`, so both cases take the same time. Blocking.
pub fn verify_blocking(password: &str, stored: Option<&str>) -> bool {
    let dummy = dummy_hash();
    let (target, real) = match stored {
        Some(stored) => (stored, true),
        None => (dummy, false),
    };
    match matches(password, target) {
        Ok(matches) => matches && real,
        Err(err) => {
            tracing::error!(error = %err, "a stored password hash cannot be checked");
            false
        }
    }
}

/// Recomputes the hash `stored` describes (its algorithm, version, parameters and salt)
/// for `password`, and compares the two in constant time (`Output`'s equality).
fn matches(password: &str, stored: &str) -> password_hash::Result<bool> {
    let parsed = PasswordHash::new(stored)?;
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
        return Err(password_hash::Error::PhcStringField);
    };
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v)?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed)?;
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf)?;
    let mut out = vec![0u8; expected.len()];
    argon2_into(algorithm, version, &params, password, salt, &mut out)?;
    Ok(Output::new(&out)? == expected)
}

thread_local! {
    /// This thread's Argon2 working memory (19 MiB with the default parameters), reused
    /// from one hash to the next while hashes are waiting (a flood of log-ins allocates it
    /// once), and freed when the queue is empty (`work_through`).
    static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The least capacity, in bytes, reserved for a work area. glibc's malloc maps every request
/// of 32 MiB or more on its own and unmaps it when freed; a smaller one (19 MiB) it maps the
/// first time, but freeing that raises its mmap threshold past the size, so the next work area
/// comes from a thread's arena, whose top is not trimmed below twice the threshold: freed, the
/// 19 MiB would stay resident. Reserved but never touched, the rest costs no memory.
const ALWAYS_MAPPED: usize = 32 << 20;

/// Argon2 of `password` and `salt` into `out`, in this thread's reused working memory.
fn argon2_into(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let argon = Argon2::new(algorithm, version, params.clone());
    BLOCKS.with_borrow_mut(|blocks| {
        let needed = params.block_count();
        if blocks.capacity() < needed {
            // At least ALWAYS_MAPPED: see there. The pages past `needed` are never touched.
            let capacity = needed.max(ALWAYS_MAPPED.div_ceil(std::mem::size_of::<Block>()));
            *blocks = Vec::with_capacity(capacity);
        }
        if blocks.len() < needed {
            blocks.resize(needed, Block::default());
        }
        argon.hash_password_into_with_memory(password.as_bytes(), salt, out, &mut blocks[..needed])
    })
}

/// [`hash_blocking`] on the hashing threads.
pub async fn hash(password: String) -> Result<String, ApiError> {
    run(move || hash_blocking(&password)).await?
}

/// [`verify_blocking`] on the hashing threads.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, ApiError> {
    run(move || verify_blocking(&password, stored.as_deref())).await
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `work` on a hashing thread and waits for its answer without blocking the async
/// thread. A request that goes away before its turn costs no hashing.
async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    static HASHERS: OnceLock<Hashers> = OnceLock::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    HASHERS
        .get_or_init(|| Hashers::start(threads, QUEUE))
        .run(work)
        .await
}

/// A fixed set of threads taking jobs from a bounded queue.
struct Hashers {
    jobs: SyncSender<Job>,
}

impl Hashers {
    fn start(threads: usize, queue: usize) -> Self {
        let (jobs, waiting) = sync_channel::<Job>(queue);
        let waiting = Arc::new(Mutex::new(waiting));
        for i in 0..threads {
            let waiting = waiting.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("pgbridge-argon2-{i}"))
                .spawn(move || work_through(&waiting));
            if let Err(err) = spawned {
                tracing::error!(error = %err, "could not start a password hashing thread");
            }
        }
        Self { jobs }
    }

    /// Queues `work` now (or refuses it now, if the queue is full); the future waits for
    /// its answer.
    fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = Result<T, ApiError>> + Send + 'static {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if !answer.is_closed() {
                let _ = answer.send(work());
            }
        });
        let queued = match self.jobs.try_send(job) {
            Ok(()) => Ok(answered),
            Err(TrySendError::Full(_)) => Err(ApiError::Overloaded {
                message: "too many password checks are waiting; retry shortly".into(),
                retry_after_secs: 1,
            }),
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("no password hashing thread is running");
                Err(ApiError::Internal)
            }
        };
        async move {
            queued?.await.map_err(|_| {
                tracing::error!("a password hashing job failed");
                ApiError::Internal
            })
        }
    }
}

/// The niceness of the hashing threads (Linux): when the CPU is contended, the service's
/// other work goes first, so a flood of log-ins slows log-ins, not everyone's requests
/// (`bench/hostile_login.sh`, case 3). Idle cores still hash at full speed.
pub const HASHING_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`HASHING_NICE`] (raising one's own
/// niceness needs no privilege); elsewhere than Linux, nothing.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(err) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASHING_NICE)
    {
        tracing::warn!(error = %err, "could not lower the password hashing thread's priority");
    }
}

/// One hashing thread: takes jobs until the queue closes; a job that panics is contained
/// (its caller sees an error) and the thread goes on. While jobs are waiting, the thread's
/// working memory is reused from one to the next; when none is, it is freed before the
/// thread waits (19 MiB per thread otherwise held for good by a process that hashed once:
/// most of an idle service's memory).
fn work_through(waiting: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let next = match waiting.try_lock() {
            Ok(waiting) => waiting.try_recv().ok(),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().try_recv().ok(),
            // Another thread holds the queue while it waits for a job: none is waiting.
            Err(TryLockError::WouldBlock) => None,
        };
        let job = match next {
            Some(job) => job,
            None => {
                BLOCKS.with_borrow_mut(|blocks| *blocks = Vec::new());
                let next = waiting.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok(job) = next else { return };
                job
            }
        };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a password hashing job panicked");
        }
    }
}

/// A hash of a random password, made once per process with the same parameters.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut secret = [0u8; 24];
        // Even an all-zero fallback is fine: the dummy's answer is discarded.
        let _ = getrandom::fill(&mut secret);
        hash_blocking(&String::from_utf8_lossy(&secret))
            .unwrap_or_else(|_| "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$invalid".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_argon2id_with_default_parameters() {
        let stored = hash_blocking("correct horse").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(verify_blocking("correct horse", Some(&stored)));
        assert!(!verify_blocking("wrong horse", Some(&stored)));
        assert_ne!(stored, hash_blocking("correct horse").unwrap(), "salted");
    }

    #[test]
    fn hashes_agree_with_the_argon2_crates_own() {
        use argon2::{PasswordHasher, PasswordVerifier};
        // Accounts made before the working memory was reused still log in, and back.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify_blocking("correct horse", Some(&theirs)));
        assert!(!verify_blocking("wrong horse", Some(&theirs)));
        let ours = hash_blocking("correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong horse", &parsed)
                .is_err()
        );
    }

    #[tokio::test]
    async fn past_the_queue_the_answer_is_503_and_a_panic_is_contained() {
        let hashers = Hashers::start(1, 1);

        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        // One job on the thread (held), one in the queue: the third finds no room.
        let busy = tokio::spawn(hashers.run(move || {
            let _ = started.send(());
            let _ = hold.recv();
        }));
        running.await.unwrap();
        // The thread (now running a job) lowered its own priority (niceness only goes up without privilege).
        #[cfg(target_os = "linux")]
        {
            let nice = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| {
                    let t = t.ok()?.path();
                    let comm = std::fs::read_to_string(t.join("comm")).ok()?;
                    if !comm.starts_with("pgbridge-argon2") {
                        return None;
                    }
                    let stat = std::fs::read_to_string(t.join("stat")).ok()?;
                    // Field 19 (nice), counted after the ")" that ends the name.
                    let after = stat.rsplit_once(')')?.1;
                    after.split_whitespace().nth(16)?.parse::<i32>().ok()
                })
                .collect::<Vec<_>>();
            assert!(nice.iter().any(|&n| n >= HASHING_NICE), "{nice:?}");
        }
        let queued = tokio::spawn(hashers.run(|| 2));
        match hashers.run(|| 3).await {
            Err(ApiError::Overloaded {
                retry_after_secs, ..
            }) => assert_eq!(retry_after_secs, 1),
            other => panic!("expected 503, got {other:?}"),
        }
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        assert_eq!(queued.await.unwrap().unwrap(), 2);
        // A job that panics is an error for its caller; the thread takes the next job.
        assert!(hashers.run(|| panic!("in a job")).await.is_err());
        assert_eq!(hashers.run(|| 4).await.unwrap(), 4);
    }

    #[test]
    fn a_missing_account_never_verifies() {
        assert!(!verify_blocking("", None));
        assert!(!verify_blocking("anything", None));
        assert!(!verify_blocking("x", Some("not a phc string")));
    }
}
