//! Terminal rendering of a pull's progress, and password prompts.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use dash_core::api::PullEvent;

/// One line per layer, redrawn in place on a terminal; a line per finished layer otherwise.
pub struct PullView {
    json: bool,
    tty: bool,
    order: Vec<String>,
    layers: BTreeMap<String, (u64, u64, &'static str)>,
    drawn: usize,
    done: bool,
}

impl PullView {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            tty: std::io::stdout().is_terminal(),
            order: Vec::new(),
            layers: BTreeMap::new(),
            drawn: 0,
            done: false,
        }
    }

    pub fn done(&self) -> bool {
        self.done
    }

    pub fn show(&mut self, event: &PullEvent, raw: &str) {
        if self.json {
            println!("{raw}");
            self.done |= matches!(event, PullEvent::Done { .. });
            return;
        }
        match event {
            PullEvent::Resolved {
                reference,
                manifest_digest,
                layers,
            } => {
                println!("{reference}: {manifest_digest}");
                for l in layers {
                    self.order.push(l.digest.clone());
                    self.layers
                        .insert(l.digest.clone(), (0, l.size_bytes, "waiting"));
                }
            }
            PullEvent::Blob {
                digest,
                done,
                total,
            } => {
                self.layers
                    .insert(digest.clone(), (*done, *total, "downloading"));
            }
            PullEvent::BlobDone { digest, cached } => {
                let total = self.layers.get(digest).map_or(0, |l| l.1);
                let state = if *cached { "already here" } else { "done" };
                self.layers.insert(digest.clone(), (total, total, state));
                if !self.tty && self.order.contains(digest) {
                    println!("{}: {state}", short(digest));
                }
            }
            PullEvent::Unpacking => {
                if !self.tty {
                    println!("unpacking");
                }
            }
            PullEvent::Done { image } => {
                self.redraw();
                println!("pulled {} {}", image.tags.join(", "), short(&image.id));
                self.done = true;
                return;
            }
            PullEvent::Error { .. } => {}
        }
        self.redraw();
    }

    fn redraw(&mut self) {
        if !self.tty {
            return;
        }
        let mut out = std::io::stdout().lock();
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        for digest in &self.order {
            let (done, total, state) = self
                .layers
                .get(digest)
                .copied()
                .unwrap_or((0, 0, "waiting"));
            let pct = done.saturating_mul(100).checked_div(total).unwrap_or(0);
            let filled = (pct / 5) as usize;
            let _ = writeln!(
                out,
                "\x1b[2K{}: [{}{}] {:>3}% {} / {} {state}",
                short(digest),
                "=".repeat(filled),
                " ".repeat(20 - filled.min(20)),
                pct,
                dash_core::units::format_size(done),
                dash_core::units::format_size(total)
            );
        }
        self.drawn = self.order.len();
        let _ = out.flush();
    }
}

fn short(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .unwrap_or(digest)
        .chars()
        .take(12)
        .collect()
}

/// Reads a line without echo when standard input is a terminal (`stty -echo`).
pub fn read_password(prompt: &str) -> std::io::Result<String> {
    use std::io::BufRead;
    let tty = std::io::stdin().is_terminal();
    eprint!("{prompt}");
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    if tty {
        stty("-echo");
    }
    let mut line = String::new();
    let res = std::io::stdin().lock().read_line(&mut line);
    if tty {
        stty("echo");
        eprintln!();
    }
    res?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
