//! The binary tensor data extension's framing: BYTES elements as
//! length-prefixed bytes, after the JSON part.

use bytes::Bytes;

/// Why binary BYTES elements could not be split.
#[derive(Debug, thiserror::Error)]
pub(super) enum FramingError {
    #[error("{0} stray bytes where an element's 4-byte length should be")]
    Stray(usize),
    #[error("element {element} says {len} bytes, {remain} remain")]
    Short {
        element: usize,
        len: usize,
        remain: usize,
    },
}

/// BYTES elements in binary: each is a 4-byte little-endian length, then its bytes.
pub(super) fn split_bytes(mut raw: Bytes) -> Result<Vec<Bytes>, FramingError> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        if raw.len() < 4 {
            return Err(FramingError::Stray(raw.len()));
        }
        let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
        let _ = raw.split_to(4);
        if len > raw.len() {
            return Err(FramingError::Short {
                element: out.len(),
                len,
                remain: raw.len(),
            });
        }
        out.push(raw.split_to(len));
    }
    Ok(out)
}

/// BYTES elements in binary, as [`split_bytes`] reads them.
pub(super) fn join_bytes<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(&(item.len() as u32).to_le_bytes());
        out.extend_from_slice(item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_elements_round_trip_and_malformed_ones_are_refused() {
        let joined = join_bytes([&b"ab"[..], b"", b"xyz"]);
        let split = split_bytes(Bytes::from(joined)).unwrap();
        assert_eq!(
            split,
            vec![Bytes::from("ab"), Bytes::new(), Bytes::from("xyz")]
        );
        assert!(split_bytes(Bytes::from_static(&[5, 0, 0, 0, 1])).is_err());
        assert!(split_bytes(Bytes::from_static(&[1, 0])).is_err());
    }
}
