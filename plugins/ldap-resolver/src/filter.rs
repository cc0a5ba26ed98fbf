//! Search filters (RFC 4515) and names: a login name only ever reaches a filter escaped, so
//! `*)(uid=*` is a value like any other and matches nothing.

/// The placeholder of the `Filter` template.
pub const LOGIN: &str = "{login}";

/// Escapes a value for an RFC 4515 filter: `*`, `(`, `)`, `\` and NUL become `\2a`, `\28`,
/// `\29`, `\5c` and `\00`. Everything else (UTF-8 included) is allowed as it is.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// The template with every `{login}` replaced by the escaped login name.
pub fn render(template: &str, login: &str) -> String {
    template.replace(LOGIN, &escape(login))
}

/// `(&<filter>(<attribute>=<escaped value>))`.
pub fn and_equals(filter: &str, attribute: &str, value: &str) -> String {
    format!("(&{filter}({attribute}={}))", escape(value))
}

/// Whether the filter parses (as the LDAP client will send it).
pub fn check_filter(filter: &str) -> Result<(), String> {
    let f = filter.trim();
    if !(f.starts_with('(') && f.ends_with(')')) || ldap3::parse_filter(f).is_err() {
        return Err(format!("`{filter}` is not a valid LDAP filter (RFC 4515)"));
    }
    Ok(())
}

/// A `Filter` template must name `{login}` and parse once it is filled in.
pub fn check_template(template: &str) -> Result<(), String> {
    if !template.contains(LOGIN) {
        return Err(format!(
            "`{template}` does not contain {LOGIN}, so every login name would find the same entries"
        ));
    }
    check_filter(&render(template, "x*)(y")).map_err(|_| {
        format!("`{template}` is not a valid LDAP filter (RFC 4515) once {LOGIN} is filled in")
    })
}

/// An attribute description without options: a name (a letter, then letters, digits and `-`)
/// or a numeric OID.
pub fn is_attribute(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => chars.all(|c| c.is_ascii_alphanumeric() || c == '-'),
        Some(c) if c.is_ascii_digit() => {
            !name.ends_with('.')
                && !name.contains("..")
                && name.chars().all(|c| c.is_ascii_digit() || c == '.')
        }
        _ => false,
    }
}

/// A DN's RDNs, in a form to compare: split at the commas that aren't escaped (`\,`), each
/// ASCII lower case without spaces around it or its `=`. (Enough for the DNs this plugin
/// compares, which the directory itself returned or the operator wrote.)
fn rdns(dn: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            ',' => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    out.iter()
        .map(|rdn| match rdn.split_once('=') {
            Some((k, v)) => format!("{}={}", k.trim(), v.trim()).to_ascii_lowercase(),
            None => rdn.trim().to_ascii_lowercase(),
        })
        .collect()
}

/// Whether `dn` is `base` or lies under it.
pub fn dn_within(dn: &str, base: &str) -> bool {
    let (dn, base) = (rdns(dn), rdns(base));
    if dn.iter().all(String::is_empty) || base.iter().all(String::is_empty) {
        return false;
    }
    dn.len() >= base.len() && dn[dn.len() - base.len()..] == base[..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_rfc_4515_requires() {
        assert_eq!(escape("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(escape("a\\b\0c"), "a\\5cb\\00c");
        assert_eq!(escape("Müller"), "Müller");
        assert_eq!(
            render("(&(objectClass=inetOrgPerson)(uid={login}))", "*"),
            "(&(objectClass=inetOrgPerson)(uid=\\2a))"
        );
    }

    #[test]
    fn an_escaped_injection_is_one_equality_match() {
        // Unescaped, this would be three filters (two of them presence matches).
        let f = render("(uid={login})", "*)(uid=*");
        assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
        assert!(!f.contains("=*"), "{f}");
        assert_eq!(f.matches('(').count(), 1, "{f}");
    }

    #[test]
    fn templates_and_filters_are_checked() {
        assert!(check_template("(uid={login})").is_ok());
        assert!(check_template("(|(uid={login})(mail={login}))").is_ok());
        let e = check_template("(uid=alice)").unwrap_err();
        assert!(e.contains("{login}"), "{e}");
        assert!(check_template("(uid={login}").is_err());
        assert!(check_filter("(objectClass=*)").is_ok());
        assert!(check_filter("objectClass=*)").is_err());
    }

    #[test]
    fn attribute_names() {
        for good in ["uid", "employeeNumber", "x-custom-1", "2.5.4.3"] {
            assert!(is_attribute(good), "{good}");
        }
        for bad in ["", "1uid", "uid;binary", "u id", "uid)", "2.5..4", "2.5."] {
            assert!(!is_attribute(bad), "{bad}");
        }
    }

    #[test]
    fn dns_within_the_base() {
        let base = "ou=people,dc=example,dc=org";
        assert!(dn_within("uid=a,ou=people,dc=example,dc=org", base));
        assert!(dn_within("UID=a, OU=People,DC=example,DC=org", base));
        assert!(dn_within(base, base));
        assert!(!dn_within("uid=a,ou=services,dc=example,dc=org", base));
        assert!(!dn_within("uid=a,xou=people,dc=example,dc=org", base));
        assert!(!dn_within("", base));
        // An escaped comma is part of its RDN: this entry sits under dc=example,dc=org only.
        assert!(!dn_within(r"cn=x\,ou=people,dc=example,dc=org", base));
        assert!(dn_within(
            r"cn=Doe\, Jane,ou=people,dc=example,dc=org",
            base
        ));
    }
}
