//! Flag groups shared by the tools and the `main` wrapper that turns errors into one line.
use crate::error::{Error, Result};
use clap::{Args, Parser};
use std::time::Duration;

/// Shortest interval between reports.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Shortest `--duration`.
pub const MIN_DURATION: Duration = Duration::from_millis(10);

/// Parses a positive number of seconds (`10`, `0.5`) of at least `min`.
pub fn parse_seconds_min(s: &str, min: Duration) -> std::result::Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{} is not a number of seconds", quote(s)))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("{}: must be greater than 0 seconds", quote(s)));
    }
    if v > 1e7 {
        return Err(format!("{}: too long", quote(s)));
    }
    let d = Duration::from_secs_f64(v);
    if d < min {
        return Err(format!(
            "{}: must be at least {} s",
            quote(s),
            min.as_secs_f64()
        ));
    }
    Ok(d)
}

/// Parses an EtherType: hex (`0x0800`) or decimal (`2048`).
pub fn parse_eth_type(s: &str) -> std::result::Result<u16, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => s.parse(),
    };
    v.map_err(|_| format!("'{s}' is not an EtherType (0x0800, 2048)"))
}

/// Parses a MAC address (`02:00:00:00:00:01`, `-` as separator too).
pub fn parse_mac(s: &str) -> std::result::Result<[u8; 6], String> {
    let bad = || format!("'{s}' is not a MAC address (02:00:00:00:00:01)");
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}
/// Parses a positive number of seconds (`10`, `0.5`).
pub fn parse_seconds(s: &str) -> std::result::Result<Duration, String> {
    parse_seconds_min(s, Duration::from_nanos(1))
}

/// Parses a report interval: at least [`MIN_INTERVAL`].
pub fn parse_interval(s: &str) -> std::result::Result<Duration, String> {
    parse_seconds_min(s, MIN_INTERVAL)
}

/// Parses a `--duration`: at least [`MIN_DURATION`].
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    parse_seconds_min(s, MIN_DURATION)
}

/// `-i/--interval` (10 s) and `-d/--duration`.
#[derive(Debug, Clone, Args)]
pub struct IntervalArgs {
    /// Seconds between reports
    #[arg(short = 'i', long, default_value = "10", value_parser = parse_interval, value_name = "SECS")]
    pub interval: Duration,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(short = 'd', long, value_parser = parse_duration, value_name = "SECS")]
    pub duration: Option<Duration>,
}

/// `-d/--device`, `--netns`, `-i/--interval` and `--duration` (long form only: `-d` is the
/// device), for the per-device tools whose users know `-d` as the device.
#[derive(Debug, Clone, Args)]
pub struct DeviceIntervalArgs {
    /// The interface
    #[arg(short = 'd', long, value_name = "IFNAME")]
    pub device: String,
    /// The network namespace the device is in: a name from 'ip netns list' or a PID
    #[arg(long, value_name = "NAME|PID")]
    pub netns: Option<String>,
    /// Seconds between reports (default: the tool's)
    #[arg(short = 'i', long, value_parser = parse_interval, value_name = "SECS")]
    pub interval: Option<Duration>,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(long, value_parser = parse_duration, value_name = "SECS")]
    pub duration: Option<Duration>,
}

impl DeviceIntervalArgs {
    /// The intervals, with `default` where `-i` was not given.
    pub fn intervals(&self, default: Duration) -> IntervalArgs {
        IntervalArgs {
            interval: self.interval.unwrap_or(default),
            duration: self.duration,
        }
    }

    /// The `--netns` namespace, resolved.
    pub fn netns(&self) -> Result<Option<crate::kernel::netns::Netns>> {
        self.netns
            .as_deref()
            .map(crate::kernel::netns::Netns::resolve)
            .transpose()
    }
}

/// The vhost tools' flags: `-p/--pid`, `-d/--device`, `-q/--queue`, `-i/--interval` (1 s, as
/// in the tools our users know) and `--duration` (long form only: `-d` is the device).
#[derive(Debug, Clone, Args)]
pub struct VhostArgs {
    /// Only this VM: the VMM's (QEMU's) pid
    #[arg(short = 'p', long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only virtqueues whose tap is this device (vnet0)
    #[arg(short = 'd', long, value_name = "IFNAME")]
    pub device: Option<String>,
    /// Only this tap queue
    #[arg(short = 'q', long, value_name = "N")]
    pub queue: Option<u16>,
    /// Seconds between reports
    #[arg(short = 'i', long, default_value = "1", value_parser = parse_interval, value_name = "SECS")]
    pub interval: Duration,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(long, value_parser = parse_duration, value_name = "SECS")]
    pub duration: Option<Duration>,
}

