//! dash-cli: the `dash` command tree (clap) and the client commands, which talk only to the
//! admin API. Every listing has `-o json`.
//!
//! ```text
//! argv ──clap──▶ Cli { client: ClientArgs { addr, output }, command }
//!                  ├─ server, worker ─▶ daemon_args, run by the `dash` binary
//!                  └─ anything else ──▶ run ─▶ commands::<group> ─▶ Client ─▶ admin API
//! ```

pub mod client;
pub mod commands;
pub mod context;
mod daemon_args;
mod oidc;
mod output;
mod progress;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use client::{Client, ClientError};
pub use commands::cluster::ClusterCmd;
pub use commands::events::EventsArgs;
pub use commands::exec::ExecArgs;
pub use commands::image::ImageCmd;
pub use commands::logs::LogsArgs;
pub use commands::network::NetworkCmd;
pub use commands::node::NodeCmd;
pub use commands::registry::RegistryCmd;
pub use commands::replica::{PsArgs, StatsArgs};
pub use commands::route::RouteCmd;
pub use commands::service::{ApplyArgs, ScaleArgs, ServiceCmd};
pub use commands::token::TokenCmd;
pub use daemon_args::{NodeArgs, ServerArgs, WorkerArgs};

/// The whole command line of `dash`.
#[derive(Parser, Debug)]
#[command(
    name = "dash",
    version,
    about = "Dash: a lightweight container orchestrator",
    mut_subcommands = with_client_args
)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the admin API is and how to print. Every client command takes them, before its name
/// or after it (`dash --addr A ps`, `dash ps --addr A`, `dash node drain n1 -o json`); the
/// daemons take neither.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Admin API address(es), comma-separated: `host:port` or `http://host:port` (plain, for
    /// loopback), `https://host:port`. Overrides the context (default: the current context's,
    /// else 127.0.0.1:7070).
    #[arg(long, env = "DASH_ADDR")]
    pub addr: Option<String>,
    /// The context (`dash context ls`) to use instead of the current one.
    #[arg(long, env = "DASH_CONTEXT")]
    pub context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Read the answering master's state as it is, without asking the leader (it may lag
    /// behind; it answers while no leader is elected). Reads are linearizable otherwise.
    #[arg(long)]
    pub stale: bool,
}

/// Gives a client subcommand its own copy of the client args, global below it (so
/// `dash node --addr A drain n1` works as well as `dash node drain n1 --addr A`).
///
/// `global = true` on `Cli` would be simpler, but clap cannot keep a global argument away from
/// some subcommands, and `dash server --help` would offer the `--addr` it ignores. clap merges
/// a global argument's value up the path by its id, so `Cli::client` gets the value from
/// wherever it was given (the innermost one if given twice).
///
/// `dash restore` runs locally and takes neither; `dash backup` takes `--addr` only: its
/// `-o` is the file it writes (`dash backup -o cluster.snap`, as etcdctl and nomad name it).
fn with_client_args(sub: clap::Command) -> clap::Command {
    if matches!(sub.get_name(), "server" | "worker" | "restore") {
        return sub;
    }
    let name = sub.get_name().to_string();
    // `dash login` and `dash context` are about contexts, `dash sim kill/report` reach a
    // simulation, not the admin API: they take only the output format.
    let keep = |id: &str| match name.as_str() {
        "backup" => id == "addr" || id == "context",
        "login" | "context" | "sim" => id == "output",
        _ => true,
    };
    let client = ClientArgs::augment_args(clap::Command::new("client"));
    sub.args(
        client
            .get_arguments()
            .filter(|a| keep(a.get_id().as_str()))
            .map(|a| a.clone().global(true)),
    )
}

