//! ferry-api (to be written).
