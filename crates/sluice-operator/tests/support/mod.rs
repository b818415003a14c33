//! An in-memory Kubernetes API server for reconcile tests: a `tower` service behind a real
//! `kube::Client`. It stores objects by URL path, implements GET, server-side apply (per field
//! manager: each manager's last applied configuration is kept, and the object is their merge —
//! so a field one manager drops stays while another still applies it — then server defaults are
//! filled in), JSON merge patches with a `resourceVersion` precondition, DELETE and POST, and
//! records every write so tests can assert on them (including "no writes at all").

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use kube::Client;
use serde_json::{Value, json};

/// One recorded write.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub method: Method,
    pub path: String,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    /// Per object: each field manager's last applied configuration, in order of first apply.
    applied: BTreeMap<String, Vec<(String, Value)>>,
    writes: Vec<Write>,
    /// Paths read (GET), in order.
    reads: Vec<String>,
    resource_version: u64,
    uid_counter: u64,
    /// While set, every request fails with this status code.
    fail_with: Option<u16>,
}

/// Handle on the fake API server's state.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn respond(code: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap()
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Fills in a few defaults a real API server adds, so that tests prove the operator tolerates
/// them instead of re-applying forever.
fn apply_defaults(path: &str, obj: &mut Value) {
    if path.contains("/deployments/")
        && let Some(pod) = obj.pointer_mut("/spec/template/spec")
    {
        pod["dnsPolicy"] = json!("ClusterFirst");
        pod["restartPolicy"] = json!("Always");
        pod["schedulerName"] = json!("default-scheduler");
        for c in pod["containers"].as_array_mut().into_iter().flatten() {
            c["imagePullPolicy"] = json!("IfNotPresent");
            c["terminationMessagePath"] = json!("/dev/termination-log");
            c["terminationMessagePolicy"] = json!("File");
        }
    }
    if path.contains("/services/")
        && let Some(spec) = obj.get_mut("spec")
    {
        spec["clusterIP"] = json!("10.96.0.10");
        spec["clusterIPs"] = json!(["10.96.0.10"]);
        spec["sessionAffinity"] = json!("None");
        spec["ipFamilies"] = json!(["IPv4"]);
    }
}

