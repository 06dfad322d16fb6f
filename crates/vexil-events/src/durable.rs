//! Making file changes survive a crash: the directory sync and the atomic replacement that the
//! log's checkpoints and the local archive's files both rely on.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Makes a directory entry (a created, renamed or removed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` so that a reader sees either the old or the new content.
///
/// The bytes go to `.<name>.tmp` beside it first (the name [`crate::archive::LocalArchive::open`]
/// clears after a crash), are synced, and then renamed into place.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temp, path)?;
    sync_dir(dir)
}
