//! What users add to kinit's components: feature gates and extra command-line flags, each
//! checked once where it is read (a flag, the config file, `cluster.yaml`) and carried as a
//! type from then on. Which flags kinit sets itself, and so refuses, `components` reads from
//! what it renders.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Component;

/// Feature gates (`Name=true`), given to every component that takes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, bool>", into = "BTreeMap<String, bool>")]
pub struct FeatureGates(BTreeMap<String, bool>);

impl FeatureGates {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each gate and whether it is on, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, bool)> {
        self.0.iter().map(|(name, on)| (name.as_str(), *on))
    }

    /// The gates as a map, for a config file's `featureGates`.
    pub fn as_map(&self) -> &BTreeMap<String, bool> {
        &self.0
    }
}

/// Kubernetes' feature gates are CamelCase: a letter, then letters and digits.
fn check_gate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a feature gate name: use the gate's CamelCase name, such as \
             InPlacePodVerticalScaling"
        ))
    }
}

/// `A=true,B=false`, as the components' own `--feature-gates` takes it; an empty string is
/// no gates.
impl FromStr for FeatureGates {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut gates = BTreeMap::new();
        if s.trim().is_empty() {
            return Ok(Self(gates));
        }
        for item in s.split(',').map(str::trim) {
            let parsed = item.split_once('=').and_then(|(name, on)| match on {
                "true" => Some((name, true)),
                "false" => Some((name, false)),
                _ => None,
            });
            let Some((name, on)) = parsed else {
                return Err(format!(
                    "'{item}' is not a feature gate setting: use Name=true or Name=false, \
                     separated by commas"
                ));
            };
            check_gate_name(name)?;
            if gates.insert(name.to_string(), on).is_some() {
                return Err(format!("the feature gate {name} is given twice"));
            }
        }
        Ok(Self(gates))
    }
}

impl fmt::Display for FeatureGates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .iter()
            .map(|(name, on)| format!("{name}={on}"))
            .collect();
        f.write_str(&items.join(","))
    }
}

impl TryFrom<BTreeMap<String, bool>> for FeatureGates {
    type Error = String;

    fn try_from(gates: BTreeMap<String, bool>) -> Result<Self, String> {
        gates.keys().try_for_each(|name| check_gate_name(name))?;
        Ok(Self(gates))
    }
}

impl From<FeatureGates> for BTreeMap<String, bool> {
    fn from(gates: FeatureGates) -> Self {
        gates.0
    }
}

/// One `--extra-arg COMPONENT:flag=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraArg {
    pub component: Component,
    pub name: String,
    pub value: String,
}

impl FromStr for ExtraArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let shape = || {
            format!(
                "'{s}' is not COMPONENT:flag=value (for example apiserver:v=4 or \
                 kubelet:max-pods=200)"
            )
        };
        let (component, flag) = s.split_once(':').ok_or_else(shape)?;
        let (name, value) = flag.split_once('=').ok_or_else(shape)?;
        Ok(Self {
            component: configurable(component)?,
            name: flag_name(name)?,
            value: flag_value(component, name, value)?,
        })
    }
}

/// The components that take extra args, by the name `kinit logs` knows them by.
fn configurable(name: &str) -> Result<Component, String> {
    Component::CONFIGURABLE
        .into_iter()
        .find(|c| c.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = Component::CONFIGURABLE.iter().map(|c| c.name()).collect();
            format!(
                "'{name}' is not a component that takes extra args: use one of {}",
                names.join(", ")
            )
        })
}

/// A flag's name, with or without its leading `--`: lower case, digits and dashes, as every
/// Kubernetes component spells them.
fn flag_name(raw: &str) -> Result<String, String> {
    let name = raw.strip_prefix("--").unwrap_or(raw);
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(name.to_string())
    } else {
        Err(format!(
            "'{raw}' is not a flag name: use the component's flag without its value, such as \
             v or max-pods"
        ))
    }
}

/// Anything but control characters (a newline would end the flag in a script).
fn flag_value(component: &str, name: &str, value: &str) -> Result<String, String> {
    if value.chars().any(char::is_control) {
        return Err(format!(
            "the value of {component}:{name} holds a control character"
        ));
    }
    Ok(value.to_string())
}

/// Extra command-line flags for each component, by flag name (one value each).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawExtraArgs", into = "PlainExtraArgs")]
pub struct ExtraArgs(BTreeMap<Component, BTreeMap<String, String>>);

/// The config file's and `cluster.yaml`'s form: `apiserver: {v: 4}`, any scalar value.
type RawExtraArgs = BTreeMap<String, BTreeMap<String, serde_yaml::Value>>;
type PlainExtraArgs = BTreeMap<String, BTreeMap<String, String>>;

impl ExtraArgs {
    /// From `--extra-arg` flags; a flag given twice for one component is refused.
    pub fn from_list(args: &[ExtraArg]) -> Result<Self, String> {
        let mut map: BTreeMap<Component, BTreeMap<String, String>> = BTreeMap::new();
        for arg in args {
            let flags = map.entry(arg.component).or_default();
            if flags.insert(arg.name.clone(), arg.value.clone()).is_some() {
                return Err(format!(
                    "--extra-arg {}:{} is given twice",
                    arg.component.name(),
                    arg.name
                ));
            }
        }
        Ok(Self(map))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One component's flags, by name.
    pub fn of(&self, component: Component) -> BTreeMap<String, String> {
        self.0.get(&component).cloned().unwrap_or_default()
    }

    /// Every component with its flags.
    pub fn iter(&self) -> impl Iterator<Item = (Component, &BTreeMap<String, String>)> {
        self.0.iter().map(|(c, flags)| (*c, flags))
    }
}

impl TryFrom<RawExtraArgs> for ExtraArgs {
    type Error = String;

