//! `prp-host flows list`: the flows in force, their steps and what each method asks for, and
//! what is wrong with the others.

use prp_host::config::Settings;
use prp_host::store::Store;
use prp_host::Service;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub(crate) enum FlowsCommand {
    /// The flows and their steps (the built-in single-step ones first), then any problem.
    List,
}

pub async fn run(c: FlowsCommand, settings: Settings, store: Store) -> anyhow::Result<ExitCode> {
    match c {
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
