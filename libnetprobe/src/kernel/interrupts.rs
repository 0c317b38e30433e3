//! `/proc/interrupts`: IRQ numbers, per-CPU counts and names, and the virtqueue vectors of a
//! virtio device found there by name (`virtio2-input.0`).
use crate::error::{Error, Result};
use serde::Serialize;

/// One numbered line of `/proc/interrupts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqLine {
    /// IRQ number.
    pub irq: u32,
    /// Handled count per CPU (in CPU column order).
    pub per_cpu: Vec<u64>,
    /// The action names (last column: `virtio2-input.0`).
    pub name: String,
}

impl IrqLine {
    /// The count summed over CPUs.
    pub fn total(&self) -> u64 {
        self.per_cpu.iter().sum()
    }
}

/// Parses `/proc/interrupts` text: its numbered lines (not NMI, LOC, ...).
pub fn parse(text: &str) -> Vec<IrqLine> {
    let mut lines = text.lines();
    let cpus = lines.next().map_or(0, |h| h.split_whitespace().count());
    lines
        .filter_map(|l| {
            let (num, rest) = l.trim_start().split_once(':')?;
            let irq = num.parse().ok()?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let per_cpu: Vec<u64> = fields
                .iter()
                .take(cpus)
                .map_while(|f| f.parse().ok())
                .collect();
            // Chip, hardware IRQ and type follow the counts; the name is the last field.
            let name = if fields.len() > per_cpu.len() + 1 {
                fields.last().copied().unwrap_or_default().to_string()
            } else {
                String::new()
            };
            Some(IrqLine { irq, per_cpu, name })
        })
        .collect()
}

/// Reads `/proc/interrupts`.
pub fn read() -> Result<Vec<IrqLine>> {
    let text = std::fs::read_to_string("/proc/interrupts")
        .map_err(|e| Error::io("cannot read /proc/interrupts", e))?;
    Ok(parse(&text))
}

/// What a virtio device's vector serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorRole {
    /// A receive virtqueue (`-input.N`).
    Rx,
    /// A send virtqueue (`-output.N`).
    Tx,
    /// The configuration-change vector (`-config`).
    Config,
    /// One vector for every virtqueue (`-virtqueues`), or the legacy shared INTx line.
    Shared,
    /// Another device's IRQ, given by number.
    Other,
}

/// One IRQ of a virtio device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtioVector {
    /// IRQ number.
    pub irq: u32,
    /// Its `/proc/interrupts` name.
    pub name: String,
    /// What it serves.
    pub role: VectorRole,
    /// The queue pair of an rx or tx vector.
    pub queue: Option<u32>,
}

/// The role and queue of IRQ name `name` if it is one of virtio device `virtio`'s
/// (`virtio2`): `virtio2-input.0`, `virtio2-output.3`, `virtio2-config`,
/// `virtio2-virtqueues`, `virtio2` (INTx).
pub fn virtio_role(virtio: &str, name: &str) -> Option<(VectorRole, Option<u32>)> {
    let rest = name.strip_prefix(virtio)?;
    if rest.is_empty() {
        return Some((VectorRole::Shared, None));
    }
    let rest = rest.strip_prefix('-')?;
    let queue = |s: &str| s.parse::<u32>().ok();
    if let Some(q) = rest.strip_prefix("input.") {
        return Some((VectorRole::Rx, Some(queue(q)?)));
    }
    if let Some(q) = rest.strip_prefix("output.") {
        return Some((VectorRole::Tx, Some(queue(q)?)));
    }
    match rest {
        "config" => Some((VectorRole::Config, None)),
        "virtqueues" => Some((VectorRole::Shared, None)),
        _ => None,
    }
}

/// The vectors of virtio device `virtio` among `lines`, by IRQ number.
pub fn virtio_vectors(lines: &[IrqLine], virtio: &str) -> Vec<VirtioVector> {
    let mut v: Vec<VirtioVector> = lines
        .iter()
        .filter_map(|l| {
            let (role, queue) = virtio_role(virtio, &l.name)?;
            Some(VirtioVector {
                irq: l.irq,
                name: l.name.clone(),
                role,
                queue,
            })
        })
        .collect();
    v.sort_by_key(|x| x.irq);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "           CPU0       CPU1
  0:         33          0   IO-APIC   2-edge      timer
 37:          0          0 PCI-MSIX-0000:00:03.0   0-edge      virtio2-config
 38:          0      39778 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
 39:      28904          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0
 40:          3          1   PCI-MSI 49152-edge      virtio20-input.0
 11:          5          0   IO-APIC  11-fasteoi   virtio3
NMI:          0          0   Non-maskable interrupts
";

    #[test]
    fn numbered_lines_are_parsed_with_counts_and_names() {
        let l = parse(SAMPLE);
        assert_eq!(l.len(), 6);
        assert_eq!(l[2].irq, 38);
        assert_eq!(l[2].per_cpu, vec![0, 39778]);
        assert_eq!(l[2].total(), 39778);
        assert_eq!(l[2].name, "virtio2-input.0");
        assert_eq!(l[0].name, "timer");
    }

    #[test]
    fn a_devices_vectors_are_found_by_name_only() {
        let l = parse(SAMPLE);
        let v = virtio_vectors(&l, "virtio2");
        let got: Vec<(u32, VectorRole, Option<u32>)> =
            v.iter().map(|x| (x.irq, x.role, x.queue)).collect();
        assert_eq!(
            got,
            vec![
                (37, VectorRole::Config, None),
                (38, VectorRole::Rx, Some(0)),
                (39, VectorRole::Tx, Some(0)),
            ]
        );
        assert_eq!(
            virtio_vectors(&l, "virtio3")[0].role,
            VectorRole::Shared,
            "INTx line"
        );
        assert_eq!(virtio_role("virtio2", "virtio2-req.0"), None);
    }
}
