//! SPDY/3 name/value header blocks (spec section 2.6.10) and their compression.
//!
//! A block is a 32-bit count of pairs, then per pair a 32-bit length and the name, a 32-bit
//! length and the value; names are lowercase, a name appears once, several values of a name
//! are joined by NUL. Blocks are zlib-compressed with a preset dictionary (spec 2.6.10.1),
//! and the zlib stream spans the whole connection in each direction: every block continues
//! the previous one's state and ends with a sync flush. So one [`HeaderEncoder`] and one
//! [`HeaderDecoder`] belong to a connection, and every block received must be decoded, even
//! one whose frame is then ignored, or the next one cannot be.

use bytes::{BufMut, Bytes};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Header names of HTTP that the dictionary holds, each as a 32-bit length and the name, in
/// the spec's order.
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// Common values, appended to the words without lengths.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
    "502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
    " 00:00:00",
    " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

const fn dictionary_len() -> usize {
    let mut len = DICTIONARY_TAIL.len();
    let mut i = 0;
    while i < DICTIONARY_WORDS.len() {
        len += 4 + DICTIONARY_WORDS[i].len();
        i += 1;
    }
    len
}

const fn build_dictionary() -> [u8; dictionary_len()] {
    let mut out = [0u8; dictionary_len()];
    let mut at = 0;
    let mut i = 0;
    while i < DICTIONARY_WORDS.len() {
        let word = DICTIONARY_WORDS[i].as_bytes();
        let len = (word.len() as u32).to_be_bytes();
        let mut j = 0;
        while j < 4 {
            out[at] = len[j];
            at += 1;
            j += 1;
        }
        j = 0;
        while j < word.len() {
            out[at] = word[j];
            at += 1;
            j += 1;
        }
        i += 1;
    }
    let tail = DICTIONARY_TAIL.as_bytes();
    let mut j = 0;
    while j < tail.len() {
        out[at] = tail[j];
        at += 1;
        j += 1;
    }
    out
}

/// The SPDY/3 header compression dictionary (1423 bytes).
pub static DICTIONARY: [u8; dictionary_len()] = build_dictionary();

/// Default bound on a decompressed header block.
pub const MAX_BLOCK: usize = 1 << 20;
/// Default bound on the pairs of a block.
pub const MAX_HEADERS: usize = 1000;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header block zlib stream: {0}")]
    Zlib(String),
    #[error("decompressed header block exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("header block has {count} headers, more than {limit}")]
    TooMany { count: u64, limit: usize },
    #[error("header block truncated")]
    Truncated,
    #[error("header block has {0} bytes after its last header")]
    TrailingBytes(usize),
    #[error("header block has an empty name")]
    EmptyName,
    #[error("header name {0:?} is not lowercase")]
    NotLowercase(String),
    #[error("header name {0:?} appears twice")]
    Duplicate(String),
    #[error("header block is not UTF-8")]
    NotUtf8,
}

impl HeaderError {
    /// Whether the connection's zlib state is lost, so no later block can be decoded: the
    /// session must end. Other errors concern one block only.
    pub fn is_fatal(&self) -> bool {
        matches!(self, HeaderError::Zlib(_) | HeaderError::TooLarge { .. })
    }
}

/// A decoded header block, in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pairs: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Set `name` (lowercased) to `value`, replacing an earlier value. Several values go
    /// in one `value`, joined by NUL.
    pub fn insert(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match self.pairs.iter_mut().find(|(n, _)| *n == name) {
            Some(pair) => pair.1 = value.to_string(),
            None => self.pairs.push((name, value.to_string())),
        }
    }

    /// The raw value of `name` (ASCII case-insensitive), NULs included.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The values of `name`, split at NUL.
    pub fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.get(name).into_iter().flat_map(|v| v.split('\0'))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The uncompressed block.
    pub fn to_block(&self) -> Vec<u8> {
        let size = 4 + self
            .pairs
            .iter()
            .map(|(n, v)| 8 + n.len() + v.len())
            .sum::<usize>();
        let mut out = Vec::with_capacity(size);
        out.put_u32(len32(self.pairs.len()));
        for (name, value) in &self.pairs {
            out.put_u32(len32(name.len()));
            out.put_slice(name.as_bytes());
            out.put_u32(len32(value.len()));
            out.put_slice(value.as_bytes());
        }
        out
    }

    /// Parse an uncompressed block.
    pub fn from_block(raw: &[u8], max_headers: usize) -> Result<Headers, HeaderError> {
        let mut rest = raw;
        let count = take_u32(&mut rest)?;
        if count as usize > max_headers {
            return Err(HeaderError::TooMany {
                count: u64::from(count),
                limit: max_headers,
            });
        }
        let mut headers = Headers::new();
        for _ in 0..count {
            let name = take_bytes(&mut rest)?;
            let value = take_bytes(&mut rest)?;
            let name = std::str::from_utf8(name).map_err(|_| HeaderError::NotUtf8)?;
            let value = std::str::from_utf8(value).map_err(|_| HeaderError::NotUtf8)?;
            if name.is_empty() {
                return Err(HeaderError::EmptyName);
            }
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(HeaderError::NotLowercase(name.to_string()));
            }
            if headers.get(name).is_some() {
                return Err(HeaderError::Duplicate(name.to_string()));
            }
            headers.pairs.push((name.to_string(), value.to_string()));
        }
        if !rest.is_empty() {
            return Err(HeaderError::TrailingBytes(rest.len()));
        }
        Ok(headers)
    }
}

