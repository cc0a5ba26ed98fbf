//! `prp-host check`: every check, `ok`, `warn` or `FAILED` (or `skip` when an earlier failure
//! is its cause); exit 1 if any failed.

use prp_host::app::{self, Status};
use prp_host::config::Environment;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config_path: &Path, env: &Environment) -> anyhow::Result<ExitCode> {
    let lines = app::run_checks(config_path, env).await;
    let mut out = std::io::stdout().lock();
    for line in &lines {
        let tag = match line.status {
            Status::Ok => "ok    ",
            Status::Warn => "warn  ",
            Status::Failed => "FAILED",
            Status::Skipped => "skip  ",
        };
        writeln!(out, "{tag}  {}: {}", line.name, line.detail)?;
    }
    let count = |status| lines.iter().filter(|l| l.status == status).count();
    let (failed, skipped) = (count(Status::Failed), count(Status::Skipped));
    if failed > 0 {
        match skipped {
            0 => writeln!(out, "{failed} check(s) failed")?,
            n => writeln!(out, "{failed} check(s) failed, {n} skipped")?,
        }
        return Ok(ExitCode::FAILURE);
    }
    writeln!(out, "all checks passed")?;
    Ok(ExitCode::SUCCESS)
}
