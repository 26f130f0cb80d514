//! AES-256-XTS on x86-64 with VAES + AVX2 (and VPCLMULQDQ for the tweaks):
//! the AES round instructions on 256-bit registers, two blocks per
//! instruction, 16 blocks in flight. OpenSSL 3.0's XTS uses 128-bit AES-NI
//! only; this is the same construction as the Linux kernel's aes-xts-avx2.
//!
//! The only `unsafe` of the cipher lives here: loads and stores of vectors
//! from slices, and calls of `#[target_feature]` functions after the CPU
//! was checked ([`Xts::new`] returns `None` without the features, and an
//! [`Xts`] cannot exist otherwise).
//!
//! Round keys live in one boxed [`Schedule`]: mlocked, zeroized on drop,
//! never printed, and read straight from there (never copied to the stack).
//! Vector registers are cleared (`vzeroall`) after key expansion and after
//! each data unit; what the compiler spills to the stack (a few tweaks,
//! intermediate key-expansion values) is not wiped.

use std::arch::x86_64::*;
use std::fmt;

use zeroize::Zeroize;

use crate::sys;

/// Bytes processed per step of the main loop: 8 ymm registers of 2 blocks,
/// enough independent work to cover the VAES latency (4 cycles, 2 per cycle).
pub const GROUP: usize = 256;

/// AES-256 has 14 rounds, so 15 round keys.
const ROUNDS: usize = 15;

/// One round key repeated in both 128-bit halves, aligned for a volatile
/// 256-bit load.
#[derive(Clone, Copy, Zeroize)]
#[repr(C, align(32))]
struct Key256([u8; 32]);

/// The expanded keys of both XTS halves.
#[repr(C, align(64))]
struct Schedule {
    /// Key 1 encryption round keys.
    enc: [Key256; ROUNDS],
    /// Key 1 decryption round keys (equivalent inverse cipher), in the
    /// order they are used.
    dec: [Key256; ROUNDS],
    /// Key 2 encryption round keys (the tweak cipher).
    tweak: [[u8; 16]; ROUNDS],
}

/// AES-256-XTS with a precomputed key schedule; exists only on CPUs with
/// AES-NI, AVX2, VAES and VPCLMULQDQ.
pub struct Xts {
    keys: Box<Schedule>,
    locked: bool,
}

impl fmt::Debug for Xts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("vaes::Xts(<redacted>)")
    }
}

/// Whether this CPU can run [`Xts`].
pub fn supported() -> bool {
    is_x86_feature_detected!("aes")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("vaes")
        && is_x86_feature_detected!("vpclmulqdq")
}

impl Xts {
    /// Expands `key` (Key1 || Key2, 64 bytes); `None` if the CPU lacks the
    /// instructions.
    pub fn new(key: &[u8; 64]) -> Option<Xts> {
        if !supported() {
            return None;
        }
        let mut keys = Box::new(Schedule {
            enc: [Key256([0; 32]); ROUNDS],
            dec: [Key256([0; 32]); ROUNDS],
            tweak: [[0; 16]; ROUNDS],
        });
        // Lock before the schedule is written, so it never reaches swap.
        let locked = keys.regions().iter().all(|b| sys::mlock(b).is_ok());
        let (halves, _) = key.as_chunks::<32>();
        // SAFETY: `supported()` confirmed AES-NI on this CPU.
        unsafe { expand(&halves[0], &halves[1], &mut keys) };
        Some(Xts { keys, locked })
    }

    /// Encrypts (or decrypts) one data unit: `src` and `dst` are the same
    /// length, a multiple of [`GROUP`] bytes; `iv` is the 16-byte tweak
    /// before encryption (for plain64, the little-endian unit number).
    pub fn unit(&self, encrypt: bool, iv: &[u8; 16], src: &[u8], dst: &mut [u8]) {
        assert!(src.len() == dst.len());
        self.run(encrypt, iv, Some(src), dst);
    }

