use std::time::Duration;

use super::*;
use crate::spec::{Probe, Protocol, RestartCondition, UpdateOrder};

const FULL: &str = r#"
name = "web"
image = "busybox:latest"
command = ["httpd"]
args = ["-f", "-p", "8080", "-h", "/www"]
replicas = 3
stop_grace_period = "3s"
pull_policy = "always"

[env]
GREETING = "hello"
WORKERS = 4

[resources]
cpu = 0.5
memory = "64MiB"

[[ports]]
container = 8080
published = 18080

[[ports]]
container = 53
protocol = "udp"

[health]
http = "/"
port = 8080
interval = "2s"
timeout = "500ms"
retries = 2
start_period = "1s"

[restart]
policy = "on-failure"
max_attempts = 5
backoff = "100ms"
max_backoff = "5s"

[update]
parallelism = 2
delay = "1s"
order = "start-first"

[labels]
team = "a"

[placement]
constraints = ["node.labels.zone == eu", "node.name != n2"]
max_per_node = 2
"#;

fn err(text: &str) -> Diagnostics {
    parse_service("web.toml", text).expect_err("should fail")
}

/// `base` followed by each case's `body` is refused; its first diagnostic is on a field that
/// starts with the case's `field` and its message holds the case's `words`.
fn assert_each_names_the_field(base: &str, cases: &[(&str, &str, &str)]) {
    for (body, field, words) in cases {
        let e = err(&format!("{base}{body}"));
        let d = &e.0[0];
        assert!(d.field.starts_with(field), "{body}: {d:?}");
        assert!(d.message.contains(words), "{body}: {d:?}");
    }
}

#[test]
fn full_file_parses() {
    let s = parse_service("web.toml", FULL).unwrap();
    assert_eq!(s.name.as_str(), "web");
    assert_eq!(s.replicas, 3);
    assert_eq!(s.command, vec!["httpd"]);
    assert_eq!(s.env["WORKERS"], "4");
    assert_eq!(s.resources.cpu_millis, 500);
    assert_eq!(s.resources.memory_bytes, 64 << 20);
    assert_eq!(s.ports.len(), 2);
    assert_eq!(s.ports[0].published, Some(18080));
    assert_eq!(s.ports[1].protocol, Protocol::Udp);
    let h = s.health.unwrap();
    assert_eq!(
        h.probe,
        Probe::Http {
            path: "/".into(),
            port: 8080
        }
    );
    assert_eq!(h.timeout, Duration::from_millis(500));
    assert_eq!(s.restart.condition, RestartCondition::OnFailure);
    assert_eq!(s.restart.max_attempts, 5);
    assert_eq!(s.update.order, UpdateOrder::StartFirst);
    assert_eq!(s.placement.constraints.len(), 2);
    assert_eq!(s.placement.max_per_node, 2);
    assert_eq!(s.stop_grace, Duration::from_secs(3));
    assert_eq!(s.pull_policy, crate::spec::PullPolicy::Always);
}

#[test]
fn minimal_file_gets_defaults() {
    let s = parse_service("m.toml", "name = \"a\"\nimage = \"busybox\"\n").unwrap();
    assert_eq!(s.replicas, 1);
    assert_eq!(s.restart.condition, RestartCondition::Always);
    assert!(s.health.is_none());
    assert_eq!(s.stop_grace, Duration::from_secs(10));
}

#[test]
fn shell_form_command() {
    let s = parse_service(
        "m.toml",
        "name = \"a\"\nimage = \"b\"\ncommand = \"echo hi; sleep 1\"\n",
    )
    .unwrap();
    assert_eq!(s.command, vec!["/bin/sh", "-c", "echo hi; sleep 1"]);
}

#[test]
fn empty_file() {
    let e = err("   \n");
    assert!(e.to_string().contains("the file is empty"), "{e}");
    assert!(e.to_string().starts_with("web.toml:1:1"));
}

