//! The shared secret in `<data_dir>/token`: 256 random bits as 64 lowercase hex chars,
//! mode 0600, created at first start. Compared in constant time.

use std::path::Path;

use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::{fsutil, DaemonError};

/// Read the token, creating it on first start.
pub fn load_or_create(path: &Path) -> Result<String, DaemonError> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let t = s.trim().to_string();
            if t.len() == 64 && t.bytes().all(|c| c.is_ascii_hexdigit()) {
                restrict_mode(path)?;
                return Ok(t);
            }
            Err(DaemonError::Token {
                path: path.to_path_buf(),
                message: "token file is not 64 hex characters; delete it to have a new one made (clients must then re-read it)".into(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut raw);
            let t = hex::encode(raw);
            fsutil::write_atomic(path, format!("{t}\n").as_bytes(), Some(0o600))
                .map_err(|e| DaemonError::Token { path: path.to_path_buf(), message: format!("cannot write: {e}") })?;
            Ok(t)
        }
        Err(e) => Err(DaemonError::Token { path: path.to_path_buf(), message: format!("cannot read: {e}") }),
    }
}

fn restrict_mode(path: &Path) -> Result<(), DaemonError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| DaemonError::Token { path: path.to_path_buf(), message: e.to_string() })?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| DaemonError::Token {
                path: path.to_path_buf(),
                message: format!("cannot restrict to 0600: {e}"),
            })?;
        }
    }
    Ok(())
}

/// Constant-time comparison of the presented token with the real one.
pub fn matches(expected: &str, presented: &str) -> bool {
    let a = expected.as_bytes();
    let b = presented.as_bytes();
    // Length is not secret (always 64), but compare fixed-size buffers anyway.
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_with_0600_and_stable() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("token");
        let t1 = load_or_create(&p).unwrap();
        let t2 = load_or_create(&p).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(t1.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(matches(&t1, &t1));
        assert!(!matches(&t1, &t1[..63]));
        assert!(!matches(&t1, ""));
    }
}
