//! Failure counters and locks, per person, in the database: they hold across restarts and
//! across servers, and every update is a single atomic statement.

use super::{ParameterSnapshot, Store, StoreError};

/// What a lock covers. `All` counts failures of every method together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockScope {
    All,
    Password,
    Questions,
    Passcode,
}

impl LockScope {
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Password => "password",
            Self::Questions => "questions",
            Self::Passcode => "passcode",
        }
    }
    fn param(self) -> &'static str {
        match self {
            Self::All => "All",
            Self::Password => "Password",
            Self::Questions => "Questions",
            Self::Passcode => "Passcode",
        }
    }
}

/// Thresholds of one scope: `max_failures` within `window` seconds lock for `lock` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScopePolicy {
    pub max_failures: i64,
    pub window: i64,
    pub lock: i64,
}

/// The lockout rules. Defaults follow ASVS/NIST (at most 100 failures an hour across all
/// methods) and are far stricter for questions and passcodes. Each can be set with parameters
/// under `PRP\Lockout`; their defaults and ranges are in [`crate::params_spec::HOST_PARAMETERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub all: ScopePolicy,
    pub password: ScopePolicy,
    pub questions: ScopePolicy,
    pub passcode: ScopePolicy,
    /// Wrong guesses after which a passcode is invalidated.
    pub passcode_max_guesses: i64,
    /// Wrong answers after which a question is locked.
    pub question_max_failures: i64,
    /// Leading zero bits of the proof of work asked of clients over a limit; 0: none.
    pub pow_bits: i64,
    /// Failures from one client source within the `all` window after which it must solve a
    /// proof of work for each attempt.
    pub source_max_failures: i64,
}

const SCOPES: [LockScope; 4] = [
    LockScope::All,
    LockScope::Password,
    LockScope::Questions,
    LockScope::Passcode,
];

/// Each setting of a scope: parameter name and seconds per unit.
const SCOPE_SETTINGS: [(&str, i64); 3] = [
    ("MaxFailures", 1),
    ("WindowMinutes", 60),
    ("LockMinutes", 60),
];

impl Default for LockoutPolicy {
    /// The defaults of the parameter table.
    fn default() -> Self {
        let default_of = |path: &str| {
            crate::params_spec::spec_for(path)
                .map_or(0, crate::params_spec::ParamSpec::default_number)
        };
        let mut policy = Self {
            all: ScopePolicy::default(),
            password: ScopePolicy::default(),
            questions: ScopePolicy::default(),
            passcode: ScopePolicy::default(),
            passcode_max_guesses: default_of(&format!(r"{}\PasscodeMaxGuesses", Self::ROOT)),
            question_max_failures: default_of(&format!(r"{}\QuestionMaxFailures", Self::ROOT)),
            pow_bits: default_of(&format!(r"{}\ProofOfWorkBits", Self::ROOT)),
            source_max_failures: default_of(&format!(r"{}\Source\MaxFailures", Self::ROOT)),
        };
        for scope in SCOPES {
            for (name, scale) in SCOPE_SETTINGS {
                let path = format!(r"{}\{}\{name}", Self::ROOT, scope.param());
                *policy.setting_mut(scope, name) = default_of(&path) * scale;
            }
        }
        policy
    }
}

impl LockoutPolicy {
    pub const ROOT: &'static str = r"PRP\Lockout";

    fn setting_mut(&mut self, scope: LockScope, name: &str) -> &mut i64 {
        let p = match scope {
            LockScope::All => &mut self.all,
            LockScope::Password => &mut self.password,
            LockScope::Questions => &mut self.questions,
            LockScope::Passcode => &mut self.passcode,
        };
        match name {
            "MaxFailures" => &mut p.max_failures,
            "WindowMinutes" => &mut p.window,
            _ => &mut p.lock,
        }
    }

