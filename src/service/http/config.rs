//! What HTTP serves and the limits it holds requests to.

use std::path::PathBuf;

/// What to serve and the limits on requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Directory whose files are served; `None`: only `/`, `/stats`,
    /// `/metrics`, everything else is 404.
    pub root: Option<PathBuf>,
    /// Largest request body (declared or chunked) read and discarded;
    /// more is 413. Chunked bodies are also capped at 4 GiB.
    pub max_body: u64,
    /// Longest request target, in bytes; more is 414.
    pub max_target: usize,
    /// Longest header line, in bytes; more is 431.
    pub max_header_line: usize,
    /// Most bytes of header lines in one head; more is 431.
    pub max_headers_bytes: usize,
    /// Most header lines in one head (clamped to 1..=128); more is 431.
    pub max_headers: usize,
    /// Most requests answered per [`HttpConn::input`] call (at least 1).
    pub max_pipeline: usize,
    /// Origins a browser may open `/ws` from (`https://example.org`);
    /// empty: any. A client that sends no `Origin` is not a browser and
    /// is always let in.
    pub ws_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            root: None,
            max_body: 1 << 20,
            max_target: 8 * 1024,
            max_header_line: 8 * 1024,
            max_headers_bytes: 32 * 1024,
            max_headers: 100,
            max_pipeline: 16,
            ws_origins: Vec::new(),
        }
    }
}
