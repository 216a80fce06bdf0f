//! An API server's error answer: its status code and body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    openhands_k8s_runtime::fuzzing::kube_status(input.0, input.1);
});
