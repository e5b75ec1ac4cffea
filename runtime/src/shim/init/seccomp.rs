//! seccomp: the spec's `linux.seccomp` compiled to a classic BPF program in the shim
//! (before any fork, so that a bad profile fails CreateContainer) and loaded in B.
//!
//! Our own compiler rather than libseccomp (a C library the static shim would have to link)
//! or seccompiler (one match action per filter, where an OCI profile gives each rule its
//! own: ALLOW here, ERRNO(ENOSYS) there, the default ERRNO(EPERM)). The program, for the
//! native architecture only:
//!
//! ```text
//!   A = arch;  A != native      → foreign
//!   A = nr;    (x86_64) nr ≥ 0x40000000 (x32) → foreign
//!   per syscall of the profile, by number:
//!     A != nr → skip
//!     per rule with arguments, in the profile's order: conditions → ret rule's action
//!     ret (the unconditional rule's action, or the default)
//!   ret default
//! foreign: the default action when it refuses; ERRNO(ENOSYS) when it is ALLOW or LOG
//! ```
//!
//! Semantics follow runc + libseccomp where a profile is unambiguous: names the table does
//! not know are skipped (a profile names syscalls of other architectures and newer
//! kernels); the conditions of one rule all hold (AND), except that several conditions on
//! one argument become one rule each (OR), as runc does; argument values are compared as
//! unsigned 64-bit numbers; ERRNO and TRACE without `errnoRet` return EPERM. Where
//! libseccomp is not (a syscall with both an unconditional rule and conditional ones of
//! other actions), the conditional rules are tried first, which keeps the refusals a
//! profile spells out. Compat ABIs (i386 and x32 on x86_64, arm32 on aarch64) have no
//! table here: they get the default action, so 32-bit binaries do not run under a
//! refusing default.

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator as Op,
};

use super::syscalls;
use super::InitError;

/// One classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Opcodes (linux/bpf_common.h): class | size | mode, class | op | source (BPF_LD, BPF_W
// and BPF_K are 0).
const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x04 | 0x50;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x05 | 0x10;
const JMP_JGT_K: u16 = 0x05 | 0x20;
const JMP_JGE_K: u16 = 0x05 | 0x30;
const RET_K: u16 = 0x06;

// struct seccomp_data.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARGS: u32 = 16;

// SECCOMP_RET_* (linux/seccomp.h).
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_DATA: u32 = 0xffff;

/// BPF_MAXINSNS.
const MAX_INSNS: usize = 4096;

/// The syscalls a program from x32 makes on x86_64: the number with this bit set.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// AUDIT_ARCH_* and the syscall table of the architecture we run on.
#[cfg(target_arch = "x86_64")]
const NATIVE: Option<(u32, &[(&str, u32)])> = Some((0xc000_003e, syscalls::X86_64));
#[cfg(target_arch = "aarch64")]
const NATIVE: Option<(u32, &[(&str, u32)])> = Some((0xc000_00b7, syscalls::AARCH64));
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NATIVE: Option<(u32, &[(&str, u32)])> = None;

/// A compiled profile, ready to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub program: Vec<Insn>,
    /// SECCOMP_FILTER_FLAG_*.
    pub flags: u32,
}

/// The spec's profile compiled for this machine; None without one.
pub fn from_spec(spec: &oci_spec::runtime::Spec) -> Result<Option<Filter>, InitError> {
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    let Some((arch, table)) = NATIVE else {
        return Err(InitError::invalid(
            "linux.seccomp",
            "seccomp is not supported on this architecture",
        ));
    };
    compile(seccomp, arch, table).map(Some)
}

