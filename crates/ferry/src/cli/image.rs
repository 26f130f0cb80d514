//! `ferry image`: the local image store under `DATA_DIR/images`, managed
//! through the running server's admin socket (the store is sealed under
//! the server's KMS, which no other process may open).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ferry_agent::image::admin::{self, Progress, Reply, Request};

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
    /// Remove every image no running task uses.
    Prune {
        /// The server's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn connect(data_dir: &Path) -> anyhow::Result<UnixStream> {
    let sock = admin::socket_path(data_dir);
    UnixStream::connect(&sock).map_err(|e| {
        anyhow::anyhow!(
            "no ferry server is running on {}; start it first: images are sealed under its KMS ({}: {e})",
            data_dir.display(),
            sock.display()
        )
    })
}

/// Sends `req` (and, for `stdin`, standard input after it) and prints the
/// server's answer.
fn call(data_dir: &Path, req: &Request, stdin: bool) -> anyhow::Result<()> {
    let conn = connect(data_dir)?;
    let mut w = conn.try_clone().context("admin socket")?;
    let mut line = serde_json::to_vec(req).context("encoding the request")?;
    line.push(b'\n');
    w.write_all(&line).context("sending to the server")?;
    if stdin {
        std::io::copy(&mut std::io::stdin().lock(), &mut w)
            .context("sending the archive to the server")?;
    }
    conn.shutdown(std::net::Shutdown::Write)
        .context("admin socket")?;
    // indicatif draws only when stderr is a terminal.
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let short = |d: &str| d.get(7..19).unwrap_or(d).to_string();
    for l in BufReader::new(conn).lines() {
        let l = l.context("reading the server's answer")?;
        match serde_json::from_str::<Reply>(&l).context("the server's answer")? {
            Reply::Line(s) => {
                bar.suspend(|| println!("{s}"));
            }
            Reply::Progress(Progress::Start { digest, total }) => {
                bar.reset();
                bar.set_length(total);
                bar.set_message(short(&digest));
            }
            Reply::Progress(Progress::Bytes(n)) => bar.inc(n),
            Reply::Progress(Progress::Done(digest)) => {
                bar.println(format!("{}: done", short(&digest)));
            }
            Reply::Ok(_) => {
                bar.finish_and_clear();
                return Ok(());
            }
            Reply::Error(e) => {
                bar.finish_and_clear();
                anyhow::bail!("{e}");
            }
        }
    }
    anyhow::bail!("the server closed the admin socket without an answer")
}

/// Runs `ferry image`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Import {
            file,
            name,
            data_dir,
        } => {
            let stdin = file == Path::new("-");
            // The server reads the file itself: give it an absolute path.
            let path = if stdin {
                None
            } else {
                Some(
                    std::path::absolute(&file)
                        .with_context(|| format!("importing {}", file.display()))?,
                )
            };
            call(&data_dir, &Request::Import { path, stdin, name }, stdin)
        }
        Command::Pull {
            reference,
            data_dir,
        } => call(&data_dir, &Request::Pull { reference }, false),
        Command::Ls { data_dir } => call(&data_dir, &Request::Ls, false),
        Command::Rm { name, data_dir } => call(&data_dir, &Request::Rm { name }, false),
        Command::Prune { data_dir } => call(&data_dir, &Request::Prune, false),
    }
}
