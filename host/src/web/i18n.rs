//! The portal's text: one catalogue per language (`i18n/<lang>.txt`, compiled into the binary),
//! chosen by `Accept-Language`. English is the fallback for a key a catalogue lacks.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The languages the portal speaks, in order of preference when the browser has none.
pub(crate) const LANGS: [(&str, &str); 2] = [
    ("en", include_str!("i18n/en.txt")),
    ("de", include_str!("i18n/de.txt")),
];

type Catalogue = HashMap<&'static str, &'static str>;

fn parse(text: &'static str) -> Catalogue {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn catalogues() -> &'static [Catalogue] {
    static ALL: OnceLock<Vec<Catalogue>> = OnceLock::new();
    ALL.get_or_init(|| LANGS.iter().map(|(_, t)| parse(t)).collect())
}

/// A language's text.
#[derive(Clone, Copy)]
pub(crate) struct Text {
    index: usize,
}

impl Text {
    /// The best language for an `Accept-Language` header (`de-CH, en;q=0.8`).
    pub(crate) fn negotiate(accept: Option<&str>) -> Self {
        let mut wanted: Vec<(f32, &str)> = accept
            .unwrap_or_default()
            .split(',')
            .filter_map(|part| {
                let mut it = part.split(';');
                let tag = it.next()?.trim();
                let q = it
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((q, tag))
            })
            .filter(|(q, _)| *q > 0.0)
            .collect();
        // Stable: equal weights keep the header's order.
        wanted.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        for (_, tag) in wanted {
            let primary = tag.split('-').next().unwrap_or_default();
            if let Some(index) = LANGS
                .iter()
                .position(|(l, _)| l.eq_ignore_ascii_case(primary))
            {
                return Self { index };
            }
        }
        Self { index: 0 }
    }

    pub(crate) fn lang(self) -> &'static str {
        LANGS[self.index].0
    }

    /// The text for `key`; the key itself if no catalogue has it (a bug the tests catch).
    pub(crate) fn t(self, key: &'static str) -> &'static str {
        let all = catalogues();
        all[self.index]
            .get(key)
            .or_else(|| all[0].get(key))
            .copied()
            .unwrap_or(key)
    }

    /// The text for a key made at run time (a method's id), if a catalogue has it.
    pub(crate) fn dynamic(self, key: &str) -> Option<&'static str> {
        let all = catalogues();
        all[self.index]
            .get(key)
            .or_else(|| all[0].get(key))
            .copied()
    }

    /// [`Text::t`] with `{0}`, `{1}`, … replaced by `args`.
    pub(crate) fn f(self, key: &'static str, args: &[&dyn std::fmt::Display]) -> String {
        let mut out = self.t(key).to_owned();
        for (i, a) in args.iter().enumerate() {
            out = out.replace(&format!("{{{i}}}"), &a.to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_has_every_key() {
        let all = catalogues();
        for (i, (lang, _)) in LANGS.iter().enumerate() {
            for key in all[0].keys() {
                assert!(all[i].contains_key(key), "{lang} lacks {key}");
            }
            for key in all[i].keys() {
                assert!(
                    all[0].contains_key(key),
                    "{lang} has {key}, English lacks it"
                );
            }
        }
        assert!(all[0].len() > 50);
    }

    #[test]
    fn accept_language_picks_the_best_offered() {
        assert_eq!(Text::negotiate(None).lang(), "en");
        assert_eq!(Text::negotiate(Some("de-CH, en;q=0.8")).lang(), "de");
        assert_eq!(Text::negotiate(Some("fr, de;q=0.5, en;q=0.9")).lang(), "en");
        assert_eq!(Text::negotiate(Some("fr, DE;q=0.5")).lang(), "de");
        assert_eq!(Text::negotiate(Some("de;q=0, fr")).lang(), "en");
        let de = Text::negotiate(Some("de"));
        assert_eq!(de.t("nav.signout"), "Abmelden");
        assert_eq!(de.f("signin.step", &[&1, &2]), "Schritt 1 von 2");
    }
}
