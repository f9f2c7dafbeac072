//! Recognising a layer blob's compression by its magic bytes and wrapping it in a streaming decoder.

use std::io::{self, Cursor, Read};

use crate::error::{Result, StorageError};

/// The compression of a layer blob, as recognised from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// An uncompressed tar stream.
    None,
    /// gzip (RFC 1952), magic `1f 8b`.
    Gzip,
    /// zstd, magic `28 b5 2f fd`.
    Zstd,
}

const GZIP: &[u8] = &[0x1f, 0x8b];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const BZIP2: &[u8] = b"BZh";

/// Reads the first bytes of `reader` and returns a reader of the decompressed stream (the magic bytes are put
/// back in front), plus what was detected. xz and bzip2 are recognised and refused.
pub(crate) fn decompress<'a>(
    mut reader: impl Read + 'a,
) -> Result<(Box<dyn Read + 'a>, Compression)> {
    let mut head = [0u8; 6];
    let mut n = 0;
    while n < head.len() {
        match reader.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(StorageError::Read {
                    what: "stream".into(),
                    source: e,
                })
            }
        }
    }
    let head = &head[..n];
    let stream = Cursor::new(head.to_vec()).chain(reader);
    if head.starts_with(GZIP) {
        Ok((
            Box::new(flate2::read::MultiGzDecoder::new(stream)),
            Compression::Gzip,
        ))
    } else if head.starts_with(ZSTD) {
        let dec = zstd::stream::read::Decoder::new(stream).map_err(|e| StorageError::Read {
            what: "zstd header".into(),
            source: e,
        })?;
        Ok((Box::new(dec), Compression::Zstd))
    } else if head.starts_with(XZ) {
        Err(StorageError::UnsupportedCompression { format: "xz" })
    } else if head.starts_with(BZIP2) {
        Err(StorageError::UnsupportedCompression { format: "bzip2" })
    } else {
        Ok((Box::new(stream), Compression::None))
    }
}