#[test]
fn unknown_field_suggests() {
    let e = err("name = \"web\"\nimage = \"b\"\nreplcas = 3\n");
    let d = e.first().unwrap();
    assert_eq!(d.line, 3, "{e}");
    assert_eq!(d.field, "replcas");
    assert!(d.message.contains("unknown field `replcas`"), "{e}");
    assert_eq!(d.help.as_deref(), Some("did you mean `replicas`?"));
}

#[test]
fn unknown_field_in_table_suggests() {
    let e = err("name = \"web\"\nimage = \"b\"\n[resources]\nmemroy = \"1GiB\"\n");
    let d = e.first().unwrap();
    assert_eq!(d.field, "resources.memroy", "{e}");
    assert_eq!(d.help.as_deref(), Some("did you mean `memory`?"));
}

#[test]
fn wrong_type_names_field_and_position() {
    let e = err("name = \"web\"\nimage = \"b\"\nreplicas = \"three\"\n");
    let d = e.first().unwrap();
    assert_eq!((d.line, d.field.as_str()), (3, "replicas"), "{e}");
    assert!(d.message.contains("invalid type"), "{e}");
}

#[test]
fn health_restart_is_a_boolean_off_by_default() {
    let base = "name = \"web\"\nimage = \"b\"\n[health]\ntcp = true\nport = 80\n";
    let off = parse_service("web.toml", base).unwrap();
    assert!(!off.health.unwrap().restart);
    let on = parse_service("web.toml", &format!("{base}restart = true\n")).unwrap();
    assert!(on.health.unwrap().restart);
    let e = err(&format!("{base}restart = \"yes\"\n"));
    let d = e.first().unwrap();
    assert_eq!(d.field, "health.restart", "{e}");
    assert!(d.message.contains("invalid type"), "{e}");
}

#[test]
fn huge_numbers() {
    let e = err("name = \"web\"\nimage = \"b\"\nreplicas = 99999999999999999999999\n");
    assert_eq!(e.first().unwrap().line, 3, "{e}");
    let e = err("name = \"web\"\nimage = \"b\"\nreplicas = 1000000\n");
    let d = e.first().unwrap();
    assert_eq!(d.field, "replicas");
    assert!(d.message.contains("1000000"), "{e}");
    let e = err("name = \"web\"\nimage = \"b\"\n[resources]\nmemory = \"9999999TiB\"\n");
    assert_eq!(e.first().unwrap().field, "resources.memory", "{e}");
}

#[test]
fn negative_replicas() {
    let e = err("name = \"web\"\nimage = \"b\"\nreplicas = -1\n");
    assert_eq!(
        e.to_string(),
        "web.toml:3:12: replicas: replicas = -1: must be between 0 and 100000; set replicas = 1, say"
    );
}

#[test]
fn all_semantic_errors_at_once() {
    let e = err(
        "name = \"Web_1\"\nimage = \"b\"\nreplicas = -1\n[resources]\nmemory = \"1KiB\"\n[restart]\npolicy = \"sometimes\"\n",
    );
    let fields: Vec<_> = e.0.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        ["name", "replicas", "resources.memory", "restart.policy"],
        "{e}"
    );
}

#[test]
fn bad_ports_and_health() {
    let e =
        err("name = \"w\"\nimage = \"b\"\n[[ports]]\ncontainer = 70000\n[health]\nhttp = \"/\"\n");
    let fields: Vec<_> = e.0.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["ports.container", "health.port"], "{e}");
    let e = err("name = \"w\"\nimage = \"b\"\n[health]\nhttp = \"/\"\ntcp = true\nport = 80\n");
    assert_eq!(e.first().unwrap().field, "health", "{e}");
    let e = err(
        "name = \"w\"\nimage = \"b\"\n[[ports]]\ncontainer = 80\npublished = 8080\n[[ports]]\ncontainer = 81\npublished = 8080\n",
    );
    assert_eq!(e.first().unwrap().field, "ports.published", "{e}");
}

