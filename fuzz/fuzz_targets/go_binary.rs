//! libFuzzer target: the `go_binary` harness of parkscope_probes::go::fuzz.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parkscope_probes::go::fuzz::go_binary(data));
