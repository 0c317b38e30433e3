//! Symbolization: kernel addresses through one long-lived blazesym symbolizer, kallsyms
//! ranges for filters, and user addresses of any process ([`user`]).
pub mod leaf;
pub mod user;

use crate::error::{Error, Result};
use blazesym::symbolize::source::{Kernel, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};
use std::collections::HashMap;
pub use user::UserSymbolizer;

/// One symbolized kernel address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The raw address.
    pub addr: u64,
    /// Function name, empty when unknown.
    pub func: String,
    /// Offset into the function.
    pub offset: u64,
    /// Kernel module, if not vmlinux.
    pub module: Option<String>,
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.func.is_empty() {
            return write!(f, "0x{:x}", self.addr);
        }
        write!(f, "{}+0x{:x}", self.func, self.offset)?;
        if let Some(m) = &self.module {
            write!(f, " [{m}]")?;
        }
        Ok(())
    }
}

/// A function name without the compiler's clone suffix (`.constprop.0`, `.isra.0`, `.part.0`,
/// `.cold`), as users know it.
pub fn base_name(func: &str) -> &str {
    func.split_once('.').map(|(base, _)| base).unwrap_or(func)
}

/// Functions that belong to the tracing machinery or the free path, not to the dropper.
fn is_tracing_frame(func: &str) -> bool {
    let func = base_name(func);
    func.starts_with("bpf_prog_")
        || func.starts_with("bpf_trace_run")
        || func.starts_with("__traceiter_")
        || func.starts_with("__bpf_trace_")
        || func.starts_with("trace_kfree_skb")
        || matches!(
            func,
            "kfree_skb_reason"
                | "sk_skb_reason_drop"
                | "kfree_skb"
                | "__kfree_skb_reason"
                | "kfree_skb_list_reason"
                | "kfree_skb_list"
                | "perf_trace_kfree_skb"
                | "trace_event_raw_event_kfree_skb"
        )
}

/// Removes the tracing frames (BPF program, trace glue, kfree_skb itself) from the top of a
/// drop stack, so the first frame is the function that dropped the packet.
pub fn strip_tracing_frames(frames: &mut Vec<Frame>) {
    let n = frames
        .iter()
        .take_while(|f| is_tracing_frame(&f.func))
        .count();
    frames.drain(..n);
}

/// Symbolizes kernel addresses with a cache.
pub struct KernelSymbolizer {
    symbolizer: Symbolizer,
    cache: HashMap<u64, Frame>,
}

impl Default for KernelSymbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelSymbolizer {
    /// Creates the symbolizer; kallsyms is read on first use.
    pub fn new() -> Self {
        Self {
            symbolizer: Symbolizer::new(),
            cache: HashMap::new(),
        }
    }

    /// Symbolizes `addrs` in order.
    pub fn frames(&mut self, addrs: &[u64]) -> Vec<Frame> {
        let missing: Vec<u64> = addrs
            .iter()
            .copied()
            .filter(|a| !self.cache.contains_key(a))
            .collect();
        if !missing.is_empty() {
            let src = Source::Kernel(Kernel {
                vmlinux: blazesym::MaybeDefault::None,
                ..Kernel::default()
            });
            let out = self
                .symbolizer
                .symbolize(&src, Input::AbsAddr(&missing))
                .unwrap_or_default();
            for (i, addr) in missing.iter().enumerate() {
                let frame = match out.get(i) {
                    Some(Symbolized::Sym(s)) => Frame {
                        addr: *addr,
                        func: s.name.to_string(),
                        offset: s.offset as u64,
                        module: s
                            .module
                            .as_ref()
                            .map(|m| m.to_string_lossy().into_owned())
                            .filter(|m| !m.is_empty() && m != "vmlinux" && m != "kernel"),
                    },
                    _ => Frame {
                        addr: *addr,
                        func: String::new(),
                        offset: 0,
                        module: None,
                    },
                };
                self.cache.insert(*addr, frame);
            }
        }
        addrs.iter().map(|a| self.cache[a].clone()).collect()
    }