#[test]
fn bad_durations() {
    let e = err("name = \"w\"\nimage = \"b\"\n[update]\ndelay = \"soon\"\n");
    assert_eq!(e.first().unwrap().field, "update.delay", "{e}");
}

#[test]
fn syntax_error_position() {
    let e = err("name = \"w\"\nimage = \n");
    assert_eq!(e.first().unwrap().line, 2, "{e}");
}

#[test]
fn missing_required_field() {
    let e = err("name = \"w\"\n");
    assert!(e.to_string().contains("missing field `image`"), "{e}");
}

#[test]
fn stop_grace_period_bounds() {
    let e = err("name = \"w\"\nimage = \"b\"\nstop_grace_period = \"2h\"\n");
    assert_eq!(e.first().unwrap().field, "stop_grace_period", "{e}");
    let e = err("name = \"w\"\nimage = \"b\"\nstop_grace_period = \"soon\"\n");
    assert_eq!(e.first().unwrap().field, "stop_grace_period", "{e}");
}

#[test]
fn bad_pull_policy() {
    let e = err("name = \"w\"\nimage = \"b\"\npull_policy = \"sometimes\"\n");
    let d = e.first().unwrap();
    assert_eq!(d.field, "pull_policy", "{e}");
    assert!(d.help.as_deref().unwrap().contains("if-not-present"), "{e}");
}

#[test]
fn routes() {
    let s = parse_service(
        "r.toml",
        "name = \"w\"\nimage = \"b\"\n[[routes]]\nhost = \"Web.Local\"\nport = 8080\n[[routes]]\nhost = \"*.example.com\"\npath_prefix = \"/api\"\nstrip_prefix = true\nport = 9090\n",
    )
    .unwrap();
    assert_eq!(s.routes.len(), 2);
    assert_eq!(
        (s.routes[0].host.as_str(), s.routes[0].path_prefix.as_str()),
        ("web.local", "/")
    );
    assert!(s.routes[1].strip_prefix);
    let e = err(
        "name = \"w\"\nimage = \"b\"\n[[routes]]\nhost = \"bad host\"\npath_prefix = \"api\"\nport = 0\n",
    );
    let fields: Vec<_> = e.0.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        ["routes.host", "routes.path_prefix", "routes.port"],
        "{e}"
    );
    let e = err(
        "name = \"w\"\nimage = \"b\"\n[[routes]]\nhost = \"a.b\"\nport = 1\n[[routes]]\nhost = \"a.b\"\nport = 2\n",
    );
    assert_eq!(e.first().unwrap().field, "routes", "{e}");
}

#[test]
fn autoscale_parses_and_starts_at_min() {
    let s = parse_service(
        "web.toml",
        "name = \"web\"\nimage = \"b\"\n[[routes]]\nhost = \"w\"\nport = 80\n[autoscale]\nmin = 2\nmax = 8\ncpu_percent = 70\nrequests_per_second = 50\nscale_down_delay = \"30s\"\n",
    )
    .unwrap();
    assert_eq!(s.replicas, 2);
    let a = s.autoscale.unwrap();
    assert_eq!((a.min, a.max), (2, 8));
    assert_eq!(a.cpu_percent, Some(70));
    assert_eq!(a.requests_per_second, Some(50));
    assert_eq!(a.scale_down_delay, Duration::from_secs(30));
    let s = parse_service(
        "web.toml",
        "name = \"web\"\nimage = \"b\"\n[[routes]]\nhost = \"w\"\nport = 80\n[autoscale]\nmax = 3\nrequests_per_second = 5\n",
    )
    .unwrap();
    let a = s.autoscale.unwrap();
    assert_eq!((s.replicas, a.min, a.cpu_percent), (1, 1, None));
    assert_eq!(a.scale_down_delay, Duration::from_secs(60));
}

