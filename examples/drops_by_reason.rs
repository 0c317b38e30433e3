//! Embedding libnetprobe: count the drops of one network namespace by reason and print them
//! every second, the way another Rust tool would use the library.
//!
//! ```text
//! drops_by_reason NETNS [SECONDS]
//! ```
use libnetprobe::filter::Filter;
use libnetprobe::kernel::netns::Netns;
use libnetprobe::kernel::KernelEnv;
use libnetprobe::kit::StackPolicy;
use libnetprobe::session::{Session, Tick};
use libnetprobe::sets::drop::{DropOptions, DropProbe, KeyBy};
use std::collections::BTreeMap;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(netns), seconds) = (args.next(), args.next()) else {
        eprintln!("usage: drops_by_reason NETNS [SECONDS]");
        std::process::exit(2);
    };
    if let Err(e) = run(&netns, seconds.and_then(|s| s.parse().ok())) {
        eprintln!("drops_by_reason: {e}");
        std::process::exit(e.exit_code());
    }
}

fn run(netns: &str, seconds: Option<u64>) -> libnetprobe::Result<()> {
    libnetprobe::preflight::check()?;
    let env = KernelEnv::discover()?;
    let filter = Filter {
        netns: Some(Netns::resolve(netns)?),
        ..Filter::default()
    };
    let mut opts = DropOptions::summary(filter);
    opts.key = KeyBy {
        location: false,
        flow: false,
    };
    opts.stacks = StackPolicy::off();
    let mut drops = DropProbe::open(opts, &env)?;
    let session = Session::new(Duration::from_secs(1), seconds.map(Duration::from_secs))?;
    session.ready("drops_by_reason", &drops.chosen_plan().summary());
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    session.run(|tick| {
        match tick {
            Tick::Wait(t) => std::thread::sleep(t),
            Tick::Report { last } => {
                let mut this: BTreeMap<String, u64> = BTreeMap::new();
                for e in drops.drain_summary()?.entries {
                    *this.entry(e.reason).or_default() += e.count;
                }
                for (reason, count) in &this {
                    println!("{reason} {count}");
                    *totals.entry(reason.clone()).or_default() += count;
                }
                if last {
                    for (reason, count) in &totals {
                        println!("total {reason} {count}");
                    }
                }
            }
        }
        Ok(())
    })
}
