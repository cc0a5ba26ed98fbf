//! ABI 1.1: the types of login flows made of steps, and of factor enrollment.
//!
//! An authenticator declares the methods it offers ([`MethodDescriptor`]): what each asks for
//! ([`FieldDescriptor`]), whether it identifies the person from a login name (a first step) or
//! continues an attempt whose person the host already knows ([`MethodRole`]), and how many
//! argon2 hashes one attempt costs. Operators compose flows of these methods; the host runs each
//! step, counts failures, pads every failure to the step's cost, and opens the session.

use abi_stable::std_types::{ROption, RString, RVec};
use abi_stable::StableAbi;

/// What kind of input a field asks for. Unknown kinds (from a newer ABI) are shown as text.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FieldKind(u8);

impl FieldKind {
    /// Plain text, shown as typed (a login name).
    pub const TEXT: Self = Self(1);
    /// A secret: masked, never logged, never echoed back.
    pub const SECRET: Self = Self(2);
    /// One of the field's `choices`.
    pub const CHOICE: Self = Self(3);

    pub const fn name(self) -> &'static str {
        match self.0 {
            2 => "secret",
            3 => "choice",
            _ => "text",
        }
    }
}

/// One field a method asks for.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct FieldDescriptor {
    /// The key of the value in a step's `values`, e.g. `code`.
    pub name: RString,
    pub kind: FieldKind,
    /// What the person is asked, e.g. `Code from your authenticator app`.
    pub label: RString,
    /// The allowed values of a `CHOICE` field; empty otherwise.
    pub choices: RVec<RString>,
}

impl FieldDescriptor {
    pub fn new(name: &str, kind: FieldKind, label: &str) -> Self {
        Self {
            name: name.into(),
            kind,
            label: label.into(),
            choices: RVec::new(),
        }
    }
}

/// Where in a flow a method can stand. Unknown roles (from a newer ABI) are never offered.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MethodRole(u8);

impl MethodRole {
    /// Finds the person from a login name: a flow's first step. The host calls
    /// [`crate::Authenticator::login`] with the accounts its resolvers found.
    pub const IDENTIFIES: Self = Self(1);
    /// Continues an attempt whose person is known: any later step. The host calls
    /// [`crate::Authenticator::step`] with the person and the factor data it keeps for them.
    pub const CONTINUES: Self = Self(2);

    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "identifies",
            2 => "continues",
            _ => "unknown",
        }
    }
}

/// A login method an authenticator offers.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct MethodDescriptor {
    /// Stable id, used in flows and the factor endpoints, e.g. `totp`. Unique across plugins.
    pub id: RString,
    pub label: RString,
    pub fields: RVec<FieldDescriptor>,
    pub role: MethodRole,
    /// How many argon2 hashes one attempt costs at most. The host pads every attempt of a step
    /// to the highest cost among the step's methods, so failures cost the same everywhere.
    pub hashes: u32,
    /// Whether a person enrolls in it through [`crate::Authenticator::enroll`] and
    /// [`crate::Authenticator::confirm`] (the host then keeps the factor data for them).
    pub enrollable: bool,
}

/// A named value a person typed into a field. `Debug` never shows the value.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct FieldValue {
    pub name: RString,
    pub value: RString,
}

impl FieldValue {
    pub fn new(name: &str, value: &str) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl std::fmt::Debug for FieldValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldValue")
            .field("name", &self.name.as_str())
            .field("value", &"***")
            .finish()
    }
}

/// The value named `name` among `values`, if any.
pub fn field_value<'a>(values: &'a [FieldValue], name: &str) -> Option<&'a str> {
    values
        .iter()
        .find(|v| v.name.as_str() == name)
        .map(|v| v.value.as_str())
}

/// A step of an attempt whose person is known (a `CONTINUES` method).
#[repr(C)]
#[derive(StableAbi, Clone)]
pub struct StepRequest {
    pub method: RString,
    pub person_uid: RString,
    pub values: RVec<FieldValue>,
    /// The person's confirmed factor data for this method, decrypted by the host; `None` when
    /// they have not enrolled.
    pub factor_data: ROption<RString>,
    /// The host's clock, in Unix seconds, for time-based factors.
    pub now: i64,
}

impl std::fmt::Debug for StepRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepRequest")
            .field("method", &self.method.as_str())
            .field("person_uid", &self.person_uid.as_str())
            .field("values", &self.values)
            .field("factor_data", &self.factor_data.as_ref().map(|_| "***"))
            .field("now", &self.now)
            .finish()
    }
}

/// An authenticator's decision on a step, or on an enrollment's confirmation.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct StepOutcome {
    pub passed: bool,
    /// For the audit log only: every failure looks the same to the client.
    pub reason: RString,
    /// A counter this success used up (a TOTP time step): the host accepts the step only if
    /// the counter is greater than the last one it accepted for the person and method, in one
    /// atomic statement shared by every server, so a code is accepted once.
    pub use_once: ROption<i64>,
}

impl StepOutcome {
    pub fn fail(reason: impl Into<String>) -> Self {
        Self {
            passed: false,
            reason: RString::from(reason.into()),
            use_once: ROption::RNone,
        }
    }
    pub fn pass(reason: impl Into<String>, use_once: Option<i64>) -> Self {
        Self {
            passed: true,
            reason: RString::from(reason.into()),
            use_once: use_once.into(),
        }
    }
}

/// What an enrollment hands back: the data the host keeps (encrypted) for the person until it
/// is confirmed, and what the person is shown once (e.g. an `otpauth://` URI and the secret).
#[repr(C)]
#[derive(StableAbi, Clone)]
pub struct Enrollment {
    pub factor_data: RString,
    pub shown: RVec<FieldValue>,
    /// The fields [`crate::Authenticator::confirm`] asks for.
    pub confirm_fields: RVec<FieldDescriptor>,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment")
            .field("factor_data", &"***")
            .field("shown", &self.shown)
            .field("confirm_fields", &self.confirm_fields)
            .finish()
    }
}

/// The three methods of ABI 1.0, which every authenticator built against it offers through
/// [`crate::Authenticator::login`]: what the host assumes of a plugin without `methods`.
pub fn classic_methods() -> Vec<MethodDescriptor> {
    let method = |id: &str, label: &str, fields: Vec<FieldDescriptor>| MethodDescriptor {
        id: id.into(),
        label: label.into(),
        fields: fields.into(),
        role: MethodRole::IDENTIFIES,
        hashes: 1,
        enrollable: false,
    };
    // The login name is given when the attempt starts. A questions step's values are the
    // answers, each named by its question's id (`POST /api/login/challenge` lists them).
    vec![
        method(
            "password",
            "Password",
            vec![FieldDescriptor::new(
                "password",
                FieldKind::SECRET,
                "Password",
            )],
        ),
        method(
            "passcode",
            "Passcode",
            vec![FieldDescriptor::new(
                "passcode",
                FieldKind::SECRET,
                "Passcode",
            )],
        ),
        method(
            "questions",
            "Password questions",
            vec![FieldDescriptor::new(
                "*",
                FieldKind::SECRET,
                "The answer to each question, named by the question's id",
            )],
        ),
    ]
}