/// The per-event vhost tools' flags: `-d/--device` (required), `-q/--queue`, `-p/--pid`,
/// `--duration`.
#[derive(Debug, Clone, Args)]
pub struct VhostEventArgs {
    /// The tap whose virtqueues to follow (vnet0)
    #[arg(short = 'd', long, value_name = "IFNAME", value_parser = parse_ifname)]
    pub device: String,
    /// Only this tap queue
    #[arg(short = 'q', long, value_name = "N")]
    pub queue: Option<u16>,
    /// Only this VM: the VMM's (QEMU's) pid
    #[arg(short = 'p', long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(long, value_parser = parse_duration, value_name = "SECS")]
    pub duration: Option<Duration>,
}

/// An interface name as the kernel takes it: 1 to 15 bytes, no '/' or whitespace.
fn parse_ifname(s: &str) -> std::result::Result<String, String> {
    if s.is_empty() || s.len() > 15 || s.contains(['/', ' ', '\t', '\n']) {
        return Err(format!(
            "'{s}' is not an interface name (1 to 15 characters, no '/' or spaces)"
        ));
    }
    Ok(s.to_string())
}

impl VhostEventArgs {
    /// The set's options: these event kinds of this tap (and queue).
    pub fn options(
        &self,
        kinds: &[crate::sets::vhost::events::EventKind],
    ) -> crate::sets::vhost::VhostOptions {
        crate::sets::vhost::VhostOptions {
            vmm_pid: self.pid,
            device: Some(self.device.clone()),
            queue: self.queue,
            events: kinds.to_vec(),
            ..Default::default()
        }
    }
}

impl VhostArgs {
    /// The virtqueues these flags choose.
    pub fn options(&self) -> crate::sets::vhost::VhostOptions {
        crate::sets::vhost::VhostOptions {
            vmm_pid: self.pid,
            device: self.device.clone(),
            queue: self.queue,
            ..Default::default()
        }
    }

    /// The intervals.
    pub fn intervals(&self) -> IntervalArgs {
        IntervalArgs {
            interval: self.interval,
            duration: self.duration,
        }
    }
}

/// A tap and one of its queues, with intervals: the flags of the tools that follow a tap's
/// queues into vhost and KVM (`-d`, `--netns`, `-i` (1 s), `--duration`, `-q`).
#[derive(Debug, Clone, Args)]
pub struct TapQueueArgs {
    #[command(flatten)]
    /// The tap, its namespace and the intervals.
    pub device: DeviceIntervalArgs,
    /// Only this queue (multi-queue taps)
    #[arg(short = 'q', long, value_name = "N")]
    pub queue: Option<u32>,
}

impl TapQueueArgs {
    /// The tap these flags choose (its namespace resolved).
    pub fn options(&self) -> Result<crate::sets::tap_vhost::TapVhostOptions> {
        Ok(crate::sets::tap_vhost::TapVhostOptions {
            device: self.device.device.clone(),
            netns: self.device.netns()?,
            queue: self.queue,
            hists: false,
        })
    }

    /// The intervals (1 s unless `-i` says otherwise).
    pub fn intervals(&self) -> IntervalArgs {
        self.device.intervals(Duration::from_secs(1))
    }
}

/// `--json` and `--list-probes`.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// One JSON object per line on stdout instead of text
    #[arg(long)]
    pub json: bool,
    /// Print the attach plan for this kernel (chosen probe and why others were rejected) and exit
    #[arg(long)]
    pub list_probes: bool,
}

/// Parses the command line; a usage error is one line on stderr and exit code 2.
pub fn parse_args<T: Parser>(tool: &str) -> T {
    match T::try_parse() {
        Ok(v) => v,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                std::process::exit(0);
            }
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            let msg = first.trim_start_matches("error: ");
            eprintln!("{tool}: error: {msg} (see --help)");
            std::process::exit(2);
        }
    }
}

/// Runs a tool body: errors become one line on stderr and the error's exit code.
pub fn run_main(tool: &str, body: impl FnOnce() -> Result<()>) -> ! {
    // Die quietly when stdout goes away (e.g. piped into head); links close with the process.
    // SAFETY: resetting a signal disposition to its default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match body() {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{tool}: error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}

/// A user's value for an error message: quoted, and shortened when long.
pub fn quote(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        format!("'{s}'")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("'{head}...' ({} characters)", s.chars().count())
    }
}

/// Builds a usage error for flags that cannot be used together.
pub fn conflict(msg: &str) -> Error {
    Error::usage(msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_must_be_positive() {
        assert_eq!(parse_seconds("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_seconds("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("abc").is_err());
    }
}
