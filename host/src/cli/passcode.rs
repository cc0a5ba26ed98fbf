//! `prp-host passcode new NAME`: the help desk issues a passcode.

use super::OutputFormat;
use prp_host::config::Settings;
use prp_host::store::Store;
use prp_host::{rfc3339, Service};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum PasscodeCommand {
    /// Issue a passcode for the person a login name resolves to, and print it once.
    New {
        /// A login name of the person.
        name: String,
        /// Who issues it, for the audit log (default: the OS user).
        #[arg(long)]
        issued_by: Option<String>,
        /// Text for people, or JSON for programs.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
}

pub async fn run(
    command: PasscodeCommand,
    settings: Settings,
    store: Store,
) -> anyhow::Result<ExitCode> {
    let PasscodeCommand::New {
        name,
        issued_by,
        format,
    } = command;
    let server = settings.host.server_name.clone();
    let service = Service::for_admin(settings, store.clone()).await?;
    let issuer = issued_by.unwrap_or_else(super::actor);
    let issued = service
        .issue_passcode_for_name(&name, &issuer)
        .await
        .map_err(anyhow::Error::msg)?;
    let usable = store.api_flag(&server, "EnablePasscodeLogin").await?;
    let (person, hours, until) = (&issued.person_uid, issued.hours, rfc3339(issued.expires_at));
    if format == OutputFormat::Json {
        let v = serde_json::json!({
            "person_uid": person,
            "passcode": (!issued.split).then_some(&issued.shown),
            "passcode_first_half": issued.split.then_some(&issued.shown),
            "split": issued.split,
            "valid_hours": hours,
            "expires_at": until,
            "usable": usable,
        });
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    if issued.split {
        println!("First half of the passcode for person {person} (shown once; the second half went to their manager; valid for {hours} hours, until {until}):\n\n  {}\n", issued.shown);
    } else {
        println!(
            "Passcode for person {person} (shown once, valid for {hours} hours, until {until}):\n\n  {}\n",
            issued.shown
        );
    }
    if !usable {
        println!("Note: EnablePasscodeLogin is off; the passcode can't be used until it is on.");
    }
    Ok(ExitCode::SUCCESS)
}
