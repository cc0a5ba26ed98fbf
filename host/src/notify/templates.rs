//! The messages, per language, in words a person understands: which account in which
//! system, when, and what to do if it wasn't them. No internal ids.

/// The languages messages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
}

impl Lang {
    /// A person's language from a value such as `de`, `de-AT`, `German` or `Deutsch`;
    /// `None` for a language there are no messages in.
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.trim().to_ascii_lowercase();
        let primary = v.split(['-', '_']).next().unwrap_or_default();
        match primary {
            "de" | "deu" | "ger" | "german" | "deutsch" => Some(Self::De),
            "en" | "eng" | "english" | "englisch" => Some(Self::En),
            _ => None,
        }
    }
}

/// One account a password change was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedAccount {
    /// The table or system (`Person` for the central account).
    pub system: String,
    pub name: String,
    pub central: bool,
}

/// What happened, with the facts the message needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PasswordChanged {
        accounts: Vec<ChangedAccount>,
    },
    QuestionChanged {
        unlocked: bool,
    },
    /// Logins by `method` (`password`, `passcode`, `questions` or `all`) were paused after
    /// repeated failures, for up to `minutes`.
    Lockout {
        method: String,
        minutes: i64,
    },
    /// A login factor (`method`, e.g. `totp`) was added to or removed from the account.
    FactorChanged {
        method: String,
        added: bool,
    },
    /// To the manager: the second half of a four-eyes passcode for `person`.
    PasscodeHalf {
        person: String,
        half: String,
        expires_at: i64,
    },
}

/// A subject and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

/// What the message says around the event: who reads it, when it happened, the help desk.
pub struct Context<'a> {
    pub lang: Lang,
    /// The recipient's name (first and last), or empty.
    pub recipient: &'a str,
    pub at: i64,
    /// How to reach the help desk, when configured.
    pub help_desk: Option<&'a str>,
}

const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const MONTHS_DE: [&str; 12] = [
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
];

/// A time for people, in UTC, followed by its RFC 3339 form: `30 November 2026, 06:28 UTC
/// (2026-11-30T06:28:17Z)`.
pub fn when(lang: Lang, unix_seconds: i64) -> String {
    let exact = crate::service::rfc3339(unix_seconds);
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(unix_seconds) else {
        return exact;
    };
    let month = usize::from(u8::from(t.month())).saturating_sub(1);
    let (d, y, h, m) = (t.day(), t.year(), t.hour(), t.minute());
    match lang {
        Lang::En => format!(
            "{d} {} {y}, {h:02}:{m:02} UTC ({exact})",
            MONTHS_EN.get(month).unwrap_or(&"")
        ),
        Lang::De => format!(
            "{d}. {} {y}, {h:02}:{m:02} Uhr UTC ({exact})",
            MONTHS_DE.get(month).unwrap_or(&"")
        ),
    }
}

fn greeting(c: &Context<'_>) -> String {
    match (c.lang, c.recipient.is_empty()) {
        (Lang::En, false) => format!("Hello {},", c.recipient),
        (Lang::En, true) => "Hello,".to_owned(),
        (Lang::De, false) => format!("Guten Tag {},", c.recipient),
        (Lang::De, true) => "Guten Tag,".to_owned(),
    }
}

fn help_desk(c: &Context<'_>) -> String {
    match (c.lang, c.help_desk) {
        (Lang::En, Some(h)) => format!("the help desk ({h})"),
        (Lang::En, None) => "the help desk".to_owned(),
        (Lang::De, Some(h)) => format!("den Helpdesk ({h})"),
        (Lang::De, None) => "den Helpdesk".to_owned(),
    }
}

/// A duration in whole minutes, or hours when it is a whole number of them.
fn minutes_words(lang: Lang, minutes: i64) -> String {
    let minutes = minutes.max(1);
    let (n, unit) = if minutes >= 60 && minutes % 60 == 0 {
        let h = minutes / 60;
        match lang {
            Lang::En => (h, if h == 1 { "hour" } else { "hours" }),
            Lang::De => (h, if h == 1 { "Stunde" } else { "Stunden" }),
        }
    } else {
        match lang {
            Lang::En => (minutes, if minutes == 1 { "minute" } else { "minutes" }),
            Lang::De => (minutes, if minutes == 1 { "Minute" } else { "Minuten" }),
        }
    };
    format!("{n} {unit}")
}

