//! ferry-kms (to be written).
