//! `/image_exists` (API.md §9): the image's registry is asked with the credentials the sandbox
//! pods would pull it with, those of the first `IMAGE_PULL_SECRETS` entry that has some.

use crate::error::Error;
use crate::kube::{Client, KubeError, Resource};
use crate::registry::{Credentials, ImageReference, Registries, RegistryUnavailable};

pub struct ImageCheck {
    registries: Registries,
    pull_secrets: Vec<String>,
}

impl ImageCheck {
    pub fn new(registries: Registries, pull_secrets: Vec<String>) -> ImageCheck {
        ImageCheck {
            registries,
            pull_secrets,
        }
    }

    /// Whether `image` can be pulled. Reads the pull secrets (a Kubernetes call), then asks the
    /// registry, which remembers what it found for a while.
    pub fn exists(&self, kube: &Client, image: &str) -> Result<bool, Error> {
        let image = ImageReference::parse(image).map_err(|message| Error::invalid("image", message))?;
        let credentials = self.pull_credentials(kube, &image.registry)?;
        self.registries
            .image_exists(&image, credentials.as_ref())
            .map_err(|RegistryUnavailable(message)| Error::Registry(message))
    }

    /// The first pull secret with credentials for `registry`. A missing secret is skipped, as
    /// the kubelet skips it.
    fn pull_credentials(&self, kube: &Client, registry: &str) -> Result<Option<Credentials>, Error> {
        for name in &self.pull_secrets {
            let secret = match kube.get(Resource::Secrets, name) {
                Ok(secret) => secret,
                Err(KubeError::NotFound(_)) => {
                    log::warn!("image pull secret {name} does not exist");
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            if let Some(credentials) = Credentials::from_pull_secret(&secret, registry) {
                return Ok(Some(credentials));
            }
        }
        Ok(None)
    }
}
