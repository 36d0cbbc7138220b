//! libFuzzer target: the `pclntab` harness of parkscope_probes::go::fuzz.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parkscope_probes::go::fuzz::pclntab(data));