    /// The policy from the values in force (`value(path)`): each value that is set and
    /// allowed replaces the default; each that isn't allowed is reported (naming the path and
    /// the allowed range) and the default stays in force for it.
    pub fn resolve(
        value: impl Fn(&str) -> Result<Option<String>, StoreError>,
    ) -> Result<(Self, Vec<String>), StoreError> {
        let mut policy = Self::default();
        let mut problems = Vec::new();
        let mut read = |path: String, target: &mut i64, scale: i64| -> Result<(), StoreError> {
            let Some(raw) = value(&path)? else {
                return Ok(());
            };
            let Some(spec) = crate::params_spec::spec_for(&path) else {
                return Ok(());
            };
            match spec.value_type.number(&raw) {
                Ok(n) => *target = n * scale,
                Err(e) => problems.push(format!(
                    "{path}: {e}; the default ({}) applies",
                    spec.default_number()
                )),
            }
            Ok(())
        };
        for scope in SCOPES {
            for (name, scale) in SCOPE_SETTINGS {
                let path = format!(r"{}\{}\{name}", Self::ROOT, scope.param());
                read(path, policy.setting_mut(scope, name), scale)?;
            }
        }
        read(
            format!(r"{}\PasscodeMaxGuesses", Self::ROOT),
            &mut policy.passcode_max_guesses,
            1,
        )?;
        read(
            format!(r"{}\QuestionMaxFailures", Self::ROOT),
            &mut policy.question_max_failures,
            1,
        )?;
        read(
            format!(r"{}\ProofOfWorkBits", Self::ROOT),
            &mut policy.pow_bits,
            1,
        )?;
        read(
            format!(r"{}\Source\MaxFailures", Self::ROOT),
            &mut policy.source_max_failures,
            1,
        )?;
        Ok((policy, problems))
    }

    pub fn scope(&self, scope: LockScope) -> ScopePolicy {
        match scope {
            LockScope::All => self.all,
            LockScope::Password => self.password,
            LockScope::Questions => self.questions,
            LockScope::Passcode => self.passcode,
        }
    }
}

impl Store {
    /// The policy in force, with each value that is set (and allowed) replacing the default.
    /// Values that aren't allowed are reported (and logged once each), and the default stays
    /// in force for them.
    pub async fn lockout_policy(&self) -> Result<(LockoutPolicy, Vec<String>), StoreError> {
        LockoutPolicy::from_parameters(&self.parameters().await?)
    }
}

impl LockoutPolicy {
    /// [`Store::lockout_policy`] from parameters already read; a value that isn't allowed is
    /// logged once and reported, and its default applies.
    pub fn from_parameters(
        params: &ParameterSnapshot,
    ) -> Result<(LockoutPolicy, Vec<String>), StoreError> {
        let (policy, problems) = LockoutPolicy::resolve(|path| params.value(path))?;
        for p in &problems {
            crate::params_spec::warn_once(p);
        }
        Ok((policy, problems))
    }
}

