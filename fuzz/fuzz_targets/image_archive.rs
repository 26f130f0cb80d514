//! Importing an image archive (an OCI layout or `docker save` tar, maybe
//! gzipped) into a sealed image store, then unpacking each image it
//! imported into a rootfs, as a task's start would.
//!
//! Properties: the store writes only under its own root; an imported image
//! resolves by each of its names to the manifest digest the import
//! reported, and its layers read back sealed; unpacking it writes nothing
//! outside the rootfs.
#![no_main]

#[path = "common/sandbox.rs"]
mod sandbox;

use std::path::Path;
use std::sync::Arc;

use ferry_agent::image::{ImageStore, archive, unpack};
use ferry_blob::testing::MemoryKeys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if sandbox::has_special_entries(data) {
        return;
    }
    let sb = sandbox::Sandbox::new();
    let dest = sb.dest();
    let ctx = [("ferry:purpose".to_owned(), "fuzz".to_owned())].into();
    let store = match ImageStore::open(
        dest.join("store"),
        Arc::new(MemoryKeys::with_key([9; 32])),
        ctx,
    ) {
        Ok(s) => s,
        Err(e) => panic!("opening the store: {e}"),
    };
    let imported = archive::import_from(&store, data, Path::new("fuzz.tar"), None);
    if let Ok(images) = imported {
        for (i, im) in images.iter().enumerate() {
            for name in &im.names {
                let image = store
                    .resolve(&name.to_string())
                    .unwrap_or_else(|e| panic!("imported {name} does not resolve: {e}"));
                // Names are per archive: a later image may take an earlier one's name.
                if images[i + 1..]
                    .iter()
                    .all(|later| !later.names.contains(name))
                {
                    assert_eq!(image.manifest_digest, im.manifest_digest, "{name}");
                }
                let rootfs = dest.join(format!("rootfs{i}"));
                let _ = unpack::unpack_image(&store, &image, &rootfs);
            }
        }
    }
    sb.assert_contained();
});
