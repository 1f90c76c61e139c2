//! The data files under `manifests/`, compiled into the binary and rendered with typed
//! values. Templates are strict: a value the code forgot to pass is an error, not "".

use anyhow::{Context, Result};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A template under `manifests/`.
#[derive(Debug, Clone, Copy)]
pub struct Manifest {
    pub path: &'static str,
    source: &'static str,
}

macro_rules! manifest {
    ($name:ident, $path:literal) => {
        pub const $name: Manifest = Manifest {
            path: $path,
            source: include_str!(concat!("../manifests/", $path)),
        };
    };
}

manifest!(ETCD, "components/etcd.yaml");
manifest!(MASTER, "components/master.yaml");
manifest!(PROXY, "components/proxy.yaml");
manifest!(MASTER_ENTRYPOINT, "master/entrypoint.sh");
manifest!(KUBELET_CONFIG, "master/kubelet-config.yaml");
manifest!(AUTHENTICATION, "master/authentication.yaml");
manifest!(CNI, "master/cni.conflist");
manifest!(KUBE_APISERVER, "master/kube-apiserver.yaml");
manifest!(
    KUBE_CONTROLLER_MANAGER,
    "master/kube-controller-manager.yaml"
);
manifest!(KUBE_SCHEDULER, "master/kube-scheduler.yaml");
manifest!(AUDIT_POLICY, "master/audit-policy.yaml");
manifest!(ADMISSION, "master/admission.yaml");
manifest!(KUBE_PROXY_CONFIG, "proxy/kube-proxy-config.yaml");
manifest!(RBAC, "addons/rbac.yaml");
manifest!(COREDNS, "addons/coredns.yaml");
manifest!(STORAGE_PROVISIONER, "addons/storage/provisioner.yaml");
manifest!(STORAGE_CLASS, "addons/storage/storageclass.yaml");
manifest!(METRICS_SERVER_RBAC, "addons/metrics-server/rbac.yaml");
manifest!(
    METRICS_SERVER_DEPLOYMENT,
    "addons/metrics-server/deployment.yaml"
);
manifest!(
    METRICS_SERVER_API_SERVICE,
    "addons/metrics-server/apiservice.yaml"
);
manifest!(LOAD_BALANCER, "addons/load-balancer/controller.yaml");
manifest!(INGRESS, "addons/ingress/traefik.yaml");
manifest!(KUBE_ROUTER, "network/kube-router.yaml");
manifest!(CLUSTER_INFO, "join/cluster-info.yaml");
manifest!(JOIN_RBAC, "join/rbac.yaml");
manifest!(CSR_APPROVER, "join/approver.yaml");
manifest!(BOOTSTRAP_TOKEN, "join/bootstrap-token.yaml");
manifest!(CLUSTER_CONFIG, "join/cluster-config.yaml");
manifest!(HOST_SYSCTL, "host/sysctl.conf");
manifest!(HOST_MODULES, "host/modules.conf");
manifest!(HOST_LOGIND, "host/logind.conf");
manifest!(BOOT, "components/boot.yaml");
manifest!(EXAMPLE_TELESCOPE, "examples/telescope.yaml");
manifest!(EXAMPLE_NGINX, "examples/nginx.yaml");
manifest!(EXAMPLE_JOB, "examples/job.yaml");
manifest!(EXAMPLE_TELESCOPE_INGRESS, "examples/telescope-ingress.yaml");

impl Manifest {
    /// Renders the template with `values` and reads the result as YAML into `T`.
    pub fn render<T: DeserializeOwned>(&self, values: &impl Serialize) -> Result<T> {
        let text = self.render_text(values)?;
        serde_yaml::from_str(&text)
            .with_context(|| format!("manifests/{} renders to invalid YAML", self.path))
    }

    pub fn render_text(&self, values: &impl Serialize) -> Result<String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // minijinja would JSON-escape every value of a .yaml template; each template says
        // how a value is inserted instead (`tojson`, `sh`).
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.add_filter("sh", shell_quote);
        env.add_template(self.path, self.source)
            .with_context(|| format!("manifests/{} is not a valid template", self.path))?;
        env.get_template(self.path)
            .and_then(|t| t.render(minijinja::value::Serde(values)))
            .with_context(|| format!("cannot render manifests/{}", self.path))
    }
}

/// One shell word, whatever the value holds: single-quoted, with each `'` closed,
/// escaped and reopened.
fn shell_quote(value: String) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_inserted_as_given_unless_a_filter_says_otherwise() {
        #[derive(Serialize)]
        struct Dns {
            image: &'static str,
            dns_ip: &'static str,
            dns_domain: &'static str,
        }
        let text = COREDNS
            .render_text(&Dns {
                image: "registry.k8s.io/coredns/coredns:v1.14.2",
                dns_ip: "10.96.0.10",
                dns_domain: "cluster.local",
            })
            .unwrap();
        assert!(
            text.contains("kubernetes cluster.local in-addr.arpa"),
            "{text}"
        );
        assert!(text.contains(r#"clusterIP: "10.96.0.10""#), "{text}");
    }

    #[test]
    fn shell_values_stay_one_word() {
        assert_eq!(shell_quote("/var/lib/kinit".into()), "'/var/lib/kinit'");
        assert_eq!(shell_quote("it's $HOME".into()), r"'it'\''s $HOME'");
    }

    #[test]
    fn missing_values_are_errors() {
        #[derive(Serialize)]
        struct Partial {
            image: &'static str,
        }
        let err = ETCD.render_text(&Partial { image: "x" }).unwrap_err();
        assert!(format!("{err:#}").contains("undefined"), "{err:#}");
    }
}
