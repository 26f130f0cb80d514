//! The server's data directory (`--data-dir`): the composition root's
//! bootstrap.
//!
//! First start: creates the directory (mode 0700), the state store
//! (`state.redb`), the 12-digit account id (the one `--account-id` names,
//! else a random one) and the administrator's access key, written to `credentials` (AWS shared-credentials format,
//! profile `default`, mode 0600). Later starts reuse all of it. The identity
//! (account id, administrator key id) is a record in the store; the secret
//! lives only in the credentials file, which is what clients are given.
//!
//! With a shared store (`--store postgresql://...`, [`DataDir::open_shared`])
//! the store is not in the directory and every replica must hand out the
//! same administrator key, so the identity record also holds the secret,
//! sealed (AES-256-GCM) under the root key given by `--root-key`: a replica
//! starting with an empty directory unseals it and writes the same
//! `credentials` file. A root key that does not open it is refused before
//! anything is written. Two replicas starting at once create one identity:
//! the record is created in one write transaction that checks first.

use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_api::credentials::{
    CredentialsError, new_access_key_id, new_secret, read_credentials, write_credentials,
};
use ferry_kms::RootKey;
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
    /// `--account-id` names another account than the shared store's.
    #[error(
        "the store belongs to account {existing}; --account-id {requested} cannot change it \
         (the account id is chosen when the store is first used)"
    )]
    StoreAccountMismatch {
        /// The store's account id.
        existing: String,
        /// The one asked for.
        requested: String,
    },
    /// The root key file could not be read or created, or is not a key.
    #[error(transparent)]
    RootKey(#[from] ferry_kms::root_key::RootKeyError),
    /// The store has an identity but the root key file does not exist.
    #[error(
        "the store already holds this deployment's identity, sealed under its root key, but --root-key {} \
         does not exist: copy the root key file the first replica created (mode 0600) to this path",
        .0.display()
    )]
    RootKeyMissing(PathBuf),
    /// The root key does not open the store's sealed administrator secret.
    #[error(
        "--root-key {} is not the root key this store was created with (the sealed administrator secret \
         does not open under it): every replica must use the same root key file",
        .0.display()
    )]
    WrongRootKey(PathBuf),
    /// The store's identity has no sealed secret to hand out.
    #[error(
        "the store's server identity has no sealed administrator secret (it was written by a server \
         without --store); a shared store must be initialized by `ferry server --store`"
    )]
    NotSealed,
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
    /// Shared stores only: the administrator's secret sealed under the
    /// root key (hex of iv || ciphertext || tag), label
    /// [`admin_secret_label`]. Absent in an embedded store, whose secret
    /// is only in the credentials file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    admin_secret_sealed: Option<String>,
}

