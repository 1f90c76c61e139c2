//! kinit's node image, assembled on the user's host from upstream release files: the
//! kubelet, cri-dockerd, the CNI plugins, and kinit itself (its Docker API interposer runs
//! beside cri-dockerd). No compiler, no package manager and no image of kinit's own: the
//! image is one layer written here as a `docker save` archive and loaded into Docker.
//!
//! The node's tools (mount, nsenter, iptables, ip, ...) are the host's, mounted read-only
//! into the container (see `manifests/components/master.yaml`): they match the host's
//! kernel and its iptables backend, and the image stays free of any distribution.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use flate2::read::GzDecoder;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::release::{CNI_PLUGINS, arch};

/// In `.invalid`, a top-level domain reserved never to resolve (RFC 2606): no registry
/// serves this name, so no pull (a pod's `imagePullPolicy: Always` included) can re-point
/// a tag of it.
pub const REPOSITORY: &str = "kinit.invalid/node";
/// Where kinit versions before that named it; their images are removed like older ones.
pub const FORMER_REPOSITORY: &str = "kinit/node";
/// Every name a node image of kinit's has had.
pub const REPOSITORIES: [&str; 2] = [REPOSITORY, FORMER_REPOSITORY];
/// Labels every node image with the recipe it was assembled from.
pub const LABEL_RECIPE: &str = "io.kinit.node-recipe";
/// Where kinit's binaries sit in the image, first on PATH: the host's /usr is mounted
/// over the image's, so nothing of the image may live there.
pub const BIN_DIR: &str = "/kinit/bin";
/// Changes whenever the image's layout changes, so older images are not taken for it.
const FORMAT: &str = "kinit-node-1";

/// The verified files an image is assembled from.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub kubelet: PathBuf,
    /// The upstream `cri-dockerd-<v>.<arch>.tgz`.
    pub cri_dockerd_tgz: PathBuf,
    /// The upstream `cni-plugins-linux-<arch>-<v>.tgz`.
    pub cni_tgz: PathBuf,
    /// The kinit binary to run the interposer from.
    pub kinit: PathBuf,
}

/// A short digest naming what an image holds: the inputs' SHA-256s and the layout.
pub fn recipe(input_digests: &[&str]) -> String {
    let mut hash = Sha256::new();
    hash.update(FORMAT);
    for d in input_digests {
        hash.update(b"\n");
        hash.update(d.as_bytes());
    }
    hex(&hash.finalize())[..12].to_string()
}

/// `kinit.invalid/node:v1.36.3-<recipe>`: a new recipe is a new tag, so the master container
/// is replaced when what it runs changes.
pub fn tag(kubernetes_version: &str, recipe: &str) -> String {
    format!("{REPOSITORY}:{kubernetes_version}-{recipe}")
}

/// Writes the image as a `docker save` archive at `out` (one layer, no base image);
/// returns the image's ID (the digest of its config), which the engine gives it on load.
pub fn write_archive(inputs: &Inputs, tag: &str, recipe: &str, out: &Path) -> Result<String> {
    let layer_path = out.with_extension("layer");
    let result = write_with_layer(inputs, tag, recipe, out, &layer_path);
    let _ = std::fs::remove_file(&layer_path);
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result
}

fn write_with_layer(
    inputs: &Inputs,
    tag: &str,
    recipe: &str,
    out: &Path,
    layer_path: &Path,
) -> Result<String> {
    // Written, then read back into the archive.
    let layer_file = crate::fs::create_fresh(layer_path, crate::fs::Mode::Private)?;
    let mut hashing = HashingWriter::new(BufWriter::new(layer_file));
    write_layer(inputs, &mut hashing)?;
    let (writer, layer_digest) = hashing.finish();
    let mut layer_file = writer
        .into_inner()
        .map_err(|e| anyhow!("cannot write {}: {}", layer_path.display(), e.error()))?;
    let layer_size = layer_file.stream_position()?;
    layer_file.seek(SeekFrom::Start(0))?;

    let config = serde_json::to_vec(&json!({
        "architecture": arch(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": [format!("PATH={BIN_DIR}:{}", crate::fs::SYSTEM_PATH)],
            "Labels": { LABEL_RECIPE: recipe },
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        "history": [{
            "created": "1970-01-01T00:00:00Z",
            "created_by": "kinit: kubelet, cri-dockerd and the CNI plugins from their upstream releases",
        }],
    }))?;
    let config_digest = hex(&Sha256::digest(&config));
    let config_name = format!("{config_digest}.json");
    let layer_name = format!("{layer_digest}/layer.tar");
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": [layer_name],
    }]))?;

    let file = crate::fs::create_fresh(out, crate::fs::Mode::Private)?;
    let mut archive = tar::Builder::new(BufWriter::new(file));
    append_bytes(&mut archive, &config_name, &config, 0o644)?;
    append_reader(
        &mut archive,
        &layer_name,
        layer_size,
        0o644,
        &mut layer_file,
    )?;
    append_bytes(&mut archive, "manifest.json", &manifest, 0o644)?;
    archive
        .into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(format!("sha256:{config_digest}"))
}

