//! The command line as users type it: where the client args go, what the daemons take, what
//! the help says.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::commands::{audit, image, login, node, replica, secret, service, token};
use crate::{Cli, Command, Format, ImageCmd, NodeCmd};

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

/// The built command tree, as parsing sees it (global args handed down).
fn built() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd
}

/// The subcommand at `path` of the built tree.
fn find<'a, S: AsRef<str>>(cmd: &'a clap::Command, path: &[S]) -> &'a clap::Command {
    path.iter().fold(cmd, |c, name| {
        c.find_subcommand(name.as_ref())
            .unwrap_or_else(|| panic!("no subcommand {}", name.as_ref()))
    })
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
        assert_eq!(cli.client.addr.as_deref(), Some(ADDR), "{argv:?}");
        assert_eq!(cli.client.output, Format::Json, "{argv:?}");
    }
}

#[test]
fn the_innermost_addr_wins() {
    let cli = parse(&["dash", "--addr", "10.0.0.9:7070", "ps", "--addr", ADDR]);
    assert_eq!(cli.client.addr.as_deref(), Some(ADDR));
}

#[test]
fn without_flags_the_defaults_hold() {
    let cli = parse(&["dash", "node", "ls"]);
    assert_eq!(cli.client.output, Format::Table);
    // DASH_ADDR may be set where the tests run; without it the context or the local server
    // decides (crate::context).
    if std::env::var_os("DASH_ADDR").is_none() {
        assert_eq!(cli.client.addr, None);
    }
}

