//! Throttling that an attacker can't turn against the person (see README, "Security model"):
//! client sources, device cookies, the proof of work asked of clients over a limit, and the
//! time floor every failed login is held to.
//!
//! Nothing here touches the database; the counters are in `store::lockout`, and the login
//! service (`login.rs`) decides with them.

use crate::api::PowChallenge;
use prp_plugin_api::rules::fold_login_name;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Server keys (in `prp_secret`, shared by every server) for each purpose.
pub const NAME_KEY: &str = "throttle:name";
pub const POW_KEY: &str = "throttle:pow";
pub const DEVICE_KEY: &str = "throttle:device";

/// How long a proof-of-work challenge may be answered.
pub const POW_LIFETIME: i64 = 300;
/// How long a device cookie is honoured, in seconds (180 days).
pub const DEVICE_LIFETIME: i64 = 180 * 24 * 3600;
/// The longest solution taken (a decimal counter).
const MAX_SOLUTION: usize = 32;

/// The client source attempts are counted under: the IPv4 /24 or the IPv6 /64 the address is
/// in (an IPv4-mapped IPv6 address counts as its IPv4 address).
pub fn source_of(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The key a login name's counters are kept under: a keyed digest of the name as resolvers
/// compare it (trimmed, then folded by [`fold_login_name`]), so the database never holds names
/// that don't exist, and every spelling that matches the same accounts counts together.
pub fn name_key(key: &str, login_name: &str) -> String {
    crate::security::keyed_digest(key, &fold_login_name(login_name.trim()))
}

fn sha256_hex(data: &str) -> String {
    hex::encode(Sha256::digest(data.as_bytes()))
}

/// Leading zero bits of SHA-256(`challenge` ":" `solution`).
pub fn work_bits(challenge: &str, solution: &str) -> u32 {
    let digest = Sha256::digest(format!("{challenge}:{solution}").as_bytes());
    let mut bits = 0;
    for b in digest {
        if b == 0 {
            bits += 8;
        } else {
            bits += b.leading_zeros();
            break;
        }
    }
    bits
}

/// A new challenge for attempts on the name with key `name`: a random nonce, its expiry and
/// difficulty, signed with the server key (so any server can check it without storing it).
pub fn issue_pow(key: &str, name: &str, bits: u32, now: i64) -> PowChallenge {
    let nonce = crate::security::random_token();
    let expires_at = now + POW_LIFETIME;
    let body = format!("{nonce}.{expires_at}.{bits}");
    let mac = crate::security::keyed_digest(key, &format!("{body}.{name}"));
    PowChallenge {
        challenge: format!("{body}.{mac}"),
        bits,
        expires_at,
    }
}

/// Why a solution is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowRefusal {
    Malformed,
    Forged,
    Expired,
    TooEasy,
    NotSolved,
}

/// Checks a solution in constant cost (one HMAC, one SHA-256): the challenge was issued by
/// a server of this portal for this name, hasn't expired, asks at least `min_bits`, and
/// `solution` solves it. Returns the nonce and its expiry, to be spent once.
pub fn check_pow(
    key: &str,
    name: &str,
    challenge: &str,
    solution: &str,
    min_bits: u32,
    now: i64,
) -> Result<(String, i64), PowRefusal> {
    if solution.is_empty()
        || solution.len() > MAX_SOLUTION
        || !solution.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(PowRefusal::Malformed);
    }
    let Some([nonce, expires, bits, mac]) = dot_parts(challenge) else {
        return Err(PowRefusal::Malformed);
    };
    let (Ok(expires_at), Ok(bits)) = (expires.parse::<i64>(), bits.parse::<u32>()) else {
        return Err(PowRefusal::Malformed);
    };
    let expected =
        crate::security::keyed_digest(key, &format!("{nonce}.{expires_at}.{bits}.{name}"));
    if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
        return Err(PowRefusal::Forged);
    }
    if expires_at <= now {
        return Err(PowRefusal::Expired);
    }
    if bits < min_bits {
        return Err(PowRefusal::TooEasy);
    }
    if work_bits(challenge, solution) < bits {
        return Err(PowRefusal::NotSolved);
    }
    Ok((sha256_hex(nonce), expires_at))
}

/// Solves a challenge (what a client does; bounded by `max_tries`).
pub fn solve_pow(challenge: &str, bits: u32, max_tries: u64) -> Option<String> {
    (0..max_tries)
        .map(|n| n.to_string())
        .find(|s| work_bits(challenge, s) >= bits)
}

/// The `N` dot-separated parts of a signed value, or `None` when it has another number.
fn dot_parts<const N: usize>(value: &str) -> Option<[&str; N]> {
    value.split('.').collect::<Vec<_>>().try_into().ok()
}

/// A device the person logged in from before: the device cookie names the person, the login
/// name they used (its keyed digest, [`name_key`]) and a random device id, signed with the
/// server key. It vouches for the client only for that name (OWASP's device cookies): a
/// cookie of one's own account must not lift the limits on everybody else's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub person_uid: String,
    /// The keyed digest of the login name the cookie was issued for.
    pub name: String,
    pub id: String,
}

/// A new device cookie value for `person_uid`, who logged in with the name whose keyed
/// digest is `name`: `person.name.id.issued.mac`.
pub fn device_token(key: &str, person_uid: &str, name: &str, now: i64) -> String {
    let id = crate::security::random_token();
    let body = format!("{}.{name}.{id}.{now}", hex::encode(person_uid.as_bytes()));
    let mac = crate::security::keyed_digest(key, &body);
    format!("{body}.{mac}")
}

