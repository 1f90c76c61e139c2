//! The engine's answers kinit acts on, told apart by bollard's error variant and the HTTP
//! status code the engine sent.

use std::io;

use bollard::errors::Error as Bollard;
use caps::Capability;

/// A failed engine call, classified once where it is made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404: no container or image by that name.
    #[error(transparent)]
    NotFound(Bollard),
    /// 304: the container is already in the state asked for (started, stopped).
    #[error(transparent)]
    NotModified(Bollard),
    /// runc could not give a container capabilities outside the host's bounding set: the
    /// host refuses `--privileged`.
    #[error(transparent)]
    CapabilitiesRefused(Bollard),
    /// The engine is older than a capability it was asked for (Docker 20.10 does not know
    /// CAP_BPF).
    #[error("{error}")]
    UnknownCapability {
        capability: Capability,
        error: Bollard,
    },
    #[error(transparent)]
    Engine(Bollard),
}

impl From<Bollard> for Error {
    fn from(error: Bollard) -> Self {
        let Bollard::DockerResponseServerError {
            status_code,
            message,
        } = &error
        else {
            return Self::Engine(error);
        };
        match status_code {
            404 => Self::NotFound(error),
            304 => Self::NotModified(error),
            _ => match refused_capability(message) {
                Some(CapabilityRefusal::Unknown(capability)) => {
                    Self::UnknownCapability { capability, error }
                }
                Some(CapabilityRefusal::OutsideBoundingSet) => Self::CapabilitiesRefused(error),
                None => Self::Engine(error),
            },
        }
    }
}

/// Why the engine refused capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CapabilityRefusal {
    Unknown(Capability),
    OutsideBoundingSet,
}

/// Reads a capability refusal out of the engine's message. Only the text tells these
/// apart: an unknown capability is an "invalid CapAdd" that shares its status code with
/// every other invalid setting, and runc's failure to apply capabilities reaches the
/// engine as a 500 like any other failed start. Neither has a code of its own.
fn refused_capability(message: &str) -> Option<CapabilityRefusal> {
    if message.contains("apply caps") && message.contains("operation not permitted") {
        return Some(CapabilityRefusal::OutsideBoundingSet);
    }
    // invalid CapAdd: unknown capability: "CAP_BPF"
    let rest = &message[message.find("unknown capability")?..];
    let name = rest.split('"').nth(1)?;
    caps::to_canonical(name)
        .parse()
        .ok()
        .map(CapabilityRefusal::Unknown)
}

/// Whether the engine's socket refused kinit for lack of permission (not root, not in the
/// docker group): the connection error carries the OS error deep in its chain (bollard's
/// hyper client error, then hyper's "client error (Connect)"), never in its text.
pub fn is_permission_denied(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status_code: u16, message: &str) -> Error {
        Error::from(Bollard::DockerResponseServerError {
            status_code,
            message: message.into(),
        })
    }

    #[test]
    fn status_codes_classify_the_answer() {
        assert!(matches!(
            answer(404, "No such container: kinit-etcd"),
            Error::NotFound(_)
        ));
        assert!(matches!(
            answer(304, "container already started"),
            Error::NotModified(_)
        ));
        assert!(matches!(answer(409, "conflict"), Error::Engine(_)));
        // The code decides, not the words: a 500 that says "no such" is no 404.
        assert!(matches!(answer(500, "No such container"), Error::Engine(_)));
        assert!(matches!(
            Error::from(Bollard::RequestTimeoutError),
            Error::Engine(_)
        ));
    }

    #[test]
    fn capability_refusals_are_read_from_the_message() {
        let refusal = answer(
            500,
            "failed to create shim task: OCI runtime create failed: runc create failed: \
             unable to start container process: unable to apply caps: operation not permitted: unknown",
        );
        assert!(matches!(refusal, Error::CapabilitiesRefused(_)));
        for (status, message) in [
            (400, "invalid CapAdd: unknown capability: \"CAP_BPF\""),
            (500, "invalid CapAdd: unknown capability: \"bpf\""),
        ] {
            match answer(status, message) {
                Error::UnknownCapability { capability, .. } => {
                    assert_eq!(capability, Capability::CAP_BPF, "{message}");
                }
                other => panic!("{message}: {other:?}"),
            }
        }
        // A name no kernel has is no capability kinit asked for.
        assert!(matches!(
            answer(400, "invalid CapAdd: unknown capability: \"CAP_NONSENSE\""),
            Error::Engine(_)
        ));
    }

    #[test]
    fn the_message_stays_the_engines() {
        let text = "invalid CapAdd: unknown capability: \"CAP_BPF\"";
        assert_eq!(
            answer(400, text).to_string(),
            format!("Docker responded with status code 400: {text}")
        );
    }

    #[test]
    fn permission_denied_is_found_in_the_chain() {
        let connect = |kind: io::ErrorKind| {
            anyhow::Error::new(io::Error::from(kind))
                .context("client error (Connect)")
                .context("Error in the hyper legacy client")
        };
        assert!(is_permission_denied(
            connect(io::ErrorKind::PermissionDenied).as_ref()
        ));
        assert!(!is_permission_denied(
            connect(io::ErrorKind::ConnectionRefused).as_ref()
        ));
        assert!(!is_permission_denied(&Bollard::SocketNotFoundError(
            "/var/run/docker.sock".into()
        )));
    }
}
