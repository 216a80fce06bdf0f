//! A `/start` body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    openhands_k8s_runtime::fuzzing::start_request(body);
});
