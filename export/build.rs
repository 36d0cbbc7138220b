//! Generates the Rust types of the vendored Perfetto protos (protos/) with prost-build, parsing
//! the .proto files with protox (pure Rust) so building needs no protoc on the machine.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let proto = "protos/perfetto/trace/parkscope_trace_subset.proto";
    println!("cargo::rerun-if-changed=protos");
    let descriptors = protox::compile([proto], [&root]).unwrap_or_else(|e| panic!("{proto}: {e}"));
    prost_build::Config::new()
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating the Perfetto types: {e}"));
}
