//! One line of a Kubernetes watch stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    openhands_k8s_runtime::fuzzing::watch_event(text);
});
