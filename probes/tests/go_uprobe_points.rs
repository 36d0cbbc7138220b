//! Where the opt-in Go uprobes go, checked against objdump's disassembly of real builds (every
//! release with a layout table; Go 1.19 and 1.27 also without DWARF): the probed instruction must start exactly at an
//! instruction boundary, be the frame setup (`push %rbp`, or `sub $N,%rsp` in runtimes before
//! Go 1.21), and everything before it must be the stack-growth check. A probe one byte off
//! would corrupt the target's code. Needs the example builds (`cargo xtask examples`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use parkscope_probes::go::{GoBinary, UPROBE_FUNCTIONS, frame_setup, layout};

fn example(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let p = root.join("examples/bin").join(name);
    assert!(p.is_file(), "{} missing: run `cargo xtask examples`", p.display());
    p
}

/// objdump's instructions in [addr, addr+len): (address, mnemonic and operands).
fn disassemble(bin: &Path, addr: u64, len: u64) -> Vec<(u64, String)> {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", &format!("--start-address={addr:#x}")])
        .arg(format!("--stop-address={:#x}", addr + len))
        .arg(bin)
        .output()
        .expect("objdump (binutils) runs");
    assert!(out.status.success(), "objdump failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (a, insn) = l.split_once(":\t")?;
            Some((
                u64::from_str_radix(a.trim(), 16).ok()?,
                insn.split_whitespace().collect::<Vec<_>>().join(" "),
            ))
        })
        .collect()
}

#[test]
fn probes_sit_on_the_frame_setup_past_the_stack_check() {
    let mut checked = 0;
    let bins: Vec<String> = layout::table_releases()
        .map(|r| format!("parked-{r}"))
        .chain(["parked-go1.19-w", "parked-go1.27-w", "httpserver-go1.27"].map(String::from))
        .collect();
    for bin in &bins {
        let bin = bin.as_str();
        let path = example(bin);
        let go = GoBinary::open(&path, bin).unwrap_or_else(|e| panic!("{bin}: {e}"));
        let modern = !go.buildinfo.version.starts_with("go1.19");
        for name in UPROBE_FUNCTIONS {
            let f = go.function(name).unwrap_or_else(|| panic!("{bin}: no {name} in the symbol table"));
            let setup = frame_setup(&f.head).unwrap_or_else(|e| panic!("{bin} {name}: {e}"));
            let insns = disassemble(&path, f.addr, 48);
            let at = f.addr + setup.offset as u64;
            let probed = insns.iter().find(|(a, _)| *a == at).unwrap_or_else(|| {
                panic!("{bin} {name}: +{} is not an instruction boundary: {insns:#?}", setup.offset)
            });
            if setup.push {
                assert_eq!(probed.1, "push %rbp", "{bin} {name}");
            } else {
                assert!(
                    probed.1.starts_with("sub $") && probed.1.ends_with(",%rsp"),
                    "{bin} {name}: {probed:?}"
                );
            }
            // Go >= 1.21 sets frames up with push (emulated by the kernel); 1.19 with sub.
            assert_eq!(setup.push, modern, "{bin} {name}: {probed:?}");
            for (_, insn) in insns.iter().take_while(|(a, _)| *a < at) {
                let check = insn.starts_with("cmp 0x10(%r14),")
                    || insn.starts_with("jbe ")
                    || insn.starts_with("jb ")
                    || insn.starts_with("lea ") && insn.ends_with("%r12")
                    || insn == "mov %rsp,%r12"
                    || insn.starts_with("sub $") && insn.ends_with(",%r12");
                assert!(check, "{bin} {name}: {insn:?} before the probe is not the stack check");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, bins.len() * UPROBE_FUNCTIONS.len());
    assert!(bins.len() >= 11, "{bins:?}");
}