#[test]
fn bad_autoscale_names_each_field() {
    let e = err("name = \"web\"\nimage = \"b\"\n[autoscale]\nmin = 0\nmax = 3\ncpu_percent = 0\n");
    let fields: Vec<_> = e.0.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["autoscale.min", "autoscale.cpu_percent"], "{e}");
    let e = err("name = \"web\"\nimage = \"b\"\n[autoscale]\nmin = 5\nmax = 3\ncpu_percent = 50\n");
    assert!(
        e.to_string()
            .contains("autoscale.max = 3: less than autoscale.min = 5"),
        "{e}"
    );
    let e = err("name = \"web\"\nimage = \"b\"\n[autoscale]\nmax = 3\n");
    assert!(e.to_string().contains("has no target"), "{e}");
    let e = err(
        "name = \"web\"\nimage = \"b\"\nreplicas = 9\n[autoscale]\nmax = 3\ncpu_percent = 50\n",
    );
    assert!(
        e.to_string()
            .contains("replicas = 9: outside autoscale.min"),
        "{e}"
    );
    let e = err(
        "name = \"web\"\nimage = \"b\"\nmode = \"global\"\n[autoscale]\nmax = 3\ncpu_percent = 50\n",
    );
    assert!(e.to_string().contains("global"), "{e}");
    let e = err(
        "name = \"web\"\nimage = \"b\"\n[autoscale]\nmax = 3\ncpu_percent = 50\nscale_down_delay = \"soon\"\n",
    );
    assert!(e.to_string().contains("autoscale.scale_down_delay"), "{e}");
    let e = err(
        "name = \"web\"\nimage = \"b\"\n[autoscale]\nmax = 99999999999\nrequests_per_second = \"many\"\n",
    );
    assert!(!e.0.is_empty(), "{e}");
    let e = err("name = \"web\"\nimage = \"b\"\n[autoscale]\nmax = 3\nrequests_per_second = 5\n");
    assert!(e.to_string().contains("without [[routes]]"), "{e}");
    let e = err("name = \"web\"\nimage = \"b\"\n[autoscale]\nmax = 3\nmemory_percent = 80\n");
    assert!(e.to_string().contains("without resources.memory"), "{e}");
    let e = err(
        "name = \"web\"\nimage = \"b\"\n[resources]\nmemory = \"64MiB\"\n[autoscale]\nmax = 3\nmemory_percent = 101\n",
    );
    assert!(
        e.to_string().contains("autoscale.memory_percent = 101"),
        "{e}"
    );
    let s = parse_service(
        "web.toml",
        "name = \"web\"\nimage = \"b\"\n[resources]\nmemory = \"64MiB\"\n[autoscale]\nmax = 3\nmemory_percent = 80\n",
    )
    .unwrap();
    assert_eq!(s.autoscale.unwrap().memory_percent, Some(80));
}

#[test]
fn malformed_image_references_are_refused_naming_the_field() {
    for (image, why) in [
        (
            "bb@sha256:xyz",
            "digest references must be name@sha256:<64 lowercase hex digits>",
        ),
        ("Busybox", "must be lowercase"),
        ("bb:", "the tag after ':' is empty"),
        ("localhost:5x/bb", "is not a number"),
        ("a//b", "empty path component"),
    ] {
        let e = err(&format!("name = \"web\"\nimage = \"{image}\"\n"));
        let text = e.to_string();
        assert!(text.contains("web.toml:2"), "{image}: {text}");
        assert!(
            text.contains(&format!("image = {image:?}: not an image reference")),
            "{image}: {text}"
        );
        assert!(text.contains(why), "{image}: {text}");
    }
    let digest = format!("bb@sha256:{}", "a".repeat(64));
    parse_service("w.toml", &format!("name = \"w\"\nimage = \"{digest}\"\n")).unwrap();
}

