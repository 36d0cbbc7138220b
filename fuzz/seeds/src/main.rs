//! Writes the seed corpus of every fuzz target into `CORPUS/<target>/`: the harnesses' own
//! real-format seeds (`parkscope_probes::go::fuzz::seeds`, `parkscope_recording::fuzz::seeds`), and from the Go builds in
//! `EXAMPLES_BIN`, their `.go.buildinfo` sections and, of the smallest ones, the `.gopclntab`
//! section, the whole executable and the start of its code. Usage: parkscope-fuzz-seeds CORPUS EXAMPLES_BIN

use std::path::{Path, PathBuf};

use object::{Object, ObjectSection};
use parkscope_probes::go::fuzz::{TARGETS, seeds};

/// Whole executables larger than this are not copied (they slow every run of the target).
const MAX_WHOLE_BINARY: u64 = 3 << 20;

fn main() -> std::io::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [corpus, examples] = args.as_slice() else {
        eprintln!("usage: parkscope-fuzz-seeds CORPUS EXAMPLES_BIN");
        std::process::exit(2);
    };
    let write = |target: &str, name: &str, data: &[u8]| -> std::io::Result<()> {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), data)
    };
    for (target, _) in TARGETS {
        for (i, seed) in seeds(target).iter().enumerate() {
            write(target, &format!("seed-{i}"), seed)?;
        }
    }
    for (i, seed) in parkscope_recording::fuzz::seeds().iter().enumerate() {
        write("recording", &format!("seed-{i}"), seed)?;
    }
    let mut real = 0;
    for entry in std::fs::read_dir(examples)? {
        let path = entry?.path();
        let Ok(data) = std::fs::read(&path) else { continue };
        let Ok(file) = object::File::parse(&*data) else { continue };
        let section = |name: &str| file.section_by_name(name).and_then(|s| s.data().ok());
        let Some(buildinfo) = section(".go.buildinfo") else { continue };
        let name = file_name(&path);
        write("buildinfo", &format!("real-{name}"), &buildinfo[..buildinfo.len().min(4096)])?;
        if data.len() as u64 <= MAX_WHOLE_BINARY {
            if let Some(pcln) = section(".gopclntab") {
                write("pclntab", &format!("real-{name}"), pcln)?;
            }
            write("go_binary", &format!("real-{name}"), &data)?;
            // The locate target's code scan (first byte odd) over the start of the Go text.
            if let Some(text) = section(".text") {
                let mut code = vec![1];
                code.extend(&text[..text.len().min(32 << 10)]);
                write("locate", &format!("real-text-{name}"), &code)?;
            }
            write("go_executable", &format!("real-{name}"), &data)?;
        }
        real += 1;
    }
    eprintln!(
        "seeds written to {} ({real} real Go builds read from {})",
        corpus.display(),
        examples.display()
    );
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}
