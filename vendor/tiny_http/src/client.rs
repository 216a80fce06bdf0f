use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Header, Method, StatusCode};
use crate::util::{ReadLimit, RefinedTcpStream};
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{Limits, Request, Response};

/// How long a connection that is closed for a refused request is drained, and how much of it
/// at most, so that the client reads the answer instead of a reset.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: u64 = 1024 * 1024;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: Option<SocketAddr>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    /// Limits on timing and size of request heads (patched in, see PATCHED.md).
    limits: Arc<Limits>,
    read_limit: Arc<Mutex<ReadLimit>>,
    connected_at: Instant,
    requests_read: usize,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    /// The request line is longer than the limit: 414.
    UriTooLong,
    /// The headers are more, or longer in all, than the limits: 431.
    HeadersTooLarge,
    /// Time ran out after part of a request head: 408.
    HeadTimedOut,
    /// Nothing of a next request came in time, or the client closed: no answer is due.
    Idle,
    ReadIoError(IoError),
}

/// Why a line of the request head could not be read.
enum LineError {
    TooLong,
    Io(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Arc<Limits>,
    ) -> ClientConnection {
        // A client gone before we asked has no address: its requests then have none either.
        let remote_addr = read_socket.peer_addr().ok().flatten();
        let secure = read_socket.secure();
        let read_limit = read_socket.read_limit();
        write_socket.set_write_timeout(limits.write_timeout);

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next_reader();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            limits,
            read_limit,
            connected_at: Instant::now(),
            requests_read: 0,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    fn set_read_limit(&self, limit: ReadLimit) {
        *self.read_limit.lock().unwrap_or_else(PoisonError::into_inner) = limit;
    }

    fn read_byte(&mut self) -> IoResult<u8> {
        let mut byte = [0u8];
        match self.next_header_source.read(&mut byte)? {
            0 => Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF")),
            _ => Ok(byte[0]),
        }
    }

    /// Reads the next line of the request head, up to `max` bytes without its `CRLF`; `first`
    /// is its first byte when already read. The next read starts at the next line.
    fn read_next_line(&mut self, first: Option<u8>, max: usize) -> Result<AsciiString, LineError> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;
        let mut next = first;

        loop {
            let byte = match next.take() {
                Some(byte) => byte,
                None => self.read_byte().map_err(LineError::Io)?,
            };

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf).map_err(|_| {
                    LineError::Io(IoError::new(ErrorKind::InvalidInput, "Header is not in ASCII"))
                });
            }

            prev_byte_was_cr = byte == b'\r';

            // The CR of the line's end may sit just past the limit.
            if buf.len() >= max.saturating_add(usize::from(prev_byte_was_cr)) {
                return Err(LineError::TooLong);
            }
            buf.push(byte);
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // The previous request's body must be read (or dropped) before this head starts: the
        // clocks below start then, after the previous answer.
        self.next_header_source
            .wait_for_turn()
            .map_err(ReadError::ReadIoError)?;
        let limits = self.limits.clone();
        let first_wait = match (self.requests_read, limits.header_timeout, limits.idle_timeout) {
            (0, Some(header), _) => Some(self.connected_at + header),
            (0, None, _) => None,
            (_, _, idle) => idle.map(|idle| Instant::now() + idle),
        };
        self.set_read_limit(first_wait.map_or(ReadLimit::Unlimited, ReadLimit::Until));
        let first = match self.read_byte() {
            Ok(byte) => byte,
            Err(_) => return Err(ReadError::Idle),
        };
        if self.requests_read > 0 {
            if let Some(header) = limits.header_timeout {
                self.set_read_limit(ReadLimit::Until(Instant::now() + header));
            }
        }
        self.requests_read += 1;

        let line_error = |error: LineError, too_long: ReadError| match error {
            LineError::TooLong => too_long,
            LineError::Io(error) if error.kind() == ErrorKind::TimedOut => ReadError::HeadTimedOut,
            LineError::Io(error) => ReadError::ReadIoError(error),
        };
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = self
                    .read_next_line(Some(first), limits.max_request_line)
                    .map_err(|e| line_error(e, ReadError::UriTooLong))?;

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                let mut header_bytes = 0usize;
                loop {
                    let left = limits.max_header_bytes.saturating_sub(header_bytes);
                    let line = self
                        .read_next_line(None, left)
                        .map_err(|e| line_error(e, ReadError::HeadersTooLarge))?;

                    if line.is_empty() {
                        break;
                    };
                    header_bytes += line.len() + 2;
                    if headers.len() == limits.max_headers {
                        return Err(ReadError::HeadersTooLarge);
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // The body must come at no slower pace than the head: each read brings something
        // within the head's time.
        self.set_read_limit(
            limits
                .header_timeout
                .map_or(ReadLimit::Unlimited, ReadLimit::EachWithin),
        );

        // building the writer for the request
        let writer = self.sink.next_writer();

        // follow-up for next potential request
        let mut data_source = self.source.next_reader();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            self.remote_addr,
            data_source,
            writer,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
            }
        })?;

        // return the request
        Ok(request)
    }

    /// Answers a request the server refuses on its own, then closes the connection: the rest
    /// of the request cannot be told from the next one.
    fn refuse(&mut self, code: u16, version: HTTPVersion) {
        let writer = self.sink.next_writer();
        if self.refusal(code).raw_print(writer, version, &[], false, None).is_ok() {
            self.linger();
        }
    }

    /// The answer to a request the server refuses on its own, which closes the connection.
    fn refusal(&self, code: u16) -> Response<std::io::Cursor<Vec<u8>>> {
        let mut response = Response::from_data((self.limits.error_body)(code)).with_status_code(StatusCode(code));
        for (name, value) in [("Content-Type", self.limits.error_content_type), ("Connection", "close")] {
            if let Ok(header) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                response.add_header(header);
            }
        }
        response
    }

    /// Drains what the client still sends, for a short while and a bounded amount, keeping
    /// none of it: closing with unread data would reset the connection before the client has
    /// read its answer.
    fn linger(&mut self) {
        self.set_read_limit(ReadLimit::Until(Instant::now() + LINGER));
        let _ = std::io::copy(
            &mut (&mut self.next_header_source).take(LINGER_BYTES),
            &mut std::io::sink(),
        );
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            let http_1_1 = HTTPVersion(1, 1);
            let rq = match self.read() {
                // we don't know where the next request would start, so we have to close
                Err(ReadError::WrongRequestLine) => {
                    self.refuse(400, http_1_1);
                    return None;
                }
                Err(ReadError::WrongHeader(ver)) => {
                    self.refuse(400, ver);
                    return None;
                }
                Err(ReadError::UriTooLong) => {
                    self.refuse(414, http_1_1);
                    return None;
                }
                Err(ReadError::HeadersTooLarge) => {
                    self.refuse(431, http_1_1);
                    return None;
                }
                Err(ReadError::HeadTimedOut) => {
                    self.refuse(408, http_1_1);
                    return None;
                }
                Err(ReadError::ExpectationFailed(ver)) => {
                    self.refuse(417, ver);
                    return None; // TODO: should be recoverable, but needs handling in case of body
                }
                Err(ReadError::Idle) | Err(ReadError::ReadIoError(_)) => return None,
                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                let _ = rq.respond(self.refusal(505));
                return None;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
