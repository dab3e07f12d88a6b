//! From raw (spanned) values to a validated [`ServiceSpec`], collecting every problem.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use toml::Spanned;

use super::MAX_REPLICAS;
use super::diagnostic::{Diagnostic, Diagnostics, line_col};
use super::raw::{self, RawService, SizeValue, StringOrList};
use crate::job::Kind;
use crate::spec::{
    Autoscale, Constraint, HealthCheck, Mode, Placement, PortSpec, Probe, Protocol, PullPolicy,
    Resources, RestartCondition, RestartPolicy, RouteSpec, UpdateOrder, UpdatePolicy,
};
use crate::units::{parse_duration, parse_size};
use crate::{ServiceName, ServiceSpec};

pub(super) struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    problems: Vec<Diagnostic>,
}

impl Ctx<'_> {
    pub(super) fn report<T>(&mut self, at: &Spanned<T>, field: &str, message: String, help: &str) {
        let (line, column) = line_col(self.text, at.span().start);
        self.problems.push(Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            field: field.to_string(),
            message,
            help: (!help.is_empty()).then(|| help.to_string()),
        });
    }

    /// An integer field within `min..=max`.
    pub(super) fn int(
        &mut self,
        v: &Spanned<i64>,
        field: &str,
        min: i64,
        max: i64,
        help: &str,
    ) -> Option<i64> {
        let n = *v.get_ref();
        if n < min || n > max {
            self.report(
                v,
                field,
                format!("{field} = {n}: must be between {min} and {max}"),
                help,
            );
            None
        } else {
            Some(n)
        }
    }

    pub(super) fn duration(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Duration {
        let Some(v) = v else { return default };
        match parse_duration(v.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                self.report(
                    v,
                    field,
                    format!("{field} = {:?}: {e}", v.get_ref()),
                    "write e.g. \"500ms\", \"10s\" or \"1m\"",
                );
                default
            }
        }
    }
}

