//! Password hashes: argon2id into PHC strings with configurable parameters,
//! verification of any argon2 PHC string (including the original service's
//! `argon2-cffi` hashes, `m=102400,t=2,p=8`), the "is this hash weaker than
//! our settings" test behind re-hash-on-login, and a dummy hash that makes a
//! login for an unknown user cost what a real one costs.
//!
//! These functions are CPU- and memory-heavy and blocking; async code calls
//! them through [`super::password_pool::PasswordHasherPool`].
//!
//! Lanes (`p`) are computed one after another on the calling thread: the
//! `argon2` crate's `parallel` feature (rayon) is deliberately not enabled.
//! Under load the pool already runs one hash per core, and spreading each
//! hash over several cores then changes nothing but adds a second thread
//! pool competing with tokio's. Rough release-build figures on the 2-core
//! development machine (shared with other builds, so ±30 %), legacy
//! `m=102400,t=2,p=8` verifications through the pool: sequential lanes,
//! 2 permits ≈ 14/s; rayon lanes, 1 permit ≈ 15/s, 2 permits ≈ 14/s. Rayon
//! would only halve a lone login's latency on an idle machine (≈ 70 ms
//! instead of ≈ 120 ms), which the ≥ 10/s throughput target does not need.
//! Reusing working memory ([`WorkMemory`]) matters more: a fresh 100 MiB
//! allocation per hash made each legacy verification ≈ 1.5× slower.

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use subtle::ConstantTimeEq;

use crate::domain::user::NewPassword;

/// The largest memory cost (KiB) this module agrees to verify: 256 MiB.
/// A stored hash asking for more (a corrupt import, say) is refused instead
/// of letting each login allocate without bound.
pub const MAX_VERIFY_MEMORY_KIB: u32 = 256 * 1024;

/// The most iterations this module agrees to verify, for the same reason:
/// a stored hash must not be able to pin a core for minutes.
pub const MAX_VERIFY_ITERATIONS: u32 = 64;

/// Bytes of salt in the hashes this module makes.
const SALT_LEN: usize = 16;

/// Why hashing or verifying could not give an answer. A wrong password is
/// not an error: [`verify_password`] answers `Ok(false)`. Messages never
/// contain a password or a hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The configured argon2 parameters are outside what argon2 accepts.
    #[error("invalid argon2 settings: {0}")]
    InvalidSettings(String),
    /// The stored hash is not a well-formed argon2 PHC string.
    #[error("stored password hash is not a valid argon2 PHC string")]
    MalformedHash,
    /// The stored hash is argon2 but asks for more memory or iterations
    /// than allowed.
    #[error("stored password hash is costlier than this server allows")]
    TooCostly,
    /// Hashing failed for a reason inside argon2 (e.g. no randomness).
    #[error("password hashing failed")]
    HashingFailed,
    /// No hashing slot became free within the queue timeout; the server
    /// answers `503` with `Retry-After: retry_after_secs`.
    #[error("too many password checks in progress; retry in {retry_after_secs} s")]
    Overloaded {
        /// Seconds the client should wait before trying again.
        retry_after_secs: u64,
    },
    /// The blocking task running a hash panicked or was cancelled.
    #[error("password hashing worker failed")]
    WorkerFailed,
}

/// The argon2id parameters new hashes are made with (`m` memory in KiB,
/// `t` iterations, `p` lanes). The default is OWASP's recommendation:
/// `m=19456, t=2, p=1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl Argon2Settings {
    /// OWASP's minimum recommended argon2id settings, the default.
    pub const OWASP: Self = Self { memory_kib: 19_456, iterations: 2, parallelism: 1 };

    /// Checks the parameters against argon2's limits (e.g. `m ≥ 8·p`) and
    /// against the verify cap: hashes made with settings above it could
    /// never be verified.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, PasswordError> {
        let settings = Self { memory_kib, iterations, parallelism };
        settings.params()?;
        if !within_verify_cap(memory_kib, iterations) {
            return Err(PasswordError::InvalidSettings(format!(
                "at most {MAX_VERIFY_MEMORY_KIB} KiB and {MAX_VERIFY_ITERATIONS} iterations can be verified"
            )));
        }
        Ok(settings)
    }

    /// Memory cost in KiB.
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    /// Number of passes over memory.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Number of lanes.
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }

    fn params(&self) -> Result<Params, PasswordError> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| PasswordError::InvalidSettings(e.to_string()))
    }
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Self::OWASP
    }
}

