//! What a command, a process or a cgroup does on the network: its syscalls and the packets
//! queued, sent, received and dropped in its context, one line per event (`perf trace
//! --event 'net:*' cmd`, with the packets decoded).
use clap::Parser;
use libnetprobe::cli::{parse_args, parse_duration, run_main, OutputArgs};
use libnetprobe::kernel::process::HeldCommand;
use libnetprobe::kit::set::SetInfo;
use libnetprobe::output::proctrace::event_line;
use libnetprobe::run::EventSource;
use libnetprobe::sets::proctrace::{
    ProcEvent, ProctraceOptions, ProctraceProbe, ProctraceSet, Who,
};
use libnetprobe::{Error, Result};
use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

const TOOL: &str = "proc_net_trace";

/// The probe sets this tool uses.
const USES: &[SetInfo] = &[SetInfo::of::<ProctraceSet>()];

/// Traces a command (started held until the probes are attached), a running process (-p) or
/// a cgroup (--cgroup): each syscall it makes (arguments, return value, duration) and each
/// packet queued to a device, handed to a driver, received, queued to a backlog or dropped in
/// its context — which process sent that ICMP packet. The processes it forks are followed.
/// With --json the command's own output goes to stderr.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// Trace this running process instead of a command
    #[arg(short = 'p', long, value_name = "PID", conflicts_with_all = ["cgroup", "command"])]
    pid: Option<u32>,
    /// Trace the tasks of this cgroup v2 directory
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    cgroup: Option<PathBuf>,
    /// Packets only, no syscalls
    #[arg(long, conflicts_with = "no_net")]
    no_syscalls: bool,
    /// Syscalls only, no packets
    #[arg(long)]
    no_net: bool,
    /// Do not follow the processes it forks
    #[arg(long)]
    no_follow: bool,
    /// Stop after this many seconds (default: when the command exits, or Ctrl-C)
    #[arg(long, value_parser = parse_duration, value_name = "SECS")]
    duration: Option<Duration>,
    #[command(flatten)]
    output: OutputArgs,
    /// The command to run and trace
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

/// The probe, and the command it waits for.
struct Traced {
    probe: ProctraceProbe,
    command: Option<HeldCommand>,
}

impl EventSource for Traced {
    type Event = ProcEvent;
    const KIND: &'static str = ProctraceProbe::KIND;

    fn poll(&mut self, timeout: Duration) -> Result<Vec<ProcEvent>> {
        self.probe.poll(timeout)
    }

    fn stats(&mut self) -> libnetprobe::kit::BpfStats {
        self.probe.stats()
    }

    fn plan(&self) -> &libnetprobe::probe::Plan {
        self.probe.plan()
    }

    fn finished(&mut self) -> bool {
        self.command
            .as_mut()
            .is_some_and(|c| c.try_wait().is_some())
    }
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let command = if args.command.is_empty() {
        None
    } else {
        Some(HeldCommand::spawn(&args.command, args.output.json)?)
    };
    let who = match (&command, args.pid, &args.cgroup) {
        (Some(c), _, _) => Who::Processes(vec![c.pid()]),
        (None, Some(p), _) => Who::Processes(vec![p]),
        (None, None, Some(dir)) => Who::Cgroup(dir.clone()),
        (None, None, None) => return Err(Error::usage("give a command, -p PID or --cgroup DIR")),
    };
    let opts = ProctraceOptions {
        who,
        syscalls: !args.no_syscalls,
        net: !args.no_net,
        follow_forks: !args.no_follow,
        kit: Default::default(),
    };
    let Some(env) = libnetprobe::run::start(args.output.list_probes, USES)? else {
        return Ok(());
    };
    let mut probe = ProctraceProbe::open(&opts, &env)?;
    if let Some(c) = &command {
        probe.from_exec_of(c.pid());
    }
    let mut traced = Traced { probe, command };
    if let Some(c) = traced.command.as_mut() {
        c.release();
    }
    let base = Cell::new(None::<u64>);
    libnetprobe::run::run_events(TOOL, &mut traced, args.duration, args.output.json, |e| {
        let b = base.get().unwrap_or(e.time_ns);
        base.set(Some(b));
        event_line(e, b)
    })
}
