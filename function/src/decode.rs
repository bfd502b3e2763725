//! Turning uploaded bytes into an RGB picture, safely.
//!
//! Untrusted input: the format is sniffed from the bytes (never trusted from a
//! file name or header), dimensions are checked against [`DecodeLimits`] from
//! the header *before* any pixel buffer is allocated (so a decompression bomb
//! costs nothing), and EXIF orientation is applied so a phone photo is upright.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

/// Formats we decode; anything else that `image` recognises is refused as unsupported.
pub(crate) const SUPPORTED_FORMATS: &[ImageFormat] = &[
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::WebP,
    ImageFormat::Gif,
    ImageFormat::Bmp,
];

/// Default cap on width × height (40 megapixels, above any phone camera).
pub(crate) const DEFAULT_MAX_PIXELS: u64 = 40_000_000;
/// Default cap on either side, which also bounds very thin pictures.
pub(crate) const DEFAULT_MAX_SIDE: u32 = 16_384;

/// Size limits applied before decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_pixels: u64,
    pub max_side: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
            max_side: DEFAULT_MAX_SIDE,
        }
    }
}

/// Why a picture could not be decoded. Every variant is the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the image is empty (0 bytes)")]
    Empty,
    #[error("the data is not a recognised image (expected JPEG, PNG, WebP, GIF or BMP)")]
    UnknownFormat,
    #[error("{0} images are not supported (use JPEG, PNG, WebP, GIF or BMP)")]
    UnsupportedFormat(String),
    #[error("the image is {width}×{height} pixels; the limit is {max_pixels} pixels and {max_side} per side")]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
        max_side: u32,
    },
    #[error("the image has no pixels ({width}×{height})")]
    ZeroSized { width: u32, height: u32 },
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
}

/// What a picture's header says, read without decoding a pixel: enough to
/// refuse it, and to know what decoding it will cost before paying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub(crate) format: ImageFormat,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Most bytes the decoder holds at once for this picture (see [`Header::decoded_bytes`]).
    decoded_bytes: u64,
}

impl Header {
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// The most memory [`decode_rgb`] holds at once for this picture: the
    /// decoder's own buffer in its native colour type, the upright copy a
    /// rotation makes, and the RGB copy a conversion makes. An upper bound
    /// (measured against peak RSS in tests/it/memory.rs), as the memory
    /// budget admits pictures by it.
    pub fn decoded_bytes(&self) -> u64 {
        self.decoded_bytes
    }
}

/// Reads a picture's header: its format, size and cost, and every refusal
/// that needs no pixel (empty, unknown or unsupported format, a truncated
/// JPEG, over the size limits).
pub fn inspect(bytes: &[u8], limits: DecodeLimits) -> Result<Header, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let format = image::guess_format(bytes).map_err(|_| DecodeError::UnknownFormat)?;
    if !SUPPORTED_FORMATS.contains(&format) {
        return Err(DecodeError::UnsupportedFormat(
            format!("{format:?}").to_uppercase(),
        ));
    }
    let jpeg = (format == ImageFormat::Jpeg).then(|| jpeg_layout(bytes));
    if jpeg.is_some_and(|j| !j.complete) {
        // zune-jpeg fills a cut-off scan with grey and succeeds; a cut-off
        // upload must be refused, not classified half-grey.
        return Err(DecodeError::Corrupt(
            "the JPEG data is truncated (no end-of-image marker)".into(),
        ));
    }
    // The header alone: no pixel buffer exists yet, so a decompression bomb
    // is refused here for the price of reading a few bytes.
    let mut peek = ImageReader::with_format(Cursor::new(bytes), format);
    peek.no_limits();
    let mut decoder = peek.into_decoder().map_err(|e| map_error(e, limits))?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, limits)?;
    let pixels = u64::from(width) * u64::from(height);
    // libjpeg-turbo writes RGB straight into the one buffer kept (zune-jpeg,
    // for CMYK, converts as it goes); other formats decode in their native
    // colour type, then convert to RGB in a second buffer unless already
    // RGB, and WebP's decoder holds 4 bytes a pixel of its own besides. A
    // progressive JPEG also holds every coefficient until its last scan: 2
    // bytes per component and pixel. Measured in tests/it/memory.rs.
    let frame = jpeg.map(|j| j.frame.unwrap_or(JpegFrame::RGB));
    let color = decoder.color_type();
    let (native, converts) = match frame {
        Some(f) if f.components == 4 => (4, 0),
        Some(_) => (3, 0),
        None => (
            u64::from(color.bytes_per_pixel()),
            if color == image::ColorType::Rgb8 {
                0
            } else {
                3
            },
        ),
    };
    let own = if format == ImageFormat::WebP { 4 } else { 0 };
    let coefficients = match frame {
        Some(f) if f.progressive => 2 * u64::from(f.components.max(3)),
        _ => 0,
    };
    let rotates = decoder
        .orientation()
        .is_ok_and(|o| !matches!(o, image::metadata::Orientation::NoTransforms));
    let decoded_bytes =
        pixels * (native + converts + own + coefficients + if rotates { native } else { 0 });
    Ok(Header {
        format,
        width,
        height,
        decoded_bytes,
    })
}

