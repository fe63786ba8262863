//! A minimal RESP2 client: just enough for the agent's admin connection (AUTH, INFO, CONFIG SET,
//! ACL LOAD) without a full client library. Generic over the stream, so tests can run it over TLS.
//!
//! Replies are bounded (`MAX_BULK_BYTES`, `MAX_ARRAY_LEN`, `MAX_DEPTH`): an engine (or whatever
//! answers on its port) cannot make the agent allocate without limit.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest bulk string accepted (INFO is a few KB; this is generous).
const MAX_BULK_BYTES: usize = 16 << 20;
/// Largest array accepted.
const MAX_ARRAY_LEN: usize = 1 << 16;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 8;
/// Longest line (simple string, error, length header) accepted.
const MAX_LINE_BYTES: usize = 64 << 10;

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The engine answered with an error reply (e.g. `NOPERM …`, `WRONGPASS …`).
    #[error("{0}")]
    Server(String),
}

/// One connection to an engine.
pub struct Connection<S> {
    stream: BufReader<S>,
}

impl Connection<TcpStream> {
    /// Connects over TCP within `timeout`.
    pub async fn connect(addr: std::net::SocketAddr, timeout: Duration) -> Result<Self, RespError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| RespError::Timeout(timeout))??;
        stream.set_nodelay(true)?;
        Ok(Self::new(stream))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream: BufReader::new(stream),
        }
    }

    /// Sends a command and reads its reply; an error reply becomes `RespError::Server`.
    pub async fn command(&mut self, args: &[&str]) -> Result<Value, RespError> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&out).await?;
        self.stream.get_mut().flush().await?;
        match read_value(&mut self.stream, 0).await? {
            Value::Error(message) => Err(RespError::Server(message)),
            value => Ok(value),
        }
    }

    /// `AUTH user password`.
    pub async fn auth(&mut self, user: &str, password: &str) -> Result<(), RespError> {
        self.command(&["AUTH", user, password]).await.map(drop)
    }

    /// `INFO` (all default sections) as text.
    pub async fn info(&mut self) -> Result<String, RespError> {
        match self.command(&["INFO"]).await? {
            Value::Bulk(Some(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            other => Err(RespError::Protocol(format!("INFO answered {other:?}"))),
        }
    }
}

async fn read_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Result<String, RespError> {
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(MAX_LINE_BYTES as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Err(RespError::Protocol("connection closed".into()));
    }
    if !line.ends_with(b"\r\n") {
        return Err(RespError::Protocol(
            "line too long or not CRLF-terminated".into(),
        ));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| RespError::Protocol("line is not UTF-8".into()))
}

fn length(text: &str, limit: usize) -> Result<Option<usize>, RespError> {
    let n: i64 = text
        .parse()
        .map_err(|_| RespError::Protocol(format!("bad length {text:?}")))?;
    if n < 0 {
        return Ok(None);
    }
    let n = usize::try_from(n).map_err(|_| RespError::Protocol(format!("bad length {n}")))?;
    if n > limit {
        return Err(RespError::Protocol(format!(
            "length {n} exceeds the limit of {limit}"
        )));
    }
    Ok(Some(n))
}

async fn read_value<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    depth: usize,
) -> Result<Value, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError::Protocol("reply nested too deeply".into()));
    }
    let line = read_line(reader).await?;
    let (kind, rest) = line
        .split_at_checked(1)
        .ok_or_else(|| RespError::Protocol("empty line".into()))?;
    match kind {
        "+" => Ok(Value::Simple(rest.to_string())),
        "-" => Ok(Value::Error(rest.to_string())),
        ":" => rest
            .parse()
            .map(Value::Integer)
            .map_err(|_| RespError::Protocol(format!("bad integer {rest:?}"))),
        "$" => {
            let Some(n) = length(rest, MAX_BULK_BYTES)? else {
                return Ok(Value::Bulk(None));
            };
            let mut buf = vec![0; n + 2];
            reader.read_exact(&mut buf).await?;
            if !buf.ends_with(b"\r\n") {
                return Err(RespError::Protocol(
                    "bulk string not CRLF-terminated".into(),
                ));
            }
            buf.truncate(n);
            Ok(Value::Bulk(Some(buf)))
        }
        "*" => {
            let Some(n) = length(rest, MAX_ARRAY_LEN)? else {
                return Ok(Value::Array(None));
            };
            let mut items = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                items.push(Box::pin(read_value(reader, depth + 1)).await?);
            }
            Ok(Value::Array(Some(items)))
        }
        other => Err(RespError::Protocol(format!("unknown reply type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Value, RespError> {
        let mut reader = BufReader::new(bytes);
        read_value(&mut reader, 0).await
    }

    #[tokio::test]
    async fn replies_parse() {
        assert_eq!(
            parse(b"+OK\r\n").await.expect("ok"),
            Value::Simple("OK".into())
        );
        assert_eq!(
            parse(b"-NOPERM no\r\n").await.expect("err"),
            Value::Error("NOPERM no".into())
        );
        assert_eq!(parse(b":42\r\n").await.expect("int"), Value::Integer(42));
        assert_eq!(
            parse(b"$3\r\nfoo\r\n").await.expect("bulk"),
            Value::Bulk(Some(b"foo".to_vec()))
        );
        assert_eq!(parse(b"$-1\r\n").await.expect("nil"), Value::Bulk(None));
        assert_eq!(
            parse(b"*2\r\n$1\r\na\r\n:1\r\n").await.expect("array"),
            Value::Array(Some(vec![
                Value::Bulk(Some(b"a".to_vec())),
                Value::Integer(1)
            ]))
        );
    }

    #[tokio::test]
    async fn bad_input_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"?x\r\n",
            b"$99999999999\r\n",
            b"$3\r\nfo",
            b"*-\r\n",
            b":x\r\n",
            b"+OK\n",
            b"\r\n",
        ] {
            assert!(parse(bytes).await.is_err(), "{bytes:?}");
        }
        let deep = "*1\r\n".repeat(20) + ":1\r\n";
        assert!(parse(deep.as_bytes()).await.is_err());
    }

    #[tokio::test]
    async fn commands_are_encoded() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut conn = Connection::new(client);
        let reply = tokio::spawn(async move {
            let mut buf = vec![0; 64];
            let n = server.read(&mut buf).await.expect("read");
            server.write_all(b"+OK\r\n").await.expect("write");
            buf.truncate(n);
            buf
        });
        conn.auth("kvs-admin", "pw").await.expect("auth");
        let sent = reply.await.expect("join");
        assert_eq!(sent, b"*3\r\n$4\r\nAUTH\r\n$9\r\nkvs-admin\r\n$2\r\npw\r\n");
    }
}
