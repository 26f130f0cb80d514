//! ferry-volume (to be written).
