//! The plugin report `prp-host plugins` prints, as text for people or JSON for scripts.

use super::loader::LoadReport;
use serde_json::json;
use std::io::Write;

pub fn print_text(report: &LoadReport, out: &mut impl Write) -> std::io::Result<()> {
    for p in &report.loaded {
        writeln!(
            out,
            "loaded    {} {} (ABI {}), provides {}: {}",
            p.name,
            p.version,
            p.abi_version,
            if p.provides.is_empty() {
                "nothing".to_owned()
            } else {
                p.provides.join(", ")
            },
            p.path.display()
        )?;
    }
    for r in &report.rejected {
        writeln!(out, "rejected  {}: {}", r.path.display(), r.cause.summary())?;
    }
    for r in &report.unused_resolvers {
        writeln!(
            out,
            "unused    resolver \"{}\" ({}): {}",
            r.id, r.plugin, r.why
        )?;
    }
    if report.loaded.is_empty() && report.rejected.is_empty() {
        writeln!(
            out,
            "no plugin libraries configured (Plugins:Directory, Plugins:Files)"
        )?;
    }
    for name in &report.missing_required {
        writeln!(
            out,
            "REQUIRED  {name}: not loaded; the host will refuse to serve"
        )?;
    }
    Ok(())
}

pub fn print_json(report: &LoadReport, out: &mut impl Write) -> std::io::Result<()> {
    let value = json!({
        "loaded": report.loaded.iter().map(|p| json!({
            "name": p.name,
            "version": p.version,
            "abi_version": p.abi_version,
            "description": p.description,
            "provides": p.provides,
            "path": p.path,
            "sha256": p.sha256,
            "authenticators": p.authenticators.iter().map(|a| a.id().to_string()).collect::<Vec<_>>(),
            "resolvers": p.resolvers.iter().map(|r| r.id().to_string()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "rejected": report.rejected.iter().map(|r| json!({
            "path": r.path,
            "kind": r.cause.kind(),
            "reason": r.cause.summary(),
        })).collect::<Vec<_>>(),
        "missing_required": report.missing_required,
        "unused_resolvers": report.unused_resolvers.iter().map(|r| json!({
            "plugin": r.plugin,
            "id": r.id,
            "reason": r.why,
        })).collect::<Vec<_>>(),
    });
    writeln!(out, "{value}")
}
