//! `dash apply`, `dash scale` and `dash service`: create, update, scale, list, explain, roll
//! back and remove services.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use dash_core::api::{ApplyAction, ApplyRequest, ApplyResponse, ScaleRequest, ServiceInfo};
use hyper::Method;

use crate::client::Client;
use crate::output::Table;
use crate::{encode, print_json};

/// `dash apply -f FILE [--dry-run]`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The service file (TOML), e.g. `demo/web.toml`.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Validate and print the plan without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// `dash scale SERVICE REPLICAS`.
#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// The service's name.
    pub service: String,
    /// How many replicas it should run.
    pub replicas: u32,
}

/// What `dash service ls` prints; its help names them.
pub(crate) const LS_COLUMNS: [&str; 6] =
    ["NAME", "IMAGE", "REPLICAS", "VERSION", "PORTS", "STATUS"];

/// `dash service …`.
#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    /// List services: name, image, replicas (ready/desired), version, ports, status.
    Ls,
    /// One service, as JSON: spec, version, replicas, update status.
    Inspect {
        /// The service's name.
        name: String,
    },
    /// Remove a service: its replicas stop, then it is gone.
    Rm {
        /// The service's name.
        name: String,
    },
    /// Back to the previous version's spec (the replica count stays), replaced like an update.
    Rollback {
        /// The service's name.
        name: String,
    },
    /// Why each replica is where it is, or why it is pending; how each node looks to it.
    Explain {
        /// The service's name.
        name: String,
    },
}

/// Runs `dash apply`.
pub async fn apply(client: &Client, json: bool, args: ApplyArgs) -> anyhow::Result<()> {
    let ApplyArgs { file, dry_run } = args;
    let content = std::fs::read_to_string(&file)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
    let files = named_files(&file, &content)?;
    let req = ApplyRequest {
        file_name: file.display().to_string(),
        content,
        dry_run,
        files,
    };
    let resp: ApplyResponse = client.post("/v1/services", &req).await?;
    if json {
        print_json(&resp);
    } else {
        print_apply(&resp);
    }
    Ok(())
}

/// The files a service file names (its seccomp profile), read beside it: sent with it, since
/// the masters cannot read the caller's disk. A file that does not parse names none (the
/// masters answer with its problems).
fn named_files(
    file: &std::path::Path,
    content: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut files = std::collections::BTreeMap::new();
    let Ok(spec) = dash_core::config_parser::parse_service(&file.display().to_string(), content)
    else {
        return Ok(files);
    };
    if let dash_core::spec::Seccomp::Profile { path, .. } = &spec.security.seccomp {
        let at = file
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(path);
        let meta = std::fs::metadata(&at).map_err(|e| {
            anyhow::anyhow!(
                "{}: security.seccomp = {path:?}: reading {}: {e}",
                file.display(),
                at.display()
            )
        })?;
        if meta.len() > dash_core::seccomp::MAX_PROFILE_BYTES as u64 {
            anyhow::bail!(
                "{}: security.seccomp = {path:?}: {} bytes, more than {} KiB: a profile lists system calls, not data",
                file.display(),
                meta.len(),
                dash_core::seccomp::MAX_PROFILE_BYTES / 1024
            );
        }
        let text = std::fs::read_to_string(&at).map_err(|e| {
            anyhow::anyhow!(
                "{}: security.seccomp = {path:?}: reading {}: {e}",
                file.display(),
                at.display()
            )
        })?;
        files.insert(path.clone(), text);
    }
    Ok(files)
}

/// Runs `dash scale`.
pub async fn scale(client: &Client, json: bool, args: ScaleArgs) -> anyhow::Result<()> {
    let ScaleArgs { service, replicas } = args;
    client
        .call(
            Method::POST,
            &format!("/v1/services/{}/scale", encode(&service)),
            Some(&ScaleRequest { replicas }),
        )
        .await?;
    if json {
        print_json(&serde_json::json!({"service": service, "replicas": replicas}))
    } else {
        println!("{service} scaled to {replicas}")
    }
    Ok(())
}

