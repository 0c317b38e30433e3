//! User-space symbolization: names for the user stack addresses of any process, from its
//! binaries (demangled Rust and C++ names, inlined frames from DWARF), their debug files
//! (`.gnu_debuglink`, build-id under /usr/lib/debug) and perf map files (`/tmp/perf-PID.map`,
//! written by JIT runtimes). A process's executable mappings are recorded, and their files
//! held open, when it is first seen, so its stacks are still named after it exits.
use blazesym::symbolize::source::{Elf, Process, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};
use blazesym::Pid;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;

/// One executable mapping of a process.
struct Region {
    start: u64,
    end: u64,
    offset: u64,
    /// The mapped file (`/proc/PID/map_files/…`, the target's own even inside a container);
    /// `None` for anonymous memory (JIT code).
    file: Option<File>,
}

/// What was recorded of a process while it lived.
#[derive(Default)]
struct Snapshot {
    regions: Vec<Region>,
    /// `/tmp/perf-PID.map` lines: start, size, name.
    perf_map: Vec<(u64, u64, String)>,
    perf_map_found: bool,
}

impl Snapshot {
    fn take(pid: u32) -> Option<Self> {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
        let mut regions = Vec::new();
        for line in maps.lines() {
            let Some(m) = parse_maps_line(line) else {
                continue;
            };
            if !m.executable || m.path.starts_with('[') {
                continue;
            }
            let file = (!m.path.is_empty())
                .then(|| {
                    File::open(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end)).ok()
                })
                .flatten();
            regions.push(Region {
                start: m.start,
                end: m.end,
                offset: m.offset,
                file,
            });
        }
        // A process that exited (a zombie's maps are empty) leaves nothing to record.
        if regions.is_empty() {
            return None;
        }
        let (perf_map, perf_map_found) =
            match std::fs::read_to_string(format!("/tmp/perf-{pid}.map")) {
                Ok(text) => (parse_perf_map(&text), true),
                Err(_) => (Vec::new(), false),
            };
        Some(Self {
            regions,
            perf_map,
            perf_map_found,
        })
    }

    fn region(&self, addr: u64) -> Option<&Region> {
        self.regions
            .iter()
            .find(|r| r.start <= addr && addr < r.end)
    }

    fn perf_map_name(&self, addr: u64) -> Option<&str> {
        self.perf_map
            .iter()
            .find(|(start, size, _)| *start <= addr && addr < start + size)
            .map(|(_, _, n)| n.as_str())
    }
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, PartialEq, Eq)]
pub struct MapsLine {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Has the `x` permission.
    pub executable: bool,
    /// Offset of `start` in the file.
    pub offset: u64,
    /// The path (empty for anonymous memory, `[vdso]`-style for special mappings).
    pub path: String,
}

/// Parses `start-end perms offset dev inode path`.
pub fn parse_maps_line(line: &str) -> Option<MapsLine> {
    let mut it = line.splitn(6, ' ');
    let (start, end) = it.next()?.split_once('-')?;
    let perms = it.next()?;
    let offset = u64::from_str_radix(it.next()?, 16).ok()?;
    let _dev = it.next()?;
    let _inode = it.next()?;
    Some(MapsLine {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        executable: perms.as_bytes().get(2) == Some(&b'x'),
        offset,
        path: it.next().unwrap_or("").trim_start().to_string(),
    })
}

/// Parses a perf map file: `START SIZE name` per line, hexadecimal.
pub fn parse_perf_map(text: &str) -> Vec<(u64, u64, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            let start = u64::from_str_radix(it.next()?.trim_start_matches("0x"), 16).ok()?;
            let size = u64::from_str_radix(it.next()?.trim_start_matches("0x"), 16).ok()?;
            Some((start, size, it.next()?.trim().to_string()))
        })
        .collect()
}

/// Symbolizes user addresses of many processes, with a cache per (process, address).
pub struct UserSymbolizer {
    symbolizer: Symbolizer,
    snapshots: HashMap<u32, Snapshot>,
    cache: HashMap<(u32, u64), Vec<String>>,
    offsets: bool,
}

