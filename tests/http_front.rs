//! The HTTP front under load and hostile clients, on the real binary and real sockets: a
//! connection limit, timeouts for slow and idle clients, limits on the request head, no death
//! by file-descriptor exhaustion, and a graceful stop on SIGTERM.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{FakeKube, Fault, FaultRule, Service};

fn connect(service: &Service) -> TcpStream {
    TcpStream::connect(service.url.trim_start_matches("http://")).expect("connect to the service")
}

/// An answer read off a raw connection: status code, headers (lowercase names), JSON body.
struct RawAnswer {
    code: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads one whole answer (with a Content-Length) off `stream`; `None` if the connection closed
/// first.
fn read_answer(stream: &mut TcpStream) -> Option<RawAnswer> {
    let mut bytes = Vec::new();
    let mut byte = [0u8];
    while !bytes.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => bytes.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&bytes).to_string();
    let mut lines = head.split("\r\n");
    let code = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())?;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some(RawAnswer {
        code,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

/// Whether the server closed the connection (EOF or reset) within `patience`.
fn closed_within(stream: &mut TcpStream, patience: Duration) -> bool {
    stream.set_read_timeout(Some(patience)).expect("set a read timeout");
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(error) => error.kind() == ErrorKind::ConnectionReset,
    }
}

fn get(stream: &mut TcpStream, path: &str) -> Option<RawAnswer> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\n\r\n",
        support::API_KEY
    );
    stream.write_all(request.as_bytes()).ok()?;
    read_answer(stream)
}

fn assert_json_error(answer: &RawAnswer, code: u16, error: &str) {
    assert_eq!(answer.code, code, "{:#}", answer.body);
    assert_eq!(answer.body["error"], error, "{:#}", answer.body);
    assert!(answer.body["detail"].is_string(), "{:#}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
}

#[test]
fn connections_beyond_the_limit_get_503_and_never_a_thread() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[("HTTP_MAX_CONNECTIONS", "20")]);
    // The harness's own connection may still be closing: a slot refused now is taken again.
    let mut first: Vec<TcpStream> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while first.len() < 20 {
        assert!(Instant::now() < deadline, "could not hold 20 connections");
        let mut stream = connect(&service);
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut byte = [0u8];
        match stream.read(&mut byte) {
            // Nothing said: the connection was taken.
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => first.push(stream),
            _ => {}
        }
    }
    for _ in 0..50 {
        let mut extra = connect(&service);
        extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let answer = read_answer(&mut extra).expect("an answer before the close");
        assert_json_error(&answer, 503, "overloaded");
        assert_eq!(answer.header("retry-after"), Some("1"));
        assert!(
            closed_within(&mut extra, Duration::from_secs(5)),
            "closed after the 503"
        );
    }
    let answer = get(&mut first[0], "/health").expect("the first connections keep working");
    assert_eq!(answer.code, 200);
    let answer = get(&mut first[19], "/registry_prefix").expect("an answer");
    assert_eq!(answer.code, 200, "{:#}", answer.body);
}

#[test]
fn a_slow_head_gets_408_and_an_idle_connection_is_closed() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[("HTTP_HEADER_TIMEOUT", "2s"), ("HTTP_IDLE_TIMEOUT", "3s")]);

    // One byte a second: the head is not whole within 2 s of connecting.
    let mut slow = connect(&service);
    slow.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let started = Instant::now();
    let sender = {
        let mut writer = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" {
                if writer.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let answer = read_answer(&mut slow).expect("a 408 before the close");
    assert_json_error(&answer, 408, "request_timeout");
    assert!(closed_within(&mut slow, Duration::from_secs(5)));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut off after {:?}",
        started.elapsed()
    );
    let _ = slow.shutdown(Shutdown::Both);
    sender.join().unwrap();

    // A keep-alive connection: idle for less than its limit it still serves, idle beyond it
    // the server closes it without a word.
    let mut idle = connect(&service);
    assert_eq!(get(&mut idle, "/health").map(|a| a.code), Some(200));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(get(&mut idle, "/health").map(|a| a.code), Some(200), "idle 2.5 s of 3");
    let quiet_since = Instant::now();
    assert!(
        closed_within(&mut idle, Duration::from_secs(8)),
        "an idle connection is closed"
    );
    let idle_for = quiet_since.elapsed();
    assert!(
        idle_for >= Duration::from_millis(2500) && idle_for < Duration::from_secs(6),
        "closed after {idle_for:?} idle"
    );
    // A client that connects and says nothing is closed too.
    let mut silent = connect(&service);
    assert!(closed_within(&mut silent, Duration::from_secs(8)));
}