#[test]
fn networks_default_to_default_and_are_dns_labels_listed_once() {
    let s = parse_service("api.toml", "name = \"api\"\nimage = \"busybox\"\n").unwrap();
    assert_eq!(s.networks, vec!["default"]);
    let s = parse_service(
        "api.toml",
        "name = \"api\"\nimage = \"busybox\"\nnetworks = [\"backend\", \"frontend\"]\n",
    )
    .unwrap();
    assert_eq!(s.networks, vec!["backend", "frontend"]);
    assert_eq!(
        crate::spec::dns_names(&s),
        vec![
            "api",
            "api.backend",
            "api.frontend",
            "api.dash",
            "tasks.api"
        ]
    );

    for (networks, says) in [
        ("[]", "at least one network"),
        ("[\"Back_end\"]", "lowercase letters, digits and '-'"),
        ("[\"-x\"]", "start and end with a letter or digit"),
        ("[\"a\", \"a\"]", "listed twice"),
        ("[\"\"]", "it is empty"),
    ] {
        let d = err(&format!(
            "name = \"api\"\nimage = \"busybox\"\nnetworks = {networks}\n"
        ));
        assert_eq!(d.0[0].field, "networks", "{networks}: {d}");
        assert!(d.to_string().contains(says), "{networks}: {d}");
    }
    let many: Vec<String> = (0..17).map(|i| format!("\"n{i}\"")).collect();
    let d = err(&format!(
        "name = \"api\"\nimage = \"busybox\"\nnetworks = [{}]\n",
        many.join(", ")
    ));
    assert!(d.to_string().contains("more than 16"), "{d}");
    // A wrong type names the field too.
    let d = err("name = \"api\"\nimage = \"busybox\"\nnetworks = \"backend\"\n");
    assert!(d.to_string().contains("networks"), "{d}");
}

#[test]
fn names_the_cluster_dns_reserves_are_refused() {
    for name in ["tasks", "dash"] {
        let d = err(&format!("name = \"{name}\"\nimage = \"busybox\"\n"));
        assert_eq!(d.0[0].field, "name");
        assert!(d.to_string().contains("reserved"), "{d}");
    }
}

#[test]
fn security_section_names_capabilities_either_way_and_a_profile_by_path() {
    use crate::spec::Seccomp;
    let base = "name = \"web\"\nimage = \"busybox\"\n";
    let s = parse_service("w.toml", base).unwrap();
    assert!(s.security.is_default());
    let s = parse_service(
        "w.toml",
        &format!(
            "{base}[security]\nseccomp = \"unconfined\"\ncap_add = [\"net_raw\", \"CAP_NET_ADMIN\", \"NET_RAW\"]\ncap_drop = [\"ALL\"]\n"
        ),
    )
    .unwrap();
    assert_eq!(s.security.seccomp, Seccomp::Unconfined);
    assert_eq!(s.security.cap_add, ["CAP_NET_RAW", "CAP_NET_ADMIN"]);
    assert_eq!(s.security.cap_drop, ["ALL"]);
    assert_eq!(s.security.user_namespace, None);
    let s = parse_service(
        "w.toml",
        &format!("{base}[security]\nuser_namespace = true\n"),
    )
    .unwrap();
    assert_eq!(s.security.user_namespace, Some(true));
    let s = parse_service(
        "w.toml",
        &format!("{base}[security]\nseccomp = \"./strict.json\"\n"),
    )
    .unwrap();
    assert_eq!(
        s.security.seccomp,
        Seccomp::Profile {
            path: "./strict.json".into(),
            profile: String::new()
        }
    );
    // The spec's JSON without [security] is as before it existed.
    let json = serde_json::to_string(&parse_service("w.toml", base).unwrap()).unwrap();
    assert!(!json.contains("security"), "{json}");
}

