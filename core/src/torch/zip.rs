//! The zip container of `torch.save` files, read in place from a byte slice.
//!
//! Only what PyTorch writes is accepted: STORED (uncompressed) entries, one disk, optional zip64
//! records (files past 4 GiB). Every offset and size is checked against the slice before use,
//! and the central directory is the authority for sizes (local headers only give the name and
//! extra-field lengths that precede the data).

use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD64_SIG: u32 = 0x0606_4b50;
const LOCATOR64_SIG: u32 = 0x0706_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const EOCD_LEN: usize = 22;
const LOCATOR64_LEN: usize = 20;
const EOCD64_LEN: usize = 56;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;
/// Zip64 extended-information extra field.
const ZIP64_EXTRA: u16 = 0x0001;

/// One stored file of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
    /// CRC-32 recorded in the central directory.
    pub crc32: u32,
}

impl Entry<'_> {
    /// Compare the data's CRC-32 with the recorded one.
    pub fn verify_crc(&self) -> Result<(), ZipError> {
        let got = crc32fast::hash(self.data);
        if got != self.crc32 {
            return Err(ZipError::Crc {
                name: self.name.to_string(),
                expected: self.crc32,
                got,
            });
        }
        Ok(())
    }
}

/// Why a zip container was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZipError {
    /// No end-of-central-directory record at the end: not a zip file, or truncated.
    NoEndRecord {
        len: usize,
    },
    /// A record runs past the end of the file (the file is truncated or corrupt).
    Truncated {
        what: &'static str,
        offset: u64,
    },
    BadSignature {
        what: &'static str,
        offset: u64,
    },
    MultiDisk,
    /// An entry name that is not UTF-8.
    BadName {
        offset: u64,
    },
    Compressed {
        name: String,
        method: u16,
    },
    Encrypted {
        name: String,
    },
    SizeMismatch {
        name: String,
        compressed: u64,
        uncompressed: u64,
    },
    DuplicateEntry(String),
    Crc {
        name: String,
        expected: u32,
        got: u32,
    },
}

impl fmt::Display for ZipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ZipError::*;
        match self {
            NoEndRecord { len } => write!(
                f,
                "no zip end-of-central-directory record in the last bytes of the {len}-byte file: not a torch.save zip, or truncated"
            ),
            Truncated { what, offset } => {
                write!(f, "zip {what} at byte {offset} runs past the end of the file (truncated?)")
            }
            BadSignature { what, offset } => write!(f, "no zip {what} signature at byte {offset}"),
            MultiDisk => write!(f, "multi-disk zip archives are not supported"),
            BadName { offset } => write!(f, "zip entry name at byte {offset} is not UTF-8"),
            Compressed { name, method } => write!(
                f,
                "zip entry `{name}` is compressed (method {method}); torch.save writes stored entries only"
            ),
            Encrypted { name } => write!(f, "zip entry `{name}` is encrypted"),
            SizeMismatch { name, compressed, uncompressed } => write!(
                f,
                "stored zip entry `{name}` has compressed size {compressed} but uncompressed size {uncompressed}"
            ),
            DuplicateEntry(n) => write!(f, "zip entry `{n}` appears twice"),
            Crc { name, expected, got } => write!(
                f,
                "zip entry `{name}` has CRC-32 {got:08x}, the directory records {expected:08x}: the file is corrupt"
            ),
        }
    }
}

/// Little-endian field reads at absolute offsets, bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn slice(&self, off: u64, len: u64, what: &'static str) -> Result<&'a [u8], ZipError> {
        let end = off.checked_add(len);
        match end {
            Some(end) if end <= self.bytes.len() as u64 => {
                Ok(&self.bytes[off as usize..end as usize])
            }
            _ => Err(ZipError::Truncated { what, offset: off }),
        }
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(x)
}

/// Where the central directory is and how many entries it holds.
struct Directory {
    entries: u64,
    size: u64,
    offset: u64,
}

