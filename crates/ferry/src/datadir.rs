//! The server's data directory (`--data-dir`): the composition root's
//! bootstrap.
//!
//! First start: creates the directory (mode 0700), the state store
//! (`state.redb`), the 12-digit account id (the one `--account-id` names,
//! else a random one) and the administrator's access key, written to `credentials` (AWS shared-credentials format,
//! profile `default`, mode 0600). Later starts reuse all of it. The identity
//! (account id, administrator key id) is a record in the store; the secret
//! lives only in the credentials file, which is what clients are given.

use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_api::credentials::{
    CredentialsError, new_access_key_id, new_secret, read_credentials, write_credentials,
};
use ferry_store::{Store, StoreError};
use rand::Rng;
use zeroize::Zeroizing;

/// Errors opening or initializing the data directory.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
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
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The credentials file does not hold the administrator key.
    #[error("{0}")]
    Credentials(String),
    /// The credentials file could not be read or written.
    #[error(transparent)]
    CredentialsFile(#[from] CredentialsError),
    /// `--account-id` names another account than the data directory's.
    #[error(
        "data directory {path} belongs to account {existing}; --account-id {requested} cannot change it \
         (the account id is chosen when a data directory is first created)"
    )]
    AccountMismatch {
        /// The data directory.
        path: PathBuf,
        /// Its account id.
        existing: String,
        /// The one asked for.
        requested: String,
    },
    /// `--account-id` is not 12 digits.
    #[error("--account-id must be 12 digits, not {0:?}")]
    BadAccountId(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DataDirError + 'a {
    move |source| DataDirError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The store table and key of the server identity record.
const TABLE: &str = "server";
const IDENTITY: &str = "identity";

#[derive(serde::Serialize, serde::Deserialize)]
struct Identity {
    account_id: String,
    admin_access_key_id: String,
}

/// An opened data directory.
pub struct DataDir {
    /// The directory.
    pub path: PathBuf,
    /// The account id (12 digits).
    pub account_id: String,
    /// The administrator's access key id.
    pub admin_access_key_id: String,
    /// The administrator's secret access key.
    pub admin_secret: Zeroizing<String>,
    /// The state store.
    pub store: Arc<Store>,
}

impl DataDir {
    /// Opens `path`, initializing it on first start with account
    /// `account_id` (random if `None`). An existing directory keeps its
    /// account: naming another one is an error.
    pub fn open_or_init(path: &Path, account_id: Option<&str>) -> Result<Self, DataDirError> {
        if let Some(a) = account_id
            && !valid_account_id(a)
        {
            return Err(DataDirError::BadAccountId(a.to_owned()));
        }
        if !path.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io("creating data directory", path))?;
        }
        let meta = fs::metadata(path).map_err(io("reading data directory", path))?;
        if !meta.is_dir() {
            return Err(DataDirError::Credentials(format!(
                "data directory {} is not a directory",
                path.display()
            )));
        }
        // Key material and credentials live here: nobody else may look in.
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(io("restricting data directory", path))?;
        let store = Arc::new(Store::open(&path.join("state.redb"))?);
        let creds_path = path.join("credentials");
        let (identity, secret) = match store.get::<Identity>(TABLE, IDENTITY)? {
            Some(id) => {
                if let Some(requested) = account_id
                    && requested != id.account_id
                {
                    return Err(DataDirError::AccountMismatch {
                        path: path.to_owned(),
                        existing: id.account_id,
                        requested: requested.to_owned(),
                    });
                }
                let (key_id, secret) = read_credentials(&creds_path)?;
                if key_id != id.admin_access_key_id {
                    return Err(DataDirError::Credentials(format!(
                        "{} holds access key {key_id}, but this data directory's administrator key is {}",
                        creds_path.display(),
                        id.admin_access_key_id
                    )));
                }
                (id, secret)
            }
            None => {
                let id = Identity {
                    account_id: account_id.map_or_else(new_account_id, str::to_owned),
                    admin_access_key_id: new_access_key_id(),
                };
                let secret = new_secret();
                write_credentials(&creds_path, &id.admin_access_key_id, &secret)?;
                store.put(TABLE, IDENTITY, &id)?;
                (id, secret)
            }
        };
        Ok(Self {
            path: path.to_owned(),
            account_id: identity.account_id,
            admin_access_key_id: identity.admin_access_key_id,
            admin_secret: secret,
            store,
        })
    }
}

/// An AWS account id: exactly 12 digits (leading zeros allowed, as in the
/// source document's `012345678910`).
pub fn valid_account_id(a: &str) -> bool {
    a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit())
}

fn new_account_id() -> String {
    let mut r = rand::rng();
    // 12 digits, no leading zero (some tools treat account ids as numbers).
    let mut s = String::with_capacity(12);
    s.push(char::from(b'1' + r.random_range(0..9u8)));
    for _ in 0..11 {
        s.push(char::from(b'0' + r.random_range(0..10u8)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_initializes_and_later_starts_reuse() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let (account, key) = {
            let d = DataDir::open_or_init(&dir, None).unwrap();
            assert_eq!(d.account_id.len(), 12);
            assert!(d.account_id.bytes().all(|b| b.is_ascii_digit()));
            assert!(d.admin_access_key_id.starts_with("AKIA") && d.admin_access_key_id.len() == 20);
            let mode = fs::metadata(d.path.join("credentials"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            assert_eq!(
                fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
                0o700
            );
            let (k, s) = read_credentials(&d.path.join("credentials")).unwrap();
            assert_eq!(k, d.admin_access_key_id);
            assert_eq!(*s, *d.admin_secret);
            (d.account_id.clone(), d.admin_access_key_id.clone())
        };
        let d = DataDir::open_or_init(&dir, None).unwrap();
        assert_eq!(d.account_id, account);
        assert_eq!(d.admin_access_key_id, key);
    }

    #[test]
    fn a_credentials_file_for_another_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DataDir::open_or_init(tmp.path(), None).unwrap();
        let path = d.path.join("credentials");
        drop(d);
        fs::write(
            &path,
            "[default]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = x\n",
        )
        .unwrap();
        let Err(e) = DataDir::open_or_init(tmp.path(), None) else {
            panic!("accepted a foreign credentials file")
        };
        assert!(e.to_string().contains("AKIAOTHER"), "{e}");
    }

    #[test]
    fn the_account_id_is_chosen_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let d = DataDir::open_or_init(&dir, Some("012345678910")).unwrap();
        assert_eq!(d.account_id, "012345678910");
        drop(d);
        // The same id, or none, reopens it; another is refused.
        assert_eq!(
            DataDir::open_or_init(&dir, None).unwrap().account_id,
            "012345678910"
        );
        assert!(DataDir::open_or_init(&dir, Some("012345678910")).is_ok());
        let Err(e) = DataDir::open_or_init(&dir, Some("111122223333")) else {
            panic!("changed the account id")
        };
        let msg = e.to_string();
        assert!(
            msg.contains("belongs to account 012345678910") && msg.contains("111122223333"),
            "{msg}"
        );
        assert!(matches!(
            DataDir::open_or_init(&tmp.path().join("e"), Some("12345")),
            Err(DataDirError::BadAccountId(_))
        ));
        assert!(!tmp.path().join("e").exists());
    }
}
