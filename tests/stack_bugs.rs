//! The three stack-map bugs of the first drop set, each induced for real through the library:
//! 1. one failed walk must not strip the interval's other stacks (they are resolved before a
//!    full stack map is emptied);
//! 2. details never show a stack under the wrong frames (stacks travel inside the event);
//! 3. "walk stacks into a map sized for none" cannot be expressed (the policy sizes the map).
//!
//! Needs root (CI runs as root): without it every test fails, none is skipped.
use libnetprobe::filter::Filter;
use libnetprobe::kernel::netns::Netns;
use libnetprobe::kernel::KernelEnv;
use libnetprobe::kit::{StackMode, StackPolicy};
use libnetprobe::sets::drop::{DropEvent, DropOptions, DropProbe};
use netprobe_lab::*;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

fn lab_filter(lab: &Lab) -> Filter {
    Filter {
        netns: Some(Netns::resolve(&lab.b).expect("lab namespace")),
        ..Filter::default()
    }
}

fn one_entry() -> NonZeroU32 {
    NonZeroU32::MIN
}

#[test]
fn a_failed_walk_keeps_the_other_stacks_of_the_interval() {
    require_root();
    let lab = Lab::new("sb1");
    let drops = Drops::new(&lab, "1");
    let env = KernelEnv::discover().expect("kernel");
    let mut opts = DropOptions::summary(lab_filter(&lab));
    // One stack fits: the first new key's walk stores it, the second key's walk fails.
    opts.stacks = StackPolicy::sampled(0, 10).with_entries(one_entry());
    let mut probe = DropProbe::open(opts, &env).expect("open drop set");
    drops.no_socket(3, 9);
    drops.netfilter(2);
    let s = probe.drain_summary().expect("drain");
    assert!(
        s.stats.stack_errors >= 1,
        "the second key's walk must fail with a one-entry stack map: {s:#?}"
    );
    let udp = s
        .entries
        .iter()
        .find(|e| Expect::of_this_kernel().located("NO_SOCKET", &e.location_func))
        .expect("NO_SOCKET entry");
    assert_eq!(udp.count, 3);
    assert!(
        udp.stack
            .first()
            .is_some_and(|f| f.starts_with(&format!("{}+", udp.location_func))),
        "the stored stack must survive the other key's failed walk: {udp:#?}"
    );
    // The map was emptied after the report, so the next interval stores stacks again.
    drops.netfilter(2);
    let s = probe.drain_summary().expect("drain");
    let at = Expect::of_this_kernel().netfilter_location();
    let nft = s.entries.iter().find(|e| e.location_func == at);
    assert!(
        nft.is_some_and(|e| e
            .stack
            .first()
            .is_some_and(|f| f.starts_with(&format!("{at}+")))),
        "{s:#?}"
    );
}

fn poll_until(probe: &mut DropProbe, n: usize) -> Vec<DropEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(probe.poll_events(Duration::from_millis(50)).expect("poll"));
    }
    got
}

#[test]
fn details_never_show_another_drops_stack() {
    require_root();
    let lab = Lab::new("sb2");
    let drops = Drops::new(&lab, "2");
    let env = KernelEnv::discover().expect("kernel");
    let mut opts = DropOptions::details(lab_filter(&lab));
    // A stack map of one entry would give every stack the same id; details do not use ids.
    opts.stacks = StackPolicy::every_event().with_entries(one_entry());
    let mut probe = DropProbe::open(opts, &env).expect("open drop set");
    let mut events = Vec::new();
    for _ in 0..2 {
        drops.no_socket(2, 9);
        events.extend(poll_until(&mut probe, 2));
        drops.netfilter(2);
        events.extend(poll_until(&mut probe, 2));
    }
    assert_eq!(events.len(), 8, "{events:#?}");
    for e in &events {
        let top = e.stack.first().map(String::as_str).unwrap_or("");
        assert!(
            top.starts_with(&format!("{}+", e.location_func)),
            "{} drop at {} shown with stack {:?}",
            e.reason,
            e.location,
            e.stack
        );
    }
}

#[test]
fn the_stack_map_size_follows_the_policy() {
    let big = NonZeroU32::new(4096).unwrap();
    assert_eq!(StackPolicy::off().with_entries(big).map_entries(), 1);
    assert!(!StackPolicy::off().walks());
    assert_eq!(
        StackPolicy::every_event().with_entries(big).map_entries(),
        4096
    );
    assert!(StackPolicy::sampled(10, 10).map_entries() > 1);
    let mut o = DropOptions::summary(Filter::default());
    o.group_by(libnetprobe::sets::drop::GroupBy::Fivetuple);
    assert_eq!(o.stacks.mode(), StackMode::Off);
}

#[test]
fn stack_keyed_summaries_walk_every_drop_without_errors() {
    require_root();
    let lab = Lab::new("sb3");
    let drops = Drops::new(&lab, "3");
    let env = KernelEnv::discover().expect("kernel");
    let mut opts = DropOptions::summary(lab_filter(&lab));
    opts.stacks = StackPolicy::every_event();
    let mut probe = DropProbe::open(opts, &env).expect("open drop set");
    drops.no_socket(5, 9);
    drops.netfilter(4);
    drops.otherhost(3);
    let s = probe.drain_summary().expect("drain");
    assert_eq!(s.stats.stack_errors, 0, "{s:#?}");
    assert_eq!(s.total, 12);
    for e in &s.entries {
        assert!(
            e.stack
                .first()
                .is_some_and(|f| f.starts_with(&format!("{}+", e.location_func))),
            "{e:#?}"
        );
    }
}
