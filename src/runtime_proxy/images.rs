//! Which images the kubelet may remove. Its image garbage collector lists every image of the
//! host's Docker through cri-dockerd and removes unused ones when the disk fills, but other
//! tools share the host: the proxy records the images the node pulled (a pull that ended
//! without an error) and refuses to delete any other with 409 Conflict. The kubelet logs the
//! refusal and goes on with the next image. Images kinit loads or pulls itself (control
//! plane, etcd, CoreDNS, pause, addons) do not pass through here, so they are kept too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};

use anyhow::{Context, Result, bail};
use bytes::{Buf, Bytes};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::{Body, full, unversioned};
use crate::docker::{is_image_id, read_image_ids};

/// A request that touches the node's images.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ImageRequest {
    /// `POST /images/create`: the reference pulled (`fromImage` with its `tag`).
    Pull(String),
    /// `DELETE /images/{name}`: the name as it came in the path.
    Delete(String),
}

pub(super) fn classify<B>(req: &Request<B>) -> Option<ImageRequest> {
    let path = unversioned(req.uri().path());
    if req.method() == Method::POST && path == "/images/create" {
        return pull_reference(req.uri().query().unwrap_or("")).map(ImageRequest::Pull);
    }
    let name = path
        .strip_prefix("/images/")
        .filter(|name| !name.is_empty())?;
    (req.method() == Method::DELETE).then(|| ImageRequest::Delete(name.to_owned()))
}

/// The reference a pull names, the way Docker puts `fromImage` and `tag` together (the tag
/// may be a digest). None for an import (`fromSrc`), which pulls nothing.
fn pull_reference(query: &str) -> Option<String> {
    let mut image = None;
    let mut tag = String::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "fromImage" => image = Some(value.into_owned()),
            "tag" => tag = value.into_owned(),
            _ => {}
        }
    }
    let image = image.filter(|image| !image.is_empty())?;
    Some(match tag.as_str() {
        "" => image,
        digest if digest.contains(':') => format!("{image}@{digest}"),
        tag => format!("{image}:{tag}"),
    })
}

/// The image IDs the node pulled, one a line in a file that survives the proxy and
/// `kinit down` (it sits in the state directory). Rewritten whole and atomically on each
/// change; a line that is not an image ID (a hand edit, a torn write) is ignored.
pub(super) struct Record {
    /// None: nothing is recorded, so every removal is refused.
    path: Option<PathBuf>,
    /// One proxy process writes the file; this orders its connections.
    lock: Mutex<()>,
}

impl Record {
    pub(super) fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
        }
    }

    fn read(&self) -> Result<BTreeSet<String>> {
        let Some(path) = &self.path else {
            return Ok(BTreeSet::new());
        };
        read_image_ids(path)
    }

    async fn contains(&self, id: &str) -> Result<bool> {
        let _guard = self.lock.lock().await;
        Ok(self.read()?.contains(id))
    }

    /// Adds (`keep`) or drops `id`.
    async fn update(&self, id: &str, keep: bool) -> Result<()> {
        let _guard = self.lock.lock().await;
        let Some(path) = &self.path else {
            bail!("no file to record pulled images in (runtime-proxy --pulled-images)");
        };
        let mut ids = self.read()?;
        let changed = if keep {
            ids.insert(id.to_owned())
        } else {
            ids.remove(id)
        };
        if changed {
            let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
            crate::fs::write_file(path, text.as_bytes(), crate::fs::Mode::Private)?;
        }
        Ok(())
    }
}

