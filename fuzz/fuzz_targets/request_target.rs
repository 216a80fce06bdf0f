//! A request target: the path routed, the query strings percent-decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    openhands_k8s_runtime::fuzzing::request_target(text);
});