/// The image's one layer: kinit's binaries in /kinit/bin, the CNI plugins in /opt/cni/bin,
/// and the directories the kubelet and Go expect (/tmp, /run).
fn write_layer(inputs: &Inputs, out: &mut impl Write) -> Result<()> {
    let mut layer = tar::Builder::new(out);
    for (dir, mode) in [
        ("kinit", 0o755),
        ("kinit/bin", 0o755),
        ("opt", 0o755),
        ("opt/cni", 0o755),
        ("opt/cni/bin", 0o755),
        ("run", 0o755),
        ("tmp", 0o1777),
    ] {
        append_dir(&mut layer, dir, mode)?;
    }
    append_file(&mut layer, "kinit/bin/kubelet", &inputs.kubelet)?;
    append_file(&mut layer, "kinit/bin/kinit", &inputs.kinit)?;

    for (_, bytes) in extract_members(&inputs.cri_dockerd_tgz, &["cri-dockerd/cri-dockerd"])? {
        append_bytes(&mut layer, "kinit/bin/cri-dockerd", &bytes, 0o755)?;
    }
    let wanted: Vec<String> = CNI_PLUGINS.iter().map(|p| format!("./{p}")).collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    for (name, bytes) in extract_members(&inputs.cni_tgz, &wanted)? {
        let plugin = name.trim_start_matches("./");
        append_bytes(&mut layer, &format!("opt/cni/bin/{plugin}"), &bytes, 0o755)?;
    }
    layer.into_inner()?.flush()?;
    Ok(())
}

/// The named regular files of a gzip tar archive, every one of them or an error naming
/// the first missing one.
fn extract_members(tgz: &Path, names: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
    let file = File::open(tgz).with_context(|| format!("cannot open {}", tgz.display()))?;
    let bad = || format!("{} is not a release archive (gzip tar)", tgz.display());
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let mut found = Vec::new();
    for entry in archive.entries().with_context(bad)? {
        let mut entry = entry.with_context(bad)?;
        let path = entry
            .path()
            .with_context(bad)?
            .to_string_lossy()
            .into_owned();
        let normal = path.trim_start_matches("./");
        let Some(name) = names.iter().find(|n| n.trim_start_matches("./") == normal) else {
            continue;
        };
        if !entry.header().entry_type().is_file() {
            bail!("{path} in {} is not a regular file", tgz.display());
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).with_context(bad)?;
        found.push((name.to_string(), bytes));
    }
    for name in names {
        if !found.iter().any(|(n, _)| n == name) {
            bail!(
                "{} has no {} (is it the upstream release archive?)",
                tgz.display(),
                name.trim_start_matches("./")
            );
        }
    }
    Ok(found)
}

fn header(mode: u32, size: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str, mode: u32) -> Result<()> {
    let mut h = header(mode, 0, tar::EntryType::Directory);
    b.append_data(&mut h, format!("{path}/"), io::empty())
        .with_context(|| format!("cannot add {path} to the node image"))
}

fn append_bytes<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    mode: u32,
) -> Result<()> {
    let mut h = header(mode, data.len() as u64, tar::EntryType::Regular);
    b.append_data(&mut h, path, data)
        .with_context(|| format!("cannot add {path} to the node image"))
}

fn append_reader<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    mode: u32,
    data: &mut impl Read,
) -> Result<()> {
    let mut h = header(mode, size, tar::EntryType::Regular);
    b.append_data(&mut h, path, data)
        .with_context(|| format!("cannot add {path} to the node image"))
}