    fn try_from(raw: RawExtraArgs) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (component_name, raw_flags) in raw {
            let component = configurable(&component_name)?;
            let mut flags = BTreeMap::new();
            for (raw_name, raw_value) in raw_flags {
                let value = match raw_value {
                    serde_yaml::Value::String(s) => s,
                    serde_yaml::Value::Number(n) => n.to_string(),
                    serde_yaml::Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(format!(
                            "the value of {component_name}:{raw_name} must be a string, a \
                             number or true/false"
                        ));
                    }
                };
                let name = flag_name(&raw_name)?;
                let value = flag_value(&component_name, &name, &value)?;
                if flags.insert(name, value).is_some() {
                    return Err(format!("{component_name}:{raw_name} is given twice"));
                }
            }
            if !flags.is_empty() {
                map.insert(component, flags);
            }
        }
        Ok(Self(map))
    }
}

impl From<ExtraArgs> for PlainExtraArgs {
    fn from(args: ExtraArgs) -> Self {
        args.0
            .into_iter()
            .map(|(c, flags)| (c.name().to_string(), flags))
            .collect()
    }
}

impl fmt::Display for ExtraArgs {
    /// `apiserver:v=4 kubelet:max-pods=200`, as the flags would give them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .iter()
            .flat_map(|(c, flags)| {
                flags
                    .iter()
                    .map(move |(name, value)| format!("{}:{name}={value}", c.name()))
            })
            .collect();
        f.write_str(&items.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_gates_parse_like_the_components_flag() {
        let gates: FeatureGates = "B=false, A=true".parse().unwrap();
        assert_eq!(gates.to_string(), "A=true,B=false");
        assert!("".parse::<FeatureGates>().unwrap().is_empty());
        for (bad, why) in [
            ("A", "use Name=true or Name=false"),
            ("A=yes", "use Name=true or Name=false"),
            ("A=true,", "use Name=true or Name=false"),
            ("=true", "is not a feature gate name"),
            ("my-gate=true", "is not a feature gate name"),
            ("A=true,A=false", "given twice"),
        ] {
            let err = bad.parse::<FeatureGates>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let yaml: FeatureGates = serde_yaml::from_str("{A: true, B: false}").unwrap();
        assert_eq!(yaml.to_string(), "A=true,B=false");
        assert!(serde_yaml::from_str::<FeatureGates>("{A: yes please}").is_err());
        assert!(serde_yaml::from_str::<FeatureGates>("{a-b: true}").is_err());
    }

    #[test]
    fn extra_args_name_a_component_a_flag_and_a_value() {
        let arg: ExtraArg = "apiserver:--runtime-config=api/all=true".parse().unwrap();
        assert_eq!(arg.component, Component::ApiServer);
        assert_eq!(arg.name, "runtime-config");
        assert_eq!(arg.value, "api/all=true");
        let empty: ExtraArg = "kubelet:node-labels=".parse().unwrap();
        assert_eq!(
            (empty.component, empty.value.as_str()),
            (Component::Kubelet, "")
        );
        for (bad, why) in [
            ("apiserver.v=4", "is not COMPONENT:flag=value"),
            ("apiserver:v", "is not COMPONENT:flag=value"),
            (
                "etcd:v=4",
                "'etcd' is not a component that takes extra args",
            ),
            (
                "api-server:v=4",
                "use one of apiserver, controller-manager, scheduler",
            ),
            ("apiserver:=4", "is not a flag name"),
            ("apiserver:V=4", "is not a flag name"),
            ("apiserver:log_dir=/x", "is not a flag name"),
            ("apiserver:v=4\n--x=y", "control character"),
        ] {
            let err = bad.parse::<ExtraArg>().unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn extra_args_are_one_value_per_flag_and_component() {
        let list: Vec<ExtraArg> = [
            "scheduler:v=4",
            "apiserver:v=2",
            "apiserver:profiling=false",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let args = ExtraArgs::from_list(&list).unwrap();
        assert_eq!(
            args.to_string(),
            "apiserver:profiling=false apiserver:v=2 scheduler:v=4"
        );
        assert_eq!(args.of(Component::Scheduler).len(), 1);
        assert!(args.of(Component::Kubelet).is_empty());
        let twice = [list[0].clone(), list[0].clone()];
        let err = ExtraArgs::from_list(&twice).unwrap_err();
        assert!(err.contains("scheduler:v is given twice"), "{err}");
    }

    #[test]
    fn extra_args_in_yaml_take_any_scalar() {
        let args: ExtraArgs = serde_yaml::from_str(
            "apiserver: {v: 4, profiling: false, --audit-log-maxage: \"7\"}\nproxy: {}\n",
        )
        .unwrap();
        assert_eq!(
            args.to_string(),
            "apiserver:audit-log-maxage=7 apiserver:profiling=false apiserver:v=4"
        );
        // Saved as strings, read back the same.
        let saved = serde_yaml::to_string(&args).unwrap();
        assert!(saved.contains("v: '4'"), "{saved}");
        assert_eq!(serde_yaml::from_str::<ExtraArgs>(&saved).unwrap(), args);
        for (bad, why) in [
            ("etcd: {v: 4}", "'etcd' is not a component"),
            (
                "apiserver: {v: [4]}",
                "must be a string, a number or true/false",
            ),
            (
                "apiserver: {v: }",
                "must be a string, a number or true/false",
            ),
            ("apiserver: {Bad: 1}", "is not a flag name"),
            ("apiserver: {v: 1, --v: 2}", "given twice"),
        ] {
            let err = serde_yaml::from_str::<ExtraArgs>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
