//! The only `unsafe` of the sector cipher: AWS-LC's EVP AES-256-XTS via
//! `aws-lc-sys`. AWS-LC (BoringSSL-style EVP) sets a new tweak with a plain
//! 16-byte copy, where OpenSSL 3.0 spends ~0.8 us per sector in provider
//! parameter look-ups; see docs/volume-engine.md.

use std::os::raw::c_int;
use std::ptr::{self, NonNull};

use aws_lc_sys as ffi;

/// Length of the AES-256-XTS key (two AES-256 keys).
pub const KEY_LEN: usize = 64;

/// AWS-LC refused a call (the name of the call that failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// One keyed AES-256-XTS context for one direction.
pub struct XtsCtx {
    ctx: NonNull<ffi::EVP_CIPHER_CTX>,
}

// SAFETY: the context is exclusively owned by this value and only used
// through `&mut self`; AWS-LC contexts have no thread affinity.
unsafe impl Send for XtsCtx {}

impl XtsCtx {
    /// Allocates a context and expands `key` into it (the only copy of the
    /// key AWS-LC keeps is its key schedule inside the context).
    pub fn new(key: &[u8; KEY_LEN], encrypt: bool) -> Result<Self, Refused> {
        // SAFETY: no arguments; returns a new context or null.
        let raw = unsafe { ffi::EVP_CIPHER_CTX_new() };
        let ctx = NonNull::new(raw).ok_or(Refused("EVP_CIPHER_CTX_new"))?;
        // From here on `Drop` frees the context, also on the error path below.
        let me = XtsCtx { ctx };
        // SAFETY: `ctx` is a live context; EVP_aes_256_xts returns a static
        // cipher; `key` points at KEY_LEN readable bytes, the cipher's key
        // length; a null IV is allowed (it is set per sector).
        let ok = unsafe {
            ffi::EVP_CipherInit_ex(
                me.ctx.as_ptr(),
                ffi::EVP_aes_256_xts(),
                ptr::null_mut(),
                key.as_ptr(),
                ptr::null(),
                c_int::from(encrypt),
            )
        };
        if ok != 1 {
            return Err(Refused("EVP_CipherInit_ex"));
        }
        Ok(me)
    }

    /// Processes one data unit (`src` into `dst`, same length, at least one
    /// AES block) under `tweak`, keeping the key schedule.
    pub fn unit(&mut self, tweak: &[u8; 16], src: &[u8], dst: &mut [u8]) -> Result<(), Refused> {
        let len = c_int::try_from(src.len()).map_err(|_| Refused("length"))?;
        if dst.len() < src.len() {
            return Err(Refused("length"));
        }
        // SAFETY: `ctx` is a live, keyed context; null cipher and key keep
        // both; `tweak` is 16 readable bytes, the cipher's IV length; -1 keeps
        // the direction.
        let ok = unsafe {
            ffi::EVP_CipherInit_ex(
                self.ctx.as_ptr(),
                ptr::null(),
                ptr::null_mut(),
                ptr::null(),
                tweak.as_ptr(),
                -1,
            )
        };
        if ok != 1 {
            return Err(Refused("EVP_CipherInit_ex"));
        }
        let mut out_len: c_int = 0;
        // SAFETY: `src` has `len` readable bytes and `dst` at least `len`
        // writable ones (checked above); XTS writes exactly `len` bytes and
        // buffers nothing, and the two slices cannot overlap (& vs &mut).
        let ok = unsafe {
            ffi::EVP_CipherUpdate(
                self.ctx.as_ptr(),
                dst.as_mut_ptr(),
                &mut out_len,
                src.as_ptr(),
                len,
            )
        };
        if ok != 1 || out_len != len {
            return Err(Refused("EVP_CipherUpdate"));
        }
        Ok(())
    }
}

impl Drop for XtsCtx {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from EVP_CIPHER_CTX_new and is freed once, here.
        // EVP_CIPHER_CTX_free runs EVP_CIPHER_CTX_cleanup, which
        // frees the cipher data (the expanded keys) with OPENSSL_free, which in
        // AWS-LC zeroes an allocation before releasing it.
        unsafe { ffi::EVP_CIPHER_CTX_free(self.ctx.as_ptr()) }
    }
}
