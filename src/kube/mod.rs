//! A small synchronous client for the Kubernetes REST API.
//!
//! It speaks the handful of calls the service needs (create, get, list, delete, JSON merge patch
//! and watch, in one namespace) directly over `ureq`. Objects are `serde_json::Value`s: the
//! service builds its manifests as JSON and reads back only the few fields it cares about, so
//! generated types would add weight without adding safety.
//!
//! - `config`: where the API server is, its CA and the namespace (API.md §8)
//! - `token`: the service account's token, re-read as it rotates
//! - `error`: what a failed call means, and which failures are retried
//! - `resource`: the kinds of object, and ownership
//! - `client`: the requests
//! - `watch`: the stream of changes after a list

mod client;
mod config;
mod error;
mod resource;
mod token;
mod watch;

pub use client::{Client, ObjectList};
pub use config::{Config, Timeouts};
pub use error::{KubeError, RetryPolicy};
pub use resource::{Deletion, Resource, owner_reference};
pub use watch::WatchEvent;
pub(crate) use watch::parse_watch_event;
