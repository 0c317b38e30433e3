//! Functions of an ELF binary by name or glob, as users write them: demangled Rust paths
//! without the hash (`mycrate::module::func`), C++ names, C names, Go's `main.func`. Matching
//! runs over every symbol of the binary (libbpf and blazesym's lookup know raw names only);
//! aliases at one address are one function.
use crate::error::{Error, Result};
use blazesym::inspect::source::{Elf, Source};
use blazesym::inspect::Inspector;
use blazesym::SymType;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// A function to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// Its name as matched (demangled, without a Rust hash).
    pub name: String,
    /// The binary it is in, as given (for reports).
    pub binary: String,
    /// The path uprobes attach through (the same inode as `binary`).
    pub attach_path: PathBuf,
    /// Offset of its first instruction in the file.
    pub file_offset: u64,
    /// Its size in bytes (0: unknown).
    pub size: u64,
    /// A Go function (no uretprobes: they corrupt Go stacks).
    pub go: bool,
}

/// The name users write for raw symbol `raw`: demangled Rust (`{:#}`: no hash), C++, or as is.
pub fn demangle(raw: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(raw) {
        return format!("{d:#}");
    }
    if raw.starts_with("_Z") {
        if let Ok(sym) = cpp_demangle::Symbol::new(raw) {
            if let Ok(d) = sym.demangle() {
                return d;
            }
        }
    }
    raw.to_string()
}

/// Does glob `pattern` (`*` any run, `?` one character, the rest literal) match `name`?
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The functions of `binary` matching any of `patterns`, attached through `attach_path`
/// (e.g. `/proc/PID/map_files/…` for a binary in a container); one clear error when a
/// pattern matches nothing.
pub fn resolve(binary: &str, attach_path: &Path, patterns: &[String]) -> Result<Vec<Function>> {
    let mut src = Elf::new(attach_path);
    src.debug_syms = false;
    let src = Source::Elf(src);
    let mut by_offset: BTreeMap<u64, (String, u64)> = BTreeMap::new();
    let mut go = false;
    let mut functions_seen = 0usize;
    let mut matched = vec![false; patterns.len()];
    Inspector::new()
        .for_each(&src, |s| {
            if s.name == "runtime.goexit" || s.name == "runtime.main" {
                go = true;
            }
            if s.sym_type != SymType::Function {
                return ControlFlow::Continue(());
            }
            functions_seen += 1;
            let Some(offset) = s.file_offset.filter(|o| *o != 0) else {
                return ControlFlow::Continue(());
            };
            let name = demangle(&s.name);
            let mut hit = false;
            for (i, p) in patterns.iter().enumerate() {
                if glob_match(p, &name) || glob_match(p, &s.name) {
                    matched[i] = true;
                    hit = true;
                }
            }
            if hit {
                // Aliases share the address: keep the shortest name (pthread_rwlock_wrlock, not
                // __pthread_rwlock_wrlock).
                let size = s.size.unwrap_or(0) as u64;
                by_offset
                    .entry(offset)
                    .and_modify(|(n, sz)| {
                        if name.len() < n.len() {
                            *n = name.clone();
                        }
                        *sz = (*sz).max(size);
                    })
                    .or_insert((name, size));
            }
            ControlFlow::Continue(())
        })
        .map_err(|e| Error::usage(format!("{binary}: cannot read its symbols: {e}")))?;
    if let Some(i) = matched.iter().position(|m| !m) {
        let hint = if functions_seen == 0 {
            " (it has no symbol table: stripped?)"
        } else {
            ""
        };
        return Err(Error::usage(format!(
            "no function matches {:?} in {binary}{hint}",
            patterns[i]
        )));
    }
    Ok(by_offset
        .into_iter()
        .map(|(file_offset, (name, size))| Function {
            name,
            binary: binary.to_string(),
            attach_path: attach_path.to_path_buf(),
            file_offset,
            size,
            go,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("cpu_burn::hot_*", "cpu_burn::hot_three"));
        assert!(glob_match("*::spin", "cpu_burn::spin"));
        assert!(glob_match("main.?ork", "main.work"));
        assert!(!glob_match("main.work", "main.worker"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acd"));
    }

    #[test]
    fn rust_names_lose_their_hash_and_cpp_names_are_demangled() {
        assert_eq!(
            demangle("_ZN8cpu_burn9hot_three17h0123456789abcdefE"),
            "cpu_burn::hot_three"
        );
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(demangle("main.work"), "main.work");
    }

    #[test]
    fn this_test_binary_has_its_own_functions() {
        let exe = std::env::current_exe().unwrap();
        let f = resolve(
            "self",
            &exe,
            &["*::rust_names_lose_their_hash_and_cpp_names_are_demangled".to_string()],
        )
        .unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(!f[0].go);
        assert!(resolve("self", &exe, &["no_such_function_anywhere".to_string()]).is_err());
    }
}