/// The ID of the image `name` (a reference or an ID) names, or None when there is none.
/// On a connection of its own, so the client's stays as it is.
pub(super) async fn image_id(upstream: &Path, name: &str) -> Result<Option<String>> {
    let engine = UnixStream::connect(upstream)
        .await
        .with_context(|| format!("cannot connect to {}", upstream.display()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(engine)).await?;
    tokio::spawn(conn);
    let req = Request::get(format!("/images/{name}/json"))
        .header("host", "docker")
        .body(Empty::<Bytes>::new())
        .with_context(|| format!("cannot ask for the image {name}"))?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if status != StatusCode::OK {
        bail!("inspecting the image {name}: Docker answered {status}");
    }
    let image: serde_json::Value = serde_json::from_slice(&body)?;
    let id = image["Id"].as_str().filter(|id| is_image_id(id));
    Ok(Some(
        id.with_context(|| format!("the image {name} has no ID"))?
            .to_owned(),
    ))
}

/// Whether a removal of `name` may go to Docker: refused (409, Docker's error shape) when
/// `name` names an image the node did not pull. A name that names no image goes on, so the
/// client gets Docker's own 404.
pub(super) async fn check_delete(
    upstream: &Path,
    record: &Record,
    name: &str,
) -> Result<Result<Option<String>, Response<Body>>> {
    let Some(id) = image_id(upstream, name).await? else {
        return Ok(Ok(None));
    };
    if record.contains(&id).await? {
        return Ok(Ok(Some(id)));
    }
    info!("refused to remove the image {name} ({id}): the node did not pull it");
    let message = serde_json::json!({
        "message": format!(
            "kinit: {name} was not pulled by the cluster's node; kinit leaves it to its owner"
        )
    });
    let mut res = Response::new(full(Bytes::from(message.to_string())));
    *res.status_mut() = StatusCode::CONFLICT;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(Err(res))
}

/// After Docker removed `name`: the ID leaves the record once no name of it is left
/// (cri-dockerd removes an image tag by tag, then by ID).
pub(super) async fn deleted(upstream: &Path, record: &Record, id: &str) {
    let result = async {
        if image_id(upstream, id).await?.is_none() {
            record.update(id, false).await?;
            debug!("the node's image {id} is gone");
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        warn!("runtime proxy: cannot update the record of pulled images: {e:#}");
    }
}

/// A pull's response, passed through unchanged, recording the image once the progress
/// stream ends without an error; the end reaches the client only after that. `before` is
/// what `reference` named before the pull: an image already there under that name, and not
/// recorded, belongs to someone else and stays unrecorded.
pub(super) fn watch_pull(
    res: Response<Incoming>,
    upstream: PathBuf,
    record: Arc<Record>,
    reference: String,
    before: Option<String>,
) -> Response<Body> {
    if res.status() != StatusCode::OK {
        return res.map(BodyExt::boxed);
    }
    let pulled = Pulled {
        upstream,
        record,
        reference,
        before,
    };
    res.map(|body| {
        PullBody {
            inner: body,
            scan: Progress::default(),
            pulled: Some(pulled),
            recording: None,
        }
        .boxed()
    })
}

/// What a pull needs to record its image.
struct Pulled {
    upstream: PathBuf,
    record: Arc<Record>,
    reference: String,
    before: Option<String>,
}

impl Pulled {
    async fn record(self) {
        let Self {
            upstream,
            record,
            reference,
            before,
        } = self;
        let result = async {
            let id = image_id(&upstream, &reference)
                .await?
                .with_context(|| format!("{reference} is not there after its pull"))?;
            if before.as_deref() == Some(&id) && !record.contains(&id).await? {
                debug!("{reference} ({id}) was there before the node pulled it: not recorded");
                return Ok(());
            }
            record.update(&id, true).await?;
            debug!("recorded the node's image {reference} ({id})");
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = result {
            warn!("runtime proxy: cannot record the pulled image {reference}: {e:#}");
        }
    }
}

struct PullBody {
    inner: Incoming,
    scan: Progress,
    /// Taken when the stream ends without an error.
    pulled: Option<Pulled>,
    /// The recording, which the end of the stream waits for.
    recording: Option<JoinHandle<()>>,
}

impl HttpBody for PullBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if this.recording.is_none() {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        this.scan.feed(data.chunk());
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => match this.pulled.take() {
                    Some(pulled) if std::mem::take(&mut this.scan).succeeded() => {
                        this.recording = Some(tokio::spawn(pulled.record()));
                    }
                    _ => return Poll::Ready(None),
                },
            }
        }
        if let Some(recording) = &mut this.recording
            && !recording.is_finished()
        {
            // A panic in the recording is no reason to cut the client's stream.
            let _ = ready!(Pin::new(recording).poll(cx));
        }
        Poll::Ready(None)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads Docker's JSON progress stream (one message a line, split anywhere across chunks):
/// a pull failed when any message carries `error` or `errorDetail`.
#[derive(Default)]
pub(super) struct Progress {
    partial: Vec<u8>,
    failed: bool,
}

impl Progress {
    pub(super) fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&chunk[..end]);
            self.message();
            chunk = &chunk[end + 1..];
        }
        self.partial.extend_from_slice(chunk);
    }

    fn message(&mut self) {
        let line = std::mem::take(&mut self.partial);
        if let Ok(serde_json::Value::Object(message)) = serde_json::from_slice(&line) {
            self.failed |= message.contains_key("error") || message.contains_key("errorDetail");
        }
    }

    /// At the end of the stream: whether the pull succeeded.
    pub(super) fn succeeded(mut self) -> bool {
        self.message();
        !self.failed
    }
}

#[cfg(test)]
mod tests;
