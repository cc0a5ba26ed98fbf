//! `prp-host flows list`: the flows in force, their steps and what each method asks for, and
//! what is wrong with the others; `flows remove-factor`: the help desk removes a lost factor.

use prp_host::config::Settings;
use prp_host::store::Store;
use prp_host::Service;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub(crate) enum FlowsCommand {
    /// The flows and their steps (the built-in single-step ones first), then any problem.
    List,
    /// Removes a person's factor (they lost their authenticator app): audited, and the person
    /// is told. Until they enroll again, their full sessions ask for no factor.
    RemoveFactor {
        /// A login name of the person (as they log in with it)
        name: String,
        /// The factor's method, e.g. totp
        method: String,
    },
}

pub async fn run(c: FlowsCommand, settings: Settings, store: Store) -> anyhow::Result<ExitCode> {
    match c {
        FlowsCommand::RemoveFactor { name, method } => {
            let service = Service::for_admin(settings, store).await?;
            let method = method.to_ascii_lowercase();
            let person = service
                .remove_factor_of_name(&name, &method, &super::actor())
                .await
                .map_err(anyhow::Error::msg)?;
            println!("person {person}: factor {method} removed (through login name \"{name}\"); they were told");
            Ok(ExitCode::SUCCESS)
        }
        FlowsCommand::List => {
            let service = Service::for_admin(settings, store).await?;
            let set = prp_host::flows::flow_set_of(&service).await?;
            for flow in &set.flows {
                let steps = flow
                    .steps
                    .iter()
                    .map(|s| s.join("|"))
                    .collect::<Vec<_>>()
                    .join(" then ");
                let origin = if flow.builtin {
                    "built-in"
                } else {
                    "configured"
                };
                println!(
                    "{}\t{steps}\t{} session\t{origin}\t{}",
                    flow.id,
                    flow.session.name(),
                    flow.label
                );
            }
            for m in &set.catalog.methods {
                let fields = m
                    .descriptor
                    .fields
                    .iter()
                    .map(|f| format!("{} ({})", f.name, f.kind.name()))
                    .collect::<Vec<_>>()
                    .join(", ");
                println!(
                    "method {}\tplugin {}\t{}\t{} hash(es)\t{}",
                    m.id(),
                    m.plugin,
                    m.descriptor.role.name(),
                    m.descriptor.hashes,
                    fields
                );
            }
            for p in &set.problems {
                eprintln!("problem: {p}");
            }
            Ok(if set.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
