//! The TOTP authenticator plugin: a second step of a login flow, a code from an authenticator
//! app (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps, one step of clock skew either way).
//!
//! It shows what a platform team's authenticator looks like: it depends on the ABI crate alone,
//! never opens a database, and leaves to the host what the host does for every method. The host
//! keeps each person's secret (encrypted, handed to [`Authenticator::step`] as `factor_data`),
//! accepts each time step once per person across every server (`StepOutcome::use_once`), counts
//! failures towards the person's lock, pads failures, audits and opens the session.
//!
//! [`Authenticator::step`]: prp_plugin_api::Authenticator::step

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented
    )
)]
#![allow(non_local_definitions)]

pub mod crypto;

use prp_plugin_api::abi_stable::std_types::RVec;
use prp_plugin_api::{
    authenticator_box, field_value, CheckFinding, Enrollment, ErrorKind, FieldDescriptor,
    FieldKind, FieldValue, HostServicesBox, LoginOutcome, LoginRequest, MethodDescriptor,
    MethodRole, PluginError, PluginInstance, QuestionChallenge, ResolvedAccount, StepOutcome,
    StepRequest,
};
use std::io::Read;

/// The plugin's name, as operators list it in `Plugins:Required`.
pub const PLUGIN_NAME: &str = "totp-authenticator";
/// The method's id, in flows and in `/api/factors/totp/...`.
pub const METHOD: &str = "totp";
/// Seconds per time step.
pub const PERIOD: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Time steps of clock skew accepted either way.
pub const SKEW: i64 = 1;
/// The secret's length in bytes (160 bits, as RFC 4226 recommends).
pub const SECRET_BYTES: usize = 20;
/// The format of the factor data the host keeps: this prefix, then the secret in base32.
const DATA_PREFIX: &str = "totp-v1:";

/// The TOTP authenticator.
pub struct TotpAuthenticator {
    host: HostServicesBox,
}

impl TotpAuthenticator {
    pub fn new(host: HostServicesBox) -> Self {
        Self { host }
    }
}

/// The method as the host lists it.
pub fn descriptor() -> MethodDescriptor {
    MethodDescriptor {
        id: METHOD.into(),
        label: "Code from your authenticator app".into(),
        fields: RVec::from(vec![code_field()]),
        role: MethodRole::CONTINUES,
        // No argon2 hash: the secret must be readable again, so the host keeps it encrypted.
        hashes: 0,
        enrollable: true,
    }
}

fn code_field() -> FieldDescriptor {
    FieldDescriptor::new("code", FieldKind::SECRET, "6-digit code")
}

/// The secret in the factor data the host kept, or `None` when it is not ours or malformed.
pub fn secret_of(factor_data: &str) -> Option<Vec<u8>> {
    let key = crypto::base32_decode(factor_data.strip_prefix(DATA_PREFIX)?)?;
    (!key.is_empty()).then_some(key)
}

/// The factor data for a secret.
pub fn factor_data(secret: &[u8]) -> String {
    format!("{DATA_PREFIX}{}", crypto::base32_encode(secret))
}