#[test]
fn bad_security_values_name_the_field() {
    let base = "name = \"web\"\nimage = \"busybox\"\n[security]\n";
    assert_each_names_the_field(
        base,
        &[
            (
                "cap_add = [\"FLY\"]\n",
                "security.cap_add",
                "\"FLY\" is not a Linux capability",
            ),
            (
                "cap_drop = [\"CAP_\"]\n",
                "security.cap_drop",
                "not a Linux capability",
            ),
            ("seccomp = \"\"\n", "security.seccomp", "empty"),
            ("user_namespace = \"yes\"\n", "security.user_namespace", ""),
            ("seccomp = 3\n", "security.seccomp", ""),
            ("selinux = \"x\"\n", "security", ""),
        ],
    );
}

#[test]
fn secrets_and_configs_are_files_with_an_owner_and_a_mode() {
    let base = "name = \"web\"\nimage = \"busybox\"\n";
    let s = parse_service(
        "w.toml",
        &format!(
            "{base}[[secrets]]\nname = \"db-password\"\nuid = 101\n\
             [[secrets]]\nname = \"tls.key\"\ntarget = \"server.key\"\nmode = \"0440\"\n\
             [[configs]]\nname = \"nginx-conf\"\ntarget = \"/etc/nginx/nginx.conf\"\n\
             [[configs]]\nname = \"motd\"\nmode = 0o400\n"
        ),
    )
    .unwrap();
    fn t(v: &[crate::spec::FileRef]) -> Vec<(&str, &str, u32, u32, u64)> {
        v.iter()
            .map(|r| (r.name.as_str(), r.target.as_str(), r.uid, r.mode, r.version))
            .collect()
    }
    assert_eq!(
        t(&s.secrets),
        [
            ("db-password", "db-password", 101, 0o400, 0),
            ("tls.key", "server.key", 0, 0o440, 0)
        ]
    );
    assert_eq!(
        t(&s.configs),
        [
            ("nginx-conf", "/etc/nginx/nginx.conf", 0, 0o444, 0),
            ("motd", "/motd", 0, 0o400, 0)
        ]
    );
    // Without them the spec's JSON is as before they existed.
    let json = serde_json::to_string(&parse_service("w.toml", base).unwrap()).unwrap();
    assert!(
        !json.contains("secrets") && !json.contains("configs"),
        "{json}"
    );
}

#[test]
fn bad_secrets_and_configs_name_the_field_and_the_value() {
    let base = "name = \"web\"\nimage = \"busybox\"\n";
    assert_each_names_the_field(
        base,
        &[
            (
                "[[secrets]]\nname = \"db/password\"\n",
                "secrets[0].name",
                "slash",
            ),
            ("[[secrets]]\nname = \"\"\n", "secrets[0].name", "empty"),
            (
                "[[secrets]]\nname = \"a\"\ntarget = \"x/y\"\n",
                "secrets[0].target",
                "slash",
            ),
            (
                "[[configs]]\nname = \"c\"\ntarget = \"etc/nginx.conf\"\n",
                "configs[0].target",
                "relative path",
            ),
            (
                "[[configs]]\nname = \"c\"\ntarget = \"/proc/x\"\n",
                "configs[0].target",
                "runtime",
            ),
            (
                "[[secrets]]\nname = \"a\"\nmode = \"0999\"\n",
                "secrets[0].mode",
                "permission bits",
            ),
            (
                "[[secrets]]\nname = \"a\"\nmode = 4096\n",
                "secrets[0].mode",
                "permission bits",
            ),
            (
                "[[secrets]]\nname = \"a\"\nuid = -1\n",
                "secrets[0].uid",
                "between 0",
            ),
            (
                "[[secrets]]\nname = \"a\"\n[[secrets]]\nname = \"b\"\ntarget = \"a\"\n",
                "secrets[1].target",
                "earlier entry",
            ),
            ("[[secrets]]\nname = \"a\"\nvalue = \"x\"\n", "secrets", ""),
        ],
    );
}

const JOB: &str = r#"
name = "nightly-report"
image = "registry.local/report:3"
command = ["report", "--since", "24h"]
kind = "job"
[job]
completions = 1
parallelism = 1
backoff_limit = 3
deadline = "30m"
[schedule]
cron = "0 3 * * *"
timezone = "Europe/Paris"
concurrency = "forbid"
starting_deadline = "10m"
history = 5
"#;

