use super::*;

fn classified(method: Method, uri: &str) -> Option<ImageRequest> {
    classify(
        &Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .expect("request"),
    )
}

#[test]
fn pulls_and_deletes_are_recognised_with_or_without_a_version() {
    let pull = |uri| classified(Method::POST, uri);
    let delete = |uri| classified(Method::DELETE, uri);
    let of = |s: &str| Some(ImageRequest::Pull(s.to_owned()));
    assert_eq!(
        pull("/images/create?fromImage=busybox&tag=1.36"),
        of("busybox:1.36")
    );
    assert_eq!(
        pull("/v1.41/images/create?fromImage=127.0.0.1%3A5000%2Fteam%2Fapp&tag=v2"),
        of("127.0.0.1:5000/team/app:v2")
    );
    assert_eq!(
        pull("/v1.44/images/create?tag=sha256%3Aabc&fromImage=registry.example%2Fapp"),
        of("registry.example/app@sha256:abc")
    );
    assert_eq!(pull("/images/create?fromImage=nginx"), of("nginx"));
    // An import pulls nothing.
    assert_eq!(pull("/images/create?fromSrc=-&repo=x"), None);
    assert_eq!(classified(Method::GET, "/images/create?fromImage=x"), None);

    let of = |s: &str| Some(ImageRequest::Delete(s.to_owned()));
    assert_eq!(delete("/images/busybox:1.36"), of("busybox:1.36"));
    assert_eq!(
        delete("/v1.41/images/127.0.0.1:5000/team/app:v2?force=0&noprune=0"),
        of("127.0.0.1:5000/team/app:v2")
    );
    assert_eq!(
        delete("/v1.41/images/registry.example/app@sha256:0123"),
        of("registry.example/app@sha256:0123")
    );
    assert_eq!(delete("/images/sha256:0123"), of("sha256:0123"));
    assert_eq!(delete("/images/"), None);
    assert_eq!(delete("/containers/abc"), None);
    assert_eq!(classified(Method::GET, "/images/busybox/json"), None);
    assert_eq!(classified(Method::POST, "/containers/create"), None);
}

fn progress(chunks: &[&str]) -> bool {
    let mut scan = Progress::default();
    for chunk in chunks {
        scan.feed(chunk.as_bytes());
    }
    scan.succeeded()
}

#[test]
fn a_pull_succeeds_only_when_no_message_carries_an_error() {
    let status = r#"{"status":"Pulling from library/busybox","id":"1.36"}"#;
    let done = r#"{"status":"Status: Downloaded newer image for busybox:1.36"}"#;
    let error = r#"{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}"#;
    // A clean end, however the stream is cut into chunks.
    let clean = format!("{status}\r\n{done}\r\n");
    assert!(progress(&[&clean]));
    let (a, b) = clean.split_at(17);
    assert!(progress(&[a, b]));
    assert!(progress(&[&clean[..clean.len() - 2]]));
    // An error in the last message, with or without a line end.
    assert!(!progress(&[&format!("{status}\r\n{error}\r\n")]));
    assert!(!progress(&[&format!("{status}\r\n{error}")]));
    // An error in the middle, split across chunks.
    let middle = format!("{status}\n{error}\n{done}\n");
    let (a, b) = middle.split_at(status.len() + 10);
    assert!(!progress(&[a, b]));
    // A message merely mentioning the word is no error.
    assert!(progress(&[r#"{"status":"error-free"}"#]));
    assert!(progress(&[]));
}

const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn the_record_adds_removes_and_survives_a_torn_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cri-dockerd/pulled");
    let record = Record::new(Some(path.clone()));
    assert!(!record.contains(A).await.expect("read"));
    record.update(A, true).await.expect("add");
    record.update(B, true).await.expect("add");
    record.update(A, true).await.expect("add again");
    assert_eq!(
        std::fs::read_to_string(&path).expect("file"),
        format!("{B}\n{A}\n")
    );
    record.update(A, false).await.expect("remove");
    assert!(!record.contains(A).await.expect("read"));
    assert!(record.contains(B).await.expect("read"));

    // A torn last line (and any other line that is no ID) is ignored, and dropped by the
    // next write.
    std::fs::write(&path, format!("{B}\n{}", &A[..20])).expect("tear");
    assert!(record.contains(B).await.expect("read"));
    assert!(!record.contains(&A[..20]).await.expect("read"));
    record.update(A, true).await.expect("add after a tear");
    assert_eq!(
        std::fs::read_to_string(&path).expect("file"),
        format!("{B}\n{A}\n")
    );
    for text in [format!("junk\n{A}\r\n\n{B}x\n"), format!("junk\n{A}\n\n")] {
        std::fs::write(&path, text).expect("write");
        assert_eq!(
            crate::docker::read_image_ids(&path).expect("read"),
            BTreeSet::from([A.to_owned()])
        );
    }

    // Without a file nothing is recorded, and nothing can be.
    let none = Record::new(None);
    assert!(!none.contains(A).await.expect("read"));
    assert!(none.update(A, true).await.is_err());
}
