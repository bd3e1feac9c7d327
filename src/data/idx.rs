//! Reader for the IDX format of MNIST-like datasets, gzipped or not.
//!
//! Layout: a big-endian magic `0x00 0x00 T D` (`T = 0x08` for unsigned bytes, `D` the number
//! of dimensions), `D` big-endian `u32` sizes, then the row-major data. A gzip stream is
//! recognised by its magic bytes `1f 8b`, whatever the file is called.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{BcdError, Result};

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Sizes of the dimensions.
    pub dims: Vec<usize>,
    /// Row-major data, `dims.iter().product()` bytes.
    pub data: Vec<u8>,
}

/// Finds `dir/name` or `dir/name.gz`; the error names both paths tried.
pub fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if plain.is_file() {
        Ok(plain)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(BcdError::data(
            &plain,
            format!("not found (nor {})", gz.display()),
        ))
    }
}

/// Reads the whole file, decompressing it when it is a gzip stream.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| BcdError::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| BcdError::data(path, format!("corrupt or truncated gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX file of `expected_dims` dimensions (unsigned bytes).
pub fn read(path: &Path, expected_dims: usize) -> Result<IdxArray> {
    let bytes = read_bytes(path)?;
    parse(&bytes, expected_dims).map_err(|reason| BcdError::data(path, reason))
}

fn parse(bytes: &[u8], expected_dims: usize) -> std::result::Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "truncated: {} bytes, not even an IDX header",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "not an IDX file: magic {:02x}{:02x}{:02x}{:02x} does not start with 0000",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "unsupported IDX element type 0x{:02x} (expected 0x08, unsigned byte)",
            bytes[2]
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims != expected_dims {
        return Err(format!(
            "IDX file has {ndims} dimensions, expected {expected_dims}"
        ));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(format!(
            "truncated header: {} bytes, need {header}",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    let have = bytes.len() - header;
    if have < len {
        return Err(format!(
            "truncated: dimensions {dims:?} need {len} data bytes, found {have}"
        ));
    }
    if have > len {
        return Err(format!(
            "{} trailing bytes after the {len} data bytes of dimensions {dims:?}",
            have - len
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(data);
        out
    }

    #[test]
    fn parses_and_rejects() {
        let ok = parse(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6]), 2).unwrap();
        assert_eq!(ok.dims, vec![2, 3]);
        assert_eq!(ok.data, vec![1, 2, 3, 4, 5, 6]);
        assert!(parse(&idx(&[2, 3], &[1, 2, 3]), 2)
            .unwrap_err()
            .contains("truncated"));
        assert!(parse(&idx(&[2], &[1, 2, 3]), 1)
            .unwrap_err()
            .contains("trailing"));
        assert!(parse(&idx(&[2], &[1, 2]), 3)
            .unwrap_err()
            .contains("dimensions"));
        assert!(parse(b"\x1f\x8bxx", 1).unwrap_err().contains("not an IDX"));
        assert!(parse(&[0, 0], 1).unwrap_err().contains("truncated"));
    }
}
