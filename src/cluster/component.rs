//! kinit's components: the names `kinit status` shows and `kinit logs` takes, where each
//! runs, and the host ports each holds. Preflight, status, logs and teardown read them
//! from here, and the manifests are rendered with these ports.

pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
pub const API_SERVER_PORT: u16 = 6443;
pub const KUBELET_PORT: u16 = 10250;
/// The kubelet's `/healthz` (plain HTTP, loopback only).
pub const KUBELET_HEALTHZ_PORT: u16 = 10248;
pub const CONTROLLER_MANAGER_PORT: u16 = 10257;
pub const SCHEDULER_PORT: u16 = 10259;
/// kube-proxy's `/healthz`: 200 once it has programmed the rules.
pub const PROXY_HEALTHZ_PORT: u16 = 10256;
/// kube-router's BGP speaker: the other nodes only (kinit's guard drops the rest).
pub const ROUTER_BGP_PORT: u16 = 179;
/// kube-router's `/healthz` (its default port).
pub const ROUTER_HEALTH_PORT: u16 = 20244;
/// gobgp's admin API inside kube-router, unauthenticated: loopback only (kinit's guard).
pub const ROUTER_ADMIN_PORT: u16 = 50051;

/// A container kinit makes itself, named `kinit-<label>` and labelled with its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    Boot,
    Etcd,
    /// The kubelet and cri-dockerd, which run the control plane as static pods.
    Master,
    /// On a host that joined another's cluster: the kubelet and cri-dockerd alone.
    Node,
    Proxy,
}

impl Container {
    /// In bring-up order.
    pub const ALL: [Self; 5] = [
        Self::Boot,
        Self::Etcd,
        Self::Master,
        Self::Node,
        Self::Proxy,
    ];

    /// The `component` of its manifest and of the label Docker keeps.
    pub fn label(self) -> &'static str {
        match self {
            Self::Boot => "boot",
            Self::Etcd => "etcd",
            Self::Master => "master",
            Self::Node => "node",
            Self::Proxy => "proxy",
        }
    }

    /// The container a label names; `None` for one kinit does not make (a newer kinit's).
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.label() == label)
    }
}

/// What `kinit status` reports on and `kinit logs` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    Etcd,
    Kubelet,
    ApiServer,
    ControllerManager,
    Scheduler,
    Proxy,
    /// kube-router: routes to the other nodes' pods, NetworkPolicy.
    Router,
    CoreDns,
    /// kinit-boot, which sets the host up again whenever the Docker daemon starts.
    Boot,
}

/// A host port a component listens on, and what for (as preflight names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    pub number: u16,
    pub purpose: &'static str,
}

impl Component {
    /// In the order `kinit status` lists them.
    pub const ALL: [Self; 9] = [
        Self::Etcd,
        Self::Kubelet,
        Self::ApiServer,
        Self::ControllerManager,
        Self::Scheduler,
        Self::Proxy,
        Self::Router,
        Self::CoreDns,
        Self::Boot,
    ];

    /// Those a joined host runs: the node's part.
    pub const NODE: [Self; 4] = [Self::Kubelet, Self::Proxy, Self::Router, Self::Boot];

    /// The control plane the kubelet runs from static manifests.
    pub const STATIC_PODS: [Self; 3] = [Self::ApiServer, Self::ControllerManager, Self::Scheduler];

    /// Those that take a user's feature gates and extra args (`kinit up --extra-arg`).
    pub const CONFIGURABLE: [Self; 5] = [
        Self::ApiServer,
        Self::ControllerManager,
        Self::Scheduler,
        Self::Kubelet,
        Self::Proxy,
    ];

