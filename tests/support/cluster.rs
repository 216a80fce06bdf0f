//! The fake cluster's state: the API server's object registry (defaults, validation,
//! resourceVersions, deletion semantics) and the controllers that act on it between requests
//! (garbage collector, scheduler + kubelet, PVC binder and protection).
//!
//! Behaviour follows `tests/fixtures/k8s-api-semantics.md`; section numbers below refer to it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::kubelet::{self, PodFate, PodProgress};
use super::names::{self, NameRule};
use super::owners::{Owners, has_finalizer, owner_uids};
use super::schema;
use super::selector::Selector;

/// A REST resource the fake serves.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    /// `""` for the core group.
    pub group: &'static str,
    pub schema: &'static str,
    pub list_schema: &'static str,
    pub name_rule: NameRule,
    /// Whether DELETE answers with the object (pods, services, PVCs) or a `Status` (§4).
    pub returns_deleted_object: bool,
    pub short_names: &'static [&'static str],
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            "v1".to_string()
        } else {
            format!("{}/v1", self.group)
        }
    }

    /// `pods`, or `ingresses.networking.k8s.io` outside the core group (as in messages).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Pod`, or `Ingress.networking.k8s.io` (as in 422 messages).
    fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    fn details(&self, name: &str) -> Value {
        let mut details = json!({"name": name});
        if !self.group.is_empty() {
            details["group"] = json!(self.group);
        }
        details["kind"] = json!(self.plural);
        details
    }
}

pub const RESOURCES: &[ResourceType] = &[
    ResourceType {
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        group: "",
        schema: "pod-v1.json",
        list_schema: "podlist-v1.json",
        name_rule: NameRule::Dns1123Subdomain,
        returns_deleted_object: true,
        short_names: &["po"],
    },
    ResourceType {
        plural: "services",
        singular: "service",
        kind: "Service",
        group: "",
        schema: "service-v1.json",
        list_schema: "servicelist-v1.json",
        name_rule: NameRule::Dns1035Label,
        returns_deleted_object: true,
        short_names: &["svc"],
    },
    ResourceType {
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        group: "",
        schema: "secret-v1.json",
        list_schema: "secretlist-v1.json",
        name_rule: NameRule::Dns1123Subdomain,
        returns_deleted_object: false,
        short_names: &[],
    },
    ResourceType {
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        kind: "PersistentVolumeClaim",
        group: "",
        schema: "persistentvolumeclaim-v1.json",
        list_schema: "persistentvolumeclaimlist-v1.json",
        name_rule: NameRule::Dns1123Subdomain,
        returns_deleted_object: true,
        short_names: &["pvc"],
    },
    ResourceType {
        plural: "ingresses",
        singular: "ingress",
        kind: "Ingress",
        group: "networking.k8s.io",
        schema: "ingress-networking-v1.json",
        list_schema: "ingresslist-networking-v1.json",
        name_rule: NameRule::Dns1123Subdomain,
        returns_deleted_object: false,
        short_names: &["ing"],
    },
    ResourceType {
        plural: "networkpolicies",
        singular: "networkpolicy",
        kind: "NetworkPolicy",
        group: "networking.k8s.io",
        schema: "networkpolicy-networking-v1.json",
        list_schema: "networkpolicylist-networking-v1.json",
        name_rule: NameRule::Dns1123Subdomain,
        returns_deleted_object: false,
        short_names: &["netpol"],
    },
    // The schema set has no Event: its fields are checked by hand (`validate_spec`), as the API
    // server's legacy event validation does, and against the real API server in the
    // control-plane tests.
    ResourceType {
        plural: "events",
        singular: "event",
        kind: "Event",
        group: "",
        schema: "",
        list_schema: "",
        name_rule: NameRule::Dns1123Subdomain,
        returns_deleted_object: false,
        short_names: &["ev"],
    },
];

pub fn resource(group: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|r| r.group == group && r.plural == plural)
}

/// A failed API call: the HTTP code and its `metav1.Status` body.
#[derive(Debug, Clone)]
pub struct StatusError {
    pub code: u16,
    pub status: Value,
}

impl StatusError {
    pub fn new(code: u16, reason: &str, message: &str, details: Option<Value>) -> StatusError {
        let mut status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason});
        if let Some(details) = details {
            status["details"] = details;
        }
        status["code"] = json!(code);
        StatusError { code, status }
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> StatusError {
        let message = format!("{} \"{name}\" not found", rt.qualified());
        StatusError::new(404, "NotFound", &message, Some(rt.details(name)))
    }

    fn already_exists(rt: &ResourceType, name: &str) -> StatusError {
        let message = format!("{} \"{name}\" already exists", rt.qualified());
        StatusError::new(409, "AlreadyExists", &message, Some(rt.details(name)))
    }

    fn conflict(rt: &ResourceType, name: &str, why: &str) -> StatusError {
        let message = format!("Operation cannot be fulfilled on {} \"{name}\": {why}", rt.qualified());
        StatusError::new(409, "Conflict", &message, Some(rt.details(name)))
    }

    pub fn bad_request(message: &str) -> StatusError {
        StatusError::new(400, "BadRequest", message, None)
    }

    pub fn expired(message: &str) -> StatusError {
        StatusError::new(410, "Expired", message, None)
    }

    /// 422 with one cause per field error `(field, reason, detail)` (§3.3).
    fn invalid(
        group_kind: &str,
        kind: &str,
        group: &str,
        name: &str,
        errors: &[(String, &str, String)],
    ) -> StatusError {
        let texts: Vec<String> = errors
            .iter()
            .map(|(field, _, detail)| format!("{field}: {detail}"))
            .collect();
        let joined = if texts.len() == 1 {
            texts[0].clone()
        } else {
            format!("[{}]", texts.join(", "))
        };
        let message = format!("{group_kind} \"{name}\" is invalid: {joined}");
        let causes: Vec<Value> = errors
            .iter()
            .map(|(field, reason, detail)| json!({"reason": reason, "message": detail, "field": field}))
            .collect();
        let mut details = json!({"name": name});
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        details["kind"] = json!(kind);
        details["causes"] = json!(causes);
        StatusError::new(422, "Invalid", &message, Some(details))
    }

    fn invalid_object(rt: &ResourceType, name: &str, errors: &[(String, &str, String)]) -> StatusError {
        StatusError::invalid(&rt.group_kind(), rt.kind, rt.group, name, errors)
    }
}

