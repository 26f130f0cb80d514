//! Applying an image layer to a rootfs (`unpack::apply_layer`, with
//! whiteouts), as the agent does for every layer of a task's image.
//!
//! Property: whatever the tar holds (`..`, absolute paths, symlinks and
//! hard links pointing out, whiteouts through symlinks), nothing outside
//! the destination is created, removed or changed.
//! The input is applied twice (a second layer on top of the first), so
//! links the first made are in place for the second.
#![no_main]

#[path = "common/sandbox.rs"]
mod sandbox;

use ferry_agent::image::unpack::apply_layer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if sandbox::has_special_entries(data) {
        return;
    }
    let sb = sandbox::Sandbox::new();
    let dest = sb.dest();
    if apply_layer(data, "fuzz", &dest).is_ok() {
        let _ = apply_layer(data, "fuzz", &dest);
    }
    sb.assert_contained();
});
