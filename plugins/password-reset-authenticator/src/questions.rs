//! Which questions to ask: the person's own, chosen by a keyed hash so the choice looks random
//! to outsiders yet stays the same until one of them is locked; or, for a name that can't log
//! in with questions, decoys chosen the same way from the name, so the two can't be told apart.

use prp_plugin_api::{HostServicesBox, PluginError, QuestionChallenge, QuestionInfo};

/// Plausible questions for decoys.
pub const DECOYS: &[&str] = &[
    "What was the name of your first pet?",
    "In which city were you born?",
    "What was the name of your first school?",
    "What is your mother's maiden name?",
    "What was the make of your first car?",
    "What was your childhood nickname?",
    "In which city did your parents meet?",
    "What is the name of your favourite teacher?",
    "What was the first concert you attended?",
    "What is the middle name of your oldest sibling?",
    "What street did you live on as a child?",
    "What was the name of your first employer?",
    "What is your favourite book?",
    "What was your first phone number?",
    "Where did you go on your first holiday abroad?",
    "What is the name of your best childhood friend?",
    "What was the name of your first stuffed animal?",
    "In what year did you finish school?",
    "What is your favourite film?",
    "What was the name of the hospital where you were born?",
];

fn digest(host: &HostServicesBox, purpose: &str, data: &str) -> Result<String, PluginError> {
    host.keyed_digest(purpose.into(), data.into())
        .into_result()
        .map(|s| s.into_string())
}

/// 32 hex digits as an id in the 8-4-4-4-12 form, like the ids of real questions.
fn as_id(hex: &str) -> String {
    let h = &hex[..32.min(hex.len())];
    if h.len() < 32 {
        return h.to_owned();
    }
    // The version (4) and variant (RFC 4122) bits of a real question's id, which is a random
    // version 4 UUID: otherwise those two digits alone would tell a decoy from a real question.
    let variant = match u8::from_str_radix(&h[16..17], 16) {
        Ok(n) => ["8", "9", "a", "b"][usize::from(n & 3)],
        Err(_) => "8",
    };
    format!(
        "{}-{}-4{}-{variant}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The `count` unlocked questions to ask, in a stable keyed order.
pub fn select(
    host: &HostServicesBox,
    person_uid: &str,
    questions: &[QuestionInfo],
    count: usize,
) -> Result<Vec<QuestionChallenge>, PluginError> {
    let mut keyed = Vec::new();
    for q in questions.iter().filter(|q| !q.locked) {
        keyed.push((
            digest(host, "question-order", &format!("{person_uid}:{}", q.id))?,
            q,
        ));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(keyed
        .into_iter()
        .take(count)
        .map(|(_, q)| QuestionChallenge {
            id: q.id.clone(),
            question: q.question.clone(),
        })
        .collect())
}

/// `count` decoy questions for a login name: the same ones every time for that name.
pub fn decoys(
    host: &HostServicesBox,
    login_name: &str,
    count: usize,
) -> Result<Vec<QuestionChallenge>, PluginError> {
    let name = prp_plugin_api::rules::fold_login_name(login_name);
    let mut order: Vec<(String, usize)> = Vec::with_capacity(DECOYS.len());
    for (i, _) in DECOYS.iter().enumerate() {
        order.push((digest(host, "decoy-order", &format!("{name}:{i}"))?, i));
    }
    order.sort();
    let mut out = Vec::new();
    for (_, i) in order.into_iter().take(count) {
        let id = as_id(&digest(host, "decoy-id", &format!("{name}:{i}"))?);
        out.push(QuestionChallenge {
            id: id.into(),
            question: DECOYS[i].into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::as_id;

    #[test]
    fn a_decoy_id_is_shaped_like_a_version_4_uuid() {
        for hex in [
            "0123456789abcdef0123456789abcdef",
            "ffffffffffffffffffffffffffffffff",
            "00000000000000000000000000000000",
        ] {
            let id = as_id(hex);
            let b = id.as_bytes();
            assert_eq!(id.len(), 36, "{id}");
            assert_eq!(b[14], b'4', "{id}");
            assert!(matches!(b[19], b'8' | b'9' | b'a' | b'b'), "{id}");
            assert_eq!(id.replace('-', "").len(), 32, "{id}");
        }
        assert_eq!(
            as_id("0123456789abcdef0123456789abcdef"),
            "01234567-89ab-4def-8123-456789abcdef"
        );
    }
}