impl Default for UserSymbolizer {
    fn default() -> Self {
        Self::new()
    }
}

fn names_of(s: &Symbolized<'_>, offsets: bool) -> Option<Vec<String>> {
    match s {
        Symbolized::Sym(sym) => {
            let mut v: Vec<String> = sym
                .inlined
                .iter()
                .rev()
                .map(|f| f.name.to_string())
                .collect();
            v.push(if offsets {
                format!("{}+0x{:x}", sym.name, sym.offset)
            } else {
                sym.name.to_string()
            });
            Some(v)
        }
        Symbolized::Unknown(_) => None,
    }
}

impl UserSymbolizer {
    /// A symbolizer that expands inlined frames and demangles.
    pub fn new() -> Self {
        Self {
            symbolizer: Symbolizer::builder()
                .enable_code_info(true)
                .enable_inlined_fns(true)
                .enable_demangling(true)
                .build(),
            snapshots: HashMap::new(),
            cache: HashMap::new(),
            offsets: false,
        }
    }

    /// The same symbolizer, naming frames `function+0xoffset` when `offsets`.
    pub fn with_offsets(self, offsets: bool) -> Self {
        Self { offsets, ..self }
    }

    /// Records the executable mappings of process `tgid` now (call it when the process is
    /// first seen); a process already gone is ignored. Forgets names cached for an earlier
    /// process of the same number.
    pub fn remember(&mut self, tgid: u32) {
        if let Some(s) = Snapshot::take(tgid) {
            self.snapshots.insert(tgid, s);
            self.cache.retain(|(p, _), _| *p != tgid);
        }
    }

    /// Does process `tgid` have a recorded snapshot of its mappings?
    pub fn remembers(&self, tgid: u32) -> bool {
        self.snapshots.contains_key(&tgid)
    }