pub(super) fn validate(
    file: &str,
    text: &str,
    raw: RawService,
) -> Result<ServiceSpec, Diagnostics> {
    let mut cx = Ctx {
        file,
        text,
        problems: Vec::new(),
    };
    let (kind, job) = super::job::validate(&mut cx, &raw);

    let name = match ServiceName::new(raw.name.get_ref().clone()) {
        Ok(n) if crate::ids::RESERVED_SERVICE_NAMES.contains(&n.as_str()) => {
            cx.report(
                &raw.name,
                "name",
                format!(
                    "name = {:?} is reserved: the cluster's DNS gives it a meaning of its own",
                    n.as_str()
                ),
                "choose another name (reserved: tasks, dash)",
            );
            None
        }
        Ok(n) => Some(n),
        Err(e) => {
            cx.report(&raw.name, "name", e.to_string(), "e.g. name = \"web\"");
            None
        }
    };

    let image = raw.image.get_ref().trim().to_string();
    if let Err(e) = crate::image_ref::normalize(&image) {
        cx.report(
            &raw.image,
            "image",
            format!(
                "image = {:?}: not an image reference: {}",
                raw.image.get_ref(),
                e.reason
            ),
            "e.g. image = \"busybox:latest\", \"registry.example:5000/team/web:1.4\" or \
             \"busybox@sha256:<64 lowercase hex digits>\"",
        );
    }

    let command = match raw.command.as_ref().map(Spanned::get_ref) {
        None => Vec::new(),
        Some(StringOrList::List(l)) => l.clone(),
        // The string form runs through a shell, like a Dockerfile's shell form.
        Some(StringOrList::String(s)) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
    };
    if let Some(c) = &raw.command
        && (command.is_empty() || command[0].is_empty())
    {
        cx.report(
            c,
            "command",
            "command is empty".into(),
            "remove it to use the image's entrypoint, or name a program",
        );
    }
    let args = raw.args.map(Spanned::into_inner).unwrap_or_default();

    let mut env = BTreeMap::new();
    for (k, v) in raw.env.unwrap_or_default() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            cx.report(
                &v,
                "env",
                format!("env key {k:?} is not a variable name"),
                "names may not be empty or contain '='",
            );
        }
        env.insert(k, v.into_inner().into_string());
    }

    let replicas = match &raw.replicas {
        None => 1,
        Some(r) => cx
            .int(
                r,
                "replicas",
                0,
                i64::from(MAX_REPLICAS),
                "set replicas = 1, say",
            )
            .map_or(1, |n| n as u32),
    };

    let mode = match raw.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "replicated")) => Mode::Replicated,
        Some((_, "global")) => Mode::Global,
        Some((m, other)) => {
            cx.report(
                m,
                "mode",
                format!("mode = {other:?}: unknown mode"),
                "use \"replicated\" (replicas copies) or \"global\" (one per node)",
            );
            Mode::Replicated
        }
    };

    let resources = resources(&mut cx, raw.resources);
    let ports = ports(&mut cx, raw.ports.unwrap_or_default());
    let health = raw.health.and_then(|h| health(&mut cx, h));
    let restart = match kind {
        // The worker never restarts an attempt: a failed one is retried as a new replica,
        // by the masters, up to [job] backoff_limit; the back-off between is the default's.
        Kind::Job => RestartPolicy {
            condition: RestartCondition::Never,
            ..RestartPolicy::default()
        },
        Kind::Service => restart(&mut cx, raw.restart.map(Spanned::into_inner)),
    };
    let update = update(&mut cx, raw.update);

    let labels = raw
        .labels
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_inner()))
        .collect();

    let mut placement = Placement::default();
    if let Some(p) = raw.placement {
        for c in p.constraints.unwrap_or_default() {
            match Constraint::parse(c.get_ref()) {
                Ok(parsed) => placement.constraints.push(parsed),
                Err(e) => cx.report(
                    &c,
                    "placement.constraints",
                    format!("{:?}: {e}", c.get_ref()),
                    "e.g. \"node.labels.zone == a\"",
                ),
            }
        }
        if let Some(m) = &p.max_per_node {
            placement.max_per_node = cx
                .int(
                    m,
                    "placement.max_per_node",
                    0,
                    i64::from(MAX_REPLICAS),
                    "0 means no limit",
                )
                .unwrap_or(0) as u32;
        }
    }

    let stop_grace = cx.duration(
        &raw.stop_grace_period,
        "stop_grace_period",
        crate::spec::default_stop_grace(),
    );
    if stop_grace > Duration::from_secs(3600)
        && let Some(v) = &raw.stop_grace_period
    {
        cx.report(
            v,
            "stop_grace_period",
            format!("stop_grace_period = {:?}: longer than an hour", v.get_ref()),
            "e.g. stop_grace_period = \"10s\"",
        );
    }

    let pull_policy = match raw.pull_policy.as_ref().map(|p| (p, p.get_ref().as_str())) {
        None => PullPolicy::IfNotPresent,
        Some((_, "if-not-present")) => PullPolicy::IfNotPresent,
        Some((_, "always")) => PullPolicy::Always,
        Some((_, "never")) => PullPolicy::Never,
        Some((p, other)) => {
            cx.report(
                p,
                "pull_policy",
                format!("pull_policy = {other:?}: unknown policy"),
                "use \"if-not-present\", \"always\" or \"never\"",
            );
            PullPolicy::IfNotPresent
        }
    };

    let routes = routes(&mut cx, raw.routes.unwrap_or_default());
    if let Some(a) = &raw.autoscale
        && let Some(r) = &a.get_ref().requests_per_second
        && routes.is_empty()
    {
        cx.report(
            r,
            "autoscale.requests_per_second",
            "autoscale.requests_per_second without [[routes]]: requests are counted by the proxy routes".into(),
            "add a [[routes]] section, or scale on cpu_percent",
        );
    }
    if let Some(a) = &raw.autoscale
        && let Some(m) = &a.get_ref().memory_percent
        && resources.memory_bytes == 0
    {
        cx.report(
            m,
            "autoscale.memory_percent",
            "autoscale.memory_percent without resources.memory: the percent is of the replica's memory limit".into(),
            "set [resources] memory = \"256MiB\", say, or scale on cpu_percent",
        );
    }
    let autoscale = raw.autoscale.and_then(|a| autoscale(&mut cx, a, mode));
    // Start within the bounds: replicas defaults to min, and is kept between min and max.
    let replicas = match (&autoscale, &raw.replicas) {
        (Some(a), None) => a.min,
        (Some(a), Some(r)) if replicas < a.min || replicas > a.max => {
            cx.report(
                r,
                "replicas",
                format!(
                    "replicas = {replicas}: outside autoscale.min..autoscale.max ({}..{})",
                    a.min, a.max
                ),
                "leave replicas out: an autoscaled service starts with autoscale.min",
            );
            replicas
        }
        _ => replicas,
    };

    // A job's replicas are its runs' attempts, created by the masters run by run.
    let replicas = if kind == Kind::Job { 0 } else { replicas };
    let networks = networks(&mut cx, raw.networks);
    let security = security(&mut cx, raw.security);
    let secrets = file_refs(&mut cx, crate::secret::Kind::Secret, raw.secrets);
    let configs = file_refs(&mut cx, crate::secret::Kind::Config, raw.configs);

    match name {
        Some(name) if cx.problems.is_empty() => Ok(ServiceSpec {
            name,
            image,
            command,
            args,
            env,
            replicas,
            mode,
            resources,
            ports,
            health,
            restart,
            update,
            labels,
            placement,
            stop_grace,
            pull_policy,
            routes,
            autoscale,
            networks,
            security,
            secrets,
            configs,
            kind,
            job,
        }),
        _ => {
            cx.problems.sort_by_key(|d| (d.line, d.column));
            Err(Diagnostics(cx.problems))
        }
    }
}