/// Reusable argon2 working memory. Allocating and page-faulting a fresh
/// 100 MiB region for every legacy-parameter hash costs about as much as the
/// hash itself and serialises concurrent hashes on the kernel's memory map,
/// so the pool keeps one of these per permit. It grows to the largest memory
/// cost seen and never shrinks.
#[derive(Default)]
pub struct WorkMemory(Vec<Block>);

impl WorkMemory {
    /// The first `blocks` blocks, growing the buffer if needed.
    fn blocks(&mut self, blocks: usize) -> &mut [Block] {
        if self.0.len() < blocks {
            self.0.resize(blocks, Block::default());
        }
        &mut self.0[..blocks]
    }

    /// Bytes currently held.
    pub fn capacity_bytes(&self) -> usize {
        self.0.len() * Block::SIZE
    }
}

impl std::fmt::Debug for WorkMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WorkMemory({} bytes)", self.capacity_bytes())
    }
}

/// Hashes a new password with argon2id and a fresh random 16-byte salt,
/// giving a PHC string such as `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
pub fn hash_password(password: &NewPassword, settings: &Argon2Settings) -> Result<String, PasswordError> {
    hash_password_in(password, settings, &mut WorkMemory::default())
}

/// [`hash_password`] using `memory` as argon2's working memory.
pub fn hash_password_in(
    password: &NewPassword,
    settings: &Argon2Settings,
    memory: &mut WorkMemory,
) -> Result<String, PasswordError> {
    let params = settings.params()?;
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|_| PasswordError::HashingFailed)?;
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            password.expose().as_bytes(),
            &salt,
            &mut output,
            memory.blocks(params.block_count()),
        )
        .map_err(|_| PasswordError::HashingFailed)?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        settings.memory_kib,
        settings.iterations,
        settings.parallelism,
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(output)
    ))
}

/// Checks `password` against a stored argon2 PHC string made with any
/// variant (`argon2id`, `argon2i`, `argon2d`), version and parameters.
/// `Ok(false)` means a wrong password; the comparison is constant-time.
pub fn verify_password(password: &str, stored_phc: &str) -> Result<bool, PasswordError> {
    verify_password_in(password, stored_phc, &mut WorkMemory::default())
}

/// [`verify_password`] using `memory` as argon2's working memory.
pub fn verify_password_in(
    password: &str,
    stored_phc: &str,
    memory: &mut WorkMemory,
) -> Result<bool, PasswordError> {
    let hash = parse_argon2_phc(stored_phc)?;
    let params = Params::try_from(&hash).map_err(|_| PasswordError::MalformedHash)?;
    if !within_verify_cap(params.m_cost(), params.t_cost()) {
        return Err(PasswordError::TooCostly);
    }
    let algorithm = Algorithm::try_from(hash.algorithm.as_str()).map_err(|_| PasswordError::MalformedHash)?;
    let version = match hash.version {
        Some(number) => Version::try_from(number).map_err(|_| PasswordError::MalformedHash)?,
        None => Version::V0x10,
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Err(PasswordError::MalformedHash);
    };
    let mut output = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut output,
            memory.blocks(params.block_count()),
        )
        .map_err(|_| PasswordError::MalformedHash)?;
    Ok(bool::from(output.as_slice().ct_eq(expected.as_ref())))
}

/// Whether a stored hash should be replaced after the next successful
/// login, as argon2-cffi's `check_needs_rehash` decides: any parameter that
/// differs from `current` (variant other than argon2id, version other than
/// 0x13, memory, iterations, lanes, a salt other than 16 bytes or an output
/// other than 32), whether stronger or weaker. Re-hashing stronger legacy
/// hashes (the original service's `m=102400,t=2,p=8`) too makes every
/// account cost what the dummy hash of an unknown one costs, so known and
/// unknown usernames answer alike over time. A hash this module cannot
/// read also needs replacing.
pub fn needs_rehash(stored_phc: &str, current: &Argon2Settings) -> bool {
    let Ok(hash) = parse_argon2_phc(stored_phc) else {
        return true;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return true;
    };
    let is_argon2id_v19 = hash.algorithm.as_str() == "argon2id" && hash.version == Some(0x13);
    let same_cost = (params.m_cost(), params.t_cost(), params.p_cost())
        == (current.memory_kib, current.iterations, current.parallelism);
    let salt_bytes = hash.salt.as_ref().map_or(0, |salt| salt.len());
    let output_bytes = hash.hash.map_or(0, |output| output.len());
    !(is_argon2id_v19 && same_cost && salt_bytes == SALT_LEN && output_bytes == Params::DEFAULT_OUTPUT_LEN)
}

