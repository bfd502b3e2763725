//! Whether a model is quantized, sniffed from its bytes: it decides weight
//! pre-packing when the session is built (`session.rs`), nothing else.

use std::io::Read;
use std::path::Path;

/// Operator names of quantized graphs (QDQ, QOperator and integer ops).
const QUANTIZED_OPS: &[&[u8]] = &[
    b"QuantizeLinear",
    b"QLinear",
    b"MatMulInteger",
    b"ConvInteger",
];

/// Whether ONNX model bytes mention a quantized operator. A byte search, not
/// a parse: it only steers a load-time setting (weight pre-packing), never
/// an answer.
pub fn looks_quantized(bytes: &[u8]) -> bool {
    QUANTIZED_OPS
        .iter()
        .any(|op| memchr::memmem::find(bytes, op).is_some())
}

/// A local model file's size and whether it holds quantized operators: a
/// quick pass in 8 MiB blocks before the session is built. ONNX Runtime then
/// reads the file itself, so no copy of the model is held in memory beside
/// the session's own.
pub fn scan_file(path: &Path) -> std::io::Result<(u64, bool)> {
    // Keep the tail of each block so an operator name split by a block edge is seen.
    const KEEP: usize = 16;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 8 << 20];
    let mut tail: Vec<u8> = Vec::with_capacity(KEEP * 2);
    let (mut size, mut quantized) = (0u64, false);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((size, quantized));
        }
        let block = &buf[..n];
        size += n as u64;
        if !quantized {
            tail.extend_from_slice(&block[..n.min(KEEP)]);
            quantized = looks_quantized(&tail) || looks_quantized(block);
            tail.clear();
            tail.extend_from_slice(&block[n.saturating_sub(KEEP)..]);
        }
    }
}

#[cfg(test)]
// Unit tests make scratch folders in the system's temporary folder; the
// rule that only settings reads the environment is for the running code.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_quantized_operators_are_found_even_across_block_edges() {
        let dir = std::env::temp_dir().join(format!("catdog-quant-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
        let big_path = dir.join("big.bin");
        std::fs::write(&big_path, &big).unwrap();
        assert_eq!(scan_file(&big_path).unwrap(), (big.len() as u64, false));

        // An operator name split across two 8 MiB reads is still seen.
        let mut q = vec![0u8; 9 << 20];
        let at = (8 << 20) - 5;
        q[at..at + 14].copy_from_slice(b"QuantizeLinear");
        let q_path = dir.join("q.onnx");
        std::fs::write(&q_path, &q).unwrap();
        assert_eq!(scan_file(&q_path).unwrap(), (q.len() as u64, true));
        assert!(looks_quantized(b"..QLinearConv..") && !looks_quantized(b"Conv Gemm Relu"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
