//! Reads the XML `.config` format with quick-xml:
//! `<configuration><connectionStrings><add name=".." connectionString=".."/></connectionStrings>
//! <appSettings><add key="Section:Key" value=".."/></appSettings></configuration>`.

use super::schema;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::collections::{HashMap, HashSet};

/// A problem in the file, at a 1-based line and column.
#[derive(Debug, PartialEq, Eq)]
pub struct XmlProblem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Scope {
    Document,
    Configuration,
    ConnectionStrings,
    AppSettings,
    Add,
}

/// Flattened, validated entries in file order.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, XmlProblem> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let at = |offset: u64, message: String| {
        let (line, column) = line_column(text, offset as usize);
        XmlProblem {
            line,
            column,
            message,
        }
    };
    // Each open element: its scope, its name and where it starts (to name it if never closed).
    let mut stack: Vec<(Scope, String, u64)> = Vec::new();
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    let mut saw_root = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| at(reader.error_position(), format!("malformed XML: {e}")))?;
        let end = reader.buffer_position();
        let scope = stack.last().map_or(Scope::Document, |(s, _, _)| *s);
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let start = end.saturating_sub(e.len() as u64 + if is_empty { 3 } else { 2 });
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let next = match (scope, name.as_str()) {
                    (Scope::Document, "configuration") if !saw_root => {
                        saw_root = true;
                        Scope::Configuration
                    }
                    (Scope::Document, _) => {
                        return Err(at(start, format!("expected the root element <configuration>, found <{name}>")))
                    }
                    (Scope::Configuration, "connectionStrings") => Scope::ConnectionStrings,
                    (Scope::Configuration, "appSettings") => Scope::AppSettings,
                    (Scope::Configuration, _) => {
                        return Err(at(
                            start,
                            format!("unknown section <{name}> (known sections: <connectionStrings>, <appSettings>)"),
                        ))
                    }
                    (Scope::ConnectionStrings | Scope::AppSettings, "add") => {
                        let (key, value) = read_add(e, scope == Scope::ConnectionStrings)
                            .map_err(|m| at(start, m))?;
                        let key = schema::validate(&key, &value).map_err(|m| at(start, m))?;
                        if !seen.insert(key.to_ascii_lowercase()) {
                            return Err(at(start, format!("duplicate setting \"{key}\"")));
                        }
                        entries.push((key, value));
                        Scope::Add
                    }
                    (Scope::ConnectionStrings | Scope::AppSettings, _) => {
                        return Err(at(start, format!("unexpected <{name}>: only <add .../> belongs here")))
                    }
                    (Scope::Add, _) => return Err(at(start, format!("unexpected <{name}> inside <add>"))),
                };
                if !is_empty {
                    stack.push((next, name, start));
                }
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(ref t) if !t.iter().all(u8::is_ascii_whitespace) => {
                let start = end.saturating_sub(t.len() as u64);
                return Err(at(
                    start,
                    "unexpected text; settings go in attributes of <add .../>".to_owned(),
                ));
            }
            Event::CData(_) => return Err(at(end, "unexpected CDATA".to_owned())),
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(at(0, "no <configuration> element".to_owned()));
    }
    if let Some((_, name, start)) = stack.last() {
        let (line, _) = line_column(text, *start as usize);
        return Err(at(
            text.len() as u64,
            format!("end of file: <{name}> (line {line}) is never closed"),
        ));
    }
    Ok(entries)
}

/// Reads `<add name=".." connectionString=".."/>` (connection strings) or `<add key value/>`.
fn read_add(e: &BytesStart, connection_string: bool) -> Result<(String, String), String> {
    let mut attrs = HashMap::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("malformed attribute: {e}"))?;
        let name = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let value = attr
            .unescape_value()
            .map_err(|e| format!("attribute {name}: {e}"))?
            .into_owned();
        attrs.insert(name, value);
    }
    let (key_attr, value_attr, allowed): (&str, &str, &[&str]) = if connection_string {
        (
            "name",
            "connectionString",
            &["name", "connectionString", "providerName"],
        )
    } else {
        ("key", "value", &["key", "value"])
    };
    if let Some(extra) = attrs.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "unknown attribute \"{extra}\" on <add> (allowed: {})",
            allowed.join(", ")
        ));
    }
    let key = attrs
        .remove(key_attr)
        .ok_or_else(|| format!("<add> needs a {key_attr}=\"...\" attribute"))?;
    let value = attrs.remove(value_attr).ok_or_else(|| {
        format!("<add {key_attr}=\"{key}\"> needs a {value_attr}=\"...\" attribute")
    })?;
    if connection_string {
        Ok((format!("ConnectionStrings:{key}"), value))
    } else {
        Ok((key, value))
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_sections() {
        let xml = r#"<?xml version="1.0"?>
<configuration>
  <connectionStrings>
    <add name="QER\Person\PasswordResetAuthenticator\ApplicationToken" connectionString="a&amp;b"/>
  </connectionStrings>
  <appSettings><add key="Host:Listen" value="127.0.0.1:9"/></appSettings>
</configuration>"#;
        assert_eq!(
            parse(xml),
            Ok(vec![
                (
                    r"ConnectionStrings:QER\Person\PasswordResetAuthenticator\ApplicationToken"
                        .to_owned(),
                    "a&b".to_owned()
                ),
                ("Host:Listen".to_owned(), "127.0.0.1:9".to_owned()),
            ])
        );
    }

    #[test]
    fn errors_carry_positions() {
        let p = parse("<configuration>\n  <system.web/>\n</configuration>").unwrap_err();
        assert_eq!((p.line, p.column), (2, 3), "{p:?}");
        assert!(p.message.contains("unknown section <system.web>"));

        let p = parse("<configuration>\n<appSettings>\n<add key=\"Host:Listen\" value=\"127.0.0.1:1\"/>\n<add key=\"host:listen\" value=\"127.0.0.1:2\"/>\n</appSettings></configuration>").unwrap_err();
        assert_eq!(p.line, 4, "{p:?}");
        assert!(p.message.contains("duplicate setting"), "{p:?}");

        let p = parse("<configuration>\n<appSettings>\n</configuration>").unwrap_err();
        assert!(p.message.contains("malformed XML"), "{p:?}");

        let p = parse("<configuration>\n<appSettings>\n").unwrap_err();
        assert_eq!((p.line, p.column), (3, 1), "{p:?}");
        assert!(
            p.message.contains("<appSettings> (line 2) is never closed"),
            "{p:?}"
        );
        let p = parse("<configuration><appSettings/>").unwrap_err();
        assert!(
            p.message
                .contains("<configuration> (line 1) is never closed"),
            "{p:?}"
        );
    }
}
