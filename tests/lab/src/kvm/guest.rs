//! A vCPU that runs: the smallest guest that takes interrupts, so KVM's delivery
//! (`kvm_apic_accept_irq` → `kvm_vcpu_wakeup` → `kvm_inj_virq`) happens as it does for a real
//! one. The guest is 16-bit code with a flat 4 GiB data segment (set from outside, "unreal
//! mode"), so its handlers can reach the LAPIC:
//!
//! ```text
//! 0x1000  mov ax, [0]; mov ax, [0x2000]; mov ax, [0x3000]; push ax; pop ax
//!                                              touch the IVT, handlers and stack once, so
//!                                              no first delivery takes a nested page fault
//!                                              (which KVM answers with a reinjection)
//! 0x100e  sti; hlt; jmp 0x100e                 wait for interrupts, halted
//! 0x2000 + v*32 (the IVT entry of vector v):
//!         mov al, v
//!         mov dword [0xfee000b0], 0            LAPIC EOI
//!         out 0x10, al                         tell the host: vector v arrived
//!         iret
//! ```
//!
//! The vCPU thread counts the vectors the guest reports; [`STOP_VECTOR`] ends it.
use super::{kvm_io, kvm_ioc, kvm_ioctl, IOC_READ, IOC_WRITE};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The vector that ends the guest's vCPU thread (sent by [`RunningGuest::stop`]).
pub const STOP_VECTOR: u8 = 0xef;

const KVM_GET_VCPU_MMAP_SIZE: libc::Ioctl = kvm_io(0x04);
const KVM_SET_USER_MEMORY_REGION: libc::Ioctl =
    kvm_ioc(IOC_WRITE, 0x46, std::mem::size_of::<MemoryRegion>());
const KVM_RUN: libc::Ioctl = kvm_io(0x80);
const KVM_SET_REGS: libc::Ioctl = kvm_ioc(IOC_WRITE, 0x82, std::mem::size_of::<Regs>());
const KVM_GET_SREGS: libc::Ioctl = kvm_ioc(IOC_READ, 0x83, std::mem::size_of::<Sregs>());
const KVM_SET_SREGS: libc::Ioctl = kvm_ioc(IOC_WRITE, 0x84, std::mem::size_of::<Sregs>());
const KVM_EXIT_IO: u32 = 2;
const REPORT_PORT: u16 = 0x10;
const MEM_SIZE: usize = 0x10000;
const MAIN: usize = 0x1000;
const HANDLERS: usize = 0x2000;
const STACK_TOP: u64 = 0x8000;

/// `struct kvm_userspace_memory_region`.
#[repr(C)]
struct MemoryRegion {
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
}

/// `struct kvm_regs`.
#[repr(C)]
#[derive(Default)]
struct Regs {
    gprs: [u64; 16], // rax rbx rcx rdx rsi rdi rsp rbp r8..r15
    rip: u64,
    rflags: u64,
}
const _: () = assert!(std::mem::size_of::<Regs>() == 144);

/// `struct kvm_segment`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Segment {
    base: u64,
    limit: u32,
    selector: u16,
    kind: u8,
    present: u8,
    dpl: u8,
    db: u8,
    s: u8,
    l: u8,
    g: u8,
    avl: u8,
    unusable: u8,
    padding: u8,
}

/// `struct kvm_dtable`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Dtable {
    base: u64,
    limit: u16,
    padding: [u16; 3],
}

/// `struct kvm_sregs`.
#[repr(C)]
#[derive(Default)]
struct Sregs {
    cs: Segment,
    ds: Segment,
    es: Segment,
    fs: Segment,
    gs: Segment,
    ss: Segment,
    tr: Segment,
    ldt: Segment,
    gdt: Dtable,
    idt: Dtable,
    cr0: u64,
    cr2: u64,
    cr3: u64,
    cr4: u64,
    cr8: u64,
    efer: u64,
    apic_base: u64,
    interrupt_bitmap: [u64; 4],
}
const _: () = assert!(std::mem::size_of::<Sregs>() == 312);

/// The first bytes of `struct kvm_run` and its `io` exit.
#[repr(C)]
struct RunHead {
    request_interrupt_window: u8,
    immediate_exit: u8,
    padding1: [u8; 6],
    exit_reason: u32,
    ready_for_interrupt_injection: u8,
    if_flag: u8,
    flags: u16,
    cr8: u64,
    apic_base: u64,
    io_direction: u8,
    io_size: u8,
    io_port: u16,
    io_count: u32,
    io_data_offset: u64,
}

