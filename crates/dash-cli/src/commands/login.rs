//! `dash login` and `dash context`: the clusters this user talks to (see `crate::context`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use dash_core::api::{LoginInfo, WhoAmI};
use dash_rpc::https::Trust;

use crate::client::{Client, Endpoint};
use crate::context::{self, Context, Entry};
use crate::output::Table;
use crate::print_json;

/// `dash login URL --token …`.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The admin API: `https://HOST:PORT` (several masters comma-separated), or a loopback
    /// `http://127.0.0.1:7070`.
    pub url: String,
    /// A token of `dash token create --role read|deploy|admin` (a DASH1- token also carries
    /// the cluster CA's fingerprint, which is pinned).
    #[arg(long, env = "DASH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Log in with the cluster's OpenID Connect provider instead of a token: the device flow
    /// (open the address shown, on any device, and confirm the code); the login is refreshed
    /// before it expires.
    #[arg(long, conflicts_with = "token")]
    pub oidc: bool,
    /// The context's name (default: the first address's host).
    #[arg(long)]
    pub name: Option<String>,
    /// The cluster CA's SHA-256 fingerprint to pin, when the token does not carry it (the hex
    /// after DASH1- in any of its tokens; `openssl x509 -in <data-dir>/pki/ca.crt -outform
    /// der | sha256sum` on a master).
    #[arg(long, value_name = "HEX")]
    pub ca_fingerprint: Option<String>,
    /// The CA (PEM) of a server run with its own certificate (`dash server --tls-cert`).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

/// `dash context …`.
#[derive(Subcommand, Debug)]
pub enum ContextCmd {
    /// Contexts: current, name, address, CA (the pinned fingerprint, or `file` for an
    /// operator's CA).
    Ls,
    /// Make NAME the current context.
    Use {
        /// A context of `dash context ls`.
        name: String,
    },
    /// Forget a context and its token.
    Rm {
        /// A context of `dash context ls`.
        name: String,
    },
}

/// What `dash context ls` prints; its help names them.
pub(crate) const LS_COLUMNS: [&str; 4] = ["CURRENT", "NAME", "ADDRESS", "CA"];

fn files() -> anyhow::Result<(PathBuf, context::Config, context::Credentials)> {
    let dir = context::dir().map_err(anyhow::Error::msg)?;
    let (config, creds) = context::load(&dir).map_err(anyhow::Error::msg)?;
    Ok((dir, config, creds))
}

/// What the login trusts: an operator's CA, a fingerprint given, the token's, or nothing
/// (plain loopback addresses only).
fn trust_of(
    args: &LoginArgs,
    token: &str,
    endpoints: &[Endpoint],
) -> anyhow::Result<Option<Trust>> {
    if let Some(path) = &args.ca_cert {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--ca-cert {}: {e}", path.display()))?;
        return Ok(Some(Trust::CaPem(pem)));
    }
    if let Some(fp) = &args.ca_fingerprint {
        let fp = context::normalize_fingerprint(fp);
        anyhow::ensure!(
            context::is_fingerprint(&fp),
            "--ca-fingerprint {:?}: not a SHA-256 (64 hex digits)",
            args.ca_fingerprint.as_deref().unwrap_or_default()
        );
        return Ok(Some(Trust::ClusterCa(fp)));
    }
    if let Ok(t) = dash_rpc::pki::JoinToken::parse(token) {
        return Ok(Some(Trust::ClusterCa(t.ca_fingerprint)));
    }
    anyhow::ensure!(
        endpoints.iter().all(|e| !e.tls),
        "{}: nothing says which CA to trust (only DASH1- tokens carry it); give \
         --ca-fingerprint (the hex after DASH1- in any token of this cluster), or --ca-cert for a \
         server with its own certificate",
        args.url
    );
    Ok(None)
}

