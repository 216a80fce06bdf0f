//! A watch: the stream of changes the API server sends after a list, one JSON event a line.

use std::io::{BufRead, BufReader};

use serde_json::Value;

use super::error::KubeError;
use crate::object;

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    /// Nothing of interest changed up to this resourceVersion.
    Bookmark(String),
}

/// The events of one watch stream, in order. It ends when the server closes the stream; an
/// error (a broken connection, a cut event, an `ERROR` event) ends it too.
pub struct Watch {
    lines: BufReader<ureq::BodyReader<'static>>,
    done: bool,
}

impl Watch {
    pub(super) fn new(body: ureq::Body) -> Watch {
        Watch {
            lines: BufReader::new(body.into_reader()),
            done: false,
        }
    }
}

impl Iterator for Watch {
    type Item = Result<WatchEvent, KubeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut line = String::new();
        loop {
            line.clear();
            match self.lines.read_line(&mut line) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) if line.trim().is_empty() => continue,
                Ok(_) => {
                    let event = if line.ends_with('\n') {
                        parse_watch_event(&line)
                    } else {
                        Err(KubeError::InvalidResponse(
                            "the watch stream ended inside an event".to_string(),
                        ))
                    };
                    self.done = event.is_err();
                    return Some(event);
                }
                Err(error) => {
                    self.done = true;
                    let message = format!("the watch stream broke: {error}");
                    return Some(Err(if error.kind() == std::io::ErrorKind::TimedOut {
                        KubeError::Timeout(message)
                    } else {
                        KubeError::Transport(message)
                    }));
                }
            }
        }
    }
}

pub(crate) fn parse_watch_event(line: &str) -> Result<WatchEvent, KubeError> {
    let invalid = |why: &str| KubeError::InvalidResponse(format!("a watch event {why}"));
    let mut event: Value = serde_json::from_str(line).map_err(|e| invalid(&format!("is not JSON: {e}")))?;
    let object = event
        .get_mut("object")
        .map(Value::take)
        .ok_or_else(|| invalid("has no object"))?;
    match event["type"].as_str() {
        Some("ADDED") => Ok(WatchEvent::Added(object)),
        Some("MODIFIED") => Ok(WatchEvent::Modified(object)),
        Some("DELETED") => Ok(WatchEvent::Deleted(object)),
        Some("BOOKMARK") => {
            let resource_version = object::resource_version(&object).unwrap_or_default();
            Ok(WatchEvent::Bookmark(resource_version.to_string()))
        }
        Some("ERROR") => {
            let code = object["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500);
            Err(KubeError::from_response(code, None, object.to_string().as_bytes()))
        }
        _ => Err(invalid("has an unknown type")),
    }
}