/// The device a cookie value names, if it was signed by this portal and isn't too old.
pub fn device_from(key: &str, token: &str, now: i64) -> Option<Device> {
    if token.len() > 1024 {
        return None;
    }
    let (body, mac) = token.rsplit_once('.')?;
    let expected = crate::security::keyed_digest(key, body);
    if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
        return None;
    }
    let [person, name, id, issued] = dot_parts(body)?;
    let issued: i64 = issued.parse().ok()?;
    if issued + DEVICE_LIFETIME <= now {
        return None;
    }
    let person_uid = String::from_utf8(hex::decode(person).ok()?).ok()?;
    Some(Device {
        person_uid,
        name: name.to_owned(),
        id: id.to_owned(),
    })
}

/// What `prp-host unlock` cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlocked {
    pub person_uid: String,
    /// Failure counters and locks cleared (the person's, and the name's from every source).
    pub counters: u64,
    /// Locked questions unlocked.
    pub questions: u64,
}

/// Samples kept per kind of request for the floor.
const FLOOR_SAMPLES: usize = 128;
/// The floor: this share above the 95th percentile of recent failures' own durations.
const FLOOR_MARGIN: f64 = 1.15;
/// Never hold a failure longer than this.
const FLOOR_CAP: Duration = Duration::from_secs(3);

/// The time every failed login (and every question challenge) is held to: a little above
/// the 95th percentile of what the recent ones took by themselves, per number of hashes. The
/// slow paths (a real name with a live passcode, its counters) and the fast ones (an unknown
/// name) then answer after the same time, unless one runs longer than the floor.
#[derive(Default)]
pub struct FailureFloor {
    recent: Mutex<HashMap<u32, VecDeque<Duration>>>,
    /// Failures held so far (`prp_failures_held_total`).
    held: std::sync::atomic::AtomicU64,
}

impl FailureFloor {
    /// How many failures were held so far.
    pub fn held(&self) -> u64 {
        self.held.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records how long a failure of `kind` took by itself, and returns how long to wait
    /// before answering it. The kind is the number of hashes the request costs (password and
    /// passcode failures share one floor), 0 for question challenges.
    pub fn hold(&self, kind: u32, took: Duration) -> Duration {
        self.held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Ok(mut recent) = self.recent.lock() else {
            return Duration::ZERO;
        };
        let samples = recent.entry(kind).or_default();
        if samples.len() == FLOOR_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(took);
        let mut sorted: Vec<Duration> = samples.iter().copied().collect();
        sorted.sort();
        let p95 = sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)];
        let floor = p95.mul_f64(FLOOR_MARGIN).min(FLOOR_CAP);
        floor.saturating_sub(took)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_group_addresses() {
        let a = |s: &str| source_of(s.parse().unwrap());
        assert_eq!(a("192.0.2.17"), "192.0.2.0/24");
        assert_eq!(a("192.0.2.200"), a("192.0.2.1"));
        assert_ne!(a("192.0.3.1"), a("192.0.2.1"));
        assert_eq!(a("::ffff:192.0.2.5"), "192.0.2.0/24");
        assert_eq!(a("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(a("2001:db8:1:2::9"), a("2001:db8:1:2:ffff::1"));
    }

    #[test]
    fn a_challenge_is_solved_once_for_its_name_and_difficulty() {
        let c = issue_pow("k", "name", 6, 1000);
        let s = solve_pow(&c.challenge, 6, 1 << 16).unwrap();
        assert!(check_pow("k", "name", &c.challenge, &s, 6, 1001).is_ok());
        assert_eq!(
            check_pow("k", "other", &c.challenge, &s, 6, 1001),
            Err(PowRefusal::Forged)
        );
        assert_eq!(
            check_pow("k2", "name", &c.challenge, &s, 6, 1001),
            Err(PowRefusal::Forged)
        );
        assert_eq!(
            check_pow("k", "name", &c.challenge, &s, 7, 1001),
            Err(PowRefusal::TooEasy)
        );
        assert_eq!(
            check_pow("k", "name", &c.challenge, &s, 6, 1000 + POW_LIFETIME),
            Err(PowRefusal::Expired)
        );
        let wrong = (0..1000u32)
            .map(|n| n.to_string())
            .find(|x| work_bits(&c.challenge, x) < 6)
            .unwrap();
        assert_eq!(
            check_pow("k", "name", &c.challenge, &wrong, 6, 1001),
            Err(PowRefusal::NotSolved)
        );
        // A harder challenge can't be passed off as an easier one.
        let forged = c.challenge.replacen(".6.", ".1.", 1);
        assert_eq!(
            check_pow("k", "name", &forged, &s, 1, 1001),
            Err(PowRefusal::Forged)
        );
    }

    #[test]
    fn device_cookies_are_signed_and_expire() {
        let t = device_token("k", "person.1", "abc123", 100);
        let d = device_from("k", &t, 200).unwrap();
        assert_eq!(d.person_uid, "person.1");
        assert_eq!(d.name, "abc123");
        assert!(device_from("k2", &t, 200).is_none());
        assert!(device_from("k", &t, 100 + DEVICE_LIFETIME).is_none());
        let other = device_token("k", "person.2", "abc123", 100);
        let (body, _) = t.rsplit_once('.').unwrap();
        let (_, mac) = other.rsplit_once('.').unwrap();
        assert!(device_from("k", &format!("{body}.{mac}"), 200).is_none());
    }

    #[test]
    fn the_floor_holds_fast_failures_to_the_slow_ones() {
        let floor = FailureFloor::default();
        for _ in 0..50 {
            floor.hold(1, Duration::from_millis(100));
        }
        let wait = floor.hold(1, Duration::from_millis(10));
        assert!(wait >= Duration::from_millis(100), "{wait:?}");
        assert_eq!(floor.hold(1, Duration::from_secs(5)), Duration::ZERO);
    }
}
