//! Failure counters and locks, per person, in the database: they hold across restarts and
//! across servers, and every update is a single atomic statement.

use super::{ParameterSnapshot, Store, StoreError, StoredPassword};
use sqlx::Row;

/// What a lock covers. `All` counts failures of every method together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockScope {
    All,
    Password,
    Questions,
    Passcode,
    /// A flow's later step (a factor such as TOTP): its own counter, so that nobody's wrong
    /// passcodes or answers can lock a person out of the step every full login of theirs
    /// takes once they enrolled a factor.
    Factor,
}

impl LockScope {
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Password => "password",
            Self::Questions => "questions",
            Self::Passcode => "passcode",
            Self::Factor => "factor",
        }
    }
    fn param(self) -> &'static str {
        match self {
            Self::All => "All",
            Self::Password => "Password",
            Self::Questions => "Questions",
            Self::Passcode => "Passcode",
            Self::Factor => "Factor",
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
    pub factor: ScopePolicy,
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

const SCOPES: [LockScope; 5] = [
    LockScope::All,
    LockScope::Password,
    LockScope::Questions,
    LockScope::Passcode,
    LockScope::Factor,
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
            factor: ScopePolicy::default(),
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
            LockScope::Factor => &mut self.factor,
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
            LockScope::Factor => self.factor,
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
        params.lockout_policy_with(|| {
            let (policy, problems) = LockoutPolicy::resolve(|path| params.value(path))?;
            for p in &problems {
                crate::params_spec::warn_once(p);
            }
            Ok((policy, problems))
        })
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
        .fetch_one(self.db())
        .await?;
        Ok(until)
    }

    /// Counts an attempt in the scope and in `all` *before* its secret is checked: refused
    /// (false, nothing counted) while either is locked or has used up its tries in the
    /// current window. So attempts sent in parallel get no more tries than the limit between
    /// them. A window that ran out, or a lock that ended, starts afresh. On SQLite both rows
    /// move in one statement (see [`Store::row_batches`]).
    pub async fn reserve_attempt(
        &self,
        person_uid: &str,
        scope: LockScope,
        policy: &LockoutPolicy,
    ) -> Result<bool, StoreError> {
        let scopes = both(scope);
        let batches = self.row_batches(&scopes);
        let counted = self.reserve_rows(person_uid, batches[0], policy).await?;
        self.finish_reservation(person_uid, &scopes, counted, policy)
            .await
    }

    /// Counts the rows of `scopes` left after the first statement of a reservation, which
    /// counted `counted` (the first of [`Store::row_batches`]; on PostgreSQL one row per
    /// statement). Refused (a statement writes all of its rows or none): what was counted is
    /// taken back. Returns whether every row was counted.
    async fn finish_reservation(
        &self,
        person_uid: &str,
        scopes: &[LockScope],
        mut counted: Vec<String>,
        policy: &LockoutPolicy,
    ) -> Result<bool, StoreError> {
        let batches = self.row_batches(scopes);
        let mut complete = counted.len() == batches[0].len();
        for batch in batches.iter().skip(1) {
            if !complete {
                break;
            }
            let got = self.reserve_rows(person_uid, batch, policy).await?;
            complete = got.len() == batch.len();
            counted.extend(got);
        }
        if !complete {
            for s in scopes
                .iter()
                .filter(|s| counted.iter().any(|c| c == s.name()))
            {
                self.uncount_rows(person_uid, std::slice::from_ref(s))
                    .await?;
            }
        }
        Ok(complete)
    }

    /// One upsert of the rows of `scopes`, each under its own scope's window and limit: all of
    /// them counted (their scopes returned), or none when any refuses.
    async fn reserve_rows(
        &self,
        person_uid: &str,
        scopes: &[LockScope],
        policy: &LockoutPolicy,
    ) -> Result<Vec<String>, StoreError> {
        let sql = reserve_rows_sql(scopes.len(), "");
        let query = self.bind_reservation(sqlx::query(&sql), person_uid, scopes, policy);
        let rows = query.fetch_all(self.db()).await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?)
    }

    /// [`Self::reserve_attempt`] for a password, with the stored hash of the credential
    /// `(source, account_uid)` of the person read by the reservation's first statement (on
    /// SQLite a second statement in the same call, on PostgreSQL a `WITH` around it), so in
    /// the same round trip. The hash is read whether or not the attempt is let through.
    pub async fn reserve_attempt_reading(
        &self,
        person_uid: &str,
        scope: LockScope,
        policy: &LockoutPolicy,
        (source, account_uid): (&str, &str),
    ) -> Result<(bool, Option<StoredPassword>), StoreError> {
        let scopes = both(scope);
        let n = self.row_batches(&scopes)[0].len();
        let first = RESERVE_FIRST + n;
        let read = super::secrets::stored_password_sql(first, first + 1, 1);
        let reserve = reserve_rows_sql(n, "");
        let sql = match self.dialect() {
            super::Dialect::Sqlite => format!("{reserve};\n{read}"),
            super::Dialect::Postgres => format!(
                "WITH reserved AS ({reserve})
                 SELECT hash, normalized, NULL AS scope FROM ({read}) AS c
                 UNION ALL SELECT NULL, NULL, scope FROM reserved"
            ),
        };
        let query = self
            .bind_reservation(sqlx::query(&sql), person_uid, &scopes[..n], policy)
            .bind(source)
            .bind(account_uid);
        let (counted, read) = split_reserved(query.fetch_all(self.db()).await?, "hash")?;
        let stored = match read.first() {
            Some(r) => Some(super::secrets::stored_password_from(r)?),
            None => None,
        };
        let complete = self
            .finish_reservation(person_uid, &scopes, counted, policy)
            .await?;
        Ok((complete, stored))
    }

    /// The gate's reservation of `own` ([`Self::reserve_attempt`]) unless one of `guards`
    /// (a counter and its limit: the name's, the client source's) has reached its limit
    /// within its window: then nothing is counted. `enforce` false counts `own` whatever
    /// the guards read (the client paid with a proof of work). Returns each guard's failures
    /// in its window, in the order given, and whether `own` was counted.
    ///
    /// The guards are read by the reservation's first statement (on SQLite a statement before
    /// it in the same call, on PostgreSQL the same statement, around it), so in the same
    /// round trip, and the reservation checks them again as it writes. On SQLite a guard may
    /// reach its limit between the two statements: it then counts nothing either, and a
    /// refusal the read doesn't explain reads the guards again. A request over a guard's
    /// limit still runs a reservation that writes nothing, and so takes SQLite's write lock
    /// for a statement as every login's reservation does; admission
    /// (`Host:MaxPendingLogins`) and the failure time floor bound how often.
    pub async fn reserve_unless_over(
        &self,
        own: &str,
        scope: LockScope,
        policy: &LockoutPolicy,
        guards: &[(Counter<'_>, i64)],
        enforce: bool,
    ) -> Result<(Vec<i64>, bool), StoreError> {
        if guards.is_empty() {
            let counted = self.reserve_attempt(own, scope, policy).await?;
            return Ok((Vec::new(), counted));
        }
        let counters: Vec<Counter<'_>> = guards.iter().map(|(c, _)| *c).collect();
        let scopes = both(scope);
        let n = self.row_batches(&scopes)[0].len();
        let first = RESERVE_FIRST + n;
        // Guard i binds its subject, scope and the start of its window, and its limit when
        // enforced (PostgreSQL refuses a parameter a statement doesn't use).
        let stride = if enforce { 4 } else { 3 };
        let guard_of = |i: usize| {
            let at = first + stride * i;
            (
                format!(
                    "(person_uid = ${at} AND scope = ${} AND window_start > ${}",
                    at + 1,
                    at + 2
                ),
                at + 3,
            )
        };
        let read: Vec<String> = (0..guards.len())
            .map(|i| format!("{})", guard_of(i).0))
            .collect();
        let over: Vec<String> = (0..guards.len())
            .map(|i| {
                let (cond, limit) = guard_of(i);
                format!("{cond} AND failures >= ${limit})")
            })
            .collect();
        let guarded = format!(
            "AND NOT EXISTS (SELECT 1 FROM prp_failure WHERE {})",
            over.join(" OR ")
        );
        let reserve = reserve_rows_sql(n, if enforce { &guarded } else { "" });
        let read = format!(
            "SELECT person_uid, scope, failures FROM prp_failure WHERE {}",
            read.join(" OR ")
        );
        let sql = match self.dialect() {
            super::Dialect::Sqlite => format!("{read};\n{reserve}"),
            super::Dialect::Postgres => format!(
                "WITH reserved AS ({reserve})
                 {read}
                 UNION ALL SELECT NULL, scope, NULL FROM reserved"
            ),
        };
        let now = self.now();
        let mut query = self.bind_reservation(sqlx::query(&sql), own, &scopes[..n], policy);
        for (c, limit) in guards {
            query = query
                .bind(c.subject)
                .bind(c.scope.name())
                .bind(now - c.window);
            if enforce {
                query = query.bind(*limit);
            }
        }
        let (counted, rows) = split_reserved(query.fetch_all(self.db()).await?, "failures")?;
        let mut read = Vec::new();
        for r in &rows {
            read.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
        }
        let failures = in_order(&counters, &read);
        let first_counted = counted.len() == n;
        let complete = self
            .finish_reservation(own, &scopes, counted, policy)
            .await?;
        if enforce
            && !first_counted
            && self.dialect() == super::Dialect::Sqlite
            && !any_over(guards, &failures)
        {
            // Refused, though the guards read under their limits: `own` is locked, or a
            // guard reached its limit between the two statements. Read them again, so that
            // the caller asks for a proof of work when a guard is what refused.
            return Ok((self.failures_of(&counters).await?, false));
        }
        Ok((failures, complete))
    }

    /// Binds [`reserve_rows_sql`]'s parameters.
    fn bind_reservation<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        person_uid: &'q str,
        scopes: &[LockScope],
        policy: &LockoutPolicy,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        let now = self.now();
        let all = policy.all;
        debug_assert!(
            scopes.iter().filter(|s| **s != LockScope::All).count() <= 1,
            "one method's scope and `all` at most"
        );
        // The scope other than `all` among them, if any.
        let p = policy.scope(
            scopes
                .iter()
                .copied()
                .find(|s| *s != LockScope::All)
                .unwrap_or(LockScope::All),
        );
        let mut query = query
            .bind(person_uid)
            .bind(now)
            .bind(now - p.window)
            .bind(now - all.window)
            .bind(p.max_failures)
            .bind(all.max_failures);
        for s in scopes {
            query = query.bind(s.name());
        }
        query
    }

    /// After a wrong secret: the attempt stays counted, and a scope whose tries are spent is
    /// locked (the scope and `all`). Returns whether the person is now locked for this scope
    /// (or all of them).
    pub async fn settle_failure(
        &self,
        person_uid: &str,
        scope: LockScope,
        policy: &LockoutPolicy,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let (p, all) = (policy.scope(scope), policy.all);
        let mut locked = false;
        for batch in self.row_batches(&both(scope)) {
            let sql = format!(
                "UPDATE prp_failure SET locked_until = CASE WHEN scope = 'all' THEN $3 ELSE $2 END
                 WHERE person_uid = $1 AND scope IN ({})
                   AND failures >= CASE WHEN scope = 'all' THEN $5 ELSE $4 END
                   AND locked_until < CASE WHEN scope = 'all' THEN $3 ELSE $2 END
                 RETURNING failures",
                placeholders(6, batch.len())
            );
            let mut query = sqlx::query_scalar::<_, i64>(&sql)
                .bind(person_uid)
                .bind(now + p.lock)
                .bind(now + all.lock)
                .bind(p.max_failures)
                .bind(all.max_failures);
            for s in batch {
                query = query.bind(s.name());
            }
            locked |= !query.fetch_all(self.db()).await?.is_empty();
        }
        Ok(locked)
    }

    /// After a right secret: the scope starts afresh and the attempt is taken back from `all`.
    pub async fn settle_success(
        &self,
        person_uid: &str,
        scope: LockScope,
    ) -> Result<(), StoreError> {
        for batch in self.row_batches(&both(scope)) {
            let sql = settle_success_sql(1, batch.len());
            let mut query = sqlx::query(&sql).bind(person_uid).bind(scope.name());
            for s in batch {
                query = query.bind(s.name());
            }
            query.execute(self.db()).await?;
        }
        Ok(())
    }

    /// What a right secret does to the person's counters ([`Settlement`]).
    pub async fn settle(&self, settlement: &Settlement) -> Result<(), StoreError> {
        if settlement.counted {
            self.settle_success(&settlement.person_uid, settlement.scope)
                .await
        } else {
            self.clear_failures(&settlement.person_uid, settlement.scope)
                .await
        }
    }

    /// Takes an attempt back from both counters (it was neither right nor wrong).
    pub async fn refund_attempt(
        &self,
        person_uid: &str,
        scope: LockScope,
    ) -> Result<(), StoreError> {
        for batch in self.row_batches(&both(scope)) {
            self.uncount_rows(person_uid, batch).await?;
        }
        Ok(())
    }

    /// Takes an attempt back from each of the person's counters in `scopes`, in one statement.
    async fn uncount_rows(&self, person_uid: &str, scopes: &[LockScope]) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE prp_failure SET failures = failures - 1 WHERE person_uid = $1 AND scope IN ({}) AND failures > 0",
            placeholders(2, scopes.len())
        );
        let mut query = sqlx::query(&sql).bind(person_uid);
        for s in scopes {
            query = query.bind(s.name());
        }
        query.execute(self.db()).await?;
        Ok(())
    }

    /// How rows of the failure table are grouped into statements. SQLite writes one statement
    /// at a time for the whole database, so several rows go in one statement (one round trip
    /// to the connection's thread instead of several). PostgreSQL locks rows, in an order a
    /// statement that touches several doesn't promise: two such statements on the same person
    /// could each wait for the other (a deadlock), so there each statement writes one row.
    fn row_batches<'a, T>(&self, rows: &'a [T]) -> Vec<&'a [T]> {
        match self.dialect() {
            super::Dialect::Sqlite => vec![rows],
            super::Dialect::Postgres => rows.chunks(1).collect(),
        }
    }

    /// Clears the scope's counter and lock (after a successful login, or a password reset).
    pub async fn clear_failures(
        &self,
        person_uid: &str,
        scope: LockScope,
    ) -> Result<(), StoreError> {
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| clear_failures_sql(1));
        sqlx::query(&SQL)
            .bind(person_uid)
            .bind(scope.name())
            .execute(self.db())
            .await?;
        Ok(())
    }
}

