//! The "VM notified" step of a virtualization host's datapath without a guest: a KVM VM with an
//! in-kernel irqchip and one MSI irqfd ([`KvmIrqfd`]), which user code signals the way vhost-net
//! signals a guest after moving packets into its ring, and a private tracefs instance that
//! records `kvm:kvm_msi_set_irq` ([`MsiTrace`]) to check that the signal reached KVM.
//!
//! ```text
//!  signal(): write(eventfd, 1)          (the writer's thread, like a vhost worker)
//!    -> eventfd_write -> wake_up -> irqfd_wakeup            (KVM's wait-queue entry)
//!    -> kvm_arch_set_irq_inatomic -> kvm_msi_to_lapic_irq   tracepoint kvm:kvm_msi_set_irq
//!    -> kvm_irq_delivery_to_apic_fast -> ... -> kvm_apic_accept_irq (LAPIC is enabled)
//! ```
//!
//! Everything runs synchronously in the writing thread: MSI routes take KVM's atomic fast path,
//! so no kworker is involved (an INTx/IOAPIC route would defer to `irqfd_inject` in a kworker).
//! The fast path needs a destination: [`KvmIrqfd::create`] makes vCPU 0 (never run) and
//! software-enables its LAPIC, as a booted guest would have.
mod guest;

pub use guest::{RunningGuest, STOP_VECTOR};

