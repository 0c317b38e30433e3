//! The running kernel's BTF, loaded once, and the names read from it.
use crate::error::{Error, Result};
use libbpf_rs::btf::{types, Btf};
use libbpf_rs::{libbpf_sys, AsRawLibbpf};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::Path;

/// Where the kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The running kernel's BTF.
pub struct KernelBtf {
    btf: Btf<'static>,
}

impl KernelBtf {
    /// Loads `/sys/kernel/btf/vmlinux`.
    pub fn load() -> Result<Self> {
        if !Path::new(VMLINUX_BTF).exists() {
            return Err(Error::missing(format!(
                "kernel BTF missing: {VMLINUX_BTF} does not exist (needs CONFIG_DEBUG_INFO_BTF=y)"
            )));
        }
        let btf = Btf::from_vmlinux()
            .map_err(|e| Error::missing(format!("cannot read kernel BTF {VMLINUX_BTF}: {e}")))?;
        Ok(Self { btf })
    }

    /// Members `(name, value)` of the enum called `name`, if the kernel has it.
    pub fn enum_members(&self, name: &str) -> Option<Vec<(String, i64)>> {
        if let Some(e) = self.btf.type_by_name::<types::Enum<'_>>(name) {
            return Some(
                e.iter()
                    .map(|m| {
                        (
                            m.name
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            m.value,
                        )
                    })
                    .collect(),
            );
        }
        self.btf.type_by_name::<types::Enum64<'_>>(name).map(|e| {
            e.iter()
                .map(|m| {
                    (
                        m.name
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        m.value as i64,
                    )
                })
                .collect()
        })
    }

    /// Names of all enums in the kernel whose name ends with `suffix`.
    pub fn enums_ending_with(&self, suffix: &str) -> Vec<String> {
        self.btf
            .type_by_kind::<types::Enum<'_>>()
            .filter_map(|e| e.name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| n.ends_with(suffix))
            .collect()
    }

    /// Does the kernel, or a loaded module, have a function `name` in its BTF (a possible
    /// fentry/kprobe target)?
    pub fn has_func(&self, name: &str) -> bool {
        self.btf.type_by_name::<types::Func<'_>>(name).is_some()
            || self.module_has(&[name], name, libbpf_sys::BTF_KIND_FUNC)
    }

    /// Can a kprobe hook `name`: a kernel function in BTF, or a loaded module's function in
    /// /proc/kallsyms (modules of kernels before 5.11 have no BTF of their own)?
    pub fn has_kprobe_target(&self, name: &str) -> bool {
        self.has_func(name) || module_of_symbol(name).is_some()
    }

    /// Does the kernel, or a loaded module, have a BTF-enabled tracepoint `name` (the
    /// `btf_trace_<name>` typedef)?
    pub fn has_btf_tracepoint(&self, name: &str) -> bool {
        let typedef = format!("btf_trace_{name}");
        self.btf
            .type_by_name::<types::Typedef<'_>>(&typedef)
            .is_some()
            || self.module_has(
                &[
                    &format!("__bpf_trace_{name}"),
                    &format!("__tracepoint_{name}"),
                ],
                &typedef,
                libbpf_sys::BTF_KIND_TYPEDEF,
            )
    }

    /// Is `name` of BTF `kind` in the split BTF of the module that defines one of `symbols`
    /// (as /proc/kallsyms says, `sym [module]`)?
    fn module_has(&self, symbols: &[&str], name: &str, kind: u32) -> bool {
        let Some(module) = symbols.iter().find_map(|s| module_of_symbol(s)) else {
            return false;
        };
        let (Ok(module), Ok(name)) = (CString::new(module), CString::new(name)) else {
            return false;
        };
        let base = self.btf.as_libbpf_object().as_ptr();
        // SAFETY: `base` is this struct's live vmlinux BTF; the module's split BTF built on
        // it is freed before returning, and the strings outlive the calls.
        unsafe {
            let btf = libbpf_sys::btf__load_module_btf(module.as_ptr(), base);
            if btf.is_null() || libbpf_sys::libbpf_get_error(btf.cast()) != 0 {
                return false;
            }
            let id = libbpf_sys::btf__find_by_name_kind(btf, name.as_ptr(), kind);
            libbpf_sys::btf__free(btf);
            id > 0
        }
    }

    /// Members `(name, value)` of enum `name` in the split BTF of loaded module `module`
    /// (`/sys/kernel/btf/<module>`); `None` where the module or the enum is absent.
    pub fn module_enum_members(&self, module: &str, name: &str) -> Option<Vec<(String, i64)>> {
        if !Path::new("/sys/kernel/btf").join(module).exists() {
            return None;
        }
        let (module, name) = (CString::new(module).ok()?, CString::new(name).ok()?);
        let base = self.btf.as_libbpf_object().as_ptr();
        // SAFETY: `base` is this struct's live vmlinux BTF; the module's split BTF built on it
        // is freed before returning; the enum's `vlen` entries follow its btf_type.
        unsafe {
            let btf = libbpf_sys::btf__load_module_btf(module.as_ptr(), base);
            if btf.is_null() || libbpf_sys::libbpf_get_error(btf.cast()) != 0 {
                return None;
            }
            let id =
                libbpf_sys::btf__find_by_name_kind(btf, name.as_ptr(), libbpf_sys::BTF_KIND_ENUM);
            let members = (id > 0).then(|| {
                let t = libbpf_sys::btf__type_by_id(btf, id as u32);
                let vlen = ((*t).info & 0xffff) as usize;
                let entries = t.add(1).cast::<libbpf_sys::btf_enum>();
                (0..vlen)
                    .map(|i| {
                        let e = &*entries.add(i);
                        let n = libbpf_sys::btf__name_by_offset(btf, e.name_off);
                        let n = if n.is_null() {
                            String::new()
                        } else {
                            std::ffi::CStr::from_ptr(n).to_string_lossy().into_owned()
                        };
                        (n, i64::from(e.val))
                    })
                    .collect()
            });
            libbpf_sys::btf__free(btf);
            members
        }
    }

    /// The position of parameter `param` of function `func`, from the BTF of the kernel or of
    /// the loaded module that defines it (parameters move: `vhost_add_used_and_signal_n` took
    /// `nheads` before `count` in newer kernels: 7.2 has it, 6.12 not).
    pub fn func_param_index(&self, func: &str, param: &str) -> Option<usize> {
        let cfunc = CString::new(func).ok()?;
        let base = self.btf.as_libbpf_object().as_ptr();
        // SAFETY: `base` is this struct's live vmlinux BTF; a module's split BTF built on it is
        // freed before returning; every type pointer comes from libbpf for an ID it returned.
        unsafe {
            let module = module_of_symbol(func).and_then(|m| CString::new(m).ok());
            let btf = match &module {
                Some(m) => {
                    let b = libbpf_sys::btf__load_module_btf(m.as_ptr(), base);
                    if b.is_null() || libbpf_sys::libbpf_get_error(b.cast()) != 0 {
                        return None;
                    }
                    b
                }
                None => base,
            };
            let found = param_index_in(btf, &cfunc, param);
            if module.is_some() {
                libbpf_sys::btf__free(btf);
            }
            found
        }
    }

    /// Does the kernel, or the loaded module that defines function `module_symbol`, have
    /// struct `name` in its BTF (`tun_struct` with `tun_net_xmit`: built in, or a module with
    /// BTF, 5.11+)?
    pub fn has_struct(&self, name: &str, module_symbol: &str) -> bool {
        self.btf.type_by_name::<types::Struct<'_>>(name).is_some()
            || self.module_has(&[module_symbol], name, libbpf_sys::BTF_KIND_STRUCT)
    }

    /// Is struct `name` in the kernel's own BTF (not a module's)? kfuncs that take a type ID
    /// (`bpf_rdonly_cast`) take vmlinux IDs only.
    pub fn vmlinux_has_struct(&self, name: &str) -> bool {
        self.btf.type_by_name::<types::Struct<'_>>(name).is_some()
    }

    /// Does struct `strukt` have a member `field`?
    pub fn struct_has_field(&self, strukt: &str, field: &str) -> bool {
        self.btf
            .type_by_name::<types::Struct<'_>>(strukt)
            .is_some_and(|s| {
                s.iter()
                    .any(|m| m.name.is_some_and(|n| n.to_string_lossy() == field))
            })
    }
}