/// What the sealed administrator secret is bound to: its key id, in a
/// namespace of its own (the KMS's labels are `kms-key/...`, `sealed/...`).
fn admin_secret_label(key_id: &str) -> String {
    format!("ferry-server/admin-secret/{key_id}")
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
        // Key material and credentials live here: nobody else may look in.
        create_private_dir(path)?;
        let redb_path = path.join("state.redb");
        let creds_path = path.join("credentials");
        // A `credentials` file without an embedded store is a fleet
        // replica's directory (`--store` keeps no state here): starting a
        // new embedded deployment in it would overwrite that file with
        // another deployment's key. (A first start that crashed halfway
        // left its store beside the file, and goes on below.)
        if !redb_path
            .try_exists()
            .map_err(io("looking for the store", &redb_path))?
            && creds_path
                .try_exists()
                .map_err(io("looking for the credentials", &creds_path))?
        {
            return Err(DataDirError::Credentials(format!(
                "{} exists but {} has no embedded store: this data directory belongs to a \
                 replica of a shared store; start with that --store and --root-key, or use \
                 another --data-dir",
                creds_path.display(),
                path.display()
            )));
        }
        let store = Arc::new(Store::open(&redb_path)?);
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
                    admin_secret_sealed: None,
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

impl DataDir {
    /// Opens the deployment's identity in a shared `store` with the root
    /// key file `root_key` (created if missing and the store is new), and
    /// the local directory `path` (created if missing) with its
    /// `credentials` file. Returns the directory and the root key.
    pub fn open_shared(
        path: &Path,
        store: Arc<Store>,
        root_key: &Path,
        account_id: Option<&str>,
    ) -> Result<(Self, RootKey), DataDirError> {
        if let Some(a) = account_id
            && !valid_account_id(a)
        {
            return Err(DataDirError::BadAccountId(a.to_owned()));
        }
        let existing = store.get::<Identity>(TABLE, IDENTITY)?;
        // A missing key file beside an existing identity is a replica
        // not given the deployment's key: say so rather than create a
        // key that cannot open anything.
        if existing.is_some()
            && !root_key
                .try_exists()
                .map_err(io("looking for the root key", root_key))?
        {
            return Err(DataDirError::RootKeyMissing(root_key.to_owned()));
        }
        let (root, created) = RootKey::open_or_create_file(root_key)?;
        // A key this start created and that turns out not to open the
        // store's identity is removed again: nothing is left behind.
        let refuse = |e: DataDirError| {
            if created {
                let _ = fs::remove_file(root_key);
            }
            e
        };
        let id = match existing {
            Some(id) => id,
            None => create_identity(&store, &root, account_id).map_err(refuse)?,
        };
        if let Some(requested) = account_id
            && requested != id.account_id
        {
            return Err(refuse(DataDirError::StoreAccountMismatch {
                existing: id.account_id,
                requested: requested.to_owned(),
            }));
        }
        let secret = unseal_admin_secret(&id, &root, root_key).map_err(refuse)?;
        if created {
            tracing::info!(
                "created the root key {}: copy this file (mode 0600) to every replica and give it as \
                 --root-key there; keep it like a secret, and out of the database",
                root_key.display()
            );
        }
        create_private_dir(path)?;
        let creds_path = path.join("credentials");
        let written = match read_credentials(&creds_path) {
            Ok((key_id, file_secret)) => {
                if key_id != id.admin_access_key_id || *file_secret != *secret {
                    return Err(DataDirError::Credentials(format!(
                        "{} holds access key {key_id}, not the store's administrator key {}: \
                         this data directory belongs to another deployment (remove the file, or use \
                         another --data-dir)",
                        creds_path.display(),
                        id.admin_access_key_id
                    )));
                }
                false
            }
            Err(CredentialsError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                write_credentials(&creds_path, &id.admin_access_key_id, &secret)?;
                true
            }
            Err(e) => return Err(e.into()),
        };
        if written {
            tracing::info!(
                "wrote the administrator's credentials to {}",
                creds_path.display()
            );
        }
        Ok((
            Self {
                path: path.to_owned(),
                account_id: id.account_id,
                admin_access_key_id: id.admin_access_key_id,
                admin_secret: secret,
                store,
            },
            root,
        ))
    }
}

/// Creates the shared store's identity, unless another replica did
/// first: the check and the write are one transaction, and writers are
/// serialized, so exactly one identity is ever created. Returns the
/// identity in the store.
fn create_identity(
    store: &Store,
    root: &RootKey,
    account_id: Option<&str>,
) -> Result<Identity, DataDirError> {
    let key_id = new_access_key_id();
    let secret = new_secret();
    let sealed = root
        .wrap(&admin_secret_label(&key_id), secret.as_bytes())
        .map_err(|e| DataDirError::Credentials(format!("sealing the administrator secret: {e}")))?;
    let fresh = Identity {
        account_id: account_id.map_or_else(new_account_id, str::to_owned),
        admin_access_key_id: key_id,
        admin_secret_sealed: Some(hex::encode(sealed)),
    };
    store.write(|w| match w.get::<Identity>(TABLE, IDENTITY)? {
        Some(theirs) => Ok(theirs),
        None => {
            w.put(TABLE, IDENTITY, &fresh)?;
            Ok::<_, DataDirError>(fresh)
        }
    })
}

/// The administrator's secret, opened with the root key.
fn unseal_admin_secret(
    id: &Identity,
    root: &RootKey,
    root_key: &Path,
) -> Result<Zeroizing<String>, DataDirError> {
    let sealed = id
        .admin_secret_sealed
        .as_deref()
        .ok_or(DataDirError::NotSealed)?;
    let sealed = hex::decode(sealed).map_err(|_| DataDirError::NotSealed)?;
    let plain = root
        .unwrap_material(&admin_secret_label(&id.admin_access_key_id), &sealed)
        .map_err(|_| DataDirError::WrongRootKey(root_key.to_owned()))?;
    let text = std::str::from_utf8(&plain).map_err(|_| DataDirError::NotSealed)?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Creates `path` (mode 0700) if needed and makes sure it is a directory
/// only its owner may look in (credentials and key material live there).
fn create_private_dir(path: &Path) -> Result<(), DataDirError> {
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
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(io("restricting data directory", path))
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
    fn a_replicas_directory_is_not_taken_over_by_an_embedded_start() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("credentials");
        let replica = "[default]\naws_access_key_id = AKIAFLEET\naws_secret_access_key = s\n";
        fs::write(&path, replica).unwrap();
        let Err(e) = DataDir::open_or_init(tmp.path(), None) else {
            panic!("started an embedded deployment over a replica's credentials")
        };
        assert!(
            e.to_string().contains("--store") && !e.to_string().contains("  "),
            "{e}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), replica);
        assert!(!tmp.path().join("state.redb").exists());
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

    /// One store (redb stands in for a shared one: `open_shared` only
    /// needs the store interface) and a root key file beside it.
    fn shared_store(tmp: &Path) -> Arc<Store> {
        Arc::new(Store::open(&tmp.join("shared.redb")).unwrap())
    }

    #[test]
    fn replicas_of_one_store_hand_out_the_same_credentials() {
        let tmp = tempfile::tempdir().unwrap();
        let store = shared_store(tmp.path());
        let key = tmp.path().join("root.key");
        let (a, _) = DataDir::open_shared(
            &tmp.path().join("a"),
            store.clone(),
            &key,
            Some("012345678910"),
        )
        .unwrap();
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // The second replica has an empty directory and no --account-id.
        let (b, _) =
            DataDir::open_shared(&tmp.path().join("b"), store.clone(), &key, None).unwrap();
        assert_eq!(b.account_id, "012345678910");
        assert_eq!(b.admin_access_key_id, a.admin_access_key_id);
        assert_eq!(*b.admin_secret, *a.admin_secret);
        assert_eq!(
            fs::read(tmp.path().join("a/credentials")).unwrap(),
            fs::read(tmp.path().join("b/credentials")).unwrap()
        );
        // The store holds the secret sealed, not in plaintext.
        let id: serde_json::Value = store.get(TABLE, IDENTITY).unwrap().unwrap();
        assert!(!id.to_string().contains(a.admin_secret.as_str()), "{id}");
        assert!(id["admin_secret_sealed"].is_string(), "{id}");
        // A restart with its own file reuses it.
        assert!(DataDir::open_shared(&tmp.path().join("b"), store.clone(), &key, None).is_ok());
        // Another account is refused.
        let Err(e) = DataDir::open_shared(
            &tmp.path().join("c"),
            store.clone(),
            &key,
            Some("111122223333"),
        ) else {
            panic!("changed the store's account")
        };
        assert!(
            matches!(e, DataDirError::StoreAccountMismatch { .. }),
            "{e}"
        );
        assert!(!tmp.path().join("c").exists());
        // A data directory of another deployment is refused.
        fs::write(
            tmp.path().join("b/credentials"),
            "[default]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = x\n",
        )
        .unwrap();
        let Err(e) = DataDir::open_shared(&tmp.path().join("b"), store, &key, None) else {
            panic!("accepted a foreign credentials file")
        };
        assert!(e.to_string().contains("AKIAOTHER"), "{e}");
    }

    #[test]
    fn a_wrong_or_missing_root_key_is_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let store = shared_store(tmp.path());
        let key = tmp.path().join("root.key");
        DataDir::open_shared(&tmp.path().join("a"), store.clone(), &key, None).unwrap();

        // Missing: refused, and no key is made up.
        let missing = tmp.path().join("missing.key");
        let Err(e) = DataDir::open_shared(&tmp.path().join("b"), store.clone(), &missing, None)
        else {
            panic!("started without the deployment's key")
        };
        assert!(matches!(e, DataDirError::RootKeyMissing(_)), "{e}");
        assert!(e.to_string().contains("missing.key"), "{e}");
        assert!(!missing.exists());

        // Another key: refused with a clear message, nothing written.
        let other = tmp.path().join("other.key");
        drop(ferry_kms::RootKey::open_or_create_file(&other).unwrap());
        let Err(e) = DataDir::open_shared(&tmp.path().join("b"), store.clone(), &other, None)
        else {
            panic!("started with another root key")
        };
        assert!(matches!(e, DataDirError::WrongRootKey(_)), "{e}");
        assert!(
            e.to_string()
                .contains("is not the root key this store was created with"),
            "{e}"
        );
        assert!(!tmp.path().join("b").exists());
        assert!(other.exists(), "an operator's file is never removed");
    }

    #[test]
    fn replicas_starting_at_once_create_one_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let store = shared_store(tmp.path());
        let key = tmp.path().join("root.key");
        // Every replica has the key file (the operator distributed it).
        drop(ferry_kms::RootKey::open_or_create_file(&key).unwrap());
        let starts: Vec<_> = (0..6)
            .map(|i| {
                let (dir, store, key) =
                    (tmp.path().join(format!("r{i}")), store.clone(), key.clone());
                std::thread::spawn(move || {
                    let (d, _) = DataDir::open_shared(&dir, store, &key, None).unwrap();
                    (d.account_id, d.admin_access_key_id, d.admin_secret)
                })
            })
            .collect();
        let ids: Vec<_> = starts.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "two identities were created"
        );
    }
}
