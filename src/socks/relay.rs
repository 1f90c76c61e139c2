//! Moves a tunnel's bytes between the client and the target with splice(2): through a
//! pipe, socket to socket, without copying them into the proxy. On a loopback benchmark a
//! read/write relay spends its CPU copying; splice lets the proxy keep up with a direct
//! connection much more closely, and holds no buffers in the proxy's memory.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{OFlag, SpliceFFlags, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The pipe's capacity, and so the most one splice call moves: larger than the default
/// 64 KiB, so a fast transfer takes fewer wake-ups. The kernel caps it for unprivileged
/// users (fs.pipe-max-size); a smaller pipe still works.
const CHUNK: usize = 1024 * 1024;

/// Relays both directions until each has ended; returns the bytes sent (client → target,
/// target → client). When one side stops sending, the other side's write half is shut,
/// as a direct connection would see it.
pub async fn relay(client: &TcpStream, target: &TcpStream) -> io::Result<(u64, u64)> {
    tokio::try_join!(one_way(client, target), one_way(target, client))
}

async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let (pipe_out, pipe_in) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let _ = nix::fcntl::fcntl(&pipe_in, nix::fcntl::FcntlArg::F_SETPIPE_SZ(CHUNK as i32));
    let flags = SpliceFFlags::SPLICE_F_MOVE | SPLICE_NONBLOCK;
    let mut total = 0u64;
    loop {
        // The pipe is empty here, so "would block" can only mean the socket has no data.
        let n = from
            .async_io(Interest::READABLE, || {
                splice(from.as_fd(), None, pipe_in.as_fd(), None, CHUNK, flags)
                    .map_err(io::Error::from)
            })
            .await?;
        if n == 0 {
            break;
        }
        drain(&pipe_out, to, n, flags).await?;
        total += n as u64;
    }
    // The peer of `to` sees the end of the stream; reading from it goes on.
    match nix::sys::socket::shutdown(
        std::os::fd::AsRawFd::as_raw_fd(to),
        nix::sys::socket::Shutdown::Write,
    ) {
        Ok(()) | Err(nix::errno::Errno::ENOTCONN) => Ok(total),
        Err(e) => Err(e.into()),
    }
}

/// Writes the `len` bytes waiting in the pipe to `to`; "would block" means its send buffer
/// is full.
async fn drain(
    pipe_out: &OwnedFd,
    to: &TcpStream,
    mut len: usize,
    flags: SpliceFFlags,
) -> io::Result<()> {
    while len > 0 {
        let n = to
            .async_io(Interest::WRITABLE, || {
                splice(pipe_out.as_fd(), None, to.as_fd(), None, len, flags)
                    .map_err(io::Error::from)
            })
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the peer stopped accepting data",
            ));
        }
        len -= n;
    }
    Ok(())
}

const SPLICE_NONBLOCK: SpliceFFlags = SpliceFFlags::SPLICE_F_NONBLOCK;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// client <-> [relay] <-> echo-less server: every byte arrives, in order, both ways,
    /// and an end of stream in one direction reaches the other side.
    #[tokio::test]
    async fn relays_both_ways_byte_exact_with_half_close() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();

        let expected = payload.clone();
        let server_task = tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, expected, "client -> server corrupted");
            s.write_all(&got[..1_000_000]).await.unwrap();
        });
        let relay_task = tokio::spawn(async move {
            let (client, _) = proxy.accept().await.unwrap();
            let target = TcpStream::connect(server_addr).await.unwrap();
            relay(&client, &target).await.unwrap()
        });

        let mut c = TcpStream::connect(proxy_addr).await.unwrap();
        c.write_all(&payload).await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, payload[..1_000_000]);
        server_task.await.unwrap();
        assert_eq!(relay_task.await.unwrap(), (3_000_000, 1_000_000));
    }
}
