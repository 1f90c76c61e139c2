//! SOCKS5 proxy benchmark on loopback (issue 5), run by scripts/bench-socks.sh, which
//! starts the proxies and passes them in:
//!
//!   socks-bench [--bytes N] [--connects N] [--concurrent N] [--tsv FILE] NAME=HOST:PORT[@PID,PID..]...
//!
//! For each proxy, and for a direct connection as the baseline, it measures:
//! - throughput: one connection downloading `--bytes` from a local server, best of 3;
//! - set-up latency: `--connects` sequential connections, each timed from the TCP connect
//!   to the first byte back from the server through the tunnel (p50 and p99). They are
//!   taken in rounds after every throughput run, one connection through each proxy in turn
//!   per round, so what disturbs the host for a moment (another VM, a daemon waking up)
//!   falls on every proxy alike rather than on whichever was being measured then: a p99 of
//!   a thousand connections is the tenth slowest, and one such moment decides it;
//! - memory: the proxy's resident memory (sum over its PIDs) idle, and with `--concurrent`
//!   tunnels open at once.
//!
//! Figures and ratios against direct and against kinit come from this one run. `--tsv FILE`
//! writes them for scripts/bench.sh too: one line per proxy, tab-separated: name, MiB/s,
//! p50 ms, p99 ms.
//!
//! Besides the proxies passed in, it measures `splice-floor`: the least a user-space relay
//! can do, in this process: a bare SOCKS5 CONNECT, then one thread per direction moving
//! bytes with blocking splice(2) and nothing else (no policy, no logging, no event loop).
//! What it loses against direct is what the relay's second TCP connection costs the kernel
//! on this host, so it bounds what any proxy here can reach.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Target {
    name: String,
    /// `None` for the direct baseline.
    proxy: Option<SocketAddr>,
    pids: Pids,
}

/// Whose memory to count: fixed processes, or every process with a command name (for
/// proxies that fork per client, read at the moment of measuring).
enum Pids {
    None,
    Fixed(Vec<u32>),
    Comm(String),
}

struct Figures {
    mib_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    idle_rss_kib: Option<u64>,
    busy_rss_kib: Option<u64>,
}

const CHUNK: usize = 256 * 1024;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let mut bytes: u64 = 2 << 30;
    let mut connects = 2000;
    let mut concurrent = 1000;
    let mut tsv: Option<String> = None;
    let mut targets = vec![Target {
        name: "direct".into(),
        proxy: None,
        pids: Pids::None,
    }];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value"))
                .and_then(|v| v.parse::<u64>().map_err(|e| format!("{flag}: {e}")))
        };
        match arg.as_str() {
            "--bytes" => bytes = value("--bytes")?,
            "--connects" => connects = value("--connects")? as usize,
            "--concurrent" => concurrent = value("--concurrent")? as usize,
            "--tsv" => tsv = Some(args.next().ok_or("--tsv needs a file")?),
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            spec => targets.push(parse_target(spec)?),
        }
    }

    if connects == 0 {
        return Err("--connects must be at least 1".into());
    }
    let source = start_source().await?;
    targets.insert(
        1,
        Target {
            name: "splice-floor".into(),
            proxy: Some(start_splice_floor().map_err(|e| format!("splice-floor: {e}"))?),
            pids: Pids::None,
        },
    );
    let mut loads = Vec::new();
    for t in &targets {
        eprintln!("measuring {} ...", t.name);
        loads.push(load(t, source, bytes, concurrent).await?);
    }
    eprintln!("measuring set-up latency, {connects} rounds ...");
    let latencies = latencies(&targets, source, connects).await?;
    let results: Vec<(String, Figures)> = targets
        .iter()
        .zip(loads)
        .zip(latencies)
        .map(|((t, load), (p50_ms, p99_ms))| {
            let figures = Figures {
                mib_per_s: load.mib_per_s,
                p50_ms,
                p99_ms,
                idle_rss_kib: load.idle_rss_kib,
                busy_rss_kib: load.busy_rss_kib,
            };
            (t.name.clone(), figures)
        })
        .collect();

    if let Some(path) = &tsv {
        let lines: String = results
            .iter()
            .map(|(n, f)| format!("{n}\t{}\t{}\t{}\n", f.mib_per_s, f.p50_ms, f.p99_ms))
            .collect();
        std::fs::write(path, lines).map_err(|e| format!("{path}: {e}"))?;
    }
    let direct = results[0].1.mib_per_s;
    let kinit = results.iter().find(|(n, _)| n == "kinit").map(|(_, f)| f);
    println!(
        "SOCKS5 on loopback: {} MiB download (best of 3), {connects} sequential connects each (in rounds over all), {concurrent} concurrent tunnels",
        bytes >> 20
    );
    println!(
        "{:<13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11} {:>9}",
        "proxy",
        "MiB/s",
        "%direct",
        "p50 ms",
        "p99 ms",
        "p99/kinit",
        "idle RSS",
        "RSS @conc",
        "RSS/kinit"
    );
    for (name, f) in &results {
        let kib =
            |v: Option<u64>| v.map_or("-".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        println!(
            "{:<13} {:>9.0} {:>8.1}% {:>9.3} {:>9.3} {:>9} {:>11} {:>11} {:>9}",
            name,
            f.mib_per_s,
            100.0 * f.mib_per_s / direct,
            f.p50_ms,
            f.p99_ms,
            ratio(Some(f.p99_ms), kinit.map(|k| k.p99_ms)),
            kib(f.idle_rss_kib),
            kib(f.busy_rss_kib),
            ratio(
                f.busy_rss_kib.map(|v| v as f64),
                kinit.and_then(|k| k.busy_rss_kib).map(|v| v as f64)
            ),
        );
    }
    let floor = results.iter().find(|(n, _)| n == "splice-floor");
    if let (Some(k), Some((_, f))) = (kinit, floor) {
        println!(
            "kinit's throughput: {:.1}% of direct, {:.1}% of splice-floor (the bare relay: what a proxy can reach on this host)",
            100.0 * k.mib_per_s / direct,
            100.0 * k.mib_per_s / f.mib_per_s
        );
    }
    Ok(())
}