/// Whether a memory cost (KiB) and iteration count are within what
/// [`verify_password`] agrees to run ([`MAX_VERIFY_MEMORY_KIB`],
/// [`MAX_VERIFY_ITERATIONS`]).
pub fn within_verify_cap(memory_kib: u32, iterations: u32) -> bool {
    memory_kib <= MAX_VERIFY_MEMORY_KIB && iterations <= MAX_VERIFY_ITERATIONS
}

/// Checks a PHC string about to be stored as it is (an import): a readable
/// argon2 hash whose cost is within the verify cap, so it can ever log in.
pub fn check_stored_hash(stored_phc: &str) -> Result<(), PasswordError> {
    let hash = parse_argon2_phc(stored_phc)?;
    let params = Params::try_from(&hash).map_err(|_| PasswordError::MalformedHash)?;
    if !within_verify_cap(params.m_cost(), params.t_cost()) {
        return Err(PasswordError::TooCostly);
    }
    if hash.salt.is_none() {
        return Err(PasswordError::MalformedHash);
    }
    Ok(())
}

/// A PHC string with `settings`' parameters, a fixed salt and an all-zero
/// output that no password produces. Verifying any password against it costs
/// exactly what verifying against a real hash with the same settings costs,
/// and always fails: the login path verifies against it when the username is
/// unknown, so "no such user" cannot be told from "wrong password" by time.
/// (A user whose stored hash still has other parameters — an imported legacy
/// hash — costs what those parameters cost until it is re-hashed.)
pub fn dummy_hash(settings: &Argon2Settings) -> String {
    const SALT_B64: &str = "ZW5lcmd5bG9hZC1kdW1teQ"; // "energyload-dummy", 16 bytes
    const ZERO_OUTPUT_B64: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"; // 32 zero bytes
    format!(
        "$argon2id$v=19$m={},t={},p={}${SALT_B64}${ZERO_OUTPUT_B64}",
        settings.memory_kib, settings.iterations, settings.parallelism
    )
}

