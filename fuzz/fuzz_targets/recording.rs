//! libFuzzer target: the recording reader (parkscope_recording::fuzz::read): whole files, and
//! stored chunks behind a valid header so the JSON and delta decoding is reached.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parkscope_recording::fuzz::read(data));
