//! The `load-balancer` addon's controller loop (`kinit service-lb`, in a pod on the host's
//! network): watches Services, gives LoadBalancer ones the node's address as
//! [`service_lb::decide`] says, and tells a waiting Service why, with an event.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::{Kube, WATCH_SECONDS};
use crate::service_lb::{self, CONTROLLER, Claim, Decision, Pace, Port, Protocol};

impl Kube {
    /// A client from inside a pod, with its service account.
    pub async fn in_cluster() -> Result<Self> {
        let config = kube::Config::incluster().context(
            "no in-cluster configuration: this command runs in its pod, as kinit deploys it",
        )?;
        Self::from_config(config)
    }

    /// Runs the controller until the process ends. `listening` gives the ports host
    /// programs listen on at an address ([`service_lb::listening`]).
    pub async fn serve_load_balancers(
        &self,
        listening: impl Fn(IpAddr) -> BTreeSet<Port>,
    ) -> Result<()> {
        // The address given out is that of the node this pod runs on: the one host whose
        // listening ports the controller can see.
        let node = std::env::var("NODE_NAME")
            .context("NODE_NAME is not set: this command runs in its pod, as kinit deploys it")?;
        let services: Api<Service> = Api::all(self.client.clone());
        let (store, writer) = reflector::store();
        let config = watcher::Config::default().timeout(WATCH_SECONDS);
        let mut changes = pin!(reflector(
            writer,
            watcher(services, config).default_backoff()
        ));
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: CONTROLLER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        let mut told = HashSet::new();
        let mut pace = Pace::default();
        let mut tick = tokio::time::interval(service_lb::MIN_GAP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Nothing is decided before the first full list: a Service not seen yet could hold
        // a port another would be given.
        let mut listed = false;
        loop {
            tokio::select! {
                change = changes.next() => match change {
                    Some(Ok(watcher::Event::InitDone)) => listed = true,
                    // The rest of a list comes before its InitDone.
                    Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                    Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) => pace.changed(),
                    // The watcher retries with backoff; say so, and decide on what is known.
                    Some(Err(e)) => warn!("watching Services: {e}"),
                    None => bail!("the watch of Services ended"),
                },
                _ = tick.tick() => {}
            }
            if !listed || !pace.due(Instant::now()) {
                continue;
            }
            if let Err(e) = self
                .decide_all(&node, &store.state(), &listening, &recorder, &mut told)
                .await
            {
                warn!("{e:#}");
            }
        }
    }

    async fn decide_all(
        &self,
        node: &str,
        services: &[Arc<Service>],
        listening: &impl Fn(IpAddr) -> BTreeSet<Port>,
        recorder: &Recorder,
        told: &mut HashSet<(String, String)>,
    ) -> Result<()> {
        let node_ip = self.node_ip(node).await?;
        // A Service changed from type LoadBalancer to another type keeps its status: the
        // address it had is this controller's to take back.
        for service in services.iter().filter(|s| was_load_balancer(s, node_ip)) {
            if let Err(e) = self.set_address(service, None).await {
                warn!("{}: {e:#}", service.name_any());
            }
        }
        let ours: Vec<&Service> = services
            .iter()
            .map(Arc::as_ref)
            .filter(|s| wants_address(s))
            .collect();
        let claims: Vec<Claim> = ours.iter().map(|s| claim(s, node_ip)).collect();
        let decisions = service_lb::decide(&claims, &listening(node_ip));
        // What is told stays told only while it is still so: the set is as large as the
        // waiting Services, and a Service that waits again for a reason is told again.
        let mut waiting = HashSet::new();
        for (service, decision) in ours.into_iter().zip(decisions) {
            let name = format!(
                "{}/{}",
                service.namespace().unwrap_or_default(),
                service.name_any()
            );
            let result = match decision {
                Decision::Assign if addresses(service) == [node_ip.to_string()] => Ok(()),
                Decision::Assign => {
                    info!("{name}: external address {node_ip}");
                    self.set_address(service, Some(node_ip)).await
                }
                Decision::Pending(why) => {
                    let mut result = Ok(());
                    if !addresses(service).is_empty() {
                        info!("{name}: no external address ({why})");
                        result = self.set_address(service, None).await;
                    }
                    // Told once per Service and reason, not on every resync.
                    let key = (service.uid().unwrap_or_default(), why.clone());
                    if told.insert(key.clone()) {
                        tell(recorder, service, &why).await;
                    }
                    waiting.insert(key);
                    result
                }
            };
            if let Err(e) = result {
                warn!("{name}: {e:#}");
            }
        }
        told.retain(|key| waiting.contains(key));
        Ok(())
    }

