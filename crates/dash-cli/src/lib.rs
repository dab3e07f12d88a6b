//! dash-cli: the `dash` command tree (clap) and the client commands, which talk only to the
//! admin API. Every listing has `-o json`.

pub mod client;
mod exec;
mod output;
mod progress;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dash_core::api::{
    ApplyAction, ApplyRequest, ApplyResponse, ImageInfo, LogLine, LoginRequest, NodeInfo,
    PruneReport, PullEvent, PullRequest, ReplicaInfo, RouteInfo, ScaleRequest, ServiceInfo,
    TokenCreated, TokenInfo, TokenRequest,
};
use hyper::Method;

pub use client::{Client, ClientError};
use output::{Table, age_since};

#[derive(Parser, Debug)]
#[command(
    name = "dash",
    version,
    about = "Dash: a lightweight container orchestrator"
)]
pub struct Cli {
    /// Admin API address.
    #[arg(
        long,
        global = true,
        env = "DASH_ADDR",
        default_value = "127.0.0.1:7070"
    )]
    pub addr: String,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a master (and, in the same process, a worker): a single-node cluster, or the first
    /// master of a cluster with --advertise-addr.
    Server(Box<ServerArgs>),
    /// Run a worker that joins a cluster: `dash worker --join TOKEN@MASTER:7071 --advertise-addr IP`.
    Worker(Box<WorkerArgs>),
    /// Run a command in a replica, on whatever node holds it: `dash exec -it web-1a2b -- sh`.
    Exec {
        /// Keep stdin open and send it to the command.
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Give the command a terminal (raw keyboard input; one output stream).
        #[arg(short = 't', long)]
        tty: bool,
        replica: String,
        /// The command and its arguments (after `--`).
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Join tokens: create, ls, revoke.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Images: import, list, remove.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Create or update a service from a service file (idempotent).
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Validate and print the plan without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// List replicas: id, node, state, ip, restarts, age.
    Ps { service: Option<String> },
    /// Resource use of running replicas (CPU, memory), as their nodes last measured it.
    Stats { service: Option<String> },
    /// Services: list, inspect, remove.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Set a service's replica count.
    Scale { service: String, replicas: u32 },
    /// Merged logs of a service's replicas, each line prefixed by its replica.
    Logs {
        service: String,
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines of each replica.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Nodes of the cluster.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Registry credentials.
    #[command(subcommand)]
    Registry(RegistryCmd),
    /// The built-in proxy's routes.
    #[command(subcommand)]
    Route(RouteCmd),
    /// Live stream of what happens in the cluster.
    Events {
        /// Also show the recent events kept by the server.
        #[arg(long)]
        past: bool,
    },
}

/// What every node daemon (`dash server`, `dash worker`) takes.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Where state, images and containers live.
    #[arg(long, env = "DASH_DATA_DIR", default_value = "/var/lib/dash")]
    pub data_dir: PathBuf,
    /// OCI runtime: crun or runc (default: crun if it works here, else runc).
    #[arg(long)]
    pub runtime: Option<String>,
    /// Bridge for this node's containers.
    #[arg(long, default_value = "dash0")]
    pub bridge: String,
    /// The nftables table Dash owns.
    #[arg(long, default_value = "dash")]
    pub nft_table: String,
    /// State of the OCI runtime and pinned network namespaces.
    #[arg(long, default_value = "/run/dash")]
    pub run_dir: PathBuf,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Where this node's built-in L7 proxy listens (routes to replicas on every node).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub proxy_listen: String,
    /// A registry (`host:port`) that may be reached over plain HTTP; loopback ones always may.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Log level or filter, e.g. info, debug, dash_worker=debug.
    #[arg(long, env = "DASH_LOG", default_value = "info")]
    pub log_level: String,
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Admin API listen address (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Container subnet of this node.
    #[arg(long, default_value = "10.88.0.0/24")]
    pub subnet: String,
    /// This master's address for other nodes; turns on master_api (mutual TLS) on
    /// ADDR:--cluster-port so workers can join.
    #[arg(long, value_name = "IP")]
    pub advertise_addr: Option<String>,
    /// master_api's port.
    #[arg(long, default_value_t = 7071)]
    pub cluster_port: u16,
    /// Run no replicas on this master (only joined workers take them).
    #[arg(long)]
    pub no_worker: bool,
    /// Where joining nodes' container subnets (/24 each) come from.
    #[arg(long, default_value = "10.89.0.0/16")]
    pub cluster_cidr: String,
    /// Silence after which a node is down and its replicas start elsewhere (e.g. 3s, 500ms).
    #[arg(long, default_value = "3s")]
    pub node_down_after: String,
    /// Lifetime of node certificates; nodes renew theirs at two thirds of it.
    #[arg(long, default_value = "168h")]
    pub cert_validity: String,
    /// How often the service_scaler looks at the load of autoscaled services.
    #[arg(long, default_value = "5s")]
    pub autoscale_interval: String,
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// `TOKEN@MASTER:PORT` from `dash token create`; not needed once joined (kept in the data dir).
    #[arg(long, value_name = "TOKEN@MASTER:PORT")]
    pub join: Option<String>,
    /// This node's address, where masters reach its worker_api and other nodes its containers.
    #[arg(long, value_name = "IP")]
    pub advertise_addr: String,
    /// worker_api's port.
    #[arg(long, default_value_t = 7072)]
    pub worker_port: u16,
    /// A label for placement constraints, KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// A new join token, printed once.
    Create {
        /// What the token admits: worker.
        #[arg(long, default_value = "worker")]
        role: String,
        /// Lifetime, e.g. 1h, 30m (default: until revoked).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Tokens: id, role, created, expires, revoked.
    Ls,
    /// Revoke a token by id: it admits no node from now on.
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Import an OCI image layout or `docker save` archive, or with --rootfs a root filesystem tarball.
    Import {
        file: PathBuf,
        /// Reference for a plain root filesystem tarball, e.g. `bb:1` (like `docker import`).
        #[arg(long, value_name = "REF")]
        rootfs: bool,
        /// With --rootfs: the reference to tag it with.
        reference: Option<String>,
    },
    /// Pull an image from its registry, with progress per layer.
    Pull { reference: String },
    /// List images.
    Ls,
    /// Show an image: config, layers, digests.
    Inspect { reference: String },
    /// Remove untagged images no replica uses, unreferenced blobs and unpacked layers.
    Prune,
    /// Remove an image (refused while a service uses it).
    Rm { reference: String },
}

#[derive(Subcommand, Debug)]
pub enum RegistryCmd {
    /// Store credentials for a registry (checked against it first; kept 0600 on the server).
    Login {
        registry: String,
        #[arg(short = 'u', long)]
        username: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget a registry's credentials.
    Logout { registry: String },
}

#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    Ls,
    Inspect {
        name: String,
    },
    Rm {
        name: String,
    },
    /// Back to the previous version's spec (the replica count stays), replaced like an update.
    Rollback {
        name: String,
    },
    /// Why each replica is where it is, or why it is pending; how each node looks to it.
    Explain {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RouteCmd {
    /// The routing table: each route, its counters and its upstreams' state.
    Ls,
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    Ls,
    /// One node, as JSON.
    Inspect {
        node: String,
    },
    /// Move a node's replicas elsewhere (each started before the old one stops); it takes no
    /// new ones until activated.
    Drain {
        node: String,
    },
    /// Let a drained node take replicas again.
    Activate {
        node: String,
    },
    /// Set labels (KEY=VALUE) or remove them (KEY-), e.g. `dash node label n1 zone=a disk-`.
    Label {
        node: String,
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// Forget a node: its replicas start elsewhere and its certificate is refused.
    Rm {
        node: String,
        /// Even if it is still ready.
        #[arg(long)]
        force: bool,
    },
}

/// Reads the admin token: DASH_TOKEN, else `<data-dir>/admin.token`.
pub fn token() -> Option<String> {
    if let Ok(t) = std::env::var("DASH_TOKEN")
        && !t.trim().is_empty()
    {
        return Some(t.trim().to_string());
    }
    let dir = std::env::var("DASH_DATA_DIR").unwrap_or_else(|_| "/var/lib/dash".into());
    std::fs::read_to_string(PathBuf::from(dir).join("admin.token"))
        .ok()
        .map(|t| t.trim().to_string())
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

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Runs a client command. Errors are for the user: they say what to do.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::new(cli.addr.clone(), token());
    let json = cli.output == Format::Json;
    match cli.command {
        Command::Server(_) | Command::Worker(_) => {
            anyhow::bail!("daemons are run by the binary")
        }
        Command::Exec {
            interactive,
            tty,
            replica,
            command,
        } => {
            // Exits here, error or not: returning would wait for the blocking read of stdin
            // that tokio may still have in flight.
            match exec::run(&client, &replica, command, interactive, tty).await {
                Ok(code) => std::process::exit(code),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::exit(1);
                }
            }
        }
        Command::Token(TokenCmd::Create { role, ttl }) => {
            let ttl_s = match ttl {
                None => None,
                Some(t) => Some(
                    dash_core::units::parse_duration(&t)
                        .map_err(|e| anyhow::anyhow!("--ttl {t:?}: {e}"))?
                        .as_secs(),
                ),
            };
            let created: TokenCreated = client
                .post("/v1/tokens", &TokenRequest { role, ttl_s })
                .await?;
            if json {
                print_json(&created);
            } else {
                println!("{}", created.token);
            }
        }
        Command::Token(TokenCmd::Ls) => {
            let tokens: Vec<TokenInfo> = client.get("/v1/tokens").await?;
            if json {
                print_json(&tokens);
            } else {
                let now = output::now_ms();
                let mut t = Table::new(["ID", "ROLE", "AGE", "EXPIRES", "STATE"]);
                for tok in tokens {
                    let state = if tok.revoked_ms.is_some() {
                        "revoked"
                    } else if tok.expires_ms.is_some_and(|e| e <= now) {
                        "expired"
                    } else {
                        "valid"
                    };
                    t.row([
                        tok.id,
                        tok.role,
                        dash_core::units::format_age(std::time::Duration::from_millis(
                            now.saturating_sub(tok.created_ms),
                        )),
                        tok.expires_ms.map_or("never".into(), |e| {
                            if e > now {
                                format!(
                                    "in {}",
                                    dash_core::units::format_age(std::time::Duration::from_millis(
                                        e - now
                                    ))
                                )
                            } else {
                                format!(
                                    "{} ago",
                                    dash_core::units::format_age(std::time::Duration::from_millis(
                                        now - e
                                    ))
                                )
                            }
                        }),
                        state.into(),
                    ]);
                }
                t.print();
            }
        }
        Command::Token(TokenCmd::Revoke { id }) => {
            let info: TokenInfo = client.delete(&format!("/v1/tokens/{id}")).await?;
            if json {
                print_json(&info);
            } else {
                println!("revoked {}", info.id);
            }
        }
        Command::Node(NodeCmd::Drain { node }) => {
            let n: NodeInfo = client
                .post(&format!("/v1/nodes/{node}/drain"), &serde_json::json!({}))
                .await?;
            println!("{} {}", n.id, n.state.as_str());
        }
        Command::Node(NodeCmd::Activate { node }) => {
            let n: NodeInfo = client
                .post(
                    &format!("/v1/nodes/{node}/activate"),
                    &serde_json::json!({}),
                )
                .await?;
            println!("{} {}", n.id, n.state.as_str());
        }
        Command::Node(NodeCmd::Label { node, labels }) => {
            let mut set = serde_json::Map::new();
            let mut remove = Vec::new();
            for l in labels {
                match l.split_once('=') {
                    Some((k, v)) => {
                        set.insert(k.to_string(), serde_json::Value::String(v.to_string()));
                    }
                    None => match l.strip_suffix('-') {
                        Some(k) => remove.push(k.to_string()),
                        None => {
                            anyhow::bail!("label {l:?}: use KEY=VALUE to set or KEY- to remove")
                        }
                    },
                }
            }
            let n: NodeInfo = client
                .post(
                    &format!("/v1/nodes/{node}/labels"),
                    &serde_json::json!({"set": set, "remove": remove}),
                )
                .await?;
            if json {
                print_json(&n);
            } else {
                let text: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("{} {}", n.id, text.join(","));
            }
        }
        Command::Node(NodeCmd::Inspect { node }) => {
            let n: NodeInfo = client.get(&format!("/v1/nodes/{node}")).await?;
            print_json(&n);
        }
        Command::Node(NodeCmd::Rm { node, force }) => {
            let n: NodeInfo = client
                .delete(&format!("/v1/nodes/{node}?force={force}"))
                .await?;
            if json {
                print_json(&n);
            } else {
                println!("removed {}", n.id);
            }
        }
        Command::Image(ImageCmd::Import {
            file,
            rootfs,
            reference,
        }) => {
            let f = tokio::fs::File::open(&file)
                .await
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", file.display()))?;
            let path = match (rootfs, reference) {
                (true, Some(r)) => format!("/v1/images/import?rootfs={}", encode(&r)),
                (true, None) => anyhow::bail!(
                    "--rootfs needs a reference: dash image import --rootfs rootfs.tar bb:1"
                ),
                (false, Some(r)) => anyhow::bail!(
                    "unexpected argument {r:?}; to tag a root filesystem tarball use --rootfs"
                ),
                (false, None) => "/v1/images/import".into(),
            };
            let images: Vec<ImageInfo> = client.upload(&path, f).await?;
            if json {
                print_json(&images);
            } else {
                for i in images {
                    println!("imported {} {}", i.tags.join(", "), short_id(&i.id));
                }
            }
        }
        Command::Image(ImageCmd::Pull { reference }) => {
            let mut view = progress::PullView::new(json);
            let mut failed = None;
            client
                .stream_post(
                    "/v1/images/pull",
                    &PullRequest {
                        reference: reference.clone(),
                    },
                    |line| match serde_json::from_str::<PullEvent>(line) {
                        Ok(PullEvent::Error { message }) => failed = Some(message),
                        Ok(event) => view.show(&event, line),
                        Err(_) => {}
                    },
                )
                .await?;
            if let Some(message) = failed {
                anyhow::bail!("pulling {reference}: {message}");
            }
            if !view.done() {
                anyhow::bail!("pulling {reference}: the server ended the stream without a result");
            }
        }
        Command::Image(ImageCmd::Inspect { reference }) => {
            let v: serde_json::Value = client
                .get(&format!("/v1/images/{}", encode(&reference)))
                .await?;
            print_json(&v);
        }
        Command::Image(ImageCmd::Prune) => {
            let r: PruneReport = client
                .post("/v1/images/prune", &serde_json::json!({}))
                .await?;
            if json {
                print_json(&r);
            } else {
                println!(
                    "removed {} images, {} blobs, {} layers; freed {}",
                    r.images_removed,
                    r.blobs_removed,
                    r.layers_removed,
                    dash_core::units::format_size(r.bytes_freed)
                );
            }
        }
        Command::Registry(RegistryCmd::Login {
            registry,
            username,
            password_stdin,
        }) => {
            let (username, password) = credentials(username, password_stdin)?;
            let req = LoginRequest {
                registry: registry.clone(),
                username,
                password,
            };
            client
                .call(Method::POST, "/v1/registries/login", Some(&req))
                .await?;
            if json {
                print_json(&serde_json::json!({"registry": registry, "login": true}))
            } else {
                println!("login succeeded for {registry}")
            }
        }
        Command::Registry(RegistryCmd::Logout { registry }) => {
            client
                .call(
                    Method::DELETE,
                    &format!("/v1/registries/{}", encode(&registry)),
                    None::<&()>,
                )
                .await?;
            if json {
                print_json(&serde_json::json!({"registry": registry, "login": false}))
            } else {
                println!("removed credentials for {registry}")
            }
        }
        Command::Image(ImageCmd::Ls) => {
            let images: Vec<ImageInfo> = client.get("/v1/images").await?;
            if json {
                print_json(&images);
            } else {
                let mut t = Table::new(["REFERENCE", "ID", "SIZE", "LAYERS"]);
                for i in images {
                    let tags = if i.tags.is_empty() {
                        "<none>".into()
                    } else {
                        i.tags.join(",")
                    };
                    t.row([
                        tags,
                        short_id(&i.id),
                        dash_core::units::format_size(i.size_bytes),
                        i.layers.to_string(),
                    ]);
                }
                t.print();
            }
        }
        Command::Image(ImageCmd::Rm { reference }) => {
            let removed: ImageInfo = client
                .delete(&format!("/v1/images/{}", encode(&reference)))
                .await?;
            if json {
                print_json(&removed)
            } else {
                println!("removed {reference} {}", short_id(&removed.id))
            }
        }
        Command::Apply { file, dry_run } => {
            let content = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let req = ApplyRequest {
                file_name: file.display().to_string(),
                content,
                dry_run,
            };
            let resp: ApplyResponse = client.post("/v1/services", &req).await?;
            if json {
                print_json(&resp);
            } else {
                print_apply(&resp);
            }
        }
        Command::Ps { service } => {
            let path = match &service {
                Some(s) => format!("/v1/replicas?service={}", encode(s)),
                None => "/v1/replicas".into(),
            };
            let replicas: Vec<ReplicaInfo> = client.get(&path).await?;
            if json {
                print_json(&replicas);
            } else {
                let mut t = Table::new([
                    "ID", "SERVICE", "VERSION", "NODE", "STATE", "IP", "RESTARTS", "AGE", "MESSAGE",
                ]);
                for r in replicas {
                    let state = if r.desired == dash_core::api::DesiredState::Remove
                        && r.state != dash_core::api::ReplicaState::Stopping
                    {
                        format!("{} (removing)", r.state.as_str())
                    } else {
                        r.state.as_str().to_string()
                    };
                    t.row([
                        r.id,
                        r.service,
                        r.version.to_string(),
                        r.node.unwrap_or_else(|| "-".into()),
                        state,
                        r.ip.unwrap_or_else(|| "-".into()),
                        r.restarts.to_string(),
                        age_since(r.started_ms.unwrap_or(r.created_ms)),
                        r.message,
                    ]);
                }
                t.print();
            }
        }
        Command::Stats { service } => {
            let path = match &service {
                Some(s) => format!("/v1/stats?service={}", encode(s)),
                None => "/v1/stats".into(),
            };
            let stats: Vec<dash_core::api::ReplicaStats> = client.get(&path).await?;
            if json {
                print_json(&stats);
            } else {
                let mut t = Table::new([
                    "REPLICA", "SERVICE", "NODE", "CPU %", "OF LIMIT", "MEMORY", "LIMIT",
                ]);
                let percent = |p: Option<f64>| p.map_or_else(|| "-".into(), |p| format!("{p:.1}%"));
                for r in stats {
                    t.row([
                        r.replica,
                        r.service,
                        r.node.unwrap_or_else(|| "-".into()),
                        percent(r.cpu_percent),
                        percent(r.cpu_percent_of_limit),
                        r.memory_bytes.map_or_else(|| "-".into(), human_bytes),
                        r.memory_limit_bytes.map_or_else(|| "-".into(), human_bytes),
                    ]);
                }
                t.print();
            }
        }
        Command::Service(ServiceCmd::Ls) => {
            let services: Vec<ServiceInfo> = client.get("/v1/services").await?;
            if json {
                print_json(&services);
            } else {
                let mut t = Table::new(["NAME", "IMAGE", "REPLICAS", "VERSION", "PORTS", "STATUS"]);
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
        Command::Service(ServiceCmd::Inspect { name }) => {
            let s: ServiceInfo = client
                .get(&format!("/v1/services/{}", encode(&name)))
                .await?;
            // The inspection is structured data either way.
            print_json(&s);
        }
        Command::Service(ServiceCmd::Explain { name }) => {
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
        Command::Service(ServiceCmd::Rollback { name }) => {
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
        Command::Service(ServiceCmd::Rm { name }) => {
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
        Command::Scale { service, replicas } => {
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
        }
        Command::Logs {
            service,
            follow,
            tail,
        } => {
            let mut path = format!("/v1/logs/{}?follow={follow}", encode(&service));
            if let Some(n) = tail {
                path.push_str(&format!("&tail={n}"));
            }
            client
                .stream(&path, |line| {
                    if json {
                        println!("{line}");
                    } else if let Ok(l) = serde_json::from_str::<LogLine>(line) {
                        println!("{} | {}", l.replica, l.line);
                    }
                })
                .await?;
        }
        Command::Route(RouteCmd::Ls) => {
            let routes: Vec<RouteInfo> = client.get("/v1/routes").await?;
            if json {
                print_json(&routes);
            } else {
                let mut t = Table::new([
                    "HOST",
                    "PATH",
                    "SERVICE",
                    "PORT",
                    "REQUESTS",
                    "RPS",
                    "2XX",
                    "4XX",
                    "5XX",
                    "ERRORS",
                    "UPSTREAMS",
                ]);
                for r in routes {
                    let ups: Vec<String> = r
                        .upstreams
                        .iter()
                        .map(|u| format!("{} {} ({})", u.replica, u.addr, u.state))
                        .collect();
                    let path = if r.strip_prefix {
                        format!("{} (stripped)", r.path_prefix)
                    } else {
                        r.path_prefix.clone()
                    };
                    t.row([
                        r.host,
                        path,
                        r.service,
                        r.port.to_string(),
                        r.requests.to_string(),
                        format!("{:.1}", r.requests_per_second),
                        r.status[1].to_string(),
                        r.status[3].to_string(),
                        r.status[4].to_string(),
                        r.errors.to_string(),
                        if ups.is_empty() {
                            "none".into()
                        } else {
                            ups.join(", ")
                        },
                    ]);
                }
                t.print();
            }
        }
        Command::Node(NodeCmd::Ls) => {
            let nodes: Vec<NodeInfo> = client.get("/v1/nodes").await?;
            if json {
                print_json(&nodes);
            } else {
                let mut t = Table::new([
                    "ID", "ROLE", "STATE", "ADDRESS", "SUBNET", "RUNTIME", "REPLICAS", "CPU",
                    "MEMORY",
                ]);
                for n in nodes {
                    t.row([
                        n.id,
                        n.role,
                        n.state.as_str().into(),
                        n.address,
                        n.subnet,
                        n.runtime,
                        n.replicas.to_string(),
                        format!("{:.1}", f64::from(n.capacity.cpu_millis) / 1000.0),
                        dash_core::units::format_size(n.capacity.memory_bytes),
                    ]);
                }
                t.print();
            }
        }
        Command::Events { past } => {
            let path = if past {
                "/v1/events?since=0"
            } else {
                "/v1/events"
            };
            client
                .stream(path, |line| {
                    if json {
                        println!("{line}");
                    } else if let Ok(e) = serde_json::from_str::<dash_core::event::Event>(line) {
                        let kind = serde_json::to_value(e.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        println!(
                            "{} {:<20} {} {} {}",
                            output::clock(e.time_ms),
                            kind,
                            e.service.unwrap_or_default(),
                            e.replica.unwrap_or_default(),
                            e.message
                        );
                    } else {
                        println!("{line}");
                    }
                })
                .await?;
        }
    }
    Ok(())
}

fn short_id(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

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

/// Username and password for `dash registry login`: flags, standard input, or prompts
/// (the password without echo when on a terminal).
fn credentials(username: Option<String>, password_stdin: bool) -> anyhow::Result<(String, String)> {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    let username = match username {
        Some(u) => u,
        None => {
            eprint!("Username: ");
            let mut line = String::new();
            stdin.lock().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    let password = if password_stdin {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        progress::read_password("Password: ")?
    };
    if username.is_empty() || password.is_empty() {
        anyhow::bail!(
            "a username and a password are needed: dash registry login REGISTRY -u USER --password-stdin"
        );
    }
    Ok((username, password))
}

/// Bytes in binary units: `12.3MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}
