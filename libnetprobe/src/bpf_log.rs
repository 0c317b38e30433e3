//! libbpf's log, kept so a load failure can say why (CO-RE relocation, verifier).
use libbpf_rs::PrintLevel;
use std::sync::Mutex;

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
const KEEP: usize = 200;

fn keep(level: PrintLevel, msg: String) {
    if matches!(level, PrintLevel::Debug) {
        return;
    }
    if std::env::var_os("NETPROBE_LIBBPF_LOG").is_some() {
        eprint!("libbpf: {msg}");
    }
    if let Ok(mut log) = LOG.lock() {
        if log.len() >= KEEP {
            log.remove(0);
        }
        log.push(msg.trim_end().to_string());
    }
}

/// Routes libbpf's messages into the kept log (and to stderr with NETPROBE_LIBBPF_LOG=1).
pub fn install() {
    libbpf_rs::set_print(Some((PrintLevel::Info, keep)));
}

/// Forgets kept messages (before a load whose failure should be explained).
pub fn clear() {
    if let Ok(mut log) = LOG.lock() {
        log.clear();
    }
}

/// The most telling kept lines: CO-RE relocation failures and verifier errors first.
pub fn explain() -> String {
    let log = LOG.lock().map(|l| l.clone()).unwrap_or_default();
    let telling: Vec<&String> = log
        .iter()
        .filter(|l| {
            l.contains("relo")
                || l.contains("failed")
                || l.contains("invalid")
                || l.contains("error")
        })
        .collect();
    let pick: Vec<&String> = if telling.is_empty() {
        log.iter()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    } else {
        telling
            .into_iter()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    };
    pick.iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}
