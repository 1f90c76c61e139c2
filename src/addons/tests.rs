use super::*;
use crate::versions::Release;

fn rendered(addon: Addon) -> Vec<serde_yaml::Value> {
    let layout = Layout::new("/var/lib/kinit");
    let images = Images::new(Some("mirror.example:5000/k8s"), Release::default());
    let text = addon
        .render(&layout, &images, "kinit/node:v1.36.3-0123456789ab")
        .unwrap();
    assert!(!text.contains("{{") && !text.contains("{%"), "{text}");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// "Kind name" of each object, in order.
fn kinds_and_names(objects: &[serde_yaml::Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn every_object_is_labelled_with_its_addon() {
    for addon in Addon::ALL {
        for object in rendered(addon) {
            assert_eq!(
                object["metadata"]["labels"][LABEL].as_str(),
                Some(addon.name()),
                "{object:?}"
            );
            assert!(object["apiVersion"].as_str().is_some(), "{object:?}");
        }
    }
}

#[test]
fn storage_is_a_default_class_with_volumes_in_the_state_directory() {
    let objects = rendered(Addon::Storage);
    let names = kinds_and_names(&objects);
    assert_eq!(names.first().unwrap(), "Namespace local-path-storage");
    for expected in [
        "ClusterRole local-path-provisioner-role",
        "ConfigMap local-path-config",
        "Deployment local-path-provisioner",
        "StorageClass standard",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    let class = &objects[names
        .iter()
        .position(|n| n == "StorageClass standard")
        .unwrap()];
    assert_eq!(
        class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert_eq!(class["provisioner"], Addon::Storage.provisioner().unwrap());
    assert_eq!(class["volumeBindingMode"], "WaitForFirstConsumer");
    assert_eq!(class["reclaimPolicy"], "Delete");
    let config = &objects[names
        .iter()
        .position(|n| n == "ConfigMap local-path-config")
        .unwrap()];
    let json: serde_json::Value =
        serde_json::from_str(config["data"]["config.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        json["nodePathMap"][0]["paths"][0],
        "/var/lib/kinit/local-path"
    );
    let helper: serde_yaml::Value =
        serde_yaml::from_str(config["data"]["helperPod.yaml"].as_str().unwrap()).unwrap();
    let image = format!(
        "mirror.example:5000/k8s/rancher/local-path-provisioner:{}",
        crate::versions::LOCAL_PATH_PROVISIONER_VERSION
    );
    assert_eq!(helper["spec"]["containers"][0]["image"], image.as_str());
    let deployment = &objects[names
        .iter()
        .position(|n| n == "Deployment local-path-provisioner")
        .unwrap()];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], image.as_str());
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"][LABEL],
        "storage"
    );
    let workload = Addon::Storage.workload();
    assert_eq!(deployment["metadata"]["namespace"], workload.namespace);
    assert_eq!(deployment["metadata"]["name"], workload.name);
}

#[test]
fn metrics_server_verifies_the_kubelet_and_its_api_service_goes_first() {
    let objects = rendered(Addon::MetricsServer);
    let names = kinds_and_names(&objects);
    assert_eq!(names.last().unwrap(), "APIService v1beta1.metrics.k8s.io");
    assert_eq!(
        Some(names.last().unwrap().trim_start_matches("APIService ")),
        Addon::MetricsServer.api_service()
    );
    let deployment = &objects[names
        .iter()
        .position(|n| n == "Deployment metrics-server")
        .unwrap()];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(
            &"--kubelet-certificate-authority=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
        ),
        "{args:?}"
    );
    assert!(args.contains(&"--kubelet-preferred-address-types=InternalIP"));
    assert!(!args.iter().any(|a| a.contains("insecure")), "{args:?}");
    assert_eq!(
        container["image"],
        format!(
            "mirror.example:5000/k8s/metrics-server/metrics-server:{}",
            crate::versions::METRICS_SERVER_VERSION
        )
        .as_str()
    );
    // Removal deletes in reverse: the APIService first.
    let layout = Layout::new("/var/lib/kinit");
    let removal = Addon::MetricsServer
        .render_for_removal(&layout, &Images::default())
        .unwrap();
    let first: serde_yaml::Value = serde_yaml::Deserializer::from_str(&removal)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .next()
        .unwrap();
    assert_eq!(first["kind"], "APIService");
    let storage = Addon::Storage
        .render_for_removal(&layout, &Images::default())
        .unwrap();
    let last = serde_yaml::Deserializer::from_str(&storage)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .last()
        .unwrap();
    assert_eq!(last["kind"], "Namespace");
}

#[test]
fn names_are_parsed_and_unknown_ones_listed() {
    assert_eq!("storage".parse::<Addon>().unwrap(), Addon::Storage);
    assert_eq!(
        parse_list("metrics-server, load-balancer, storage").unwrap(),
        Addon::defaults()
    );
    assert!(parse_list("").unwrap().is_empty());
    let err = parse_list("storage,gateway").unwrap_err();
    assert!(
        err.contains("'gateway'")
            && err.contains("storage, metrics-server, load-balancer, ingress"),
        "{err}"
    );
    for addon in Addon::ALL {
        assert_eq!(addon.to_string().parse::<Addon>().unwrap(), addon);
        let yaml = serde_yaml::to_string(&addon).unwrap();
        assert_eq!(yaml.trim(), addon.name());
    }
    assert_eq!(Addon::Storage.selector(), "kinit/addon=storage");
}

#[test]
fn the_load_balancer_runs_kinit_from_the_node_image_on_the_hosts_network() {
    let objects = rendered(Addon::LoadBalancer);
    let names = kinds_and_names(&objects);
    assert_eq!(
        names,
        [
            "ServiceAccount kinit-service-lb",
            "ClusterRole kinit:service-lb",
            "ClusterRoleBinding kinit:service-lb",
            "Deployment kinit-service-lb",
        ]
    );
    let pod = &objects[3]["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "kinit/node:v1.36.3-0123456789ab");
    assert_eq!(container["imagePullPolicy"], "Never");
    assert_eq!(container["command"][1], "service-lb");
    // Every host directory it mounts is read-only and must exist (never created).
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    assert!(!mounts.is_empty());
    assert!(mounts.iter().all(|m| m["readOnly"] == true), "{mounts:?}");
    let volumes = pod["volumes"].as_sequence().unwrap();
    assert!(
        volumes.iter().all(|v| v["hostPath"]["type"] == "Directory"),
        "{volumes:?}"
    );
    // It may change Services' status, nothing else of theirs.
    let rules = objects[1]["rules"].as_sequence().unwrap();
    let writes: Vec<&serde_yaml::Value> = rules
        .iter()
        .filter(|r| {
            r["verbs"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|v| v == "patch" || v == "update")
        })
        .flat_map(|r| r["resources"].as_sequence().unwrap())
        .collect();
    assert_eq!(writes, ["services/status", "events"]);
}

#[test]
fn ingress_is_traefik_behind_a_load_balancer_and_the_default_class() {
    let objects = rendered(Addon::Ingress);
    let names = kinds_and_names(&objects);
    for expected in [
        "IngressClass traefik",
        "Deployment traefik",
        "Service traefik",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    let class = &objects[names
        .iter()
        .position(|n| n == "IngressClass traefik")
        .unwrap()];
    assert_eq!(
        class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );
    let service = &objects[names.iter().position(|n| n == "Service traefik").unwrap()];
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    let ports: Vec<i64> = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [80, 443]);
    let deployment = &objects[names
        .iter()
        .position(|n| n == "Deployment traefik")
        .unwrap()];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        format!(
            "mirror.example:5000/k8s/library/traefik:{}",
            crate::versions::TRAEFIK_VERSION
        )
    );
    assert!(!Addon::defaults().contains(&Addon::Ingress));
    assert_eq!(
        with_requirements(&[Addon::Ingress].into()),
        [Addon::LoadBalancer, Addon::Ingress].into()
    );
}