impl Store {
    /// When the person is locked for this scope (or for all methods), until when.
    pub async fn locked_until(
        &self,
        person_uid: &str,
        scope: LockScope,
    ) -> Result<Option<i64>, StoreError> {
        let until: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(locked_until) FROM prp_failure WHERE person_uid = $1 AND scope IN ('all', $2) AND locked_until > $3",
        )
        .bind(person_uid)
        .bind(scope.name())
        .bind(self.now())
        .fetch_one(self.pool())
        .await?;
        Ok(until)
    }

    /// Counts an attempt in the scope and in `all` *before* its secret is checked, in one
    /// statement each: refused (false, nothing counted) while either is locked or has used up
    /// its tries in the current window. So attempts sent in parallel get no more tries than
    /// the limit between them. A window that ran out, or a lock that ended, starts afresh.
    pub async fn reserve_attempt(
        &self,
        person_uid: &str,
        scope: LockScope,
        policy: &LockoutPolicy,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        for s in [scope, LockScope::All] {
            let p = policy.scope(s);
            let counted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO prp_failure (person_uid, scope, window_start, failures, locked_until)
                 VALUES ($1, $2, $3, 1, 0)
                 ON CONFLICT (person_uid, scope) DO UPDATE SET
                   failures = CASE WHEN prp_failure.window_start <= $4
                                     OR (prp_failure.locked_until > 0 AND prp_failure.locked_until <= $3)
                                   THEN 1 ELSE prp_failure.failures + 1 END,
                   window_start = CASE WHEN prp_failure.window_start <= $4
                                         OR (prp_failure.locked_until > 0 AND prp_failure.locked_until <= $3)
                                       THEN $3 ELSE prp_failure.window_start END,
                   locked_until = CASE WHEN prp_failure.locked_until <= $3 THEN 0 ELSE prp_failure.locked_until END
                 WHERE prp_failure.locked_until <= $3
                   AND (prp_failure.window_start <= $4
                        OR (prp_failure.locked_until > 0 AND prp_failure.locked_until <= $3)
                        OR prp_failure.failures < $5)
                 RETURNING failures",
            )
            .bind(person_uid)
            .bind(s.name())
            .bind(now)
            .bind(now - p.window)
            .bind(p.max_failures)
            .fetch_optional(self.pool())
            .await?;
            if counted.is_none() {
                if s == LockScope::All && scope != LockScope::All {
                    self.uncount(person_uid, scope).await?;
                }
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// After a wrong secret: the attempt stays counted, and a scope whose tries are spent is
    /// locked. Returns whether the person is now locked for this scope (or all of them).
    pub async fn settle_failure(
        &self,
        person_uid: &str,
        scope: LockScope,
        policy: &LockoutPolicy,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let mut locked = false;
        for s in [scope, LockScope::All] {
            let p = policy.scope(s);
            let hit: Option<i64> = sqlx::query_scalar(
                "UPDATE prp_failure SET locked_until = $3
                 WHERE person_uid = $1 AND scope = $2 AND failures >= $4 AND locked_until < $3
                 RETURNING failures",
            )
            .bind(person_uid)
            .bind(s.name())
            .bind(now + p.lock)
            .bind(p.max_failures)
            .fetch_optional(self.pool())
            .await?;
            locked |= hit.is_some();
        }
        Ok(locked)
    }

    /// After a right secret: the scope starts afresh and the attempt is taken back from `all`.
    pub async fn settle_success(
        &self,
        person_uid: &str,
        scope: LockScope,
    ) -> Result<(), StoreError> {
        self.clear_failures(person_uid, scope).await?;
        self.uncount(person_uid, LockScope::All).await
    }

    /// Takes an attempt back from both counters (it was neither right nor wrong).
    pub async fn refund_attempt(
        &self,
        person_uid: &str,
        scope: LockScope,
    ) -> Result<(), StoreError> {
        self.uncount(person_uid, scope).await?;
        self.uncount(person_uid, LockScope::All).await
    }

    async fn uncount(&self, person_uid: &str, scope: LockScope) -> Result<(), StoreError> {
        sqlx::query("UPDATE prp_failure SET failures = failures - 1 WHERE person_uid = $1 AND scope = $2 AND failures > 0")
            .bind(person_uid)
            .bind(scope.name())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Clears the scope's counter and lock (after a successful login, or a password reset).
    pub async fn clear_failures(
        &self,
        person_uid: &str,
        scope: LockScope,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM prp_failure WHERE person_uid = $1 AND scope = $2")
            .bind(person_uid)
            .bind(scope.name())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` prefix match.
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Store {
    /// Counts a failure of `subject` (a login name's key, a client source) in `scope`, in one
    /// statement: a window that ran out starts afresh. Returns the failures in the window.
    pub async fn count_failure(
        &self,
        subject: &str,
        scope: LockScope,
        window: i64,
    ) -> Result<i64, StoreError> {
        let now = self.now();
        let n: i64 = sqlx::query_scalar(
            "INSERT INTO prp_failure (person_uid, scope, window_start, failures, locked_until)
             VALUES ($1, $2, $3, 1, 0)
             ON CONFLICT (person_uid, scope) DO UPDATE SET
               failures = CASE WHEN prp_failure.window_start <= $4 THEN 1 ELSE prp_failure.failures + 1 END,
               window_start = CASE WHEN prp_failure.window_start <= $4 THEN $3 ELSE prp_failure.window_start END
             RETURNING failures",
        )
        .bind(subject)
        .bind(scope.name())
        .bind(now)
        .bind(now - window)
        .fetch_one(self.pool())
        .await?;
        Ok(n)
    }

    /// The failures of `subject` in `scope` within the window (0 when none are counted).
    pub async fn failures(
        &self,
        subject: &str,
        scope: LockScope,
        window: i64,
    ) -> Result<i64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT failures FROM prp_failure WHERE person_uid = $1 AND scope = $2 AND window_start > $3",
        )
        .bind(subject)
        .bind(scope.name())
        .bind(self.now() - window)
        .fetch_optional(self.pool())
        .await?;
        Ok(n.unwrap_or(0))
    }

    /// Clears every counter and lock of `subject` and of the subjects under it
    /// (`subject@…`), in `scope` (and `all`), or in every scope when `scope` is `All`.
    /// Returns how many were cleared.
    pub async fn clear_subject(&self, subject: &str, scope: LockScope) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM prp_failure WHERE (person_uid = $1 OR person_uid LIKE $2 ESCAPE '\\')
               AND ($3 = 'all' OR scope IN ('all', $3))",
        )
        .bind(subject)
        .bind(like_prefix(&format!("{subject}@")))
        .bind(scope.name())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Spends a proof-of-work challenge: true the first time, false ever after (until it
    /// expires and is purged, when its signature no longer holds either).
    pub async fn spend_pow(&self, nonce: &str, expires_at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO prp_pow_spent (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(nonce)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets spent challenges that have expired.
    pub async fn purge_spent_pow(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM prp_pow_spent WHERE expires_at <= $1")
            .bind(self.now())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
