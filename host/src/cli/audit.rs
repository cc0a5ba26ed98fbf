//! `prp-host audit`: the latest audit events.

use super::OutputFormat;
use prp_host::rfc3339;
use prp_host::store::Store;
use std::process::ExitCode;

pub async fn run(limit: i64, format: OutputFormat, store: &Store) -> anyhow::Result<ExitCode> {
    for e in store.audit_tail(limit).await? {
        match format {
            OutputFormat::Json => println!(
                "{}",
                serde_json::json!({
                    "id": e.id,
                    "at": rfc3339(e.at),
                    "event": e.event,
                    "outcome": e.outcome,
                    "method": e.method,
                    "login_name": e.login_name,
                    "person_uid": e.person_uid,
                    "reason": e.reason,
                    "actor": e.actor,
                })
            ),
            OutputFormat::Text => println!(
                "{} {} {} {} method={} name={} person={} reason={} actor={}",
                e.id,
                rfc3339(e.at),
                e.event,
                e.outcome,
                e.method.unwrap_or_default(),
                e.login_name.unwrap_or_default(),
                e.person_uid.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.actor.unwrap_or_default()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