fn security(cx: &mut Ctx<'_>, raw: Option<raw::RawSecurity>) -> crate::spec::Security {
    use crate::spec::{Seccomp, Security};
    let Some(raw) = raw else {
        return Security::default();
    };
    let seccomp = match raw.seccomp.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "default")) => Seccomp::Default,
        Some((_, "unconfined")) => Seccomp::Unconfined,
        Some((s, "")) => {
            cx.report(
                s,
                "security.seccomp",
                "security.seccomp = \"\": empty".into(),
                "use \"default\", \"unconfined\" or the path of a profile (Docker's JSON format)",
            );
            Seccomp::Default
        }
        // A profile of the service's own: `dash apply` sends the file with the service file
        // and the masters check it (a file is not the parser's to read).
        Some((_, path)) => Seccomp::Profile {
            path: path.to_string(),
            profile: String::new(),
        },
    };
    let mut caps = |field: &str, list: &Option<Spanned<Vec<String>>>| -> Vec<String> {
        let Some(list) = list else { return Vec::new() };
        let mut out = Vec::new();
        for name in list.get_ref() {
            let upper = name.to_ascii_uppercase();
            let full = if upper == "ALL" || upper.starts_with("CAP_") {
                upper
            } else {
                format!("CAP_{upper}")
            };
            if full != "ALL" && !crate::spec::is_capability(&full) {
                cx.report(
                    list,
                    field,
                    format!("{field}: {name:?} is not a Linux capability"),
                    "use a name like \"NET_RAW\" or \"CAP_NET_ADMIN\" (see capabilities(7)), or \"ALL\"",
                );
            } else if !out.contains(&full) {
                out.push(full);
            }
        }
        out
    };
    let cap_add = caps("security.cap_add", &raw.cap_add);
    let cap_drop = caps("security.cap_drop", &raw.cap_drop);
    Security {
        seccomp,
        cap_add,
        cap_drop,
        user_namespace: raw.user_namespace.map(|u| *u.get_ref()),
    }
}

/// At most this many secrets (and as many configs) per service.
pub const MAX_FILE_REFS: usize = 64;