fn parse_argon2_phc(stored_phc: &str) -> Result<PasswordHash, PasswordError> {
    let hash = PasswordHash::new(stored_phc).map_err(|_| PasswordError::MalformedHash)?;
    if Algorithm::try_from(hash.algorithm.as_str()).is_err() || hash.hash.is_none() {
        return Err(PasswordError::MalformedHash);
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher, PasswordVerifier};

    use super::*;

    /// Cheap settings so the tests stay fast; the algorithm is the same.
    fn cheap() -> Argon2Settings {
        Argon2Settings::new(1024, 1, 1).unwrap()
    }

    fn new_password(raw: &str) -> NewPassword {
        NewPassword::parse(raw.to_owned(), 12).unwrap()
    }

    /// `(username, phc, status)` rows of the original service's user export,
    /// `id,username,"phc",type,creator,status` (the PHC string has commas).
    fn legacy_users() -> Vec<(String, String, String)> {
        let csv = include_str!("../../tests/fixtures/legacy/backoffice_users.csv");
        let row = |line: &str| {
            let fields: Vec<&str> = line.split('"').collect();
            let username = fields[0].split(',').nth(1).unwrap();
            (username.to_owned(), fields[1].to_owned(), fields[2].rsplit(',').next().unwrap().to_owned())
        };
        csv.lines().skip(1).map(row).collect()
    }

    #[test]
    fn settings_outside_argon2_limits_are_refused() {
        assert!(matches!(Argon2Settings::new(4, 1, 1), Err(PasswordError::InvalidSettings(_))));
        assert!(matches!(Argon2Settings::new(1024, 0, 1), Err(PasswordError::InvalidSettings(_))));
        assert!(matches!(Argon2Settings::new(1024, 1, 0), Err(PasswordError::InvalidSettings(_))));
    }

    #[test]
    fn hashes_are_argon2id_phc_strings_that_verify() {
        let settings = cheap();
        let password = new_password("Correct-horse-1");
        let phc = hash_password(&password, &settings).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{phc}");
        assert_eq!(verify_password("Correct-horse-1", &phc), Ok(true));
        assert_eq!(verify_password("Correct-horse-2", &phc), Ok(false));
        assert_eq!(verify_password("", &phc), Ok(false));
        // A fresh salt each time.
        assert_ne!(phc, hash_password(&password, &settings).unwrap());
        // The argon2 crate's own verifier agrees with our PHC strings.
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(Argon2::default().verify_password(b"Correct-horse-1", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"Correct-horse-2", &parsed).is_err());
    }

    #[test]
    fn one_work_memory_serves_hashes_of_any_size() {
        let mut memory = WorkMemory::default();
        let (_, legacy_phc, _) = &legacy_users()[0];
        assert_eq!(verify_password_in("Legacy-admin-pass-1", legacy_phc, &mut memory), Ok(true));
        assert_eq!(memory.capacity_bytes(), 102_400 * 1024);
        let phc = hash_password_in(&new_password("Small-after-big"), &cheap(), &mut memory).unwrap();
        assert_eq!(verify_password_in("Small-after-big", &phc, &mut memory), Ok(true));
        assert_eq!(verify_password_in("Legacy-admin-pass-1", legacy_phc, &mut memory), Ok(true));
        assert_eq!(memory.capacity_bytes(), 102_400 * 1024, "grows to the largest, never more");
    }

    #[test]
    fn default_settings_are_owasps_and_hash_and_verify() {
        let settings = Argon2Settings::default();
        assert_eq!((settings.memory_kib(), settings.iterations(), settings.parallelism()), (19_456, 2, 1));
        let phc = hash_password(&new_password("Owasp-default-1"), &Argon2Settings::default()).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(verify_password("Owasp-default-1", &phc), Ok(true));
    }

    #[test]
    fn legacy_argon2_cffi_hashes_verify_with_their_known_passwords() {
        let known = [
            ("admin-legacy", "Legacy-admin-pass-1"),
            ("backoffice1", "Backoffice-pass-22"),
            ("esight", "eSight-callback-pass-3"),
            ("olduser", "Old-user-pass-444"),
        ];
        let users = legacy_users();
        assert_eq!(users.len(), known.len());
        for (username, password) in known {
            let (_, phc, _) = users.iter().find(|(name, _, _)| name == username).unwrap();
            assert!(phc.starts_with("$argon2id$v=19$m=102400,t=2,p=8$"));
            assert_eq!(verify_password(password, phc), Ok(true), "{username}");
            assert_eq!(verify_password("Legacy-admin-pass-2", phc), Ok(false), "{username}");
        }
        let (_, _, status) = users.iter().find(|(name, _, _)| name == "olduser").unwrap();
        assert_eq!(status, "deactivated");
    }

    #[test]
    fn other_argon2_variants_verify_too() {
        let params = Params::new(1024, 1, 2, None).unwrap();
        for algorithm in [Algorithm::Argon2i, Algorithm::Argon2d] {
            let phc = Argon2::new(algorithm, Version::V0x10, params.clone())
                .hash_password(b"Some-old-password")
                .unwrap()
                .to_string();
            assert_eq!(verify_password("Some-old-password", &phc), Ok(true), "{phc}");
            assert_eq!(verify_password("Some-old-passwore", &phc), Ok(false), "{phc}");
            assert!(needs_rehash(&phc, &cheap()));
        }
    }

    #[test]
    fn malformed_and_foreign_hashes_are_errors_not_mismatches() {
        for bad in [
            "",
            "plaintext",
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0",
            "$pbkdf2-sha256$29000$N2ZPaSVqxb8XYgwBQAIgxA$0pLrbd9Ix8mKHCr2Fj/Dtg",
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        ] {
            assert_eq!(verify_password("whatever-pass", bad), Err(PasswordError::MalformedHash), "{bad}");
        }
        let err = verify_password("Secret-pass-123", "$argon2id$broken").unwrap_err();
        assert!(!err.to_string().contains("Secret") && !err.to_string().contains("broken"));
    }

    #[test]
    fn hashes_asking_for_too_much_memory_or_time_are_refused_before_running() {
        let greedy = "$argon2id$v=19$m=4194304,t=1,p=1$ZW5lcmd5bG9hZC1kdW1teQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(verify_password("whatever-pass", greedy), Err(PasswordError::TooCostly));
        let slow = greedy.replace("m=4194304,t=1", "m=1024,t=100000");
        assert_eq!(verify_password("whatever-pass", &slow), Err(PasswordError::TooCostly));
    }

    #[test]
    fn any_parameter_other_than_the_current_ones_needs_rehash() {
        let current = Argon2Settings::default();
        let at = |m: u32, t: u32, p: u32| dummy_hash(&Argon2Settings::new(m, t, p).unwrap());
        assert!(!needs_rehash(&at(19_456, 2, 1), &current), "same settings");
        assert!(
            needs_rehash(&legacy_users()[0].1, &current),
            "legacy m=102400,t=2,p=8 is stronger, still differs"
        );
        assert!(needs_rehash(&at(19_456, 3, 1), &current), "more iterations");
        assert!(needs_rehash(&at(19_456, 2, 4), &current), "more lanes");
        assert!(needs_rehash(&at(12_288, 3, 1), &current), "less memory");
        assert!(needs_rehash(&at(19_456, 1, 1), &current), "less work");
        assert!(needs_rehash(&at(1024, 1, 1), &current));
        assert!(needs_rehash("not a hash", &current));
        let argon2i = at(19_456, 2, 1).replace("$argon2id$", "$argon2i$");
        assert!(needs_rehash(&argon2i, &current), "another variant");
        let v16 = at(19_456, 2, 1).replace("$v=19$", "$v=16$");
        assert!(needs_rehash(&v16, &current), "another version");
        let short_salt = at(19_456, 2, 1).replace("ZW5lcmd5bG9hZC1kdW1teQ", "c2FsdHNhbHRzYWx0");
        assert!(needs_rehash(&short_salt, &current), "a 12-byte salt");
        let long_output = format!("{}AAAA", at(19_456, 2, 1));
        assert!(needs_rehash(&long_output, &current), "a longer output");
        let stronger = Argon2Settings::new(131_072, 3, 1).unwrap();
        assert!(needs_rehash(&legacy_users()[0].1, &stronger));
        let fresh = hash_password(&new_password("Fresh-hash-pass-1"), &cheap()).unwrap();
        assert!(!needs_rehash(&fresh, &cheap()), "what this module makes is current");
    }

    #[test]
    fn settings_and_stored_hashes_above_the_verify_cap_are_refused() {
        assert!(Argon2Settings::new(MAX_VERIFY_MEMORY_KIB, MAX_VERIFY_ITERATIONS, 1).is_ok());
        let over_memory = Argon2Settings::new(MAX_VERIFY_MEMORY_KIB + 1, 1, 1).unwrap_err();
        assert!(matches!(over_memory, PasswordError::InvalidSettings(_)));
        let over_time = Argon2Settings::new(1024, MAX_VERIFY_ITERATIONS + 1, 1).unwrap_err();
        assert!(matches!(over_time, PasswordError::InvalidSettings(_)));

        assert_eq!(check_stored_hash(&legacy_users()[0].1), Ok(()));
        let greedy = "$argon2id$v=19$m=4194304,t=1,p=1$ZW5lcmd5bG9hZC1kdW1teQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(check_stored_hash(greedy), Err(PasswordError::TooCostly));
        let slow = greedy.replace("m=4194304,t=1", "m=1024,t=65");
        assert_eq!(check_stored_hash(&slow), Err(PasswordError::TooCostly));
        let at_cap = greedy.replace("m=4194304,t=1", "m=262144,t=64");
        assert_eq!(check_stored_hash(&at_cap), Ok(()));
        assert_eq!(check_stored_hash("$argon2id$broken"), Err(PasswordError::MalformedHash));
    }

    #[test]
    fn the_dummy_hash_has_the_current_parameters_and_never_matches() {
        let settings = cheap();
        let dummy = dummy_hash(&settings);
        assert!(dummy.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(!needs_rehash(&dummy, &settings));
        for password in ["", "password", "Correct-horse-1"] {
            assert_eq!(verify_password(password, &dummy), Ok(false));
        }
        let default_dummy = dummy_hash(&Argon2Settings::default());
        assert_eq!(verify_password("anything-at-all", &default_dummy), Ok(false));
    }
}
