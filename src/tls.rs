//! TLS for the whole process: rustls takes its crypto provider from one process-wide
//! default, which every TLS client kinit builds (reqwest's, kube's) uses, and reqwest
//! panics when there is none. Process state belongs to the program, not to the library:
//! `main` installs it before anything else, as it sets up [`crate::logging`], and so
//! must a test that builds a client.

/// Installs ring as the process's crypto provider. Calling it again changes nothing.
pub fn install_crypto_provider() {
    // Fails only when a provider is installed already, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