    /// The name users give `kinit logs` and see in `kinit status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::Kubelet => "kubelet",
            Self::ApiServer => "apiserver",
            Self::ControllerManager => "controller-manager",
            Self::Scheduler => "scheduler",
            Self::Proxy => "proxy",
            Self::Router => "router",
            Self::CoreDns => "coredns",
            Self::Boot => "boot",
        }
    }

    /// The component as a sentence names it.
    pub fn title(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::Kubelet => "the kubelet",
            Self::ApiServer => "the API server",
            Self::ControllerManager => "the controller-manager",
            Self::Scheduler => "the scheduler",
            Self::Proxy => "kube-proxy",
            Self::Router => "kube-router",
            Self::CoreDns => "CoreDNS",
            Self::Boot => "kinit-boot",
        }
    }

    /// The name of its container in the kube-system pod the kubelet runs it in; `None` for
    /// a component in a container of kinit's own.
    pub fn pod(self) -> Option<&'static str> {
        match self {
            Self::ApiServer => Some("kube-apiserver"),
            Self::ControllerManager => Some("kube-controller-manager"),
            Self::Scheduler => Some("kube-scheduler"),
            Self::Router => Some("kube-router"),
            Self::CoreDns => Some("coredns"),
            Self::Etcd | Self::Kubelet | Self::Proxy | Self::Boot => None,
        }
    }

    /// The container of kinit's that runs it: its own, or for a pod the kubelet's.
    pub fn container(self) -> Container {
        match self {
            Self::Etcd => Container::Etcd,
            Self::Proxy => Container::Proxy,
            Self::Boot => Container::Boot,
            Self::Kubelet
            | Self::ApiServer
            | Self::ControllerManager
            | Self::Scheduler
            | Self::Router
            | Self::CoreDns => Container::Master,
        }
    }

    /// Its container on a control-plane host or, with `control_plane` false, on a joined
    /// one (whose kubelet is kinit-node's).
    pub fn container_on(self, control_plane: bool) -> Container {
        match self {
            Self::Kubelet | Self::Router if !control_plane => Container::Node,
            other => other.container(),
        }
    }

    /// The ports it listens on in the host's network namespace (CoreDNS has the pod
    /// network's; kinit-boot listens on none).
    pub fn ports(self) -> &'static [Port] {
        const fn port(number: u16, purpose: &'static str) -> Port {
            Port { number, purpose }
        }
        match self {
            Self::Etcd => {
                &const {
                    [
                        port(ETCD_CLIENT_PORT, "etcd clients"),
                        port(ETCD_PEER_PORT, "etcd peers"),
                    ]
                }
            }
            Self::Kubelet => {
                &const {
                    [
                        port(KUBELET_PORT, "the kubelet"),
                        port(KUBELET_HEALTHZ_PORT, "the kubelet's health check"),
                    ]
                }
            }
            Self::ApiServer => &const { [port(API_SERVER_PORT, "the API server")] },
            Self::ControllerManager => {
                &const { [port(CONTROLLER_MANAGER_PORT, "the controller-manager")] }
            }
            Self::Scheduler => &const { [port(SCHEDULER_PORT, "the scheduler")] },
            Self::Proxy => &const { [port(PROXY_HEALTHZ_PORT, "kube-proxy's health check")] },
            Self::Router => {
                &const {
                    [
                        port(ROUTER_BGP_PORT, "kube-router's BGP"),
                        port(ROUTER_HEALTH_PORT, "kube-router's health check"),
                        port(ROUTER_ADMIN_PORT, "kube-router's BGP admin API"),
                    ]
                }
            }
            Self::CoreDns | Self::Boot => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_component_has_its_own_name_place_and_ports() {
        let names: HashSet<_> = Component::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Component::ALL.len());
        let titles: HashSet<_> = Component::ALL.iter().map(|c| c.title()).collect();
        assert_eq!(titles.len(), Component::ALL.len());
        let pods: Vec<_> = Component::ALL.iter().filter_map(|c| c.pod()).collect();
        let distinct_pods: HashSet<_> = pods.iter().collect();
        assert_eq!(distinct_pods.len(), pods.len(), "{pods:?}");
        // A component not in a pod has a container of its own.
        let own: Vec<_> = Component::ALL
            .iter()
            .filter(|c| c.pod().is_none())
            .map(|c| c.container())
            .collect();
        let distinct_own: HashSet<_> = own.iter().collect();
        assert_eq!(distinct_own.len(), own.len(), "{own:?}");
        // All but kinit-node, which runs the kubelet on a joined host.
        assert_eq!(distinct_own.len(), Container::ALL.len() - 1);
        let ports: Vec<u16> = Component::ALL
            .iter()
            .flat_map(|c| c.ports())
            .map(|p| p.number)
            .collect();
        let distinct: HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        assert_eq!(
            ports,
            [
                2379, 2380, 10250, 10248, 6443, 10257, 10259, 10256, 179, 20244, 50051
            ],
            "the ports preflight checks"
        );
    }

    #[test]
    fn containers_are_known_by_their_labels_and_hold_the_pods() {
        for container in Container::ALL {
            assert_eq!(Container::from_label(container.label()), Some(container));
        }
        assert_eq!(Container::from_label("newer"), None);
        for component in Component::ALL {
            if component.pod().is_some() {
                assert_eq!(component.container(), Container::Master, "{component:?}");
            }
        }
        for pod in Component::STATIC_PODS {
            assert!(pod.pod().is_some(), "{pod:?}");
        }
    }
}
