//! `prp-host unlock NAME [--method M]`: the help desk clears the locks of a person.

use prp_host::config::Settings;
use prp_host::store::{LockScope, Store};
use prp_host::Service;
use std::process::ExitCode;

/// Which locks to clear.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    Password,
    Passcode,
    Questions,
    /// A flow's later step (a second factor such as TOTP)
    Factor,
    All,
}

impl Method {
    fn scope(self) -> LockScope {
        match self {
            Self::Password => LockScope::Password,
            Self::Passcode => LockScope::Passcode,
            Self::Factor => LockScope::Factor,
            Self::Questions => LockScope::Questions,
            Self::All => LockScope::All,
        }
    }
}

pub async fn run(
    name: &str,
    method: Method,
    settings: Settings,
    store: Store,
) -> anyhow::Result<ExitCode> {
    let service = Service::for_admin(settings, store.clone()).await?;
    let scope = method.scope();
    let done = service
        .unlock_name(name, scope)
        .await
        .map_err(anyhow::Error::msg)?;
    let what = format!(
        "person {} unlocked for {} (through login name \"{name}\"): {} counters cleared, {} questions unlocked",
        done.person_uid,
        scope.name(),
        done.counters,
        done.questions
    );
    store
        .audit(&prp_host::store::AuditEvent {
            event: "lock.cleared",
            outcome: "success",
            method: Some(scope.name()),
            login_name: Some(name),
            person_uid: Some(&done.person_uid),
            reason: Some(&what),
            actor: Some(&super::actor()),
            ..Default::default()
        })
        .await?;
    println!("{what}");
    Ok(ExitCode::SUCCESS)
}
