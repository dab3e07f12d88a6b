//! The flags of the node daemons, `dash server` and `dash worker`. They are parsed here, with
//! the rest of the command line, and run by the `dash` binary (`crates/dash`), not by this
//! crate.

use std::path::PathBuf;

use clap::Args;

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
    /// Containers' cgroups go under `<this daemon's cgroup>/<PARENT>/<replica>` (relative
    /// name segments). Two daemons on one host need different ones.
    #[arg(long, value_name = "PARENT", default_value = "dash")]
    pub cgroup_parent: String,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Where this node's built-in L7 proxy listens (routes to replicas on every node).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub proxy_listen: String,
    /// A registry (`host:port`) that may be reached over plain HTTP; loopback ones always may.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// A name server for names outside the cluster, IP or IP:PORT (repeatable; default: the
    /// host's /etc/resolv.conf name servers).
    #[arg(long = "dns-upstream", value_name = "IP[:PORT]")]
    pub dns_upstreams: Vec<String>,
    /// Log level or filter, e.g. info, debug, dash_worker=debug.
    #[arg(long, env = "DASH_LOG", default_value = "info")]
    pub log_level: String,
    /// Run every replica of this node in a user namespace of its own (65,536 host ids each)
    /// unless its service says `user_namespace = false`.
    #[arg(long)]
    pub default_userns: bool,
    /// Where this node serves its Prometheus /metrics (its replicas, its proxy) over plain
    /// HTTP without a token, as node exporters do; `none` for nowhere. Default: 127.0.0.1:9180
    /// for `dash worker`, none for `dash server` (its admin API's /metrics has them).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

/// `dash server`: a master, and unless --no-worker a worker in the same process.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Admin API address, repeatable: a loopback one serves plain HTTP, any other (e.g.
    /// 0.0.0.0:7443) HTTPS only; `https://IP:PORT` asks for HTTPS on loopback too.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: Vec<String>,
    /// The admin API's HTTPS certificate (PEM, the chain clients need), instead of one from
    /// the cluster CA; with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// An OpenID Connect provider people log in with (`dash login --oidc`): its issuer URL,
    /// exactly as its tokens name it.
    #[arg(long, value_name = "URL", requires = "oidc_client_id")]
    pub oidc_issuer: Option<String>,
    /// The client id registered at the provider for Dash (the audience of its ID tokens).
    #[arg(long, value_name = "ID", requires = "oidc_issuer")]
    pub oidc_client_id: Option<String>,
    /// The ID token claim holding a person's groups.
    #[arg(long, default_value = "groups")]
    pub oidc_role_claim: String,
    /// A group and the role it gives, GROUP=ROLE (read, deploy, admin; repeatable). Without
    /// any, a group named read, deploy or admin gives that role.
    #[arg(long = "oidc-role", value_name = "GROUP=ROLE")]
    pub oidc_roles: Vec<String>,
    /// What `dash login --oidc` asks the provider for, space-separated.
    #[arg(long, default_value = "openid offline_access groups")]
    pub oidc_scopes: String,
    /// Serve plain HTTP on a non-loopback --listen written `http://IP:PORT`: only on a network
    /// you trust entirely (a test bench), since every token crosses it in clear.
    #[arg(long)]
    pub insecure_http: bool,
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
    /// Join an existing cluster as one more master: `TOKEN@MASTER:PORT` from `dash token create
    /// --role master`; needs --advertise-addr; not needed once joined (kept in the data dir).
    #[arg(long, value_name = "TOKEN@MASTER:PORT")]
    pub join: Option<String>,
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
    /// Where services' virtual IPs come from; the first master's is recorded for the cluster.
    #[arg(long, default_value = dash_core::subnet::VipPool::DEFAULT)]
    pub service_cidr: String,
}

/// `dash worker`: a node that joins a cluster and runs what the masters assign it.
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