    /// Reads kallsyms now rather than at the first report, so a tool's first interval (and
    /// a benchmark's window) does not pay for it.
    pub fn warm_up(&mut self) {
        let _ = self.frames(&[u64::MAX - 0xfff]);
        self.cache.clear();
    }

    /// Symbolizes one address.
    pub fn frame(&mut self, addr: u64) -> Frame {
        self.frames(&[addr]).remove(0)
    }
}

/// Address range `[start, end)` of kernel function `func`, from /proc/kallsyms.
pub fn kallsyms_range(func: &str) -> Result<(u64, u64)> {
    kallsyms_ranges(&[func])?
        .remove(0)
        .ok_or_else(|| Error::usage(format!("no kernel function '{func}' in /proc/kallsyms")))
}

/// Address ranges `[start, end)` of kernel functions `funcs` (`None`: not in kallsyms), from
/// one read of /proc/kallsyms.
pub fn kallsyms_ranges(funcs: &[&str]) -> Result<Vec<Option<(u64, u64)>>> {
    let text = std::fs::read_to_string("/proc/kallsyms")
        .map_err(|e| Error::io("cannot read /proc/kallsyms", e))?;
    let mut syms: Vec<(u64, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let addr = u64::from_str_radix(it.next()?, 16).ok()?;
            let kind = it.next()?;
            let name = it.next()?;
            matches!(kind, "t" | "T").then_some((addr, name))
        })
        .collect();
    if syms.iter().all(|(a, _)| *a == 0) {
        return Err(Error::privilege(
            "kernel addresses in /proc/kallsyms are hidden: run as root or set kernel.kptr_restrict=0",
        ));
    }
    syms.sort_unstable();
    let range_of = |func: &str| {
        let idx = syms
            .iter()
            .position(|(_, n)| *n == func)
            .or_else(|| syms.iter().position(|(_, n)| base_name(n) == func))?;
        let start = syms[idx].0;
        let end = syms[idx + 1..]
            .iter()
            .map(|(a, _)| *a)
            .find(|a| *a > start)
            .unwrap_or(start + 1);
        Some((start, end))
    };
    Ok(funcs.iter().map(|f| range_of(f)).collect())
}

/// The text of loaded module `module` as one range `[start, end)`: from its first function in
/// /proc/kallsyms (`addr t name [module]`) to the first symbol after its last one; `None`
/// where the module has no functions there (not loaded).
pub fn kallsyms_module_range(module: &str) -> Result<Option<(u64, u64)>> {
    let text = std::fs::read_to_string("/proc/kallsyms")
        .map_err(|e| Error::io("cannot read /proc/kallsyms", e))?;
    let tag = format!("[{module}]");
    let mut all: Vec<u64> = Vec::new();
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let (Some(addr), Some(kind)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        all.push(addr);
        if matches!(kind, "t" | "T") && it.nth(1) == Some(tag.as_str()) {
            lo = lo.min(addr);
            hi = hi.max(addr);
        }
    }
    if hi == 0 {
        return Ok(None);
    }
    if lo == 0 {
        return Err(Error::privilege(
            "kernel addresses in /proc/kallsyms are hidden: run as root or set kernel.kptr_restrict=0",
        ));
    }
    let end = all
        .into_iter()
        .filter(|&a| a > hi)
        .min()
        .unwrap_or(hi + 4096);
    Ok(Some((lo, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str) -> Frame {
        Frame {
            addr: 1,
            func: name.into(),
            offset: 0x10,
            module: None,
        }
    }

    #[test]
    fn clone_suffixes_are_removed() {
        assert_eq!(
            base_name("__netif_receive_skb_core.constprop.0"),
            "__netif_receive_skb_core"
        );
        assert_eq!(base_name("ip_rcv_core"), "ip_rcv_core");
    }

    #[test]
    fn strips_only_the_tracing_prefix() {
        let mut v = vec![
            f("bpf_prog_abc_drop_tp_btf"),
            f("bpf_trace_run4"),
            f("sk_skb_reason_drop"),
            f("nft_do_chain"),
            f("kfree_skb"),
        ];
        strip_tracing_frames(&mut v);
        assert_eq!(v[0].func, "nft_do_chain");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].to_string(), "nft_do_chain+0x10");
    }
}