/// Runs `dash service …`.
pub async fn run(client: &Client, json: bool, cmd: ServiceCmd) -> anyhow::Result<()> {
    match cmd {
        ServiceCmd::Ls => {
            let services: Vec<ServiceInfo> = client.get("/v1/services").await?;
            if json {
                print_json(&services);
            } else {
                let mut t = Table::new(LS_COLUMNS);
                for s in services {
                    let ports: Vec<String> = s
                        .spec
                        .ports
                        .iter()
                        .map(|p| match p.published {
                            Some(pb) => format!("{pb}->{}/{}", p.container, p.protocol.as_str()),
                            None => format!("{}/{}", p.container, p.protocol.as_str()),
                        })
                        .collect();
                    t.row([
                        s.spec.name.to_string(),
                        s.spec.image.clone(),
                        match &s.spec.autoscale {
                            Some(a) => format!(
                                "{}/{} (auto {}-{})",
                                s.ready, s.spec.replicas, a.min, a.max
                            ),
                            None => format!("{}/{}", s.ready, s.spec.replicas),
                        },
                        s.version.to_string(),
                        ports.join(","),
                        s.update_status,
                    ]);
                }
                t.print();
            }
        }
        ServiceCmd::Inspect { name } => {
            let s: ServiceInfo = client
                .get(&format!("/v1/services/{}", encode(&name)))
                .await?;
            // The inspection is structured data either way.
            print_json(&s);
        }
        ServiceCmd::Explain { name } => {
            let e: dash_core::api::ServiceExplain = client
                .get(&format!("/v1/services/{}/explain", encode(&name)))
                .await?;
            if json {
                print_json(&e);
            } else {
                let mut t = Table::new(["REPLICA", "NODE", "STATE", "WHY"]);
                for r in &e.replicas {
                    t.row([
                        r.replica.clone(),
                        r.node.clone().unwrap_or_else(|| "-".into()),
                        r.state.as_str().into(),
                        r.why.clone(),
                    ]);
                }
                t.print();
                println!();
                let mut t = Table::new([
                    "NODE",
                    "STATE",
                    "RANK",
                    "OF SERVICE",
                    "LOAD",
                    "REPLICAS",
                    "REJECTED",
                ]);
                for n in &e.nodes {
                    t.row([
                        n.node.clone(),
                        n.state.as_str().into(),
                        if n.rank == 0 {
                            "-".into()
                        } else {
                            n.rank.to_string()
                        },
                        n.service_replicas.to_string(),
                        format!("{}%", n.load_percent),
                        n.total_replicas.to_string(),
                        n.rejected.clone().unwrap_or_else(|| "-".into()),
                    ]);
                }
                t.print();
            }
        }
        ServiceCmd::Rollback { name } => {
            let r: serde_json::Value = client
                .post(
                    &format!("/v1/services/{}/rollback", encode(&name)),
                    &serde_json::json!({}),
                )
                .await?;
            if json {
                print_json(&r);
            } else {
                println!("{name} rolled back (version {})", r["version"]);
            }
        }
        ServiceCmd::Rm { name } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/v1/services/{}", encode(&name)),
                    None::<&()>,
                )
                .await?;
            if json {
                print_json(&serde_json::json!({"removed": name}))
            } else {
                println!("removing {name}")
            }
        }
    }
    Ok(())
}

/// What `dash apply` did or, with --dry-run, would do: the verb, the changed fields, the plan.
fn print_apply(r: &ApplyResponse) {
    let verb = match (r.action, r.dry_run) {
        (ApplyAction::Created, false) => "created",
        (ApplyAction::Updated, false) => "updated",
        (ApplyAction::Unchanged, _) => "unchanged",
        (ApplyAction::Created, true) => "would create",
        (ApplyAction::Updated, true) => "would update",
    };
    println!("service {} {verb} (version {})", r.service, r.version);
    for c in &r.changes {
        println!("  ~ {c}");
    }
    for p in &r.plan {
        println!("  > {p}");
    }
}