    /// The names of a user stack of `tgid`, leaf first (`addrs[0]` is the sampled instruction,
    /// the others return addresses); each address gives one name, or several when functions
    /// were inlined into it (innermost first). Unknown addresses are `[unknown]`, or say
    /// that JIT code has no perf map.
    pub fn frames(&mut self, tgid: u32, addrs: &[u64]) -> Vec<String> {
        // A return address points after the call: look up the call itself.
        let lookups: Vec<u64> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| if i == 0 { *a } else { a.saturating_sub(1) })
            .collect();
        self.names(tgid, &lookups)
    }

    /// [`UserSymbolizer::frames`] of a stack of return addresses only (the callers of a
    /// probed function, from its entry).
    pub fn return_frames(&mut self, tgid: u32, addrs: &[u64]) -> Vec<String> {
        let lookups: Vec<u64> = addrs.iter().map(|a| a.saturating_sub(1)).collect();
        self.names(tgid, &lookups)
    }

    fn names(&mut self, tgid: u32, lookups: &[u64]) -> Vec<String> {
        let missing: Vec<u64> = lookups
            .iter()
            .copied()
            .filter(|a| !self.cache.contains_key(&(tgid, *a)))
            .collect();
        if !missing.is_empty() {
            let named = self.resolve(tgid, &missing);
            for (a, n) in missing.into_iter().zip(named) {
                self.cache.insert((tgid, a), n);
            }
        }
        lookups
            .iter()
            .flat_map(|a| self.cache[&(tgid, *a)].iter().cloned())
            .collect()
    }

    /// Does `addr` lie in a file-backed executable mapping of `tgid` (a plausible return
    /// address)?
    pub fn is_code(&self, tgid: u32, addr: u64) -> bool {
        self.snapshots
            .get(&tgid)
            .and_then(|s| s.region(addr))
            .is_some_and(|r| r.file.is_some())
    }

    /// The machine code of the function that holds `addr` in `tgid`, from its first byte up
    /// to `addr` (at most 4 KiB), read from the recorded mapping's file; `None` when the
    /// address is in no recorded file or in no known function.
    pub fn code_before(&mut self, tgid: u32, addr: u64) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let region = self.snapshots.get(&tgid)?.region(addr)?;
        let file = region.file.as_ref()?;
        let file_off = addr - region.start + region.offset;
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let src = Source::Elf(Elf::new(path));
        let sym = match self
            .symbolizer
            .symbolize_single(&src, Input::FileOffset(file_off))
            .ok()?
        {
            Symbolized::Sym(sym) => sym,
            Symbolized::Unknown(_) => return None,
        };
        let len = sym.offset.min(4096);
        let mut code = vec![0u8; len];
        file.read_exact_at(&mut code, file_off - len as u64).ok()?;
        Some(code)
    }

    fn alive(tgid: u32) -> bool {
        std::fs::metadata(format!("/proc/{tgid}/maps")).is_ok_and(|_| {
            std::fs::read_to_string(format!("/proc/{tgid}/maps")).is_ok_and(|m| !m.is_empty())
        })
    }

    fn resolve(&mut self, tgid: u32, addrs: &[u64]) -> Vec<Vec<String>> {
        let mut out: Vec<Option<Vec<String>>> = vec![None; addrs.len()];
        if Self::alive(tgid) {
            let src = Source::Process(Process::new(Pid::from(tgid)));
            if let Ok(syms) = self.symbolizer.symbolize(&src, Input::AbsAddr(addrs)) {
                for (o, s) in out.iter_mut().zip(&syms) {
                    *o = names_of(s, self.offsets);
                }
            }
        }
        if let Some(snap) = self.snapshots.get(&tgid) {
            for (o, a) in out.iter_mut().zip(addrs) {
                if o.is_some() {
                    continue;
                }
                *o = match snap.region(*a) {
                    Some(Region {
                        file: Some(f),
                        start,
                        offset,
                        ..
                    }) => {
                        let path = format!("/proc/self/fd/{}", f.as_raw_fd());
                        let src = Source::Elf(Elf::new(path));
                        self.symbolizer
                            .symbolize_single(&src, Input::FileOffset(a - start + offset))
                            .ok()
                            .and_then(|s| names_of(&s, self.offsets))
                    }
                    Some(Region { file: None, .. }) => Some(vec![match snap.perf_map_name(*a) {
                        Some(n) => n.to_string(),
                        None if snap.perf_map_found => "[jit: not in /tmp/perf-PID.map]".into(),
                        None => format!("[jit: no /tmp/perf-{tgid}.map]"),
                    }]),
                    None => None,
                };
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| vec!["[unknown]".to_string()]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse_with_and_without_a_path() {
        let l = parse_maps_line(
            "55c63d331000-55c63d373000 r-xp 00002000 fd:01 1234      /usr/bin/true",
        )
        .unwrap();
        assert_eq!(
            l,
            MapsLine {
                start: 0x55c63d331000,
                end: 0x55c63d373000,
                executable: true,
                offset: 0x2000,
                path: "/usr/bin/true".into()
            }
        );
        let anon = parse_maps_line("7f0000000000-7f0000001000 rwxp 00000000 00:00 0 ").unwrap();
        assert!(anon.executable && anon.path.is_empty());
    }

    #[test]
    fn perf_maps_parse_hex_with_or_without_prefix() {
        let v = parse_perf_map("7f00001000 40 LazyCompile:~f a.js\n0x7f00002000 0x10 stub\nbad\n");
        assert_eq!(
            v,
            vec![
                (0x7f00001000, 0x40, "LazyCompile:~f a.js".to_string()),
                (0x7f00002000, 0x10, "stub".to_string())
            ]
        );
    }

    #[test]
    fn this_process_is_named_while_it_lives() {
        let pid = std::process::id();
        let mut sym = UserSymbolizer::new();
        sym.remember(pid);
        let addr = this_process_is_named_while_it_lives as *const () as u64;
        let names = sym.frames(pid, &[addr]);
        assert!(
            names
                .iter()
                .any(|n| n.contains("this_process_is_named_while_it_lives")),
            "{names:?}"
        );
    }
}
