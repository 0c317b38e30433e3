//! libbpf's log, kept so a load failure can say why (CO-RE relocation, verifier).
use libbpf_rs::PrintLevel;
use std::sync::Mutex;

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
const KEEP: usize = 400;

/// Debug messages worth keeping: the ones that explain a failed CO-RE relocation.
fn telling_debug(msg: &str) -> bool {
    msg.contains("relo #")
        && (msg.contains("no matching")
            || msg.contains("invalid")
            || msg.contains("failed")
            || is_spec(msg))
}

/// libbpf's description of what a relocation wants: `relo #2: <enumval_value> [91] enum ...`.
fn is_spec(line: &str) -> bool {
    line.contains("relo #") && line.contains(": <") && line.contains("> [")
}

/// `prog 'x': relo #N` of a libbpf relocation line.
fn relo_id(line: &str) -> Option<&str> {
    let at = line.find("relo #")?;
    let end = line[at + 6..]
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| at + 6 + i)?;
    Some(&line[..end])
}

fn keep(level: PrintLevel, msg: String) {
    let verbose = std::env::var_os("NETPROBE_LIBBPF_LOG").is_some();
    if verbose {
        eprint!("{msg}");
    }
    if matches!(level, PrintLevel::Debug) && !telling_debug(&msg) {
        return;
    }
    if let Ok(mut log) = LOG.lock() {
        for line in msg.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if log.len() >= KEEP {
                log.remove(0);
            }
            log.push(line.trim_start_matches("libbpf: ").to_string());
        }
    }
}

/// Routes libbpf's messages into the kept log (and all of them to stderr with
/// `NETPROBE_LIBBPF_LOG=1`).
pub fn install() {
    libbpf_rs::set_print(Some((PrintLevel::Debug, keep)));
}

/// Forgets kept messages (before a load whose failure should be explained).
pub fn clear() {
    if let Ok(mut log) = LOG.lock() {
        log.clear();
    }
}

/// The most telling kept lines, in this order: failed CO-RE relocations (a field, type or enum
/// value this kernel lacks), the verifier's last words, then whatever libbpf said last.
pub fn explain() -> String {
    let log = LOG.lock().map(|l| l.clone()).unwrap_or_default();
    // The verifier reached a poisoned instruction: libbpf names the relocation behind it.
    let mut reached: Vec<&str> = log
        .iter()
        .filter_map(|l| l.split("failed to resolve CO-RE relocation").nth(1))
        .map(str::trim)
        .collect();
    reached.dedup();
    if !reached.is_empty() {
        return format!(
            "CO-RE relocation failed, this kernel has no {} (guard it with bpf_core_*_exists)",
            reached.join("; no ")
        );
    }
    // `*_exists` relocations without a target are fine (they become 0), the others are not.
    let failed: Vec<&str> = log
        .iter()
        .filter(|l| l.contains("no matching targets found"))
        .filter_map(|l| relo_id(l))
        .filter(|id| {
            !log.iter()
                .any(|l| relo_id(l) == Some(*id) && is_spec(l) && l.contains("_exists>"))
        })
        .collect();
    if !failed.is_empty() {
        let mut what: Vec<String> = Vec::new();
        for id in failed {
            let spec = log
                .iter()
                .find(|l| relo_id(l) == Some(id) && is_spec(l))
                .and_then(|l| l.get(id.len() + 2..))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|| id.to_string());
            if !what.contains(&spec) {
                what.push(spec);
            }
        }
        return format!(
            "CO-RE relocation failed, this kernel has no {} (guard it with bpf_core_*_exists)",
            what.join("; no ")
        );
    }
    let core: Vec<&String> = log.iter().filter(|l| l.contains("CO-RE")).collect();
    if !core.is_empty() {
        let picked: Vec<&str> = core.iter().take(3).map(|s| s.as_str()).collect();
        return format!("CO-RE relocation failed: {}", picked.join(" | "));
    }
    let verifier_end = log
        .iter()
        .position(|l| l.contains("-- END PROG LOAD LOG --"));
    if let Some(end) = verifier_end {
        let start = end.saturating_sub(3);
        let lines: Vec<&str> = log[start..end].iter().map(|s| s.as_str()).collect();
        return format!("verifier: {}", lines.join(" | "));
    }
    let tail: Vec<&str> = log.iter().rev().take(3).rev().map(|s| s.as_str()).collect();
    tail.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_relocation_id() {
        assert_eq!(
            relo_id("prog 'drop_tp_btf': relo #2: no matching targets found"),
            Some("prog 'drop_tp_btf': relo #2")
        );
        assert_eq!(relo_id("nothing here"), None);
        let spec = "prog 'p': relo #2: <enumval_value> [91] enum skb_drop_reason::SKB_CONSUMED = 1";
        assert!(is_spec(spec));
        assert!(!is_spec("prog 'p': relo #2: no matching targets found"));
    }
}
