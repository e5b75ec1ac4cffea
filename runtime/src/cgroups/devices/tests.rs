//! Rule parsing, the v1 replay, the v1 text, and the BPF program run by a small interpreter
//! of exactly the opcodes it may contain, over a table of requests.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::program::{self, encode, Insn};
use super::*;

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: Option<&str>,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow)
        .set_typ(typ)
        .set_major(major)
        .set_minor(minor)
        .set_access(access.map(str::to_string));
    r
}

/// Shorthand: `"c 1:3 rwm"`, `"b *:* m"`, `"a"`, with a leading `+` (allow) or `-` (deny).
fn r(s: &str) -> LinuxDeviceCgroup {
    let (allow, s) = match s.split_at(1) {
        ("+", rest) => (true, rest),
        ("-", rest) => (false, rest),
        _ => panic!("{s}: + or -"),
    };
    let parts: Vec<&str> = s.split_whitespace().collect();
    let typ = match parts[0] {
        "a" => LinuxDeviceType::A,
        "c" => LinuxDeviceType::C,
        "b" => LinuxDeviceType::B,
        t => panic!("type {t}"),
    };
    if parts.len() == 1 {
        return rule(allow, Some(typ), None, None, Some("rwm"));
    }
    let (maj, min) = parts[1].split_once(':').unwrap();
    let num = |n: &str| (n != "*").then(|| n.parse::<i64>().unwrap());
    rule(allow, Some(typ), num(maj), num(min), Some(parts[2]))
}

fn state(rules: &[&str]) -> DeviceState {
    let oci: Vec<_> = rules.iter().map(|s| r(s)).collect();
    DeviceState::replay(&parse_rules(&oci).unwrap()).unwrap()
}

/// The deny-all plus defaults that `container::spec` emits for a default container.
const DEFAULTS: &[&str] = &[
    "-a",
    "+c *:* m",
    "+b *:* m",
    "+c 1:3 rwm",
    "+c 1:5 rwm",
    "+c 1:7 rwm",
    "+c 1:8 rwm",
    "+c 1:9 rwm",
    "+c 5:0 rwm",
    "+c 5:2 rwm",
    "+c 136:* rwm",
    "+c 10:200 rwm",
];

// ---- the interpreter ----

fn decode(bytes: &[u8]) -> Vec<Insn> {
    assert_eq!(bytes.len() % 8, 0);
    bytes
        .chunks(8)
        .map(|c| {
            let (dst, src) = if cfg!(target_endian = "little") {
                (c[1] & 0x0f, c[1] >> 4)
            } else {
                (c[1] >> 4, c[1] & 0x0f)
            };
            Insn {
                code: c[0],
                dst,
                src,
                off: i16::from_ne_bytes([c[2], c[3]]),
                imm: i32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            }
        })
        .collect()
}

/// Runs the program on a `bpf_cgroup_dev_ctx`; the return value, as the kernel takes it.
/// Panics on anything the kernel's verifier would refuse that matters here: an opcode we
/// never emit, a jump out of the program, falling off the end, a read past the context.
fn run(prog: &[Insn], typ: DevType, access: Access, major: u32, minor: u32) -> u64 {
    let access_type = u32::from(access.bits()) << 16 | program::bpf_type(typ) as u32;
    let mut ctx = Vec::new();
    for v in [access_type, major, minor] {
        ctx.extend_from_slice(&v.to_ne_bytes());
    }
    let mut reg = [0u64; 11];
    // r1 holds the context: modelled as offset 0 into `ctx`.
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let i = prog.get(pc).copied().expect("fell off the end");
        let (d, s) = (usize::from(i.dst), usize::from(i.src));
        let imm64 = i64::from(i.imm) as u64;
        let mut jump = |cond: bool| {
            if cond {
                let to = pc as i64 + 1 + i64::from(i.off);
                assert!(to >= 0 && (to as usize) < prog.len(), "jump out at {pc}");
                pc = to as usize;
            } else {
                pc += 1;
            }
        };
        match i.code {
            program::LDX_MEM_W => {
                assert_eq!(s, 1, "loads only from the context");
                let at = (reg[s] as i64 + i64::from(i.off)) as usize;
                let b = ctx.get(at..at + 4).expect("read past the context");
                reg[d] = u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                pc += 1;
            }
            program::ALU32_AND_K => {
                reg[d] = u64::from(reg[d] as u32 & i.imm as u32);
                pc += 1;
            }
            program::ALU32_RSH_K => {
                reg[d] = u64::from((reg[d] as u32) >> (i.imm as u32));
                pc += 1;
            }
            program::ALU32_MOV_K => {
                reg[d] = u64::from(i.imm as u32);
                pc += 1;
            }
            program::ALU32_MOV_X => {
                reg[d] = u64::from(reg[s] as u32);
                pc += 1;
            }
            program::JNE_K => jump(reg[d] != imm64),
            program::JEQ_K => jump(reg[d] == imm64),
            program::JNE_X => jump(reg[d] != reg[s]),
            program::EXIT => return reg[0],
            other => panic!("opcode {other:#x} at {pc}"),
        }
    }
    panic!("no exit in 10000 steps")
}

