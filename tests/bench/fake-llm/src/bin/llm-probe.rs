//! llm-probe: closed-loop load on a chat-completions endpoint, to measure the fake LLM alone.
//!
//! `-c` workers, each on its own HTTP/1.1 keep-alive connection (TCP_NODELAY), send one request
//! at a time for `--warmup` + `--duration` seconds; the request bodies are the `--body` files in
//! turn (e.g. the first and second turn of an agent run, as fetched from the fake's
//! `/last/first` and `/last/second`), or a small built-in first turn. Latency = request sent ->
//! whole response body read; with `--chain`, one sample is all the bodies sent one after the
//! other (the LLM turns of one agent run, without the agent), so its percentiles compare directly
//! with an agent run's. Only samples started after the warm-up and finished before the end
//! count. Output: a human line, then one JSON object on the last stdout line (the shape of
//! mcpload's: calls, calls_per_s, latency_us.{p50,p90,p99,max,mean}, errors).

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::json;

#[derive(Parser, Debug, Clone)]
#[command(
    version,
    about = "Closed-loop load on an OpenAI-compatible chat-completions endpoint"
)]
struct Args {
    /// http://HOST:PORT/v1/chat/completions
    #[arg(long)]
    url: String,
    /// concurrent workers, each with one request in flight
    #[arg(short = 'c', long, default_value_t = 1)]
    concurrency: usize,
    /// measured seconds
    #[arg(short = 'd', long, default_value_t = 10.0)]
    duration: f64,
    /// unrecorded seconds before the measurement window
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// request body files, sent in turn by every worker (default: a small built-in request)
    #[arg(long)]
    body: Vec<String>,
    /// one sample = all the --body requests in sequence (e.g. both turns of an agent run)
    #[arg(long)]
    chain: bool,
    /// tokio worker threads
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// per-request timeout in seconds
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// free-form label copied into the JSON output
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Default)]
struct Errs {
    http: u64,
    transport: u64,
    timeout: u64,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: &str) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One request; Ok(true) for a 200 whose body was read, Ok(false) for another status.
async fn call(sender: &mut Sender, addr: &str, path: &str, body: Bytes) -> Result<bool, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(HOST, addr)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let ok = resp.status().is_success();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(ok && !body.is_empty())
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(a: Args, bodies: Vec<Bytes>) -> serde_json::Value {
    let rest = a.url.strip_prefix("http://").expect("only http:// URLs");
    let (addr, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    };
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.duration);
    let timeout = Duration::from_secs_f64(a.timeout);
    let mut tasks = Vec::new();
    for w in 0..a.concurrency {
        let (addr, path, bodies, chain) = (addr.clone(), path.clone(), bodies.clone(), a.chain);
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::with_capacity(1 << 12);
            let mut errs = Errs::default();
            let mut sender: Option<Sender> = None;
            let mut i = w; // workers start at different bodies, as runs are at different turns
            loop {
                if Instant::now() >= end {
                    break;
                }
                if sender.is_none() {
                    match connect(&addr).await {
                        Ok(s) => sender = Some(s),
                        Err(_) => {
                            errs.transport += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let t0 = Instant::now();
                let seq: Vec<Bytes> = if chain {
                    bodies.clone()
                } else {
                    i += 1;
                    vec![bodies[(i - 1) % bodies.len()].clone()]
                };
                let mut r: Result<Result<bool, String>, _> = Ok(Ok(true));
                for body in seq {
                    r = tokio::time::timeout(
                        timeout,
                        call(sender.as_mut().unwrap(), &addr, &path, body),
                    )
                    .await;
                    if !matches!(r, Ok(Ok(true))) {
                        break;
                    }
                }
                let done = Instant::now();
                let counted = t0 >= measure_from && done <= end;
                match r {
                    Ok(Ok(true)) if counted => {
                        lat.push(done.duration_since(t0).as_micros().min(u32::MAX as u128) as u32)
                    }
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => errs.http += counted as u64,
                    Ok(Err(_)) => {
                        errs.transport += counted as u64;
                        sender = None;
                    }
                    Err(_) => {
                        errs.timeout += (t0 >= measure_from) as u64;
                        sender = None;
                    }
                }
            }
            (lat, errs)
        }));
    }
    let mut lat = Vec::new();
    let mut errs = Errs::default();
    for t in tasks {
        let (l, e) = t.await.expect("worker");
        lat.extend(l);
        errs.http += e.http;
        errs.transport += e.transport;
        errs.timeout += e.timeout;
    }
    lat.sort_unstable();
    let n = lat.len() as u64;
    let mean = if n > 0 {
        lat.iter().map(|&x| x as u64).sum::<u64>() as f64 / n as f64
    } else {
        0.0
    };
    let rate = n as f64 / a.duration;
    let (p50, p90, p99, max) = (
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
    );
    let total = errs.http + errs.transport + errs.timeout;
    println!(
        "{} llm-probe c={} threads={} {}s (+{}s warm-up), {} body(ies){}: {} samples, {:.0}/s, latency us p50={} p90={} p99={} max={} mean={:.0}, errors={}",
        a.label,
        a.concurrency,
        a.threads,
        a.duration,
        a.warmup,
        bodies.len(),
        if a.chain { " chained" } else { "" },
        n,
        rate,
        p50,
        p90,
        p99,
        max,
        mean,
        total
    );
    json!({
        "mode": "llm-probe", "label": a.label, "url": a.url, "concurrency": a.concurrency, "threads": a.threads,
        "duration_s": a.duration, "warmup_s": a.warmup, "chain": a.chain, "requests_per_sample": if a.chain { bodies.len() } else { 1 },
        "bodies": a.body, "body_bytes": bodies.iter().map(Bytes::len).collect::<Vec<_>>(),
        "calls": n, "calls_per_s": (rate * 10.0).round() / 10.0,
        "latency_us": {"p50": p50, "p90": p90, "p99": p99, "max": max, "mean": mean.round()},
        "errors": {"total": total, "http": errs.http, "transport": errs.transport, "timeout": errs.timeout},
    })
}

fn main() {
    let args = Args::parse();
    let bodies: Vec<Bytes> = if args.body.is_empty() {
        let b = json!({"model": "fake", "messages": [
            {"role": "system", "content": "You are a ServiceNow assistant."},
            {"role": "user", "content": "find VPN incidents"}]});
        vec![Bytes::from(b.to_string())]
    } else {
        args.body
            .iter()
            .map(|f| Bytes::from(std::fs::read(f).unwrap_or_else(|e| panic!("--body {f}: {e}"))))
            .collect()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let out = rt.block_on(run(args, bodies));
    println!("{out}");
}
