//! A TCP proxy that makes a loopback S3 server behave more like S3 seen from
//! a Lambda function: each connection's server→client bytes are capped at
//! `--mbps` megabytes per second (one S3 GET stream tops out at roughly
//! 90 MB/s; parallel ranged GETs are how clients go faster), and each
//! response's first byte is held until `--first-byte-ms` after the request
//! that triggered it (S3's time to first byte, ~20 ms).
//!
//! ```text
//! s3_throttle --listen 127.0.0.1:0 --upstream 127.0.0.1:8014 [--mbps 90] [--first-byte-ms 20]
//!             [--stats-listen 127.0.0.1:0 [--stats-window-ms 50]]
//! ```
//!
//! The first line on stdout is the bound address (`127.0.0.1:PORT`), so a
//! caller that asked for port 0 learns which one it got. `--mbps 0` means no
//! cap. It knows nothing of HTTP: a request starts with the first
//! client→server bytes since the previous answer began to flow back, which is
//! how HTTP/1.1 keep-alive traffic goes (no pipelining).
//!
//! With `--stats-listen`, the second stdout line is a second address where
//! any request is answered with what the proxy counted: for each client
//! connection, the bytes it let through to the client in each window of
//! `--stats-window-ms` since the proxy started (JSON, see [`Stats::json`]).
//! tests/it/s3_sim.rs checks the cap by those counts rather than by how long
//! a download took, which a busy machine stretches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Bursts allowed above the steady rate, in time at that rate. Tokio's timer
/// has millisecond granularity, so a sleep ends up to ~1 ms late; a tolerance
/// larger than that keeps the late part from being lost (the rate stays
/// exact), while staying small against a 16 MB range (4 ms at 90 MB/s is
/// 360 KB, ~2%).
const BURST: Duration = Duration::from_millis(4);

/// Largest read from the server: fewer wake-ups per MB than tokio's 8 KiB
/// default copy buffer, small against the burst.
const CHUNK: usize = 64 * 1024;

/// Read-ahead from the server: whenever no more than `REFILL_AT` bytes wait
/// in the proxy, it reads at full speed until `READ_AHEAD` do, and paces the
/// client out of that buffer. s3s-fs spends far more CPU per byte when
/// drained a little at a time than when drained fast (one stream paced at
/// 90 MB/s cost it about a core), and here it shares the two cores with the
/// client under test; draining it in bursts keeps its cost down.
const READ_AHEAD: usize = 4 << 20;
const REFILL_AT: usize = 1 << 20;

