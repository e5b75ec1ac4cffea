//! The `BPF_PROG_TYPE_CGROUP_DEVICE` program for a [`DeviceState`]: pure, and tested by
//! interpreting it (`tests.rs`) against [`DeviceState::permits`].
//!
//! The layout follows runc's `devicefilter.go` (after crun's `ebpf.c`): load the request
//! into registers, then one block per exception that jumps to the next block on any
//! mismatch and returns the exception's verdict when everything matches, then the
//! default verdict. The program's context is `struct bpf_cgroup_dev_ctx`:
//! `u32 access_type` (device type in the low 16 bits, `BPF_DEVCG_ACC_*` above them),
//! `u32 major`, `u32 minor`; it returns 1 to allow, 0 to refuse.
//!
//! Where runc and the v1 kernel differ, this follows the kernel: in allow-by-default mode
//! a deny exception refuses a request that shares any access bit with it (runc's refuses
//! only one that it covers wholly, so its `c 1:3 w` deny lets an `rw` open through).

use super::{Access, DevType, DeviceState};

/// `struct bpf_insn`: opcode, the dst and src registers (a nibble each), offset,
/// immediate; 8 bytes in the host's byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcode parts (linux/bpf_common.h, linux/bpf.h).
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

/// The opcodes the program uses, for the interpreter in the tests.
pub const LDX_MEM_W: u8 = BPF_LDX | BPF_MEM | BPF_W;
pub const ALU32_AND_K: u8 = BPF_ALU | BPF_AND | BPF_K;
pub const ALU32_RSH_K: u8 = BPF_ALU | BPF_RSH | BPF_K;
pub const ALU32_MOV_K: u8 = BPF_ALU | BPF_MOV | BPF_K;
pub const ALU32_MOV_X: u8 = BPF_ALU | BPF_MOV | BPF_X;
pub const JNE_K: u8 = BPF_JMP | BPF_JNE | BPF_K;
pub const JNE_X: u8 = BPF_JMP | BPF_JNE | BPF_X;
pub const JEQ_K: u8 = BPF_JMP | BPF_JEQ | BPF_K;
pub const EXIT: u8 = BPF_JMP | BPF_EXIT;

/// `BPF_DEVCG_DEV_*`.
pub fn bpf_type(t: DevType) -> i32 {
    match t {
        DevType::Block => 1,
        DevType::Char => 2,
    }
}

// Registers: r1 the context (then scratch), r2 type, r3 access, r4 major, r5 minor.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

/// A jump to the end of the current block, patched once the block is complete.
const TO_NEXT: i16 = i16::MIN;

/// The program. Exceptions are few (tens), so the offsets fit easily; the kernel bounds
/// a program at a million instructions in any case.
pub fn program(state: &DeviceState) -> Vec<Insn> {
    let mut p = vec![
        // r2 = type: the low 16 bits of access_type.
        insn(LDX_MEM_W, R2, R1, 0, 0),
        insn(ALU32_AND_K, R2, 0, 0, 0xffff),
        // r3 = access: the high 16 bits.
        insn(LDX_MEM_W, R3, R1, 0, 0),
        insn(ALU32_RSH_K, R3, 0, 0, 16),
        insn(LDX_MEM_W, R4, R1, 4, 0),
        insn(LDX_MEM_W, R5, R1, 8, 0),
    ];
    // Every exception has the verdict opposite to the default (see `DeviceState::replay`).
    let verdict = i32::from(!state.default_allow);
    for (dev, access) in &state.exceptions {
        let mut block = vec![insn(JNE_K, R2, 0, TO_NEXT, bpf_type(dev.typ))];
        if *access != Access::ALL {
            let bits = i32::from(access.bits());
            // r1 = r3 & access
            block.push(insn(ALU32_MOV_X, R1, R3, 0, 0));
            block.push(insn(ALU32_AND_K, R1, 0, 0, bits));
            if state.default_allow {
                // A deny exception: refuses if it shares any bit with the request.
                block.push(insn(JEQ_K, R1, 0, TO_NEXT, 0));
            } else {
                // An allow exception: grants only if it covers the whole request.
                block.push(insn(JNE_X, R1, R3, TO_NEXT, 0));
            }
        }
        // Majors and minors are bounded (12 and 20 bits) by `Rule::from_oci`, so the
        // sign extension of a 64-bit compare against the immediate never bites.
        if let Some(major) = dev.major {
            block.push(insn(JNE_K, R4, 0, TO_NEXT, major as i32));
        }
        if let Some(minor) = dev.minor {
            block.push(insn(JNE_K, R5, 0, TO_NEXT, minor as i32));
        }
        block.push(insn(ALU32_MOV_K, R0, 0, 0, verdict));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.off == TO_NEXT {
                // Relative to the next instruction: land on the first of the next block.
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(ALU32_MOV_K, R0, 0, 0, i32::from(state.default_allow)));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// The program as the kernel reads it (`__u8 dst_reg:4, src_reg:4` puts dst in the low
/// nibble on little-endian hosts, the high one on big-endian).
pub fn encode(insns: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(insns.len() * 8);
    for i in insns {
        out.push(i.code);
        let (dst, src) = (i.dst & 0x0f, i.src & 0x0f);
        out.push(if cfg!(target_endian = "little") {
            (src << 4) | dst
        } else {
            (dst << 4) | src
        });
        out.extend_from_slice(&i.off.to_ne_bytes());
        out.extend_from_slice(&i.imm.to_ne_bytes());
    }
    out
}
