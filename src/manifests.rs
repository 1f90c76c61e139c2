//! The data files under `manifests/`, compiled into the binary and rendered with typed
//! values. Templates are strict: a value the code forgot to pass is an error, not "".

use anyhow::{Context, Result};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A template under `manifests/`.
#[derive(Debug, Clone, Copy)]
pub struct Manifest {
    pub path: &'static str,
    source: &'static str,
}

pub const ETCD: Manifest = Manifest {
    path: "components/etcd.yaml",
    source: include_str!("../manifests/components/etcd.yaml"),
};

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
        env.add_template(self.path, self.source)
            .with_context(|| format!("manifests/{} is not a valid template", self.path))?;
        env.get_template(self.path)
            .and_then(|t| t.render(minijinja::value::Serde(values)))
            .with_context(|| format!("cannot render manifests/{}", self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