/// Checks `code` against the secret at `now`, allowing [`SKEW`] steps either way: the time step
/// it matched, or `None`. Every candidate step is computed and compared, whichever matches.
pub fn check_code(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now_step = crypto::time_step(now, PERIOD).and_then(|s| i64::try_from(s).ok())?;
    let mut matched = None;
    for step in (now_step - SKEW)..=(now_step + SKEW) {
        let Ok(counter) = u64::try_from(step) else {
            continue;
        };
        let expected = crypto::hotp(secret, counter, DIGITS);
        if crypto::constant_time_eq(expected.as_bytes(), code.as_bytes()) && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

fn decide(factor_data: Option<&str>, values: &[FieldValue], now: i64) -> StepOutcome {
    let Some(secret) = factor_data.and_then(secret_of) else {
        return StepOutcome::fail("totp: not enrolled (or the stored secret is unreadable)");
    };
    let Some(code) = field_value(values, "code") else {
        return StepOutcome::fail("totp: no code given");
    };
    match check_code(&secret, code, now) {
        Some(step) => StepOutcome::pass("totp: code right", Some(step)),
        None => StepOutcome::fail("totp: wrong code"),
    }
}

/// Random bytes from the kernel; an error (never a weak secret) when they can't be read.
fn random_secret() -> Result<Vec<u8>, PluginError> {
    let mut secret = vec![0u8; SECRET_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .map_err(|e| {
            PluginError::new(
                ErrorKind::UNAVAILABLE,
                format!("cannot read random bytes: {e}"),
            )
        })?;
    Ok(secret)
}

/// Percent-encodes a URI component (RFC 3986 unreserved characters stay).
fn uri_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `otpauth://` URI an authenticator app reads (from a QR code or typed).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={PERIOD}",
        uri_component(issuer),
        uri_component(account),
        crypto::base32_encode(secret),
        uri_component(issuer),
    )
}

impl prp_plugin_api::AuthenticatorImpl for TotpAuthenticator {
    fn id(&self) -> String {
        METHOD.to_owned()
    }

    fn self_check(&self) -> Result<Vec<CheckFinding>, PluginError> {
        random_secret()?;
        Ok(Vec::new())
    }

    fn login(&self, request: &LoginRequest) -> Result<LoginOutcome, PluginError> {
        // Not a first step: a code says nothing about who is typing it.
        Ok(LoginOutcome::deny(
            None,
            format!(
                "totp never identifies a person (method {} asked of it)",
                request.method.name()
            ),
        ))
    }

    fn challenge(
        &self,
        _login_name: &str,
        _candidates: &[ResolvedAccount],
    ) -> Result<Vec<QuestionChallenge>, PluginError> {
        Ok(Vec::new())
    }

    fn explain(
        &self,
        _login_name: &str,
        _candidates: &[ResolvedAccount],
    ) -> Result<Vec<String>, PluginError> {
        Ok(vec![
            "totp: a later step for a person who has enrolled an authenticator app".to_owned(),
        ])
    }

    fn methods(&self) -> Result<Vec<MethodDescriptor>, PluginError> {
        Ok(vec![descriptor()])
    }

    fn step(&self, request: &StepRequest) -> Result<StepOutcome, PluginError> {
        if request.method.as_str() != METHOD {
            return Err(PluginError::new(
                ErrorKind::INVALID_INPUT,
                format!("no method \"{}\" here", request.method),
            ));
        }
        Ok(decide(
            request
                .factor_data
                .as_ref()
                .map(|d| d.as_str())
                .into_option(),
            request.values.as_slice(),
            request.now,
        ))
    }

    fn enroll(&self, method: &str, person_uid: &str) -> Result<Enrollment, PluginError> {
        if method != METHOD {
            return Err(PluginError::new(
                ErrorKind::INVALID_INPUT,
                format!("no method \"{method}\" here"),
            ));
        }
        let secret = random_secret()?;
        // The app shows the person's login name beside the code.
        let account = match self.host.person(person_uid.into()).into_result()? {
            prp_plugin_api::abi_stable::std_types::ROption::RSome(p)
                if !p.central_account.is_empty() =>
            {
                p.central_account.into_string()
            }
            _ => person_uid.to_owned(),
        };
        Ok(Enrollment {
            factor_data: factor_data(&secret).into(),
            shown: RVec::from(vec![
                FieldValue::new("secret", &crypto::base32_encode(&secret)),
                FieldValue::new("otpauth_uri", &otpauth_uri("prp", &account, &secret)),
            ]),
            confirm_fields: RVec::from(vec![code_field()]),
        })
    }

    fn confirm(
        &self,
        method: &str,
        _person_uid: &str,
        pending: &str,
        values: &[FieldValue],
        now: i64,
    ) -> Result<StepOutcome, PluginError> {
        if method != METHOD {
            return Err(PluginError::new(
                ErrorKind::INVALID_INPUT,
                format!("no method \"{method}\" here"),
            ));
        }
        Ok(decide(Some(pending), values, now))
    }
}

fn init(host: HostServicesBox) -> Result<PluginInstance, PluginError> {
    Ok(PluginInstance {
        authenticators: RVec::from(vec![authenticator_box(TotpAuthenticator::new(host))]),
        resolvers: RVec::new(),
    })
}

prp_plugin_api::export_plugin! {
    name: PLUGIN_NAME,
    version: env!("CARGO_PKG_VERSION"),
    description: "A code from an authenticator app (TOTP, RFC 6238), as a later login step",
    provides: prp_plugin_api::Capabilities::AUTHENTICATOR,
    init: init,
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn a_code_is_accepted_one_step_either_way_and_reports_its_step() {
        let now = 1_111_111_111; // step 37037037
        let code = crypto::totp(KEY, now, PERIOD, DIGITS).unwrap();
        assert_eq!(check_code(KEY, &code, now), Some(37_037_037));
        let previous = crypto::totp(KEY, now - 30, PERIOD, DIGITS).unwrap();
        assert_eq!(check_code(KEY, &previous, now), Some(37_037_036));
        let next = crypto::totp(KEY, now + 30, PERIOD, DIGITS).unwrap();
        assert_eq!(check_code(KEY, &format!(" {next} "), now), Some(37_037_038));
        let too_old = crypto::totp(KEY, now - 60, PERIOD, DIGITS).unwrap();
        assert_eq!(check_code(KEY, &too_old, now), None);
        assert_eq!(check_code(KEY, "12345", now), None);
        assert_eq!(check_code(KEY, "12345a", now), None);
    }

    #[test]
    fn six_digit_codes_are_the_rfc_6238_codes_truncated_to_six() {
        // RFC 6238's SHA-1 vectors are 8 digits; the same HMAC gives the last 6 of them.
        assert_eq!(crypto::totp(KEY, 59, 30, 6).as_deref(), Some("287082"));
        assert_eq!(
            crypto::totp(KEY, 1_234_567_890, 30, 6).as_deref(),
            Some("005924")
        );
    }

    #[test]
    fn a_step_needs_enrollment_and_a_code() {
        let data = factor_data(KEY);
        let now = 2_000_000_000;
        let code = crypto::totp(KEY, now, PERIOD, DIGITS).unwrap();
        let values = [FieldValue::new("code", &code)];
        assert!(decide(Some(&data), &values, now).passed);
        assert!(!decide(None, &values, now).passed);
        assert!(!decide(Some("other:ABC"), &values, now).passed);
        assert!(!decide(Some(&data), &[], now).passed);
        assert!(
            !decide(Some(&data), &[FieldValue::new("code", "000000")], now).passed
                || code == "000000"
        );
    }

    #[test]
    fn the_uri_carries_the_secret_and_the_parameters() {
        let uri = otpauth_uri("prp", "alice smith", b"foobar");
        assert_eq!(
            uri,
            "otpauth://totp/prp:alice%20smith?secret=MZXW6YTBOI&issuer=prp&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(
            secret_of(&factor_data(b"foobar")).as_deref(),
            Some(&b"foobar"[..])
        );
    }
}
