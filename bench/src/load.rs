//! A small HTTP/1.1 load generator: `clients` threads, each with one keep-alive connection,
//! sending requests back to back for a fixed time, recording status and latency.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one load run saw.
#[derive(Debug, Default)]
pub struct Report {
    pub seconds: f64,
    pub by_status: BTreeMap<u16, u64>,
    /// Latencies of every answered request, sorted.
    pub latencies: Vec<Duration>,
    /// Latencies of the requests answered with `status`, sorted.
    pub latencies_of: BTreeMap<u16, Vec<Duration>>,
    pub io_errors: u64,
    /// Requests still unanswered when their client was stopped (hangs).
    pub unanswered: u64,
}

impl Report {
    pub fn count(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }
    pub fn rate(&self, status: u16) -> f64 {
        self.count(status) as f64 / self.seconds
    }
    pub fn total(&self) -> u64 {
        self.by_status.values().sum()
    }
    pub fn percentile(v: &[Duration], p: f64) -> Duration {
        if v.is_empty() {
            return Duration::ZERO;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i.min(v.len() - 1)]
    }
    pub fn p(&self, status: u16, p: f64) -> Duration {
        self.latencies_of
            .get(&status)
            .map(|v| Self::percentile(v, p))
            .unwrap_or_default()
    }
    pub fn summary(&self) -> String {
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        format!(
            "{} requests in {:.1} s ({:.1}/s) [{}], p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, io errors {}, unanswered {}",
            self.total(),
            self.seconds,
            self.total() as f64 / self.seconds,
            statuses.join(", "),
            ms(Self::percentile(&self.latencies, 0.5)),
            ms(Self::percentile(&self.latencies, 0.99)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            self.io_errors,
            self.unanswered,
        )
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Makes the body of request `i` of a client.
pub type BodyFn = Arc<dyn Fn(usize, usize) -> String + Send + Sync>;

fn send(
    stream: &mut TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes())
}

fn receive(reader: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok(status)
}

/// Runs `clients` clients for `duration`. Each request has a 30 s timeout; one that runs out
/// counts as unanswered.
pub fn generate(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: Vec<(String, String)>,
    body: BodyFn,
    clients: usize,
    duration: Duration,
) -> Report {
    let start = Instant::now();
    let deadline = start + duration;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (method, path, headers, body) = (
                method.to_owned(),
                path.to_owned(),
                headers.clone(),
                Arc::clone(&body),
            );
            std::thread::spawn(move || {
                let mut seen: Vec<(u16, Duration)> = Vec::new();
                let (mut io_errors, mut unanswered) = (0u64, 0u64);
                let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
                let mut i = 0usize;
                while Instant::now() < deadline {
                    if conn.is_none() {
                        match TcpStream::connect(addr) {
                            Ok(s) => {
                                s.set_read_timeout(Some(Duration::from_secs(30))).ok();
                                s.set_nodelay(true).ok();
                                match s.try_clone() {
                                    Ok(r) => conn = Some((s, BufReader::new(r))),
                                    Err(_) => io_errors += 1,
                                }
                            }
                            Err(_) => {
                                io_errors += 1;
                                std::thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                        }
                    }
                    let Some((stream, reader)) = conn.as_mut() else {
                        continue;
                    };
                    let b = body(c, i);
                    i += 1;
                    let t = Instant::now();
                    let result = send(stream, addr, &method, &path, &headers, &b)
                        .and_then(|_| receive(reader));
                    match result {
                        Ok(status) => seen.push((status, t.elapsed())),
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut =>
                        {
                            unanswered += 1;
                            conn = None;
                        }
                        Err(_) => {
                            io_errors += 1;
                            conn = None;
                        }
                    }
                }
                (seen, io_errors, unanswered)
            })
        })
        .collect();
    let mut report = Report::default();
    for t in threads {
        if let Ok((seen, io, un)) = t.join() {
            report.io_errors += io;
            report.unanswered += un;
            for (status, d) in seen {
                *report.by_status.entry(status).or_default() += 1;
                report.latencies.push(d);
                report.latencies_of.entry(status).or_default().push(d);
            }
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    report.latencies.sort();
    for v in report.latencies_of.values_mut() {
        v.sort();
    }
    report
}

/// Options of `prp-bench load`: POSTs BODY to PATH from CLIENTS clients.
#[derive(clap::Args)]
pub struct Args {
    /// The portal, `HOST:PORT` (an `http://` in front is ignored).
    addr: String,
    /// The path to POST to, e.g. `/api/login/password`.
    path: String,
    /// The JSON body of every request.
    body: String,
    /// Clients, each with one keep-alive connection.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

pub fn run_cli(args: &Args) -> anyhow::Result<()> {
    let addr: SocketAddr = args.addr.trim_start_matches("http://").parse()?;
    let body = args.body.clone();
    let r = generate(
        addr,
        "POST",
        &args.path,
        Vec::new(),
        Arc::new(move |_, _| body.clone()),
        args.clients.max(1),
        Duration::from_secs_f64(args.seconds.max(0.0)),
    );
    println!("{}", r.summary());
    Ok(())
}