#[derive(Debug, Clone)]
struct Options {
    listen: String,
    upstream: String,
    /// Megabytes (10^6 bytes) per second per connection; 0 = no cap.
    mbps: f64,
    first_byte: Duration,
    /// Where to answer with the byte counts ([`Stats`]); none: not counted.
    stats_listen: Option<String>,
    stats_window: Duration,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut opts = Options {
        listen: "127.0.0.1:0".into(),
        upstream: String::new(),
        mbps: 90.0,
        first_byte: Duration::from_millis(20),
        stats_listen: None,
        stats_window: Duration::from_millis(50),
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => opts.listen = value()?,
            "--upstream" => opts.upstream = value()?,
            "--mbps" => {
                opts.mbps = value()?
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                    .ok_or("--mbps takes a number ≥ 0 (0 = no cap)")?
            }
            "--first-byte-ms" => {
                opts.first_byte = Duration::from_millis(
                    value()?
                        .parse()
                        .map_err(|_| "--first-byte-ms takes whole milliseconds")?,
                )
            }
            "--stats-listen" => opts.stats_listen = Some(value()?),
            "--stats-window-ms" => {
                opts.stats_window = Duration::from_millis(
                    value()?
                        .parse()
                        .ok()
                        .filter(|ms: &u64| *ms > 0)
                        .ok_or("--stats-window-ms takes whole milliseconds > 0")?,
                )
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if opts.upstream.is_empty() {
        return Err("--upstream HOST:PORT is required".into());
    }
    Ok(opts)
}

/// Paces one byte stream at `rate` bytes/s: a token bucket holding up to
/// `burst` worth of bytes, written in its "theoretical arrival time" form
/// (GCRA): `tat` is when everything sent so far would have finished at the
/// steady rate. Bytes may go as long as that stays within `burst` of now.
#[derive(Debug)]
struct Pacer {
    rate: f64,
    burst: Duration,
    tat: Option<Instant>,
}

impl Pacer {
    fn new(bytes_per_s: f64, burst: Duration) -> Self {
        Self {
            rate: bytes_per_s,
            burst,
            tat: None,
        }
    }

    /// Accounts for `n` bytes about to be sent at `now`; returns how long to
    /// wait before sending them. An idle stream earns no more than `burst`
    /// of credit (the `max(tat, now)`).
    fn reserve(&mut self, n: usize, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let start = self.tat.map_or(now, |t| t.max(now));
        let tat = start + Duration::from_secs_f64(n as f64 / self.rate);
        self.tat = Some(tat);
        tat.saturating_duration_since(now + self.burst)
    }
}

/// What the proxy let through to clients, counted where the pacer releases
/// it: for each client connection (in the order they came), the bytes
/// written in each window of `window` since `epoch`. The pacer allows a
/// connection at most `rate × (window + BURST)` plus one `CHUNK` in any
/// window, however late its wake-ups (it never lends more than the burst), so
/// a count over that bound means the cap did not hold, and windows where
/// several connections together went over it show the cap is per connection.
#[derive(Debug)]
struct Stats {
    epoch: Instant,
    window: Duration,
    /// Per connection: the first window it wrote in, then bytes per window.
    conns: Mutex<Vec<(u64, Vec<u64>)>>,
}

impl Stats {
    fn new(window: Duration, epoch: Instant) -> Self {
        Self {
            epoch,
            window,
            conns: Mutex::new(Vec::new()),
        }
    }

    /// A new connection's number.
    fn open(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        conns.push((0, Vec::new()));
        conns.len() - 1
    }

    /// `n` bytes of connection `conn` let through at `at`.
    fn record(&self, conn: usize, n: usize, at: Instant) {
        let index =
            (at.saturating_duration_since(self.epoch).as_nanos() / self.window.as_nanos()) as u64;
        let mut conns = self.conns.lock().unwrap();
        let (first, windows) = &mut conns[conn];
        if windows.is_empty() {
            *first = index;
        }
        // Windows are only ever added: one writer per connection, in time order.
        let slot = (index - *first) as usize;
        if windows.len() <= slot {
            windows.resize(slot + 1, 0);
        }
        windows[slot] += n as u64;
    }

    /// `{"window_ms", "mbps", "burst_ms", "chunk_bytes", "connections":
    /// [{"first_window", "bytes": [per window…]}, …]}`: the counts, and the
    /// settings a reader needs to bound them.
    fn json(&self, mbps: f64) -> String {
        let conns = self.conns.lock().unwrap();
        let conns: Vec<String> = conns
            .iter()
            .map(|(first, windows)| {
                let bytes: Vec<String> = windows.iter().map(u64::to_string).collect();
                format!(
                    r#"{{"first_window":{first},"bytes":[{}]}}"#,
                    bytes.join(",")
                )
            })
            .collect();
        format!(
            r#"{{"window_ms":{},"mbps":{mbps},"burst_ms":{},"chunk_bytes":{CHUNK},"connections":[{}]}}"#,
            self.window.as_millis(),
            BURST.as_millis(),
            conns.join(",")
        )
    }
}

/// Answers every connection to `listener` with the counts so far (HTTP/1.1,
/// `Connection: close`), whatever it asked.
async fn serve_stats(listener: TcpListener, stats: Arc<Stats>, mbps: f64) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let body = stats.json(mbps);
        tokio::spawn(async move {
            // Read the request's head first: closing a socket with unread
            // bytes resets it, and the client could lose the answer.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

/// When the client's latest request started, if no answer to it has gone
/// out yet: set by the client→server direction, taken by the other.
type Pending = Arc<Mutex<Option<Instant>>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("s3_throttle: {e}");
            }
            eprintln!(
                "usage: s3_throttle --listen 127.0.0.1:PORT --upstream HOST:PORT \
                 [--mbps 90 (per connection, server→client; 0 = no cap)] [--first-byte-ms 20] \
                 [--stats-listen HOST:PORT [--stats-window-ms 50]]"
            );
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(&opts.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("s3_throttle: cannot listen on {}: {e}", opts.listen);
            std::process::exit(1);
        }
    };
    // The first stdout line is the contract with callers; println! flushes at the newline.
    println!("{}", listener.local_addr().unwrap());
    // The counts start with the proxy: window 0 begins now.
    let stats = match &opts.stats_listen {
        Some(addr) => {
            let stats_listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("s3_throttle: cannot listen on {addr} (--stats-listen): {e}");
                    std::process::exit(1);
                }
            };
            // The second line, when asked for.
            println!("{}", stats_listener.local_addr().unwrap());
            let stats = Arc::new(Stats::new(opts.stats_window, Instant::now()));
            tokio::spawn(serve_stats(stats_listener, stats.clone(), opts.mbps));
            Some(stats)
        }
        None => None,
    };
    let opts = Arc::new(opts);
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("s3_throttle: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let opts = opts.clone();
        let counted = stats.as_ref().map(|s| (s.clone(), s.open()));
        tokio::spawn(async move {
            if let Err(e) = relay(client, &opts, counted).await {
                eprintln!("s3_throttle: connection from {peer}: {e}");
            }
        });
    }
}

