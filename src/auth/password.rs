//! Password hashing: argon2id with at least OWASP's parameters (m=19456 KiB, t=2, p=1), run
//! behind one process-wide gate so a flood of logins cannot take the server's memory.
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use sha2::{Digest, Sha256};

const M_COST: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params = Params::new(M_COST, T_COST, P_COST, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Runs `f` with this thread's argon2 memory (grown to `blocks` as needed). Each hash
/// allocating its own 19 MiB leaves glibc's heap fragmented: resident memory grew by 19 MiB
/// per login, for ever. Reused per thread, it stays at one buffer per hashing thread.
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    thread_local! {
        static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < blocks {
            m.resize(blocks, Block::default());
        }
        f(&mut m[..blocks])
    })
}

/// The raw argon2 output for `password` with `salt`, using this thread's memory.
fn raw_hash(
    argon: &Argon2<'_>,
    params: &Params,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
) -> bool {
    with_memory(params.block_count(), |memory| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt, out, memory)
            .is_ok()
    })
}

/// A PHC string for `password`.
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::new(M_COST, T_COST, P_COST, None).expect("valid argon2 parameters");
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .expect("a generated salt decodes");
    let mut out = [0u8; 32];
    assert!(
        raw_hash(&argon2(), &params, password, salt_raw, &mut out),
        "argon2 hashing with valid parameters does not fail"
    );
    let output = Output::new(&out).expect("32 bytes is a valid output length");
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params)
            .try_into()
            .expect("argon2 parameters fit a PHC string"),
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    phc.to_string()
}

/// Whether `password` matches `stored`.
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    // A stored hash asking for absurd memory is refused rather than obeyed.
    if params.m_cost() > 256 * 1024 {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    raw_hash(&argon, &params, password, salt_raw, &mut out)
        && Output::new(&out).is_ok_and(|o| o == expected)
}

/// Whether `stored` was made with weaker (or other) parameters than today's.
pub fn needs_rehash(stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return true;
    };
    parsed.algorithm.as_str() != "argon2id"
        || params.m_cost() < M_COST
        || params.t_cost() < T_COST
        || params.p_cost() < P_COST
}

/// Spends the time of one verification, so an unknown name answers as slowly as a known one.
pub fn verify_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash("not a real password"));
    let _ = verify(password, stored);
}

/// The hashing gate was full: too many hashes running and waiting.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the server is busy checking passwords; try again in a moment")]
pub struct Busy;

/// Bounds argon2 work: at most one hash per core at once (each takes ~19 MiB), a short queue
/// behind them, and no wait longer than [`GATE_WAIT`]. Anything beyond is refused at once.
/// Hashes run on the gate's own few threads: on tokio's blocking pool each new thread would
/// keep its own 19 MiB malloc arena, and a flood would grow memory with the pool.
struct Gate {
    running: std::sync::Arc<tokio::sync::Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
    queue: usize,
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
}

/// How many may wait for a hashing slot.
const GATE_QUEUE: usize = 16;
/// How long one may wait.
const GATE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn gate() -> &'static Gate {
    static GATE: std::sync::OnceLock<Gate> = std::sync::OnceLock::new();
    GATE.get_or_init(|| {
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 8);
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("nightshift-hash-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("could not start a password hashing thread: {e}");
            }
        }
        Gate {
            running: std::sync::Arc::new(tokio::sync::Semaphore::new(threads)),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            queue: GATE_QUEUE,
            jobs: std::sync::Mutex::new(tx),
        }
    })
}

/// Runs `work` (argon2) on a hashing thread once the gate lets it in; [`Busy`] when the
/// queue is full or the wait too long.
pub async fn gated<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Busy> {
    use std::sync::atomic::Ordering;
    let g = gate();
    let permit = match g.running.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            if g.waiting.fetch_add(1, Ordering::SeqCst) >= g.queue {
                g.waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(Busy);
            }
            let got = tokio::time::timeout(GATE_WAIT, g.running.clone().acquire_owned()).await;
            g.waiting.fetch_sub(1, Ordering::SeqCst);
            match got {
                Ok(Ok(p)) => p,
                _ => return Err(Busy),
            }
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The permit lives as long as the hash, even if the request is dropped meanwhile.
    let job = Box::new(move || {
        let _permit = permit;
        let _ = tx.send(work());
    });
    g.jobs
        .lock()
        .map_err(|_| Busy)?
        .send(job)
        .map_err(|_| Busy)?;
    rx.await.map_err(|_| Busy)
}

/// [`hash`] behind the gate.
pub async fn hash_gated(password: &str) -> Result<String, Busy> {
    let password = password.to_owned();
    gated(move || hash(&password)).await
}

/// A new random secret (tokens, CSRF, setup links): 32 bytes from the OS, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a token is stored: SHA-256, hex (tokens are random, so no salt or stretching is needed).
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHasher;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters() {
        let h = hash("correct horse");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong", &h));
        assert!(!needs_rehash(&h));
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        assert!(needs_rehash(&weak));
    }
}

#[cfg(test)]
mod memory_tests {
    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// RSS is the whole process's: the other tests of this binary allocate beside us, so the
    /// measurement runs alone, in a child process running only [`measure_alone`].
    #[test]
    fn checks_reuse_their_memory() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "auth::password::memory_tests::measure_alone",
                "--exact",
                "--ignored",
                "--test-threads=1",
                "--nocapture",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the child ran no test: {text}");
    }

    #[test]
    #[ignore = "run alone by checks_reuse_their_memory"]
    fn measure_alone() {
        let stored = super::hash("correct horse");
        for _ in 0..3 {
            assert!(!super::verify("wrong", &stored));
        }
        let before = rss_kib();
        for _ in 0..10 {
            assert!(!super::verify("wrong", &stored));
        }
        // Before, each check left its 19 MiB behind (190 MiB for these ten).
        let after = rss_kib();
        assert!(after < before + 40 * 1024, "{before} -> {after}");
    }
}