    /// [`Xts::unit`] in place: `buf` is replaced by its encryption (or decryption).
    pub fn unit_in_place(&self, encrypt: bool, iv: &[u8; 16], buf: &mut [u8]) {
        self.run(encrypt, iv, None, buf);
    }

    fn run(&self, encrypt: bool, iv: &[u8; 16], src: Option<&[u8]>, dst: &mut [u8]) {
        assert!(dst.len().is_multiple_of(GROUP));
        // SAFETY: an `Xts` exists only where `supported()` held (see `new`),
        // so every feature the callee is compiled for is present.
        unsafe {
            if encrypt {
                xts::<true>(&self.keys, iv, src, dst);
            } else {
                xts::<false>(&self.keys, iv, src, dst);
            }
        }
    }
}

impl Schedule {
    /// The key bytes, as three slices for mlock/munlock (not the padding).
    fn regions(&self) -> [&[u8]; 3] {
        [
            key_bytes(&self.enc),
            key_bytes(&self.dec),
            self.tweak.as_flattened(),
        ]
    }
}

/// The bytes of a round key array.
fn key_bytes(k: &[Key256; ROUNDS]) -> &[u8] {
    const { assert!(size_of::<Key256>() == 32) };
    // SAFETY: Key256 is repr(C) around [u8; 32] and its size equals its
    // alignment (asserted above), so the array is 32 * ROUNDS initialised
    // bytes with no padding, borrowed for as long as `k`.
    unsafe { std::slice::from_raw_parts(k.as_ptr().cast::<u8>(), size_of_val(k)) }
}

impl Drop for Xts {
    fn drop(&mut self) {
        self.keys.enc.zeroize();
        self.keys.dec.zeroize();
        self.keys.tweak.zeroize();
        if self.locked {
            for b in self.keys.regions() {
                sys::munlock(b);
            }
        }
    }
}

#[inline]
#[target_feature(enable = "sse2")]
fn load128(b: &[u8; 16]) -> __m128i {
    // SAFETY: `b` is 16 readable bytes; the unaligned load has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "sse2")]
fn store128(b: &mut [u8; 16], v: __m128i) {
    // SAFETY: `b` is 16 writable bytes; the unaligned store has no alignment requirement.
    unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), v) }
}

/// A round key, loaded anew at each use: a volatile load is neither hoisted
/// out of the loop (where the compiler would keep all 15 keys live and spill
/// them to the stack) nor merged, so each round is "load key, 8 x AES".
#[inline]
#[target_feature(enable = "avx")]
fn round_key(k: &Key256) -> __m256i {
    // SAFETY: `k` is a valid, 32-byte aligned (repr align(32)) reference to 32 bytes.
    unsafe { std::ptr::read_volatile(std::ptr::from_ref(k).cast::<__m256i>()) }
}

#[inline]
#[target_feature(enable = "avx")]
fn load256(b: &[u8]) -> __m256i {
    assert!(b.len() >= 32);
    // SAFETY: `b` has at least 32 readable bytes (checked above); unaligned load.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx")]
fn store256(b: &mut [u8], v: __m256i) {
    assert!(b.len() >= 32);
    // SAFETY: `b` has at least 32 writable bytes (checked above); unaligned store.
    unsafe { _mm256_storeu_si256(b.as_mut_ptr().cast(), v) }
}

/// The AES-256 key expansion step for even round keys (FIPS-197 with
/// RotWord/SubWord/Rcon from `aeskeygenassist`), after Intel's AES-NI paper.
#[inline]
#[target_feature(enable = "aes")]
fn next_even(prev_even: __m128i, assist: __m128i) -> __m128i {
    let a = _mm_shuffle_epi32::<0xff>(assist);
    _mm_xor_si128(prefix_xor(prev_even), a)
}

/// The odd-round-key step of AES-256 (SubWord without RotWord or Rcon).
#[inline]
#[target_feature(enable = "aes")]
fn next_odd(even: __m128i, prev_odd: __m128i) -> __m128i {
    let a = _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(even));
    _mm_xor_si128(prefix_xor(prev_odd), a)
}

