//! The real OpenHands agent server, installed from PyPI by `tests/agent-server/install.sh` into
//! one virtual environment per version, for pods that really run (`node.rs`).

use std::path::{Path, PathBuf};

/// The versions the real clients deploy: the SDK's (1.58.2) and the V1 app server's of
/// openhands-ai 1.11.0 (1.34.0).
pub const VERSIONS: [&str; 2] = ["1.58.2", "1.34.0"];

const INSTALL: &str = "tests/agent-server/install.sh";

/// Installed agent-server versions, each with its virtual environment.
#[derive(Debug, Clone)]
pub struct AgentBed {
    versions: Vec<(String, PathBuf)>,
}

impl AgentBed {
    /// The bed with these versions, or why it cannot be had (not installed, no Python 3.12).
    pub fn find(versions: &[&str]) -> Result<AgentBed, String> {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .ok_or("neither XDG_CACHE_HOME nor HOME is set")?
            .join("openhands-k8s-runtime/agent-server");
        let mut found = Vec::new();
        for version in versions {
            let venv = cache.join(version);
            let ready = venv.join("bin/agent-server").is_file() && venv.join(".installed").is_file();
            let shimmed = std::fs::read_dir(venv.join("lib"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|python| python.path().join("site-packages/netns_shim.pth").is_file());
            if !ready || !shimmed {
                return Err(format!(
                    "the agent server {version} is not installed (bash {INSTALL} {version})"
                ));
            }
            found.push((version.to_string(), venv));
        }
        Ok(AgentBed { versions: found })
    }

    /// The bed with whichever of `VERSIONS` are installed (the first one serves other tags).
    pub fn installed() -> Result<AgentBed, String> {
        let versions: Vec<(String, PathBuf)> = VERSIONS
            .iter()
            .filter_map(|version| AgentBed::find(&[version]).ok())
            .flat_map(|bed| bed.versions)
            .collect();
        if versions.is_empty() {
            return Err(format!(
                "no agent server is installed (bash {INSTALL} {})",
                VERSIONS.join(" ")
            ));
        }
        Ok(AgentBed { versions })
    }

    /// The bed for a test, or `None` (said in one line) where it is not installed. CI sets
    /// `REQUIRE_AGENT_SERVER=1`, so that there it fails instead of skipping.
    pub fn for_test(versions: &[&str]) -> Option<AgentBed> {
        match AgentBed::find(versions) {
            Ok(bed) => Some(bed),
            Err(why) if std::env::var_os("REQUIRE_AGENT_SERVER").is_none() => {
                eprintln!("skipping: {why}");
                None
            }
            Err(why) => panic!("{why}"),
        }
    }

    /// The image name the clients would deploy for `version`.
    pub fn image(version: &str) -> String {
        format!("ghcr.io/openhands/agent-server:{version}-python")
    }

    /// The environment whose version begins the image's tag (`…:1.34.0-python`), else the
    /// first of the bed (an image such as `latest-python`).
    pub fn venv_for_image(&self, image: &str) -> &Path {
        let tag = image.rsplit_once(':').map_or("", |(_, tag)| tag);
        self.versions
            .iter()
            .find(|(version, _)| tag.starts_with(version.as_str()))
            .or(self.versions.first())
            .map(|(_, venv)| venv.as_path())
            .unwrap_or(Path::new("/nonexistent"))
    }
}