fn parse_target(spec: &str) -> Result<Target, String> {
    let (name, rest) = spec
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=HOST:PORT[@PID,..], got {spec}"))?;
    let (addr, pids) = match rest.split_once('@') {
        Some((a, p)) => (a, p),
        None => (rest, ""),
    };
    let pids = match pids.strip_prefix("comm:") {
        Some(comm) => Pids::Comm(comm.to_string()),
        None if pids.is_empty() => Pids::None,
        None => Pids::Fixed(
            pids.split(',')
                .map(|p| p.parse::<u32>().map_err(|e| format!("pid {p}: {e}")))
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(Target {
        name: name.into(),
        proxy: Some(addr.parse().map_err(|e| format!("{addr}: {e}"))?),
        pids,
    })
}

/// A local server: reads an 8-byte big-endian length, then sends that many bytes
/// (a length of 0 means: send one byte and keep the connection open until closed).
async fn start_source() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let block = vec![0x5a_u8; CHUNK];
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let block = block.clone();
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut len = [0u8; 8];
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut left = u64::from_be_bytes(len);
                if left == 0 {
                    let _ = s.write_all(b"!").await;
                    let mut sink = [0u8; 1];
                    let _ = s.read(&mut sink).await;
                    return;
                }
                while left > 0 {
                    let n = left.min(CHUNK as u64) as usize;
                    if s.write_all(&block[..n]).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
            });
        }
    });
    Ok(addr)
}