fn append_file<W: Write>(b: &mut tar::Builder<W>, path: &str, src: &Path) -> Result<()> {
    let mut file = File::open(src).with_context(|| format!("cannot read {}", src.display()))?;
    let size = file.metadata()?.len();
    append_reader(b, path, size, 0o755, &mut file)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes what passes through, so the layer's digest comes from the one write.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
        }
    }

    fn finish(self) -> (W, String) {
        (self.inner, hex(&self.hash.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};

    /// A release archive; names ending in '/' are directory entries, as upstream's `./`.
    fn tgz(path: &Path, files: &[(&str, &[u8])]) {
        let gz = GzEncoder::new(File::create(path).unwrap(), Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, data) in files {
            let kind = if name.ends_with('/') {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            };
            let mut h = header(0o755, data.len() as u64, kind);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
    }

    fn inputs(dir: &Path, cni: &[(&str, &[u8])]) -> Inputs {
        let kubelet = dir.join("kubelet");
        std::fs::write(&kubelet, b"kubelet-binary").unwrap();
        let cri = dir.join("cri.tgz");
        tgz(
            &cri,
            &[
                ("cri-dockerd/", b""),
                ("cri-dockerd/cri-dockerd", b"cri-binary"),
            ],
        );
        let cni_tgz = dir.join("cni.tgz");
        tgz(&cni_tgz, cni);
        Inputs {
            kubelet: kubelet.clone(),
            cri_dockerd_tgz: cri,
            cni_tgz,
            kinit: kubelet,
        }
    }

    fn members(path: &Path) -> Vec<(String, u32, Vec<u8>)> {
        let mut a = tar::Archive::new(File::open(path).unwrap());
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mode = e.header().mode().unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, mode, data)
            })
            .collect()
    }

    #[test]
    fn the_archive_is_a_docker_save_of_one_layer() {
        let dir = tempfile::tempdir().unwrap();
        let all: Vec<(&str, &[u8])> = vec![
            ("./", b""),
            ("./bridge", b"b"),
            ("./host-local", b"h"),
            ("./loopback", b"l"),
            ("./portmap", b"p"),
            ("./vlan", b"v"),
        ];
        let inputs = inputs(dir.path(), &all);
        let out = dir.path().join("node.tar");
        let id = write_archive(&inputs, "kinit.invalid/node:v1.36.3-abc", "abc", &out).unwrap();
        assert!(!out.with_extension("layer").exists());

        let outer = members(&out);
        let manifest = &outer.iter().find(|m| m.0 == "manifest.json").unwrap().2;
        let manifest: serde_json::Value = serde_json::from_slice(manifest).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], "kinit.invalid/node:v1.36.3-abc");
        let config_name = manifest[0]["Config"].as_str().unwrap();
        let config = &outer.iter().find(|m| m.0 == config_name).unwrap().2;
        // The engine names the image by its config's digest: the ID kinit records.
        assert_eq!(id, format!("sha256:{}", hex(&Sha256::digest(config))));
        let config: serde_json::Value = serde_json::from_slice(config).unwrap();
        assert_eq!(config["config"]["Labels"][LABEL_RECIPE], "abc");
        let layer_name = manifest[0]["Layers"][0].as_str().unwrap();
        let layer = &outer.iter().find(|m| m.0 == layer_name).unwrap().2;
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            format!("sha256:{}", hex(&Sha256::digest(layer)))
        );

        let layer_path = dir.path().join("layer.tar");
        std::fs::write(&layer_path, layer).unwrap();
        let inner = members(&layer_path);
        let names: Vec<&str> = inner.iter().map(|m| m.0.as_str()).collect();
        for want in [
            "kinit/bin/kubelet",
            "kinit/bin/cri-dockerd",
            "kinit/bin/kinit",
            "opt/cni/bin/bridge",
            "opt/cni/bin/portmap",
            "tmp/",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert!(
            !names.contains(&"opt/cni/bin/vlan"),
            "only the plugins kinit uses"
        );
        let cri = inner
            .iter()
            .find(|m| m.0 == "kinit/bin/cri-dockerd")
            .unwrap();
        assert_eq!((cri.1, cri.2.as_slice()), (0o755, &b"cri-binary"[..]));
    }

    #[test]
    fn a_release_archive_without_a_plugin_is_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = inputs(dir.path(), &[("./bridge", b"b")]);
        let out = dir.path().join("node.tar");
        let err = format!(
            "{:#}",
            write_archive(&inputs, "kinit.invalid/node:x", "x", &out).unwrap_err()
        );
        assert!(err.contains("has no host-local"), "{err}");
        assert!(!out.with_extension("layer").exists());
    }

    #[test]
    fn recipes_change_with_any_input() {
        let a = recipe(&["1", "2", "3"]);
        assert_eq!(a.len(), 12);
        assert_ne!(a, recipe(&["1", "2", "4"]));
        assert_eq!(
            tag("v1.36.3", &a),
            format!("kinit.invalid/node:v1.36.3-{a}")
        );
    }
}
