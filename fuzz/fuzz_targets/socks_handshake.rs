//! The SOCKS5 handshake `kinit socks` answers, with and without `--auth`: a client's bytes
//! end in a request or an error, never a panic or a hang.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PIPE: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    // All of it is written before the server reads: no more than the pipe holds.
    let bytes = &bytes[..bytes.len().min(PIPE)];
    let auth =
        (mode & 1 == 1).then(|| kinit::socks::policy::parse_auth("user:secret").expect("valid"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(PIPE);
        client.write_all(bytes).await.expect("fits the pipe");
        client.shutdown().await.expect("shut down");
        let handshake = kinit::socks::handshake(server, auth.as_ref());
        tokio::time::timeout(Duration::from_secs(5), handshake)
            .await
            .map(|_| ())
            .expect("the handshake hung on a closed client");
        // Whatever the server answered is readable.
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
    });
});
