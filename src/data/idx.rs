//! Reader for the IDX format of MNIST-like datasets, gzipped or not.
//!
//! Layout: a big-endian magic `0x00 0x00 T D` (`T = 0x08` for unsigned bytes, `D` the number
//! of dimensions), `D` big-endian `u32` sizes, then the row-major data. A gzip stream is
//! recognised by its magic bytes `1f 8b`, whatever the file is called.

use std::io::{BufReader, Read};
use std::ops::Range;
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

/// Reads only the rows `rows(n)` (along the first dimension, `n` its size) of an IDX file,
/// streaming it (decompressing when gzipped) and keeping just those rows: what one rank of a
/// data-parallel run holds. Returns the array of those rows and `n`. The file is read up to the
/// last requested row; a file that ends before it is reported as truncated, and when the rows
/// run to the last one, bytes after it are an error.
pub fn read_rows(
    path: &Path,
    expected_dims: usize,
    rows: impl FnOnce(usize) -> Range<usize>,
) -> Result<(IdxArray, usize)> {
    let file = std::fs::File::open(path).map_err(|e| BcdError::io(path, e))?;
    let mut file = BufReader::new(file);
    let gz = std::io::BufRead::fill_buf(&mut file)
        .map_err(|e| BcdError::io(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn Read> = match gz {
        true => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        false => Box::new(file),
    };
    let bad = |reason: String| BcdError::data(path, reason);
    let mut fixed = [0u8; 4];
    read_full(&mut reader, &mut fixed).map_err(|e| bad(format!("header: {e}")))?;
    check_magic(&fixed, expected_dims).map_err(bad)?;
    let mut header = fixed.to_vec();
    header.resize(4 + 4 * fixed[3] as usize, 0);
    read_full(&mut reader, &mut header[4..]).map_err(|e| bad(format!("header: {e}")))?;
    let (dims, _) = parse_header(&header, expected_dims).map_err(bad)?;
    let n = dims[0];
    let row_len: usize = dims[1..].iter().product();
    let range = rows(n);
    if range.end > n || range.start > range.end {
        return Err(bad(format!("rows {range:?} requested of {n}")));
    }
    let skip = (range.start * row_len) as u64;
    let skipped = std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink())
        .map_err(|e| bad(format!("corrupt or truncated: {e}")))?;
    let mut data = vec![0u8; range.len() * row_len];
    let read = match skipped == skip {
        true => read_full(&mut reader, &mut data),
        false => Err(format!(
            "ends after {skipped} of the {skip} bytes before row {}",
            range.start
        )),
    };
    read.map_err(|e| {
        bad(format!(
            "truncated or corrupt: rows {range:?} of dimensions {dims:?} cannot be read ({e})"
        ))
    })?;
    if range.end == n {
        // Read to the end: the file must hold this array and nothing more (as for `read`).
        let extra = std::io::copy(&mut reader, &mut std::io::sink())
            .map_err(|e| bad(format!("corrupt or truncated: {e}")))?;
        if extra > 0 {
            return Err(bad(format!(
                "{extra} trailing bytes after the data of dimensions {dims:?}"
            )));
        }
    }
    let mut dims = dims;
    dims[0] = range.len();
    Ok((IdxArray { dims, data }, n))
}

/// Fills `buf` from `reader`, saying how many bytes it got when the stream ends first.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::result::Result<(), String> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => return Err(format!("the data ends {} bytes short", buf.len() - got)),
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Checks the first four bytes of an IDX file (magic, element type, number of dimensions);
/// returns the number of dimensions.
fn check_magic(bytes: &[u8], expected_dims: usize) -> std::result::Result<usize, String> {
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
    Ok(ndims)
}

/// Checks the header at the start of `bytes`; returns the dimensions and the header's length.
fn parse_header(
    bytes: &[u8],
    expected_dims: usize,
) -> std::result::Result<(Vec<usize>, usize), String> {
    if bytes.len() < 4 {
        return Err(format!(
            "truncated: {} bytes, not even an IDX header",
            bytes.len()
        ));
    }
    let ndims = check_magic(&bytes[..4], expected_dims)?;
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
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    Ok((dims, header))
}

fn parse(bytes: &[u8], expected_dims: usize) -> std::result::Result<IdxArray, String> {
    let (dims, header) = parse_header(bytes, expected_dims)?;
    let len: usize = dims.iter().product();
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
