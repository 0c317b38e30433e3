//! Text rendering of cpu profiles and off-CPU time: bcc-style stacks (kernel frames first,
//! leaf on top, then the user frames and whose they are), folded lines, and SVG flame graphs
//! through inferno.
use crate::error::{Error, Result};
use crate::run::IntervalInfo;
use crate::sets::cpu::{OffCpuReport, ProfileReport, Stack};
use std::fmt::Write as _;
use std::path::Path;

/// How stacks are printed.
#[derive(Debug, Clone, Copy, Default)]
pub struct StackStyle {
    /// One folded line per stack (`comm;root;…;leaf value`).
    pub folded: bool,
    /// `-` (folded) or `--` (stacks) between user and kernel frames.
    pub delimited: bool,
}

fn stack_block(out: &mut String, s: &Stack, delimited: bool, value: &str) {
    for f in &s.kernel {
        let _ = writeln!(out, "    {f}");
    }
    if delimited && !s.kernel.is_empty() && !s.user.is_empty() {
        let _ = writeln!(out, "    --");
    }
    for f in &s.user {
        let _ = writeln!(out, "    {f}");
    }
    let _ = writeln!(out, "    -                {} ({}/{})", s.comm, s.pid, s.tid);
    let _ = writeln!(out, "        {value}\n");
}

/// Text of one profile interval.
pub fn profile_text(
    tool: &str,
    info: &IntervalInfo,
    r: &ProfileReport,
    style: StackStyle,
) -> String {
    if style.folded {
        return r
            .stacks
            .iter()
            .map(|e| e.stack.folded(style.delimited, e.count) + "\n")
            .collect();
    }
    let mut out = crate::output::interval_header(tool, info.elapsed, info.now);
    let _ = writeln!(
        out,
        "{} samples (cpu-clock at {} Hz on {} CPUs), {} stacks; {}\n",
        r.samples,
        r.frequency_hz,
        r.cpus,
        r.stacks.len(),
        r.stats.line()
    );
    for e in &r.stacks {
        stack_block(&mut out, &e.stack, true, &format!("{} samples", e.count));
    }
    out
}

/// Text of one off-CPU interval: a timestamped block (`-I`), folded values in microseconds.
pub fn offcpu_text(tool: &str, info: &IntervalInfo, r: &OffCpuReport, style: StackStyle) -> String {
    let mut out = String::new();
    if style.folded {
        let _ = writeln!(
            out,
            "# {} off-CPU us, {} stacks",
            crate::output::local_time(info.now),
            r.stacks.len()
        );
        for e in &r.stacks {
            out.push_str(&(e.stack.folded(style.delimited, e.us) + "\n"));
        }
        return out;
    }
    out.push_str(&crate::output::interval_header(
        tool,
        info.elapsed,
        info.now,
    ));
    let _ = writeln!(
        out,
        "{} us off CPU in {} stacks; {}\n",
        r.total_us,
        r.stacks.len(),
        r.stats.line()
    );
    for e in &r.stacks {
        stack_block(
            &mut out,
            &e.stack,
            true,
            &format!("{} us (state {})", e.us, e.state),
        );
    }
    out
}

/// Writes an SVG flame graph of folded `lines` (`frames value`) to `path`; `count_name` is
/// the unit of the values (`samples`, `us`).
pub fn write_flame_graph(
    path: &Path,
    title: &str,
    count_name: &str,
    lines: &[String],
) -> Result<()> {
    let file = std::fs::File::create(path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = count_name.to_string();
    let w = std::io::BufWriter::new(file);
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), w).map_err(|e| {
        Error::io(
            format!("cannot write the flame graph {}", path.display()),
            std::io::Error::other(e.to_string()),
        )
    })
}
