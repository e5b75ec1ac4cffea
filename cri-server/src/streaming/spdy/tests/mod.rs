//! Tests of the SPDY layer: frames and header blocks against bytes written by hand from the
//! spec, by Python's zlib and by a real Go client (spdystream), and sessions driven by a
//! test client over in-memory connections.

mod frame;
mod headers;
mod session;

use bytes::BytesMut;

/// Deterministic pseudo-random bytes (xorshift64), so failures reproduce.
pub(super) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub(super) fn hex(s: &str) -> BytesMut {
    let clean: String = s.split_whitespace().collect();
    BytesMut::from(&hex::decode(clean).expect("test fixture is hex")[..])
}

/// Captured from a real Go client: github.com/moby/spdystream v0.5.1 (the copy vendored in
/// cri-tools), `spdystream.NewConnection(conn, false)` over TCP to a listener that recorded
/// every byte, then:
/// ```text
/// s1 := CreateStream({"streamType": "error"}); s2 := CreateStream({"streamType": "data",
/// "X-Multi": ["a", "b"]}); s2.Write("hello from go"); s2.Close(); s1.Write("oops");
/// conn.Close()
/// ```
/// (a throwaway program outside the repository, run with go1.27 -mod=vendor).
pub(super) const GO_CLIENT_CAPTURE: &str = "\
800300010000002a0000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a5a54945f04000000ffff\
800300010000002c0000000300000000000062606060c290029532890c0c0cec15bab9a53925990c0c0ccc890c4900000000ffff\
000000030000000d68656c6c6f2066726f6d20676f\
0000000301000000\
00000001000000046f6f7073\
80030007000000080000000000000000";

/// Two SYN_STREAMs of the shape spdystream sends, compressed by Python's zlib (CPython 3.11.7,
/// zlib 1.2.13) on ONE stream: `zlib.compressobj(9, DEFLATED, 15, 8, Z_DEFAULT_STRATEGY,
/// zdict=<the SPDY/3 dictionary>)`, each block then `flush(Z_SYNC_FLUSH)`. The second block
/// refers back to the first one's window, so it decodes only with the state continued.
pub(super) const PYTHON_SYN_STREAMS: [&str; 2] = [
    "80030001000000280000000100000000000078f9e3c6a7c202a62346703a2b294a4dcc851625aca9a08006000000ffff",
    "800300010000001900000003000000000000c22a054ccc29f9a52500000000ffff",
];
