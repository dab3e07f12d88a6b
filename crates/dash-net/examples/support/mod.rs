//! What the benchmark examples share: their summary line and the host's `ip_forward` put back.

use std::time::Duration;

/// Prints `name`, the count and min/median/max of `samples` in ms, `width` columns for the name.
pub fn summary(name: &str, width: usize, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (Some(min), Some(max)) = (samples.first(), samples.last()) else {
        return;
    };
    println!(
        "{name:<width$} n={:<4} min {:>7.2} ms  median {:>7.2} ms  max {:>7.2} ms",
        samples.len(),
        ms(*min),
        ms(samples[samples.len() / 2]),
        ms(*max)
    );
}

/// Puts `ip_forward` back to `before` unless another Dash network (a daemon, an e2e run) now
/// relies on it.
pub fn restore_forward(before: &str) -> std::io::Result<()> {
    let tables = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()?;
    let other_dash = String::from_utf8_lossy(&tables.stdout)
        .lines()
        .any(|l| l.starts_with("table ip dash"));
    if !other_dash {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", before)?;
    }
    Ok(())
}