fn all_accesses() -> impl Iterator<Item = Access> {
    (1..=7).map(Access::from_bits)
}

fn bpf_allows(st: &DeviceState, typ: DevType, major: u32, minor: u32, access: Access) -> bool {
    let prog = decode(&encode(&program::program(st)));
    run(&prog, typ, access, major, minor) == 1
}

// ---- tests ----

#[test]
fn defaults_as_the_kernel_lists_them() {
    let st = state(DEFAULTS);
    assert!(!st.default_allow);
    assert_eq!(
        st.v1_list(),
        [
            "c *:* m",
            "b *:* m",
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:2 rwm",
            "c 136:* rwm",
            "c 10:200 rwm"
        ]
    );
}

#[test]
fn replay_follows_the_v1_kernel() {
    // The same key merges its access, in its first place.
    let st = state(&["-a", "+c 1:3 r", "+c 1:5 rwm", "+c 1:3 w"]);
    assert_eq!(st.v1_list(), ["c 1:3 rw", "c 1:5 rwm"]);
    // A deny in deny-all mode takes access from the exact exception.
    let st = state(&["-a", "+c 1:3 rwm", "-c 1:3 w", "-c 9:9 r"]);
    assert_eq!(st.v1_list(), ["c 1:3 rm"]);
    let st = state(&["-a", "+c 1:3 rw", "-c 1:3 rw"]);
    assert!(st.exceptions.is_empty());
    // `a` switches and clears, whatever came before.
    let st = state(&["-a", "+c 1:3 rwm", "+a"]);
    assert!(st.allows_all());
    assert_eq!(st.v1_list(), ["a *:* rwm"]);
    // Allow-all mode: denies are exceptions, allows remove them.
    let st = state(&["+a", "-c 1:1 rwm", "-b 8:* w", "+c 1:1 m"]);
    assert!(st.default_allow);
    assert_eq!(st.exceptions.len(), 2);
    assert!(st.permits(DevType::Char, 1, 1, Access::MKNOD));
    assert!(!st.permits(DevType::Char, 1, 1, Access::READ));
    // No rules at all: a new cgroup's state.
    assert!(state(&[]).allows_all());
}

#[test]
fn punching_a_hole_in_a_wildcard_is_refused() {
    let oci = vec![r("-a"), r("+c *:* m"), r("-c 1:3 m")];
    let err = DeviceState::replay(&parse_rules(&oci).unwrap()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(FIELD) && msg.contains("rule 2") && msg.contains("c *:* m"),
        "{msg}"
    );
    // Removing access the wildcard does not grant is fine.
    state(&["-a", "+c *:* m", "+c 1:3 rwm", "-c 1:3 rw"]);
}

#[test]
fn invalid_rules_name_their_index() {
    let cases = [
        (
            rule(true, Some(LinuxDeviceType::U), Some(1), Some(3), None),
            "type",
        ),
        (
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), Some("rx")),
            "access",
        ),
        (
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), Some("rr")),
            "access",
        ),
        (
            rule(true, Some(LinuxDeviceType::C), Some(4096), Some(3), None),
            "major",
        ),
        (
            rule(true, Some(LinuxDeviceType::B), Some(1), Some(1 << 20), None),
            "minor",
        ),
    ];
    for (bad, what) in cases {
        let rules = vec![r("-a"), bad];
        let err = parse_rules(&rules).unwrap_err();
        assert!(
            matches!(err.kind(), crate::error::ErrorKind::InvalidArgument { ref field } if field == FIELD),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("rule 1") && msg.contains(what), "{msg}");
    }
    // Absent type is `a`; absent access and negative numbers are all / wildcards (runc).
    let none = rule(false, None, Some(1), Some(2), None);
    assert_eq!(
        Rule::from_oci(0, &none).unwrap(),
        Rule::All { allow: false }
    );
    let wild = rule(true, Some(LinuxDeviceType::C), Some(-1), None, None);
    assert_eq!(Rule::from_oci(0, &wild).unwrap().v1_text(), "c *:* rwm");
}

