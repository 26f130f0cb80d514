//! The page, its script and its style sheet, built into the binary: the
//! console fetches nothing from anywhere else (no CDN, no files at run
//! time).
//!
//! For work on the UI, `FERRY_CONSOLE_ASSETS_DIR=DIR` makes a server read
//! the same three files from `DIR` on every request instead, so an edit
//! shows on reload without a rebuild. Only these three names are ever
//! read; the server logs a warning when the variable is set.

use std::path::PathBuf;

/// One asset: its body and content type.
pub struct Asset {
    /// The bytes served.
    pub body: bytes::Bytes,
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

const FILES: [(&str, &str, &str); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../assets/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
];

/// The assets, embedded or (development) from a directory.
pub struct Assets {
    dev_dir: Option<PathBuf>,
}

impl Assets {
    /// The embedded assets, unless `FERRY_CONSOLE_ASSETS_DIR` names a
    /// directory to read them from.
    pub fn new() -> Self {
        let dev_dir = std::env::var_os("FERRY_CONSOLE_ASSETS_DIR").map(PathBuf::from);
        if let Some(d) = &dev_dir {
            tracing::warn!(
                "console assets are read from {} (FERRY_CONSOLE_ASSETS_DIR), not the built-in ones",
                d.display()
            );
        }
        Self { dev_dir }
    }

    /// The asset called `name` (`index.html`, `app.js`, `app.css`).
    pub fn get(&self, name: &str) -> Option<Asset> {
        let (file, content_type, embedded) = FILES.iter().find(|(f, _, _)| *f == name)?;
        let body = match &self.dev_dir {
            Some(dir) => bytes::Bytes::from(std::fs::read(dir.join(file)).ok()?),
            None => bytes::Bytes::from_static(embedded.as_bytes()),
        };
        Some(Asset { body, content_type })
    }
}

impl Default for Assets {
    fn default() -> Self {
        Self::new()
    }
}
