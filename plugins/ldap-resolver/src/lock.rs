//! Whether a directory's lock attribute holds an entry locked now. ppolicy's
//! `pwdAccountLockedTime` is the GeneralizedTime the lock began (or `000001010000Z`, "locked
//! for good"); Active Directory's `lockoutTime` is a FILETIME (100 ns since 1601), `0` once
//! unlocked. A lock lasts the directory policy's lockout duration (`pwdLockoutDuration`, AD's
//! `lockoutDuration`), which the resolver is told as `LockoutDuration`: when it has run out,
//! the directory accepts the next bind (and clears the lock), so the portal must not refuse it.

use std::time::Duration;

/// ppolicy's value for a lock that only an administrator (or a reset) ends.
const LOCKED_FOR_GOOD: &str = "000001010000Z";
/// Seconds from 1601-01-01 (FILETIME's epoch) to 1970-01-01.
const FILETIME_TO_UNIX: i64 = 11_644_473_600;

/// Whether `value` holds the entry locked at `now` (Unix seconds), for locks that last
/// `duration` (`None`: until cleared). A value that can't be read holds the lock.
pub fn in_force(value: &str, duration: Option<Duration>, now: i64) -> bool {
    let value = value.trim();
    if value == "0" {
        return false;
    }
    if value == LOCKED_FOR_GOOD {
        return true;
    }
    let Some(duration) = duration else {
        return true;
    };
    let Some(since) = lock_began(value) else {
        return true;
    };
    let lasts = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
    now < since.saturating_add(lasts)
}

/// When the lock began, in Unix seconds: a FILETIME (digits only) or a GeneralizedTime in UTC
/// (`YYYYMMDDHHMMSS[.fraction]Z`, as ppolicy writes it).
fn lock_began(value: &str) -> Option<i64> {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // A FILETIME of this century has 18 digits; anything much shorter (a GeneralizedTime
        // without its `Z`, say) would read as a lock from centuries ago, which ran out: not
        // a FILETIME, so unreadable, so locked.
        if value.len() < 17 {
            return None;
        }
        let ticks: i64 = value.parse().ok()?;
        return Some(ticks / 10_000_000 - FILETIME_TO_UNIX);
    }
    let body = value.strip_suffix('Z')?;
    let whole = body.split(['.', ',']).next()?;
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| whole.get(r)?.parse::<u32>().ok();
    let year = i32::try_from(n(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(n(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(n(6..8)?).ok()?).ok()?;
    let at = time::Time::from_hms(
        u8::try_from(n(8..10)?).ok()?,
        u8::try_from(n(10..12)?).ok()?,
        // A leap second (60) is read as the next second's start.
        u8::try_from(n(12..14)?.min(59)).ok()?,
    )
    .ok()?;
    Some(
        time::PrimitiveDateTime::new(date, at)
            .assume_utc()
            .unix_timestamp(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Option<Duration> = Some(Duration::from_secs(3600));
    /// 2026-11-30 12:00:00 UTC.
    const NOON: i64 = 1_796_040_000;

    #[test]
    fn generalized_times_are_read_in_utc() {
        assert_eq!(lock_began("20261130120000Z"), Some(NOON));
        assert_eq!(lock_began("20261130120000.123Z"), Some(NOON));
        assert_eq!(lock_began("19700101000000Z"), Some(0));
        // AD's FILETIME for the same instant.
        let ticks = (NOON + FILETIME_TO_UNIX) * 10_000_000;
        assert_eq!(lock_began(&ticks.to_string()), Some(NOON));
        for bad in [
            "2026113012000Z",
            "20261130120000",
            "20261330120000Z",
            "x",
            "",
        ] {
            assert_eq!(lock_began(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_lock_lasts_its_duration_and_no_longer() {
        let began = "20261130120000Z";
        assert!(in_force(began, HOUR, NOON));
        assert!(in_force(began, HOUR, NOON + 3599));
        assert!(!in_force(began, HOUR, NOON + 3600));
        // Without a duration, or locked for good, or unreadable: locked whatever the time.
        assert!(in_force(began, None, NOON + 86_400 * 365));
        assert!(in_force(LOCKED_FOR_GOOD, HOUR, NOON + 86_400 * 365));
        assert!(in_force("yesterday", HOUR, NOON + 86_400 * 365));
        // AD: 0 is unlocked.
        assert!(!in_force("0", None, NOON));
        let ticks = (NOON + FILETIME_TO_UNIX) * 10_000_000;
        assert!(in_force(&ticks.to_string(), HOUR, NOON + 60));
        assert!(!in_force(&ticks.to_string(), HOUR, NOON + 3600));
    }
}
