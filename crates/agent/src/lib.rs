//! ferry-agent (to be written).
