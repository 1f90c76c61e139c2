//! The tutorial applications `kinit example` deploys, from `manifests/examples/`.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::addons::Addon;
use crate::manifests::{self, Manifest};

/// What "ready" means for an example, and what to show once it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A Deployment and a Service, both named after the example; its pods are labelled
    /// `kinit.io/example=<name>`.
    Deployment,
    /// A Job named `hello` that runs to completion.
    Job,
    /// Deployments `<name>` and `<name>-db`, a Service `<name>`, and an Ingress `<name>`
    /// serving the host [`INGRESS_HOST`].
    Ingress,
}

/// The host name the ingress example is served at.
pub const INGRESS_HOST: &str = "telescope.kinit.test";

#[derive(Debug)]
pub struct Example {
    pub name: &'static str,
    pub summary: &'static str,
    pub manifest: Manifest,
    /// Image slots and their upstream defaults; `--image-override SLOT=IMAGE` swaps one.
    pub images: &'static [(&'static str, &'static str)],
    pub shape: Shape,
    /// The addons it cannot run without.
    pub needs: &'static [Addon],
}

pub const ALL: [Example; 4] = [
    Example {
        name: "telescope",
        summary: "Telescope and MongoDB, two containers of one pod sharing localhost",
        manifest: manifests::EXAMPLE_TELESCOPE,
        // MongoDB 5 and later need AVX, which many VMs do not pass through.
        images: &[
            ("telescope", "meteorhacks/telescope"),
            ("mongo", "mongo:4.4"),
        ],
        shape: Shape::Deployment,
        needs: &[],
    },
    Example {
        name: "nginx",
        summary: "nginx scaled to 3 replicas behind a Service",
        manifest: manifests::EXAMPLE_NGINX,
        images: &[("nginx", "nginx:1.27")],
        shape: Shape::Deployment,
        needs: &[],
    },
    Example {
        name: "job",
        summary: "a Job that runs to completion, reading a Secret from its environment",
        manifest: manifests::EXAMPLE_JOB,
        images: &[("busybox", "busybox:1.36")],
        shape: Shape::Job,
        needs: &[],
    },
    Example {
        name: "telescope-ingress",
        summary: "Telescope and MongoDB as Deployments, the database on a volume, the app behind an Ingress",
        manifest: manifests::EXAMPLE_TELESCOPE_INGRESS,
        images: &[
            ("telescope", "meteorhacks/telescope"),
            ("mongo", "mongo:4.4"),
        ],
        shape: Shape::Ingress,
        needs: &[Addon::Storage, Addon::Ingress],
    },
];

pub fn find(name: &str) -> Result<&'static Example> {
    match ALL.iter().find(|e| e.name == name) {
        Some(e) => Ok(e),
        None => bail!(
            "there is no example {name:?}; the examples are: {}",
            ALL.map(|e| e.name).join(", ")
        ),
    }
}

#[derive(Serialize)]
struct Values<'a> {
    images: BTreeMap<&'a str, String>,
    dns_domain: &'a str,
}

impl Example {
    /// The example's manifest with its images, each overridable by `SLOT=IMAGE`.
    pub fn render(&self, overrides: &[String], dns_domain: &str) -> Result<String> {
        let mut images: BTreeMap<&str, String> = self
            .images
            .iter()
            .map(|(slot, image)| (*slot, image.to_string()))
            .collect();
        for o in overrides {
            let Some((slot, image)) = o.split_once('=') else {
                bail!("--image-override wants NAME=IMAGE, not {o:?}");
            };
            if image.trim().is_empty() || image.contains(char::is_whitespace) {
                bail!("--image-override {o:?}: {image:?} is not an image reference");
            }
            match images.get_mut(slot) {
                Some(current) => *current = image.to_string(),
                None => bail!(
                    "the example {} has no image {slot:?}; its images are: {}",
                    self.name,
                    self.images
                        .iter()
                        .map(|(s, _)| *s)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        self.manifest.render_text(&Values { images, dns_domain })
    }

    /// The label selector of the example's pods.
    pub fn selector(&self) -> String {
        format!("kinit.io/example={}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_renders_valid_objects_with_overrides() {
        for e in &ALL {
            let text = e.render(&[], "cluster.local").unwrap();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let v = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap();
                assert!(v["kind"].is_string(), "{}: {v:?}", e.name);
                assert_eq!(
                    v["metadata"]["labels"]["kinit.io/example"].as_str(),
                    Some(e.name)
                );
            }
            for (_, image) in e.images {
                assert!(text.contains(image), "{} lacks {image}", e.name);
            }
        }
        let telescope = find("telescope").unwrap();
        let text = telescope
            .render(&["mongo=kinit-examples/db:1".into()], "cluster.local")
            .unwrap();
        assert!(text.contains("kinit-examples/db:1") && !text.contains("mongo:4.4"));
        assert!(text.contains("mongodb://localhost:27017/app"));
    }

    #[test]
    fn bad_names_and_overrides_are_refused() {
        assert!(
            find("wordpress")
                .unwrap_err()
                .to_string()
                .contains("telescope, nginx, job, telescope-ingress")
        );
        let nginx = find("nginx").unwrap();
        for (bad, why) in [
            ("nginx", "NAME=IMAGE"),
            ("redis=redis:7", "has no image \"redis\""),
            ("nginx=", "not an image reference"),
        ] {
            let err = nginx
                .render(&[bad.into()], "cluster.local")
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
