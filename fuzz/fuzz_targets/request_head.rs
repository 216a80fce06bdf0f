//! The bytes a client sends before it closes, read by the HTTP front with the service's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    openhands_k8s_runtime::fuzzing::request_head(input);
});