/// Each 32-bit word XORed with all the words below it (w0, w0^w1,
/// w0^w1^w2, ...): the chaining both key-expansion steps share.
#[inline]
#[target_feature(enable = "aes")]
fn prefix_xor(mut t: __m128i) -> __m128i {
    let mut s = _mm_slli_si128::<4>(t);
    t = _mm_xor_si128(t, s);
    s = _mm_slli_si128::<4>(s);
    t = _mm_xor_si128(t, s);
    s = _mm_slli_si128::<4>(s);
    _mm_xor_si128(t, s)
}

/// AES-256 encryption round keys of `key` (32 bytes) into `out`.
#[target_feature(enable = "aes")]
fn expand_one(key: &[u8; 32], out: &mut [[u8; 16]; ROUNDS]) {
    let (halves, _) = key.as_chunks::<16>();
    let mut even = load128(&halves[0]);
    let mut odd = load128(&halves[1]);
    store128(&mut out[0], even);
    store128(&mut out[1], odd);
    macro_rules! step {
        ($i:expr, $rcon:expr) => {
            even = next_even(even, _mm_aeskeygenassist_si128::<$rcon>(odd));
            store128(&mut out[$i], even);
            odd = next_odd(even, odd);
            store128(&mut out[$i + 1], odd);
        };
    }
    step!(2, 0x01);
    step!(4, 0x02);
    step!(6, 0x04);
    step!(8, 0x08);
    step!(10, 0x10);
    step!(12, 0x20);
    // The last round key is an even one only.
    even = next_even(even, _mm_aeskeygenassist_si128::<0x40>(odd));
    store128(&mut out[14], even);
}

/// Fills the whole schedule from Key1 (`k1`) and Key2 (`k2`).
#[target_feature(enable = "aes,avx")]
fn expand(k1: &[u8; 32], k2: &[u8; 32], s: &mut Schedule) {
    expand_one(k2, &mut s.tweak);
    let mut rk = [[0u8; 16]; ROUNDS];
    expand_one(k1, &mut rk);
    for i in 0..ROUNDS {
        // Decryption uses the round keys in reverse, the middle ones through
        // InvMixColumns (the "equivalent inverse cipher" of FIPS-197 5.3.5).
        let d = if i == 0 || i == ROUNDS - 1 {
            rk[ROUNDS - 1 - i]
        } else {
            let mut b = [0u8; 16];
            store128(&mut b, _mm_aesimc_si128(load128(&rk[ROUNDS - 1 - i])));
            b
        };
        s.enc[i].0[..16].copy_from_slice(&rk[i]);
        s.enc[i].0[16..].copy_from_slice(&rk[i]);
        s.dec[i].0[..16].copy_from_slice(&d);
        s.dec[i].0[16..].copy_from_slice(&d);
    }
    rk.zeroize();
    // Leave no round key in the vector registers.
    _mm256_zeroall();
}

/// Multiplies both 128-bit tweaks in `t` by x^N in GF(2^128) mod
/// x^128 + x^7 + x^2 + x + 1 (IEEE 1619 byte order: little-endian),
/// without branches: shift each 64-bit half left by N, carry the low half's
/// top N bits into the high half, and fold the high half's top N bits back
/// in as a carry-less product with 0x87 (at most N + 7 <= 64 bits, so it
/// stays in the low half). `R` must be 64 - N.
#[inline]
#[target_feature(enable = "avx2,vpclmulqdq")]
fn mul_xn<const N: i32, const R: i32>(t: __m256i) -> __m256i {
    const { assert!(N >= 1 && N <= 57 && N + R == 64) };
    let poly = _mm256_set_epi64x(0, 0x87, 0, 0x87);
    let top = _mm256_srli_epi64::<R>(t);
    // imm 0x01: the high 64 bits of each lane of `top` times the low 64 bits of `poly`.
    let fold = _mm256_clmulepi64_epi128::<0x01>(top, poly);
    let carry = _mm256_bslli_epi128::<8>(top);
    _mm256_xor_si256(_mm256_xor_si256(_mm256_slli_epi64::<N>(t), carry), fold)
}

