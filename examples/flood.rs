//! A connection flood against a running service, for the HTTP front's figures in BENCHMARKS.md:
//!
//! ```sh
//! cargo run --release --example kube-sim -- --port 18001 &
//! (ulimit -n 1024; API_KEY=dev KUBE_API_URL=http://127.0.0.1:18001 SERVER_PORT=18080 \
//!   cargo run --release) &
//! cargo run --release --example flood -- 127.0.0.1:18080 20000
//! ```
//!
//! It makes the given number of connection attempts in batches of 5,000 held at once, counts
//! those answered 503 at once (beyond `HTTP_MAX_CONNECTIONS`), closes them, and then asks
//! `/health` until the service answers. Loopback only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const BATCH: usize = 5_000;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(Ok(address)), Some(Ok(attempts))) = (
        args.next().map(|a| a.parse::<SocketAddr>()),
        args.next().map(|n| n.parse::<usize>()),
    ) else {
        eprintln!("usage: flood ADDRESS ATTEMPTS (e.g. 127.0.0.1:18080 20000)");
        return ExitCode::from(2);
    };
    if !address.ip().is_loopback() {
        eprintln!("flood sends only to loopback addresses");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let (mut made, mut connected, mut overloaded) = (0, 0, 0);
    while made < attempts {
        let batch = BATCH.min(attempts - made);
        let held: Vec<TcpStream> = (0..batch)
            .filter_map(|_| TcpStream::connect_timeout(&address, Duration::from_millis(50)).ok())
            .collect();
        made += batch;
        connected += held.len();
        for mut stream in held {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
            let mut head = [0u8; 12];
            if stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 503") {
                overloaded += 1;
            }
        }
        println!("{made} attempts: {connected} connected, {overloaded} answered 503 at once");
    }
    let flood = started.elapsed();
    let answered = Instant::now();
    loop {
        let health = TcpStream::connect(address).and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        });
        if health.is_ok_and(|answer| answer.starts_with("HTTP/1.1 200")) {
            break;
        }
        if answered.elapsed() > Duration::from_secs(30) {
            println!("the service did not answer /health within 30 s of the flood");
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "flood of {made} attempts in {flood:.1?}; /health answered 200 {:.1?} after it",
        answered.elapsed()
    );
    ExitCode::SUCCESS
}