/// What a rule does, as a SECCOMP_RET_* value.
fn action(action: Action, errno: Option<u32>, field: &str) -> Result<u32, InitError> {
    let data = || errno.unwrap_or(libc::EPERM as u32) & RET_DATA;
    Ok(match action {
        Action::ScmpActKill | Action::ScmpActKillThread => RET_KILL_THREAD,
        Action::ScmpActKillProcess => RET_KILL_PROCESS,
        Action::ScmpActTrap => RET_TRAP,
        Action::ScmpActErrno => RET_ERRNO | data(),
        Action::ScmpActTrace => RET_TRACE | data(),
        Action::ScmpActLog => RET_LOG,
        Action::ScmpActAllow => RET_ALLOW,
        Action::ScmpActNotify => {
            return Err(InitError::invalid(
                field,
                "SCMP_ACT_NOTIFY needs a seccomp agent, which is not supported",
            ))
        }
    })
}

/// One syscall's rules: those with conditions in order, then the unconditional action.
#[derive(Default)]
struct Rules {
    conditional: Vec<(Vec<LinuxSeccompArg>, u32)>,
    unconditional: Option<u32>,
}

/// Compile `seccomp` for the architecture `arch` whose syscalls are `table`.
pub fn compile(
    seccomp: &LinuxSeccomp,
    arch: u32,
    table: &[(&str, u32)],
) -> Result<Filter, InitError> {
    let default = action(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        "linux.seccomp.defaultAction",
    )?;
    let numbers: std::collections::HashMap<&str, u32> = table.iter().copied().collect();
    let mut by_nr: std::collections::BTreeMap<u32, Rules> = Default::default();
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        let ret = action(
            rule.action(),
            rule.errno_ret(),
            &format!("linux.seccomp.syscalls[{i}].action"),
        )?;
        let args = rule.args().as_deref().unwrap_or_default();
        for (j, arg) in args.iter().enumerate() {
            if arg.index() >= 6 {
                return Err(InitError::invalid(
                    format!("linux.seccomp.syscalls[{i}].args[{j}].index"),
                    format!("{} is not an argument index (0 to 5)", arg.index()),
                ));
            }
        }
        // runc: several conditions on one argument are one rule each (OR).
        let repeated = args
            .iter()
            .enumerate()
            .any(|(j, a)| args[..j].iter().any(|b| b.index() == a.index()));
        let sets: Vec<Vec<LinuxSeccompArg>> = if repeated {
            args.iter().map(|a| vec![*a]).collect()
        } else {
            vec![args.to_vec()]
        };
        for name in rule.names() {
            // Unknown here: another architecture's, or a newer kernel's (runc skips them).
            let Some(&nr) = numbers.get(name.as_str()) else {
                continue;
            };
            let rules = by_nr.entry(nr).or_default();
            for set in &sets {
                if set.is_empty() {
                    rules.unconditional = Some(ret);
                } else {
                    rules.conditional.push((set.clone(), ret));
                }
            }
        }
    }

    let foreign = if default == RET_ALLOW || default == RET_LOG {
        RET_ERRNO | libc::ENOSYS as u32
    } else {
        default
    };
    let mut program = vec![
        stmt(LD_W_ABS, OFFSET_ARCH),
        jump(JMP_JEQ_K, arch, 1, 0),
        stmt(RET_K, foreign),
        stmt(LD_W_ABS, OFFSET_NR),
    ];
    if arch == 0xc000_003e {
        program.push(jump(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1));
        program.push(stmt(RET_K, foreign));
    }
    for (nr, rules) in &by_nr {
        let mut body = Vec::new();
        for (args, ret) in &rules.conditional {
            rule_block(args, *ret, &mut body)?;
        }
        body.push(stmt(RET_K, rules.unconditional.unwrap_or(default)));
        // Equal: over the jump into the body; else over the body.
        program.push(jump(JMP_JEQ_K, *nr, 1, 0));
        program.push(stmt(JMP_JA, body.len() as u32));
        program.extend(body);
    }
    program.push(stmt(RET_K, default));
    if program.len() > MAX_INSNS {
        return Err(InitError::invalid(
            "linux.seccomp.syscalls",
            format!(
                "the profile compiles to {} BPF instructions, over the kernel's {MAX_INSNS}",
                program.len()
            ),
        ));
    }

    let mut flags = 0;
    for flag in seccomp.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
        };
    }
    Ok(Filter { program, flags })
}

