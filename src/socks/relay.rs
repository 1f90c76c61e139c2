//! Moves a tunnel's bytes between the client and the target with splice(2): through a
//! pipe, socket to socket, without copying them into the proxy. On a loopback benchmark a
//! read/write relay spends its CPU copying; splice lets the proxy keep up with a direct
//! connection much more closely, and holds no buffers in the proxy's memory.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::{OFlag, SpliceFFlags, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The most one splice call moves, and the pipe's capacity once a tunnel carries bulk
/// data: larger than the default 64 KiB, so a fast transfer takes fewer wake-ups. The
/// kernel caps it for unprivileged users (fs.pipe-max-size); a smaller pipe still works.
const CHUNK: usize = 1024 * 1024;

/// A new tunnel's pipe keeps the kernel's default size (16 buffers): most tunnels carry a
/// request and a page or two, and sizing every pipe on creation costs each tunnel two more
/// system calls and larger kernel allocations. Once a direction has moved this much it is
/// a bulk transfer, and its pipe grows to [`CHUNK`]. Counted over the tunnel, not per
/// splice: a full default pipe may hold less than 64 KiB when the socket's buffers are
/// partly filled pages.
const BULK: u64 = 64 * 1024;

/// What a tunnel has carried so far, updated as it runs, so a tunnel closed for idling or
/// broken midway still reports its bytes.
#[derive(Debug)]
pub struct Traffic {
    up: AtomicU64,
    down: AtomicU64,
    started: Instant,
    /// Milliseconds from `started` to the last byte moved either way.
    last: AtomicU64,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            started: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Traffic {
    /// Bytes sent (client → target) and received (target → client).
    pub fn totals(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }

    /// A clock read per splice call, which is itself a system call: a vDSO read of the
    /// monotonic clock is noise beside it, and unlike a per-read timer needs no timer
    /// wheel entry.
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn last_active(&self) -> Instant {
        self.started + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// How a tunnel ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed.
    Closed,
    /// No byte moved either way for the idle timeout; the caller drops both sockets.
    Idle,
}

/// Relays both directions until each has ended, or until nothing has moved either way for
/// `idle` (never, when `None`). When one side stops sending, the other side's write half
/// is shut, as a direct connection would see it; a half-closed tunnel is idle too when
/// the open direction falls silent.
pub async fn relay(
    client: &TcpStream,
    target: &TcpStream,
    idle: Option<Duration>,
    traffic: &Traffic,
) -> io::Result<Ended> {
    let both = async {
        tokio::try_join!(
            one_way(client, target, &traffic.up, traffic),
            one_way(target, client, &traffic.down, traffic)
        )
        .map(|_| Ended::Closed)
    };
    let Some(idle) = idle else {
        return both.await;
    };
    tokio::select! {
        ended = both => ended,
        () = idle_for(traffic, idle) => Ok(Ended::Idle),
    }
}

/// Completes once nothing has moved for `limit`. One timer per tunnel, re-armed at most
/// once per `limit` rather than on every byte.
async fn idle_for(traffic: &Traffic, limit: Duration) {
    loop {
        let deadline = traffic.last_active() + limit;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    total: &AtomicU64,
    traffic: &Traffic,
) -> io::Result<()> {
    let (pipe_out, pipe_in) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SPLICE_NONBLOCK;
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
        traffic.touch();
        drain(&pipe_out, to, n, flags, traffic).await?;
        let before = total.fetch_add(n as u64, Ordering::Relaxed);
        if before < BULK && before + n as u64 >= BULK {
            // Once, at the crossing, whatever the answer: where the kernel refuses, the
            // default pipe works.
            let _ = nix::fcntl::fcntl(&pipe_in, nix::fcntl::FcntlArg::F_SETPIPE_SZ(CHUNK as i32));
        }
    }
    // The peer of `to` sees the end of the stream; reading from it goes on.
    match nix::sys::socket::shutdown(
        std::os::fd::AsRawFd::as_raw_fd(to),
        nix::sys::socket::Shutdown::Write,
    ) {
        Ok(()) | Err(nix::errno::Errno::ENOTCONN) => Ok(()),
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
    traffic: &Traffic,
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
        // A slow reader still draining a large transfer is not idle.
        traffic.touch();
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
            let traffic = Traffic::default();
            let ended = relay(&client, &target, Some(Duration::from_secs(30)), &traffic)
                .await
                .unwrap();
            assert_eq!(ended, Ended::Closed);
            traffic.totals()
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

    /// A tunnel that carries a byte now and then stays open; once both sides fall silent
    /// it ends as idle after about the timeout, with its bytes counted.
    #[tokio::test]
    async fn an_idle_tunnel_ends_after_the_timeout_and_activity_defers_it() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        let idle = Duration::from_millis(400);
        let server_task = tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut got = Vec::new();
            // Ends when the relay drops the tunnel.
            let _ = s.read_to_end(&mut got).await;
            got.len()
        });
        let relay_task = tokio::spawn(async move {
            let (client, _) = proxy.accept().await.unwrap();
            let target = TcpStream::connect(server_addr).await.unwrap();
            let traffic = Traffic::default();
            let started = Instant::now();
            let ended = relay(&client, &target, Some(idle), &traffic).await.unwrap();
            (ended, started.elapsed(), traffic.totals())
        });
        let mut c = TcpStream::connect(proxy_addr).await.unwrap();
        // Six bytes over 1.2 s, three times the timeout, each well within it.
        for _ in 0..6 {
            c.write_all(b"x").await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (ended, lasted, totals) = relay_task.await.unwrap();
        assert_eq!(ended, Ended::Idle);
        assert!(
            lasted >= Duration::from_millis(1350) && lasted < Duration::from_secs(3),
            "{lasted:?}"
        );
        assert_eq!(totals, (6, 0));
        assert_eq!(server_task.await.unwrap(), 6);
    }
}
