//! Bounds the tar members that the `tar` crate reads whole into memory.
//!
//! GNU long names and long links (`L`, `K`) and PAX extended headers (`x`, `g`) are buffered
//! entirely by the `tar` crate before the entry they describe is seen, whatever size their
//! header claims: one member could make it allocate gigabytes. This reader follows the
//! archive's structure as the bytes stream past (headers, data, padding, sparse extension
//! blocks, a PAX `size` override) and fails the read that starts such a member when it is
//! larger than a path may be (long names) or than Go's `archive/tar` accepts (PAX, 1 MiB,
//! which containerd inherits). It only observes: the `tar` crate still parses every byte.

use std::io::{self, Read};

use super::limits::LimitExceeded;

const BLOCK: usize = 512;
/// PAX extended headers beyond this are refused, as Go's archive/tar does.
pub const MAX_PAX_BYTES: u64 = 1 << 20;

pub struct TarGuard<R> {
    inner: R,
    /// Longest path (and link target) an entry may have: `image.max_path_bytes`.
    max_path: u64,
    header: [u8; BLOCK],
    filled: usize,
    /// Bytes of the current member's data and padding still to pass.
    skip: u64,
    /// Bytes of a PAX header's data still to collect into `pax`.
    pax_left: u64,
    pax: Vec<u8>,
    /// A PAX `size` for the next member that is not itself an extension.
    pax_size: Option<u64>,
    /// GNU sparse extension blocks follow before the data (of this many bytes).
    sparse_data: Option<u64>,
    /// Past the end-of-archive marker, or lost: only pass bytes through.
    done: bool,
}

impl<R> TarGuard<R> {
    pub fn new(inner: R, max_path: u64) -> Self {
        TarGuard {
            inner,
            max_path,
            header: [0; BLOCK],
            filled: 0,
            skip: 0,
            pax_left: 0,
            pax: Vec::new(),
            pax_size: None,
            sparse_data: None,
            done: false,
        }
    }

    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() && !self.done {
            if self.skip > 0 {
                let take = bytes
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                if self.pax_left > 0 {
                    let keep = take.min(usize::try_from(self.pax_left).unwrap_or(usize::MAX));
                    self.pax.extend_from_slice(&bytes[..keep]);
                    self.pax_left -= keep as u64;
                    if self.pax_left == 0 {
                        self.pax_size = pax_size(&self.pax).or(self.pax_size);
                        self.pax.clear();
                    }
                }
                self.skip -= take as u64;
                bytes = &bytes[take..];
                continue;
            }
            let take = (BLOCK - self.filled).min(bytes.len());
            self.header[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled == BLOCK {
                self.filled = 0;
                self.on_block()?;
            }
        }
        Ok(())
    }

    fn on_block(&mut self) -> io::Result<()> {
        let h = self.header;
        if let Some(data) = self.sparse_data {
            // A GNU sparse extension block: another follows while its flag is set.
            if h[504] == 0 {
                self.sparse_data = None;
                self.skip = padded(data);
            }
            return Ok(());
        }
        if h.iter().all(|&b| b == 0) {
            // End of archive: the tar crate stops reading members here.
            self.done = true;
            return Ok(());
        }
        let Some(mut size) = numeric(&h[124..136]) else {
            // Malformed: the tar crate refuses it; nothing more to follow.
            self.done = true;
            return Ok(());
        };
        let kind = h[156];
        match kind {
            b'L' | b'K' if size > self.max_path + 1 => {
                // The record holds the name and its terminating NUL.
                let what = if kind == b'L' { "path" } else { "link target" };
                return Err(io::Error::other(LimitExceeded::new(
                    "max_path_bytes",
                    self.max_path,
                    format!("a GNU long {what} of {size} bytes"),
                )));
            }
            b'x' | b'g' if size > MAX_PAX_BYTES => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("PAX extended header of {size} bytes (at most {MAX_PAX_BYTES})"),
                ));
            }
            b'x' => {
                self.pax_left = size;
                self.pax.clear();
            }
            b'L' | b'K' | b'g' => {}
            _ => {
                if let Some(pax) = self.pax_size.take() {
                    size = pax;
                }
                if kind == b'S' && h[482] != 0 {
                    self.sparse_data = Some(size);
                    return Ok(());
                }
            }
        }
        self.skip = padded(size);
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

