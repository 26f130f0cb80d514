//! `ferry image`: the local image store under `DATA_DIR/images`.

use std::path::PathBuf;

use anyhow::Context;
use ferry_agent::image::pull::{self, PullProgress};
use ferry_agent::image::{ImageStore, archive};

/// Arguments of `ferry image`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Import an oci-archive or `docker save` tar.
    Import {
        /// The archive file (`-` for standard input).
        file: PathBuf,
        /// Name the image NAME[:TAG] (default tag `latest`) instead of the
        /// archive's own name.
        #[arg(long)]
        name: Option<String>,
        /// The server's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Pull an image from an OCI distribution registry.
    Pull {
        /// REGISTRY/REPOSITORY[:TAG|@DIGEST] (`httpd:2.4` is Docker Hub's).
        reference: String,
        /// The server's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// List images.
    Ls {
        /// The server's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Remove an image name (and blobs no other image uses).
    Rm {
        /// NAME[:TAG].
        name: String,
        /// The server's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn store(data_dir: &std::path::Path) -> anyhow::Result<ImageStore> {
    ImageStore::open(data_dir.join("images"))
        .with_context(|| format!("opening the image store in {}", data_dir.display()))
}

/// Runs `ferry image`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Import {
            file,
            name,
            data_dir,
        } => {
            let s = store(&data_dir)?;
            let imported = archive::import(&s, &file, name.as_deref())
                .with_context(|| format!("importing {}", file.display()))?;
            for i in imported {
                for n in i.names {
                    println!("{}\t{}", n.familiar(), i.manifest_digest);
                }
            }
        }
        Command::Pull {
            reference,
            data_dir,
        } => {
            let s = store(&data_dir)?;
            // indicatif draws only when stderr is a terminal.
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            let mut cb = |p: PullProgress| match p {
                PullProgress::Start { digest, total } => {
                    bar.reset();
                    bar.set_length(total);
                    bar.set_message(digest.get(7..19).unwrap_or(&digest).to_string());
                }
                PullProgress::Bytes(n) => bar.inc(n),
                PullProgress::Done { digest } => {
                    bar.println(format!("{}: done", digest.get(7..19).unwrap_or(&digest)));
                }
            };
            let i = pull::pull(&s, &reference, &pull::Access::default(), &mut cb)
                .with_context(|| format!("pulling {reference}"))?;
            bar.finish_and_clear();
            for n in i.names {
                println!("{}\t{}", n.familiar(), i.manifest_digest);
            }
        }
        Command::Ls { data_dir } => {
            let s = store(&data_dir)?;
            println!("{:<40} {:<19} {:>10}", "NAME", "DIGEST", "SIZE");
            for i in s.list()? {
                let short = i
                    .manifest_digest
                    .get(..19)
                    .unwrap_or(&i.manifest_digest)
                    .to_string();
                println!(
                    "{:<40} {:<19} {:>10}",
                    i.reference.familiar(),
                    short,
                    i.size
                );
            }
        }
        Command::Rm { name, data_dir } => {
            let s = store(&data_dir)?;
            let r = s
                .remove(&name)
                .with_context(|| format!("removing {name}"))?;
            println!("removed {}", r.familiar());
        }
    }
    Ok(())
}