use std::fs::{self, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// The MSI address the route uses: the x86 LAPIC window, destination APIC id 0, physical mode.
pub const MSI_ADDRESS: u32 = 0xfee0_0000;
/// The MSI vector (the low byte of the MSI data; fixed delivery, edge).
pub const MSI_VECTOR: u8 = 0x31;
/// The GSI the MSI route and the irqfd use (the first one above the IOAPIC's 24 pins).
pub const MSI_GSI: u32 = 24;

const KVMIO: libc::Ioctl = 0xae;
const IOC_WRITE: libc::Ioctl = 1;
const IOC_READ: libc::Ioctl = 2;

/// `_IO(KVMIO, nr)`.
const fn kvm_io(nr: libc::Ioctl) -> libc::Ioctl {
    (KVMIO << 8) | nr
}

/// `_IOC(dir, KVMIO, nr, size)`.
const fn kvm_ioc(dir: libc::Ioctl, nr: libc::Ioctl, size: usize) -> libc::Ioctl {
    (dir << 30) | ((size as libc::Ioctl) << 16) | (KVMIO << 8) | nr
}

const KVM_GET_API_VERSION: libc::Ioctl = kvm_io(0x00);
const KVM_CREATE_VM: libc::Ioctl = kvm_io(0x01);
const KVM_CHECK_EXTENSION: libc::Ioctl = kvm_io(0x03);
const KVM_CREATE_VCPU: libc::Ioctl = kvm_io(0x41);
const KVM_CREATE_IRQCHIP: libc::Ioctl = kvm_io(0x60);
/// `_IOW(KVMIO, 0x6a, struct kvm_irq_routing)`: the size is the 8-byte header only.
const KVM_SET_GSI_ROUTING: libc::Ioctl = kvm_ioc(IOC_WRITE, 0x6a, 8);
const KVM_IRQFD: libc::Ioctl = kvm_ioc(IOC_WRITE, 0x76, std::mem::size_of::<KvmIrqfdReq>());
const KVM_GET_LAPIC: libc::Ioctl = kvm_ioc(IOC_READ, 0x8e, std::mem::size_of::<LapicState>());
const KVM_SET_LAPIC: libc::Ioctl = kvm_ioc(IOC_WRITE, 0x8f, std::mem::size_of::<LapicState>());
// The values the C headers give (checked with a small C program against linux/kvm.h, 6.18).
const _: () = assert!(KVM_SET_GSI_ROUTING == 0x4008_ae6a);
const _: () = assert!(KVM_IRQFD == 0x4020_ae76);
const _: () = assert!(KVM_GET_LAPIC == 0x8400_ae8e);
const _: () = assert!(KVM_SET_LAPIC == 0x4400_ae8f);

const KVM_API_VERSION: libc::c_int = 12;
const KVM_CAP_IRQCHIP: libc::c_ulong = 0;
const KVM_CAP_IRQ_ROUTING: libc::c_ulong = 25;
const KVM_CAP_IRQFD: libc::c_ulong = 32;
const KVM_IRQ_ROUTING_IRQCHIP: u32 = 1;
const KVM_IRQ_ROUTING_MSI: u32 = 2;
const KVM_IRQCHIP_IOAPIC: u32 = 2;
const KVM_IRQ_LINE: libc::Ioctl = kvm_ioc(IOC_WRITE, 0x61, 8);
const KVM_SIGNAL_MSI: libc::Ioctl = kvm_ioc(IOC_WRITE, 0xa5, std::mem::size_of::<KvmMsi>());
const _: () = assert!(KVM_IRQ_LINE == 0x4008_ae61);
const _: () = assert!(KVM_SIGNAL_MSI == 0x4020_aea5);
const KVM_IRQFD_FLAG_DEASSIGN: u32 = 1;
/// Offset of the spurious-interrupt vector register in the LAPIC page, and its
/// APIC-software-enable bit.
const APIC_SPIV: usize = 0xf0;
const APIC_SPIV_ENABLE: u32 = 1 << 8;

/// `struct kvm_irqfd`.
#[repr(C)]
struct KvmIrqfdReq {
    fd: u32,
    gsi: u32,
    flags: u32,
    resamplefd: u32,
    pad: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<KvmIrqfdReq>() == 32);

/// `struct kvm_irq_routing_msi`.
#[repr(C)]
struct RoutingMsi {
    address_lo: u32,
    address_hi: u32,
    data: u32,
    devid: u32,
}

/// `struct kvm_irq_routing_entry` with its union (`u32 pad[8]`) holding the MSI variant.
#[repr(C)]
struct RoutingEntry {
    gsi: u32,
    kind: u32,
    flags: u32,
    pad: u32,
    msi: RoutingMsi,
    union_tail: [u32; 4],
}
const _: () = assert!(std::mem::size_of::<RoutingEntry>() == 48);

impl RoutingEntry {
    /// GSI `gsi` -> an MSI to APIC id 0 with `vector`.
    fn msi(gsi: u32, vector: u8) -> Self {
        RoutingEntry {
            gsi,
            kind: KVM_IRQ_ROUTING_MSI,
            flags: 0,
            pad: 0,
            msi: RoutingMsi {
                address_lo: MSI_ADDRESS,
                address_hi: 0,
                data: u32::from(vector),
                devid: 0,
            },
            union_tail: [0; 4],
        }
    }

    /// GSI `gsi` -> pin `pin` of the in-kernel IOAPIC (`struct kvm_irq_routing_irqchip` in
    /// the union's first two words).
    fn ioapic(gsi: u32, pin: u32) -> Self {
        RoutingEntry {
            gsi,
            kind: KVM_IRQ_ROUTING_IRQCHIP,
            flags: 0,
            pad: 0,
            msi: RoutingMsi {
                address_lo: KVM_IRQCHIP_IOAPIC,
                address_hi: pin,
                data: 0,
                devid: 0,
            },
            union_tail: [0; 4],
        }
    }
}

/// `struct kvm_irq_routing` (`nr`, `flags`, flexible array) with `N` entries.
#[repr(C)]
struct Routing<const N: usize> {
    nr: u32,
    flags: u32,
    entries: [RoutingEntry; N],
}
const _: () = assert!(std::mem::size_of::<Routing<1>>() == 8 + 48);

/// `struct kvm_msi`.
#[repr(C)]
struct KvmMsi {
    address_lo: u32,
    address_hi: u32,
    data: u32,
    flags: u32,
    devid: u32,
    pad: [u8; 12],
}
const _: () = assert!(std::mem::size_of::<KvmMsi>() == 32);

/// `struct kvm_lapic_state`: the 1 KiB LAPIC register page.
#[repr(C)]
struct LapicState {
    regs: [u8; 1024],
}

/// Runs `ioctl(fd, req, arg)`; the error names `what`.
///
/// # Safety
/// `arg` must be what `req` expects: an integer, or a pointer to a live, correctly laid-out
/// struct of the size encoded in `req`.
unsafe fn kvm_ioctl(
    fd: BorrowedFd<'_>,
    req: libc::Ioctl,
    arg: usize,
    what: &str,
) -> Result<libc::c_int, String> {
    loop {
        // SAFETY: the caller guarantees that `arg` matches `req`; `fd` is open.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) };
        if rc >= 0 {
            return Ok(rc);
        }
        let err = std::io::Error::last_os_error();
        // KVM_CREATE_VM in particular may fail with EINTR; QEMU retries too.
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("{what}: {err}"));
        }
    }
}

