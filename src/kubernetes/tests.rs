use std::convert::Infallible;
use std::sync::Arc;

use futures_util::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};

use super::watch::node_readiness;

use super::*;
use crate::wait;

type Reply = http::Response<BoxBody<Bytes, Infallible>>;

/// A client whose API server is `route`, given each request's method, path and query.
fn fake(route: impl Fn(&http::Method, &str, &str) -> Reply + Send + Sync + 'static) -> Kube {
    let route = Arc::new(route);
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let route = route.clone();
        let uri = req.uri().clone();
        let method = req.method().clone();
        async move { Ok::<_, Infallible>(route(&method, uri.path(), uri.query().unwrap_or_default())) }
    });
    Kube::new(kube::Client::new(service, "default"))
}

fn reply(status: u16, body: &Value) -> Reply {
    let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    response
}

fn not_found() -> Reply {
    reply(
        404,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

/// A watch that sends `events` and then stays open, as the API server's do.
fn watch(events: &[Value]) -> Reply {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = events
        .iter()
        .map(|e| Ok(Frame::data(Bytes::from(format!("{e}\n")))))
        .collect();
    let body = futures_util::stream::iter(frames).chain(futures_util::stream::pending());
    http::Response::new(BodyExt::boxed(StreamBody::new(body)))
}

fn resources(group_version: &str, kinds: &[(&str, &str)]) -> Value {
    let resources: Vec<Value> = kinds
        .iter()
        .map(|(name, kind)| {
            json!({"name": name, "singularName": "", "namespaced": true, "kind": kind,
                   "verbs": ["get", "list", "watch", "patch", "delete"]})
        })
        .collect();
    json!({"kind": "APIResourceList", "groupVersion": group_version, "resources": resources})
}

#[tokio::test]
async fn discovery_runs_once_per_group_version_and_again_for_a_new_kind() {
    let core = Arc::new(AtomicUsize::new(0));
    let custom = Arc::new(AtomicUsize::new(0));
    let (c, x) = (core.clone(), custom.clone());
    let kube = fake(move |method, path, _| match (method.as_str(), path) {
        ("GET", "/api/v1") => {
            c.fetch_add(1, Ordering::SeqCst);
            reply(200, &resources("v1", &[("configmaps", "ConfigMap")]))
        }
        ("GET", "/apis/example.com/v1") => {
            // The Widget CRD is established after the first look.
            let kinds: &[(&str, &str)] = if x.fetch_add(1, Ordering::SeqCst) == 0 {
                &[("gadgets", "Gadget")]
            } else {
                &[("gadgets", "Gadget"), ("widgets", "Widget")]
            };
            reply(200, &resources("example.com/v1", kinds))
        }
        ("GET", _) => not_found(),
        ("PATCH", _) => reply(
            200,
            &json!({"metadata": {"name": path.rsplit('/').next(), "resourceVersion": "1"}}),
        ),
        _ => reply(405, &json!({})),
    });
    let object = |api_version: &str, kind: &str, name: &str| {
        format!("---\napiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: {name}\n")
    };
    let manifest = [
        object("v1", "ConfigMap", "a"),
        object("v1", "ConfigMap", "b"),
        object("example.com/v1", "Gadget", "g"),
    ]
    .concat();
    assert_eq!(kube.apply(&manifest).await.unwrap(), (3, 3));
    assert_eq!(kube.apply(&manifest).await.unwrap(), (3, 3));
    assert_eq!(core.load(Ordering::SeqCst), 1);
    assert_eq!(custom.load(Ordering::SeqCst), 1);

    // A kind the group did not have: discovered again, once.
    let widget = object("example.com/v1", "Widget", "w");
    assert_eq!(kube.apply(&widget).await.unwrap(), (1, 1));
    assert_eq!(kube.apply(&widget).await.unwrap(), (1, 1));
    assert_eq!(custom.load(Ordering::SeqCst), 2);

    let err = kube
        .apply(&object("example.com/v1", "Sprocket", "s"))
        .await
        .unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "the API server does not know Sprocket in example.com/v1"
    );
    assert_eq!(core.load(Ordering::SeqCst), 1);
}

fn pod(name: &str, phase: &str, ready: bool, version: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "kube-system", "resourceVersion": version},
           "status": {"phase": phase, "conditions": [
               {"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

fn pod_list(version: &str, items: &[Value]) -> Reply {
    reply(
        200,
        &json!({"apiVersion": "v1", "kind": "PodList",
                "metadata": {"resourceVersion": version}, "items": items}),
    )
}

/// Waits up to `seconds` for every kube-system pod to be ready; how many there are.
async fn all_pods_ready(kube: &Kube, seconds: u64) -> Result<usize> {
    let what = "the pods did not become ready";
    wait::within(what, Duration::from_secs(seconds), async |seen| {
        kube.wait_pods("kube-system", None, seen, all_ready).await
    })
    .await
}

fn all_ready(pods: &[PodState]) -> Result<usize, String> {
    if pods.iter().all(|p| p.ready) {
        Ok(pods.len())
    } else {
        let waiting: Vec<&str> = pods
            .iter()
            .filter(|p| !p.ready)
            .map(|p| p.name.as_str())
            .collect();
        Err(format!("waiting for {}", waiting.join(", ")))
    }
}

/// The first list fails (the API server restarting); the watch that follows the second
/// brings the change the wait is for.
#[tokio::test(start_paused = true)]
async fn a_wait_watches_through_a_failed_list_until_the_pods_are_ready() {
    let lists = Arc::new(AtomicUsize::new(0));
    let seen_lists = lists.clone();
    let kube = fake(move |_, path, query| {
        assert_eq!(path, "/api/v1/namespaces/kube-system/pods");
        if query.contains("watch=true") {
            assert!(query.contains("timeoutSeconds=25"), "{query}");
            return watch(&[json!({"type": "MODIFIED",
                                  "object": pod("b", "Running", true, "11")})]);
        }
        if lists.fetch_add(1, Ordering::SeqCst) == 0 {
            return reply(
                503,
                &json!({"kind": "Status", "code": 503, "message": "restarting"}),
            );
        }
        pod_list(
            "10",
            &[
                pod("a", "Running", true, "9"),
                pod("b", "Pending", false, "10"),
            ],
        )
    });
    let ready = all_pods_ready(&kube, 60).await.unwrap();
    assert_eq!(ready, 2);
    assert_eq!(seen_lists.load(Ordering::SeqCst), 2);
}

/// A wait that runs out says what it still waited for.
#[tokio::test(start_paused = true)]
async fn a_wait_that_runs_out_names_what_it_last_saw() {
    let kube = fake(move |_, _, query| {
        if query.contains("watch=true") {
            return watch(&[]);
        }
        pod_list("5", &[pod("coredns-1", "Pending", false, "5")])
    });
    let err = all_pods_ready(&kube, 300).await.unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "the pods did not become ready within 300s (last check: waiting for coredns-1)"
    );
}

#[test]
fn a_node_is_ready_when_its_ready_condition_is_true() {
    let node = |conditions: Value| -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": "n"}, "status": {"conditions": conditions}}),
        )
        .unwrap()
    };
    assert_eq!(
        node_readiness(&node(json!([{"type": "Ready", "status": "True"}]))),
        Ok(())
    );
    assert_eq!(
        node_readiness(&node(json!([{"type": "Ready", "status": "False",
            "reason": "KubeletNotReady", "message": "container runtime network not ready"}]))),
        Err("Ready is False (container runtime network not ready)".into())
    );
    assert_eq!(
        node_readiness(&node(
            json!([{"type": "MemoryPressure", "status": "False"}])
        )),
        Err("the node reports no Ready condition yet".into())
    );
    // Ready, but tainted against new pods.
    assert_eq!(
        node_readiness(&node(json!([
            {"type": "Ready", "status": "True"},
            {"type": "MemoryPressure", "status": "False"},
            {"type": "DiskPressure", "status": "True", "message": "kubelet has disk pressure"},
        ]))),
        Err("DiskPressure is True (kubelet has disk pressure)".into())
    );
}