/// An anonymous shared mapping, unmapped on drop.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain memory; the vCPU thread only reads the kvm_run page KVM writes
// while that thread is in KVM_RUN's caller, and the guest memory is written before it starts.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(fd: Option<i32>, len: usize) -> Result<Mapping, String> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED, fd),
            None => (libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping; the kernel picks the address.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Mapping { addr, len })
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `addr` maps `len` readable and writable bytes for the mapping's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.addr.cast(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `addr`/`len` is a mapping this struct made and nothing else unmaps.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// The guest's memory image: code, IVT and handlers.
fn guest_image(mem: &mut [u8]) {
    let code = [
        0xa1, 0x00, 0x00, // mov ax, [0x0000]
        0xa1, 0x00, 0x20, // mov ax, [0x2000]
        0xa1, 0x00, 0x30, // mov ax, [0x3000]
        0x50, 0x58, // push ax; pop ax
        0x90, 0x90, 0x90, // nop (the loop starts at 0x100e)
        0xfb, 0xf4, 0xeb, 0xfc, // sti; hlt; jmp 0x100e
    ];
    mem[MAIN..MAIN + code.len()].copy_from_slice(&code);
    for v in 0..=255u8 {
        let at = HANDLERS + usize::from(v) * 32;
        let handler = [
            0xb0, v, // mov al, v
            0x66, 0x67, 0xc7, 0x05, 0xb0, 0x00, 0xe0, 0xfe, 0, 0, 0,
            0, // mov dword [0xfee000b0], 0
            0xe6, 0x10, // out 0x10, al
            0xcf, // iret
        ];
        mem[at..at + handler.len()].copy_from_slice(&handler);
        let ivt = usize::from(v) * 4;
        mem[ivt..ivt + 2].copy_from_slice(&(at as u16).to_le_bytes());
        mem[ivt + 2..ivt + 4].copy_from_slice(&0u16.to_le_bytes());
    }
}

/// What the vCPU thread saw.
#[derive(Default)]
struct Seen {
    vectors: HashMap<u8, u64>,
    /// Set once the thread ended: `Ok` after [`STOP_VECTOR`], else why it stopped.
    done: Option<Result<(), String>>,
}

/// A vCPU running the guest above in its own thread. [`RunningGuest::stop`] (or dropping it)
/// ends the thread; the memory is unmapped after that.
pub struct RunningGuest {
    seen: Arc<(Mutex<Seen>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    _memory: Mapping,
}

impl RunningGuest {
    /// Gives `vm` the guest's memory, points `vcpu` at its code and runs it in a new thread.
    pub(super) fn start(vm: &OwnedFd, vcpu: OwnedFd) -> Result<RunningGuest, String> {
        let mut memory = Mapping::new(None, MEM_SIZE)?;
        guest_image(memory.bytes());
        let mut region = MemoryRegion {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: MEM_SIZE as u64,
            userspace_addr: memory.addr as u64,
        };
        // SAFETY: `region` is a live struct kvm_userspace_memory_region; the memory outlives
        // the VM's use of it (the vCPU thread is joined before it is unmapped).
        unsafe {
            kvm_ioctl(
                vm.as_fd(),
                KVM_SET_USER_MEMORY_REGION,
                std::ptr::addr_of_mut!(region) as usize,
                "KVM_SET_USER_MEMORY_REGION",
            )?
        };
        let mut sregs = Sregs::default();
        // SAFETY: `sregs` is a live struct kvm_sregs for KVM to fill.
        unsafe {
            kvm_ioctl(
                vcpu.as_fd(),
                KVM_GET_SREGS,
                std::ptr::addr_of_mut!(sregs) as usize,
                "KVM_GET_SREGS",
            )?
        };
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        for seg in [&mut sregs.ds, &mut sregs.ss] {
            seg.base = 0;
            seg.selector = 0;
        }
        sregs.ds.limit = u32::MAX;
        sregs.ds.g = 1;
        // SAFETY: `sregs` is a live struct kvm_sregs.
        unsafe {
            kvm_ioctl(
                vcpu.as_fd(),
                KVM_SET_SREGS,
                std::ptr::addr_of_mut!(sregs) as usize,
                "KVM_SET_SREGS",
            )?
        };
        let mut regs = Regs {
            rip: MAIN as u64,
            rflags: 2,
            ..Regs::default()
        };
        regs.gprs[6] = STACK_TOP; // rsp
                                  // SAFETY: `regs` is a live struct kvm_regs.
        unsafe {
            kvm_ioctl(
                vcpu.as_fd(),
                KVM_SET_REGS,
                std::ptr::addr_of_mut!(regs) as usize,
                "KVM_SET_REGS",
            )?
        };
        let run_size = run_area_size()?;
        let run = Mapping::new(Some(vcpu.as_raw_fd()), run_size)?;
        let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
        let thread_seen = Arc::clone(&seen);
        let thread = std::thread::Builder::new()
            .name("vcpu0".into())
            .spawn(move || {
                let end = run_vcpu(&vcpu, run, &thread_seen);
                let (lock, cv) = &*thread_seen;
                lock.lock().unwrap_or_else(|p| p.into_inner()).done = Some(end);
                cv.notify_all();
            })
            .map_err(|e| format!("spawn the vCPU thread: {e}"))?;
        Ok(RunningGuest {
            seen,
            thread: Some(thread),
            _memory: memory,
        })
    }