/// Turns a descriptor an ioctl returned into an owned one.
fn owned(raw: libc::c_int) -> OwnedFd {
    // SAFETY: `raw` is a fresh descriptor KVM just created for us; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// A KVM VM with an in-kernel irqchip, one vCPU (never run; its LAPIC software-enabled), one
/// MSI route ([`MSI_GSI`] -> [`MSI_ADDRESS`] / vector [`MSI_VECTOR`]) and an eventfd
/// registered for that GSI with `KVM_IRQFD`: the guest-notification end of a vhost queue.
///
/// [`KvmIrqfd::signal`] writes the eventfd as vhost does; KVM then emits
/// `kvm:kvm_msi_set_irq` (and `kvm:kvm_apic_accept_irq`) synchronously in the writer's thread.
/// Dropping it deassigns the irqfd and closes the eventfd, the vCPU and the VM.
pub struct KvmIrqfd {
    eventfd: OwnedFd,
    _vcpu: OwnedFd,
    vm: OwnedFd,
}

impl KvmIrqfd {
    /// Builds the VM, the route and the irqfd. Fails (with the step that failed) if `/dev/kvm`
    /// is missing or not accessible, the API version is not 12, KVM lacks irqchip, irq
    /// routing or irqfd support, or any ioctl fails. Everything created so far is closed.
    pub fn create() -> Result<KvmIrqfd, String> {
        let (vm, vcpu) = open_vm()?;
        set_routes(vm.as_fd(), [RoutingEntry::msi(MSI_GSI, MSI_VECTOR)])?;
        let eventfd = new_irqfd(vm.as_fd(), MSI_GSI)?;
        Ok(KvmIrqfd {
            eventfd,
            _vcpu: vcpu,
            vm,
        })
    }

    /// Notifies the "guest": writes 1 to the eventfd, as vhost does after adding used
    /// buffers. KVM consumes the count in `irqfd_wakeup`, so this never blocks or overflows.
    pub fn signal(&self) -> Result<(), String> {
        write_eventfd(&self.eventfd)
    }

    /// The eventfd registered as the irqfd.
    pub fn eventfd(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }
}

/// Opens a VM with an in-kernel irqchip and vCPU 0 (never run; LAPIC software-enabled). Fails
/// (with the step that failed) if `/dev/kvm` is missing or not accessible, the API version is
/// not 12, KVM lacks irqchip, irq routing or irqfd support, or any ioctl fails.
fn open_vm() -> Result<(OwnedFd, OwnedFd), String> {
    keep_preempt_notifiers_on()?;
    open_vm_once()
}

/// The first VM of the process, kept open until it exits. Creating and destroying a VM
/// switches the kernel's `preempt_notifier_key` static key on and off (the first VM and the
/// last), which patches `finish_task_switch` live; under QEMU TCG (the VM test tier) that
/// patching has crashed a guest kernel (an int3 oops in a kworker). With one VM always open,
/// later VMs only count the key up and down.
fn keep_preempt_notifiers_on() -> Result<(), String> {
    static KEEPER: std::sync::Mutex<Option<(OwnedFd, OwnedFd)>> = std::sync::Mutex::new(None);
    let mut keeper = KEEPER.lock().unwrap_or_else(|p| p.into_inner());
    if keeper.is_none() {
        *keeper = Some(open_vm_once()?);
    }
    Ok(())
}

fn open_vm_once() -> Result<(OwnedFd, OwnedFd), String> {
    let kvm: OwnedFd = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/kvm")
        .map_err(|e| format!("open /dev/kvm: {e}"))?
        .into();
    let sys = kvm.as_fd();
    // SAFETY: KVM_GET_API_VERSION takes no argument.
    let api = unsafe { kvm_ioctl(sys, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")? };
    if api != KVM_API_VERSION {
        return Err(format!("KVM API version {api}, expected {KVM_API_VERSION}"));
    }
    for (cap, name) in [
        (KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"),
        (KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"),
        (KVM_CAP_IRQFD, "KVM_CAP_IRQFD"),
    ] {
        // SAFETY: KVM_CHECK_EXTENSION takes the capability number as an integer.
        let have = unsafe { kvm_ioctl(sys, KVM_CHECK_EXTENSION, cap as usize, name)? };
        if have <= 0 {
            return Err(format!("KVM lacks {name}"));
        }
    }
    // SAFETY: KVM_CREATE_VM takes the machine type as an integer (0: default).
    let vm = owned(unsafe { kvm_ioctl(sys, KVM_CREATE_VM, 0, "KVM_CREATE_VM")? });
    // The VM holds its own reference to KVM; the system fd is no longer needed.
    drop(kvm);
    // SAFETY: KVM_CREATE_IRQCHIP takes no argument.
    unsafe { kvm_ioctl(vm.as_fd(), KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP")? };
    // SAFETY: KVM_CREATE_VCPU takes the vCPU id as an integer.
    let vcpu = owned(unsafe { kvm_ioctl(vm.as_fd(), KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU")? });
    enable_lapic(vcpu.as_fd())?;
    Ok((vm, vcpu))
}

/// Replaces the VM's GSI routes (the irqchip's defaults) with `entries`.
fn set_routes<const N: usize>(
    vm: BorrowedFd<'_>,
    entries: [RoutingEntry; N],
) -> Result<(), String> {
    let mut routing = Routing {
        nr: N as u32,
        flags: 0,
        entries,
    };
    // SAFETY: `routing` is a kvm_irq_routing header followed by `nr` entries, live for the
    // call.
    unsafe {
        kvm_ioctl(
            vm,
            KVM_SET_GSI_ROUTING,
            std::ptr::addr_of_mut!(routing) as usize,
            "KVM_SET_GSI_ROUTING",
        )?
    };
    Ok(())
}

/// A new eventfd registered with `KVM_IRQFD` for `gsi`.
fn new_irqfd(vm: BorrowedFd<'_>, gsi: u32) -> Result<OwnedFd, String> {
    // SAFETY: plain eventfd(2) call; the result is checked.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(format!("eventfd: {}", std::io::Error::last_os_error()));
    }
    let eventfd = owned(raw);
    let mut req = irqfd_req(&eventfd, gsi, 0);
    // SAFETY: `req` is a live struct kvm_irqfd.
    unsafe {
        kvm_ioctl(
            vm,
            KVM_IRQFD,
            std::ptr::addr_of_mut!(req) as usize,
            "KVM_IRQFD",
        )?
    };
    Ok(eventfd)
}

/// Writes 1 to `eventfd` (KVM consumes the count in `irqfd_wakeup`: it never blocks).
fn write_eventfd(eventfd: &OwnedFd) -> Result<(), String> {
    let one: u64 = 1;
    // SAFETY: writes the 8 bytes of `one` to an open eventfd.
    let n = unsafe {
        libc::write(
            eventfd.as_raw_fd(),
            std::ptr::addr_of!(one).cast(),
            std::mem::size_of::<u64>(),
        )
    };
    if n == 8 {
        Ok(())
    } else if n < 0 {
        Err(format!(
            "write to irqfd eventfd: {}",
            std::io::Error::last_os_error()
        ))
    } else {
        Err(format!("short write to irqfd eventfd: {n} of 8 bytes"))
    }
}

/// Software-enables the LAPIC of `vcpu` (SVR bit 8), as a guest does at boot, so MSIs to APIC
/// id 0 are accepted.
fn enable_lapic(vcpu: BorrowedFd<'_>) -> Result<(), String> {
    let mut lapic = LapicState { regs: [0; 1024] };
    // SAFETY: `lapic` is a live 1 KiB struct kvm_lapic_state for KVM to fill.
    unsafe {
        kvm_ioctl(
            vcpu,
            KVM_GET_LAPIC,
            std::ptr::addr_of_mut!(lapic) as usize,
            "KVM_GET_LAPIC",
        )?
    };
    let spiv = &mut lapic.regs[APIC_SPIV..APIC_SPIV + 4];
    let value = u32::from_le_bytes([spiv[0], spiv[1], spiv[2], spiv[3]]) | APIC_SPIV_ENABLE;
    spiv.copy_from_slice(&value.to_le_bytes());
    // SAFETY: `lapic` is a live struct kvm_lapic_state.
    unsafe {
        kvm_ioctl(
            vcpu,
            KVM_SET_LAPIC,
            std::ptr::addr_of_mut!(lapic) as usize,
            "KVM_SET_LAPIC",
        )?
    };
    Ok(())
}

fn irqfd_req(eventfd: &OwnedFd, gsi: u32, flags: u32) -> KvmIrqfdReq {
    KvmIrqfdReq {
        fd: u32::try_from(eventfd.as_raw_fd()).expect("open fd is non-negative"),
        gsi,
        flags,
        resamplefd: 0,
        pad: [0; 16],
    }
}

impl Drop for KvmIrqfd {
    fn drop(&mut self) {
        let mut req = irqfd_req(&self.eventfd, MSI_GSI, KVM_IRQFD_FLAG_DEASSIGN);
        // SAFETY: `req` is a live struct kvm_irqfd. Failure is harmless: closing the VM
        // releases the irqfd anyway.
        let _ = unsafe {
            kvm_ioctl(
                self.vm.as_fd(),
                KVM_IRQFD,
                std::ptr::addr_of_mut!(req) as usize,
                "KVM_IRQFD deassign",
            )
        };
        // The fields close next: the eventfd, the vCPU, then the VM.
    }
}

/// The GSI [`KvmIrqLab`] routes to IOAPIC pin [`IOAPIC_GSI`].
pub const IOAPIC_GSI: u32 = 5;
/// The vector of [`KvmIrqLab::signal_msi`]'s MSIs.
pub const IOCTL_MSI_VECTOR: u8 = 0x42;

/// A VM whose interrupts a test injects along each of KVM's paths: an MSI irqfd ([`MSI_GSI`],
/// the fast path in the writing thread), an IOAPIC irqfd ([`IOAPIC_GSI`], deferred to KVM's
/// `irqfd_inject` kworker), `KVM_IRQ_LINE` on that GSI and `KVM_SIGNAL_MSI`, both ioctls.
/// Dropping it closes the eventfds (which releases the irqfds), the vCPU and the VM.
pub struct KvmIrqLab {
    guest: Option<RunningGuest>,
    msi_irqfd: OwnedFd,
    ioapic_irqfd: OwnedFd,
    vcpu: Option<OwnedFd>,
    vm: OwnedFd,
}

impl KvmIrqLab {
    /// Builds the VM, both routes and both irqfds (see [`KvmIrqfd::create`] for what fails).
    pub fn create() -> Result<KvmIrqLab, String> {
        let (vm, vcpu) = open_vm()?;
        set_routes(
            vm.as_fd(),
            [
                RoutingEntry::msi(MSI_GSI, MSI_VECTOR),
                RoutingEntry::ioapic(IOAPIC_GSI, IOAPIC_GSI),
            ],
        )?;
        let msi_irqfd = new_irqfd(vm.as_fd(), MSI_GSI)?;
        let ioapic_irqfd = new_irqfd(vm.as_fd(), IOAPIC_GSI)?;
        Ok(KvmIrqLab {
            guest: None,
            msi_irqfd,
            ioapic_irqfd,
            vcpu: Some(vcpu),
            vm,
        })
    }

    /// Runs vCPU 0 (see [`RunningGuest`]): from now on the MSIs are delivered to a guest
    /// that takes them, halted in between. Fails if it already runs or KVM refuses.
    pub fn run_guest(&mut self) -> Result<&RunningGuest, String> {
        let vcpu = self.vcpu.take().ok_or("the vCPU already runs")?;
        Ok(self.guest.insert(RunningGuest::start(&self.vm, vcpu)?))
    }

    /// The guest [`KvmIrqLab::run_guest`] started, while it runs.
    pub fn guest(&self) -> Option<&RunningGuest> {
        self.guest.as_ref()
    }

    /// Stops the guest [`KvmIrqLab::run_guest`] started, with a `KVM_SIGNAL_MSI` of
    /// [`STOP_VECTOR`]; fails if it is not running or did not stop cleanly.
    pub fn stop_guest(&mut self) -> Result<(), String> {
        let guest = self.guest.take().ok_or("no guest runs")?;
        guest.stop(|| self.signal_msi_vector(STOP_VECTOR))
    }

    /// A second descriptor of the MSI irqfd's eventfd: another writer's end, such as a vhost
    /// virtqueue's call eventfd (whoever signals it, KVM injects [`MSI_VECTOR`]).
    pub fn msi_irqfd_eventfd(&self) -> Result<OwnedFd, String> {
        self.msi_irqfd
            .try_clone()
            .map_err(|e| format!("dup the MSI irqfd's eventfd: {e}"))
    }

    /// Signals the MSI irqfd (KVM injects in this thread, before the write returns).
    pub fn signal_msi_irqfd(&self) -> Result<(), String> {
        write_eventfd(&self.msi_irqfd)
    }

    /// Signals the IOAPIC irqfd: KVM queues its inject work (a kworker asserts and deasserts
    /// the GSI later; signals before it runs are merged into one).
    pub fn signal_ioapic_irqfd(&self) -> Result<(), String> {
        write_eventfd(&self.ioapic_irqfd)
    }

    /// `KVM_IRQ_LINE` on [`IOAPIC_GSI`] with `level` (1: assert, 0: deassert).
    pub fn irq_line(&self, level: u32) -> Result<(), String> {
        let mut req: [u32; 2] = [IOAPIC_GSI, level];
        // SAFETY: `req` is a live struct kvm_irq_level (irq, level).
        unsafe {
            kvm_ioctl(
                self.vm.as_fd(),
                KVM_IRQ_LINE,
                req.as_mut_ptr() as usize,
                "KVM_IRQ_LINE",
            )?
        };
        Ok(())
    }

    /// `KVM_SIGNAL_MSI` to APIC id 0 with [`IOCTL_MSI_VECTOR`].
    pub fn signal_msi(&self) -> Result<(), String> {
        self.signal_msi_vector(IOCTL_MSI_VECTOR)
    }

    fn signal_msi_vector(&self, vector: u8) -> Result<(), String> {
        let mut msi = KvmMsi {
            address_lo: MSI_ADDRESS,
            address_hi: 0,
            data: u32::from(vector),
            flags: 0,
            devid: 0,
            pad: [0; 12],
        };
        // SAFETY: `msi` is a live struct kvm_msi.
        unsafe {
            kvm_ioctl(
                self.vm.as_fd(),
                KVM_SIGNAL_MSI,
                std::ptr::addr_of_mut!(msi) as usize,
                "KVM_SIGNAL_MSI",
            )?
        };
        Ok(())
    }
}

impl Drop for KvmIrqLab {
    fn drop(&mut self) {
        // The guest first: its thread runs the vCPU of this VM.
        if self.guest.is_some() {
            let _ = self.stop_guest();
        }
    }
}

/// One `kvm:kvm_msi_set_irq` event as tracefs prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsiEvent {
    /// Thread id of the context the event fired in (tracefs' `pid` is the tid).
    pub tid: u32,
    /// That thread's name (`<...>` when tracefs no longer had it cached).
    pub comm: String,
    /// Destination APIC id (`dst`, derived from the MSI address).
    pub dst: u32,
    /// Vector (`vec`, the low byte of the MSI data).
    pub vector: u8,
}

/// Serialises this crate's tests that create a [`KvmIrqfd`], so one of them can check that
/// the descriptors it closed were not reused by another one meanwhile.
#[cfg(test)]
pub(crate) static KVM_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

static TRACE_COUNTER: AtomicU32 = AtomicU32::new(0);
const TRACEFS: &str = "/sys/kernel/tracing";

/// A private tracefs instance (`instances/netprobe-lab-kvm-<pid>-<n>`) with only some `kvm:`
/// events enabled (`kvm_msi_set_irq` by default), so it neither sees nor disturbs the global
/// trace buffer or other users' instances. Dropping it disables the events and removes the
/// instance.
pub struct MsiTrace {
    dir: PathBuf,
    events: Vec<&'static str>,
}

impl MsiTrace {
    /// Creates the instance and enables `kvm:kvm_msi_set_irq`. Needs root and tracefs at
    /// `/sys/kernel/tracing`.
    pub fn start() -> Result<MsiTrace, String> {
        Self::start_events(&["kvm_msi_set_irq"])
    }

    /// Creates the instance and enables the `kvm:` events `events`.
    pub fn start_events(events: &[&'static str]) -> Result<MsiTrace, String> {
        let n = TRACE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!(
            "{TRACEFS}/instances/netprobe-lab-kvm-{}-{n}",
            std::process::id()
        ));
        fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        // From here on the guard removes the instance.
        let trace = MsiTrace {
            dir,
            events: events.to_vec(),
        };
        for e in events {
            let enable = trace.enable_path(e);
            fs::write(&enable, "1")
                .map_err(|err| format!("write 1 > {}: {err}", enable.display()))?;
        }
        Ok(trace)
    }

    fn enable_path(&self, event: &str) -> PathBuf {
        self.dir.join(format!("events/kvm/{event}/enable"))
    }

    /// The recorded lines of `event` whose text after the event name starts with `args`
    /// (`"gsi 5 level 1"` for `kvm_set_irq`).
    pub fn count(&self, event: &str, args: &str) -> Result<usize, String> {
        let path = self.dir.join("trace");
        let text =
            fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        let marker = format!(": {event}: {args}");
        Ok(text.lines().filter(|l| l.contains(&marker)).count())
    }

    /// The events recorded so far (the buffer is not consumed).
    pub fn events(&self) -> Result<Vec<MsiEvent>, String> {
        let path = self.dir.join("trace");
        let text =
            fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        Ok(text.lines().filter_map(parse_msi_line).collect())
    }
}

impl Drop for MsiTrace {
    fn drop(&mut self) {
        for e in &self.events {
            let _ = fs::write(self.enable_path(e), "0");
        }
        // Removing the instance frees its buffer; fails only if a file in it is held open.
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Parses a tracefs line such as
/// `  tapvm-tp0-1234  [001] d..1.  56.789012: kvm_msi_set_irq: dst 0 vec 49 (Fixed|physical|edge)`.
fn parse_msi_line(line: &str) -> Option<MsiEvent> {
    let (head, rest) = line.split_once(": kvm_msi_set_irq: ")?;
    // `head` is `<comm>-<tid> [cpu] flags timestamp`; comm may contain '-' and spaces.
    let task = head[..head.rfind(" [")?].trim();
    let (comm, tid) = task.rsplit_once('-')?;
    let mut words = rest.split_whitespace();
    let (mut dst, mut vector) = (None, None);
    while let Some(w) = words.next() {
        match w {
            "dst" => dst = words.next().and_then(|v| u32::from_str_radix(v, 16).ok()),
            "vec" => vector = words.next().and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    Some(MsiEvent {
        tid: tid.parse().ok()?,
        comm: comm.to_owned(),
        dst: dst?,
        vector: vector?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::require_root;
    use std::thread;

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        KVM_TESTS.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What descriptor `fd` of this process refers to, if it is open.
    fn fd_target(fd: i32) -> Option<String> {
        fs::read_link(format!("/proc/self/fd/{fd}"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    #[test]
    fn msi_trace_lines_parse() {
        let e = parse_msi_line(
            "   np-irq-writer-4321    [001] d..1.  1234.567890: kvm_msi_set_irq: dst 0 vec 49 (Fixed|physical|edge)",
        )
        .expect("event line parses");
        assert_eq!(
            e,
            MsiEvent {
                tid: 4321,
                comm: "np-irq-writer".into(),
                dst: 0,
                vector: 49
            }
        );
        let e = parse_msi_line(
            "  <...>-7 [000] ..... 1.0: kvm_msi_set_irq: dst 1f vec 65 (Fixed|logical|edge|rh)",
        )
        .expect("<...> line parses");
        assert_eq!(
            (e.tid, e.comm.as_str(), e.dst, e.vector),
            (7, "<...>", 31, 65)
        );
        assert_eq!(parse_msi_line("# tracer: nop"), None);
        assert_eq!(
            parse_msi_line("  x-1 [000] ..... 1.0: kvm_set_irq: gsi 5 level 1 source 0"),
            None
        );
    }

    /// Each signal() fires kvm_msi_set_irq exactly once, synchronously, in the writer's thread
    /// (KVM's MSI fast path: no kworker), with our destination and vector.
    #[test]
    fn kvm_irqfd_signal_fires_msi_in_writer_thread() {
        require_root();
        let _serial = serial();
        let trace = MsiTrace::start().unwrap_or_else(|e| panic!("{e}"));
        let irqfd = KvmIrqfd::create().unwrap_or_else(|e| panic!("{e}"));
        let writer = thread::Builder::new()
            .name("np-irq-writer".into())
            .spawn(move || {
                for _ in 0..5 {
                    irqfd.signal().unwrap_or_else(|e| panic!("{e}"));
                }
                // SAFETY: gettid(2) has no preconditions.
                let tid = unsafe { libc::gettid() };
                (u32::try_from(tid).expect("tid is positive"), irqfd)
            })
            .expect("spawn writer");
        let (tid, irqfd) = writer.join().expect("writer thread");
        let events = trace.events().unwrap_or_else(|e| panic!("{e}"));
        let ours: Vec<&MsiEvent> = events.iter().filter(|e| e.tid == tid).collect();
        assert_eq!(
            ours.len(),
            5,
            "events in the writer (tid {tid}): {events:?}"
        );
        assert!(
            ours.iter()
                .all(|e| e.vector == MSI_VECTOR && e.dst == 0 && e.comm == "np-irq-writer"),
            "{ours:?}"
        );
        // (The instance sees every VM on the host, so events of other tids are not checked.)
        drop(irqfd);
        // Deassigning and closing the irqfd injects nothing.
        let after = trace.events().unwrap_or_else(|e| panic!("{e}")).len();
        assert_eq!(after, events.len());
    }

    /// Drop closes the eventfd, the vCPU and the VM, and create() can be repeated; the trace
    /// instance goes away on drop.
    #[test]
    fn kvm_irqfd_create_drop_releases_everything() {
        require_root();
        let _serial = serial();
        for _ in 0..3 {
            let irqfd = KvmIrqfd::create().unwrap_or_else(|e| panic!("{e}"));
            irqfd.signal().unwrap_or_else(|e| panic!("{e}"));
            let fds = [&irqfd.eventfd, &irqfd._vcpu, &irqfd.vm].map(|fd| fd.as_raw_fd());
            let targets = fds.map(fd_target);
            let expected = [
                "anon_inode:[eventfd]",
                "anon_inode:kvm-vcpu:0",
                "anon_inode:kvm-vm",
            ];
            assert_eq!(targets, expected.map(|t| Some(t.to_owned())));
            drop(irqfd);
            for (fd, before) in fds.into_iter().zip(expected) {
                // Closed, or meanwhile reused by a test that makes no KVM objects.
                let now = fd_target(fd);
                assert!(
                    now.as_deref() != Some(before),
                    "fd {fd} ({before}) still open"
                );
            }
        }
        let trace = MsiTrace::start().unwrap_or_else(|e| panic!("{e}"));
        let dir = trace.dir.clone();
        assert!(dir.is_dir());
        drop(trace);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