/// Where a condition's jump goes.
#[derive(Clone, Copy)]
enum To {
    /// The next instruction.
    Next,
    /// The start of the next condition (all of this one holds).
    Pass,
    /// Past the rule's `ret` (this rule does not apply).
    Fail,
}

/// The conditions of one rule, then `ret`; appended to `out`.
fn rule_block(args: &[LinuxSeccompArg], ret: u32, out: &mut Vec<Insn>) -> Result<(), InitError> {
    // (instruction, jt, jf) per condition, resolved once the block's length is known.
    let mut conditions: Vec<Vec<(Insn, To, To)>> = Vec::new();
    for arg in args {
        conditions.push(condition(arg));
    }
    let len: usize = conditions.iter().map(Vec::len).sum::<usize>() + 1;
    let mut start = 0;
    for condition in conditions {
        let pass = start + condition.len();
        for (at, (mut insn, jt, jf)) in condition.into_iter().enumerate() {
            let here = start + at;
            let offset = |to: To| -> Result<u8, InitError> {
                let target = match to {
                    To::Next => here + 1,
                    To::Pass => pass,
                    To::Fail => len,
                };
                u8::try_from(target - here - 1).map_err(|_| {
                    InitError::invalid("linux.seccomp.syscalls", "a rule with too many arguments")
                })
            };
            if insn.code & 0x07 == 0x05 {
                insn.jt = offset(jt)?;
                insn.jf = offset(jf)?;
            }
            out.push(insn);
        }
        start = pass;
    }
    out.push(stmt(RET_K, ret));
    Ok(())
}

