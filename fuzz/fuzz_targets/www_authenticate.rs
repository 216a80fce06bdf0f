//! A registry's `WWW-Authenticate` challenge.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    openhands_k8s_runtime::fuzzing::www_authenticate(text);
});
