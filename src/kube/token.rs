//! The service account's bearer token, re-read from its file so that rotation needs no restart.

use std::fs;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub(super) struct BearerToken {
    file: PathBuf,
    refresh_every: Duration,
    cached: Mutex<CachedToken>,
}

#[derive(Default)]
struct CachedToken {
    value: Option<String>,
    read_at: Option<Instant>,
}

impl BearerToken {
    pub(super) fn new(file: PathBuf, refresh_every: Duration) -> BearerToken {
        BearerToken {
            file,
            refresh_every,
            cached: Mutex::new(CachedToken::default()),
        }
    }

    /// The token to send, read again from the file once it is `refresh_every` old. The file is
    /// read with no lock held: every Kubernetes call passes here, and a slow mount must not
    /// make them wait on one another.
    pub(super) fn current(&self) -> Option<String> {
        {
            let cached = self.lock();
            if cached.read_at.is_some_and(|at| at.elapsed() < self.refresh_every) {
                return cached.value.clone();
            }
        }
        self.reread()
    }

    /// Re-reads the file now; true when the token is not the one that was refused.
    pub(super) fn reread_differs_from(&self, refused: Option<&str>) -> bool {
        self.reread().as_deref() != refused
    }

    fn reread(&self) -> Option<String> {
        let read = fs::read_to_string(&self.file)
            .ok()
            .map(|text| text.trim().to_string())
            .filter(|token| !token.is_empty());
        let mut cached = self.lock();
        cached.read_at = Some(Instant::now());
        match read {
            Some(token) => cached.value = Some(token),
            // The kubelet replaces the file atomically, but a mount can briefly show it
            // missing or empty: the last good token is still the best one we have.
            None if cached.value.is_some() => {
                log::warn!("cannot read the token in {}; keeping the last one", self.file.display());
            }
            None => {}
        }
        cached.value.clone()
    }

    fn lock(&self) -> MutexGuard<'_, CachedToken> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_token_is_read_and_a_vanished_one_kept() {
        let dir = std::env::temp_dir().join(format!("bearer-token-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        fs::write(&file, "first\n").unwrap();
        let token = BearerToken::new(file.clone(), Duration::from_secs(3600));
        assert_eq!(token.current().as_deref(), Some("first"));

        fs::write(&file, "second").unwrap();
        assert_eq!(token.current().as_deref(), Some("first"), "not yet due");
        assert!(token.reread_differs_from(Some("first")));
        assert_eq!(token.current().as_deref(), Some("second"));

        fs::remove_file(&file).unwrap();
        assert!(!token.reread_differs_from(Some("second")), "the last good token stays");
        assert_eq!(token.current().as_deref(), Some("second"));
        let _ = fs::remove_dir_all(&dir);
    }
}