#[test]
fn v1_writes_each_rule_in_order() {
    let parsed = parse_rules(&[
        r("-a"),
        r("+c 1:3 r"),
        r("+b *:* m"),
        r("-c 1:3 r"),
        r("+a"),
    ])
    .unwrap();
    let plan = v1::plan(Path::new("/cg"), &parsed);
    let got: Vec<(String, String)> = plan
        .into_iter()
        .map(|(f, l)| (f.display().to_string(), l))
        .collect();
    let want = [
        ("/cg/devices.deny", "a"),
        ("/cg/devices.allow", "c 1:3 r"),
        ("/cg/devices.allow", "b *:* m"),
        ("/cg/devices.deny", "c 1:3 r"),
        ("/cg/devices.allow", "a"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(f, l)| (f.to_string(), l.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn v1_apply_writes_to_the_files() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["devices.allow", "devices.deny"] {
        std::fs::write(dir.path().join(f), "").unwrap();
    }
    // The fixture keeps only the last write to each file.
    apply(Target::V1(dir.path()), &[r("-a"), r("+c 1:3 rw")]).unwrap();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    assert_eq!(read("devices.deny"), "a");
    assert_eq!(read("devices.allow"), "c 1:3 rw");
    // An invalid list writes nothing.
    std::fs::write(dir.path().join("devices.allow"), "").unwrap();
    let err = apply(
        Target::V1(dir.path()),
        &[
            r("+c 1:3 rw"),
            rule(true, Some(LinuxDeviceType::P), None, None, None),
        ],
    );
    assert!(err.is_err());
    assert_eq!(read("devices.allow"), "");
}

/// The v1 kernel's decisions, written out by hand: the anchor for everything else.
#[test]
fn known_decisions() {
    use DevType::{Block as B, Char as C};
    let (r_, w, m) = (Access::READ, Access::WRITE, Access::MKNOD);
    let rw = r_.union(w);
    let defaults = state(DEFAULTS);
    let priv_ = state(&["+a"]);
    let cri_r = state(&[DEFAULTS, &["+c 1:11 r"]].concat());
    let blacklist = state(&["+a", "-c 1:3 w", "-b 8:* rwm"]);
    #[rustfmt::skip]
    let table: &[(&DeviceState, DevType, u32, u32, Access, bool)] = &[
        (&defaults, C, 1, 3, rw, true),     // /dev/null
        (&defaults, C, 1, 9, r_, true),     // urandom
        (&defaults, C, 136, 4, rw, true),   // a pty
        (&defaults, C, 10, 200, rw, true),  // tun
        (&defaults, C, 1, 1, r_, false),    // /dev/mem
        (&defaults, B, 254, 0, r_, false),  // the host's disk
        (&defaults, B, 254, 0, m, true),    // ... may be made, not used
        (&defaults, B, 254, 0, r_.union(m), false),
        (&defaults, C, 5, 1, rw, false),    // console is not a default
        (&defaults, B, 1, 3, rw, false),    // type matters
        (&priv_, B, 8, 0, rw.union(m), true),
        (&priv_, C, 1, 1, r_, true),
        (&cri_r, C, 1, 11, r_, true),
        (&cri_r, C, 1, 11, w, false),
        (&cri_r, C, 1, 11, rw, false),      // one exception must cover the whole request
        (&blacklist, C, 1, 3, r_, true),
        (&blacklist, C, 1, 3, w, false),
        (&blacklist, C, 1, 3, rw, false),   // a deny shares a bit: refused (runc's differs)
        (&blacklist, B, 8, 17, m, false),
        (&blacklist, B, 9, 0, rw, true),
    ];
    for (i, (st, typ, maj, min, acc, want)) in table.iter().enumerate() {
        assert_eq!(
            st.permits(*typ, *maj, *min, *acc),
            *want,
            "row {i}: reference"
        );
        assert_eq!(
            bpf_allows(st, *typ, *maj, *min, *acc),
            *want,
            "row {i}: program"
        );
    }
}

/// Every request of a grid against every rule set: the program decides as v1 does.
#[test]
fn program_matches_the_v1_semantics() {
    let sets: Vec<Vec<&str>> = vec![
        DEFAULTS.to_vec(),
        vec!["+a"],
        vec!["-a"],
        vec![],
        vec!["+a", "-c 1:3 w", "-b 8:* rwm", "-c *:5 r"],
        vec!["-a", "+c 1:3 r", "+c 1:3 w", "+b *:0 rm", "+c 5:* w"],
        [DEFAULTS, &["+c 1:11 r", "+b 7:0 rw"]].concat(),
        vec!["-a", "+c *:* rwm", "-c *:* w"],
    ];
    let majors = [0, 1, 5, 7, 8, 10, 136, 254, 4095];
    let minors = [0, 1, 3, 5, 9, 11, 200, 0xf_ffff];
    let mut checked = 0;
    for rules in &sets {
        let st = state(rules);
        let prog = decode(&encode(&program::program(&st)));
        for typ in [DevType::Char, DevType::Block] {
            for &maj in &majors {
                for &min in &minors {
                    for acc in all_accesses() {
                        let want = st.permits(typ, maj, min, acc);
                        let got = run(&prog, typ, acc, maj, min) == 1;
                        assert_eq!(got, want, "{rules:?}: {typ:?} {maj}:{min} {acc}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, sets.len() * 2 * majors.len() * minors.len() * 7);
}

#[test]
fn program_shape() {
    // Allow-all: just "return 1".
    let p = program::program(&state(&["+a"]));
    assert_eq!(p.len(), 6 + 2);
    assert_eq!((p[6].code, p[6].imm), (program::ALU32_MOV_K, 1));
    // rwm exceptions skip the access test; jumps land on the next block.
    let p = program::program(&state(&["-a", "+c 1:3 rwm"]));
    assert_eq!(p.len(), 6 + 5 + 2);
    assert_eq!(p[6].off, 4);
    assert_eq!(encode(&p).len(), p.len() * 8);
}
