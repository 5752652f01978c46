//! Load generator for the e-mail gateway (`bench/smtp/run` starts the server and calls this).
//!
//! N SMTP sessions, C at a time, each on a new connection: EHLO, then MAIL FROM, RCPT TO and
//! DATA pipelined (RFC 2920), the message, QUIT. A `250` after the message means its text is
//! stored. Then it waits until the server's `/metrics` count every text as delivered. Prints
//! e-mails/s turned into stored texts, session latency percentiles (connect to the `250`
//! after DATA) and the server's CPU time per e-mail.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

mod common;

use common::{
    cpu_seconds, cpu_since, metric, print_latency_and_cpu, wait_delivered, HttpClient, DELIVERED,
};

struct Args {
    smtp: String,
    url: String,
    from: String,
    domain: String,
    pid: Option<u32>,
    n: usize,
    c: usize,
    label: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        smtp: String::new(),
        url: String::new(),
        from: "bench@example.com".into(),
        domain: "sms.bench.test".into(),
        pid: None,
        n: 20_000,
        c: 64,
        label: "run".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--smtp" => a.smtp = val()?,
            "--url" => a.url = val()?,
            "--from" => a.from = val()?,
            "--domain" => a.domain = val()?,
            "--pid" => a.pid = Some(val()?.parse()?),
            "-n" => a.n = val()?.parse()?,
            "-c" => a.c = val()?.parse()?,
            "--label" => a.label = val()?,
            other => bail!("unknown argument {other}"),
        }
    }
    if a.smtp.is_empty() || a.url.is_empty() {
        bail!("usage: textgate-bench-smtp --smtp HOST:PORT --url HTTP_URL [--from ADDR] [--domain D] [--pid PID] [-n N] [-c C] [--label L]");
    }
    Ok(a)
}

/// Reads one reply (all its lines); returns its code.
async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> anyhow::Result<u16> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            bail!("the server closed the connection");
        }
        if line.len() < 4 {
            bail!("a short reply line {line:?}");
        }
        if line.as_bytes()[3] == b' ' {
            return Ok(line[..3].parse()?);
        }
    }
}

async fn expect(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    want: u16,
    what: &str,
) -> anyhow::Result<()> {
    let got = reply(r).await?;
    if got != want {
        bail!("{what}: expected {want}, got {got}");
    }
    Ok(())
}

/// One whole session for e-mail `i`.
async fn session(a: &Args, i: usize) -> anyhow::Result<()> {
    let sock = TcpStream::connect(&a.smtp).await?;
    sock.set_nodelay(true)?;
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    expect(&mut r, 220, "greeting").await?;
    w.write_all(b"EHLO bench.example.com\r\n").await?;
    expect(&mut r, 250, "EHLO").await?;
    let to = format!("1555{:07}@{}", i % 10_000_000, a.domain);
    let msg = format!(
        "MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n",
        from = a.from
    );
    w.write_all(msg.as_bytes()).await?;
    expect(&mut r, 250, "MAIL").await?;
    expect(&mut r, 250, "RCPT").await?;
    expect(&mut r, 354, "DATA").await?;
    let body = format!(
        "From: Bench <{from}>\r\nTo: <{to}>\r\nSubject: alert {i}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Disk usage on host-{host} is at 9{pct}%: please check.\r\n\r\n-- \r\nMonitoring\r\n.\r\n",
        from = a.from,
        host = i % 100,
        pct = i % 10,
    );
    w.write_all(body.as_bytes()).await?;
    expect(&mut r, 250, "end of DATA").await?;
    w.write_all(b"QUIT\r\n").await?;
    expect(&mut r, 221, "QUIT").await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Arc::new(parse_args()?);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let delivered_before = metric(&client, &a.url, DELIVERED).await?;
    let cpu_before = a.pid.and_then(cpu_seconds);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.c {
        let (a, next) = (a.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= a.n {
                    break;
                }
                let t = Instant::now();
                match session(&a, i).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::with_capacity(a.n);
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors.extend(e);
    }
    let accept_time = start.elapsed();
    let accepted = lat.len();
    wait_delivered(&client, &a.url, delivered_before, accepted).await?;
    let e2e_time = start.elapsed();
    let cpu = cpu_since(a.pid, cpu_before);
    lat.sort();
    println!("== {} ==", a.label);
    println!(
        "e-mails           {accepted} stored as texts, {} errors, {} concurrent sessions",
        errors.len(),
        a.c
    );
    println!(
        "stored            {:.0} e-mails/s (one SMTP session each)",
        accepted as f64 / accept_time.as_secs_f64()
    );
    println!(
        "end to end        {:.0} texts/s (all delivered after {:.2} s)",
        accepted as f64 / e2e_time.as_secs_f64(),
        e2e_time.as_secs_f64()
    );
    print_latency_and_cpu("session latency", &lat, cpu, "e-mail");
    if !errors.is_empty() {
        bail!("{} sessions failed, the first: {}", errors.len(), errors[0]);
    }
    Ok(())
}
