//! Reads appsettings.json into flattened `Section:Key` entries. Duplicates, unknown settings and
//! bad values are reported while parsing, so serde_json adds the line and column to each error.

use super::schema;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Flattened, validated entries in file order: `(canonical key, value, line)`.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, serde_json::Error> {
    let mut out = Collector::default();
    let mut de = serde_json::Deserializer::from_str(text);
    Node {
        path: String::new(),
        out: &mut out,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(out.entries)
}

#[derive(Default)]
struct Collector {
    entries: Vec<(String, String)>,
    seen: HashSet<String>,
}

struct Node<'a> {
    path: String,
    out: &'a mut Collector,
}

impl Node<'_> {
    fn child(&self, segment: &str) -> String {
        if self.path.is_empty() {
            segment.to_owned()
        } else {
            format!("{}:{segment}", self.path)
        }
    }

    fn leaf<E: de::Error>(self, value: String) -> Result<(), E> {
        if self.path.is_empty() {
            return Err(E::custom("the file must hold a JSON object of sections"));
        }
        if !self.path.contains(':') {
            return Err(E::custom(format!(
                "section \"{}\" must be an object of settings",
                self.path
            )));
        }
        let key = schema::validate(&self.path, &value).map_err(E::custom)?;
        if !self.out.seen.insert(key.to_ascii_lowercase()) {
            return Err(E::custom(format!("duplicate setting \"{key}\"")));
        }
        self.out.entries.push((key, value));
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.path.starts_with("ConnectionStrings:") || self.path.matches(':').count() > 3 {
            return Err(de::Error::custom(format!(
                "\"{}\" must not be an object",
                self.path
            )));
        }
        let mut here = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !here.insert(key.to_ascii_lowercase()) {
                let full = self.child(&key);
                return Err(de::Error::custom(format!("duplicate setting \"{full}\"")));
            }
            if self.path.is_empty() && !schema::is_section(&key) {
                return Err(de::Error::custom(format!(
                    "unknown section \"{key}\" (known sections: {})",
                    schema::SECTIONS.join(", ")
                )));
            }
            let path = self.child(&key);
            map.next_value_seed(Node {
                path,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.path.is_empty() || !self.path.contains(':') {
            return Err(de::Error::custom("expected an object, found an array"));
        }
        let mut i = 0usize;
        loop {
            let path = self.child(&i.to_string());
            if seq
                .next_element_seed(Node {
                    path,
                    out: &mut *self.out,
                })?
                .is_none()
            {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.leaf(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<(), E> {
        self.leaf(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.leaf(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.leaf(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.leaf(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.leaf(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(format!(
            "\"{}\" is null; remove it or give it a value",
            self.path
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_objects_and_arrays() {
        let e = parse(r#"{"Host":{"Listen":"127.0.0.1:1"},"Plugins":{"Required":["a","b"],"CallTimeoutMs":5}}"#)
            .unwrap_or_default();
        assert_eq!(
            e,
            vec![
                ("Host:Listen".to_owned(), "127.0.0.1:1".to_owned()),
                ("Plugins:Required:0".to_owned(), "a".to_owned()),
                ("Plugins:Required:1".to_owned(), "b".to_owned()),
                ("Plugins:CallTimeoutMs".to_owned(), "5".to_owned()),
            ]
        );
    }

    #[test]
    fn duplicate_is_reported_with_position() {
        let err =
            parse("{\n \"Host\": {\"Listen\": \"127.0.0.1:1\",\n  \"listen\": \"127.0.0.1:2\"}}")
                .map(drop)
                .unwrap_err();
        assert_eq!(err.line(), 3, "{err}");
        assert!(
            err.to_string()
                .contains("duplicate setting \"Host:listen\""),
            "{err}"
        );
    }

    #[test]
    fn connection_string_must_be_scalar() {
        let err = parse(r#"{"ConnectionStrings":{"Database":{"x":1}}}"#)
            .map(drop)
            .unwrap_err();
        assert!(err.to_string().contains("must not be an object"), "{err}");
    }
}