/// How client commands print: aligned tables, or JSON as the admin API returns it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// The daemons and the client commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a master (and, in the same process, a worker): a single-node cluster, or the first
    /// master of a cluster with --advertise-addr.
    Server(Box<ServerArgs>),
    /// Run a worker that joins a cluster: `dash worker --join TOKEN@MASTER:7071 --advertise-addr IP`.
    Worker(Box<WorkerArgs>),
    /// Run a command in a replica, on whatever node holds it: `dash exec -it web-1a2b -- sh`.
    Exec(ExecArgs),
    /// Tokens: create (--role read, deploy or admin for the admin API; worker or master to
    /// join a node), ls, revoke.
    #[command(subcommand)]
    Token(TokenCmd),
    /// The masters' Raft: status (leader, term, commit index, each master's role and lag).
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Images: import, pull, list, inspect, prune, remove.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Create or update a service from a service file (idempotent).
    Apply(ApplyArgs),
    /// List replicas: id, service, version, node, state, ip, restarts, age, message.
    Ps(PsArgs),
    /// Resource use of running replicas (CPU, memory), as their nodes last measured it.
    Stats(StatsArgs),
    /// Services: list, inspect, explain, roll back, remove.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Jobs (`kind = "job"`): ls, run now, history, suspend, resume.
    #[command(subcommand)]
    Job(commands::job::JobCmd),
    /// Simulate thousands of workers against real masters (`dash sim --join TOKEN@MASTER:7071
    /// --workers 1000`), then `dash sim kill --workers N` and `dash sim report`.
    Sim(Box<commands::sim::SimArgs>),
    /// Set a service's replica count.
    Scale(ScaleArgs),
    /// Merged logs of a service's replicas, each line prefixed by its replica.
    Logs(LogsArgs),
    /// Nodes of the cluster.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Registry credentials.
    #[command(subcommand)]
    Registry(RegistryCmd),
    /// The built-in proxy's routes.
    #[command(subcommand)]
    Route(RouteCmd),
    /// The networks services name: `dash network ls`, `dash network inspect NAME`.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Live stream of what happens in the cluster.
    Events(EventsArgs),
    /// Every running replica's CPU, memory, network, requests/s and restarts, refreshed
    /// every second (q quits; c m n r s i sort); `-o json` streams rows.
    Top(commands::top::TopArgs),
    /// Secrets services get as files under /run/secrets: create, update, ls, inspect, rm,
    /// rotate-key.
    #[command(subcommand)]
    Secret(commands::secret::SecretCmd),
    /// Configs services get as files at paths of their own: create, update, ls, inspect, rm.
    #[command(subcommand)]
    Config(commands::secret::ConfigCmd),
    /// Log in to a cluster's admin API and keep it as a context (the CA pinned, the token in
    /// a 0600 file): `dash login https://10.0.0.1:7443 --token DASH1-…`.
    Login(commands::login::LoginArgs),
    /// The clusters logged in to: ls, use NAME, rm NAME.
    #[command(subcommand)]
    Context(commands::login::ContextCmd),
    /// Who changed what through the admin API: time, who, role, source, master, status, request,
    /// target of each write or refusal (`dash audit --since 1h`).
    Audit(commands::audit::AuditArgs),
    /// A consistent snapshot of the cluster (state, CA, tokens, images) into a file:
    /// `dash backup -o cluster.snap`.
    Backup(commands::backup::BackupArgs),
    /// Make a new one-master cluster's data dir from a backup, locally (no server):
    /// `dash restore --data-dir /var/lib/dash cluster.snap`, then `dash server --data-dir …`.
    Restore(commands::backup::RestoreArgs),
}