/// Decodes `bytes` into an upright 8-bit RGB picture (grayscale, alpha, 16-bit,
/// palette and CMYK sources are converted; animations give their first frame).
pub fn decode_rgb(bytes: &[u8], limits: DecodeLimits) -> Result<RgbImage, DecodeError> {
    decode_inspected(bytes, &inspect(bytes, limits)?, limits)
}

/// [`decode_rgb`] of a picture whose header [`inspect`] has read.
pub fn decode_inspected(
    bytes: &[u8],
    header: &Header,
    limits: DecodeLimits,
) -> Result<RgbImage, DecodeError> {
    let &Header {
        format,
        width,
        height,
        ..
    } = header;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut io_limits = image::Limits::default();
    io_limits.max_image_width = Some(limits.max_side);
    io_limits.max_image_height = Some(limits.max_side);
    // Largest buffer a valid picture within the limits needs (16-bit RGBA), plus slack;
    // a second line of defence should a decoder's header lie about the size.
    io_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(io_limits);
    let mut decoder = reader.into_decoder().map_err(|e| map_error(e, limits))?;
    let orientation = decoder.orientation().ok();
    let exact = if format == ImageFormat::Jpeg {
        decode_jpeg_like_pillow(bytes, width, height)?
    } else {
        None
    };
    let mut picture = match exact {
        Some(rgb) => DynamicImage::ImageRgb8(rgb),
        None => DynamicImage::from_decoder(decoder).map_err(|e| map_error(e, limits))?,
    };
    if let Some(o) = orientation {
        picture.apply_orientation(o);
    }
    Ok(picture.into_rgb8())
}

/// Why a picture file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileDecodeError {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Reads and decodes a picture file; the error says what went wrong, for
/// tools that report unusable files and go on (predict, eval, finetune).
pub(crate) fn decode_file(
    path: &std::path::Path,
    limits: DecodeLimits,
) -> Result<RgbImage, FileDecodeError> {
    let bytes = std::fs::read(path)?;
    Ok(decode_rgb(&bytes, limits)?)
}