#[test]
fn the_issue_job_file_parses() {
    let s = parse_service("r.toml", JOB).unwrap();
    assert!(s.is_job());
    assert_eq!(s.replicas, 0);
    assert_eq!(s.restart.condition, RestartCondition::Never);
    let j = s.job.unwrap();
    assert_eq!(
        (j.completions, j.parallelism, j.backoff_limit, j.history),
        (1, 1, 3, 5)
    );
    assert_eq!(j.deadline, Some(Duration::from_secs(1800)));
    let sc = j.schedule.unwrap();
    assert_eq!(sc.cron, "0 3 * * *");
    assert_eq!(sc.timezone, "Europe/Paris");
    assert_eq!(sc.concurrency, crate::job::Concurrency::Forbid);
    assert_eq!(sc.starting_deadline, Some(Duration::from_secs(600)));
}

#[test]
fn a_job_without_sections_gets_defaults() {
    let s = parse_service("j.toml", "name = \"j\"\nimage = \"b\"\nkind = \"job\"\n").unwrap();
    let j = s.job.unwrap();
    assert_eq!((j.completions, j.parallelism), (1, 1));
    assert_eq!(j.backoff_limit, crate::job::DEFAULT_BACKOFF_LIMIT);
    assert!(j.schedule.is_none());
    // A service has no job part, and its JSON does not grow one.
    let svc = parse_service("s.toml", "name = \"s\"\nimage = \"b\"\n").unwrap();
    assert!(svc.job.is_none());
    let json = serde_json::to_string(&svc).unwrap();
    assert!(
        !json.contains("kind") && !json.contains("\"job\""),
        "{json}"
    );
}

#[test]
fn bad_job_files_name_the_field_and_what_is_accepted() {
    let job = |extra: &str| format!("name = \"j\"\nimage = \"b\"\nkind = \"job\"\n{extra}");
    let e = err(&job("[schedule]\ncron = \"61 * * * *\"\n")).to_string();
    assert!(
        e.contains("schedule.cron") && e.contains("minute field \"61\"") && e.contains("0-59"),
        "{e}"
    );
    let e = err(&job(
        "[schedule]\ncron = \"@daily\"\ntimezone = \"Mars/Olympus\"\n",
    ))
    .to_string();
    assert!(e.contains("schedule.timezone") && e.contains("IANA"), "{e}");
    let e = err(&job("[[ports]]\ncontainer = 80\n")).to_string();
    assert!(e.contains("ports: a job has no ports"), "{e}");
    let e = err(&job("[job]\ncompletions = 0\n")).to_string();
    assert!(
        e.contains("job.completions = 0") && e.contains("between 1 and 10000"),
        "{e}"
    );
    let e = err(&job(
        "[schedule]\ncron = \"@daily\"\nconcurrency = \"queue\"\n",
    ))
    .to_string();
    assert!(e.contains("forbid") && e.contains("replace"), "{e}");
    let e = err(&job(
        "replicas = 2\n[health]\nexec = [\"true\"]\n[restart]\npolicy = \"always\"\n",
    ))
    .to_string();
    assert!(
        e.contains("replicas: a job")
            && e.contains("health: a job")
            && e.contains("restart: a job"),
        "{e}"
    );
    let e = err(&job("[schedule]\ncron = \"0 0 30 2 *\"\n")).to_string();
    assert!(e.contains("no date ever matches"), "{e}");
    let e = err("name = \"s\"\nimage = \"b\"\n[schedule]\ncron = \"@daily\"\n").to_string();
    assert!(e.contains("[schedule] is only for jobs"), "{e}");
    let e = err("name = \"s\"\nimage = \"b\"\nkind = \"cron\"\n").to_string();
    assert!(e.contains("kind = \"cron\": unknown kind"), "{e}");
}