impl FakeApi {
    /// A kube client talking to this fake.
    pub fn client(&self) -> Client {
        let this = self.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.handle(req).await) }
        });
        Client::new(svc, "default")
    }

    /// Stores `obj` at `path` as if it had been created (uid, resourceVersion, generation).
    pub fn insert(&self, path: &str, mut obj: Value) {
        let mut s = self.state.lock().unwrap();
        s.resource_version += 1;
        s.uid_counter += 1;
        let meta = obj["metadata"].as_object_mut().unwrap();
        meta.entry("uid")
            .or_insert(json!(format!("uid-{}", s.uid_counter)));
        meta.entry("generation").or_insert(json!(1));
        meta.insert(
            "resourceVersion".into(),
            json!(s.resource_version.to_string()),
        );
        s.objects.insert(path.to_owned(), obj);
    }

    /// The stored object at `path`.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Every stored object whose path starts with `prefix` (e.g. the Events of a namespace).
    pub fn objects_under(&self, prefix: &str) -> Vec<Value> {
        let s = self.state.lock().unwrap();
        s.objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Edits the stored object at `path` in place, as another client would (bumps
    /// resourceVersion, and generation when `spec` changed).
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut s = self.state.lock().unwrap();
        s.resource_version += 1;
        let rv = s.resource_version;
        let obj = s.objects.get_mut(path).expect("object to edit exists");
        let old_spec = obj.get("spec").cloned();
        f(obj);
        if obj.get("spec").cloned() != old_spec {
            let g = obj["metadata"]["generation"].as_i64().unwrap_or(1);
            obj["metadata"]["generation"] = json!(g + 1);
        }
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    }

    /// Deletes the stored object at `path`, as a user's `kubectl delete` would.
    pub fn remove(&self, path: &str) {
        let mut s = self.state.lock().unwrap();
        s.objects.remove(path);
        s.applied.remove(path);
    }

    /// Writes recorded so far.
    pub fn writes(&self) -> Vec<Write> {
        self.state.lock().unwrap().writes.clone()
    }

    /// Paths read so far (GET, including lists).
    pub fn reads(&self) -> Vec<String> {
        self.state.lock().unwrap().reads.clone()
    }

    /// Forgets recorded writes.
    pub fn clear_writes(&self) {
        self.state.lock().unwrap().writes.clear();
    }

    /// Makes every request fail with `code` (None: back to normal).
    pub fn fail_with(&self, code: Option<u16>) {
        self.state.lock().unwrap().fail_with = code;
    }

    async fn handle(&self, req: Request<kube::client::Body>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let manager = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("fieldManager="))
            .unwrap_or_default()
            .to_owned();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        };
        let mut s = self.state.lock().unwrap();
        if let Some(code) = s.fail_with {
            return respond(
                code,
                &status_body(code, "InternalError", "injected failure"),
            );
        }
        if method == Method::GET {
            s.reads.push(path.clone());
        } else {
            s.writes.push(Write {
                method: method.clone(),
                path: path.clone(),
            });
        }
        let (key, subresource) = match path.strip_suffix("/status") {
            Some(k) => (k.to_owned(), Some("status")),
            None => (path.clone(), None),
        };
        match method {
            Method::GET => match s.objects.get(&key) {
                Some(obj) => respond(200, obj),
                None => respond(
                    404,
                    &status_body(404, "NotFound", &format!("{key} not found")),
                ),
            },
            Method::DELETE => match s.objects.remove(&key).inspect(|_| {
                s.applied.remove(&key);
            }) {
                Some(obj) => respond(200, &obj),
                None => respond(
                    404,
                    &status_body(404, "NotFound", &format!("{key} not found")),
                ),
            },
            Method::POST => {
                s.resource_version += 1;
                let rv = s.resource_version;
                let mut obj = body;
                let name = obj["metadata"]["name"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("generated-{rv}"));
                let path = format!("{key}/{name}");
                if s.objects.contains_key(&path) {
                    return respond(
                        409,
                        &status_body(409, "AlreadyExists", &format!("{path} already exists")),
                    );
                }
                obj["metadata"]["name"] = json!(name);
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                s.objects.insert(path, obj.clone());
                respond(201, &obj)
            }
            Method::PATCH if content_type.starts_with("application/apply-patch") => {
                s.resource_version += 1;
                s.uid_counter += 1;
                let (rv, uid) = (s.resource_version, s.uid_counter);
                let configs = s.applied.entry(key.clone()).or_default();
                match configs.iter_mut().find(|(m, _)| *m == manager) {
                    Some((_, c)) => *c = body,
                    None => configs.push((manager, body)),
                }
                let mut obj = json!({});
                for (_, c) in configs.iter() {
                    merge_patch(&mut obj, c);
                }
                apply_defaults(&key, &mut obj);
                let previous = s.objects.get(&key).cloned();
                let meta = obj["metadata"].as_object_mut().unwrap();
                match &previous {
                    Some(prev) => {
                        meta.insert("uid".into(), prev["metadata"]["uid"].clone());
                        let g = prev["metadata"]["generation"].as_i64().unwrap_or(1);
                        let changed = prev.get("spec") != obj.get("spec");
                        obj["metadata"]["generation"] = json!(if changed { g + 1 } else { g });
                        if let Some(st) = prev.get("status") {
                            obj["status"] = st.clone();
                        }
                    }
                    None => {
                        meta.insert("uid".into(), json!(format!("uid-{uid}")));
                        meta.insert("generation".into(), json!(1));
                    }
                }
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                s.objects.insert(key, obj.clone());
                respond(200, &obj)
            }
            Method::PATCH => {
                let Some(current) = s.objects.get(&key).cloned() else {
                    return respond(
                        404,
                        &status_body(404, "NotFound", &format!("{key} not found")),
                    );
                };
                let mut patch = body;
                if let Some(want) = patch
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    && Some(want) != current["metadata"]["resourceVersion"].as_str()
                {
                    return respond(
                        409,
                        &status_body(409, "Conflict", "the object has been modified"),
                    );
                }
                if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                let mut obj = current;
                if subresource == Some("status") {
                    // The status subresource ignores everything but status.
                    let status_patch =
                        json!({"status": patch.get("status").cloned().unwrap_or(Value::Null)});
                    merge_patch(&mut obj, &status_patch);
                } else {
                    merge_patch(&mut obj, &patch);
                }
                s.resource_version += 1;
                obj["metadata"]["resourceVersion"] = json!(s.resource_version.to_string());
                s.objects.insert(key, obj.clone());
                respond(200, &obj)
            }
            _ => respond(405, &status_body(405, "MethodNotAllowed", "unsupported")),
        }
    }
}
