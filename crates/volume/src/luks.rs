//! The LUKS2 container, through libcryptsetup: format a sparse file, open it
//! (check the header, unlock keyslot 0 into a [`VolumeKey`]), read token 0.
//!
//! libcryptsetup needs no device-mapper for any of this: keyslot material is
//! encrypted through the kernel crypto API (AF_ALG), and
//! `crypt_volume_key_get` never activates a mapping.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use libcryptsetup_rs::consts::flags::{CryptPbkdf, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{CryptKdf, EncryptionFormat, KeyslotsSize, MetadataSize};
use libcryptsetup_rs::{
    CryptDevice, CryptInit, CryptParamsLuks2, CryptParamsLuks2Ref, CryptPbkdfType, Either,
    LibcryptErr, TokenInput,
};

use crate::cipher::SECTOR;
use crate::key::{Passphrase, VOLUME_KEY_LEN, VolumeKey};
use crate::size::{SizeError, check_size};

/// The token type ferry writes into token 0.
pub const TOKEN_TYPE: &str = "ferry-kms";
/// PBKDF2 iterations for keyslot 0 (the LUKS2 minimum; the passphrase is 512 random bits).
pub const PBKDF2_ITERATIONS: u32 = 1000;
/// Bytes before the data segment in ferry's layout: 2 x 16 KiB header areas
/// plus a 992 KiB keyslots area (room for three 512-bit PBKDF2 keyslots of
/// 252 KiB each). cryptsetup's default is a 16 MiB keyslots area, whose random
/// wipe alone takes most of a 300 ms budget; 1 MiB keeps the data aligned.
pub const DATA_OFFSET: u64 = 1 << 20;
const METADATA_AREA: u64 = 16 << 10;
/// Bytes shred overwrites when the header is too damaged to say where data
/// starts: covers cryptsetup's default layout (16 MiB) as well as ours.
pub const WIPE_FALLBACK: u64 = 16 << 20;

const LUKS_MAGIC: &[u8; 6] = b"LUKS\xba\xbe";
const LUKS_MAGIC_SECONDARY: &[u8; 6] = b"SKUL\xba\xbe";
/// Where a LUKS2 secondary header may start (its primary header size).
const SECONDARY_OFFSETS: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];

/// Errors formatting a volume.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Size out of range.
    #[error(transparent)]
    Size(#[from] SizeError),
    /// The image path already exists (format never overwrites).
    #[error("{0} already exists (format never overwrites a file)")]
    Exists(String),
    /// Creating the sparse file failed.
    #[error("cannot create image: {0}")]
    Create(std::io::Error),
    /// The token is not a JSON object.
    #[error("token must be a JSON object")]
    Token,
    /// libcryptsetup failed.
    #[error("libcryptsetup {step}: {source}")]
    Crypt {
        /// What was being done.
        step: &'static str,
        /// The library's error.
        source: LibcryptErr,
    },
}

/// Errors opening (unlocking) a volume; each leaves the image untouched.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The image could not be read.
    #[error("cannot read image: {0}")]
    Io(#[from] std::io::Error),
    /// No LUKS2 header at all.
    #[error("not a LUKS2 volume")]
    NotLuks2,
    /// A LUKS1 header.
    #[error("not a LUKS2 volume (LUKS version {0})")]
    OtherVersion(u16),
    /// The header is there but does not load.
    #[error("corrupt LUKS2 header")]
    CorruptHeader,
    /// The header describes something other than aes-xts-plain64 / 512 bits / 4096-byte sectors.
    #[error(
        "unsupported cipher {0} (ferry volumes are aes-xts-plain64, 512-bit key, 4096-byte sectors)"
    )]
    UnsupportedCipher(String),
    /// No keyslot opens with this passphrase.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The data segment is empty or not whole sectors.
    #[error("data segment of {0} bytes is not a whole number of 4096-byte sectors")]
    BadDataSize(u64),
    /// Another libcryptsetup failure.
    #[error("libcryptsetup {step}: {source}")]
    Crypt {
        /// What was being done.
        step: &'static str,
        /// The library's error.
        source: LibcryptErr,
    },
}

/// What formatting needs.
#[derive(Debug)]
pub struct FormatOptions<'a> {
    /// Size of the data segment (what ext4 sees), 1..=200 GiB.
    pub size: u64,
    /// Passphrase for keyslot 0.
    pub passphrase: &'a Passphrase,
    /// Optional token 0 (`type` and `keyslots` are filled in by ferry).
    pub token: Option<&'a serde_json::Value>,
}

/// An unlocked volume.
#[derive(Debug)]
pub struct Opened {
    /// The volume key.
    pub key: VolumeKey,
    /// Byte offset of the data segment in the image.
    pub data_offset: u64,
    /// Bytes in the data segment.
    pub data_size: u64,
}

/// libcryptsetup's default logger prints to stdout and stderr (e.g. a warning
/// about the small keyslots area); ferry reports its own one-line errors.
///
/// # Safety
/// Never dereferences its arguments, so any values are fine.
unsafe extern "C" fn discard_log(
    _level: std::ffi::c_int,
    _msg: *const std::ffi::c_char,
    _usrptr: *mut std::ffi::c_void,
) {
}

