//! `ferry volume`: standalone use of the encrypted volume engine
//! (format, mount, unmount, shred) and the hidden `serve` subcommand that
//! `mount` re-executes as the background serving process.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ferry_volume as volume;

/// Arguments of `ferry volume`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create a sparse LUKS2 volume (aes-xts-plain64, 512-bit key, 4096-byte sectors).
    Format {
        /// The image file to create (must not exist).
        image: PathBuf,
        /// Size of the volume's data, 1GiB..=200GiB (e.g. 20GiB).
        #[arg(long)]
        size: String,
        /// File holding the keyslot passphrase (`-` for stdin).
        #[arg(long, required_unless_present = "plain")]
        key_file: Option<PathBuf>,
        /// JSON object to store as LUKS2 token 0 (type `ferry-kms`).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Make an unencrypted image instead (platform version 1.3.0, benchmark baseline).
        #[arg(long, conflicts_with_all = ["key_file", "token_file"])]
        plain: bool,
    },
    /// Open a volume and mount its ext4 on DIR; returns once DIR is usable.
    Mount {
        /// The image file.
        image: PathBuf,
        /// Existing directory to mount on.
        dir: PathBuf,
        /// File holding the keyslot passphrase (`-` for stdin).
        #[arg(long, required_unless_present = "plain")]
        key_file: Option<PathBuf>,
        /// The image is unencrypted (made with `format --plain`).
        #[arg(long, conflicts_with = "key_file")]
        plain: bool,
    },
    /// Unmount a volume and stop its server; leaves no mount, loop device or process.
    Unmount {
        /// The mount point.
        dir: PathBuf,
    },
    /// Crypto-shred: wipe the LUKS2 headers and keyslots, then delete the image.
    Shred {
        /// The image file.
        image: PathBuf,
    },
    /// The serving process (started by `mount`; passphrase on stdin).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        image: PathBuf,
        #[arg(long)]
        runtime_dir: PathBuf,
        #[arg(long)]
        plain: bool,
        /// Host bytes that writes into the image's holes leave free.
        #[arg(long, default_value_t = 0)]
        reserve_bytes: u64,
    },
}

fn passphrase(key_file: &Path) -> anyhow::Result<volume::Passphrase> {
    let p = if key_file == Path::new("-") {
        volume::Passphrase::read_from(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(key_file)
            .with_context(|| format!("cannot open key file {}", key_file.display()))?;
        volume::Passphrase::read_from(f)
    };
    p.map_err(|e| flat("key file", e))
}

/// One line: the library errors' Display already carries their cause, so the
/// chain is not repeated.
fn flat(what: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{what}: {e}")
}

/// Runs `ferry volume`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Format {
            image,
            size,
            key_file,
            token_file,
            plain,
        } => {
            let size = volume::parse_size(&size).map_err(|e| flat("format", e))?;
            if plain {
                return volume::format_plain(&image, size).map_err(|e| flat("format", e));
            }
            let token: Option<serde_json::Value> = match token_file {
                None => None,
                Some(f) => {
                    let s = std::fs::read_to_string(&f)
                        .with_context(|| format!("format: cannot read {}", f.display()))?;
                    Some(serde_json::from_str(&s).context("format: token file is not JSON")?)
                }
            };
            let key_file = key_file.context("format: --key-file is required")?;
            let pass = passphrase(&key_file).context("format")?;
            volume::format(
                &image,
                &volume::FormatOptions {
                    size,
                    passphrase: &pass,
                    token: token.as_ref(),
                },
            )
            .map_err(|e| flat("format", e))
        }
        Command::Mount {
            image,
            dir,
            key_file,
            plain,
        } => {
            let pass = match (plain, key_file) {
                (true, _) => None,
                (false, Some(k)) => Some(passphrase(&k).context("mount")?),
                (false, None) => anyhow::bail!("mount: --key-file is required"),
            };
            let exe = std::env::current_exe().context("mount: cannot find own executable")?;
            let server = volume::ServerCommand::ferry(exe);
            let handle = volume::mount(&volume::MountOptions {
                image: &image,
                target: &dir,
                passphrase: pass.as_ref(),
                server: &server,
                runtime_root: Path::new(volume::RUNTIME_ROOT),
            })
            .map_err(|e| flat("mount", e))?;
            // The volume keeps serving after this command exits.
            handle.detach();
            Ok(())
        }
        Command::Unmount { dir } => volume::unmount(&dir).map_err(|e| flat("unmount", e)),
        Command::Shred { image } => volume::shred(&image).map_err(|e| flat("shred", e)),
        Command::Serve {
            image,
            runtime_dir,
            plain,
            reserve_bytes,
        } => {
            // Errors were already reported to `mount` on the readiness pipe.
            volume::serve(&volume::ServeArgs {
                image,
                runtime_dir,
                plain,
                reserve: reserve_bytes,
            })
            .map_err(|e| flat("serve", e))
        }
    }
}
