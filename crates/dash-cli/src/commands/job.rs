//! `dash job`: services of `kind = "job"`: ls (schedule, last run, next run in the job's zone
//! and the caller's), run now, history, suspend, resume. `dash logs JOB --run N` reads a run's
//! logs; `dash apply` and `dash service rm` apply and remove jobs as any service.

use clap::Subcommand;
use dash_core::job::RunState;
use dash_core::job::api::{JobInfo, RunInfo};

use crate::client::Client;
use crate::output::{self, Table};
use crate::{encode, print_json};

/// What `dash job ls` prints.
pub(crate) const LS_COLUMNS: [&str; 7] = [
    "NAME",
    "SCHEDULE",
    "LAST RUN",
    "RESULT",
    "NEXT RUN (JOB)",
    "NEXT RUN (LOCAL)",
    "STATUS",
];

/// What `dash job history` prints.
pub(crate) const HISTORY_COLUMNS: [&str; 9] = [
    "RUN",
    "TRIGGER",
    "STATE",
    "STARTED (UTC)",
    "ENDED (UTC)",
    "EXIT CODES",
    "ATTEMPTS",
    "NODE",
    "MESSAGE",
];

/// `dash job …`.
#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// Jobs: schedule, last run and its result, next run (in the job's time zone and yours),
    /// runs in progress, suspended.
    Ls,
    /// A run now, outside the schedule (refused while a run is in progress when the job's
    /// concurrency is forbid; with replace the running one is stopped).
    Run {
        /// The job's name (`dash job ls`).
        name: String,
    },
    /// The runs a job keeps: start, end, exit codes, attempts, node.
    History {
        /// The job's name.
        name: String,
    },
    /// No run starts (no slot, no `job run`) until `resume`; runs in progress go on.
    Suspend {
        /// The job's name.
        name: String,
    },
    /// The schedule starts again from now (slots missed while suspended are not run).
    Resume {
        /// The job's name.
        name: String,
    },
}

/// Runs `dash job …`.
pub async fn run(client: &Client, json: bool, cmd: JobCmd) -> anyhow::Result<()> {
    match cmd {
        JobCmd::Ls => {
            let jobs: Vec<JobInfo> = client.get("/v1/jobs").await?;
            if json {
                print_json(&jobs);
            } else {
                print_jobs(&jobs);
            }
        }
        JobCmd::Run { name } => {
            let run: RunInfo = client
                .post(&format!("/v1/jobs/{}/run", encode(&name)), &())
                .await?;
            if json {
                print_json(&run);
            } else {
                println!(
                    "run {} of {name} started; `dash job history {name}` follows it, `dash logs {name} --run {}` shows its logs",
                    run.run, run.run
                );
            }
        }
        JobCmd::History { name } => {
            let runs: Vec<RunInfo> = client
                .get(&format!("/v1/jobs/{}/runs", encode(&name)))
                .await?;
            if json {
                print_json(&runs);
            } else if runs.is_empty() {
                println!("job {name} has no runs yet");
            } else {
                print_history(&runs);
            }
        }
        JobCmd::Suspend { name } => suspend(client, json, &name, true).await?,
        JobCmd::Resume { name } => suspend(client, json, &name, false).await?,
    }
    Ok(())
}

async fn suspend(client: &Client, json: bool, name: &str, on: bool) -> anyhow::Result<()> {
    let verb = if on { "suspend" } else { "resume" };
    let job: JobInfo = client
        .post(&format!("/v1/jobs/{}/{verb}", encode(name)), &())
        .await?;
    if json {
        print_json(&job);
    } else if on {
        println!("job {name} suspended: no scheduled run starts until `dash job resume {name}`");
    } else {
        let next = job
            .next_run_ms
            .map_or_else(|| "none".to_string(), |n| next_local(n, &job));
        println!("job {name} resumed; next run: {next}");
    }
    Ok(())
}

fn print_jobs(jobs: &[JobInfo]) {
    let mut t = Table::new(LS_COLUMNS);
    for j in jobs {
        let schedule = match (&j.schedule, &j.timezone) {
            (Some(c), Some(tz)) if tz != "UTC" => format!("{c} ({tz})"),
            (Some(c), _) => c.clone(),
            (None, _) => "- (on apply, dash job run)".into(),
        };
        let (last, result) = match &j.last_run {
            Some(r) => (
                format!(
                    "#{} {} ago",
                    r.run,
                    output::age_since(r.started_ms.unwrap_or(r.created_ms))
                ),
                result(r),
            ),
            None => ("-".into(), "-".into()),
        };
        let (next_job, next_local) = match j.next_run_ms {
            Some(n) => (
                j.next_run_local
                    .clone()
                    .unwrap_or_else(|| dash_core::clock::utc(n)),
                local_time(n),
            ),
            None => ("-".into(), "-".into()),
        };
        let mut status = Vec::new();
        if j.suspended {
            status.push("suspended".to_string());
        }
        if j.active > 0 {
            status.push(format!("{} running", j.active));
        }
        if j.skipped_slots > 0 {
            status.push(format!("{} slots skipped", j.skipped_slots));
        }
        t.row([
            j.name.clone(),
            schedule,
            last,
            result,
            next_job,
            next_local,
            if status.is_empty() {
                "-".into()
            } else {
                status.join(", ")
            },
        ]);
    }
    t.print();
}

/// A run's result for tables: `succeeded`, `failed (exit 1)`, `running`, `stopped`.
fn result(r: &RunInfo) -> String {
    match (r.state, r.exit_code) {
        (RunState::Failed, Some(c)) => format!("failed (exit {c})"),
        (state, _) => state.as_str().to_string(),
    }
}

fn print_history(runs: &[RunInfo]) {
    let mut t = Table::new(HISTORY_COLUMNS);
    for r in runs {
        let codes: Vec<String> = r
            .attempts
            .iter()
            .map(|a| a.exit_code.map_or_else(|| "-".into(), |c| c.to_string()))
            .collect();
        let mut nodes: Vec<String> = r.attempts.iter().filter_map(|a| a.node.clone()).collect();
        nodes.dedup();
        let trigger = match r.slot_ms {
            Some(slot) => format!("{} {}", r.trigger.as_str(), dash_core::clock::utc(slot)),
            None => r.trigger.as_str().to_string(),
        };
        t.row([
            r.run.to_string(),
            trigger,
            result(r),
            r.started_ms
                .map_or_else(|| "-".into(), dash_core::clock::utc_ms),
            r.finished_ms
                .map_or_else(|| "-".into(), dash_core::clock::utc_ms),
            if codes.is_empty() {
                "-".into()
            } else {
                codes.join(",")
            },
            r.attempts.len().to_string(),
            if nodes.is_empty() {
                "-".into()
            } else {
                nodes.join(",")
            },
            if r.message.is_empty() {
                "-".into()
            } else {
                r.message.clone()
            },
        ]);
    }
    t.print();
}

/// `at_ms` on the caller's clock (TZ, /etc/localtime), with its zone's abbreviation.
fn local_time(at_ms: u64) -> String {
    use chrono::TimeZone;
    match i64::try_from(at_ms)
        .ok()
        .and_then(|ms| chrono::Local.timestamp_millis_opt(ms).single())
    {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S %Z").to_string(),
        None => dash_core::clock::utc(at_ms),
    }
}

fn next_local(n: u64, job: &JobInfo) -> String {
    let job_time = job
        .next_run_local
        .clone()
        .unwrap_or_else(|| dash_core::clock::utc(n));
    format!("{job_time} (yours: {})", local_time(n))
}
