//! What `vibesync serve` prints once after its "listening on" line: where the token is, how
//! to install both editor packages, which project editors join, how to look inside.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use vibesync_daemon::config::ConfigSource;
use vibesync_daemon::DataDir;

/// The source checkout this binary was built from (`cargo install --path` keeps it), if it
/// is still there: the editor packages are installed from it.
fn checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("addons/blender/vibesync").is_dir().then(|| root.canonicalize().unwrap_or(root))
}

pub fn next_steps(data: &DataDir, addr: SocketAddr, config: &ConfigSource) -> String {
    let (blender, unity) = match checkout() {
        Some(root) => (
            root.join("addons/blender/vibesync").display().to_string(),
            root.join("unity-package/com.vibesync.bridge/package.json").display().to_string(),
        ),
        None => (
            "addons/blender/vibesync (in the VibeSync source tree)".to_string(),
            "unity-package/com.vibesync.bridge/package.json (in the VibeSync source tree)".to_string(),
        ),
    };
    let default_port = addr.ip().is_loopback() && addr.port() == 47800;
    let mut s = String::new();
    let _ = writeln!(s, "  config:  {config}");
    let _ = writeln!(s, "  token:   {} (editors read it from there)", data.token().display());
    if !default_port {
        let _ = writeln!(s, "  note:    not the default address 127.0.0.1:47800: set host/port in both editors");
    }
    let _ = writeln!(s, "Next:");
    let _ = writeln!(
        s,
        "  Blender 4.2+: zip the folder {blender} (or `blender --command extension build --source-dir` it),"
    );
    let _ = writeln!(s, "                then Edit > Preferences > Get Extensions > Install from Disk…");
    let _ = writeln!(s, "  Unity 2021.3+: Window > Package Manager > + > Add package from disk… > {unity}");
    let _ =
        writeln!(s, "  Project:  editors that set no project id join the project a connected editor of the other kind");
    let _ = writeln!(
        s,
        "            is in, else the last one used, else \"default\" (the id each editor shows after connecting)"
    );
    let _ = writeln!(
        s,
        "  Watch:    vibesync status   |   vibesync tail --follow   |   scripts/demo (real Blender + headless Unity, nothing to install)"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_token_both_packages_and_the_project_rule() {
        let data = DataDir::new("/tmp/x");
        let s = next_steps(&data, "127.0.0.1:47800".parse().unwrap(), &ConfigSource::Embedded);
        assert!(s.contains("/tmp/x/token"), "{s}");
        assert!(s.contains("addons/blender/vibesync") && s.contains("com.vibesync.bridge"), "{s}");
        assert!(s.contains("\"default\"") && s.contains("embedded defaults"), "{s}");
        assert!(!s.contains("note:"), "{s}");
        let s = next_steps(&data, "127.0.0.1:5".parse().unwrap(), &ConfigSource::Embedded);
        assert!(s.contains("set host/port"), "{s}");
    }
}