/// The bare relay described at the top: a blocking SOCKS5 CONNECT (IPv4, no auth) and one
/// thread per direction splicing through a pipe.
fn start_splice_floor() -> std::io::Result<SocketAddr> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let serve = |mut client: std::net::TcpStream| -> std::io::Result<()> {
        client.set_nodelay(true)?;
        let mut greeting = [0u8; 3];
        client.read_exact(&mut greeting)?;
        client.write_all(&[5, 0])?;
        let mut request = [0u8; 10];
        client.read_exact(&mut request)?;
        let ip = std::net::Ipv4Addr::new(request[4], request[5], request[6], request[7]);
        let port = u16::from_be_bytes([request[8], request[9]]);
        let target = std::net::TcpStream::connect((ip, port))?;
        target.set_nodelay(true)?;
        client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
        let (client_end, target_end) = (client.try_clone()?, target.try_clone()?);
        for (from, to) in [(client.try_clone()?, target.try_clone()?), (target, client)] {
            let spawned = std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || splice_until_eof(&from, &to));
            if let Err(e) = spawned {
                // Half a tunnel would hang the benchmark: end the whole of it.
                let _ = client_end.shutdown(std::net::Shutdown::Both);
                let _ = target_end.shutdown(std::net::Shutdown::Both);
                return Err(e);
            }
        }
        Ok(())
    };
    std::thread::spawn(move || {
        for client in listener.incoming() {
            if let Err(e) = client.and_then(serve) {
                eprintln!("splice-floor: {e}");
                // Out of descriptors and the like: wait rather than spin.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    Ok(addr)
}

fn splice_until_eof(from: &std::net::TcpStream, to: &std::net::TcpStream) {
    use nix::fcntl::{SpliceFFlags, splice};
    use std::os::fd::AsFd;
    const PIPE: usize = 1024 * 1024;
    let Ok((pipe_out, pipe_in)) = nix::unistd::pipe() else {
        return;
    };
    let _ = nix::fcntl::fcntl(&pipe_in, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE as i32));
    let flags = SpliceFFlags::SPLICE_F_MOVE;
    while let Ok(n) = splice(from.as_fd(), None, pipe_in.as_fd(), None, PIPE, flags) {
        if n == 0 {
            break;
        }
        let mut left = n;
        while left > 0 {
            match splice(pipe_out.as_fd(), None, to.as_fd(), None, left, flags) {
                Ok(0) | Err(_) => return,
                Ok(m) => left -= m,
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// A TCP connection to `dest`, through the SOCKS5 proxy when there is one (no auth,
/// CONNECT to an IPv4 address).
async fn open(proxy: Option<SocketAddr>, dest: SocketAddr) -> Result<TcpStream, String> {
    let Some(proxy) = proxy else {
        let s = TcpStream::connect(dest).await.map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        return Ok(s);
    };
    let mut s = TcpStream::connect(proxy)
        .await
        .map_err(|e| format!("proxy {proxy}: {e}"))?;
    let _ = s.set_nodelay(true);
    let SocketAddr::V4(v4) = dest else {
        return Err("IPv4 destinations only".into());
    };
    s.write_all(&[5, 1, 0]).await.map_err(|e| e.to_string())?;
    let mut method = [0u8; 2];
    s.read_exact(&mut method)
        .await
        .map_err(|e| format!("greeting: {e}"))?;
    if method != [5, 0] {
        return Err(format!("no-auth refused: {method:?}"));
    }
    let mut request = vec![5, 1, 0, 1];
    request.extend(v4.ip().octets());
    request.extend(v4.port().to_be_bytes());
    s.write_all(&request).await.map_err(|e| e.to_string())?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head)
        .await
        .map_err(|e| format!("reply: {e}"))?;
    if head[0] != 5 || head[1] != 0 {
        return Err(format!("refused: {head:?}"));
    }
    // The bound address: IPv4, IPv6 or a name, then the port.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await.map_err(|e| e.to_string())?;
            usize::from(len[0]) + 2
        }
        other => return Err(format!("bad address type {other}")),
    };
    let mut bound = vec![0u8; rest];
    s.read_exact(&mut bound).await.map_err(|e| e.to_string())?;
    Ok(s)
}

async fn download(proxy: Option<SocketAddr>, dest: SocketAddr, bytes: u64) -> Result<f64, String> {
    let mut s = open(proxy, dest).await?;
    let started = Instant::now();
    s.write_all(&bytes.to_be_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while got < bytes {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("closed after {got} of {bytes} bytes"));
        }
        got += n as u64;
    }
    Ok(bytes as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64())
}

/// Connect, set up the tunnel, and wait for the server's first byte through it.
async fn first_byte(proxy: Option<SocketAddr>, dest: SocketAddr) -> Result<TcpStream, String> {
    let mut s = open(proxy, dest).await?;
    s.write_all(&0u64.to_be_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut one = [0u8; 1];
    s.read_exact(&mut one).await.map_err(|e| e.to_string())?;
    Ok(s)
}

fn rss_kib(pids: &Pids) -> Option<u64> {
    let pids: Vec<u32> = match pids {
        Pids::None => return None,
        Pids::Fixed(p) => p.clone(),
        Pids::Comm(name) => std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
            })
            .collect(),
    };
    let mut total = 0;
    for pid in &pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())?;
    }
    Some(total)
}

/// What one proxy moves and holds: throughput and memory.
struct Load {
    mib_per_s: f64,
    idle_rss_kib: Option<u64>,
    busy_rss_kib: Option<u64>,
}

async fn load(t: &Target, dest: SocketAddr, bytes: u64, concurrent: usize) -> Result<Load, String> {
    // Warm up (and check the proxy works) before measuring anything.
    first_byte(t.proxy, dest).await?;
    let idle_rss_kib = rss_kib(&t.pids);

    let mut best: f64 = 0.0;
    for _ in 0..3 {
        best = best.max(download(t.proxy, dest, bytes).await?);
    }

    let mut open_tunnels = Vec::with_capacity(concurrent);
    for _ in 0..concurrent {
        open_tunnels.push(first_byte(t.proxy, dest).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy_rss_kib = rss_kib(&t.pids);
    drop(open_tunnels);
    tokio::time::sleep(Duration::from_millis(500)).await;

    Ok(Load {
        mib_per_s: best,
        idle_rss_kib,
        busy_rss_kib,
    })
}

/// Each target's set-up latency p50 and p99 in milliseconds, from `rounds` rounds of one
/// connection through each target in turn.
async fn latencies(
    targets: &[Target],
    dest: SocketAddr,
    rounds: usize,
) -> Result<Vec<(f64, f64)>, String> {
    let mut times = vec![Vec::with_capacity(rounds); targets.len()];
    for _ in 0..rounds {
        for (t, times) in targets.iter().zip(&mut times) {
            let started = Instant::now();
            let s = first_byte(t.proxy, dest).await?;
            times.push(started.elapsed());
            drop(s);
        }
    }
    Ok(times
        .into_iter()
        .map(|mut times| {
            times.sort();
            let pct = |p: f64| {
                let i = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1;
                times[i].as_secs_f64() * 1000.0
            };
            (pct(0.50), pct(0.99))
        })
        .collect())
}