/// One step of the main loop: 16 blocks further.
#[inline]
#[target_feature(enable = "avx2,vpclmulqdq")]
fn mul_x16(t: __m256i) -> __m256i {
    mul_xn::<16, 48>(t)
}

/// XTS over one data unit, `ENC` choosing the direction; reads `src`, or
/// `dst` itself when `src` is `None` (each group is loaded into registers
/// before any of it is stored, so in place is safe).
#[target_feature(enable = "aes,avx2,vaes,vpclmulqdq")]
fn xts<const ENC: bool>(s: &Schedule, iv: &[u8; 16], src: Option<&[u8]>, dst: &mut [u8]) {
    // T = E_K2(iv), with 128-bit AES-NI (one block per unit).
    let mut t = _mm_xor_si128(load128(iv), load128(&s.tweak[0]));
    for k in &s.tweak[1..ROUNDS - 1] {
        t = _mm_aesenc_si128(t, load128(k));
    }
    t = _mm_aesenclast_si128(t, load128(&s.tweak[ROUNDS - 1]));

    // Tweaks of the first 16 blocks: register i holds blocks 2i and 2i+1,
    // i.e. (T, T x) times x^(2i), each computed directly (no serial chain);
    // every group after that is the previous one times x^16.
    let both = _mm256_broadcastsi128_si256(t);
    let pair = _mm256_blend_epi32::<0b1111_0000>(both, mul_xn::<1, 63>(both));
    let mut tw: [__m256i; 8] = [
        pair,
        mul_xn::<2, 62>(pair),
        mul_xn::<4, 60>(pair),
        mul_xn::<6, 58>(pair),
        mul_xn::<8, 56>(pair),
        mul_xn::<10, 54>(pair),
        mul_xn::<12, 52>(pair),
        mul_xn::<14, 50>(pair),
    ];

    let keys = if ENC { &s.enc } else { &s.dec };
    for g in (0..dst.len() / GROUP).map(|g| g * GROUP) {
        let input = match src {
            Some(src) => &src[g..g + GROUP],
            None => &dst[g..g + GROUP],
        };
        let k0 = round_key(&keys[0]);
        let mut v: [__m256i; 8] = std::array::from_fn(|i| {
            _mm256_xor_si256(_mm256_xor_si256(load256(&input[32 * i..]), tw[i]), k0)
        });
        let dst = &mut dst[g..g + GROUP];
        for k in &keys[1..ROUNDS - 1] {
            let k = round_key(k);
            for b in &mut v {
                *b = if ENC {
                    _mm256_aesenc_epi128(*b, k)
                } else {
                    _mm256_aesdec_epi128(*b, k)
                };
            }
        }
        let kl = round_key(&keys[ROUNDS - 1]);
        for (i, b) in v.iter().enumerate() {
            let c = if ENC {
                _mm256_aesenclast_epi128(*b, kl)
            } else {
                _mm256_aesdeclast_epi128(*b, kl)
            };
            store256(&mut dst[32 * i..], _mm256_xor_si256(c, tw[i]));
        }
        for t in &mut tw {
            *t = mul_x16(*t);
        }
    }
    // Leave no round key or tweak in the vector registers (~1% per sector).
    _mm256_zeroall();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Whether this CPU runs the engine; where it does not, the fallback
    /// is checked instead (see `cipher::tests::engines_here`).
    fn require_cpu() -> bool {
        crate::cipher::tests::engines_here().contains(&crate::cipher::Engine::Vaes)
    }

    /// IEEE Std 1619-2007 Annex B vectors 10-14 (XTS-AES-256, 512-byte units),
    /// from tests/data (checked there against Python `cryptography` too).
    #[test]
    fn ieee1619_vectors_10_to_14() {
        if !require_cpu() {
            return;
        }
        let text = include_str!("../tests/data/ieee1619_aes256_xts.txt");
        let (mut key, mut ptx, mut unit) = (Vec::new(), Vec::new(), 0u128);
        let mut checked = 0;
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (name, value) = line.split_once(" = ").unwrap();
            match name {
                "KEY" => key = hex(value),
                "PTX" => ptx = hex(value),
                "DataUnit" => unit = u128::from_str_radix(value, 16).unwrap(),
                "CTX" => {
                    let ctx = hex(value);
                    let x = Xts::new(key.as_slice().try_into().unwrap()).unwrap();
                    let iv = unit.to_le_bytes();
                    let mut out = vec![0u8; ptx.len()];
                    x.unit(true, &iv, &ptx, &mut out);
                    assert_eq!(out, ctx, "encrypt, data unit {unit:x}");
                    x.unit(false, &iv, &ctx, &mut out);
                    assert_eq!(out, ptx, "decrypt, data unit {unit:x}");
                    checked += 1;
                }
                other => panic!("unknown field {other}"),
            }
        }
        assert_eq!(checked, 5);
    }

    /// The reference: multiplication by x (alpha) of one tweak as a
    /// little-endian integer, as IEEE 1619 defines it.
    fn mul_x(t: u128) -> u128 {
        (t << 1) ^ ((t >> 127) * 0x87)
    }

    #[test]
    fn vector_tweak_steps_match_scalar_doublings() {
        if !require_cpu() {
            return;
        }
        let mut seed = [0u8; 32 * 64];
        openssl::rand::rand_bytes(&mut seed).unwrap();
        // Include the edge values: top bits set (reduction), all ones, zero.
        seed[..32].fill(0xff);
        seed[32..64].fill(0);
        seed[64 + 15] = 0x80;
        seed[96 + 7] = 0x80;
        for c in seed.chunks_exact(32) {
            // SAFETY: require_cpu() checked AVX, AVX2 and VPCLMULQDQ.
            let got: Vec<(u32, __m256i)> = unsafe {
                let v = load256(c);
                vec![
                    (1, mul_xn::<1, 63>(v)),
                    (2, mul_xn::<2, 62>(v)),
                    (8, mul_xn::<8, 56>(v)),
                    (14, mul_xn::<14, 50>(v)),
                    (16, mul_x16(v)),
                ]
            };
            for (n, r) in got {
                let mut out = [0u8; 32];
                // SAFETY: require_cpu() checked AVX.
                unsafe { store256(&mut out, r) };
                for lane in 0..2 {
                    let mut t =
                        u128::from_le_bytes(c[16 * lane..16 * lane + 16].try_into().unwrap());
                    for _ in 0..n {
                        t = mul_x(t);
                    }
                    assert_eq!(out[16 * lane..16 * lane + 16], t.to_le_bytes(), "x^{n}");
                }
            }
        }
    }

    #[test]
    fn schedule_is_locked_and_redacted() {
        if !require_cpu() {
            return;
        }
        let mut key = [0u8; 64];
        key[0] = 0xab;
        let x = Xts::new(&key).unwrap();
        assert!(x.locked, "mlock of the key schedule failed");
        let shown = format!("{x:?}");
        assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
        // AES-256 round key 0 is the key itself.
        assert_eq!(x.keys.enc[0].0[0], 0xab);
        assert_eq!(x.keys.enc[0].0[16], 0xab);
        assert_eq!(x.keys.dec[ROUNDS - 1].0[0], 0xab);
    }
}
