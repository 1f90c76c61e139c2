//! Waiting on API objects: kube's watcher until a check accepts what it sees, and the
//! checks that are not kube's own.

use std::fmt::Debug;
use std::pin::pin;
use std::sync::Arc;

use anyhow::{Result, bail};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Resource;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde::de::DeserializeOwned;

use super::WATCH_SECONDS;
use crate::wait::Seen;

/// `Ok` when the node reports Ready, else what it reports instead.
pub(super) fn node_readiness(node: &Node) -> Result<(), String> {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    match conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
    {
        Some(c) if c.status == "True" => pressure(node),
        Some(c) => Err(format!(
            "Ready is {} ({})",
            c.status,
            c.message
                .as_deref()
                .or(c.reason.as_deref())
                .unwrap_or("no reason given")
        )),
        None => Err("the node reports no Ready condition yet".into()),
    }
}

/// A Ready node under disk, memory or PID pressure is tainted: no new pod is scheduled
/// on it, so the cluster is not usable yet.
fn pressure(node: &Node) -> Result<(), String> {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    match conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_.ends_with("Pressure") && c.status == "True")
    {
        Some(c) => Err(format!(
            "{} is True ({})",
            c.type_,
            c.message.as_deref().unwrap_or("no reason given")
        )),
        None => Ok(()),
    }
}

/// Selects one object by name.
pub(super) fn by_name(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

/// Watches the objects `api` and `config` select until `check` accepts them all at once:
/// `Ok` ends the wait, `Err` (what is still missing) goes to `seen`. The watch is kube's
/// watcher with its backoff: a failed list or watch (the API server restarting) is tried
/// again, and told to `seen`, rather than ending the wait, which only time can end.
pub(super) async fn watch_until<K, T>(
    api: Api<K>,
    config: watcher::Config,
    seen: &Seen,
    check: impl Fn(&[Arc<K>]) -> Result<T, String>,
) -> Result<T>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    // The server ends each watch before the client's read timeout would cut it as idle.
    let events = watcher(api, config.timeout(WATCH_SECONDS)).default_backoff();
    let mut events = pin!(reflector(writer, events));
    while let Some(event) = events.next().await {
        match event {
            // While a list is read, the store still holds the last complete one.
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Ok(_) => match check(&store.state()) {
                Ok(done) => return Ok(done),
                Err(state) => {
                    tracing::debug!("still waiting: {state}");
                    seen.set(state);
                }
            },
            Err(e) => {
                tracing::debug!("watching {}: {e}", K::plural(&()));
                seen.set(format!("cannot watch {}: {e}", K::plural(&())));
            }
        }
    }
    bail!("the watch of {} ended", K::plural(&()))
}
