//! Processes and threads, from /proc.

/// The thread group (process) of thread `tid`, from `/proc/<tid>/status`; `None` once the
/// thread is gone.
pub fn thread_group(tid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_belongs_to_its_process() {
        let me = std::process::id();
        assert_eq!(thread_group(me), Some(me));
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        assert_ne!(tid, me);
        assert_eq!(thread_group(tid), Some(me), "while the thread lives");
        drop(done_tx);
        t.join().unwrap();
        assert_eq!(thread_group(u32::MAX), None);
    }
}
