//! libFuzzer target: the `buildinfo` harness of parkscope_probes::go::fuzz.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parkscope_probes::go::fuzz::buildinfo(data));
