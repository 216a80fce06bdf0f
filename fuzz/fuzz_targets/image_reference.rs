//! An image reference, as `/image_exists?image=` takes it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    openhands_k8s_runtime::fuzzing::image_reference(text);
});