/// `[[secrets]]` or `[[configs]]`: each names an existing one (checked by the masters), a
/// target of its own, an owner and a mode.
fn file_refs(
    cx: &mut Ctx<'_>,
    kind: crate::secret::Kind,
    raw: Option<Vec<Spanned<raw::RawFileRef>>>,
) -> Vec<crate::spec::FileRef> {
    use crate::secret::{Kind, check_config_target, check_name};
    let table = kind.plural();
    let raw = raw.unwrap_or_default();
    let mut out: Vec<crate::spec::FileRef> = Vec::new();
    if raw.len() > MAX_FILE_REFS {
        cx.report(
            &raw[MAX_FILE_REFS],
            table,
            format!("{} [[{table}]]: more than {MAX_FILE_REFS}", raw.len()),
            "a service lists at most 64",
        );
        return out;
    }
    for (i, r) in raw.iter().enumerate() {
        let v = r.get_ref();
        let field = |f: &str| format!("{table}[{i}].{f}");
        let name = v.name.get_ref().clone();
        if let Err(e) = check_name(&name) {
            cx.report(
                &v.name,
                &field("name"),
                format!("{}: {e}", field("name")),
                "",
            );
        }
        let target = match (&v.target, kind) {
            (None, Kind::Secret) => name.clone(),
            (None, Kind::Config) => format!("/{name}"),
            (Some(t), _) => t.get_ref().clone(),
        };
        let checked = match kind {
            Kind::Secret => check_name(&target).map_err(|e| {
                format!("{e}; a secret's target is its file's name under /run/secrets")
            }),
            Kind::Config => check_config_target(&target),
        };
        if let (Err(e), Some(t)) = (checked, &v.target) {
            cx.report(t, &field("target"), format!("{}: {e}", field("target")), "");
        }
        let id = |cx: &mut Ctx<'_>, x: &Option<Spanned<i64>>, f: &str| {
            x.as_ref()
                .and_then(|x| {
                    cx.int(
                        x,
                        &field(f),
                        0,
                        4_294_967_294,
                        "a uid or gid, e.g. 0 or 101",
                    )
                })
                .map_or(0, |n| n as u32)
        };
        let uid = id(cx, &v.uid, "uid");
        let gid = id(cx, &v.gid, "gid");
        let default_mode = match kind {
            Kind::Secret => 0o400,
            Kind::Config => 0o444,
        };
        let mode = match &v.mode {
            None => default_mode,
            Some(m) => {
                let parsed = match m.get_ref() {
                    raw::ModeValue::Integer(n) => u32::try_from(*n).ok(),
                    raw::ModeValue::String(s) => {
                        u32::from_str_radix(s.trim_start_matches("0o"), 8).ok()
                    }
                };
                match parsed.filter(|m| *m <= 0o777) {
                    Some(m) => m,
                    None => {
                        cx.report(
                            m,
                            &field("mode"),
                            format!("{}: not permission bits (0 to 0777)", field("mode")),
                            "e.g. mode = \"0440\" or mode = 0o440",
                        );
                        default_mode
                    }
                }
            }
        };
        if out.iter().any(|o| o.target == target) {
            cx.report(
                r,
                &field("target"),
                format!(
                    "{}: {target:?} is the target of an earlier entry",
                    field("target")
                ),
                "give each its own target",
            );
        }
        out.push(crate::spec::FileRef {
            name,
            target,
            uid,
            gid,
            mode,
            version: 0,
        });
    }
    out
}

/// At most this many networks per service.
pub const MAX_NETWORKS: usize = 16;