/// The end-of-central-directory record: searched backwards over the largest possible comment,
/// and accepted only where its comment length reaches exactly to the end of the file, so bytes
/// inside a truncated file's data are not mistaken for it.
fn find_directory(r: &Reader<'_>) -> Result<Directory, ZipError> {
    let b = r.bytes;
    let no_end = ZipError::NoEndRecord { len: b.len() };
    if b.len() < EOCD_LEN {
        return Err(no_end);
    }
    let last = b.len() - EOCD_LEN;
    let first = last.saturating_sub(u16::MAX as usize);
    let pos = (first..=last)
        .rev()
        .find(|&p| u32_at(b, p) == EOCD_SIG && u16_at(b, p + 20) as usize == last - p)
        .ok_or(no_end)?;
    let e = &b[pos..pos + EOCD_LEN];
    let (disk, cd_disk) = (u16_at(e, 4), u16_at(e, 6));
    let (disk_entries, entries) = (u16_at(e, 8), u16_at(e, 10));
    let (size, offset) = (u32_at(e, 12), u32_at(e, 16));
    if disk != 0 || cd_disk != 0 || disk_entries != entries {
        return Err(ZipError::MultiDisk);
    }
    // A zip64 locator right before the record means the real values live in the zip64 record.
    if pos >= LOCATOR64_LEN && u32_at(b, pos - LOCATOR64_LEN) == LOCATOR64_SIG {
        let loc = &b[pos - LOCATOR64_LEN..pos];
        if u32_at(loc, 4) != 0 || u32_at(loc, 16) > 1 {
            return Err(ZipError::MultiDisk);
        }
        let off = u64_at(loc, 8);
        let z = r.slice(off, EOCD64_LEN as u64, "zip64 end record")?;
        if u32_at(z, 0) != EOCD64_SIG {
            return Err(ZipError::BadSignature {
                what: "zip64 end record",
                offset: off,
            });
        }
        if u32_at(z, 16) != 0 || u32_at(z, 20) != 0 || u64_at(z, 24) != u64_at(z, 32) {
            return Err(ZipError::MultiDisk);
        }
        return Ok(Directory {
            entries: u64_at(z, 32),
            size: u64_at(z, 40),
            offset: u64_at(z, 48),
        });
    }
    Ok(Directory {
        entries: entries as u64,
        size: size as u64,
        offset: offset as u64,
    })
}

