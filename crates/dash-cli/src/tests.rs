//! The command line as users type it: where the client args go, what the daemons take, what
//! the help says.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::{Cli, Command, Format, NodeCmd};

const ADDR: &str = "10.0.0.1:7070";

fn parse(argv: &[&str]) -> Cli {
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => panic!("{argv:?}: {e}"),
    }
}

/// What `dash ARGV --help` prints.
fn help(argv: &[&str]) -> String {
    let mut full = vec!["dash"];
    full.extend_from_slice(argv);
    full.push("--help");
    match Cli::try_parse_from(&full) {
        Err(e) if e.kind() == ErrorKind::DisplayHelp => e.to_string(),
        Err(e) => panic!("{full:?}: {e}"),
        Ok(cli) => panic!("{full:?} parsed as {cli:?}"),
    }
}

/// Every subcommand, as its path of names (`["node", "drain"]`), the built-in `help` left out.
fn paths(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    for sc in cmd.get_subcommands().filter(|sc| sc.get_name() != "help") {
        let mut path = prefix.clone();
        path.push(sc.get_name().to_string());
        out.push(path.clone());
        paths(sc, path, out);
    }
}

#[test]
fn addr_and_output_go_before_or_after_a_client_command() {
    let cases: &[&[&str]] = &[
        &["dash", "--addr", ADDR, "-o", "json", "ps"],
        &["dash", "ps", "--addr", ADDR, "-o", "json"],
        &["dash", "ps", "web", "--addr", ADDR, "--output", "json"],
        &["dash", "--addr", ADDR, "node", "drain", "n1", "-o", "json"],
        &["dash", "node", "--addr", ADDR, "-o", "json", "drain", "n1"],
        &["dash", "node", "drain", "n1", "--addr", ADDR, "-o", "json"],
        &[
            "dash", "exec", "--addr", ADDR, "-o", "json", "web-1", "--", "sh",
        ],
        &["dash", "-o", "json", "events", "--past", "--addr", ADDR],
    ];
    for argv in cases {
        let cli = parse(argv);
        assert_eq!(cli.client.addr, ADDR, "{argv:?}");
        assert_eq!(cli.client.output, Format::Json, "{argv:?}");
    }
}

#[test]
fn the_innermost_addr_wins() {
    let cli = parse(&["dash", "--addr", "10.0.0.9:7070", "ps", "--addr", ADDR]);
    assert_eq!(cli.client.addr, ADDR);
}

#[test]
fn without_flags_the_defaults_hold() {
    let cli = parse(&["dash", "node", "ls"]);
    assert_eq!(cli.client.output, Format::Table);
    // DASH_ADDR may be set where the tests run; without it this is the default.
    if std::env::var_os("DASH_ADDR").is_none() {
        assert_eq!(cli.client.addr, "127.0.0.1:7070");
    }
}

#[test]
fn every_client_command_takes_addr_and_output() {
    let mut cmd = Cli::command();
    cmd.build();
    let mut all = Vec::new();
    paths(&cmd, Vec::new(), &mut all);
    let clients: Vec<_> = all
        .iter()
        .filter(|p| p[0] != "server" && p[0] != "worker")
        .collect();
    assert!(clients.len() > 30, "{all:?}");
    for path in clients {
        let sub = path.iter().fold(&cmd, |c, name| {
            c.find_subcommand(name).expect("listed above")
        });
        for long in ["addr", "output"] {
            assert!(
                sub.get_arguments().any(|a| a.get_long() == Some(long)),
                "dash {} has no --{long}",
                path.join(" ")
            );
        }
        let text = help(&path.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(text.contains("--addr <ADDR>"), "{text}");
        assert!(text.contains("DASH_ADDR"), "{text}");
    }
}

#[test]
fn the_daemons_take_no_client_args() {
    for daemon in ["server", "worker"] {
        let text = help(&[daemon]);
        assert!(text.contains("--data-dir"), "not the {daemon} help: {text}");
        for absent in ["--addr", "DASH_ADDR", "--output", "-o,"] {
            assert!(
                !text.contains(absent),
                "dash {daemon} --help shows {absent}: {text}"
            );
        }
        for flag in [&["--addr", ADDR][..], &["-o", "json"][..]] {
            let mut argv = vec!["dash", daemon, "--advertise-addr", "10.0.0.2"];
            argv.extend_from_slice(flag);
            let err = Cli::try_parse_from(&argv).expect_err("a daemon takes no client args");
            assert_eq!(err.kind(), ErrorKind::UnknownArgument, "{argv:?}: {err}");
        }
    }
}

#[test]
fn server_help_rendered_from_the_command_has_no_addr() {
    let mut cmd = Cli::command();
    // Built first, as parsing does: that is when clap hands global args down.
    cmd.build();
    let server = cmd
        .find_subcommand_mut("server")
        .expect("dash has a server command");
    let text = server.render_long_help().to_string();
    assert!(text.contains("--listen"), "{text}");
    assert!(!text.contains("--addr"), "{text}");
    assert!(!text.contains("--output"), "{text}");
}

#[test]
fn the_daemons_still_parse() {
    let cli = parse(&["dash", "server", "--listen", "0.0.0.0:7070", "--no-worker"]);
    match cli.command {
        Command::Server(args) => {
            assert_eq!(args.listen, "0.0.0.0:7070");
            assert!(args.no_worker);
        }
        other => panic!("{other:?}"),
    }
    let cli = parse(&[
        "dash",
        "worker",
        "--join",
        "DASH1-x@10.0.0.1:7071",
        "--advertise-addr",
        "10.0.0.2",
    ]);
    match cli.command {
        Command::Worker(args) => assert_eq!(args.advertise_addr, "10.0.0.2"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn node_drain_and_activate_take_output_json() {
    for verb in ["drain", "activate"] {
        let cli = parse(&["dash", "node", verb, "n1", "-o", "json"]);
        assert_eq!(cli.client.output, Format::Json);
        match (verb, cli.command) {
            ("drain", Command::Node(NodeCmd::Drain { node }))
            | ("activate", Command::Node(NodeCmd::Activate { node })) => assert_eq!(node, "n1"),
            (_, other) => panic!("{verb}: {other:?}"),
        }
    }
}