/// Header lengths are bounded far below 4 GiB by the frame length (24 bits) and
/// [`MAX_BLOCK`]; a name or value of our own beyond that is a bug, clamped.
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, HeaderError> {
    let (head, tail) = rest
        .split_first_chunk::<4>()
        .ok_or(HeaderError::Truncated)?;
    *rest = tail;
    Ok(u32::from_be_bytes(*head))
}

fn take_bytes<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], HeaderError> {
    let len = take_u32(rest)? as usize;
    if len > rest.len() {
        return Err(HeaderError::Truncated);
    }
    let (bytes, tail) = rest.split_at(len);
    *rest = tail;
    Ok(bytes)
}

/// Compresses the header blocks one direction of a connection sends.
pub struct HeaderEncoder {
    zlib: Compress,
}

impl std::fmt::Debug for HeaderEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderEncoder").finish_non_exhaustive()
    }
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        HeaderEncoder::new()
    }
}

impl HeaderEncoder {
    pub fn new() -> HeaderEncoder {
        let mut zlib = Compress::new(Compression::default(), true);
        // Setting a dictionary on a fresh zlib stream cannot fail; were it to, the peer
        // would refuse the first block (wrong dictionary id), which ends that session only.
        if let Err(e) = zlib.set_dictionary(&DICTIONARY) {
            tracing::warn!(error = %e, "spdy: setting the header dictionary failed");
        }
        HeaderEncoder { zlib }
    }

    /// The compressed form of `headers`, continuing this direction's zlib stream.
    pub fn encode(&mut self, headers: &Headers) -> Result<Bytes, HeaderError> {
        let raw = headers.to_block();
        let start = self.zlib.total_in();
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        loop {
            let done = (self.zlib.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(1024);
            }
            self.zlib
                .compress_vec(&raw[done..], &mut out, FlushCompress::Sync)
                .map_err(|e| HeaderError::Zlib(e.to_string()))?;
            // A sync flush is complete once all input is in and output space is left.
            let done = (self.zlib.total_in() - start) as usize;
            if done == raw.len() && out.len() < out.capacity() {
                return Ok(Bytes::from(out));
            }
        }
    }
}

/// Decompresses the header blocks one direction of a connection receives.
pub struct HeaderDecoder {
    zlib: Decompress,
    max_block: usize,
    max_headers: usize,
}

impl std::fmt::Debug for HeaderDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecoder")
            .field("max_block", &self.max_block)
            .field("max_headers", &self.max_headers)
            .finish_non_exhaustive()
    }
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        HeaderDecoder::new(MAX_BLOCK, MAX_HEADERS)
    }
}

impl HeaderDecoder {
    /// A decoder refusing blocks that decompress to more than `max_block` bytes or hold
    /// more than `max_headers` pairs.
    pub fn new(max_block: usize, max_headers: usize) -> HeaderDecoder {
        HeaderDecoder {
            zlib: Decompress::new(true),
            max_block,
            max_headers,
        }
    }

    /// Decode the next block of this direction.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderError> {
        let raw = self.inflate(block)?;
        Headers::from_block(&raw, self.max_headers)
    }

    fn inflate(&mut self, block: &[u8]) -> Result<Vec<u8>, HeaderError> {
        let start = self.zlib.total_in();
        let mut out = Vec::with_capacity((block.len() * 4).min(self.max_block) + 64);
        let mut dictionary_asks = 0;
        loop {
            let done = (self.zlib.total_in() - start) as usize;
            let before = (done, out.len());
            if out.len() == out.capacity() {
                if out.len() > self.max_block {
                    return Err(HeaderError::TooLarge {
                        limit: self.max_block,
                    });
                }
                out.reserve((self.max_block + 1 - out.len()).min(16 * 1024));
            }
            match self
                .zlib
                .decompress_vec(&block[done..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) => {}
                // The zlib header names the preset dictionary; it is asked for once per
                // connection, before the first block's data.
                Err(e) if e.needs_dictionary().is_some() && dictionary_asks == 0 => {
                    dictionary_asks += 1;
                    self.zlib
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| HeaderError::Zlib(format!("dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(HeaderError::Zlib(e.to_string())),
            }
            if out.len() > self.max_block {
                return Err(HeaderError::TooLarge {
                    limit: self.max_block,
                });
            }
            let done = (self.zlib.total_in() - start) as usize;
            let finished = done == block.len() && out.len() < out.capacity();
            // No progress with room to spare: the input ends inside a deflate block; what
            // came out is all there is, and parsing it tells whether it is whole.
            if finished || (done, out.len()) == before {
                return Ok(out);
            }
        }
    }
}
