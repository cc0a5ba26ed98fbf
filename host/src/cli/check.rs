//! `prp-host check`: every check, `ok`, `warn` or `FAILED`; exit 1 if any failed.

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
        };
        writeln!(out, "{tag}  {}: {}", line.name, line.detail)?;
    }
    let failed = lines.iter().filter(|l| l.status == Status::Failed).count();
    if failed > 0 {
        writeln!(out, "{failed} check(s) failed")?;
        return Ok(ExitCode::FAILURE);
    }
    writeln!(out, "all checks passed")?;
    Ok(ExitCode::SUCCESS)
}
