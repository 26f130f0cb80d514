//! The credentials file: AWS shared-credentials format (profile `default`),
//! how the administrator's access key is handed to clients (the AWS CLI,
//! boto3) and read back by the server's credential table.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::Rng;
use zeroize::Zeroizing;

/// Errors reading or writing a credentials file.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A file system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file lacks the `default` profile's key.
    #[error("{0}")]
    Incomplete(String),
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> CredentialsError + 'a {
    move |source| CredentialsError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// A new access key id (`AKIA` and 16 base32 characters).
pub fn new_access_key_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut r = rand::rng();
    let mut s = String::from("AKIA");
    for _ in 0..16 {
        s.push(char::from(ALPHABET[r.random_range(0..ALPHABET.len())]));
    }
    s
}

/// A new 40-character secret access key.
pub fn new_secret() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    // ThreadRng is a CSPRNG seeded from the OS.
    let mut r = rand::rng();
    let mut s = Zeroizing::new(String::with_capacity(40));
    for _ in 0..40 {
        s.push(char::from(ALPHABET[r.random_range(0..ALPHABET.len())]));
    }
    s
}

/// Writes a shared-credentials file (profile `default`, mode 0600)
/// atomically.
pub fn write_credentials(path: &Path, key_id: &str, secret: &str) -> Result<(), CredentialsError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("creating", &tmp))?;
    let text = Zeroizing::new(format!(
        "[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    ));
    f.write_all(text.as_bytes()).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(io("renaming", path))?;
    Ok(())
}

/// Reads the `default` profile's key id and secret from a shared-credentials
/// file.
pub fn read_credentials(path: &Path) -> Result<(String, Zeroizing<String>), CredentialsError> {
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io("reading", path))?);
    let (mut key_id, mut secret) = (None, None);
    let mut in_default = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_default = line == "[default]";
        } else if in_default && let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => key_id = Some(v.trim().to_owned()),
                "aws_secret_access_key" => secret = Some(Zeroizing::new(v.trim().to_owned())),
                _ => {}
            }
        }
    }
    match (key_id, secret) {
        (Some(k), Some(s)) => Ok((k, s)),
        _ => Err(CredentialsError::Incomplete(format!(
            "{} has no [default] aws_access_key_id and aws_secret_access_key",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_credentials_read_back_and_stay_private() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("credentials");
        let (id, secret) = (new_access_key_id(), new_secret());
        assert!(id.starts_with("AKIA") && id.len() == 20);
        write_credentials(&path, &id, &secret).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (k, s) = read_credentials(&path).unwrap();
        assert_eq!((k, &*s), (id, &*secret));
        fs::write(&path, "[other]\naws_access_key_id = x\n").unwrap();
        assert!(matches!(
            read_credentials(&path),
            Err(CredentialsError::Incomplete(_))
        ));
    }
}