/// `dash login`: checks the token against the server (over TLS pinned to the CA), then keeps
/// the context and makes it current.
pub async fn login(json: bool, args: LoginArgs) -> anyhow::Result<()> {
    let token = match (&args.token, args.oidc) {
        (_, true) => String::new(),
        (Some(t), false) if !t.trim().is_empty() => t.trim().to_string(),
        _ => anyhow::bail!(
            "--token: give a token of `dash token create --role read|deploy|admin` (or \
             DASH_TOKEN), or log in with the cluster's OpenID Connect provider: --oidc"
        ),
    };
    let endpoints: Vec<Endpoint> = args
        .url
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(Endpoint::parse)
        .collect();
    let Some(first) = endpoints.first() else {
        anyhow::bail!("{:?}: no address; use e.g. https://10.0.0.1:7443", args.url);
    };
    let name = match &args.name {
        Some(n) => n.clone(),
        None => first
            .host_port
            .rsplit_once(':')
            .map_or(first.host_port.as_str(), |(h, _)| h)
            .trim_matches(|c| c == '[' || c == ']')
            .to_string(),
    };
    anyhow::ensure!(
        !name.is_empty() && !name.contains(['/', '\n', '"']),
        "--name {name:?}: a context name is one word (no slash or quote)"
    );
    let trust = trust_of(&args, &token, &endpoints)?;
    let (dir, mut config, mut creds) = files()?;
    let ctx = Context {
        addr: endpoints
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        ca_fingerprint: match &trust {
            Some(Trust::ClusterCa(fp)) => Some(fp.clone()),
            _ => None,
        },
        ca_cert: match &trust {
            Some(Trust::CaPem(pem)) => Some(pem.clone()),
            _ => None,
        },
    };
    // A context keeps the CA it pinned first: another one is another cluster, or an attack.
    if let Some(old) = config.contexts.get(&name)
        && old.trust().is_some()
        && old.trust() != ctx.trust()
    {
        anyhow::bail!(
            "context {name} pinned CA {}; this login presents {}: another cluster, or someone in \
             between. If the cluster was really rebuilt, `dash context rm {name}` first",
            describe(old.trust().as_ref()),
            describe(ctx.trust().as_ref())
        );
    }
    let entry = if args.oidc {
        let info: LoginInfo = Client::new(ctx.addr.clone(), None)
            .trust(trust.clone())
            .get("/v1/login")
            .await?;
        let Some(oidc) = info.oidc else {
            anyhow::bail!(
                "{}: this cluster has no OpenID Connect provider (dash server --oidc-issuer); log \
                 in with a token of `dash token create` (--token)",
                args.url
            );
        };
        let t = crate::oidc::device_login(&oidc).await?;
        Entry {
            token: t.id_token,
            refresh_token: t.refresh_token,
            token_endpoint: Some(t.token_endpoint),
            client_id: Some(oidc.client_id),
        }
    } else {
        Entry::token(token)
    };
    let client = Client::new(ctx.addr.clone(), Some(entry.token.clone())).trust(trust.clone());
    let me: WhoAmI = client.get("/v1/whoami").await?;
    config.contexts.insert(name.clone(), ctx.clone());
    config.current = Some(name.clone());
    creds.tokens.insert(name.clone(), entry);
    context::save(&dir, &config, &creds).map_err(anyhow::Error::msg)?;
    if json {
        print_json(&serde_json::json!({
            "context": name, "addr": ctx.addr, "who": me.who, "role": me.role,
            "ca_fingerprint": ctx.ca_fingerprint,
        }));
    } else {
        println!(
            "logged in to {} as {} (role {}); context {name} is current; CA {}",
            ctx.addr,
            me.who,
            me.role,
            describe(trust.as_ref())
        );
    }
    Ok(())
}

fn describe(trust: Option<&Trust>) -> String {
    match trust {
        Some(Trust::ClusterCa(fp)) => format!("sha256:{fp}"),
        Some(Trust::CaPem(_)) => "from a file (--ca-cert)".into(),
        None => "none (plain HTTP on loopback)".into(),
    }
}

/// `dash context ls|use|rm` (local: no server is asked).
pub fn context(json: bool, cmd: ContextCmd) -> anyhow::Result<()> {
    let (dir, mut config, mut creds) = files()?;
    match cmd {
        ContextCmd::Ls => {
            if json {
                print_json(&config);
                return Ok(());
            }
            let mut t = Table::new(LS_COLUMNS);
            for (name, c) in &config.contexts {
                let current = config.current.as_deref() == Some(name.as_str());
                let ca = match (&c.ca_cert, &c.ca_fingerprint) {
                    (Some(_), _) => "file".to_string(),
                    (None, Some(fp)) => format!("sha256:{}…", &fp[..fp.len().min(16)]),
                    (None, None) => "-".into(),
                };
                t.row([
                    if current { "*" } else { "" }.to_string(),
                    name.clone(),
                    c.addr.clone(),
                    ca,
                ]);
            }
            t.print();
        }
        ContextCmd::Use { name } => {
            anyhow::ensure!(
                config.contexts.contains_key(&name),
                "no context {name:?}; `dash context ls` lists them"
            );
            config.current = Some(name.clone());
            context::save(&dir, &config, &creds).map_err(anyhow::Error::msg)?;
            println!("context {name} is current");
        }
        ContextCmd::Rm { name } => {
            anyhow::ensure!(
                config.contexts.remove(&name).is_some(),
                "no context {name:?}; `dash context ls` lists them"
            );
            creds.tokens.remove(&name);
            if config.current.as_deref() == Some(name.as_str()) {
                config.current = None;
            }
            context::save(&dir, &config, &creds).map_err(anyhow::Error::msg)?;
            println!("context {name} removed");
        }
    }
    Ok(())
}