/// Decodes a YCbCr/grayscale/RGB JPEG with libjpeg-turbo's decoder (the
/// mozjpeg build), bit-exact with Pillow, which models are trained with;
/// `None` for CMYK/YCCK, left to `image`. libjpeg reports fatal errors by
/// unwinding, caught here so bad input never takes the process down. The
/// size libjpeg reads must be the one the picture was admitted with
/// (`width`×`height`, from catdog's own reading of the header) before
/// libjpeg allocates a pixel: a disagreement between the two parsers
/// allocates nothing outside the memory budget.
fn decode_jpeg_like_pillow(
    bytes: &[u8],
    width: u32,
    height: u32,
) -> Result<Option<RgbImage>, DecodeError> {
    let result = std::panic::catch_unwind(|| -> std::io::Result<Jpeg> {
        let d = mozjpeg::Decompress::new_mem(bytes)?;
        if matches!(
            d.color_space(),
            mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK
        ) {
            return Ok(Jpeg::LeftToImage);
        }
        let (w, h) = d.size();
        if (w as u32, h as u32) != (width, height) {
            return Ok(Jpeg::OtherSize(w, h));
        }
        let mut started = d.rgb()?;
        let (w, h) = (started.width(), started.height());
        let pixels = started.read_scanlines::<u8>()?;
        started.finish()?;
        Ok(Jpeg::Pixels(w, h, pixels))
    });
    match result {
        Ok(Ok(Jpeg::OtherSize(w, h))) => Err(DecodeError::Corrupt(format!(
            "JPEG is {w}×{h}, header said {width}×{height}"
        ))),
        Ok(Ok(Jpeg::Pixels(w, h, pixels))) => RgbImage::from_raw(w as u32, h as u32, pixels)
            .filter(|p| p.dimensions() == (width, height))
            .map(Some)
            .ok_or_else(|| DecodeError::Corrupt("JPEG scanlines are short".into())),
        Ok(Ok(Jpeg::LeftToImage)) => Ok(None),
        Ok(Err(e)) => Err(DecodeError::Corrupt(e.to_string())),
        Err(_) => Err(DecodeError::Corrupt("the JPEG data is invalid".into())),
    }
}

/// What libjpeg made of a JPEG.
enum Jpeg {
    /// CMYK or YCCK: decoded by `image` instead.
    LeftToImage,
    /// Another size than the admitted one: nothing was decoded.
    OtherSize(usize, usize),
    Pixels(usize, usize, Vec<u8>),
}

/// What the marker segments of a JPEG say, walked once from SOI to the
/// first SOS (so an EXIF thumbnail's own markers are skipped over): its
/// frame header, and whether an end-of-image marker follows the first scan
/// (inside entropy-coded data `FF` is always followed by `00` or a restart
/// marker, so `FF D9` there is the real end).
#[derive(Debug, Clone, Copy)]
struct JpegLayout {
    frame: Option<JpegFrame>,
    complete: bool,
}

fn jpeg_layout(bytes: &[u8]) -> JpegLayout {
    let mut layout = JpegLayout {
        frame: None,
        complete: false,
    };
    let mut i = 2; // after SOI
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return layout;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC): the frame
        // header, its component count (3: YCbCr or RGB, 1: grey, 4:
        // CMYK/YCCK); SOF2, 6, 10 and 14 are progressive.
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            if let Some(&components) = bytes.get(i + 9) {
                layout.frame = Some(JpegFrame {
                    components,
                    progressive: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
                });
            }
        }
        if marker == 0xDA {
            let scan = &bytes[(i + 2 + len).min(bytes.len())..];
            layout.complete = scan.windows(2).any(|w| w == [0xFF, 0xD9]);
            return layout;
        }
        i += 2 + len;
    }
    layout
}

#[derive(Debug, Clone, Copy)]
struct JpegFrame {
    components: u8,
    progressive: bool,
}

impl JpegFrame {
    /// What a frame header that cannot be read is taken for (the decoder
    /// refuses the picture anyway).
    const RGB: Self = Self {
        components: 3,
        progressive: false,
    };
}

fn check_size(width: u32, height: u32, limits: DecodeLimits) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::ZeroSized { width, height });
    }
    if width > limits.max_side
        || height > limits.max_side
        || u64::from(width) * u64::from(height) > limits.max_pixels
    {
        return Err(DecodeError::TooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
            max_side: limits.max_side,
        });
    }
    Ok(())
}