fn quiet_libcryptsetup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| libcryptsetup_rs::set_log_callback::<()>(Some(discard_log), None));
}

/// Creates `image` as a sparse LUKS2 container with a `size`-byte data segment.
/// On failure the half-made file is removed.
pub fn format(image: &Path, opts: &FormatOptions<'_>) -> Result<(), FormatError> {
    check_size(opts.size)?;
    let token = match opts.token {
        None => None,
        Some(serde_json::Value::Object(m)) => {
            let mut m = m.clone();
            m.insert("type".into(), TOKEN_TYPE.into());
            m.insert("keyslots".into(), serde_json::json!(["0"]));
            Some(serde_json::Value::Object(m))
        }
        Some(_) => return Err(FormatError::Token),
    };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(image)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                FormatError::Exists(image.display().to_string())
            } else {
                FormatError::Create(e)
            }
        })?;
    let r = file
        .set_len(DATA_OFFSET + opts.size)
        .map_err(FormatError::Create)
        .and_then(|()| format_header(image, opts.passphrase, token.as_ref()))
        .and_then(|()| file.sync_all().map_err(FormatError::Create));
    if r.is_err() {
        let _ = std::fs::remove_file(image);
    }
    r
}

fn format_header(
    image: &Path,
    passphrase: &Passphrase,
    token: Option<&serde_json::Value>,
) -> Result<(), FormatError> {
    quiet_libcryptsetup();
    let crypt = |step| move |source| FormatError::Crypt { step, source };
    let mut dev = CryptInit::init(image).map_err(crypt("init"))?;
    let pbkdf = CryptPbkdfType {
        type_: CryptKdf::Pbkdf2,
        hash: Some("sha256".into()),
        time_ms: 0,
        iterations: PBKDF2_ITERATIONS,
        max_memory_kb: 0,
        parallel_threads: 0,
        flags: CryptPbkdf::NO_BENCHMARK,
    };
    dev.settings_handle()
        .set_pbkdf_type(&pbkdf)
        .map_err(crypt("pbkdf"))?;
    let keyslots =
        KeyslotsSize::try_from(DATA_OFFSET - 2 * METADATA_AREA).map_err(crypt("keyslots size"))?;
    dev.settings_handle()
        .set_metadata_size(MetadataSize::Kb16, keyslots)
        .map_err(crypt("metadata size"))?;
    let params = CryptParamsLuks2 {
        pbkdf: None,
        integrity: None,
        integrity_params: None,
        data_alignment: 0,
        data_device: None,
        sector_size: SECTOR as u32,
        label: None,
        subsystem: None,
    };
    let mut params_ref: CryptParamsLuks2Ref<'_> = (&params).try_into().map_err(crypt("params"))?;
    dev.context_handle()
        .format(
            EncryptionFormat::Luks2,
            ("aes", "xts-plain64"),
            None,
            Either::Right(VOLUME_KEY_LEN),
            Some(&mut params_ref),
        )
        .map_err(crypt("format"))?;
    dev.keyslot_handle()
        .add_by_key(Some(0), None, passphrase.expose(), CryptVolumeKey::empty())
        .map_err(crypt("add keyslot 0"))?;
    if let Some(t) = token {
        dev.token_handle()
            .json_set(TokenInput::ReplaceToken(0, t))
            .map_err(crypt("token 0"))?;
    }
    Ok(())
}

/// What the first bytes of a file say about it.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderKind {
    /// A LUKS header (primary or secondary) of this version.
    Luks(u16),
    /// No LUKS magic anywhere.
    None,
}

/// Looks for LUKS magic in the primary and the possible secondary header places.
pub fn header_kind(file: &File) -> std::io::Result<HeaderKind> {
    let mut buf = [0u8; 8];
    let len = file.metadata()?.len();
    if len >= 8 {
        file.read_exact_at(&mut buf, 0)?;
        if &buf[..6] == LUKS_MAGIC {
            return Ok(HeaderKind::Luks(u16::from_be_bytes([buf[6], buf[7]])));
        }
    }
    for off in SECONDARY_OFFSETS {
        if off + 8 <= len {
            file.read_exact_at(&mut buf, off)?;
            if &buf[..6] == LUKS_MAGIC_SECONDARY {
                return Ok(HeaderKind::Luks(u16::from_be_bytes([buf[6], buf[7]])));
            }
        }
    }
    Ok(HeaderKind::None)
}

/// Loads the LUKS2 header read-only, with one-line errors for the bad cases.
fn load(image: &Path) -> Result<CryptDevice, OpenError> {
    let file = File::open(image)?;
    match header_kind(&file)? {
        HeaderKind::None => return Err(OpenError::NotLuks2),
        HeaderKind::Luks(2) => {}
        HeaderKind::Luks(v) => return Err(OpenError::OtherVersion(v)),
    }
    drop(file);
    quiet_libcryptsetup();
    let mut dev = CryptInit::init(image).map_err(|source| OpenError::Crypt {
        step: "init",
        source,
    })?;
    dev.context_handle()
        .load::<CryptParamsLuks2Ref<'_>>(Some(EncryptionFormat::Luks2), None)
        .map_err(|_| OpenError::CorruptHeader)?;
    Ok(dev)
}