#[test]
fn every_client_command_takes_addr_and_output() {
    let cmd = built();
    let mut all = Vec::new();
    paths(&cmd, Vec::new(), &mut all);
    let clients: Vec<_> = all
        .iter()
        .filter(|p| {
            !["server", "worker", "restore", "login", "context", "sim"].contains(&p[0].as_str())
        })
        .collect();
    assert!(clients.len() > 30, "{all:?}");
    for path in clients {
        let sub = path.iter().fold(&cmd, |c, name| {
            c.find_subcommand(name).expect("listed above")
        });
        // `dash backup -o FILE`: its -o is the file, its --addr the admin API's.
        let longs: &[&str] = if path[0] == "backup" {
            &["addr", "output-file"]
        } else {
            &["addr", "output"]
        };
        for long in longs.iter().copied() {
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
fn sim_takes_the_output_format_but_no_admin_api_address() {
    for path in [&["sim"][..], &["sim", "kill"], &["sim", "report"]] {
        let text = help(path);
        assert!(text.contains("--output"), "{text}");
        assert!(!text.contains("--addr"), "{text}");
        assert!(text.contains("DASH_SIM_CONTROL"), "{text}");
    }
    let cli = parse(&[
        "dash",
        "sim",
        "report",
        "-o",
        "json",
        "--control",
        "127.0.0.1:1",
    ]);
    assert!(matches!(
        cli.command,
        Command::Sim(ref a) if matches!(&a.command, Some(crate::commands::sim::SimCmd::Report { control }) if control == "127.0.0.1:1")
    ));
    assert_eq!(cli.client.output, Format::Json);
}

#[test]
fn restore_runs_locally_and_backup_writes_the_file_named_by_o() {
    let text = help(&["restore"]);
    assert!(text.contains("--data-dir <DIR>"), "{text}");
    assert!(!text.contains("--addr"), "{text}");
    let cli = parse(&[
        "dash",
        "backup",
        "-o",
        "cluster.snap",
        "--addr",
        "10.0.0.1:7070",
    ]);
    assert_eq!(cli.client.addr.as_deref(), Some("10.0.0.1:7070"));
    match cli.command {
        Command::Backup(b) => assert_eq!(b.output, std::path::PathBuf::from("cluster.snap")),
        other => panic!("{other:?}"),
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
    // Built first, as parsing does: that is when clap hands global args down.
    let mut cmd = built();
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
            assert_eq!(args.listen, ["0.0.0.0:7070"]);
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

#[test]
fn image_import_rootfs_is_a_switch_and_ref_the_second_argument() {
    let cases: &[(&[&str], bool, Option<&str>)] = &[
        (
            &["dash", "image", "import", "--rootfs", "rootfs.tar", "bb:1"],
            true,
            Some("bb:1"),
        ),
        (
            &["dash", "image", "import", "rootfs.tar", "bb:1", "--rootfs"],
            true,
            Some("bb:1"),
        ),
        (
            &["dash", "image", "import", "rootfs.tar", "--rootfs", "bb:1"],
            true,
            Some("bb:1"),
        ),
        (&["dash", "image", "import", "rootfs.tar"], false, None),
    ];
    for (argv, rootfs, reference) in cases {
        match parse(argv).command {
            Command::Image(ImageCmd::Import {
                file,
                rootfs: r,
                reference: got,
            }) => {
                assert_eq!(file.to_str(), Some("rootfs.tar"), "{argv:?}");
                assert_eq!(r, *rootfs, "{argv:?}");
                assert_eq!(got.as_deref(), *reference, "{argv:?}");
            }
            other => panic!("{argv:?}: {other:?}"),
        }
    }

    // The help says so: --rootfs takes no value and talks about FILE and REF, and REF is
    // the second argument in the usage line.
    let cmd = built();
    let import = find(&cmd, &["image", "import"]);
    let rootfs = import
        .get_arguments()
        .find(|a| a.get_long() == Some("rootfs"))
        .expect("import has --rootfs");
    assert!(!rootfs.get_action().takes_values());
    // clap fills in a value name when it builds; REF is the positional's, not the switch's.
    assert!(
        rootfs
            .get_value_names()
            .is_none_or(|names| names.iter().all(|n| n != "REF")),
        "{:?}",
        rootfs.get_value_names()
    );
    let rootfs_help = rootfs
        .get_help()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        rootfs_help.contains("FILE") && rootfs_help.contains("REF"),
        "{rootfs_help}"
    );
    let text = help(&["image", "import"]);
    assert!(
        text.contains("dash image import [OPTIONS] <FILE> [REF]"),
        "{text}"
    );
    assert!(text.contains("--rootfs rootfs.tar bb:1"), "{text}");
}

#[test]
fn listings_name_in_their_help_the_columns_they_print() {
    let cmd = built();
    let listings: &[(&[&str], &[&str])] = &[
        (&["token", "ls"], &token::LS_COLUMNS),
        (&["ps"], &replica::PS_COLUMNS),
        (&["node", "ls"], &node::LS_COLUMNS),
        (&["service", "ls"], &service::LS_COLUMNS),
        (&["image", "ls"], &image::LS_COLUMNS),
        (&["audit"], &audit::COLUMNS),
        (&["context", "ls"], &login::LS_COLUMNS),
        (&["secret", "ls"], &secret::LS_COLUMNS),
        (&["config", "ls"], &secret::LS_COLUMNS),
    ];
    for (path, columns) in listings {
        let about = find(&cmd, path)
            .get_about()
            .map(|a| a.to_string().to_lowercase())
            .unwrap_or_default();
        // The columns, in order, among the words after "Tokens:", "List replicas:" and so on.
        let listed = about.split_once(':').map_or("", |(_, l)| l);
        let mut words = listed.split(|c: char| !c.is_alphanumeric());
        for column in columns.iter() {
            let column = column.to_lowercase();
            assert!(
                words.any(|w| w == column),
                "dash {} --help: {about:?} does not name {column} (or not in order)",
                path.join(" ")
            );
        }
    }
}

#[test]
fn every_command_and_argument_has_help() {
    let cmd = built();
    let mut all = Vec::new();
    paths(&cmd, Vec::new(), &mut all);
    for path in &all {
        let sub = find(&cmd, path);
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        assert!(
            !about.trim().is_empty(),
            "dash {} has no help",
            path.join(" ")
        );
        for arg in sub.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(
                arg.get_help().is_some(),
                "dash {}: {id} has no help",
                path.join(" ")
            );
        }
    }
}
