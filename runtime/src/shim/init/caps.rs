//! Capabilities: the spec's names as the kernel's numbers, and the syscalls that set the
//! five sets (capset(2) has no wrapper in nix or libc).

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// The five sets as bit masks (bit n: capability n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl Sets {
    /// The spec's sets; capabilities beyond `last` (the kernel's CAP_LAST_CAP) are skipped.
    pub fn new(spec: &LinuxCapabilities, last: u32) -> Self {
        Sets {
            bounding: mask(spec.bounding().as_ref(), last),
            effective: mask(spec.effective().as_ref(), last),
            permitted: mask(spec.permitted().as_ref(), last),
            inheritable: mask(spec.inheritable().as_ref(), last),
            ambient: mask(spec.ambient().as_ref(), last),
        }
    }
}

fn mask(set: Option<&Capabilities>, last: u32) -> u64 {
    set.into_iter()
        .flatten()
        .map(|cap| number(*cap))
        .filter(|n| *n <= last)
        .fold(0, |mask, n| mask | 1 << n)
}

/// The highest capability this kernel knows: /proc/sys/kernel/cap_last_cap.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        // CAP_CHECKPOINT_RESTORE, the last of Linux 5.9 and later.
        .unwrap_or(40)
}

/// The kernel's number for a capability (linux/capability.h).
pub fn number(cap: Capability) -> u32 {
    use Capability::*;
    match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// This thread's (effective, permitted, inheritable) sets.
pub fn get() -> nix::Result<(u64, u64, u64)> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: `header` and the two `data` words are live, exclusively borrowed structs of
    // the layout capget(2) documents for version 3; the kernel writes only into them.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(nix::Error::last());
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ))
}

/// Set this thread's effective, permitted and inheritable sets.
pub fn set(effective: u64, permitted: u64, inheritable: u64) -> nix::Result<()> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let word = |mask: u64, high: bool| (if high { mask >> 32 } else { mask }) as u32;
    let data = [false, true].map(|high| Data {
        effective: word(effective, high),
        permitted: word(permitted, high),
        inheritable: word(inheritable, high),
    });
    // SAFETY: `header` and the two `data` words are live structs of the layout capset(2)
    // documents for version 3; the kernel only reads `data` (and may write `header`).
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

/// Drop every capability up to `last` that is not in `keep` from the bounding set.
pub fn drop_bounding(keep: u64, last: u32) -> nix::Result<()> {
    for cap in (0..=last).filter(|cap| keep & 1 << cap == 0) {
        prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0)?;
    }
    Ok(())
}

/// Make the ambient set exactly `set`.
pub fn set_ambient(set: u64, last: u32) -> nix::Result<()> {
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    )?;
    for cap in (0..=last).filter(|cap| set & 1 << cap != 0) {
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            cap as libc::c_ulong,
        )?;
    }
    Ok(())
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> nix::Result<()> {
    // SAFETY: the options used here (PR_CAPBSET_DROP, PR_CAP_AMBIENT) take integers only,
    // no pointers; unused arguments are zero as prctl(2) asks.
    let rc = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if rc != 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}
