//! What this kernel offers netprobe, and which plan each probe set would use here.
use clap::Parser;
use libnetprobe::cli::{parse_args, run_main};
use libnetprobe::{Error, Result};

const TOOL: &str = "netprobe_check";

/// Checks privileges, BTF, tracefs and every probe type (by trial load and attach), then shows
/// for each probe set whether it can run on this kernel and which probes it would use. Exits 1
/// when no set can run.
#[derive(Debug, Parser)]
#[command(name = TOOL, version)]
struct Args {
    /// One JSON object instead of text
    #[arg(long)]
    json: bool,
}

fn main() {
    let args: Args = parse_args(TOOL);
    run_main(TOOL, || run(args));
}

fn run(args: Args) -> Result<()> {
    let report = libnetprobe::check::CheckReport::collect()?;
    if args.json {
        libnetprobe::output::json_line(&report)?;
    } else {
        libnetprobe::output::text(&report.render())?;
    }
    if !report.any_can_run() {
        return Err(Error::missing(
            "no probe set can run on this kernel (see the report above)",
        ));
    }
    Ok(())
}