/// A factor's method id in words; an id the portal doesn't know is shown as it is.
fn factor_name(lang: Lang, method: &str) -> String {
    match (method, lang) {
        ("totp", Lang::En) => "authenticator app (TOTP)".into(),
        ("totp", Lang::De) => "Authenticator-App (TOTP)".into(),
        (other, _) => other.to_owned(),
    }
}

fn account_line(lang: Lang, a: &ChangedAccount) -> String {
    match (lang, a.central) {
        (Lang::En, true) => format!("  - your central account \"{}\"", a.name),
        (Lang::De, true) => format!("  - Ihr zentrales Konto \"{}\"", a.name),
        (Lang::En, false) => format!("  - the account \"{}\" in {}", a.name, a.system),
        (Lang::De, false) => format!("  - das Konto \"{}\" in {}", a.name, a.system),
    }
}

const SIGNATURE_EN: &str =
    "-- \nPassword Reset Portal (an automatic message; replies are not read)";
const SIGNATURE_DE: &str =
    "-- \nPassword Reset Portal (eine automatische Nachricht; Antworten werden nicht gelesen)";

/// The message for `event` in the context's language.
pub fn render(event: &Event, c: &Context<'_>) -> Rendered {
    let when = when(c.lang, c.at);
    let hello = greeting(c);
    let desk = help_desk(c);
    match (event, c.lang) {
        (Event::PasswordChanged { accounts }, Lang::En) => {
            let lines: Vec<String> = accounts.iter().map(|a| account_line(c.lang, a)).collect();
            Rendered {
                subject: "Your password was changed".into(),
                body: format!(
                    "{hello}\n\nthe password of {} was changed in the Password Reset Portal:\n\n{}\n\nWhen: {when}\n\nIf this was you, there is nothing to do.\nIf it wasn't you, contact {desk} at once: someone else may know how to log in as you.\n\n{SIGNATURE_EN}\n",
                    if accounts.len() == 1 { "this account" } else { "these accounts" },
                    lines.join("\n"),
                ),
            }
        }
        (Event::PasswordChanged { accounts }, Lang::De) => {
            let lines: Vec<String> = accounts.iter().map(|a| account_line(c.lang, a)).collect();
            Rendered {
                subject: "Ihr Passwort wurde geändert".into(),
                body: format!(
                    "{hello}\n\ndas Passwort {} wurde im Password Reset Portal geändert:\n\n{}\n\nWann: {when}\n\nWenn Sie das waren, ist nichts zu tun.\nWenn nicht, wenden Sie sich sofort an {desk}: jemand anderes kann sich womöglich als Sie anmelden.\n\n{SIGNATURE_DE}\n",
                    if accounts.len() == 1 { "dieses Kontos" } else { "dieser Konten" },
                    lines.join("\n"),
                ),
            }
        }
        (Event::QuestionChanged { unlocked }, Lang::En) => Rendered {
            subject: "Your password questions were changed".into(),
            body: format!(
                "{hello}\n\none of your password questions was {} in the Password Reset Portal.\n\nWhen: {when}\n\nIf this was you, there is nothing to do.\nIf it wasn't you, contact {desk} at once: someone else may be able to reset your password.\n\n{SIGNATURE_EN}\n",
                if *unlocked { "unlocked" } else { "replaced" },
            ),
        },
        (Event::QuestionChanged { unlocked }, Lang::De) => Rendered {
            subject: "Ihre Sicherheitsfragen wurden geändert".into(),
            body: format!(
                "{hello}\n\neine Ihrer Sicherheitsfragen wurde im Password Reset Portal {}.\n\nWann: {when}\n\nWenn Sie das waren, ist nichts zu tun.\nWenn nicht, wenden Sie sich sofort an {desk}: jemand anderes kann womöglich Ihr Passwort zurücksetzen.\n\n{SIGNATURE_DE}\n",
                if *unlocked { "entsperrt" } else { "ersetzt" },
            ),
        },
        (Event::Lockout { method, minutes }, Lang::En) => Rendered {
            subject: "Failed logins to the Password Reset Portal".into(),
            body: format!(
                "{hello}\n\nlogins to the Password Reset Portal with your {} were paused for up to {} after repeated failed attempts.\n\nWhen: {when}\n\nDevices you have logged in from before keep working, and so does a passcode from {desk}.\nIf these attempts weren't yours, someone may be guessing: tell {desk}.\n\n{SIGNATURE_EN}\n",
                match method.as_str() {
                    "password" => "password",
                    "passcode" => "passcode",
                    "questions" => "password questions",
                    "factor" => "second factor",
                    _ => "login methods",
                },
                minutes_words(Lang::En, *minutes),
            ),
        },
        (Event::Lockout { method, minutes }, Lang::De) => Rendered {
            subject: "Fehlgeschlagene Anmeldungen am Password Reset Portal".into(),
            body: format!(
                "{hello}\n\nAnmeldungen am Password Reset Portal {} wurden nach wiederholten Fehlversuchen für bis zu {} angehalten.\n\nWann: {when}\n\nGeräte, von denen Sie sich schon angemeldet haben, funktionieren weiter, ebenso ein Passcode vom Helpdesk.\nWenn diese Versuche nicht von Ihnen waren, versucht womöglich jemand zu raten: wenden Sie sich an {desk}.\n\n{SIGNATURE_DE}\n",
                match method.as_str() {
                    "password" => "mit Ihrem Passwort",
                    "passcode" => "mit einem Passcode",
                    "questions" => "mit Ihren Sicherheitsfragen",
                    "factor" => "mit Ihrem zweiten Faktor",
                    _ => "auf jedem Weg",
                },
                minutes_words(Lang::De, *minutes),
            ),
        },
        (Event::FactorChanged { method, added }, Lang::En) => Rendered {
            subject: if *added {
                "A login factor was added to your account".into()
            } else {
                "A login factor was removed from your account".into()
            },
            body: format!(
                "{hello}\n\nthe login factor \"{}\" was {} in the Password Reset Portal.\n\nWhen: {when}\n\nIf this was you, there is nothing to do.\nIf it wasn't you, contact {desk} at once: someone else may be able to log in as you.\n\n{SIGNATURE_EN}\n",
                factor_name(Lang::En, method),
                if *added { "added to your account" } else { "removed from your account" },
            ),
        },
        (Event::FactorChanged { method, added }, Lang::De) => Rendered {
            subject: if *added {
                "Ihrem Konto wurde ein Anmeldefaktor hinzugefügt".into()
            } else {
                "Von Ihrem Konto wurde ein Anmeldefaktor entfernt".into()
            },
            body: format!(
                "{hello}\n\nder Anmeldefaktor \"{}\" wurde im Password Reset Portal {}.\n\nWann: {when}\n\nWenn Sie das waren, ist nichts zu tun.\nWenn nicht, wenden Sie sich sofort an {desk}: jemand anderes kann sich womöglich als Sie anmelden.\n\n{SIGNATURE_DE}\n",
                factor_name(Lang::De, method),
                if *added { "Ihrem Konto hinzugefügt" } else { "von Ihrem Konto entfernt" },
            ),
        },
        (
            Event::PasscodeHalf {
                person,
                half,
                expires_at,
            },
            Lang::En,
        ) => Rendered {
            subject: format!("Second half of a passcode for {person}"),
            body: format!(
                "{hello}\n\na passcode was issued for {person} on {when}. It is split in two: whoever issued it gave {person} the first half; this is the second half:\n\n    {half}\n\nGive it to {person} yourself, in person or on the phone, once you are sure it is really them. They type both halves together. It can be used once, until {}.\n\nIf you don't know why {person} needs a passcode, don't pass it on and contact {desk}.\n\n{SIGNATURE_EN}\n",
                self::when(Lang::En, *expires_at),
            ),
        },
        (
            Event::PasscodeHalf {
                person,
                half,
                expires_at,
            },
            Lang::De,
        ) => Rendered {
            subject: format!("Zweite Hälfte eines Passcodes für {person}"),
            body: format!(
                "{hello}\n\nfür {person} wurde am {when} ein Passcode ausgestellt. Er ist zweigeteilt: wer ihn ausgestellt hat, hat {person} die erste Hälfte gegeben; dies ist die zweite:\n\n    {half}\n\nGeben Sie sie {person} selbst, persönlich oder am Telefon, wenn Sie sicher sind, dass es wirklich {person} ist. Beide Hälften werden zusammen eingegeben. Der Passcode gilt einmal, bis {}.\n\nWenn Sie nicht wissen, warum {person} einen Passcode braucht, geben Sie ihn nicht weiter und wenden Sie sich an {desk}.\n\n{SIGNATURE_DE}\n",
                self::when(Lang::De, *expires_at),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(lang: Lang) -> Context<'static> {
        Context {
            lang,
            recipient: "Alice Example",
            at: 1_796_020_097, // 2026-11-30T06:28:17Z
            help_desk: Some("+49 30 1234"),
        }
    }

    #[test]
    fn languages_are_recognised() {
        assert_eq!(Lang::parse("de-AT"), Some(Lang::De));
        assert_eq!(Lang::parse("Deutsch"), Some(Lang::De));
        assert_eq!(Lang::parse("en_GB"), Some(Lang::En));
        assert_eq!(Lang::parse("fr"), None);
    }

    #[test]
    fn times_are_for_people_and_exact() {
        assert_eq!(
            when(Lang::En, 1_796_020_097),
            "30 November 2026, 06:28 UTC (2026-11-30T06:28:17Z)"
        );
        assert_eq!(
            when(Lang::De, 1_796_020_097),
            "30. November 2026, 06:28 Uhr UTC (2026-11-30T06:28:17Z)"
        );
    }

    #[test]
    fn password_change_names_accounts_time_and_help_desk() {
        let e = Event::PasswordChanged {
            accounts: vec![
                ChangedAccount {
                    system: "Person".into(),
                    name: "alice".into(),
                    central: true,
                },
                ChangedAccount {
                    system: "ADSAccount".into(),
                    name: "Alice Example".into(),
                    central: false,
                },
            ],
        };
        let en = render(&e, &ctx(Lang::En));
        assert_eq!(en.subject, "Your password was changed");
        for want in [
            "Hello Alice Example,",
            "your central account \"alice\"",
            "the account \"Alice Example\" in ADSAccount",
            "30 November 2026, 06:28 UTC",
            "If it wasn't you, contact the help desk (+49 30 1234)",
        ] {
            assert!(en.body.contains(want), "{want} missing in {}", en.body);
        }
        let de = render(&e, &ctx(Lang::De));
        assert_eq!(de.subject, "Ihr Passwort wurde geändert");
        assert!(
            de.body.contains("Ihr zentrales Konto \"alice\""),
            "{}",
            de.body
        );
        assert!(
            de.body.contains("wenden Sie sich sofort an den Helpdesk"),
            "{}",
            de.body
        );
    }

    #[test]
    fn lockout_says_what_still_works_in_words() {
        let e = Event::Lockout {
            method: "password".into(),
            minutes: 60,
        };
        let en = render(&e, &ctx(Lang::En));
        assert_eq!(en.subject, "Failed logins to the Password Reset Portal");
        for want in [
            "with your password were paused for up to 1 hour",
            "30 November 2026, 06:28 UTC",
            "a passcode from the help desk (+49 30 1234)",
        ] {
            assert!(en.body.contains(want), "{want} missing in {}", en.body);
        }
        let de = render(
            &Event::Lockout {
                method: "questions".into(),
                minutes: 15,
            },
            &ctx(Lang::De),
        );
        assert!(
            de.body
                .contains("mit Ihren Sicherheitsfragen wurden nach wiederholten Fehlversuchen für bis zu 15 Minuten"),
            "{}",
            de.body
        );
    }

    #[test]
    fn factor_changes_name_the_factor() {
        let e = Event::FactorChanged {
            method: "totp".into(),
            added: true,
        };
        let en = render(&e, &ctx(Lang::En));
        assert_eq!(en.subject, "A login factor was added to your account");
        assert!(
            en.body
                .contains("\"authenticator app (TOTP)\" was added to your account"),
            "{}",
            en.body
        );
        let de = render(
            &Event::FactorChanged {
                method: "webauthn".into(),
                added: false,
            },
            &ctx(Lang::De),
        );
        assert!(
            de.body
                .contains("\"webauthn\" wurde im Password Reset Portal von Ihrem Konto entfernt"),
            "{}",
            de.body
        );
    }

    #[test]
    fn passcode_half_says_what_to_do() {
        let e = Event::PasscodeHalf {
            person: "Bob Example".into(),
            half: "ABCD-EFGH".into(),
            expires_at: 1_796_020_097 + 8 * 3600,
        };
        let r = render(&e, &ctx(Lang::En));
        assert!(r.body.contains("    ABCD-EFGH\n"), "{}", r.body);
        assert!(
            r.body.contains("until 30 November 2026, 14:28 UTC"),
            "{}",
            r.body
        );
    }
}