/// One argument comparison, 64 bits as two 32-bit halves (little-endian: the low half
/// first in `seccomp_data`), high half first.
fn condition(arg: &LinuxSeccompArg) -> Vec<(Insn, To, To)> {
    use To::*;
    let at = OFFSET_ARGS + 8 * arg.index() as u32;
    let (lo, hi) = (stmt(LD_W_ABS, at), stmt(LD_W_ABS, at + 4));
    let v = arg.value();
    let (vlo, vhi) = (v as u32, (v >> 32) as u32);
    let ld = |insn| (insn, Next, Next);
    let j = |code, k, jt, jf| (stmt(code, k), jt, jf);
    match arg.op() {
        Op::ScmpCmpEq => vec![
            ld(hi),
            j(JMP_JEQ_K, vhi, Next, Fail),
            ld(lo),
            j(JMP_JEQ_K, vlo, Pass, Fail),
        ],
        Op::ScmpCmpNe => vec![
            ld(hi),
            j(JMP_JEQ_K, vhi, Next, Pass),
            ld(lo),
            j(JMP_JEQ_K, vlo, Fail, Pass),
        ],
        Op::ScmpCmpGt => vec![
            ld(hi),
            j(JMP_JGT_K, vhi, Pass, Next),
            j(JMP_JEQ_K, vhi, Next, Fail),
            ld(lo),
            j(JMP_JGT_K, vlo, Pass, Fail),
        ],
        Op::ScmpCmpGe => vec![
            ld(hi),
            j(JMP_JGT_K, vhi, Pass, Next),
            j(JMP_JEQ_K, vhi, Next, Fail),
            ld(lo),
            j(JMP_JGE_K, vlo, Pass, Fail),
        ],
        // Not GE.
        Op::ScmpCmpLt => vec![
            ld(hi),
            j(JMP_JGT_K, vhi, Fail, Next),
            j(JMP_JEQ_K, vhi, Next, Pass),
            ld(lo),
            j(JMP_JGE_K, vlo, Fail, Pass),
        ],
        // Not GT.
        Op::ScmpCmpLe => vec![
            ld(hi),
            j(JMP_JGT_K, vhi, Fail, Next),
            j(JMP_JEQ_K, vhi, Next, Pass),
            ld(lo),
            j(JMP_JGT_K, vlo, Fail, Pass),
        ],
        // (arg & value) == valueTwo.
        Op::ScmpCmpMaskedEq => {
            let want = arg.value_two().unwrap_or(0);
            vec![
                ld(hi),
                ld(stmt(ALU_AND_K, vhi)),
                j(JMP_JEQ_K, (want >> 32) as u32, Next, Fail),
                ld(lo),
                ld(stmt(ALU_AND_K, vlo)),
                j(JMP_JEQ_K, want as u32, Pass, Fail),
            ]
        }
    }
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// `struct sock_fprog`.
#[repr(C)]
struct Program {
    len: libc::c_ushort,
    filter: *const Insn,
}

impl Filter {
    /// Install the filter on this (single-threaded) process. Without no_new_privs this
    /// needs CAP_SYS_ADMIN, so the caller loads it before dropping capabilities.
    pub fn load(&self) -> Result<(), InitError> {
        let program = Program {
            // At most MAX_INSNS, checked by `compile`.
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr(),
        };
        // SAFETY: `program` points at `self.program`, alive and unmoved for the call, of
        // the length given; the kernel copies the instructions and keeps no pointer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags as libc::c_ulong,
                &program as *const Program,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = nix::Error::last();
        if e == nix::Error::ENOSYS && self.flags == 0 {
            // A kernel before seccomp(2) (3.17): the prctl takes no flags.
            // SAFETY: as above; PR_SET_SECCOMP reads the program and keeps no pointer.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &program as *const Program,
                )
            };
            if rc == 0 {
                return Ok(());
            }
            return Err(InitError::step(
                "loading the seccomp filter",
                nix::Error::last(),
            ));
        }
        Err(InitError::step("loading the seccomp filter", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};

    const X86_64: u32 = 0xc000_003e;
    const I386: u32 = 0x4000_0003;

    /// A classic BPF interpreter for what `compile` emits, over one `seccomp_data`.
    fn run(filter: &Filter, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::new();
        data.extend(nr.to_le_bytes());
        data.extend(arch.to_le_bytes());
        data.extend(0u64.to_le_bytes());
        for a in args {
            data.extend(a.to_le_bytes());
        }
        let word = |k: u32| {
            let k = k as usize;
            u32::from_le_bytes([data[k], data[k + 1], data[k + 2], data[k + 3]])
        };
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = filter.program[pc];
            pc += 1;
            let cond = |taken: bool| if taken { i.jt } else { i.jf } as usize;
            match i.code {
                LD_W_ABS => a = word(i.k),
                ALU_AND_K => a &= i.k,
                JMP_JA => pc += i.k as usize,
                JMP_JEQ_K => pc += cond(a == i.k),
                JMP_JGT_K => pc += cond(a > i.k),
                JMP_JGE_K => pc += cond(a >= i.k),
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn nr(name: &str) -> u32 {
        match syscalls::X86_64.iter().find(|(n, _)| *n == name) {
            Some((_, nr)) => *nr,
            None => panic!("{name} not in the table"),
        }
    }

    fn arg(index: usize, op: Op, value: u64, two: Option<u64>) -> LinuxSeccompArg {
        let b = LinuxSeccompArgBuilder::default()
            .index(index)
            .op(op)
            .value(value);
        let b = match two {
            Some(v) => b.value_two(v),
            None => b,
        };
        b.build().expect("arg")
    }

    fn rule(
        names: &[&str],
        act: Action,
        errno: Option<u32>,
        args: Vec<LinuxSeccompArg>,
    ) -> oci_spec::runtime::LinuxSyscall {
        let b = LinuxSyscallBuilder::default()
            .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .action(act)
            .args(args);
        let b = match errno {
            Some(e) => b.errno_ret(e),
            None => b,
        };
        b.build().expect("rule")
    }

    fn compile_x86(default: Action, rules: Vec<oci_spec::runtime::LinuxSyscall>) -> Filter {
        let profile = LinuxSeccompBuilder::default()
            .default_action(default)
            .syscalls(rules)
            .build()
            .expect("profile");
        compile(&profile, X86_64, syscalls::X86_64).expect("compile")
    }

    const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

    #[test]
    fn allowlist_and_default() {
        let f = compile_x86(
            Action::ScmpActErrno,
            vec![
                rule(
                    &["read", "write", "no_such_call", "chown32"],
                    Action::ScmpActAllow,
                    None,
                    vec![],
                ),
                rule(
                    &["clone3"],
                    Action::ScmpActErrno,
                    Some(libc::ENOSYS as u32),
                    vec![],
                ),
                rule(&["reboot"], Action::ScmpActKillProcess, None, vec![]),
            ],
        );
        assert_eq!(run(&f, X86_64, nr("read"), [0; 6]), RET_ALLOW);
        assert_eq!(run(&f, X86_64, nr("write"), [0; 6]), RET_ALLOW);
        assert_eq!(run(&f, X86_64, nr("clone3"), [0; 6]), ENOSYS);
        assert_eq!(run(&f, X86_64, nr("reboot"), [0; 6]), RET_KILL_PROCESS);
        assert_eq!(run(&f, X86_64, nr("mount"), [0; 6]), EPERM);
        // Another ABI, and x32 numbers: the default (which refuses).
        assert_eq!(run(&f, I386, 3, [0; 6]), EPERM);
        assert_eq!(run(&f, X86_64, X32_SYSCALL_BIT | nr("read"), [0; 6]), EPERM);
    }

    #[test]
    fn allow_default_refuses_other_abis_with_enosys() {
        let f = compile_x86(
            Action::ScmpActAllow,
            vec![rule(&["sethostname"], Action::ScmpActErrno, None, vec![])],
        );
        assert_eq!(run(&f, X86_64, nr("sethostname"), [0; 6]), EPERM);
        assert_eq!(run(&f, X86_64, nr("uname"), [0; 6]), RET_ALLOW);
        assert_eq!(run(&f, I386, 74, [0; 6]), ENOSYS);
    }

    #[test]
    fn argument_comparisons_are_64_bit_unsigned() {
        const BIG: u64 = 0x1_0000_0005;
        // (operator, value, [(argument, allowed)]).
        type Case = (Op, u64, &'static [(u64, bool)]);
        let cases: [Case; 6] = [
            (
                Op::ScmpCmpEq,
                BIG,
                &[(BIG, true), (5, false), (BIG + 1, false)],
            ),
            (
                Op::ScmpCmpNe,
                BIG,
                &[(BIG, false), (5, true), (0x2_0000_0005, true)],
            ),
            (
                Op::ScmpCmpGt,
                BIG,
                &[
                    (BIG, false),
                    (BIG + 1, true),
                    (0x2_0000_0000, true),
                    (u32::MAX as u64, false),
                ],
            ),
            (
                Op::ScmpCmpGe,
                BIG,
                &[
                    (BIG, true),
                    (BIG - 1, false),
                    (0x2_0000_0000, true),
                    (6, false),
                ],
            ),
            (
                Op::ScmpCmpLt,
                BIG,
                &[
                    (BIG, false),
                    (BIG - 1, true),
                    (0x2_0000_0000, false),
                    (6, true),
                ],
            ),
            (
                Op::ScmpCmpLe,
                BIG,
                &[(BIG, true), (BIG + 1, false), (0, true), (u64::MAX, false)],
            ),
        ];
        for (op, value, checks) in cases {
            let f = compile_x86(
                Action::ScmpActErrno,
                vec![rule(
                    &["ioctl"],
                    Action::ScmpActAllow,
                    None,
                    vec![arg(2, op, value, None)],
                )],
            );
            for (given, allowed) in checks {
                let mut args = [0; 6];
                args[2] = *given;
                let got = run(&f, X86_64, nr("ioctl"), args);
                assert_eq!(
                    got == RET_ALLOW,
                    *allowed,
                    "{op:?} {value:#x} with {given:#x}"
                );
            }
        }
    }

    #[test]
    fn masked_equal_and_and_or() {
        // clone without namespace flags; both conditions of a rule must hold.
        let f = compile_x86(
            Action::ScmpActErrno,
            vec![
                rule(
                    &["clone"],
                    Action::ScmpActAllow,
                    None,
                    vec![arg(0, Op::ScmpCmpMaskedEq, 0x7E02_0000, Some(0))],
                ),
                rule(
                    &["kill"],
                    Action::ScmpActAllow,
                    None,
                    vec![
                        arg(0, Op::ScmpCmpEq, 1, None),
                        arg(1, Op::ScmpCmpEq, 9, None),
                    ],
                ),
                // Two conditions on one argument: either (runc).
                rule(
                    &["personality"],
                    Action::ScmpActAllow,
                    None,
                    vec![
                        arg(0, Op::ScmpCmpEq, 0, None),
                        arg(0, Op::ScmpCmpEq, 8, None),
                    ],
                ),
            ],
        );
        let clone = |flags| run(&f, X86_64, nr("clone"), [flags, 0, 0, 0, 0, 0]);
        assert_eq!(clone(0x01_1200 | libc::SIGCHLD as u64), RET_ALLOW);
        assert_eq!(clone(libc::CLONE_NEWUSER as u64), EPERM);
        assert_eq!(clone(libc::CLONE_NEWNS as u64 | 0x1_0000_0000), EPERM);
        assert_eq!(clone(0x1_0000_0000), RET_ALLOW);
        assert_eq!(run(&f, X86_64, nr("kill"), [1, 9, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&f, X86_64, nr("kill"), [1, 15, 0, 0, 0, 0]), EPERM);
        assert_eq!(run(&f, X86_64, nr("kill"), [2, 9, 0, 0, 0, 0]), EPERM);
        for (persona, allowed) in [(0, true), (8, true), (9, false)] {
            let got = run(&f, X86_64, nr("personality"), [persona, 0, 0, 0, 0, 0]);
            assert_eq!(got == RET_ALLOW, allowed, "personality({persona})");
        }
    }

    #[test]
    fn conditional_rules_come_before_the_unconditional_one() {
        let f = compile_x86(
            Action::ScmpActErrno,
            vec![
                rule(&["socket"], Action::ScmpActAllow, None, vec![]),
                rule(
                    &["socket"],
                    Action::ScmpActErrno,
                    Some(libc::EACCES as u32),
                    vec![arg(0, Op::ScmpCmpEq, 40, None)],
                ),
            ],
        );
        let socket = |family| run(&f, X86_64, nr("socket"), [family, 0, 0, 0, 0, 0]);
        assert_eq!(socket(2), RET_ALLOW);
        assert_eq!(socket(40), RET_ERRNO | libc::EACCES as u32);
    }

    #[test]
    fn actions_and_bad_input() {
        let f = compile_x86(
            Action::ScmpActLog,
            vec![
                rule(&["getpid"], Action::ScmpActTrap, None, vec![]),
                rule(&["gettid"], Action::ScmpActTrace, Some(7), vec![]),
                rule(&["getuid"], Action::ScmpActKill, None, vec![]),
            ],
        );
        assert_eq!(run(&f, X86_64, nr("getpid"), [0; 6]), RET_TRAP);
        assert_eq!(run(&f, X86_64, nr("gettid"), [0; 6]), RET_TRACE | 7);
        assert_eq!(run(&f, X86_64, nr("getuid"), [0; 6]), RET_KILL_THREAD);
        assert_eq!(run(&f, X86_64, nr("getgid"), [0; 6]), RET_LOG);

        let profile = |rules| {
            LinuxSeccompBuilder::default()
                .default_action(Action::ScmpActAllow)
                .syscalls(rules)
                .build()
                .expect("profile")
        };
        let notify = profile(vec![rule(&["read"], Action::ScmpActNotify, None, vec![])]);
        let e = compile(&notify, X86_64, syscalls::X86_64).expect_err("notify");
        assert_eq!(
            e.invalid_argument(),
            Some("linux.seccomp.syscalls[0].action")
        );
        let index = profile(vec![rule(
            &["read"],
            Action::ScmpActErrno,
            None,
            vec![arg(6, Op::ScmpCmpEq, 0, None)],
        )]);
        let e = compile(&index, X86_64, syscalls::X86_64).expect_err("index");
        assert_eq!(
            e.invalid_argument(),
            Some("linux.seccomp.syscalls[0].args[0].index")
        );
    }

    #[test]
    fn runtime_default_in_effect() {
        use crate::container::seccomp::runtime_default;
        use oci_spec::runtime::{Capability, LinuxCapabilities};
        let with = |list: &[Capability]| {
            let mut c = LinuxCapabilities::default();
            c.set_bounding(Some(list.iter().copied().collect()));
            compile(
                &runtime_default(&c).expect("profile"),
                X86_64,
                syscalls::X86_64,
            )
            .expect("compile")
        };
        let f = with(&[Capability::Chown, Capability::NetRaw]);
        let call = |f: &Filter, name: &str, a0: u64| run(f, X86_64, nr(name), [a0, 0, 0, 0, 0, 0]);
        for name in [
            "read",
            "write",
            "openat",
            "execve",
            "exit_group",
            "arch_prctl",
            "ptrace",
        ] {
            assert_eq!(call(&f, name, 0), RET_ALLOW, "{name}");
        }
        for name in [
            "mount",
            "unshare",
            "setns",
            "sethostname",
            "reboot",
            "bpf",
            "kexec_load",
        ] {
            assert_eq!(call(&f, name, 0), EPERM, "{name}");
        }
        // fork-like clone yes, a namespace no; clone3 falls back.
        assert_eq!(
            call(&f, "clone", 0x01_1200 | libc::SIGCHLD as u64),
            RET_ALLOW
        );
        assert_eq!(call(&f, "clone", libc::CLONE_NEWUSER as u64), EPERM);
        assert_eq!(call(&f, "clone", libc::CLONE_NEWNET as u64), EPERM);
        assert_eq!(call(&f, "clone3", 0), ENOSYS);
        // socket: AF_ALG and AF_VSOCK refused, the others allowed.
        for (family, allowed) in [
            (1, true),
            (2, true),
            (10, true),
            (16, true),
            (38, false),
            (39, true),
            (40, false),
            (44, true),
        ] {
            assert_eq!(
                call(&f, "socket", family) == RET_ALLOW,
                allowed,
                "socket({family})"
            );
        }
        for (persona, allowed) in [
            (0, true),
            (8, true),
            (0x20000, true),
            (0x20008, true),
            (0xffff_ffff, true),
            (0x0040_0000, false),
        ] {
            assert_eq!(
                call(&f, "personality", persona) == RET_ALLOW,
                allowed,
                "personality({persona:#x})"
            );
        }
        let admin = with(&[Capability::SysAdmin]);
        assert_eq!(call(&admin, "clone", libc::CLONE_NEWUSER as u64), RET_ALLOW);
        assert_eq!(call(&admin, "clone3", 0), RET_ALLOW);
        assert_eq!(call(&admin, "mount", 0), RET_ALLOW);
        assert!(f.program.len() < MAX_INSNS);
    }

    #[test]
    fn the_tables_have_the_calls_a_container_needs() {
        for table in [syscalls::X86_64, syscalls::AARCH64] {
            for name in [
                "read",
                "write",
                "execve",
                "clone",
                "clone3",
                "openat",
                "exit_group",
                "seccomp",
                "mseal",
            ] {
                assert!(table.iter().any(|(n, _)| *n == name), "{name}");
            }
            let mut numbers: Vec<u32> = table.iter().map(|(_, nr)| *nr).collect();
            numbers.dedup();
            assert_eq!(numbers.len(), table.len(), "sorted, one name per number");
        }
        assert_eq!(nr("read"), 0);
        assert_eq!(nr("clone3"), 435);
        let aarch64 = |name: &str| {
            syscalls::AARCH64
                .iter()
                .find(|(n, _)| *n == name)
                .map(|e| e.1)
        };
        assert_eq!(aarch64("openat"), Some(56));
        assert_eq!(aarch64("open"), None);
    }
}
