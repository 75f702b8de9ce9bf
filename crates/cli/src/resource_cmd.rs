//! `jitgate resource check`: whether a resource's live target holds what jitgate promises.

use std::path::PathBuf;

use clap::Subcommand;
use jitgate_connectors::{Finding, Severity};
use jitgate_server::Config;
use jitgate_server::targets::{connector_for, role_specs};

use crate::client::Failure;
use crate::output::out;

#[derive(Subcommand)]
pub enum ResourceCommand {
    /// Check a resource's target with its admin login (offline: no server needed): does it
    /// refuse a wrong password for a jitgate login, and can a masked role's logins read a masked
    /// column around its masks? Exit 1 when a control does not hold.
    Check {
        /// The resource's name in the config.
        resource: String,
        /// The jitgate config file naming the resource.
        #[arg(long, env = "JITGATE_CONFIG")]
        config: PathBuf,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: ResourceCommand) -> anyhow::Result<()> {
    let ResourceCommand::Check {
        resource,
        config,
        json,
    } = command;
    let config = Config::load(&config)?;
    let r = config.resource(&resource).ok_or_else(|| {
        let known: Vec<&str> = config.resources.iter().map(|r| r.name.as_str()).collect();
        Failure::Usage(format!(
            "no resource {resource:?} in the config; its resources: {}",
            known.join(", ")
        ))
    })?;
    // Checking creates nothing that outlives it, so no installation id or masking key is needed.
    let connector = connector_for(&config, r, "check", None)?;
    let findings = connector.check(&role_specs(&config, r)).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        print(&resource, connector.kind(), &findings);
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    if errors > 0 {
        return Err(Failure::Refused(format!(
            "{errors} control(s) do not hold in the target of {resource}"
        ))
        .into());
    }
    Ok(())
}

fn print(resource: &str, kind: &str, findings: &[Finding]) {
    if findings.is_empty() {
        out!("{resource} ({kind}): ok: the target holds what jitgate promises");
        return;
    }
    for f in findings {
        let level = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out!("{resource}: {level}: {}: {}", f.topic, f.message);
    }
}