/// Read the central directory and locate every entry's data.
pub fn read(bytes: &[u8]) -> Result<Vec<Entry<'_>>, ZipError> {
    let r = Reader { bytes };
    let dir = find_directory(&r)?;
    let cd = r.slice(dir.offset, dir.size, "central directory")?;
    // Each entry takes at least CENTRAL_LEN bytes, which bounds the allocation by the file.
    if dir.entries > (cd.len() / CENTRAL_LEN) as u64 {
        return Err(ZipError::Truncated {
            what: "central directory",
            offset: dir.offset,
        });
    }
    let mut out = Vec::with_capacity(dir.entries as usize);
    let mut names = BTreeSet::new();
    let mut p = 0usize;
    for _ in 0..dir.entries {
        let at = dir.offset + p as u64;
        let truncated = ZipError::Truncated {
            what: "central directory entry",
            offset: at,
        };
        let h = cd.get(p..p + CENTRAL_LEN).ok_or(truncated.clone())?;
        if u32_at(h, 0) != CENTRAL_SIG {
            return Err(ZipError::BadSignature {
                what: "central directory entry",
                offset: at,
            });
        }
        let (flags, method, crc32) = (u16_at(h, 8), u16_at(h, 10), u32_at(h, 16));
        let mut csize = u32_at(h, 20) as u64;
        let mut usize_ = u32_at(h, 24) as u64;
        let (nlen, xlen, clen) = (
            u16_at(h, 28) as usize,
            u16_at(h, 30) as usize,
            u16_at(h, 32) as usize,
        );
        let disk = u16_at(h, 34);
        let mut local = u32_at(h, 42) as u64;
        let var = cd
            .get(p + CENTRAL_LEN..p + CENTRAL_LEN + nlen + xlen + clen)
            .ok_or(truncated)?;
        let name =
            core::str::from_utf8(&var[..nlen]).map_err(|_| ZipError::BadName { offset: at })?;
        // Zip64 extra field: 8-byte values for exactly the fields saturated above, in order.
        let mut extra = &var[nlen..nlen + xlen];
        while extra.len() >= 4 {
            let (id, len) = (u16_at(extra, 0), u16_at(extra, 2) as usize);
            let body = extra.get(4..4 + len).ok_or(ZipError::Truncated {
                what: "zip extra field",
                offset: at,
            })?;
            if id == ZIP64_EXTRA {
                let mut vals = body.chunks_exact(8).map(|c| u64_at(c, 0));
                let mut fill = |field: &mut u64| -> Result<(), ZipError> {
                    if *field == u32::MAX as u64 {
                        *field = vals.next().ok_or(ZipError::Truncated {
                            what: "zip64 extra field",
                            offset: at,
                        })?;
                    }
                    Ok(())
                };
                fill(&mut usize_)?;
                fill(&mut csize)?;
                fill(&mut local)?;
            }
            extra = &extra[4 + len..];
        }
        if disk != 0 {
            return Err(ZipError::MultiDisk);
        }
        if flags & 1 != 0 {
            return Err(ZipError::Encrypted { name: name.into() });
        }
        if method != 0 {
            return Err(ZipError::Compressed {
                name: name.into(),
                method,
            });
        }
        if csize != usize_ {
            return Err(ZipError::SizeMismatch {
                name: name.into(),
                compressed: csize,
                uncompressed: usize_,
            });
        }
        let lh = r.slice(local, LOCAL_LEN as u64, "local header")?;
        if u32_at(lh, 0) != LOCAL_SIG {
            return Err(ZipError::BadSignature {
                what: "local header",
                offset: local,
            });
        }
        let start = local + LOCAL_LEN as u64 + u16_at(lh, 26) as u64 + u16_at(lh, 28) as u64;
        let data = r.slice(start, csize, "entry data")?;
        if !names.insert(name) {
            return Err(ZipError::DuplicateEntry(name.into()));
        }
        out.push(Entry { name, data, crc32 });
        p += CENTRAL_LEN + nlen + xlen + clen;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal STORED zip writer for tests (the fixture files come from real torch.save).
    pub(crate) fn zip(entries: &[(&str, &[u8])], method: u16) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cd = Vec::new();
        for (name, data) in entries {
            let off = out.len() as u32;
            let crc = crc32fast::hash(data);
            out.extend_from_slice(&LOCAL_SIG.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0]);
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            cd.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
            cd.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
            cd.extend_from_slice(&method.to_le_bytes());
            cd.extend_from_slice(&[0; 4]);
            cd.extend_from_slice(&crc.to_le_bytes());
            cd.extend_from_slice(&(data.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(data.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
            cd.extend_from_slice(&[0; 12]);
            cd.extend_from_slice(&off.to_le_bytes());
            cd.extend_from_slice(name.as_bytes());
        }
        let cd_off = out.len() as u32;
        out.extend_from_slice(&cd);
        out.extend_from_slice(&EOCD_SIG.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_off.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn reads_stored_entries_and_checks_crc() {
        let z = zip(&[("a/data.pkl", b"xyz"), ("a/data/0", &[1, 2, 3, 4])], 0);
        let e = read(&z).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].name, e[0].data), ("a/data.pkl", &b"xyz"[..]));
        assert_eq!(e[1].data, &[1, 2, 3, 4]);
        e[1].verify_crc().unwrap();
        let mut bad = e[1].clone();
        bad.crc32 ^= 1;
        assert!(matches!(bad.verify_crc(), Err(ZipError::Crc { .. })));
    }

    #[test]
    fn refuses_what_torch_does_not_write() {
        let z = zip(&[("a", b"xyz")], 8);
        assert!(matches!(
            read(&z),
            Err(ZipError::Compressed { method: 8, .. })
        ));
        let z = zip(&[("a", b"xyz"), ("a", b"q")], 0);
        assert_eq!(read(&z), Err(ZipError::DuplicateEntry("a".into())));
        let z = zip(&[("a", b"xyz")], 0);
        for cut in 0..z.len() {
            assert!(read(&z[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(read(&[]), Err(ZipError::NoEndRecord { len: 0 }));
        assert!(read(&[0u8; 100]).is_err());
    }
}
