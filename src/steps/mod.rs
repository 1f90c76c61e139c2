//! The bring-up of `kinit up` as an ordered list of idempotent steps, one file each.
//! Every step checks what is already in place and does only what is missing.

pub mod etcd;
pub mod images;
pub mod kubectl;
pub mod pki;
pub mod preflight;

use std::path::PathBuf;

use crate::cluster::Settings;
use crate::config::Sources;
use crate::docker::Docker;
use crate::layout::Layout;

/// What every step works with.
pub struct Context {
    pub layout: Layout,
    pub settings: Settings,
    pub docker: Docker,
    pub sources: Sources,
    /// Where kubectl is installed.
    pub bin_dir: PathBuf,
}