/// Sends `head` (whatever its size) and reads the answer while it is still being sent.
fn send_huge(service: &Service, head: Vec<u8>) -> RawAnswer {
    let mut stream = connect(service);
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // The server stops reading at its limit and closes: the rest fails to send.
        let _ = writer.write_all(&head);
    });
    let answer = read_answer(&mut stream).expect("an answer to an oversized head");
    let _ = stream.shutdown(Shutdown::Both);
    sender.join().unwrap();
    answer
}

#[test]
fn an_oversized_head_is_refused_without_being_kept() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let before = service.rss_kib();
    let eight_mib = 8 * 1024 * 1024;

    let mut header = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: ".to_vec();
    header.extend(std::iter::repeat_n(b'a', eight_mib));
    header.extend(b"\r\n\r\n");
    assert_json_error(&send_huge(&service, header), 431, "headers_too_large");

    let mut url = b"GET /health?".to_vec();
    url.extend(std::iter::repeat_n(b'a', eight_mib));
    url.extend(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_json_error(&send_huge(&service, url), 414, "uri_too_long");

    let mut many = b"GET /health HTTP/1.1\r\n".to_vec();
    for i in 0..101 {
        many.extend(format!("X-Header-{i}: 1\r\n").as_bytes());
    }
    many.extend(b"\r\n");
    assert_json_error(&send_huge(&service, many), 431, "headers_too_large");

    let grown = service.rss_kib().saturating_sub(before);
    assert!(grown < 4 * 1024, "RSS grew by {grown} KiB for what was refused");
    assert_eq!(service.get("/health").code, 200);
}

#[test]
fn thousands_of_connections_with_few_descriptors_leave_the_service_answering() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[("SERVICE_FD_LIMIT", "256")]);
    let address = service.url.trim_start_matches("http://").to_string();
    // 3,000 attempts from 30 clients at once. Past the service's descriptors and its listen
    // backlog a connect waits; one that does not complete in 100 ms is given up.
    let target: std::net::SocketAddr = address.parse().expect("an address");
    let held: Vec<TcpStream> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..30)
            .map(|_| {
                scope.spawn(move || {
                    (0..100)
                        .filter_map(|_| TcpStream::connect_timeout(&target, Duration::from_millis(100)).ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients.into_iter().flat_map(|c| c.join().unwrap()).collect()
    });
    assert!(held.len() > 256, "only {} connections could be opened", held.len());
    assert!(
        service.wait_exit(Duration::ZERO).is_none(),
        "the service died:\n{}",
        service.log()
    );
    drop(held);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answered = TcpStream::connect(&address)
            .ok()
            .and_then(|mut stream| {
                stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                get(&mut stream, "/registry_prefix")
            })
            .is_some_and(|answer| answer.code == 200);
        if answered {
            break;
        }
        assert!(Instant::now() < deadline, "not answering again:\n{}", service.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(service.wait_exit(Duration::ZERO).is_none());
    let warnings = service.log().matches("cannot accept a connection").count();
    assert!(
        (1..100).contains(&warnings),
        "{warnings} warnings for the descriptor limit: one at a time, not one a connection"
    );
}

#[test]
fn sigterm_lets_a_start_in_flight_finish_then_exits_0() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[("SHUTDOWN_GRACE", "10s")]);
    // A connection opened before the signal, to watch readiness through.
    let mut watcher = connect(&service);
    assert_eq!(get(&mut watcher, "/readiness").map(|a| a.code), Some(200));

    // The anchor's create hangs at the API server: the start is in flight.
    fake.add_fault(FaultRule::new(Fault::Hang).on("POST", "/secrets"));
    let start = std::thread::scope(|scope| {
        let start = scope.spawn(|| service.post("/start", &json!({"session_id": "in-flight"})));
        let deadline = Instant::now() + Duration::from_secs(10);
        while fake.count("POST", "/secrets") == 0 {
            assert!(Instant::now() < deadline, "the start never reached the API server");
            std::thread::sleep(Duration::from_millis(10));
        }
        service.signal("TERM");

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = get(&mut watcher, "/readiness").expect("an answer on an open connection");
            if ready.code == 503 {
                assert_json_error(&ready, 503, "shutting_down");
                break;
            }
            assert!(Instant::now() < deadline, "readiness still 200 after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(service.url.trim_start_matches("http://")).is_ok() {
            assert!(
                Instant::now() < deadline,
                "new connections still accepted after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            service.wait_exit(Duration::ZERO).is_none(),
            "exited with a request in flight"
        );

        fake.release_hung();
        start.join().unwrap()
    });
    assert_eq!(start.code, 201, "{:#}", start.body);
    let status = service
        .wait_exit(Duration::from_secs(10))
        .expect("exited within the grace");
    assert_eq!(status.code(), Some(0), "{}", service.log());
}