/// The index of parameter `param` of FUNC `func` in `btf`.
///
/// # Safety
/// `btf` must be a live libbpf BTF object.
unsafe fn param_index_in(
    btf: *const libbpf_sys::btf,
    func: &CString,
    param: &str,
) -> Option<usize> {
    // SAFETY: the caller passes a live BTF; IDs and offsets come from it.
    unsafe {
        let id = libbpf_sys::btf__find_by_name_kind(btf, func.as_ptr(), libbpf_sys::BTF_KIND_FUNC);
        if id <= 0 {
            return None;
        }
        let f = libbpf_sys::btf__type_by_id(btf, id as u32);
        let proto = libbpf_sys::btf__type_by_id(btf, (*f).__bindgen_anon_1.type_);
        if proto.is_null() {
            return None;
        }
        let vlen = ((*proto).info & 0xffff) as usize;
        let params = proto.add(1).cast::<libbpf_sys::btf_param>();
        (0..vlen).find(|&i| {
            let name = libbpf_sys::btf__name_by_offset(btf, (*params.add(i)).name_off);
            !name.is_null() && std::ffi::CStr::from_ptr(name).to_bytes() == param.as_bytes()
        })
    }
}

/// The module that defines `symbol`, from /proc/kallsyms (`addr type symbol [module]`).
fn module_of_symbol(symbol: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/kallsyms").ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split_ascii_whitespace().skip(2);
        (f.next()? == symbol)
            .then(|| f.next())
            .flatten()
            .and_then(|m| m.strip_prefix('[')?.strip_suffix(']'))
            .map(str::to_string)
    })
}

