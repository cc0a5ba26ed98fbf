//! Secrets: random tokens and ids, passcodes, answer normalisation, and argon2id hashing under
//! a limit on concurrent hashes (each takes 19 MiB or more).

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use unicode_normalization::UnicodeNormalization;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS generator failing means the machine can't produce secrets: nothing safe to do.
    #[allow(clippy::expect_used)]
    getrandom::getrandom(&mut buf).expect("the operating system's random generator failed");
    buf
}

/// A 256-bit random token, as 64 hex digits.
pub fn random_token() -> String {
    hex::encode(random_bytes::<32>())
}

/// A random id: a version 4 UUID from the OS generator, in the 8-4-4-4-12 hex form.
pub fn random_id() -> String {
    uuid::Builder::from_random_bytes(random_bytes::<16>())
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// SHA-256 of a session token, as stored.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// HMAC-SHA256 of `data` under `key`, as hex.
pub fn keyed_digest(key: &str, data: &str) -> String {
    #[allow(clippy::expect_used)]
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new passcode: 80 random bits as 16 Crockford base-32 characters in four groups
/// (`7KQ2-M9XD-4HBW-R1TZ`): easy to read out (no I, L, O or U) and to type.
pub fn new_passcode() -> String {
    let bytes = random_bytes::<10>();
    let mut bits: u128 = 0;
    for b in bytes {
        bits = (bits << 8) | u128::from(b);
    }
    let chars: Vec<char> = (0..16)
        .rev()
        .map(|i| CROCKFORD[((bits >> (i * 5)) & 31) as usize] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// Normalises a typed passcode: case, dashes and spaces don't matter, and the letters people
/// confuse with digits (O, I, L) count as those digits. `None` when it can't be a passcode.
pub fn normalize_passcode(input: &str) -> Option<String> {
    let mut out = String::with_capacity(16);
    for c in input.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !CROCKFORD.contains(&(c as u8)) || !c.is_ascii() {
            return None;
        }
        out.push(c);
    }
    (out.len() == 16).then_some(out)
}

/// The rule answers are compared by: Unicode NFKC, lower case, surrounding white space removed
/// and inner runs of white space made one space. `" Ｍüller  Straße "` → `"müller straße"`.
pub fn normalize_answer(answer: &str) -> String {
    let folded: String = answer.nfkc().collect::<String>().to_lowercase();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The form a password is hashed and verified in: Unicode NFKC, as NIST SP 800-63B advises,
/// so that the same password typed on another keyboard or system (composed or decomposed
/// accents, full-width letters) is the same password. Nothing else is changed: case and
/// white space count.
pub fn normalize_password(password: &str) -> String {
    password.nfkc().collect()
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2: {0}")]
    Argon2(String),
    /// The hash queue is full: the request must be turned away (503), not wait.
    #[error("too much hashing in progress; try again in a moment")]
    Busy,
}

thread_local! {
    /// How many hashes this thread computed: lets the host pad a login to a constant number
    /// of hashes, whatever path it took.
    static HASHES: Cell<u32> = const { Cell::new(0) };
}

/// Hashes computed on this thread since the last call.
pub fn take_hash_count() -> u32 {
    HASHES.with(|c| c.replace(0))
}

/// Work for a hashing thread, given that thread's own argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// argon2id with OWASP's minimum (19 MiB, t = 2, p = 1) or more, in PHC strings, computed by
/// `workers` dedicated threads. Each thread owns the argon2 memory it hashes in and reuses it
/// for every hash, so the portal's hashing memory is exactly `workers` × the memory cost, never
/// more, whatever the load: a flood of logins queues here instead of allocating. All methods
/// block the calling thread until their hash is done: call them on a blocking thread.
pub struct Hasher {
    params: Params,
    jobs: std::sync::mpsc::Sender<Job>,
    waiting: std::sync::Arc<AtomicUsize>,
    /// Hashes that may wait for a worker at once; more are refused ([`HashError::Busy`]).
    queue_limit: AtomicUsize,
    /// Requests other than logins that hash now, and how many may at once.
    extra: std::sync::Arc<AtomicUsize>,
    extra_limit: usize,
    /// Hashes computed since start, real and dummy.
    total: std::sync::atomic::AtomicU64,
    dummy: String,
}

/// A place among the requests other than logins that may hash at once; given back on drop.
pub struct HashPermit(std::sync::Arc<AtomicUsize>);

impl Drop for HashPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a stored hash is refused before it is computed: only argon2id (v19) within
/// [`Hasher::bounds`] is verified. Says nothing about the hash itself, so it can be logged.
fn refusal(parsed: &PasswordHash<'_>, bounds: &HashBounds) -> Option<String> {
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return Some(format!(
            "algorithm {} (only argon2id is accepted)",
            parsed.algorithm
        ));
    }
    if parsed.version != Some(0x13) {
        return Some(format!(
            "argon2 version {:?} (only 19 is accepted)",
            parsed.version
        ));
    }
    let Ok(params) = Params::try_from(parsed) else {
        return Some("unreadable argon2 parameters".into());
    };
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    if m < bounds.min_memory_kib || m > bounds.max_memory_kib {
        return Some(format!(
            "memory cost m={m} outside {}..={} KiB",
            bounds.min_memory_kib, bounds.max_memory_kib
        ));
    }
    if t < bounds.min_iterations || t > bounds.max_iterations {
        return Some(format!(
            "time cost t={t} outside {}..={}",
            bounds.min_iterations, bounds.max_iterations
        ));
    }
    if p < 1 || p > bounds.max_lanes {
        return Some(format!(
            "parallelism p={p} outside 1..={}",
            bounds.max_lanes
        ));
    }
    match parsed.hash.map(|h| h.len()) {
        Some(16..=64) => None,
        _ => Some("output length outside 16..=64 bytes".into()),
    }
}

/// The stored hashes the portal verifies: argon2id whose cost lies between the OWASP floor
/// and a ceiling of four times the configured cost (so that a planted hash can't make one
/// verification take gigabytes or minutes), with at most four lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashBounds {
    pub min_memory_kib: u32,
    pub max_memory_kib: u32,
    pub min_iterations: u32,
    pub max_iterations: u32,
    pub max_lanes: u32,
}

/// Computes a raw argon2 output in `memory`, growing it only for a hash with a larger cost.
fn compute(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    secret: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), HashError> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(secret, salt, out, &mut memory[..blocks])
        .map_err(|e| HashError::Argon2(e.to_string()))
}

/// Checks `secret` against a PHC string in `memory`; false for anything malformed.
fn verify_in(phc: &str, secret: &[u8], memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    verify_parsed(&parsed, secret, memory)
}

fn verify_parsed(parsed: &PasswordHash<'_>, secret: &[u8], memory: &mut Vec<Block>) -> bool {
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    if compute(algorithm, version, params, secret, salt, &mut out, memory).is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

impl Hasher {
    pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
    pub const MIN_ITERATIONS: u32 = 2;
    /// A stored hash may cost at most this many times the configured memory and time.
    pub const MAX_COST_FACTOR: u32 = 4;
    /// A stored hash may have at most this many lanes.
    pub const MAX_LANES: u32 = 4;
    /// Hashes that may wait for a worker, per worker, until [`Hasher::set_queue_limit`].
    pub const QUEUE_PER_WORKER: usize = 16;

    pub fn new(workers: usize, memory_kib: u32, iterations: u32) -> Result<Self, HashError> {
        let params = Params::new(
            memory_kib.max(Self::MIN_MEMORY_KIB),
            iterations.max(Self::MIN_ITERATIONS),
            1,
            None,
        )
        .map_err(|e| HashError::Argon2(e.to_string()))?;
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = std::sync::Arc::new(Mutex::new(queue));
        for i in 0..workers.max(1) {
            let queue = std::sync::Arc::clone(&queue);
            let blocks = params.block_count();
            std::thread::Builder::new()
                .name(format!("prp-hash-{i}"))
                .spawn(move || {
                    let mut memory = vec![Block::default(); blocks];
                    loop {
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        match job {
                            // A job that panics costs its caller an answer, not the worker.
                            Ok(job) => drop(std::panic::catch_unwind(
                                std::panic::AssertUnwindSafe(|| job(&mut memory)),
                            )),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| HashError::Argon2(format!("cannot start a hashing thread: {e}")))?;
        }
        let workers = workers.max(1);
        let mut hasher = Self {
            params,
            jobs,
            waiting: std::sync::Arc::default(),
            queue_limit: AtomicUsize::new(workers * (Self::QUEUE_PER_WORKER + 1)),
            extra: std::sync::Arc::default(),
            // Hashing besides logins may keep at most half the workers busy (at least one),
            // so a flood of such requests always leaves room for logins in the queue.
            extra_limit: workers.div_ceil(2),
            total: std::sync::atomic::AtomicU64::new(0),
            dummy: String::new(),
        };
        hasher.dummy = hasher.hash(&random_token())?;
        take_hash_count();
        Ok(hasher)
    }

    /// Hashes waiting for a free worker.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Bounds the hashes that may wait for a worker. The login service sets it to the logins
    /// it admits plus the other hashing requests [`Hasher::admit`] lets in (each of which has
    /// one hash waiting at a time), so within admission it is never reached; past it a hash
    /// fails at once instead of queueing.
    pub fn set_queue_limit(&self, limit: usize) {
        self.queue_limit
            .store(limit.max(1) + self.extra_limit, Ordering::SeqCst);
    }

    /// The requests other than logins that may hash at once.
    pub fn extra_limit(&self) -> usize {
        self.extra_limit
    }

    /// Admission for a request other than a login that will hash (a history check, a new
    /// answer, a passcode): at most [`Hasher::extra_limit`] at once, so that no flood of them
    /// can starve the logins of workers. `None`: turn the request away (503).
    pub fn admit(&self) -> Option<HashPermit> {
        let before = self.extra.fetch_add(1, Ordering::SeqCst);
        let permit = HashPermit(std::sync::Arc::clone(&self.extra));
        (before < self.extra_limit).then_some(permit)
    }

    /// The bounds stored hashes must lie in to be verified.
    pub fn bounds(&self) -> HashBounds {
        HashBounds {
            min_memory_kib: Self::MIN_MEMORY_KIB,
            max_memory_kib: self.params.m_cost().saturating_mul(Self::MAX_COST_FACTOR),
            min_iterations: Self::MIN_ITERATIONS,
            max_iterations: self.params.t_cost().saturating_mul(Self::MAX_COST_FACTOR),
            max_lanes: Self::MAX_LANES,
        }
    }

    /// Whether a stored hash (one that verified) is weaker than what the portal hashes with
    /// now, and should be replaced by a new hash of the same secret.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return true;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return true;
        };
        parsed.algorithm != argon2::ARGON2ID_IDENT
            || params.m_cost() < self.params.m_cost()
            || params.t_cost() < self.params.t_cost()
            || params.p_cost() != self.params.p_cost()
    }

    /// Runs `f` on a hashing thread and waits for it. `None` when the worker failed or, for a
    /// `bounded` hash, the queue is full. Logins' checks are not bounded here: refusing one
    /// would count as a wrong secret against the person. They are bounded before they get
    /// here, by `Host:MaxPendingLogins` and the plugin gate's `MaxConcurrentCalls` (a plugin
    /// call holds its slot until it returns, even after its caller stopped waiting).
    fn on_worker<T: Send + 'static>(
        &self,
        bounded: bool,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let waiting = std::sync::Arc::clone(&self.waiting);
        if waiting.fetch_add(1, Ordering::SeqCst) >= self.queue_limit.load(Ordering::SeqCst)
            && bounded
        {
            waiting.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("hash queue full: a hash was refused");
            return None;
        }
        let job: Job = Box::new(move |memory| {
            waiting.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(f(memory));
        });
        if self.jobs.send(job).is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let out = rx.recv().ok();
        HASHES.with(|c| c.set(c.get() + 1));
        self.total.fetch_add(1, Ordering::Relaxed);
        out
    }

    /// Hashes computed since start (real and dummy), for `/metrics`.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// A PHC string of `secret` with a fresh salt.
    pub fn hash(&self, secret: &str) -> Result<String, HashError> {
        let salt = random_bytes::<16>();
        let salt_b64 =
            SaltString::encode_b64(&salt).map_err(|e| HashError::Argon2(e.to_string()))?;
        let (params, secret) = (self.params.clone(), secret.to_owned());
        let raw = self
            .on_worker(true, move |memory| {
                let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
                compute(
                    Algorithm::Argon2id,
                    Version::V0x13,
                    params,
                    secret.as_bytes(),
                    &salt,
                    &mut out,
                    memory,
                )
                .map(|()| out)
            })
            .unwrap_or(Err(HashError::Busy))?;
        let output = argon2::password_hash::Output::new(&raw)
            .map_err(|e| HashError::Argon2(e.to_string()))?;
        Ok(format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost(),
            salt_b64.as_str(),
            output
        ))
    }

    /// Whether `secret` matches `phc` (compared in constant time). A malformed hash, or one
    /// outside [`Hasher::bounds`] (not argon2id, too cheap, too costly), costs the same as a
    /// real one and never matches: it fails closed, and is logged without the hash.
    pub fn verify(&self, phc: &str, secret: &str) -> bool {
        self.verify_in_queue(false, phc, secret).unwrap_or(false)
    }

    /// [`Hasher::verify`], refused with [`HashError::Busy`] when `bounded` and the queue is full.
    fn verify_in_queue(&self, bounded: bool, phc: &str, secret: &str) -> Result<bool, HashError> {
        let why = match PasswordHash::new(phc) {
            Err(_) => Some("not a PHC string".to_owned()),
            Ok(parsed) => refusal(&parsed, &self.bounds()),
        };
        if let Some(why) = why {
            tracing::warn!("a stored hash was refused and counts as a failed check: {why}");
            self.dummy_verify();
            return Ok(false);
        }
        let (phc, secret) = (phc.to_owned(), secret.to_owned());
        self.on_worker(bounded, move |memory| {
            verify_in(&phc, secret.as_bytes(), memory)
        })
        .ok_or(HashError::Busy)
    }

    /// [`Hasher::hash`] for async code: waits on a blocking thread, never on an async worker.
    pub async fn hash_async(
        self: &std::sync::Arc<Self>,
        secret: &str,
    ) -> Result<String, HashError> {
        let (h, s) = (std::sync::Arc::clone(self), secret.to_owned());
        tokio::task::spawn_blocking(move || h.hash(&s))
            .await
            .map_err(|e| HashError::Argon2(e.to_string()))?
    }

    /// [`Hasher::verify`] for async code outside logins (history, duplicate answers): bounded
    /// by the queue, so it may be refused ([`HashError::Busy`]) rather than answer "no match".
    pub async fn verify_async(
        self: &std::sync::Arc<Self>,
        phc: &str,
        secret: &str,
    ) -> Result<bool, HashError> {
        let (h, p, s) = (
            std::sync::Arc::clone(self),
            phc.to_owned(),
            secret.to_owned(),
        );
        tokio::task::spawn_blocking(move || h.verify_in_queue(true, &p, &s))
            .await
            .map_err(|e| HashError::Argon2(e.to_string()))?
    }

    /// A verification against a hash nobody knows the secret of: spends the time a real one
    /// would, so that a missing account takes as long as a present one.
    pub fn dummy_verify(&self) {
        let dummy = self.dummy.clone();
        let _ = self.on_worker(false, move |memory| {
            verify_in(&dummy, b"not the secret", memory)
        });
    }
}

/// Compares two hex digests in constant time.
pub fn digests_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passcodes_have_80_bits_and_normalise() {
        let p = new_passcode();
        assert_eq!(p.len(), 19, "{p}");
        assert_eq!(p.matches('-').count(), 3);
        let n = normalize_passcode(&p.to_lowercase()).unwrap_or_default();
        assert_eq!(n, p.replace('-', ""));
        assert_eq!(
            normalize_passcode("o1il-0000-0000-0000").as_deref(),
            Some("0111000000000000")
        );
        assert_eq!(normalize_passcode("short"), None);
        assert_eq!(normalize_passcode("UUUU-0000-0000-0000"), None);
        assert_ne!(new_passcode(), new_passcode());
    }

    #[test]
    fn answers_normalise() {
        assert_eq!(normalize_answer("  Ｍüller \t Straße "), "müller straße");
        assert_eq!(normalize_answer("Cafe\u{301}"), normalize_answer("Café"));
        assert_eq!(normalize_answer("FLUFFY"), "fluffy");
    }

    #[test]
    fn hashes_are_argon2id_phc_and_verify() {
        let h = Hasher::new(1, Hasher::MIN_MEMORY_KIB, 2).unwrap_or_else(|e| panic!("{e}"));
        let phc = h.hash("correct horse").unwrap_or_default();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        take_hash_count();
        assert!(h.verify(&phc, "correct horse"));
        assert!(!h.verify(&phc, "wrong"));
        assert!(!h.verify("not a hash", "x"));
        assert_eq!(
            take_hash_count(),
            3,
            "a malformed hash must cost one hash too"
        );
        // Interoperable with the reference implementation both ways.
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let reference = Argon2::default();
        let parsed = PasswordHash::new(&phc).unwrap_or_else(|e| panic!("{e}"));
        assert!(reference.verify_password(b"correct horse", &parsed).is_ok());
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap_or_else(|e| panic!("{e}"));
        let theirs = reference
            .hash_password(b"other secret", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(h.verify(&theirs, "other secret"));
        assert!(!h.verify(&theirs, "other secreT"));
    }

    /// A PHC string of `secret` made with any algorithm and cost, as a planted row could hold.
    fn phc_with(algorithm: Algorithm, m: u32, t: u32, p: u32, secret: &str) -> String {
        use argon2::password_hash::PasswordHasher;
        let params = Params::new(m, t, p, None).unwrap_or_else(|e| panic!("{e}"));
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap_or_else(|e| panic!("{e}"));
        Argon2::new(algorithm, Version::V0x13, params)
            .hash_password(secret.as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_argon2id_within_bounds_is_verified_and_refusals_cost_one_hash() {
        let h = Hasher::new(1, Hasher::MIN_MEMORY_KIB, 2).unwrap_or_else(|e| panic!("{e}"));
        let m = Hasher::MIN_MEMORY_KIB;
        // Right secret every time: only the hash's algorithm or cost is wrong.
        for (what, phc) in [
            ("argon2i", phc_with(Algorithm::Argon2i, m, 2, 1, "s3cret")),
            ("argon2d", phc_with(Algorithm::Argon2d, m, 2, 1, "s3cret")),
            (
                "tiny memory",
                phc_with(Algorithm::Argon2id, 8, 2, 1, "s3cret"),
            ),
            ("one pass", phc_with(Algorithm::Argon2id, m, 1, 1, "s3cret")),
            (
                "too much memory",
                phc_with(Algorithm::Argon2id, 4 * m + 1024, 2, 1, "s3cret"),
            ),
            (
                "too many passes",
                phc_with(Algorithm::Argon2id, m, 9, 1, "s3cret"),
            ),
            (
                "too many lanes",
                phc_with(Algorithm::Argon2id, m, 2, 8, "s3cret"),
            ),
        ] {
            take_hash_count();
            assert!(!h.verify(&phc, "s3cret"), "{what} must fail closed");
            assert_eq!(take_hash_count(), 1, "{what} costs one hash like any check");
        }
        // Within bounds, stronger or weaker than the current cost: verified.
        let stronger = phc_with(Algorithm::Argon2id, 2 * m, 3, 1, "s3cret");
        assert!(h.verify(&stronger, "s3cret"));
        assert!(!h.needs_rehash(&stronger));
        let two_lanes = phc_with(Algorithm::Argon2id, m, 2, 2, "s3cret");
        assert!(h.verify(&two_lanes, "s3cret"));
        let current = h.hash("s3cret").unwrap_or_default();
        assert!(!h.needs_rehash(&current));
        let h2 = Hasher::new(1, Hasher::MIN_MEMORY_KIB, 3).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            h2.verify(&current, "s3cret"),
            "a weaker hash still verifies"
        );
        assert!(h2.needs_rehash(&current), "and is to be rehashed");
    }

    #[test]
    fn passwords_normalise_to_nfkc_only() {
        assert_eq!(normalize_password("Cafe\u{301}"), "Caf\u{e9}");
        assert_eq!(normalize_password("ｐａｓｓ"), "pass");
        assert_eq!(normalize_password(" Mixed Case "), " Mixed Case ");
    }

    #[test]
    fn admission_and_the_queue_are_bounded() {
        let h = Hasher::new(2, Hasher::MIN_MEMORY_KIB, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.extra_limit(), 1);
        let first = h.admit();
        assert!(first.is_some());
        assert!(h.admit().is_none(), "half the workers at most");
        drop(first);
        assert!(h.admit().is_some(), "given back on drop");
        h.set_queue_limit(0);
        // Limit 1 (the minimum) + 1 for the admitted extra requests: two hashes may wait.
        let hs = std::sync::Arc::new(h);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let hs = std::sync::Arc::clone(&hs);
                std::thread::spawn(move || hs.hash("x").map(|_| ()))
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| panic!("thread")))
            .collect();
        assert!(
            results.iter().any(|r| matches!(r, Err(HashError::Busy))),
            "some of 8 concurrent hashes find the queue full"
        );
        assert!(results.iter().any(Result::is_ok));
        // A login's check is never refused (that would count as a wrong secret).
        let phc = hs.hash("x").unwrap_or_default();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (hs, phc) = (std::sync::Arc::clone(&hs), phc.clone());
                std::thread::spawn(move || hs.verify(&phc, "x"))
            })
            .collect();
        assert!(threads
            .into_iter()
            .all(|t| t.join().unwrap_or_else(|_| panic!("thread"))));
    }

    #[test]
    fn keyed_digests_depend_on_the_key() {
        assert_eq!(keyed_digest("k", "a"), keyed_digest("k", "a"));
        assert_ne!(keyed_digest("k", "a"), keyed_digest("k2", "a"));
        assert_eq!(keyed_digest("k", "a").len(), 64);
    }
}
