//! `dash secret` and `dash config`: named values services get as files. A value goes to the
//! server once and is shown nowhere afterwards (`inspect` shows versions, sizes and users).

use std::io::Read;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Subcommand};
use dash_core::api::{SecretCreate, SecretInfo, SecretUpdate};
use dash_core::secret::{Kind, MAX_BYTES};
use hyper::Method;

use crate::client::Client;
use crate::output::{self, Table};
use crate::{encode, print_json};

/// What `dash secret ls` and `dash config ls` print; their help names them.
pub(crate) const LS_COLUMNS: [&str; 5] = ["NAME", "VERSION", "SIZE", "SERVICES", "UPDATED"];

/// `dash secret …`.
#[derive(Subcommand, Debug)]
pub enum SecretCmd {
    /// A new secret from a file (or standard input), sealed in the cluster's state; its value
    /// is shown nowhere afterwards.
    Create {
        /// 1 to 64 letters, digits, '.', '_', '-' (the file's name under /run/secrets).
        name: String,
        /// The file holding the value (at most 500 KiB); `-` or none: standard input.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// A new version: every service that lists it rolls to it (by its update policy); the old
    /// version goes once no replica uses it.
    Update(NewVersion),
    /// Secrets: name, version, size, services, updated (never a value).
    Ls,
    /// A secret's versions, size and the services that use it (never its value).
    Inspect(Named),
    /// Remove a secret (refused while a service lists it).
    Rm(Named),
    /// A new data key for the cluster: every secret and config is sealed again with it and
    /// the old key is dropped (admin).
    RotateKey,
}

/// `dash config …`.
#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// A new config from a file (or standard input).
    Create {
        /// 1 to 64 letters, digits, '.', '_', '-'.
        name: String,
        /// The file holding the value (at most 500 KiB); `-` or none: standard input.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// A new version: every service that lists it rolls to it.
    Update(NewVersion),
    /// Configs: name, version, size, services, updated.
    Ls,
    /// A config's versions, size and the services that use it.
    Inspect(Named),
    /// Remove a config (refused while a service lists it).
    Rm(Named),
}

// The arguments secrets and configs share; each command's own help is its variant's.

/// `update`'s arguments.
#[derive(Args, Debug)]
pub struct NewVersion {
    /// Its name (`ls` lists them).
    pub name: String,
    /// The file holding the new value; `-` or none: standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// `inspect`'s and `rm`'s argument.
#[derive(Args, Debug)]
pub struct Named {
    /// Its name (`ls` lists them).
    pub name: String,
}

/// The value, from `file` or standard input; refused over the size limit before it is sent.
fn read_value(file: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    let limit = MAX_BYTES as u64 + 1;
    match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => {
            std::fs::File::open(path)
                .map_err(|e| anyhow::anyhow!("-f {}: {e}", path.display()))?
                .take(limit)
                .read_to_end(&mut data)
                .map_err(|e| anyhow::anyhow!("-f {}: {e}", path.display()))?;
        }
        None => {
            std::io::stdin()
                .take(limit)
                .read_to_end(&mut data)
                .map_err(|e| anyhow::anyhow!("reading standard input: {e}"))?;
        }
    }
    anyhow::ensure!(
        data.len() <= MAX_BYTES,
        "the value is over the limit of {MAX_BYTES} bytes (500 KiB); keep large files in the \
         image or a volume"
    );
    Ok(data)
}

/// Runs `dash secret …`.
pub async fn run_secret(client: &Client, json: bool, cmd: SecretCmd) -> anyhow::Result<()> {
    let k = Kind::Secret;
    match cmd {
        SecretCmd::Create { name, file } => create(client, json, k, name, file).await,
        SecretCmd::Update(v) => update(client, json, k, v).await,
        SecretCmd::Ls => list(client, json, k).await,
        SecretCmd::Inspect(n) => inspect(client, k, &n.name).await,
        SecretCmd::Rm(n) => remove(client, json, k, &n.name).await,
        SecretCmd::RotateKey => {
            let id: u64 = client.post("/v1/data-keys", &()).await?;
            if json {
                print_json(&serde_json::json!({ "data_key": id }));
            } else {
                println!("data key {id} now seals every secret and config; the old key is gone");
            }
            Ok(())
        }
    }
}

/// Runs `dash config …`.
pub async fn run_config(client: &Client, json: bool, cmd: ConfigCmd) -> anyhow::Result<()> {
    let k = Kind::Config;
    match cmd {
        ConfigCmd::Create { name, file } => create(client, json, k, name, file).await,
        ConfigCmd::Update(v) => update(client, json, k, v).await,
        ConfigCmd::Ls => list(client, json, k).await,
        ConfigCmd::Inspect(n) => inspect(client, k, &n.name).await,
        ConfigCmd::Rm(n) => remove(client, json, k, &n.name).await,
    }
}

fn said(json: bool, info: &SecretInfo, what: &str) {
    if json {
        print_json(info);
    } else {
        println!(
            "{} {} {what} (version {}, {} bytes)",
            info.kind.as_str(),
            info.name,
            info.version,
            info.size_bytes
        );
    }
}

async fn create(
    client: &Client,
    json: bool,
    kind: Kind,
    name: String,
    file: Option<PathBuf>,
) -> anyhow::Result<()> {
    dash_core::secret::check_name(&name).map_err(|e| anyhow::anyhow!("name: {e}"))?;
    let data = BASE64.encode(read_value(file.as_ref())?);
    let info: SecretInfo = client
        .post(
            &format!("/v1/{}", kind.plural()),
            &SecretCreate { name, data },
        )
        .await?;
    said(json, &info, "created");
    Ok(())
}

async fn update(
    client: &Client,
    json: bool,
    kind: Kind,
    NewVersion { name, file }: NewVersion,
) -> anyhow::Result<()> {
    let data = BASE64.encode(read_value(file.as_ref())?);
    let info: SecretInfo = client
        .put(
            &format!("/v1/{}/{}", kind.plural(), encode(&name)),
            &SecretUpdate { data },
        )
        .await?;
    said(json, &info, "updated");
    if !json && !info.services.is_empty() {
        let names: Vec<&str> = info.services.iter().map(|u| u.service.as_str()).collect();
        println!("rolling to it: {}", names.join(", "));
    }
    Ok(())
}

async fn list(client: &Client, json: bool, kind: Kind) -> anyhow::Result<()> {
    let all: Vec<SecretInfo> = client.get(&format!("/v1/{}", kind.plural())).await?;
    if json {
        print_json(&all);
        return Ok(());
    }
    let mut t = Table::new(LS_COLUMNS);
    for s in all {
        let services: Vec<String> = s.services.iter().map(|u| u.service.clone()).collect();
        t.row([
            s.name,
            s.version.to_string(),
            s.size_bytes.to_string(),
            if services.is_empty() {
                "-".into()
            } else {
                services.join(",")
            },
            output::age_since(s.updated_ms),
        ]);
    }
    t.print();
    Ok(())
}

async fn inspect(client: &Client, kind: Kind, name: &str) -> anyhow::Result<()> {
    let info: SecretInfo = client
        .get(&format!("/v1/{}/{}", kind.plural(), encode(name)))
        .await?;
    print_json(&info);
    Ok(())
}

async fn remove(client: &Client, json: bool, kind: Kind, name: &str) -> anyhow::Result<()> {
    client
        .call(
            Method::DELETE,
            &format!("/v1/{}/{}", kind.plural(), encode(name)),
            None::<&()>,
        )
        .await?;
    if json {
        print_json(&serde_json::json!({ "removed": name }));
    } else {
        println!("{} {name} removed", kind.as_str());
    }
    Ok(())
}
