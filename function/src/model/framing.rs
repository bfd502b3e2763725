//! Protobuf framing (its encoding of fields), just enough of it to walk an ONNX model's
//! messages and copy or cut their fields without decoding the model: the
//! weights stay where they lie (the zero-copy split) and a graph can be read
//! in a few kilobytes (which integers a quantized model multiplies).

use std::ops::Range;

/// Broken protobuf framing.
#[derive(Debug, thiserror::Error)]
#[error("not a valid ONNX model (protobuf framing broken at byte {at}: {what})")]
pub(crate) struct Malformed {
    pub(crate) at: usize,
    pub(crate) what: &'static str,
}

#[derive(Debug)]
pub(crate) enum Value {
    Varint(u64),
    Len(Range<usize>),
    Fixed,
}

#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) number: u64,
    /// The whole field (tag included), as a range of the model bytes.
    pub(crate) span: Range<usize>,
    /// For `Len`: the payload as a range of the model bytes.
    pub(crate) value: Value,
}

impl Field {
    /// The field's number and value, for matching on both.
    pub(crate) fn into_parts(self) -> (u64, Value) {
        (self.number, self.value)
    }
}

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of `bytes` within the whole model, so ranges refer to the model.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: usize) -> Self {
        Reader {
            bytes,
            pos: 0,
            base,
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn malformed(&self, what: &'static str) -> Malformed {
        Malformed {
            at: self.base + self.pos,
            what,
        }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| self.malformed("truncated varint"))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed("varint longer than 10 bytes"))
    }

    fn skip(&mut self, n: usize) -> Result<Range<usize>, Malformed> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.malformed("field runs past its message"))?;
        let range = self.base + self.pos..self.base + end;
        self.pos = end;
        Ok(range)
    }

    fn field(&mut self) -> Result<Field, Malformed> {
        let start = self.pos;
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.skip(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| self.malformed("length too large"))?;
                Value::Len(self.skip(len)?)
            }
            5 => {
                self.skip(4)?;
                Value::Fixed
            }
            _ => return Err(self.malformed("unsupported wire type")),
        };
        Ok(Field {
            number: tag >> 3,
            span: self.base + start..self.base + self.pos,
            value,
        })
    }
}

/// Iterates over a message's fields; stops at the first framing error.
pub(crate) struct Fields<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: usize) -> Self {
        Fields {
            reader: Reader::new(bytes, base),
            failed: false,
        }
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<Field, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.done() {
            return None;
        }
        let field = self.reader.field();
        self.failed = field.is_err();
        Some(field)
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_len_field(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}
