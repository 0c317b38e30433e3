//! Text rendering of proc_net_trace events: one line each, `perf trace`-like, with the time
//! since the first event.
use crate::hist::human_ns;
use crate::sets::proctrace::ProcEvent;

/// One event's line; `base_ns` is the time the column counts from.
pub fn event_line(e: &ProcEvent, base_ns: u64) -> String {
    let ms = e.time_ns.saturating_sub(base_ns) as f64 / 1e6;
    let who = format!("{}/{}", e.comm, e.tid);
    let what = match (&e.syscall, e.args) {
        (Some(name), Some(args)) => {
            let args: Vec<String> = args.iter().map(|a| format!("0x{a:x}")).collect();
            let ret = match (e.ret, e.errno) {
                (Some(r), Some(errno)) => format!("{r} {errno}"),
                (Some(r), None) if r > 0xffff => format!("0x{r:x}"),
                (Some(r), None) => r.to_string(),
                _ => "?".into(),
            };
            format!(
                "{name}({}) = {ret}  ({})",
                args.join(", "),
                human_ns(e.duration_ns.unwrap_or(0))
            )
        }
        _ => {
            let mut s = format!(
                "{}  {}  {} B  {}",
                e.event,
                e.dev.as_deref().unwrap_or("-"),
                e.len.unwrap_or(0),
                e.flow.as_ref().map(|f| f.describe()).unwrap_or_default()
            );
            if let Some([ty, id, seq]) = e.icmp {
                s.push_str(&format!(" type {ty} id {id} seq {seq}"));
            }
            if let Some(rc) = e.ret {
                s.push_str(&format!(" rc {rc}"));
            }
            if let Some(l) = &e.location {
                s.push_str(&format!(" at {l}"));
            }
            s
        }
    };
    format!("{ms:>10.3} ms  {who:<20} {what}\n")
}