/// A header's numeric field: octal text, or base-256 when the high bit is set.
fn numeric(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let tail = &field[field.len().saturating_sub(8)..];
        return Some(tail.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)));
    }
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = std::str::from_utf8(&field[..end]).ok()?.trim();
    u64::from_str_radix(text, 8).ok()
}

/// The first `size` record of PAX data, as the tar crate reads it.
fn pax_size(data: &[u8]) -> Option<u64> {
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        let record = rest.get(space + 1..len)?;
        rest = &rest[len..];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"size=") {
            return std::str::from_utf8(value).ok()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tar::{Builder, EntryType, Header};

    fn header(kind: EntryType, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }

    fn drain(tar: &[u8], max_path: u64) -> io::Result<u64> {
        // Small reads, so headers and data arrive split at every offset.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(77);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        io::copy(&mut TarGuard::new(Trickle(tar), max_path), &mut io::sink())
    }

    fn raw_member(kind: u8, size: u64, data_len: usize) -> Vec<u8> {
        let mut h = header(EntryType::new(kind), size);
        h.set_path("././@LongLink").unwrap();
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.resize(out.len() + padded(data_len as u64) as usize, b'a');
        out
    }

    #[test]
    fn ordinary_archives_pass_whole() {
        let mut b = Builder::new(Vec::new());
        let long = "long/".repeat(60);
        b.append_data(&mut header(EntryType::Directory, 0), &long, &[][..])
            .unwrap();
        let data = vec![7u8; 5000];
        b.append_data(
            &mut header(EntryType::Regular, 5000),
            format!("{long}f"),
            data.as_slice(),
        )
        .unwrap();
        let mut link = header(EntryType::Symlink, 0);
        b.append_link(&mut link, "l", "t/".repeat(200)).unwrap();
        let tar = b.into_inner().unwrap();
        assert_eq!(drain(&tar, 4096).unwrap(), tar.len() as u64);
    }

    #[test]
    fn a_huge_long_name_or_pax_header_is_refused_before_it_is_read() {
        // The header claims 1 GiB; only its first bytes exist. The read past the header fails.
        let tar = raw_member(b'L', 1 << 30, 1024);
        let err = drain(&tar, 4096).unwrap_err();
        assert!(err.to_string().contains("image.max_path_bytes"), "{err}");
        let tar = raw_member(b'x', 1 << 30, 1024);
        let err = drain(&tar, 4096).unwrap_err();
        assert!(err.to_string().contains("PAX"), "{err}");
        // A long name within the path bound passes.
        let mut tar = raw_member(b'L', 4000, 4000);
        tar.extend(vec![0u8; 1024]);
        assert!(drain(&tar, 4096).is_ok());
    }

    #[test]
    fn a_pax_size_moves_the_next_header() {
        // PAX says the file holds 1024 bytes though its header says 0: a guard that missed
        // it would take the file's data for a header (here: an `L` claiming 1 GiB).
        let mut tar = Vec::new();
        let record = b"13 size=1024\n";
        let mut x = header(EntryType::XHeader, record.len() as u64);
        x.set_path("pax").unwrap();
        x.set_cksum();
        tar.extend_from_slice(x.as_bytes());
        tar.extend_from_slice(record);
        tar.resize(padded(tar.len() as u64) as usize, 0);
        let mut f = header(EntryType::Regular, 0);
        f.set_path("f").unwrap();
        f.set_cksum();
        tar.extend_from_slice(f.as_bytes());
        tar.extend(raw_member(b'L', 1 << 30, 512));
        tar.extend(vec![0u8; 1024]);
        assert!(drain(&tar, 4096).is_ok());
        assert_eq!(pax_size(b"13 size=1024\n"), Some(1024));
        assert_eq!(pax_size(b"12 path=abc\n13 size=2048\n"), Some(2048));
        assert_eq!(numeric(b"00000001000\0"), Some(512));
    }
}