/// One client connection: its own upstream connection, its own pacer; with
/// `counted`, what it lets through is counted under that connection number.
async fn relay(
    client: TcpStream,
    opts: &Options,
    counted: Option<(Arc<Stats>, usize)>,
) -> std::io::Result<()> {
    let server = TcpStream::connect(&opts.upstream).await?;
    // Small writes (request headers, paced chunks) go out at once.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let pending: Pending = Arc::new(Mutex::new(None));

    // Client → server, unpaced: note when each request starts *before*
    // forwarding it, so its answer can never be seen before the mark.
    let marks = pending.clone();
    let upward = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                // The client is done sending; the answer may still come.
                return sw.shutdown().await;
            }
            marks.lock().unwrap().get_or_insert_with(Instant::now);
            sw.write_all(&buf[..n]).await?;
        }
    });

    // Server → buffer, in bursts (see READ_AHEAD). Ends at the server's end
    // of stream (or a read error), dropping `tx`: the writer then finishes.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let buffered = Arc::new(AtomicUsize::new(0));
    let drained = Arc::new(Notify::new());
    let (level, low) = (buffered.clone(), drained.clone());
    let ahead = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            // notify_one keeps a permit if nobody waits: no wake-up is lost.
            while level.load(Ordering::Acquire) > REFILL_AT {
                low.notified().await;
            }
            while level.load(Ordering::Acquire) < READ_AHEAD {
                // Sent as soon as read: a response that ends mid-burst is
                // never held back waiting for more.
                let n = sr.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                level.fetch_add(n, Ordering::AcqRel);
                if tx.send(buf[..n].to_vec()).is_err() {
                    return Ok(()); // the writer is gone: the client left
                }
            }
        }
    });

    // Buffer → client: each response's first byte held, then paced.
    let mut pacer = Pacer::new(opts.mbps * 1e6, BURST);
    let written = async {
        while let Some(chunk) = rx.recv().await {
            if buffered.fetch_sub(chunk.len(), Ordering::AcqRel) - chunk.len() <= REFILL_AT {
                drained.notify_one();
            }
            let asked = pending.lock().unwrap().take();
            if let Some(asked) = asked {
                tokio::time::sleep_until((asked + opts.first_byte).into()).await;
            }
            let wait = pacer.reserve(chunk.len(), Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            // Counted when released, which is what the pacer governs (the
            // write itself may then wait for a slow client).
            if let Some((stats, conn)) = &counted {
                stats.record(*conn, chunk.len(), Instant::now());
            }
            cw.write_all(&chunk).await?;
        }
        cw.shutdown().await
    }
    .await;
    // The server closed (or a side failed): the exchange is over either way.
    upward.abort();
    ahead.abort();
    let read: std::io::Result<()> = ahead.await.unwrap_or(Ok(()));
    written.and(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `total` bytes in `chunk`s through a pacer on a simulated clock
    /// where every sleep ends `late` after it should; returns the elapsed time.
    fn simulate(mbps: f64, total: usize, chunk: usize, late: Duration) -> Duration {
        let t0 = Instant::now();
        let mut now = t0;
        let mut pacer = Pacer::new(mbps * 1e6, BURST);
        let mut sent = 0;
        while sent < total {
            let n = chunk.min(total - sent);
            let wait = pacer.reserve(n, now);
            if !wait.is_zero() {
                now += wait + late;
            }
            sent += n;
        }
        now - t0
    }

    #[test]
    fn the_rate_holds_over_a_16_mb_range_even_with_late_wakeups() {
        let ideal = 16e6 / 90e6; // 0.178 s
        for late in [Duration::ZERO, Duration::from_micros(900)] {
            let took = simulate(90.0, 16_000_000, CHUNK, late).as_secs_f64();
            // Up front it may run ahead by the burst (4 ms), never more; late
            // wake-ups shorter than the burst cost nothing.
            assert!(
                took >= ideal - BURST.as_secs_f64() - 1e-6 && took <= ideal * 1.01,
                "late {late:?}: {took} s for 16 MB at 90 MB/s, ideal {ideal}"
            );
        }
    }

    #[test]
    fn an_idle_stream_earns_no_more_than_the_burst() {
        let mut pacer = Pacer::new(10e6, BURST);
        let t0 = Instant::now();
        assert_eq!(pacer.reserve(1000, t0), Duration::ZERO);
        // A long pause, then 1 MB at once: only 4 ms (40 KB) of it is free.
        let later = t0 + Duration::from_secs(10);
        let wait = pacer.reserve(1_000_000, later);
        let want = 1_000_000.0 / 10e6 - BURST.as_secs_f64();
        assert!((wait.as_secs_f64() - want).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn zero_mbps_means_no_cap() {
        let mut pacer = Pacer::new(0.0, BURST);
        assert_eq!(
            pacer.reserve(usize::MAX / 2, Instant::now()),
            Duration::ZERO
        );
    }

    /// A paced stream released as the writer does it (reserve, sleep, then
    /// count), with every wake-up `late` (up to far later than the burst, as
    /// on a busy machine), counted in 50 ms windows: no window holds more
    /// than the bound tests/it/s3_sim.rs applies.
    #[test]
    fn no_window_counts_more_than_the_rate_allows() {
        let t0 = Instant::now();
        let window = Duration::from_millis(50);
        for late in [
            Duration::ZERO,
            Duration::from_micros(900),
            Duration::from_millis(7),
        ] {
            let stats = Stats::new(window, t0);
            let conn = stats.open();
            let mut pacer = Pacer::new(10e6, BURST);
            let mut now = t0 + Duration::from_millis(13); // mid-window
            for _ in 0..200 {
                let wait = pacer.reserve(CHUNK, now);
                if !wait.is_zero() {
                    now += wait + late;
                }
                stats.record(conn, CHUNK, now);
            }
            let bound = 10e6 * (window + BURST).as_secs_f64() + CHUNK as f64;
            let conns = stats.conns.lock().unwrap();
            let (_, windows) = &conns[conn];
            assert_eq!(windows.iter().sum::<u64>(), 200 * CHUNK as u64);
            let peak = *windows.iter().max().unwrap();
            assert!(
                peak as f64 <= bound,
                "late {late:?}: {peak} bytes in one window, bound {bound}"
            );
            // Wake-ups later than the burst lose time (credit is never
            // lent); shorter ones do not: the rate is met, not just bounded.
            if late < BURST {
                assert!(
                    peak as f64 >= 10e6 * window.as_secs_f64() * 0.8,
                    "late {late:?}: {windows:?}"
                );
            }
        }
    }

    #[test]
    fn counts_land_in_their_windows_per_connection() {
        let t0 = Instant::now();
        let stats = Stats::new(Duration::from_millis(50), t0);
        let (a, b) = (stats.open(), stats.open());
        stats.record(a, 10, t0);
        stats.record(a, 5, t0 + Duration::from_millis(49));
        stats.record(a, 7, t0 + Duration::from_millis(120));
        stats.record(b, 3, t0 + Duration::from_millis(100));
        assert_eq!(
            stats.json(2.5),
            format!(
                r#"{{"window_ms":50,"mbps":2.5,"burst_ms":{},"chunk_bytes":{CHUNK},"connections":[{{"first_window":0,"bytes":[15,0,7]}},{{"first_window":2,"bytes":[3]}}]}}"#,
                BURST.as_millis()
            )
        );
    }

    #[test]
    fn options_parse_with_defaults() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = parse_args(args("--upstream 127.0.0.1:9")).unwrap();
        assert_eq!((o.listen.as_str(), o.mbps), ("127.0.0.1:0", 90.0));
        assert_eq!(o.first_byte, Duration::from_millis(20));
        let o = parse_args(args(
            "--listen 127.0.0.1:5 --upstream h:1 --mbps 2.5 --first-byte-ms 0",
        ))
        .unwrap();
        assert_eq!((o.mbps, o.first_byte), (2.5, Duration::ZERO));
        assert_eq!(o.stats_listen, None);
        let o = parse_args(args(
            "--upstream h:1 --stats-listen 127.0.0.1:0 --stats-window-ms 20",
        ))
        .unwrap();
        assert_eq!(o.stats_listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(o.stats_window, Duration::from_millis(20));
        assert!(parse_args(args("--upstream h:1 --stats-window-ms 0")).is_err());
        assert!(parse_args(args("--mbps 9")).is_err());
        assert!(parse_args(args("--upstream h:1 --mbps -1")).is_err());
        assert!(parse_args(args("--upstream h:1 --bogus")).is_err());
    }
}