/// One failure counter: a subject (a person, a login name's key, a client source) in a scope,
/// counted over a window of `window` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter<'a> {
    pub subject: &'a str,
    pub scope: LockScope,
    pub window: i64,
}

/// The longest window any scope may count over, in seconds: the largest `WindowMinutes` the
/// parameters allow.
fn longest_window() -> i64 {
    SCOPES
        .iter()
        .filter_map(|s| {
            let path = format!(r"{}\{}\WindowMinutes", LockoutPolicy::ROOT, s.param());
            match crate::params_spec::spec_for(&path)?.value_type {
                crate::params_spec::ValueType::Whole { max, .. } => Some(max * 60),
                _ => None,
            }
        })
        .max()
        .unwrap_or(7 * 24 * 3600)
}

/// The scope and `all`, or `all` alone.
fn both(scope: LockScope) -> Vec<LockScope> {
    if scope == LockScope::All {
        vec![LockScope::All]
    } else {
        vec![scope, LockScope::All]
    }
}

/// The first parameter of [`reserve_rows_sql`]'s scopes.
const RESERVE_FIRST: usize = 7;

/// The reservation of `n` scopes' rows ([`Store::reserve_attempt`]): `$1` the person, `$2`
/// now, `$3`/`$4` the start of the scope's and of `all`'s window, `$5`/`$6` their limits,
/// `$7…` the scopes. All or nothing: no row is written while any of them refuses (locked, or
/// out of tries in its window), so a refused attempt is counted nowhere, not even for the
/// moment until it would be taken back. The conflict's `WHERE` checks the same again on the
/// row as it is when written: a concurrent attempt (PostgreSQL) may have counted since the
/// `NOT EXISTS` read it. `guard`, when not empty, is one more condition (`AND …`) every row
/// must meet to be written. Returns the scopes counted.
fn reserve_rows_sql(n: usize, guard: &str) -> String {
    let values: Vec<String> = (0..n)
        .map(|i| format!("($1, ${}, $2, 1, 0)", i + RESERVE_FIRST))
        .collect();
    format!(
        "INSERT INTO prp_failure (person_uid, scope, window_start, failures, locked_until)
         SELECT * FROM (VALUES {}) AS v
         WHERE NOT EXISTS (
           SELECT 1 FROM prp_failure f
           WHERE f.person_uid = $1 AND f.scope IN ({})
             AND (f.locked_until > $2
                  OR (f.window_start > CASE WHEN f.scope = 'all' THEN $4 ELSE $3 END
                      AND NOT (f.locked_until > 0 AND f.locked_until <= $2)
                      AND f.failures >= CASE WHEN f.scope = 'all' THEN $6 ELSE $5 END)))
         {guard}
         ON CONFLICT (person_uid, scope) DO UPDATE SET
           failures = CASE WHEN prp_failure.window_start <= CASE WHEN prp_failure.scope = 'all' THEN $4 ELSE $3 END
                             OR (prp_failure.locked_until > 0 AND prp_failure.locked_until <= $2)
                           THEN 1 ELSE prp_failure.failures + 1 END,
           window_start = CASE WHEN prp_failure.window_start <= CASE WHEN prp_failure.scope = 'all' THEN $4 ELSE $3 END
                                 OR (prp_failure.locked_until > 0 AND prp_failure.locked_until <= $2)
                               THEN $2 ELSE prp_failure.window_start END,
           locked_until = CASE WHEN prp_failure.locked_until <= $2 THEN 0 ELSE prp_failure.locked_until END
         WHERE prp_failure.locked_until <= $2
           AND (prp_failure.window_start <= CASE WHEN prp_failure.scope = 'all' THEN $4 ELSE $3 END
                OR (prp_failure.locked_until > 0 AND prp_failure.locked_until <= $2)
                OR prp_failure.failures < CASE WHEN prp_failure.scope = 'all' THEN $6 ELSE $5 END)
         RETURNING scope",
        values.join(", "),
        placeholders(RESERVE_FIRST, n)
    )
}