fn networks(cx: &mut Ctx<'_>, raw: Option<Spanned<Vec<String>>>) -> Vec<String> {
    let Some(raw) = raw else {
        return crate::spec::default_networks();
    };
    let list = raw.get_ref();
    if list.is_empty() {
        cx.report(
            &raw,
            "networks",
            "networks = []: a service is on at least one network".into(),
            "leave networks out for the \"default\" network",
        );
    }
    if list.len() > MAX_NETWORKS {
        cx.report(
            &raw,
            "networks",
            format!(
                "networks: {} networks, more than {MAX_NETWORKS}",
                list.len()
            ),
            "put the service on fewer networks",
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for n in list {
        if let Err(e) = crate::ids::check_dns_label("network name", n, 63) {
            cx.report(
                &raw,
                "networks",
                format!("networks: {e}"),
                "a network name is a DNS label, e.g. \"backend\"",
            );
        } else if !seen.insert(n.as_str()) {
            cx.report(
                &raw,
                "networks",
                format!("networks: {n:?} is listed twice"),
                "list each network once",
            );
        }
    }
    list.clone()
}

fn resources(cx: &mut Ctx<'_>, raw: Option<raw::RawResources>) -> Resources {
    let mut out = Resources::default();
    let Some(raw) = raw else { return out };
    if let Some(cpu) = &raw.cpu {
        let v = cpu.get_ref().as_f64();
        if !(0.0..=1024.0).contains(&v) || !v.is_finite() {
            cx.report(
                cpu,
                "resources.cpu",
                format!("resources.cpu = {v}: must be between 0 and 1024 cores"),
                "e.g. cpu = 0.5 for half a core",
            );
        } else {
            out.cpu_millis = (v * 1000.0).round() as u32;
        }
    }
    if let Some(mem) = &raw.memory {
        let parsed = match mem.get_ref() {
            SizeValue::Bytes(b) if *b >= 0 => Ok(*b as u64),
            SizeValue::Bytes(b) => Err(format!("{b} is negative")),
            SizeValue::Text(t) => parse_size(t),
        };
        const MIN: u64 = 4 << 20;
        const MAX: u64 = 16 << 40;
        match parsed {
            Ok(0) => {}
            Ok(b) if (MIN..=MAX).contains(&b) => out.memory_bytes = b,
            Ok(b) => cx.report(mem, "resources.memory", format!("resources.memory = {b} bytes: must be between 4MiB and 16TiB (or 0 for no limit)"), "e.g. memory = \"64MiB\""),
            Err(e) => cx.report(mem, "resources.memory", format!("resources.memory: {e}"), "e.g. memory = \"64MiB\""),
        }
    }
    out
}

fn ports(cx: &mut Ctx<'_>, raw: Vec<Spanned<raw::RawPort>>) -> Vec<PortSpec> {
    let mut out = Vec::new();
    let mut published_seen = HashSet::new();
    for p in raw {
        let r = p.get_ref();
        let container = cx.int(
            &r.container,
            "ports.container",
            1,
            65535,
            "a TCP/UDP port number",
        );
        let published = r
            .published
            .as_ref()
            .and_then(|v| cx.int(v, "ports.published", 1, 65535, "a TCP/UDP port number"));
        let protocol = match r.protocol.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None => Some(Protocol::Tcp),
            Some((_, "tcp")) => Some(Protocol::Tcp),
            Some((_, "udp")) => Some(Protocol::Udp),
            Some((s, other)) => {
                cx.report(
                    s,
                    "ports.protocol",
                    format!("ports.protocol = {other:?}: unknown protocol"),
                    "use \"tcp\" or \"udp\"",
                );
                None
            }
        };
        if let (Some(pb), Some(proto)) = (published, protocol)
            && !published_seen.insert((pb, proto))
        {
            cx.report(
                &p,
                "ports.published",
                format!("ports.published = {pb}: published twice"),
                "each published port may appear once per protocol",
            );
        }
        if let (Some(container), Some(protocol)) = (container, protocol) {
            out.push(PortSpec {
                container: container as u16,
                published: published.map(|p| p as u16),
                protocol,
            });
        }
    }
    out
}

fn health(cx: &mut Ctx<'_>, h: Spanned<raw::RawHealth>) -> Option<HealthCheck> {
    let r = h.get_ref();
    let port = r
        .port
        .as_ref()
        .and_then(|p| cx.int(p, "health.port", 1, 65535, "the container port to probe"));
    let kinds = usize::from(r.http.is_some())
        + usize::from(r.tcp.is_some())
        + usize::from(r.exec.is_some());
    if kinds != 1 {
        cx.report(&h, "health", format!("found {kinds} probe kinds"), "set exactly one of health.http = \"/path\", health.tcp = true, health.exec = [\"cmd\"]");
        return None;
    }
    let probe = if let Some(path) = &r.http {
        if !path.get_ref().starts_with('/') {
            cx.report(
                path,
                "health.http",
                format!("health.http = {:?}: not a path", path.get_ref()),
                "write the path to GET, e.g. \"/healthz\"",
            );
        }
        let Some(port) = port else {
            cx.report(
                &h,
                "health.port",
                "an http check needs a port".into(),
                "add health.port = <container port>",
            );
            return None;
        };
        Probe::Http {
            path: path.get_ref().clone(),
            port: port as u16,
        }
    } else if let Some(tcp) = &r.tcp {
        if !tcp.get_ref() {
            cx.report(
                tcp,
                "health.tcp",
                "health.tcp = false".into(),
                "remove [health] to disable checks",
            );
        }
        let Some(port) = port else {
            cx.report(
                &h,
                "health.port",
                "a tcp check needs a port".into(),
                "add health.port = <container port>",
            );
            return None;
        };
        Probe::Tcp { port: port as u16 }
    } else {
        let command = match r.exec.as_ref().map(Spanned::get_ref) {
            Some(StringOrList::List(l)) => l.clone(),
            Some(StringOrList::String(s)) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            None => Vec::new(),
        };
        if command.is_empty() {
            cx.report(
                &h,
                "health.exec",
                "health.exec is empty".into(),
                "name a command, e.g. [\"cat\", \"/tmp/ready\"]",
            );
        }
        Probe::Exec { command }
    };
    let interval = cx.duration(&r.interval, "health.interval", Duration::from_secs(5));
    let timeout = cx.duration(&r.timeout, "health.timeout", Duration::from_secs(2));
    let start_period = cx.duration(&r.start_period, "health.start_period", Duration::ZERO);
    let retries = r
        .retries
        .as_ref()
        .and_then(|v| {
            cx.int(
                v,
                "health.retries",
                1,
                100,
                "how many failures in a row make a replica unhealthy",
            )
        })
        .unwrap_or(3) as u32;
    if interval < Duration::from_millis(100) {
        cx.report(
            &h,
            "health.interval",
            format!("health.interval = {interval:?}: too short"),
            "at least 100ms",
        );
    }
    if timeout.is_zero() || timeout > interval.max(Duration::from_millis(100)) {
        cx.report(&h, "health.timeout", format!("health.timeout = {timeout:?}: must be more than 0 and at most the interval ({interval:?})"), "e.g. timeout = \"1s\"");
    }
    Some(HealthCheck {
        probe,
        interval,
        timeout,
        retries,
        start_period,
        restart: r.restart.as_ref().is_some_and(|b| *b.get_ref()),
    })
}

fn restart(cx: &mut Ctx<'_>, raw: Option<raw::RawRestart>) -> RestartPolicy {
    let mut out = RestartPolicy::default();
    let Some(r) = raw else { return out };
    if let Some(p) = &r.policy {
        out.condition = match p.get_ref().as_str() {
            "always" => RestartCondition::Always,
            "on-failure" => RestartCondition::OnFailure,
            "never" | "no" => RestartCondition::Never,
            other => {
                cx.report(
                    p,
                    "restart.policy",
                    format!("restart.policy = {other:?}: unknown policy"),
                    "use \"always\", \"on-failure\" or \"never\"",
                );
                out.condition
            }
        };
    }
    if let Some(m) = &r.max_attempts {
        out.max_attempts = cx
            .int(m, "restart.max_attempts", 0, 1_000_000, "0 means no limit")
            .unwrap_or(0) as u32;
    }
    out.backoff = cx.duration(&r.backoff, "restart.backoff", out.backoff);
    out.max_backoff = cx.duration(&r.max_backoff, "restart.max_backoff", out.max_backoff);
    if out.max_backoff < out.backoff
        && let Some(b) = &r.max_backoff
    {
        cx.report(
            b,
            "restart.max_backoff",
            format!(
                "restart.max_backoff = {:?} is shorter than restart.backoff ({:?})",
                out.max_backoff, out.backoff
            ),
            "make max_backoff at least backoff",
        );
    }
    out
}

fn update(cx: &mut Ctx<'_>, raw: Option<raw::RawUpdate>) -> UpdatePolicy {
    let mut out = UpdatePolicy::default();
    let Some(u) = raw else { return out };
    if let Some(p) = &u.parallelism {
        out.parallelism = cx
            .int(
                p,
                "update.parallelism",
                1,
                i64::from(MAX_REPLICAS),
                "how many replicas to replace at once",
            )
            .unwrap_or(1) as u32;
    }
    out.delay = cx.duration(&u.delay, "update.delay", out.delay);
    if let Some(o) = &u.order {
        out.order = match o.get_ref().as_str() {
            "stop-first" => UpdateOrder::StopFirst,
            "start-first" => UpdateOrder::StartFirst,
            other => {
                cx.report(
                    o,
                    "update.order",
                    format!("update.order = {other:?}: unknown order"),
                    "use \"stop-first\" or \"start-first\"",
                );
                out.order
            }
        };
    }
    out
}

fn routes(cx: &mut Ctx<'_>, raw: Vec<Spanned<raw::RawRoute>>) -> Vec<RouteSpec> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for r in raw {
        let v = r.get_ref();
        let host = v.host.get_ref().trim().to_ascii_lowercase();
        let bare = host.strip_prefix("*.").unwrap_or(&host);
        let valid_host = !bare.is_empty()
            && bare.len() <= 253
            && bare.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid_host {
            cx.report(
                &v.host,
                "routes.host",
                format!("routes.host = {:?}: not a host name", v.host.get_ref()),
                "an exact name like \"web.local\" or a wildcard like \"*.example.com\"",
            );
        }
        let path = v
            .path_prefix
            .as_ref()
            .map_or_else(|| "/".to_string(), |p| p.get_ref().clone());
        if (!path.starts_with('/') || path.contains(char::is_whitespace))
            && let Some(p) = &v.path_prefix
        {
            cx.report(
                p,
                "routes.path_prefix",
                format!("routes.path_prefix = {path:?}: not a path"),
                "start it with '/', e.g. \"/api\"",
            );
        }
        let port = cx.int(
            &v.port,
            "routes.port",
            1,
            65535,
            "the container port the route goes to",
        );
        if valid_host && !seen.insert((host.clone(), path.clone())) {
            cx.report(
                &r,
                "routes",
                format!("route {host}{path} appears twice"),
                "each host and path prefix may appear once",
            );
        }
        if let Some(port) = port {
            out.push(RouteSpec {
                host,
                path_prefix: path,
                strip_prefix: v.strip_prefix.unwrap_or(false),
                port: port as u16,
            });
        }
    }
    out
}