fn map_error(e: ImageError, limits: DecodeLimits) -> DecodeError {
    match e {
        ImageError::Limits(_) => DecodeError::TooLarge {
            width: 0,
            height: 0,
            max_pixels: limits.max_pixels,
            max_side: limits.max_side,
        },
        ImageError::Unsupported(u) => DecodeError::Corrupt(u.to_string()),
        other => DecodeError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb};

    fn png(img: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn corrupt_jpeg_scan_is_an_error_not_a_crash() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(64, 48, |x, y| {
            Rgb([x as u8 * 4, y as u8 * 5, 7])
        }));
        let mut jpg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpg), ImageFormat::Jpeg)
            .unwrap();
        // Damage headers and data in many places; every outcome must be a value, never an abort.
        for i in (2..jpg.len() - 2).step_by(7) {
            let mut bad = jpg.clone();
            bad[i] ^= 0x5A;
            let _ = decode_rgb(&bad, DecodeLimits::default());
        }
    }

    #[test]
    fn truncated_jpeg_is_refused_complete_one_is_not() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(64, 48, |x, y| {
            Rgb([x as u8 * 4, y as u8 * 5, 7])
        }));
        let mut jpg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpg), ImageFormat::Jpeg)
            .unwrap();
        assert!(jpeg_layout(&jpg).complete);
        assert_eq!(
            decode_rgb(&jpg, DecodeLimits::default())
                .unwrap()
                .dimensions(),
            (64, 48)
        );
        for cut in [jpg.len() - 2, jpg.len() / 2, 30] {
            let err = decode_rgb(&jpg[..cut], DecodeLimits::default()).unwrap_err();
            assert!(
                matches!(err, DecodeError::Corrupt(_)),
                "cut at {cut}: {err:?}"
            );
        }
        // trailing bytes after EOI are common (phones append data) and fine
        let mut trailing = jpg.clone();
        trailing.extend_from_slice(b"vendor trailer");
        assert!(decode_rgb(&trailing, DecodeLimits::default()).is_ok());
    }

    #[test]
    fn grayscale_and_alpha_become_rgb() {
        let gray = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(3, 2, image::Luma([77])));
        let rgb = decode_rgb(&png(&gray), DecodeLimits::default()).unwrap();
        assert_eq!(rgb.dimensions(), (3, 2));
        assert_eq!(rgb.get_pixel(1, 1), &Rgb([77, 77, 77]));
        let rgba = DynamicImage::ImageRgba16(image::ImageBuffer::from_pixel(
            2,
            2,
            image::Rgba([65535u16, 0, 32896, 0]),
        ));
        let rgb = decode_rgb(&png(&rgba), DecodeLimits::default()).unwrap();
        assert_eq!(rgb.get_pixel(0, 0), &Rgb([255, 0, 128]));
    }

    #[test]
    fn refuses_garbage_empty_and_unsupported() {
        assert!(matches!(
            decode_rgb(b"", DecodeLimits::default()),
            Err(DecodeError::Empty)
        ));
        assert!(matches!(
            decode_rgb(b"hello, this is text", DecodeLimits::default()),
            Err(DecodeError::UnknownFormat)
        ));
        // TIFF magic: recognised, not supported
        assert!(matches!(
            decode_rgb(b"II*\0\x08\0\0\0rest", DecodeLimits::default()),
            Err(DecodeError::UnsupportedFormat(_))
        ));
        let mut truncated = png(&DynamicImage::ImageRgb8(RgbImage::from_pixel(
            64,
            64,
            Rgb([1, 2, 3]),
        )));
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(
            decode_rgb(&truncated, DecodeLimits::default()),
            Err(DecodeError::Corrupt(_))
        ));
    }

    /// Standard CRC-32 (PNG chunks), so the forged header below is otherwise valid.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A tiny PNG whose header declares `w`×`h`.
    pub(crate) fn forged_png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&[0u8; 3], 1, 1, image::ExtendedColorType::Rgb8)
            .unwrap();
        out[16..20].copy_from_slice(&w.to_be_bytes());
        out[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32(&out[12..29]);
        out[29..33].copy_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        let err = decode_rgb(&forged_png(50_000, 50_000), DecodeLimits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooLarge {
                    width: 50_000,
                    height: 50_000,
                    ..
                }
            ),
            "{err:?}"
        );
        // Within the side limit but over the pixel budget.
        let limits = DecodeLimits {
            max_pixels: 100,
            max_side: 1000,
        };
        let err = decode_rgb(&forged_png(20, 20), limits).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooLarge {
                    width: 20,
                    height: 20,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