/// Checks the header and unlocks the volume key with `passphrase`.
pub fn open(image: &Path, passphrase: &Passphrase) -> Result<Opened, OpenError> {
    let mut dev = load(image)?;
    let cipher = {
        let mut st = dev.status_handle();
        let c = st.get_cipher().unwrap_or_default();
        let m = st.get_cipher_mode().unwrap_or_default();
        format!("{c}-{m}")
    };
    let key_size = dev.status_handle().get_volume_key_size();
    let sector = libcryptsetup_rs::get_sector_size(Some(&mut dev));
    if cipher != "aes-xts-plain64" || key_size != VOLUME_KEY_LEN as i32 || sector != SECTOR as i32 {
        return Err(OpenError::UnsupportedCipher(format!(
            "{cipher}, {} bits, {sector}-byte sectors",
            key_size * 8
        )));
    }
    let mut key = VolumeKey::zeroed();
    match dev
        .volume_key_handle()
        .get(None, key.expose_mut(), Some(passphrase.expose()))
    {
        Ok(_) => {}
        Err(LibcryptErr::IOError(e)) if e.raw_os_error() == Some(libc::EPERM) => {
            return Err(OpenError::WrongPassphrase);
        }
        Err(source) => {
            return Err(OpenError::Crypt {
                step: "volume key",
                source,
            });
        }
    }
    let data_offset = dev.status_handle().get_data_offset() * 512;
    let len = std::fs::metadata(image)?.len();
    let data_size = len.saturating_sub(data_offset);
    if data_size == 0 || data_size % SECTOR as u64 != 0 {
        return Err(OpenError::BadDataSize(data_size));
    }
    Ok(Opened {
        key,
        data_offset,
        data_size,
    })
}

/// Token 0 of the volume, if there is one (no passphrase needed).
pub fn read_token(image: &Path) -> Result<Option<serde_json::Value>, OpenError> {
    let mut dev = load(image)?;
    Ok(dev.token_handle().json_get(0).ok())
}

/// Byte offset of the data segment, from the header (no passphrase needed).
pub fn data_offset(image: &Path) -> Result<u64, OpenError> {
    let mut dev = load(image)?;
    Ok(dev.status_handle().get_data_offset() * 512)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pass(b: u8) -> Passphrase {
        Passphrase::new(vec![b; 64]).unwrap()
    }

    #[test]
    fn format_then_open_with_token() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("v.img");
        let token = serde_json::json!({"keyArn": "arn:aws:kms:r:1:key/k", "wrappedKey": "AQID"});
        let p = pass(1);
        format(
            &img,
            &FormatOptions {
                size: crate::size::GIB,
                passphrase: &p,
                token: Some(&token),
            },
        )
        .unwrap();
        assert_eq!(
            std::fs::metadata(&img).unwrap().len(),
            DATA_OFFSET + crate::size::GIB
        );
        let opened = open(&img, &p).unwrap();
        assert_eq!(opened.data_offset, DATA_OFFSET);
        assert_eq!(opened.data_size, crate::size::GIB);
        assert!(opened.key.expose().iter().any(|&b| b != 0));
        let t = read_token(&img).unwrap().unwrap();
        assert_eq!(t["type"], TOKEN_TYPE);
        assert_eq!(t["keyArn"], "arn:aws:kms:r:1:key/k");
        assert_eq!(t["keyslots"], serde_json::json!(["0"]));
        assert!(matches!(
            open(&img, &pass(2)),
            Err(OpenError::WrongPassphrase)
        ));
        // Format never overwrites.
        let again = format(
            &img,
            &FormatOptions {
                size: crate::size::GIB,
                passphrase: &p,
                token: None,
            },
        );
        assert!(matches!(again, Err(FormatError::Exists(_))));
    }

    #[test]
    fn rejects_non_object_token_and_bad_size_without_creating() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("v.img");
        let p = pass(1);
        let t = serde_json::json!([1, 2]);
        let r = format(
            &img,
            &FormatOptions {
                size: crate::size::GIB,
                passphrase: &p,
                token: Some(&t),
            },
        );
        assert!(matches!(r, Err(FormatError::Token)));
        let r = format(
            &img,
            &FormatOptions {
                size: 0,
                passphrase: &p,
                token: None,
            },
        );
        assert!(matches!(r, Err(FormatError::Size(_))));
        assert!(!img.exists());
    }

    #[test]
    fn not_luks() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("junk");
        std::fs::write(&img, vec![7u8; 1 << 20]).unwrap();
        assert!(matches!(open(&img, &pass(1)), Err(OpenError::NotLuks2)));
    }
}
