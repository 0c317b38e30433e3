//! A throw-away KVM VM with one irqfd, signalled once: it makes the kernel run
//! `irqfd_wakeup` (and, from a kworker, `kvm_set_irq`) so that a probe on it can be proven to
//! run ([`crate::kit::selftest`]). The VM has an in-kernel irqchip and no vCPU, memory or
//! device; it lives until the returned guard is dropped.
use crate::error::{Error, Result};
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const KVMIO: libc::Ioctl = 0xae;
const IOC_WRITE: libc::Ioctl = 1;
const KVM_CREATE_VM: libc::Ioctl = KVMIO << 8 | 0x01;
const KVM_CREATE_IRQCHIP: libc::Ioctl = KVMIO << 8 | 0x60;
const KVM_IRQFD: libc::Ioctl =
    IOC_WRITE << 30 | (std::mem::size_of::<IrqfdReq>() as libc::Ioctl) << 16 | KVMIO << 8 | 0x76;
// linux/kvm.h's values.
const _: () = assert!(KVM_CREATE_VM == 0xae01);
const _: () = assert!(KVM_CREATE_IRQCHIP == 0xae60);
const _: () = assert!(KVM_IRQFD == 0x4020_ae76);
/// An IOAPIC pin of the default routing `KVM_CREATE_IRQCHIP` installs.
const GSI: u32 = 10;

/// `struct kvm_irqfd`.
#[repr(C)]
struct IrqfdReq {
    fd: u32,
    gsi: u32,
    flags: u32,
    resamplefd: u32,
    pad: [u8; 16],
}

/// The VM and the eventfd of its irqfd; closing them tears both down.
pub struct IrqfdVm {
    _vm: OwnedFd,
    _eventfd: OwnedFd,
}

fn ioctl(fd: RawFd, req: libc::Ioctl, arg: libc::c_ulong, what: &str) -> Result<libc::c_int> {
    // SAFETY: the KVM ioctls used here take an integer or a pointer to a live request.
    let rc = unsafe { libc::ioctl(fd, req, arg) };
    if rc < 0 {
        return Err(Error::io(what, std::io::Error::last_os_error()));
    }
    Ok(rc)
}

/// Creates the VM, registers an eventfd as an irqfd on GSI 10 and signals it once.
pub fn signal_once() -> Result<IrqfdVm> {
    let kvm = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| Error::io("open /dev/kvm", e))?;
    let vm = ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0, "KVM_CREATE_VM")?;
    // SAFETY: KVM_CREATE_VM returned a new file descriptor that nothing else owns.
    let vm = unsafe { OwnedFd::from_raw_fd(vm) };
    ioctl(vm.as_raw_fd(), KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP")?;
    // SAFETY: eventfd takes no pointers.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(Error::io("eventfd", std::io::Error::last_os_error()));
    }
    // SAFETY: eventfd returned a new file descriptor that nothing else owns.
    let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
    let req = IrqfdReq {
        fd: efd as u32,
        gsi: GSI,
        flags: 0,
        resamplefd: 0,
        pad: [0; 16],
    };
    ioctl(
        vm.as_raw_fd(),
        KVM_IRQFD,
        &req as *const IrqfdReq as libc::c_ulong,
        "KVM_IRQFD",
    )?;
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live buffer.
    let n = unsafe { libc::write(eventfd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    if n != 8 {
        return Err(Error::io(
            "signal the irqfd's eventfd",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(IrqfdVm {
        _vm: vm,
        _eventfd: eventfd,
    })
}
