//! The open -> configure -> load -> explain -> attach scaffold every set goes through.
use super::{map_handle, KitConfig, StackPolicy, StackStore, StatsReader};
use crate::error::{Context, Error, Result};
use crate::probe::Plan;
use crate::symbol::{base_name, KernelSymbolizer};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, OpenObject};
use std::collections::HashMap;
use std::mem::MaybeUninit;

/// The opened (not yet loaded) skeleton of builder `B`.
pub type Open<B> = <B as SkelBuilder<'static>>::Output;
/// The loaded skeleton of builder `B`.
pub type Loaded<B> = <Open<B> as OpenSkel<'static>>::Output;

/// A loaded and attached probe set: its skeleton and what every set reads it with.
pub struct LoadedSet<S> {
    /// The set's skeleton (maps, rodata).
    pub skel: S,
    /// The attach plan in use.
    pub plan: Plan,
    /// BPF-side counters and program run time.
    pub stats: StatsReader,
    /// Symbolized stacks of the set's `stack_traces` map.
    pub stacks: StackStore,
    /// The long-lived kernel symbolizer (kallsyms is read before the set says it is ready).
    pub symbols: KernelSymbolizer,
    links: Vec<(&'static str, Link)>,
    locations: HashMap<u64, (String, String)>,
}

impl<S> LoadedSet<S> {
    /// Keeps `link`, attached by the set itself (a perf event per CPU), for the set's life.
    pub fn keep(&mut self, point: &'static str, link: Link) {
        self.links.push((point, link));
    }

    /// `func+0xoff` and the function's base name of a kernel address (`-` for 0).
    pub fn location(&mut self, addr: u64) -> (String, String) {
        if addr == 0 {
            return ("-".into(), "-".into());
        }
        if let Some(l) = self.locations.get(&addr) {
            return l.clone();
        }
        let f = self.symbols.frame(addr);
        let func = if f.func.is_empty() {
            f.to_string()
        } else {
            base_name(&f.func).to_string()
        };
        let l = (f.to_string(), func);
        if self.locations.len() < 65536 {
            self.locations.insert(addr, l.clone());
        }
        l
    }
}

/// The `.rodata` of an open skeleton, in a [`load`] `configure` closure (`open`, `kit`), with
/// the kit's switches already written into its `np_kit`; `?` returns a missing-map error.
#[macro_export]
macro_rules! kit_rodata {
    ($open:expr, $kit:expr) => {{
        let ro = $open
            .maps
            .rodata_data
            .as_deref_mut()
            .ok_or_else(|| $crate::error::Error::MissingMap(".rodata".into()))?;
        $kit.write(&mut ro.np_kit);
        ro
    }};
}

/// What the scaffold needs to know of a set.
pub struct LoadSpec<'a> {
    /// Set name, for messages (`drop`).
    pub set: &'static str,
    /// The plan chosen for this kernel; required points are checked before anything loads.
    pub plan: Plan,
    /// Stack policy: sizes `stack_traces`.
    pub stacks: StackPolicy,
    /// Kit switches written into the set's `np_kit`.
    pub kit: &'a KitConfig,
}

/// Opens the skeleton of `builder`, turns off the programs the plan did not choose, sizes the
/// stack map, lets `configure` write `.rodata` and size maps, loads (a failure names what
/// this kernel lacks, from libbpf's log), attaches the plan and runs its self-tests.
pub fn load<B>(
    builder: B,
    spec: LoadSpec<'_>,
    configure: impl FnOnce(&mut Open<B>, &KitConfig) -> Result<()>,
) -> Result<LoadedSet<Loaded<B>>>
where
    B: SkelBuilder<'static>,
{
    spec.plan.require()?;
    // The skeleton borrows its object storage for its whole life; a set lives as long as
    // its tool, so the storage (a few hundred bytes) is leaked on purpose.
    let storage: &'static mut MaybeUninit<OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = builder
        .open(storage)
        .context(|| format!("open {} BPF object", spec.set))?;
    spec.plan.apply(open.open_object_mut());
    if let Some(mut m) = open
        .open_object_mut()
        .maps_mut()
        .find(|m| m.name() == "stack_traces")
    {
        m.set_max_entries(spec.stacks.map_entries())
            .context(|| "size stack_traces".into())?;
    }
    configure(&mut open, spec.kit)?;
    crate::bpf_log::clear();
    let skel = open.load().map_err(|source| Error::Load {
        set: spec.set,
        plan: spec.plan.summary(),
        explanation: crate::bpf_log::explain(),
        source,
    })?;
    let mut plan = spec.plan;
    let mut links = plan.attach(skel.object())?;
    super::selftest::run(&mut plan, skel.object(), &mut links);
    let stats = StatsReader::new(skel.object(), &plan)?;
    let stacks = StackStore::new(map_handle(skel.object(), "stack_traces")?);
    let mut symbols = KernelSymbolizer::new();
    symbols.warm_up();
    Ok(LoadedSet {
        skel,
        plan,
        stats,
        stacks,
        symbols,
        links,
        locations: HashMap::new(),
    })
}