    /// The node's InternalIP, read at every decision: a host's address may move.
    async fn node_ip(&self, name: &str) -> Result<IpAddr> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = nodes
            .get(name)
            .await
            .with_context(|| format!("cannot read the node {name}"))?;
        super::internal_ips(&node)
            .next()
            .with_context(|| format!("the node {name} has no InternalIP yet"))
    }

    /// Sets a Service's `status.loadBalancer.ingress` to the address, or clears it.
    async fn set_address(&self, service: &Service, ip: Option<IpAddr>) -> Result<()> {
        let api: Api<Service> = Api::namespaced(
            self.client.clone(),
            &service.namespace().unwrap_or_default(),
        );
        let ingress = ip.map(|ip| json!([{"ip": ip.to_string(), "ipMode": "VIP"}]));
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        api.patch_status(
            &service.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .context("cannot update its status")?;
        Ok(())
    }

    /// Clears the address of every Service this controller serves: what disabling the
    /// addon leaves behind otherwise. Returns the Services changed.
    pub async fn clear_load_balancer_addresses(&self) -> Result<Vec<String>> {
        let services: Api<Service> = Api::all(self.client.clone());
        let list = services
            .list(&ListParams::default())
            .await
            .context("cannot list the Services")?;
        let mut cleared = Vec::new();
        for service in list.items.iter().filter(|s| wants_address(s)) {
            if !addresses(service).is_empty() {
                self.set_address(service, None).await?;
                cleared.push(format!(
                    "{}/{}",
                    service.namespace().unwrap_or_default(),
                    service.name_any()
                ));
            }
        }
        Ok(cleared)
    }
}

/// Type LoadBalancer and no `loadBalancerClass`: a Service with a class is another
/// implementation's.
fn wants_address(service: &Service) -> bool {
    service.spec.as_ref().is_some_and(|spec| {
        spec.type_.as_deref() == Some("LoadBalancer") && spec.load_balancer_class.is_none()
    })
}

/// No longer of type LoadBalancer, but still showing the node's address.
fn was_load_balancer(service: &Service, node_ip: IpAddr) -> bool {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) != Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_ref()).is_none()
        && addresses(service) == [node_ip.to_string()]
}

fn addresses(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

fn claim(service: &Service, node_ip: IpAddr) -> Claim {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(Port {
                protocol: Protocol::parse(p.protocol.as_deref())?,
                number: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    Claim {
        namespace: service.namespace().unwrap_or_default(),
        name: service.name_any(),
        created: service
            .creation_timestamp()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        ports,
        holds: addresses(service).contains(&node_ip.to_string()),
    }
}

/// A Warning event on the Service; a failure to record it is only logged.
async fn tell(recorder: &Recorder, service: &Service, why: &str) {
    let event = Event {
        type_: EventType::Warning,
        reason: "AddressUnavailable".into(),
        note: Some(why.into()),
        action: "AssignAddress".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &service.object_ref(&())).await {
        warn!("cannot record an event: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(spec: serde_json::Value, status: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop",
                         "creationTimestamp": "2026-12-01T10:00:00Z"},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn only_classless_load_balancers_are_served_and_claim_their_ports() {
        let node: IpAddr = "192.0.2.2".parse().unwrap();
        let lb = service(
            json!({"type": "LoadBalancer", "ports": [
                {"port": 80}, {"port": 53, "protocol": "UDP"}]}),
            json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.2", "ipMode": "VIP"}]}}),
        );
        assert!(wants_address(&lb));
        let claim = claim(&lb, node);
        assert_eq!(
            (claim.namespace.as_str(), claim.name.as_str()),
            ("shop", "web")
        );
        assert!(claim.holds);
        assert_eq!(claim.created, "2026-12-01T10:00:00Z");
        assert_eq!(
            claim.ports,
            [
                Port {
                    protocol: Protocol::Tcp,
                    number: 80
                },
                Port {
                    protocol: Protocol::Udp,
                    number: 53
                },
            ]
        );
        let classed = service(
            json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"}),
            json!({}),
        );
        assert!(!wants_address(&classed));
        assert!(!wants_address(&service(
            json!({"type": "ClusterIP"}),
            json!({})
        )));
    }

    #[test]
    fn a_service_changed_to_another_type_gives_the_address_back() {
        let node: IpAddr = "192.0.2.2".parse().unwrap();
        let ours = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.2", "ipMode": "VIP"}]}});
        assert!(was_load_balancer(
            &service(json!({"type": "ClusterIP"}), ours.clone()),
            node
        ));
        assert!(!was_load_balancer(
            &service(json!({"type": "LoadBalancer"}), ours),
            node
        ));
        // Another implementation's address is left alone.
        let theirs = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}});
        assert!(!was_load_balancer(
            &service(json!({"type": "ClusterIP"}), theirs),
            node
        ));
    }
}
