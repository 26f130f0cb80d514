//! ferry-control (to be written).
