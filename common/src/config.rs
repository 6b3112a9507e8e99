//! Loading the optional TOML config file (`--config FILE`) of a binary into its own typed,
//! `deny_unknown_fields` struct; absent path → the struct's defaults.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

use crate::fs::{FsError, read_limited};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path} is not UTF-8")]
    Utf8 { path: PathBuf },
    #[error("invalid config file {path}: {source}")]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
}

/// Reads and parses `path` (at most 1 MiB), or returns `T::default()` when there is none.
pub fn load_toml<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let bytes = read_limited(path, 1024 * 1024)?;
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::Utf8 {
        path: path.to_owned(),
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Toml {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct C {
        port: Option<u16>,
    }

    #[test]
    fn absent_file_gives_defaults_and_bad_files_name_themselves() {
        assert_eq!(load_toml::<C>(None).unwrap(), C::default());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "port = 7").unwrap();
        assert_eq!(load_toml::<C>(Some(&p)).unwrap(), C { port: Some(7) });
        std::fs::write(&p, "prot = 7").unwrap();
        let e = load_toml::<C>(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("prot"), "{e}");
    }
}