fn invalid_value(field: &str, value: &str, detail: &str) -> (String, &'static str, String) {
    (
        field.to_string(),
        "FieldValueInvalid",
        format!("Invalid value: \"{value}\": {detail}"),
    )
}

/// An object's place in the registry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub plural: &'static str,
    pub namespace: String,
    pub name: String,
}

/// How many changes are kept for watches (the real watch cache keeps a window too).
const EVENT_HISTORY: usize = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

struct Event {
    resource_version: u64,
    kind: EventKind,
    key: Key,
    object: Value,
}

impl Key {
    pub fn new(plural: &'static str, namespace: &str, name: &str) -> Key {
        Key {
            plural,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// DeleteOptions that matter here.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

/// One page of a list.
pub struct ListResult {
    pub items: Vec<Value>,
    pub resource_version: String,
    pub continue_token: Option<String>,
    /// Set only for a list without a selector, as the real server does.
    pub remaining: Option<usize>,
}

pub struct Cluster {
    objects: BTreeMap<Key, Value>,
    pub namespaces: BTreeSet<String>,
    resource_version: u64,
    /// Continue tokens from before this resourceVersion answer 410 Expired.
    compacted_before: u64,
    pods: HashMap<Key, PodProgress>,
    rules: Vec<(String, PodFate)>,
    /// Ticks a terminating pod takes to go (its containers stopping).
    pub termination_ticks: u32,
    /// Keeps terminating pods until released, to observe the window.
    pub hold_terminating: bool,
    /// Pods stay as they are (terminating ones still go), to observe an answer's moment.
    pub kubelet_frozen: bool,
    /// Pods of an agent-server image really run (`node.rs`), unless a rule says otherwise.
    pub runs_agents: bool,
    /// The `status.podIP` the simulated kubelet reports, where not its documentation address
    /// (a benchmark points it at an agent stand-in).
    pub pod_ip: Option<String>,
    /// Recent changes, for watches; older ones answer 410 Expired.
    events: VecDeque<Event>,
    /// Events up to this resourceVersion are no longer kept.
    history_starts_after: u64,
    /// The resourceVersion the volume controllers last acted on.
    controllers_saw: u64,
    /// What the garbage collector knows of ownership.
    owners: Owners,
    /// Every object received that breaks its strict schema; each one fails the test.
    pub violations: Vec<String>,
    /// Also check what the fake itself emits (off for benchmarks).
    pub validate_own_objects: bool,
}

pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

fn random_uid() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("random bytes");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn random_suffix() -> String {
    let mut b = [0u8; 5];
    getrandom::fill(&mut b).expect("random bytes");
    b.iter()
        .map(|x| (b"bcdfghjklmnpqrstvwxz2456789"[(*x as usize) % 27]) as char)
        .collect()
}

impl Cluster {
    pub fn new(namespaces: &[&str]) -> Cluster {
        Cluster {
            objects: BTreeMap::new(),
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            resource_version: 1000,
            compacted_before: 0,
            events: VecDeque::new(),
            history_starts_after: 0,
            controllers_saw: 0,
            owners: Owners::default(),
            pods: HashMap::new(),
            rules: Vec::new(),
            termination_ticks: 2,
            hold_terminating: false,
            kubelet_frozen: false,
            runs_agents: false,
            pod_ip: None,
            violations: Vec::new(),
            validate_own_objects: true,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    fn next_resource_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// Pods whose image contains `image_part` (or, for `label=value`, with that label) live out
    /// `fate` (the first matching rule wins).
    pub fn add_rule(&mut self, image_part: &str, fate: PodFate) {
        self.rules.push((image_part.to_string(), fate));
    }

    pub fn clear_rules(&mut self) {
        self.rules.clear();
    }

    pub fn set_fate(&mut self, namespace: &str, name: &str, fate: PodFate) -> bool {
        let key = Key::new("pods", namespace, name);
        match self.pods.get_mut(&key) {
            Some(progress) => {
                progress.fate = fate;
                progress.step = 1;
                progress.settled = false;
                true
            }
            None => false,
        }
    }

    /// Sets a pod's status by hand (and stops the kubelet from changing it).
    pub fn set_pod_status(&mut self, namespace: &str, name: &str, status: Value) -> bool {
        let key = Key::new("pods", namespace, name);
        let Some(mut pod) = self.objects.get(&key).cloned() else {
            return false;
        };
        pod["status"] = status;
        if let Some(progress) = self.pods.get_mut(&key) {
            progress.fate = PodFate::Scripted;
        }
        self.put(key, pod);
        true
    }

    /// Makes every continue token issued so far expire (as after an etcd compaction).
    pub fn compact(&mut self) {
        self.compacted_before = self.resource_version + 1;
        self.history_starts_after = self.resource_version;
        self.events.clear();
    }

    pub fn objects(&self, plural: &str) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| k.plural == plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.objects
            .iter()
            .find(|(k, _)| k.plural == plural && k.namespace == namespace && k.name == name)
            .map(|(_, v)| v.clone())
    }

    pub fn all_objects(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.objects.iter()
    }

    fn check_own(&mut self, rt: &ResourceType, object: &Value) {
        if self.validate_own_objects {
            let problems = schema::object_errors(rt.schema, rt.kind, &rt.api_version(), object);
            if !problems.is_empty() {
                self.violations.push(format!(
                    "the fake emitted an invalid {}: {}",
                    rt.kind,
                    problems.join("; ")
                ));
            }
        }
    }

    // ---- the registry: create, get, list, delete, patch ----

    pub fn create(&mut self, rt: &'static ResourceType, namespace: &str, body: &[u8]) -> Result<Value, StatusError> {
        let mut object: Value = match serde_json::from_slice(body) {
            Ok(value @ Value::Object(_)) => value,
            Ok(_) => return Err(StatusError::bad_request("the body of the request is not a JSON object")),
            Err(e) => {
                return Err(StatusError::bad_request(&format!(
                    "error decoding the request body: {e}"
                )));
            }
        };
        let problems = schema::object_errors(rt.schema, rt.kind, &rt.api_version(), &object);
        if !problems.is_empty() {
            self.violations
                .push(format!("POST {}: {}", rt.qualified(), problems.join("; ")));
            let message = format!(
                "{} in version \"v1\" cannot be handled as a {}: strict decoding error: {}",
                rt.kind,
                rt.kind,
                problems.join(", ")
            );
            return Err(StatusError::bad_request(&message));
        }
        if !self.namespaces.contains(namespace) {
            let details = json!({"name": namespace, "kind": "namespaces"});
            return Err(StatusError::new(
                404,
                "NotFound",
                &format!("namespaces \"{namespace}\" not found"),
                Some(details),
            ));
        }
        let metadata = &mut object["metadata"];
        if !metadata.is_object() {
            *metadata = json!({});
        }
        match metadata["namespace"].as_str() {
            Some(ns) if !ns.is_empty() && ns != namespace => {
                return Err(StatusError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => metadata["namespace"] = json!(namespace),
        }
        let name = match (metadata["name"].as_str(), metadata["generateName"].as_str()) {
            (Some(name), _) if !name.is_empty() => name.to_string(),
            (_, Some(prefix)) if !prefix.is_empty() => format!("{prefix}{}", random_suffix()),
            _ => {
                let error = (
                    "metadata.name".to_string(),
                    "FieldValueRequired",
                    "Required value: name or generateName is required".to_string(),
                );
                return Err(StatusError::invalid_object(rt, "", &[error]));
            }
        };
        metadata["name"] = json!(name);
        let errors = validate_metadata(rt, &name, metadata)
            .into_iter()
            .chain(validate_spec(rt, &object))
            .collect::<Vec<_>>();
        if !errors.is_empty() {
            return Err(StatusError::invalid_object(rt, &name, &errors));
        }
        let key = Key {
            plural: rt.plural,
            namespace: namespace.to_string(),
            name: name.clone(),
        };
        if self.objects.contains_key(&key) {
            return Err(StatusError::already_exists(rt, &name));
        }
        if rt.plural == "secrets" {
            fold_string_data(&mut object)?;
        }
        let now = timestamp(SystemTime::now());
        let metadata = &mut object["metadata"];
        metadata["uid"] = json!(random_uid());
        metadata["creationTimestamp"] = json!(now);
        for server_set in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            if let Some(m) = metadata.as_object_mut() {
                m.remove(server_set);
            }
        }
        object["kind"] = json!(rt.kind);
        object["apiVersion"] = json!(rt.api_version());
        apply_defaults(rt, &mut object);
        if rt.plural == "pods" {
            let image = object["spec"]["containers"][0]["image"].as_str().unwrap_or_default();
            let labels = &object["metadata"]["labels"];
            let fate = self
                .rules
                .iter()
                .find(|(part, _)| match part.split_once('=') {
                    Some((label, value)) => labels[label] == value,
                    None => image.contains(part.as_str()),
                })
                .map(|(_, fate)| fate.clone())
                .unwrap_or(if self.runs_agents && super::node::is_agent_server_image(image) {
                    PodFate::Runs
                } else {
                    PodFate::Ready
                });
            self.pods.insert(key.clone(), PodProgress::new(fate));
        }
        self.check_own(rt, &object);
        Ok(self.put(key, object))
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value, StatusError> {
        self.object(rt.plural, namespace, name)
            .ok_or_else(|| StatusError::not_found(rt, name))
    }

    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        label_selector: &str,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListResult, StatusError> {
        let selector = Selector::parse(label_selector).map_err(|e| StatusError::bad_request(&e))?;
        let start_after = match continue_token {
            None => None,
            Some(token) => Some(self.decode_continue(token)?),
        };
        // Keys sort by kind, namespace, name: a page starts where the last one ended.
        let from = match &start_after {
            Some((after_namespace, after_name)) => Bound::Excluded(Key::new(rt.plural, after_namespace, after_name)),
            None => Bound::Included(Key::new(rt.plural, namespace.unwrap_or(""), "")),
        };
        let mut matching = self
            .objects
            .range((from, Bound::Unbounded))
            .take_while(|(k, _)| k.plural == rt.plural)
            .filter(|(k, v)| {
                namespace.is_none_or(|ns| k.namespace == ns) && selector.matches(v["metadata"]["labels"].as_object())
            });
        // `limit=0` means no limit, as on the real server.
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let page: Vec<(&Key, &Value)> = matching.by_ref().take(limit).collect();
        let more = matching.next().is_some();
        // With a selector the server cannot know how many remain without reading them all,
        // and leaves `remainingItemCount` out (ListMeta's documentation).
        let remaining = (more && label_selector.is_empty()).then(|| 1 + matching.count());
        let items = page
            .iter()
            .map(|(_, object)| {
                let mut item = (*object).clone();
                // Items of a list carry no kind or apiVersion (kubernetes/kubernetes#3030).
                if let Some(map) = item.as_object_mut() {
                    map.remove("kind");
                    map.remove("apiVersion");
                }
                item
            })
            .collect();
        let continue_token = more.then(|| {
            let last = page[page.len() - 1].0;
            let token = json!({"v": "meta.k8s.io/v1", "rv": self.resource_version,
                "start": format!("{}\u{0}{}", last.namespace, last.name)});
            BASE64.encode(token.to_string())
        });
        Ok(ListResult {
            items,
            resource_version: self.resource_version.to_string(),
            continue_token,
            remaining,
        })
    }

    fn decode_continue(&self, token: &str) -> Result<(String, String), StatusError> {
        let bad = || StatusError::bad_request(&format!("continue key is not valid: {token}"));
        let decoded = BASE64.decode(token).map_err(|_| bad())?;
        let value: Value = serde_json::from_slice(&decoded).map_err(|_| bad())?;
        let rv = value["rv"].as_u64().ok_or_else(bad)?;
        if rv < self.compacted_before {
            return Err(StatusError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            ));
        }
        let start = value["start"].as_str().ok_or_else(bad)?;
        let (namespace, name) = start.split_once('\u{0}').ok_or_else(bad)?;
        Ok((namespace.to_string(), name.to_string()))
    }

    pub fn delete(
        &mut self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value, StatusError> {
        let policy = options.propagation_policy.as_deref().unwrap_or("Background");
        if !["Background", "Foreground", "Orphan"].contains(&policy) {
            let detail = format!(
                "Unsupported value: \"{policy}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            );
            let error = ("propagationPolicy".to_string(), "FieldValueNotSupported", detail);
            return Err(StatusError::invalid(
                "DeleteOptions.meta.k8s.io",
                "DeleteOptions",
                "meta.k8s.io",
                "",
                &[error],
            ));
        }
        let key = Key::new(rt.plural, namespace, name);
        let Some(current) = self.objects.get(&key).cloned() else {
            return Err(StatusError::not_found(rt, name));
        };
        let uid = current["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        if options.precondition_uid.as_ref().is_some_and(|want| *want != uid) {
            let why = format!(
                "Precondition failed: UID in precondition: {}, UID in object meta: {uid}",
                options.precondition_uid.as_deref().unwrap_or_default()
            );
            return Err(StatusError::conflict(rt, name, &why));
        }
        let rv = current["metadata"]["resourceVersion"].as_str().unwrap_or_default();
        if options
            .precondition_resource_version
            .as_deref()
            .is_some_and(|want| want != rv)
        {
            let why = format!(
                "Precondition failed: ResourceVersion in precondition: {}, ResourceVersion in object meta: {rv}",
                options.precondition_resource_version.as_deref().unwrap_or_default()
            );
            return Err(StatusError::conflict(rt, name, &why));
        }
        if policy == "Orphan" {
            self.orphan_dependents(&uid);
        }
        let deleted = self.delete_key(&key, options.grace_period_seconds, policy == "Foreground");
        if rt.returns_deleted_object {
            Ok(deleted)
        } else {
            let mut details = rt.details(name);
            details["uid"] = json!(uid);
            Ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}))
        }
    }

    /// Deletes (or starts deleting) an object and returns its last state. Pods on a node
    /// terminate gracefully; objects with finalizers wait for them (§4).
    fn delete_key(&mut self, key: &Key, grace: Option<i64>, foreground: bool) -> Value {
        let Some(mut object) = self.objects.get(key).cloned() else {
            return Value::Null;
        };
        if !object["metadata"]["deletionTimestamp"].is_null() {
            return object;
        }
        let grace = if key.plural == "pods" {
            let phase = object["status"]["phase"].as_str().unwrap_or_default();
            let on_node = !object["spec"]["nodeName"].is_null();
            if !on_node || phase == "Failed" || phase == "Succeeded" {
                0
            } else {
                grace
                    .or_else(|| object["spec"]["terminationGracePeriodSeconds"].as_i64())
                    .unwrap_or(30)
            }
        } else {
            0
        };
        if foreground {
            push_finalizer(&mut object, "foregroundDeletion");
        }
        let has_finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if grace > 0 || has_finalizers {
            let at = SystemTime::now() + Duration::from_secs(grace.max(0) as u64);
            object["metadata"]["deletionTimestamp"] = json!(timestamp(at));
            object["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            object = self.put(key.clone(), object);
            // The kubelet has a termination to carry out.
            if let Some(progress) = self.pods.get_mut(key) {
                progress.settled = false;
            }
        } else {
            self.remove(key);
        }
        object
    }

    /// Stores an object under a new resourceVersion and records the watch event.
    fn put(&mut self, key: Key, mut object: Value) -> Value {
        object["metadata"]["resourceVersion"] = json!(self.next_resource_version());
        let kind = if self.objects.contains_key(&key) {
            EventKind::Modified
        } else {
            EventKind::Added
        };
        self.record(kind, &key, &object);
        self.owners.stored(&key, self.objects.get(&key), &object);
        self.objects.insert(key, object.clone());
        object
    }

    fn remove(&mut self, key: &Key) {
        if let Some(mut object) = self.objects.remove(key) {
            self.pods.remove(key);
            self.owners.removed(key, &object);
            object["metadata"]["resourceVersion"] = json!(self.next_resource_version());
            self.record(EventKind::Deleted, key, &object);
        }
    }

    fn record(&mut self, kind: EventKind, key: &Key, object: &Value) {
        self.events.push_back(Event {
            resource_version: self.resource_version,
            kind,
            key: key.clone(),
            object: object.clone(),
        });
        if self.events.len() > EVENT_HISTORY {
            if let Some(dropped) = self.events.pop_front() {
                self.history_starts_after = dropped.resource_version;
            }
        }
    }

    /// Events after `resource_version` for a watch, or 410 when they are no longer kept.
    pub fn events_after(
        &self,
        resource_version: u64,
        plural: &str,
        namespace: &str,
        selector: &Selector,
    ) -> Result<Vec<(EventKind, u64, Value)>, StatusError> {
        if resource_version < self.history_starts_after {
            let message = format!(
                "too old resource version: {resource_version} ({})",
                self.history_starts_after + 1
            );
            return Err(StatusError::expired(&message));
        }
        // Events are kept in resourceVersion order: the first one after it is found by halving.
        let first = self.events.partition_point(|e| e.resource_version <= resource_version);
        Ok(self
            .events
            .range(first..)
            .filter(|e| {
                e.key.plural == plural
                    && e.key.namespace == namespace
                    && selector.matches(e.object["metadata"]["labels"].as_object())
            })
            .map(|e| (e.kind, e.resource_version, e.object.clone()))
            .collect())
    }

    /// The current objects as ADDED events, for a watch that starts "now".
    pub fn current_as_events(
        &self,
        plural: &str,
        namespace: &str,
        selector: &Selector,
    ) -> Vec<(EventKind, u64, Value)> {
        self.objects
            .iter()
            .filter(|(k, v)| {
                k.plural == plural && k.namespace == namespace && selector.matches(v["metadata"]["labels"].as_object())
            })
            .map(|(_, v)| (EventKind::Added, self.resource_version, v.clone()))
            .collect()
    }

    fn orphan_dependents(&mut self, owner_uid: &str) {
        for key in self.owners.dependents_of(owner_uid) {
            if let Some(mut object) = self.objects.get(&key).cloned() {
                if let Some(refs) = object["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"].as_str() != Some(owner_uid));
                }
                self.put(key, object);
            }
        }
    }

    /// Applies an RFC 7386 merge patch, with the checks of an update.
    pub fn merge_patch(
        &mut self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        body: &[u8],
    ) -> Result<Value, StatusError> {
        let patch: Value = serde_json::from_slice(body)
            .map_err(|e| StatusError::bad_request(&format!("error decoding patch: {e}")))?;
        let key = Key::new(rt.plural, namespace, name);
        let Some(current) = self.objects.get(&key).cloned() else {
            return Err(StatusError::not_found(rt, name));
        };
        if let Some(wanted) = patch["metadata"]["resourceVersion"].as_str() {
            if Some(wanted) != current["metadata"]["resourceVersion"].as_str() {
                return Err(StatusError::conflict(
                    rt,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
        }
        let mut updated = current.clone();
        merge(&mut updated, &patch);
        for fixed in ["name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"] {
            if updated["metadata"][fixed] != current["metadata"][fixed] {
                if fixed == "name" || fixed == "namespace" {
                    return Err(StatusError::bad_request(&format!(
                        "the {fixed} of the object ({}) does not match the {fixed} on the URL ({})",
                        updated["metadata"][fixed].as_str().unwrap_or_default(),
                        current["metadata"][fixed].as_str().unwrap_or_default()
                    )));
                }
                updated["metadata"][fixed] = current["metadata"][fixed].clone();
            }
        }
        updated["status"] = current["status"].clone();
        if updated.get("status") == Some(&Value::Null) {
            if let Some(m) = updated.as_object_mut() {
                m.remove("status");
            }
        }
        let problems = schema::object_errors(rt.schema, rt.kind, &rt.api_version(), &updated);
        if !problems.is_empty() {
            self.violations
                .push(format!("PATCH {} {name}: {}", rt.qualified(), problems.join("; ")));
            return Err(StatusError::invalid_object(
                rt,
                name,
                &[("patch".to_string(), "FieldValueInvalid", problems.join(", "))],
            ));
        }
        if rt.plural == "pods" && !pod_spec_change_allowed(&current["spec"], &updated["spec"]) {
            let detail = "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";
            return Err(StatusError::invalid_object(
                rt,
                name,
                &[("spec".to_string(), "FieldValueForbidden", detail.to_string())],
            ));
        }
        let mut errors = validate_metadata(rt, name, &mut updated["metadata"]);
        errors.extend(validate_spec(rt, &updated));
        if !errors.is_empty() {
            return Err(StatusError::invalid_object(rt, name, &errors));
        }
        if rt.plural == "secrets" {
            fold_string_data(&mut updated)?;
        }
        if updated == current {
            return Ok(current);
        }
        if updated["spec"] != current["spec"] && !current["metadata"]["generation"].is_null() {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            updated["metadata"]["generation"] = json!(generation);
        }
        self.check_own(rt, &updated);
        Ok(self.put(key, updated))
    }

    // ---- controllers ----

    /// One round of the controllers: kubelet and scheduler, graceful termination, garbage
    /// collection, PVC binding and protection. Returns whether anything changed.
    pub fn tick(&mut self) -> bool {
        let before = self.resource_version;
        let now = timestamp(SystemTime::now());
        self.run_kubelet(&now);
        // Like the real controllers, these act on changes; in a still cluster there is nothing
        // for them to do (and looking at every object each tick is what a benchmark would see).
        self.collect_garbage();
        if self.resource_version != self.controllers_saw {
            // What they change themselves is looked at on the next tick.
            self.controllers_saw = self.resource_version;
            self.run_volume_controllers();
        }
        self.resource_version != before
    }

    fn run_kubelet(&mut self, now: &str) {
        let pod_keys: Vec<Key> = self
            .pods
            .iter()
            .filter(|(_, progress)| !progress.settled)
            .map(|(key, _)| key.clone())
            .collect();
        for key in pod_keys {
            let Some(terminating) = self
                .objects
                .get(&key)
                .map(|pod| !pod["metadata"]["deletionTimestamp"].is_null())
            else {
                self.pods.remove(&key);
                continue;
            };
            let Some(progress) = self.pods.get_mut(&key) else {
                continue;
            };
            if progress.fate == PodFate::Runs {
                progress.settled = true;
                continue;
            }
            if terminating {
                progress.terminating_for += 1;
                if progress.terminating_for >= self.termination_ticks && !self.hold_terminating {
                    let finalizers = self.objects[&key]["metadata"]["finalizers"]
                        .as_array()
                        .is_some_and(|f| !f.is_empty());
                    if !finalizers {
                        self.remove(&key);
                    }
                }
                continue;
            }
            if self.kubelet_frozen {
                continue;
            }
            let mut pod = self.objects[&key].clone();
            let mut advanced = kubelet::advance(&mut pod, progress, now);
            if advanced && let Some(ip) = &self.pod_ip {
                if pod["status"]["podIP"].is_string() {
                    pod["status"]["podIP"] = json!(ip);
                    pod["status"]["podIPs"] = json!([{"ip": ip}]);
                }
                // The kubelet's own address differs from the one written: no change by itself.
                advanced = pod != self.objects[&key];
            }
            if advanced {
                let rt = &RESOURCES[0];
                self.check_own(rt, &pod);
                self.put(key, pod);
            } else {
                // Crash loops and image pulls go round forever; the other fates end.
                progress.settled = !matches!(progress.fate, PodFate::CrashLoop { .. } | PodFate::ImagePullBackOff);
            }
        }
    }

    // ---- for the node that runs pods (node.rs) ----

    /// The pods whose containers really run: key and current object.
    pub fn running_pods(&self) -> Vec<(Key, Value)> {
        self.pods
            .iter()
            .filter(|(_, progress)| progress.fate == PodFate::Runs)
            .filter_map(|(key, _)| Some((key.clone(), self.objects.get(key)?.clone())))
            .collect()
    }

    /// Writes what the node reports of a pod (its node name and status), if it is still the pod
    /// with `uid` and the report changes it.
    pub fn report_pod(&mut self, key: &Key, uid: &str, node_name: &str, status: Value) -> bool {
        let Some(mut pod) = self.objects.get(key).cloned() else {
            return false;
        };
        if pod["metadata"]["uid"] != uid || (pod["status"] == status && pod["spec"]["nodeName"] == node_name) {
            return false;
        }
        let mut status = status;
        kubelet::keep_transition_times(&pod["status"], &mut status);
        if pod["status"] == status && pod["spec"]["nodeName"] == node_name {
            return false;
        }
        pod["spec"]["nodeName"] = json!(node_name);
        pod["status"] = status;
        self.check_own(&RESOURCES[0], &pod);
        self.put(key.clone(), pod);
        true
    }

    /// The node has stopped a deleted pod's containers: the pod goes, unless finalizers hold it.
    pub fn pod_terminated(&mut self, key: &Key, uid: &str) {
        let held = self.objects.get(key).is_none_or(|pod| {
            pod["metadata"]["uid"] != uid || pod["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
        });
        if !held {
            self.remove(key);
        }
    }

    /// Deletes dependents all of whose owners are gone, and lets an owner deleted in the
    /// foreground go once its dependents have; only objects whose ownership changed are looked at.
    fn collect_garbage(&mut self) {
        for key in self.owners.take_to_check() {
            let Some(object) = self.objects.get(&key) else {
                continue;
            };
            let owners = owner_uids(object);
            if !owners.is_empty() && owners.iter().all(|u| !self.owners.is_live(u)) {
                self.delete_key(&key, None, false);
                continue;
            }
            if has_finalizer(object, "foregroundDeletion") {
                let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
                let dependents = self.owners.dependents_of(uid);
                if dependents.is_empty() {
                    self.remove_finalizer(&key, "foregroundDeletion");
                }
                for dependent in dependents {
                    self.delete_key(&dependent, None, false);
                }
            }
        }
    }

    fn run_volume_controllers(&mut self) {
        let claims: Vec<Key> = self
            .objects
            .range(Key::new("persistentvolumeclaims", "", "")..)
            .take_while(|(k, _)| k.plural == "persistentvolumeclaims")
            .map(|(k, _)| k.clone())
            .collect();
        for key in claims {
            let Some(claim) = self.objects.get(&key).cloned() else {
                continue;
            };
            if !claim["metadata"]["deletionTimestamp"].is_null() {
                let in_use = self.objects.iter().any(|(k, pod)| {
                    k.plural == "pods"
                        && k.namespace == key.namespace
                        && pod["spec"]["volumes"].as_array().is_some_and(|volumes| {
                            volumes
                                .iter()
                                .any(|v| v["persistentVolumeClaim"]["claimName"].as_str() == Some(key.name.as_str()))
                        })
                });
                if !in_use {
                    self.remove_finalizer(&key, "kubernetes.io/pvc-protection");
                }
            } else if claim["status"]["phase"] == "Pending" {
                let mut bound = claim.clone();
                let uid = claim["metadata"]["uid"].as_str().unwrap_or_default();
                bound["spec"]["volumeName"] = json!(format!("pvc-{uid}"));
                bound["status"] = json!({
                    "phase": "Bound",
                    "accessModes": claim["spec"]["accessModes"],
                    "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
                });
                self.put(key, bound);
            }
        }
    }

    fn remove_finalizer(&mut self, key: &Key, finalizer: &str) {
        let Some(mut object) = self.objects.get(key).cloned() else {
            return;
        };
        if let Some(list) = object["metadata"]["finalizers"].as_array_mut() {
            list.retain(|f| f.as_str() != Some(finalizer));
        }
        let done = object["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
        if done && !object["metadata"]["deletionTimestamp"].is_null() {
            self.remove(key);
        } else {
            self.put(key.clone(), object);
        }
    }

    /// Deletes an object as an operator would (`kubectl delete`), outside any request.
    pub fn delete_by_operator(&mut self, plural: &str, namespace: &str, name: &str) -> bool {
        let key = Key {
            plural: RESOURCES.iter().find(|r| r.plural == plural).map_or("", |r| r.plural),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        if !self.objects.contains_key(&key) {
            return false;
        }
        self.delete_key(&key, None, false);
        true
    }
}

fn push_finalizer(object: &mut Value, finalizer: &str) {
    if has_finalizer(object, finalizer) {
        return;
    }
    match object["metadata"]["finalizers"].as_array_mut() {
        Some(list) => list.push(json!(finalizer)),
        None => object["metadata"]["finalizers"] = json!([finalizer]),
    }
}

/// RFC 7386.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn pod_spec_change_allowed(before: &Value, after: &Value) -> bool {
    let strip = |spec: &Value| {
        let mut spec = spec.clone();
        if let Some(containers) = spec["containers"].as_array_mut() {
            for c in containers {
                c["image"] = Value::Null;
            }
        }
        for field in ["activeDeadlineSeconds", "tolerations"] {
            if let Some(m) = spec.as_object_mut() {
                m.remove(field);
            }
        }
        spec
    };
    strip(before) == strip(after)
}

/// The real server stores `stringData` into `data` (base64) and never returns it.
fn fold_string_data(secret: &mut Value) -> Result<(), StatusError> {
    if let Some(data) = secret["data"].as_object() {
        for (key, value) in data {
            let valid = value.as_str().is_some_and(|v| BASE64.decode(v).is_ok());
            if !valid {
                return Err(StatusError::bad_request(&format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 0 (data.{key})"
                )));
            }
        }
    }
    if let Some(Value::Object(string_data)) = secret.as_object_mut().and_then(|m| m.remove("stringData")) {
        if !secret["data"].is_object() {
            secret["data"] = json!({});
        }
        for (key, value) in string_data {
            secret["data"][key] = json!(BASE64.encode(value.as_str().unwrap_or_default()));
        }
    }
    Ok(())
}

fn validate_metadata(rt: &ResourceType, name: &str, metadata: &mut Value) -> Vec<(String, &'static str, String)> {
    let mut errors = Vec::new();
    for problem in names::name_problems(rt.name_rule, name) {
        errors.push(invalid_value("metadata.name", name, &problem));
    }
    let empty = Map::new();
    for (key, value) in metadata["labels"].as_object().unwrap_or(&empty) {
        for problem in names::key_problems(key) {
            errors.push(invalid_value("metadata.labels", key, &problem));
        }
        let value = value.as_str().unwrap_or_default();
        for problem in names::label_value_problems(value) {
            errors.push(invalid_value(&format!("metadata.labels[{key}]"), value, &problem));
        }
    }
    for key in metadata["annotations"].as_object().unwrap_or(&empty).keys() {
        for problem in names::key_problems(&key.to_lowercase()) {
            errors.push(invalid_value("metadata.annotations", key, &problem));
        }
    }
    let annotation_bytes: usize = metadata["annotations"]
        .as_object()
        .map(|a| a.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum())
        .unwrap_or(0);
    if annotation_bytes > 256 * 1024 {
        errors.push((
            "metadata.annotations".to_string(),
            "FieldValueTooLong",
            "Too long: must have at most 262144 bytes".to_string(),
        ));
    }
    errors
}

fn validate_spec(rt: &ResourceType, object: &Value) -> Vec<(String, &'static str, String)> {
    let mut errors = Vec::new();
    let required = |field: &str| (field.to_string(), "FieldValueRequired", "Required value".to_string());
    match rt.plural {
        "events" => {
            // pkg/apis/core/validation/events.go, legacyValidateEvent without eventTime.
            let involved = &object["involvedObject"];
            if involved["namespace"] != object["metadata"]["namespace"] {
                errors.push(invalid_value(
                    "involvedObject.namespace",
                    involved["namespace"].as_str().unwrap_or_default(),
                    "does not match event.namespace",
                ));
            }
            for field in ["involvedObject", "reason", "message"] {
                if object[field].is_null() {
                    errors.push(required(field));
                }
            }
            let allowed = [
                "apiVersion",
                "kind",
                "metadata",
                "involvedObject",
                "reason",
                "message",
                "source",
                "firstTimestamp",
                "lastTimestamp",
                "count",
                "type",
                "eventTime",
                "series",
                "action",
                "related",
                "reportingComponent",
                "reportingInstance",
            ];
            for field in object.as_object().into_iter().flat_map(|o| o.keys()) {
                if !allowed.contains(&field.as_str()) {
                    errors.push((field.clone(), "FieldValueNotSupported", "unknown field".to_string()));
                }
            }
        }
        "pods" => {
            let containers = object["spec"]["containers"].as_array().cloned().unwrap_or_default();
            if containers.is_empty() {
                errors.push(required("spec.containers"));
            }
            for (i, c) in containers.iter().enumerate() {
                let name = c["name"].as_str().unwrap_or_default();
                for p in names::name_problems(NameRule::Dns1123Label, name) {
                    errors.push(invalid_value(&format!("spec.containers[{i}].name"), name, &p));
                }
                if c["image"].as_str().is_none_or(str::is_empty) {
                    errors.push(required(&format!("spec.containers[{i}].image")));
                }
                for (j, port) in c["ports"].as_array().cloned().unwrap_or_default().iter().enumerate() {
                    if let Some(port_name) = port["name"].as_str() {
                        let valid = port_name.len() <= 15
                            && port_name.bytes().any(|b| b.is_ascii_lowercase())
                            && port_name
                                .bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                        if !valid {
                            errors.push(invalid_value(
                                &format!("spec.containers[{i}].ports[{j}].name"),
                                port_name,
                                "must be no more than 15 characters and contain only lowercase letters, digits and '-'",
                            ));
                        }
                    }
                }
                let mount_names: BTreeSet<&str> = object["spec"]["volumes"]
                    .as_array()
                    .map(|v| v.iter().filter_map(|v| v["name"].as_str()).collect())
                    .unwrap_or_default();
                for (j, mount) in c["volumeMounts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    let mount_name = mount["name"].as_str().unwrap_or_default();
                    if !mount_names.contains(mount_name) {
                        errors.push((
                            "spec.containers[".to_string() + &format!("{i}].volumeMounts[{j}].name"),
                            "FieldValueNotFound",
                            format!("Not found: \"{mount_name}\""),
                        ));
                    }
                }
                for (j, env) in c["env"].as_array().cloned().unwrap_or_default().iter().enumerate() {
                    let env_name = env["name"].as_str().unwrap_or_default().to_string();
                    if env_name.is_empty() {
                        errors.push(required(&format!("spec.containers[{i}].env[{j}].name")));
                    }
                    if !env["value"].is_null() && !env["valueFrom"].is_null() {
                        errors.push(invalid_value(
                            &format!("spec.containers[{i}].env[{j}].valueFrom"),
                            "",
                            "may not be specified when `value` is not empty",
                        ));
                    }
                }
            }
        }
        "services" if object["spec"]["ports"].as_array().is_none_or(|p| p.is_empty()) => {
            errors.push(required("spec.ports"));
        }
        "ingresses" => {
            for (i, rule) in object["spec"]["rules"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let host = rule["host"].as_str().unwrap_or_default();
                if !host.is_empty() {
                    let wildcard_free = host.strip_prefix("*.").unwrap_or(host);
                    for p in names::name_problems(NameRule::Dns1123Subdomain, wildcard_free) {
                        errors.push(invalid_value(&format!("spec.rules[{i}].host"), host, &p));
                    }
                    if host.split('.').any(|label| label.len() > 63) {
                        errors.push(invalid_value(
                            &format!("spec.rules[{i}].host"),
                            host,
                            "must be no more than 63 characters",
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    errors
}

/// What the real API server fills in on create (§2), so that code round-tripping objects
/// badly is caught.
fn apply_defaults(rt: &ResourceType, object: &mut Value) {
    match rt.plural {
        "pods" => {
            let spec = &mut object["spec"];
            let defaults = [
                ("restartPolicy", json!("Always")),
                ("dnsPolicy", json!("ClusterFirst")),
                ("schedulerName", json!("default-scheduler")),
                ("terminationGracePeriodSeconds", json!(30)),
                ("serviceAccountName", json!("default")),
                ("serviceAccount", json!("default")),
                ("enableServiceLinks", json!(true)),
                ("securityContext", json!({})),
                ("priority", json!(0)),
                ("preemptionPolicy", json!("PreemptLowerPriority")),
            ];
            for (field, value) in defaults {
                if spec[field].is_null() {
                    spec[field] = value;
                }
            }
            let mut tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
            for taint in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
                tolerations
                    .push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
            spec["tolerations"] = json!(tolerations);
            let automount = spec["automountServiceAccountToken"].as_bool() != Some(false);
            let token_volume = format!("kube-api-access-{}", random_suffix());
            if automount {
                let volume = json!({"name": token_volume, "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]}});
                match spec["volumes"].as_array_mut() {
                    Some(volumes) => volumes.push(volume),
                    None => spec["volumes"] = json!([volume]),
                }
            }
            if let Some(containers) = spec["containers"].as_array_mut() {
                for c in containers {
                    let image = c["image"].as_str().unwrap_or_default();
                    let tag = image.rsplit('/').next().unwrap_or_default();
                    let latest = !image.contains('@') && (!tag.contains(':') || tag.ends_with(":latest"));
                    if c["imagePullPolicy"].is_null() {
                        c["imagePullPolicy"] = json!(if latest { "Always" } else { "IfNotPresent" });
                    }
                    for (field, value) in [
                        ("terminationMessagePath", json!("/dev/termination-log")),
                        ("terminationMessagePolicy", json!("File")),
                        ("resources", json!({})),
                    ] {
                        if c[field].is_null() {
                            c[field] = value;
                        }
                    }
                    if let Some(ports) = c["ports"].as_array_mut() {
                        for p in ports {
                            if p["protocol"].is_null() {
                                p["protocol"] = json!("TCP");
                            }
                        }
                    }
                    if automount {
                        let mount = json!({"name": token_volume, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
                        match c["volumeMounts"].as_array_mut() {
                            Some(mounts) => mounts.push(mount),
                            None => c["volumeMounts"] = json!([mount]),
                        }
                    }
                }
            }
            object["status"] = kubelet::initial_status(object);
        }
        "services" => {
            let mut b = [0u8; 2];
            getrandom::fill(&mut b).expect("random bytes");
            let ip = format!("10.96.{}.{}", b[0], b[1].max(1));
            let spec = &mut object["spec"];
            for (field, value) in [
                ("type", json!("ClusterIP")),
                ("sessionAffinity", json!("None")),
                ("ipFamilies", json!(["IPv4"])),
                ("ipFamilyPolicy", json!("SingleStack")),
                ("internalTrafficPolicy", json!("Cluster")),
            ] {
                if spec[field].is_null() {
                    spec[field] = value;
                }
            }
            if spec["clusterIP"].is_null() {
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
            }
            if let Some(ports) = spec["ports"].as_array_mut() {
                for p in ports {
                    if p["protocol"].is_null() {
                        p["protocol"] = json!("TCP");
                    }
                    if p["targetPort"].is_null() {
                        p["targetPort"] = p["port"].clone();
                    }
                }
            }
            object["status"] = json!({"loadBalancer": {}});
        }
        "secrets" if object["type"].is_null() => {
            object["type"] = json!("Opaque");
        }
        "persistentvolumeclaims" => {
            push_finalizer(object, "kubernetes.io/pvc-protection");
            if object["spec"]["volumeMode"].is_null() {
                object["spec"]["volumeMode"] = json!("Filesystem");
            }
            object["status"] = json!({"phase": "Pending"});
        }
        "ingresses" => {
            object["metadata"]["generation"] = json!(1);
            object["status"] = json!({"loadBalancer": {}});
        }
        "networkpolicies" => {
            object["metadata"]["generation"] = json!(1);
        }
        _ => {}
    }
}