/// `DASH_TOKEN`, if set.
fn env_token() -> Option<String> {
    std::env::var("DASH_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The local server's bootstrap token, `<data-dir>/admin.token` (`DASH_DATA_DIR`).
fn local_token() -> Option<String> {
    let dir = std::env::var("DASH_DATA_DIR").unwrap_or_else(|_| "/var/lib/dash".into());
    std::fs::read_to_string(PathBuf::from(dir).join("admin.token"))
        .ok()
        .map(|t| t.trim().to_string())
}

/// What `DASH_CA_FINGERPRINT` or `DASH_CACERT` (a PEM file) say to trust.
fn env_trust() -> anyhow::Result<Option<dash_rpc::https::Trust>> {
    use dash_rpc::https::Trust;
    if let Ok(path) = std::env::var("DASH_CACERT")
        && !path.is_empty()
    {
        let pem = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("DASH_CACERT {path}: {e}"))?;
        return Ok(Some(Trust::CaPem(pem)));
    }
    Ok(std::env::var("DASH_CA_FINGERPRINT")
        .ok()
        .filter(|f| !f.is_empty())
        .map(|f| Trust::ClusterCa(context::normalize_fingerprint(&f))))
}

/// Where a client command goes: its address, token and trust (see `context`). An OpenID
/// Connect login about to expire is refreshed first (and kept).
pub async fn target(args: &ClientArgs) -> anyhow::Result<context::Target> {
    let files = match args.addr {
        Some(_) => None,
        None => Some(
            context::load(&context::dir().map_err(anyhow::Error::msg)?)
                .map_err(anyhow::Error::msg)?,
        ),
    };
    let creds = files.as_ref().map(|(_, c)| c.clone());
    let env = env_token();
    let mut target = context::resolve(
        args.addr.as_deref(),
        args.context.as_deref(),
        env.clone(),
        local_token,
        env_trust()?,
        files,
    )
    .map_err(anyhow::Error::msg)?;
    if env.is_none()
        && let (Some(name), Some(creds)) = (&target.context, creds)
        && let Some(e) = creds.tokens.get(name)
        && let (Some(rt), Some(endpoint), Some(client_id)) =
            (&e.refresh_token, &e.token_endpoint, &e.client_id)
        && oidc::expires_at(&e.token).is_some_and(|exp| exp <= output::now_ms() / 1000 + 30)
    {
        let (id_token, new_rt) = oidc::refresh(endpoint, client_id, rt).await?;
        let dir = context::dir().map_err(anyhow::Error::msg)?;
        let (config, mut creds) = context::load(&dir).map_err(anyhow::Error::msg)?;
        if let Some(e) = creds.tokens.get_mut(name) {
            e.token = id_token.clone();
            if new_rt.is_some() {
                e.refresh_token = new_rt;
            }
        }
        context::save(&dir, &config, &creds).map_err(anyhow::Error::msg)?;
        target.token = Some(id_token);
    }
    Ok(target)
}

/// Percent-encodes everything but RFC 3986's unreserved characters (a path segment or a
/// query value).
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Pretty JSON on stdout, for `-o json` and for what is JSON either way (`inspect`).
fn print_json(v: &impl serde::Serialize) {
    println!("{}", to_json(v));
}

/// What `print_json` prints.
fn to_json(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Runs a client command. Errors are for the user: they say what to do.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.client.output == Format::Json;
    match cli.command {
        Command::Server(_) | Command::Worker(_) | Command::Restore(_) => {
            anyhow::bail!("daemons and restores are run by the binary")
        }
        Command::Login(args) => return commands::login::login(json, args).await,
        Command::Context(cmd) => return commands::login::context(json, cmd),
        Command::Sim(args) => match args.command {
            Some(cmd) => return commands::sim::run(json, cmd).await,
            None => anyhow::bail!("simulations are run by the binary"),
        },
        _ => {}
    }
    let target = target(&cli.client).await?;
    let client = Client::new(target.addr, target.token)
        .trust(target.trust)
        .stale(cli.client.stale);
    match cli.command {
        Command::Server(_)
        | Command::Worker(_)
        | Command::Restore(_)
        | Command::Login(_)
        | Command::Context(_)
        | Command::Sim(_) => anyhow::bail!("handled above"),
        Command::Backup(args) => commands::backup::run(&client, json, args).await,
        Command::Exec(args) => commands::exec::run(&client, args).await,
        Command::Token(cmd) => commands::token::run(&client, json, cmd).await,
        Command::Cluster(cmd) => commands::cluster::run(&client, json, cmd).await,
        Command::Image(cmd) => commands::image::run(&client, json, cmd).await,
        Command::Apply(args) => commands::service::apply(&client, json, args).await,
        Command::Ps(args) => commands::replica::ps(&client, json, args).await,
        Command::Stats(args) => commands::replica::stats(&client, json, args).await,
        Command::Service(cmd) => commands::service::run(&client, json, cmd).await,
        Command::Scale(args) => commands::service::scale(&client, json, args).await,
        Command::Job(cmd) => commands::job::run(&client, json, cmd).await,
        Command::Logs(args) => commands::logs::run(&client, json, args).await,
        Command::Node(cmd) => commands::node::run(&client, json, cmd).await,
        Command::Registry(cmd) => commands::registry::run(&client, json, cmd).await,
        Command::Route(cmd) => commands::route::run(&client, json, cmd).await,
        Command::Network(cmd) => commands::network::run(&client, json, cmd).await,
        Command::Events(args) => commands::events::run(&client, json, args).await,
        Command::Top(args) => commands::top::run(&client, json, args).await,
        Command::Audit(args) => commands::audit::run(&client, json, args).await,
        Command::Secret(cmd) => commands::secret::run_secret(&client, json, cmd).await,
        Command::Config(cmd) => commands::secret::run_config(&client, json, cmd).await,
    }
}