fn autoscale(cx: &mut Ctx<'_>, raw: Spanned<raw::RawAutoscale>, mode: Mode) -> Option<Autoscale> {
    let a = raw.get_ref();
    let max_replicas = i64::from(MAX_REPLICAS);
    let mut ok = true;
    if mode == Mode::Global {
        cx.report(
            &raw,
            "autoscale",
            "autoscale with mode = \"global\": a global service runs one replica per node".into(),
            "remove [autoscale], or use mode = \"replicated\"",
        );
        ok = false;
    }
    let min = match &a.min {
        None => Some(1),
        Some(m) => cx.int(
            m,
            "autoscale.min",
            1,
            max_replicas,
            "at least 1: the load of a service without replicas cannot be measured",
        ),
    };
    let max = cx.int(&a.max, "autoscale.max", 1, max_replicas, "e.g. max = 10");
    if let (Some(lo), Some(hi)) = (min, max)
        && hi < lo
    {
        cx.report(
            &a.max,
            "autoscale.max",
            format!("autoscale.max = {hi}: less than autoscale.min = {lo}"),
            "max must be at least min",
        );
        ok = false;
    }
    let cpu_percent = a.cpu_percent.as_ref().map(|c| {
        cx.int(
            c,
            "autoscale.cpu_percent",
            1,
            1000,
            "percent of the replica's resources.cpu, e.g. cpu_percent = 70",
        )
    });
    let memory_percent = a.memory_percent.as_ref().map(|m| {
        cx.int(
            m,
            "autoscale.memory_percent",
            1,
            100,
            "percent of the replica's resources.memory, e.g. memory_percent = 80",
        )
    });
    let requests_per_second = a.requests_per_second.as_ref().map(|r| {
        cx.int(
            r,
            "autoscale.requests_per_second",
            1,
            1_000_000,
            "requests per second per replica, e.g. requests_per_second = 100",
        )
    });
    if cpu_percent.is_none() && memory_percent.is_none() && requests_per_second.is_none() {
        cx.report(
            &raw,
            "autoscale",
            "[autoscale] has no target: nothing to scale on".into(),
            "set cpu_percent = 70, memory_percent = 80 or requests_per_second = 100 (one or more)",
        );
        ok = false;
    }
    let scale_down_delay = cx.duration(
        &a.scale_down_delay,
        "autoscale.scale_down_delay",
        crate::spec::default_scale_down_delay(),
    );
    let (Some(min), Some(max), Some(cpu_percent), Some(memory_percent), Some(requests_per_second)) = (
        min,
        max,
        cpu_percent.map_or(Some(None), |c| c.map(Some)),
        memory_percent.map_or(Some(None), |m| m.map(Some)),
        requests_per_second.map_or(Some(None), |r| r.map(Some)),
    ) else {
        return None;
    };
    ok.then_some(Autoscale {
        min: min as u32,
        max: max as u32,
        cpu_percent: cpu_percent.map(|c| c as u32),
        memory_percent: memory_percent.map(|m| m as u32),
        requests_per_second: requests_per_second.map(|r| r as u32),
        scale_down_delay,
    })
}