/// Splits the rows of a call that reads beside a reservation: the scopes the reservation
/// counted (its rows: `scope` alone on SQLite, with `NULL` in the read's columns on
/// PostgreSQL) and the read's rows (those whose column `marker` holds a value).
fn split_reserved(
    rows: Vec<sqlx::any::AnyRow>,
    marker: &str,
) -> Result<(Vec<String>, Vec<sqlx::any::AnyRow>), StoreError> {
    use sqlx::ValueRef;
    let mut counted = Vec::new();
    let mut read = Vec::new();
    for r in rows {
        let is_read = r.try_get_raw(marker).is_ok_and(|v| !v.is_null());
        if is_read {
            read.push(r);
        } else {
            counted.push(r.try_get::<String, _>("scope")?);
        }
    }
    Ok((counted, read))
}

/// Whether any of `guards` (a counter and its limit) read `failures` (in the same order) at or
/// over its limit.
pub fn any_over(guards: &[(Counter<'_>, i64)], failures: &[i64]) -> bool {
    guards
        .iter()
        .zip(failures)
        .any(|((_, limit), f)| f >= limit)
}

/// `$first, $first+1, …`: `n` placeholders.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a right secret does to the person's counters: with the attempt counted against the
/// person, the method's counter starts afresh and the attempt is taken back from `all`
/// ([`Store::settle_success`]); let through on the person's device or a paid proof of work,
/// the method's counter and lock are cleared ([`Store::clear_failures`]). A login defers it
/// to its grant (`login::defer_settlement`), which writes it with the name's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub person_uid: String,
    pub scope: LockScope,
    /// The attempt was counted against the person.
    pub counted: bool,
}

impl Settlement {
    /// The settlement's statement with its parameters from `$first` (SQLite, where one
    /// statement writes every row of a person; see [`Store::row_batches`]), and its
    /// parameters in order.
    pub(super) fn sqlite_statement(&self, first: usize) -> (String, Vec<&'static str>) {
        if self.counted {
            let scopes = both(self.scope);
            let mut names = vec![self.scope.name()];
            names.extend(scopes.iter().map(|s| s.name()));
            (settle_success_sql(first, scopes.len()), names)
        } else {
            (clear_failures_sql(first), vec![self.scope.name()])
        }
    }
}

/// The statement of [`Store::clear_failures`]: `$first` the person, `$first+1` the scope.
fn clear_failures_sql(first: usize) -> String {
    format!(
        "DELETE FROM prp_failure WHERE person_uid = ${first} AND scope = ${}",
        first + 1
    )
}

/// The statement of [`Store::settle_success`] for `n` scopes: `$first` the person, `$first+1`
/// the scope that starts afresh, then the `n` scopes' names. The scope's row is left with no
/// failures, no lock and a window that ended long ago, which every rule reads exactly as no
/// row at all: the next attempt starts a window of its own.
fn settle_success_sql(first: usize, n: usize) -> String {
    let scope = first + 1;
    format!(
        "UPDATE prp_failure SET
           failures = CASE WHEN scope = ${scope} THEN 0 WHEN failures > 0 THEN failures - 1 ELSE 0 END,
           locked_until = CASE WHEN scope = ${scope} THEN 0 ELSE locked_until END,
           window_start = CASE WHEN scope = ${scope} THEN 0 ELSE window_start END
         WHERE person_uid = ${first} AND scope IN ({})",
        placeholders(first + 2, n)
    )
}

/// Whether a counter appears twice.
fn has_repeats(counters: &[Counter<'_>]) -> bool {
    counters.iter().enumerate().any(|(i, c)| {
        counters[..i]
            .iter()
            .any(|d| d.subject == c.subject && d.scope == c.scope)
    })
}

/// Each counter's failures from rows of (subject, scope, failures); 0 for a counter no row has.
fn in_order(counters: &[Counter<'_>], rows: &[(String, String, i64)]) -> Vec<i64> {
    counters
        .iter()
        .map(|c| {
            rows.iter()
                .find(|(s, sc, _)| s == c.subject && sc == c.scope.name())
                .map_or(0, |r| r.2)
        })
        .collect()
}

/// Deletes the counters of a subject and of the subjects under it (`subject@…`) in a scope
/// (and `all`), or in every scope for `all`: `$1` the subject, `$2` its prefix as a `LIKE`
/// pattern ([`subject_prefix`]), `$3` the scope's name.
pub(super) const DELETE_SUBJECT: &str =
    "DELETE FROM prp_failure WHERE (person_uid = $1 OR person_uid LIKE $2 ESCAPE '\\')
       AND ($3 = 'all' OR scope IN ('all', $3))";

/// The `LIKE` pattern of the subjects under `subject` ([`DELETE_SUBJECT`]'s `$2`).
pub(super) fn subject_prefix(subject: &str) -> String {
    like_prefix(&format!("{subject}@"))
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
        let counted = self
            .upsert_failures(&[Counter {
                subject,
                scope,
                window,
            }])
            .await?;
        Ok(counted.first().copied().unwrap_or(0))
    }

    /// [`Self::count_failure`] for several counters (in one statement on SQLite, see
    /// [`Store::row_batches`]); the failures in each counter's window, in the order given.
    pub async fn count_failures(&self, counters: &[Counter<'_>]) -> Result<Vec<i64>, StoreError> {
        if counters.is_empty() {
            return Ok(Vec::new());
        }
        // One upsert can't touch a row twice.
        let batches = if has_repeats(counters) {
            counters.chunks(1).collect()
        } else {
            self.row_batches(counters)
        };
        let mut out = Vec::with_capacity(counters.len());
        for batch in batches {
            out.extend(self.upsert_failures(batch).await?);
        }
        Ok(out)
    }

    /// One upsert counting a failure on each of `counters` (no two the same).
    async fn upsert_failures(&self, counters: &[Counter<'_>]) -> Result<Vec<i64>, StoreError> {
        let now = self.now();
        // $1 is now; counter i binds subject, scope and the start of its window.
        let values: Vec<String> = (0..counters.len())
            .map(|i| format!("(${}, ${}, $1, 1, 0)", 3 * i + 2, 3 * i + 3))
            .collect();
        let window_start: String = (0..counters.len())
            .map(|i| {
                format!(
                    " WHEN prp_failure.person_uid = ${} AND prp_failure.scope = ${} THEN ${}",
                    3 * i + 2,
                    3 * i + 3,
                    3 * i + 4
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO prp_failure (person_uid, scope, window_start, failures, locked_until)
             VALUES {}
             ON CONFLICT (person_uid, scope) DO UPDATE SET
               failures = CASE WHEN prp_failure.window_start <= CASE{window_start} END THEN 1 ELSE prp_failure.failures + 1 END,
               window_start = CASE WHEN prp_failure.window_start <= CASE{window_start} END THEN $1 ELSE prp_failure.window_start END
             RETURNING person_uid, scope, failures",
            values.join(", ")
        );
        let mut query = sqlx::query_as::<_, (String, String, i64)>(&sql).bind(now);
        for c in counters {
            query = query
                .bind(c.subject)
                .bind(c.scope.name())
                .bind(now - c.window);
        }
        let rows = query.fetch_all(self.db()).await?;
        Ok(in_order(counters, &rows))
    }

    /// The failures of `subject` in `scope` within the window (0 when none are counted).
    pub async fn failures(
        &self,
        subject: &str,
        scope: LockScope,
        window: i64,
    ) -> Result<i64, StoreError> {
        let n = self
            .failures_of(&[Counter {
                subject,
                scope,
                window,
            }])
            .await?;
        Ok(n.first().copied().unwrap_or(0))
    }

    /// [`Self::failures`] of several counters in one statement, in the order given.
    pub async fn failures_of(&self, counters: &[Counter<'_>]) -> Result<Vec<i64>, StoreError> {
        if counters.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let wanted: Vec<String> = (0..counters.len())
            .map(|i| {
                format!(
                    "(person_uid = ${} AND scope = ${} AND window_start > ${})",
                    3 * i + 1,
                    3 * i + 2,
                    3 * i + 3
                )
            })
            .collect();
        let sql = format!(
            "SELECT person_uid, scope, failures FROM prp_failure WHERE {}",
            wanted.join(" OR ")
        );
        let mut query = sqlx::query_as::<_, (String, String, i64)>(&sql);
        for c in counters {
            query = query
                .bind(c.subject)
                .bind(c.scope.name())
                .bind(now - c.window);
        }
        let rows = query.fetch_all(self.db()).await?;
        Ok(in_order(counters, &rows))
    }

    /// Clears every counter and lock of `subject` and of the subjects under it
    /// (`subject@…`), in `scope` (and `all`), or in every scope when `scope` is `All`.
    /// Returns how many were cleared.
    pub async fn clear_subject(&self, subject: &str, scope: LockScope) -> Result<u64, StoreError> {
        // Counted: the counters that held something (a settled success leaves an empty row).
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "{DELETE_SUBJECT} RETURNING CAST(CASE WHEN failures > 0 OR locked_until > $4 THEN 1 ELSE 0 END AS BIGINT)"
            )
        });
        let cleared: Vec<i64> = sqlx::query_scalar(&SQL)
            .bind(subject)
            .bind(subject_prefix(subject))
            .bind(scope.name())
            .bind(self.now())
            .fetch_all(self.db())
            .await?;
        Ok(cleared.iter().map(|&n| u64::try_from(n).unwrap_or(0)).sum())
    }

    /// Forgets failure counters that read as none: no lock in force, and a window that began
    /// longer ago than the longest window the policy allows, so that counting starts afresh
    /// whatever the policy is now. (Failures of names that don't exist would pile up
    /// otherwise.)
    pub async fn purge_stale_counters(&self) -> Result<u64, StoreError> {
        let now = self.now();
        let done =
            sqlx::query("DELETE FROM prp_failure WHERE locked_until <= $1 AND window_start <= $2")
                .bind(now)
                .bind(now - longest_window())
                .execute(self.db())
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
        .execute(self.db())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets spent challenges that have expired.
    pub async fn purge_spent_pow(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM prp_pow_spent WHERE expires_at <= $1")
            .bind(self.now())
            .execute(self.db())
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_window_is_the_largest_allowed() {
        assert_eq!(longest_window(), 10_080 * 60);
    }
}
