//! libFuzzer target: the `epoll_fdinfo` harness of parkscope_probes::go::fuzz.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parkscope_probes::go::fuzz::epoll_fdinfo(data));
