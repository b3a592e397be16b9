//! Photos and audio uploaded with releases, stored as files named by the SHA-256 of their
//! bytes (`{hash}.{ext}`), so the same file is stored once and a name never changes meaning.
//! Files are written to a temporary name, synced, renamed and the directory synced: a file
//! that has a name is complete and durable.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A stored file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMedia {
    /// `{sha256}.{ext}`: the file's name under `/media/`.
    pub name: String,
    pub media_type: String,
    pub length: u64,
}

#[derive(Clone, Debug)]
pub struct MediaStore {
    dir: PathBuf,
}

impl MediaStore {
    /// Opens (creating if needed) the media directory.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Stores `bytes` durably under their content name. Storing the same bytes again is a
    /// no-op that returns the same name.
    pub fn put(&self, bytes: &[u8], ext: &str, media_type: &str) -> std::io::Result<StoredMedia> {
        let name = format!("{}.{ext}", hex::encode(Sha256::digest(bytes)));
        let path = self.dir.join(&name);
        if !path.exists() {
            let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()?;
        }
        Ok(StoredMedia {
            name,
            media_type: media_type.to_owned(),
            length: bytes.len() as u64,
        })
    }

    /// The path of a stored file, if `name` is a well-formed content name that exists.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        let path = self.dir.join(name);
        (is_content_name(name) && path.is_file()).then_some(path)
    }

    /// The names of every stored file, sorted.
    pub fn names(&self) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if is_content_name(&name) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

/// `{sha256 in lowercase hex}.{ext}`, the extension 2–5 lowercase letters or digits.
pub(crate) fn is_content_name(name: &str) -> bool {
    let Some((hash, ext)) = name.split_once('.') else {
        return false;
    };
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && (2..=5).contains(&ext.len())
        && ext
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_addressed_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let m = MediaStore::open(&dir.path().join("media")).unwrap();
        let a = m.put(b"\xFF\xD8\xFFfoto", "jpg", "image/jpeg").unwrap();
        let b = m.put(b"\xFF\xD8\xFFfoto", "jpg", "image/jpeg").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.length, 7);
        assert!(a.name.ends_with(".jpg") && a.name.len() == 64 + 4);
        assert_eq!(
            std::fs::read(m.path(&a.name).unwrap()).unwrap(),
            b"\xFF\xD8\xFFfoto"
        );
        assert!(m.path("../etc/passwd").is_none());
        assert!(m.path(&a.name.replace(".jpg", ".png")).is_none());
        assert!(m.path(&a.name.to_uppercase()).is_none());
        let leftovers = std::fs::read_dir(dir.path().join("media")).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left");
    }
}