    /// Times the guest took `vector` so far.
    pub fn taken(&self, vector: u8) -> u64 {
        let seen = self.seen.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.vectors.get(&vector).copied().unwrap_or(0)
    }

    /// Waits until the guest took `vector` `count` times; fails after `timeout` or when the
    /// vCPU thread ended.
    pub fn wait_taken(&self, vector: u8, count: u64, timeout: Duration) -> Result<(), String> {
        let (lock, cv) = &*self.seen;
        let deadline = Instant::now() + timeout;
        let mut seen = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let n = seen.vectors.get(&vector).copied().unwrap_or(0);
            if n >= count {
                return Ok(());
            }
            if let Some(end) = &seen.done {
                return Err(format!(
                    "the vCPU stopped after {n} of vector {vector:#x}: {end:?}"
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "the guest took vector {vector:#x} {n} times in {timeout:?}, not {count}"
                ));
            }
            seen = cv
                .wait_timeout(seen, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Ends the vCPU thread: `send_stop` must inject [`STOP_VECTOR`]. Fails if the thread
    /// reported an error or did not end within 10 s (it is then left running).
    pub(super) fn stop(
        mut self,
        send_stop: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), String> {
        let sent = send_stop();
        let (lock, cv) = &*self.seen;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = lock.lock().unwrap_or_else(|p| p.into_inner());
        while seen.done.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(seen);
                // The thread keeps the memory mapped if it is still in KVM_RUN: leak it.
                std::mem::forget(self);
                return Err(format!("the vCPU thread did not stop ({sent:?})"));
            }
            seen = cv
                .wait_timeout(seen, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let end = seen.done.clone().unwrap_or(Ok(()));
        drop(seen);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        sent?;
        end
    }
}

/// The size of a vCPU's `kvm_run` area.
fn run_area_size() -> Result<usize, String> {
    let kvm: OwnedFd = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/kvm")
        .map_err(|e| format!("open /dev/kvm: {e}"))?
        .into();
    // SAFETY: KVM_GET_VCPU_MMAP_SIZE takes no argument.
    let n = unsafe {
        kvm_ioctl(
            kvm.as_fd(),
            KVM_GET_VCPU_MMAP_SIZE,
            0,
            "KVM_GET_VCPU_MMAP_SIZE",
        )?
    };
    usize::try_from(n).map_err(|_| format!("KVM_GET_VCPU_MMAP_SIZE: {n}"))
}

/// The vCPU loop: KVM_RUN until the guest reports [`STOP_VECTOR`] or something else happens.
fn run_vcpu(vcpu: &OwnedFd, mut run: Mapping, seen: &(Mutex<Seen>, Condvar)) -> Result<(), String> {
    loop {
        // SAFETY: KVM_RUN takes no argument; its results are in the mapped kvm_run area.
        unsafe { kvm_ioctl(vcpu.as_fd(), KVM_RUN, 0, "KVM_RUN")? };
        let area = run.bytes();
        // SAFETY: the area is at least a page, larger than RunHead, and page-aligned.
        let head = unsafe { &*(area.as_ptr() as *const RunHead) };
        if head.exit_reason != KVM_EXIT_IO || head.io_port != REPORT_PORT {
            return Err(format!(
                "unexpected exit: reason {}, port {:#x}",
                head.exit_reason, head.io_port
            ));
        }
        let at = usize::try_from(head.io_data_offset).unwrap_or(usize::MAX);
        let vector = *area.get(at).ok_or("I/O data outside the kvm_run area")?;
        if vector == STOP_VECTOR {
            return Ok(());
        }
        let (lock, cv) = seen;
        *lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .vectors
            .entry(vector)
            .or_default() += 1;
        cv.notify_all();
    }
}
