//! The Pod Security Standard the API server enforces by default (`kinit up
//! --pod-security`), for users who test how their workloads behave under it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A level of the Pod Security Standards. `Privileged` enforces nothing, as on any
/// cluster without an admission configuration: the API server's own default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurity {
    #[default]
    Privileged,
    Baseline,
    Restricted,
}

impl PodSecurity {
    pub fn is_privileged(&self) -> bool {
        *self == Self::Privileged
    }

    /// The name the admission configuration and namespace labels use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

impl FromStr for PodSecurity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "privileged" => Ok(Self::Privileged),
            "baseline" => Ok(Self::Baseline),
            "restricted" => Ok(Self::Restricted),
            _ => Err(format!(
                "'{s}' is not a Pod Security level: use privileged (nothing enforced), \
                 baseline or restricted"
            )),
        }
    }
}

impl fmt::Display for PodSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