/// Drop-reason names of the running kernel: `enum skb_drop_reason` and subsystem enums.
#[derive(Debug, Clone, Default)]
pub struct DropReasons {
    by_value: BTreeMap<u32, String>,
    /// False on kernels older than 5.17, whose kfree_skb has no reason.
    pub available: bool,
}

const SKB_PREFIX: &str = "SKB_DROP_REASON_";

/// Drop-reason subsystems that live in modules: (module, enum). Their values share
/// `skb_drop_reason`'s space (`SKB_DROP_REASON_SUBSYS_*` in the high 16 bits).
const MODULE_DROP_REASONS: [(&str, &str); 2] = [
    ("openvswitch", "ovs_drop_reason"),
    ("mac80211", "mac80211_drop_reason"),
];

impl DropReasons {
    /// Reads the reason enums from the kernel's BTF.
    pub fn from_kernel(btf: &KernelBtf) -> Self {
        let mut by_value = BTreeMap::new();
        let Some(members) = btf.enum_members("skb_drop_reason") else {
            return Self::default();
        };
        for (name, value) in members {
            if name.starts_with("SKB_DROP_REASON_SUBSYS") || name == "SKB_DROP_REASON_MAX" {
                continue;
            }
            let short = name.strip_prefix(SKB_PREFIX).unwrap_or(&name).to_string();
            by_value.insert(value as u32, short);
        }
        // Subsystem reasons (mac80211, openvswitch, ...) carry the subsystem in the high 16
        // bits: built in, their enums are in vmlinux; as loaded modules, in the module's BTF.
        let mut subsys: Vec<(String, i64)> = Vec::new();
        for enum_name in btf.enums_ending_with("_drop_reason") {
            if enum_name != "skb_drop_reason" {
                subsys.extend(btf.enum_members(&enum_name).unwrap_or_default());
            }
        }
        for (module, enum_name) in MODULE_DROP_REASONS {
            subsys.extend(
                btf.module_enum_members(module, enum_name)
                    .unwrap_or_default(),
            );
        }
        for (name, value) in subsys {
            if value >= 1 << 16 && !name.ends_with("_MAX") {
                by_value.entry(value as u32).or_insert(name);
            }
        }
        Self {
            by_value,
            available: true,
        }
    }

    /// Builds a table from explicit `(value, name)` pairs (tests, other kernels' dumps).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u32, String)>) -> Self {
        Self {
            by_value: pairs.into_iter().collect(),
            available: true,
        }
    }

    /// Name of a reason value, `UNKNOWN(<n>)` if this kernel has no such value.
    pub fn name(&self, value: u32) -> String {
        if !self.available {
            return "-".to_string();
        }
        self.by_value
            .get(&value)
            .cloned()
            .unwrap_or_else(|| format!("UNKNOWN({value})"))
    }

    /// Value of a reason name; accepts `NO_SOCKET`, `SKB_DROP_REASON_NO_SOCKET`, any case.
    pub fn value(&self, name: &str) -> Option<u32> {
        let upper = name.trim().to_ascii_uppercase();
        let short = upper.strip_prefix(SKB_PREFIX).unwrap_or(&upper);
        self.by_value
            .iter()
            .find(|(_, n)| n.as_str() == short)
            .map(|(v, _)| *v)
    }

    /// All names, sorted by value.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_value.values().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_functions_parameters_are_found_by_name_in_the_running_kernels_btf() {
        let btf = KernelBtf::load().expect("this kernel's BTF");
        // int __netif_receive_skb_core(struct sk_buff **pskb, bool pfmemalloc, struct packet_type **ppt_prev)
        assert_eq!(
            btf.func_param_index("__netif_receive_skb_core", "pskb"),
            Some(0)
        );
        assert_eq!(
            btf.func_param_index("__netif_receive_skb_core", "ppt_prev"),
            Some(2)
        );
        assert_eq!(
            btf.func_param_index("__netif_receive_skb_core", "nope"),
            None
        );
        assert_eq!(btf.func_param_index("no_such_function_here", "x"), None);
    }

    #[test]
    fn reason_names_and_values_round_trip() {
        let r = DropReasons::from_pairs([(2, "NOT_SPECIFIED".into()), (3, "NO_SOCKET".into())]);
        assert_eq!(r.name(3), "NO_SOCKET");
        assert_eq!(r.name(99), "UNKNOWN(99)");
        assert_eq!(r.value("no_socket"), Some(3));
        assert_eq!(r.value("SKB_DROP_REASON_NO_SOCKET"), Some(3));
        assert_eq!(r.value("NOPE"), None);
    }
}
