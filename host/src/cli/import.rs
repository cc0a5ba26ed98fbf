//! `prp-host import`: upsert persons or accounts from a CSV file (see `store::import` for the
//! rules). Prints what was added, changed and left unchanged; a malformed file writes nothing.

use prp_host::store::{read_import_file, ImportError, ImportReport, ImportTarget, Store};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum ImportCommand {
    /// Upsert rows of Person by UID_Person. The header row names the columns; UID_Person and
    /// CentralAccount are required.
    Persons {
        /// The CSV file (UTF-8, header row first).
        file: PathBuf,
        #[command(flatten)]
        options: ImportOptions,
    },
    /// Upsert rows of an account table (one-column primary key, UID_Person foreign key to
    /// Person) by its primary key.
    Accounts {
        /// The account table, e.g. ADSAccount.
        table: String,
        /// The CSV file (UTF-8, header row first).
        file: PathBuf,
        #[command(flatten)]
        options: ImportOptions,
    },
}

#[derive(clap::Args)]
pub struct ImportOptions {
    /// Do everything in a transaction and roll it back: report, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// List each added and changed row (with its line and the changed columns).
    #[arg(long)]
    verbose: bool,
}

pub async fn run(command: ImportCommand, store: &Store) -> anyhow::Result<ExitCode> {
    let (target, file, options) = match command {
        ImportCommand::Persons { file, options } => (ImportTarget::Persons, file, options),
        ImportCommand::Accounts {
            table,
            file,
            options,
        } => (ImportTarget::Accounts(table), file, options),
    };
    match import(store, &target, &file, options.dry_run).await {
        Ok(report) => {
            // Audited before anything is printed: output into a pipe that closes early must
            // not cost the record of what was written.
            if !report.dry_run && (!report.added.is_empty() || !report.changed.is_empty()) {
                let reason = format!(
                    "{} from {}: {}",
                    report.table,
                    file.display(),
                    report.summary()
                );
                super::audit_admin(store, "identity.imported", &reason).await?;
            }
            print_report(&report, options.verbose);
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (ImportError::Store(_) | ImportError::Read { .. })) => Err(e.into()),
        Err(e) => {
            eprintln!("prp-host: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn import(
    store: &Store,
    target: &ImportTarget,
    file: &Path,
    dry_run: bool,
) -> Result<ImportReport, ImportError> {
    let bytes = read_import_file(file)?;
    store.import_csv(target, &bytes, dry_run).await
}

fn print_report(report: &ImportReport, verbose: bool) {
    if verbose {
        for r in &report.added {
            println!("added    {} (line {})", r.key, r.line);
        }
        for r in &report.changed {
            println!(
                "changed  {} (line {}): {}",
                r.key,
                r.line,
                r.columns.join(", ")
            );
        }
    }
    if report.dry_run {
        println!(
            "{}: {} (dry run: rolled back, nothing was written)",
            report.table,
            report.summary()
        );
    } else {
        println!("{}: {}", report.table, report.summary());
    }
}
