//! The types of a login, as they cross the boundary between host and authenticator.

use abi_stable::std_types::{ROption, RString, RVec};
use abi_stable::StableAbi;

use crate::resolver::ResolvedAccount;

/// How a person logs in.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct LoginMethod(u8);

impl LoginMethod {
    /// User name and the person's central password, or the matched account's own password.
    pub const PASSWORD: Self = Self(1);
    /// A one-time passcode from the person's manager or the help desk.
    pub const PASSCODE: Self = Self(2);
    /// Answers to the person's password questions.
    pub const QUESTIONS: Self = Self(3);

    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "password",
            2 => "passcode",
            3 => "questions",
            _ => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "password" => Some(Self::PASSWORD),
            "passcode" => Some(Self::PASSCODE),
            "questions" => Some(Self::QUESTIONS),
            _ => None,
        }
    }
}

/// The result of checking a secret through the host. Anything but `OK` is a denial.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SecretCheck(u8);

impl SecretCheck {
    pub const OK: Self = Self(1);
    pub const WRONG: Self = Self(2);
    /// The person is locked for this method; the secret was not checked.
    pub const LOCKED: Self = Self(3);
    /// Nothing to check against (no passcode issued, no password stored).
    pub const NONE: Self = Self(4);
    pub const EXPIRED: Self = Self(5);
    /// The passcode was right but another login consumed it first.
    pub const ALREADY_USED: Self = Self(6);
    /// Wrong, and the secret is now invalidated or locked.
    pub const WRONG_AND_INVALIDATED: Self = Self(7);
    /// A resolver that doesn't verify passwords itself.
    pub const UNSUPPORTED: Self = Self(8);

    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "ok",
            2 => "wrong",
            3 => "locked",
            4 => "none",
            5 => "expired",
            6 => "already used",
            7 => "wrong, now invalidated",
            8 => "unsupported",
            _ => "unknown",
        }
    }

    pub const fn is_ok(self) -> bool {
        self.0 == 1
    }

    /// `OK` when the secret matched, else `WRONG`.
    pub const fn matched(right: bool) -> Self {
        if right {
            Self::OK
        } else {
            Self::WRONG
        }
    }
}

/// What kind of session a successful login opens.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SessionGrant(u8);

impl SessionGrant {
    /// The full portal (user name and password).
    pub const FULL: Self = Self(1);
    /// Short-lived, own passwords only (passcode, questions). Unknown grants count as this.
    pub const RESET: Self = Self(2);

    pub const fn is_full(self) -> bool {
        self.0 == 1
    }
}

/// A question and the answer given to it.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct QuestionAnswer {
    pub question_id: RString,
    pub answer: RString,
}

impl std::fmt::Debug for QuestionAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuestionAnswer")
            .field("question_id", &self.question_id.as_str())
            .field("answer", &"***")
            .finish()
    }
}

/// A question to ask. Real and decoy questions look the same.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct QuestionChallenge {
    pub id: RString,
    pub question: RString,
}

/// A login attempt, with the accounts the host's resolvers found for the login name.
#[repr(C)]
#[derive(StableAbi, Clone)]
pub struct LoginRequest {
    pub method: LoginMethod,
    pub login_name: RString,
    /// The password or the passcode; empty for questions.
    pub secret: RString,
    pub answers: RVec<QuestionAnswer>,
    pub candidates: RVec<ResolvedAccount>,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("method", &self.method)
            .field("login_name", &self.login_name.as_str())
            .field("secret", &"***")
            .field("answers", &self.answers.len())
            .field("candidates", &self.candidates)
            .finish()
    }
}

/// The authenticator's decision. `reason` is for the audit log only: the client always gets
/// the same answer for every denial.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct LoginOutcome {
    pub granted: bool,
    pub person_uid: ROption<RString>,
    pub session: SessionGrant,
    pub reason: RString,
}

impl LoginOutcome {
    pub fn deny(person_uid: Option<&str>, reason: impl Into<String>) -> Self {
        Self {
            granted: false,
            person_uid: person_uid.map(RString::from).into(),
            session: SessionGrant::RESET,
            reason: RString::from(reason.into()),
        }
    }
    pub fn grant(person_uid: &str, session: SessionGrant, reason: impl Into<String>) -> Self {
        Self {
            granted: true,
            person_uid: ROption::RSome(RString::from(person_uid)),
            session,
            reason: RString::from(reason.into()),
        }
    }
}

/// A person, as the host reads them from the identity database.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PersonInfo {
    pub uid: RString,
    pub central_account: RString,
    pub first_name: RString,
    pub last_name: RString,
    pub manager_uid: ROption<RString>,
    pub inactive: bool,
}

/// A search of a target-system table by login name. The host checks every name against the
/// live schema before it runs anything.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct AccountQuery {
    pub table: RString,
    pub columns: RVec<RString>,
    pub disabled_by: RVec<RString>,
    pub enabled_by: RVec<RString>,
    pub login_name: RString,
}

/// A login-name column of a target-system table without an index the host's case-folded
/// search can use (ABI 1.1): see [`crate::HostServices::unindexed_login_columns`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct UnindexedColumn {
    /// `Table.Column`, as the live schema spells them.
    pub column: RString,
    /// The statement that adds an index the search can use, in the database's dialect.
    pub create_index: RString,
}

/// An account a search matched.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct AccountMatch {
    pub table: RString,
    pub account_uid: RString,
    pub person_uid: ROption<RString>,
    pub matched_column: RString,
    pub refused_by: ROption<RString>,
}
