//! Reading and writing PNG and TIFF images.
//!
//! Images are read into an [`Image`]: an `[height, width, channels]` array of `f32`
//! holding the samples on their original scale (0..=255 for 8-bit files,
//! 0..=65535 for 16-bit files, raw values for float files), with 1 channel (gray)
//! or 3 (RGB). Alpha channels are dropped. PNG goes through the `image` crate,
//! TIFF through the `tiff` crate (which also reads float and 16-bit files).
//!
//! The writers are atomic (see [`crate::atomic`]) and pick nothing up from the
//! environment: the format comes from the file extension (`.png`, `.tif`, `.tiff`,
//! case-insensitive).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder as _, ImageError};
use ndarray::{Array2, Array3, ArrayView2};
use tiff::decoder::DecodingResult;
use tiff::encoder::{TiffEncoder, TiffKind, TiffKindBig, TiffKindStandard, colortype};

use crate::atomic::write_atomic_seekable;
use crate::error::{DataError, one_line};

/// The largest image (in pixels) this crate reads or writes: 2^31.
pub const MAX_PIXELS: u64 = 1 << 31;

/// The sample type an image was stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SampleDepth {
    /// 8-bit unsigned samples (0..=255).
    U8,
    /// 16-bit unsigned samples (0..=65535).
    U16,
    /// 32-bit float samples (any value; 64-bit float files are read as this too).
    F32,
}

impl SampleDepth {
    /// The largest sample value of an integer depth (255 or 65535); `None` for `F32`.
    pub fn max_value(self) -> Option<f32> {
        match self {
            SampleDepth::U8 => Some(255.0),
            SampleDepth::U16 => Some(65535.0),
            SampleDepth::F32 => None,
        }
    }
}

/// A decoded image: samples on their original scale, `[height, width, channels]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Samples, `[height, width, channels]`, with 1 (gray) or 3 (RGB) channels.
    pub data: Array3<f32>,
    /// The sample type of the file the image came from (or will be written as).
    pub depth: SampleDepth,
}

impl Image {
    /// A one-channel 8-bit image from a `[height, width]` array.
    pub fn from_gray_u8(gray: ArrayView2<'_, u8>) -> Self {
        Image { data: gray.mapv(f32::from).insert_axis(ndarray::Axis(2)), depth: SampleDepth::U8 }
    }

    /// A one-channel image from a `[height, width]` array of `f32` samples.
    pub fn from_gray_f32(gray: Array2<f32>, depth: SampleDepth) -> Self {
        Image { data: gray.insert_axis(ndarray::Axis(2)), depth }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.data.dim().1
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.data.dim().0
    }

    /// Number of channels (1 or 3 for images read from files).
    pub fn channels(&self) -> usize {
        self.data.dim().2
    }

    /// The image as one gray channel: the first channel of a gray image, the
    /// Rec. 601 luma (0.299 R + 0.587 G + 0.114 B) of an RGB image, the mean of
    /// the channels otherwise.
    pub fn to_gray(&self) -> Array2<f32> {
        match self.channels() {
            1 => self.data.index_axis(ndarray::Axis(2), 0).to_owned(),
            3 => self.data.map_axis(ndarray::Axis(2), |p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]),
            _ => self.data.mean_axis(ndarray::Axis(2)).unwrap_or_else(|| Array2::zeros((self.height(), self.width()))),
        }
    }

    /// The samples scaled to 0..=1 by the depth's maximum (255 or 65535); float
    /// images are returned unchanged.
    pub fn to_unit_range(&self) -> Array3<f32> {
        match self.depth.max_value() {
            Some(max) => self.data.mapv(|v| v / max),
            None => self.data.clone(),
        }
    }
}

/// The image file formats this crate reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// PNG (`.png`).
    Png,
    /// TIFF (`.tif`, `.tiff`).
    Tiff,
}

impl ImageFormat {
    /// The format named by `path`'s extension (case-insensitive), or
    /// [`DataError::UnsupportedFormat`].
    pub fn from_path(path: &Path) -> Result<Self, DataError> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => Ok(ImageFormat::Png),
            Some("tif" | "tiff") => Ok(ImageFormat::Tiff),
            _ => Err(DataError::UnsupportedFormat { path: path.to_path_buf(), expected: ".png, .tif or .tiff" }),
        }
    }

    /// True when `path` has one of the extensions this crate handles.
    pub fn is_image_path(path: &Path) -> bool {
        Self::from_path(path).is_ok()
    }
}

/// Reads a PNG or TIFF image (see the module documentation for what is kept).
///
/// The format is recognised from the file's first bytes, so a TIFF named `.png`
/// still reads; a file that is neither is reported as corrupt when its extension
/// is `.png`/`.tif`/`.tiff` and as unsupported otherwise.
pub fn read_image(path: impl AsRef<Path>) -> Result<Image, DataError> {
    let path = path.as_ref();
    let (format, reader) = open_image(path)?;
    match format {
        ImageFormat::Png => read_png(path, reader),
        ImageFormat::Tiff => read_tiff(path, reader),
    }
}

/// Reads only an image's header and returns its `(width, height)`.
pub fn image_dimensions(path: impl AsRef<Path>) -> Result<(u32, u32), DataError> {
    let path = path.as_ref();
    let (format, reader) = open_image(path)?;
    let (w, h) = match format {
        ImageFormat::Png => {
            let decoder = image::codecs::png::PngDecoder::with_limits(reader, image::Limits::no_limits())
                .map_err(|e| image_error(path, e))?;
            decoder.dimensions()
        }
        ImageFormat::Tiff => {
            let mut decoder = tiff::decoder::Decoder::new(reader).map_err(|e| tiff_error(path, e))?;
            decoder.dimensions().map_err(|e| tiff_error(path, e))?
        }
    };
    check_dimensions(path, u64::from(w), u64::from(h))?;
    Ok((w, h))
}

/// Opens `path` and sniffs its format from the magic bytes.
fn open_image(path: &Path) -> Result<(ImageFormat, BufReader<File>), DataError> {
    let file = File::open(path).map_err(|e| DataError::read(path, e))?;
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 8];
    let n = read_up_to(&mut reader, &mut magic).map_err(|e| DataError::read(path, e))?;
    reader.seek(io::SeekFrom::Start(0)).map_err(|e| DataError::read(path, e))?;
    let magic = &magic[..n];
    let format = if magic.starts_with(b"\x89PNG\r\n\x1a\n") {
        ImageFormat::Png
    } else if magic.starts_with(b"II*\0")
        || magic.starts_with(b"MM\0*")
        || magic.starts_with(b"II+\0")
        || magic.starts_with(b"MM\0+")
    {
        ImageFormat::Tiff
    } else if ImageFormat::is_image_path(path) {
        let reason =
            if n == 0 { "file is empty".to_string() } else { "not a PNG or TIFF file (bad signature)".to_string() };
        return Err(DataError::CorruptImage { path: path.to_path_buf(), reason });
    } else {
        return Err(DataError::UnsupportedFormat { path: path.to_path_buf(), expected: ".png, .tif or .tiff" });
    };
    Ok((format, reader))
}

/// Reads until `buf` is full or the input ends.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Rejects zero-sized images and images of more than [`MAX_PIXELS`] pixels.
fn check_dimensions(path: &Path, width: u64, height: u64) -> Result<(), DataError> {
    let reason = if width == 0 || height == 0 {
        "zero-sized image"
    } else if width.saturating_mul(height) > MAX_PIXELS {
        "more than 2^31 pixels"
    } else {
        return Ok(());
    };
    Err(DataError::BadDimensions { path: path.to_path_buf(), width, height, reason })
}

/// Maps an `image` crate error to a [`DataError`] for `path`.
fn image_error(path: &Path, e: ImageError) -> DataError {
    match e {
        ImageError::Unsupported(u) => DataError::UnsupportedImage { path: path.to_path_buf(), reason: one_line(u) },
        ImageError::IoError(io) if io.kind() != io::ErrorKind::UnexpectedEof => DataError::read(path, io),
        ImageError::IoError(_) => {
            DataError::CorruptImage { path: path.to_path_buf(), reason: "file is truncated".into() }
        }
        other => DataError::CorruptImage { path: path.to_path_buf(), reason: one_line(other) },
    }
}

/// Maps a `tiff` crate error to a [`DataError`] for `path`.
fn tiff_error(path: &Path, e: tiff::TiffError) -> DataError {
    match e {
        tiff::TiffError::UnsupportedError(u) => {
            DataError::UnsupportedImage { path: path.to_path_buf(), reason: one_line(u) }
        }
        tiff::TiffError::IoError(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            DataError::CorruptImage { path: path.to_path_buf(), reason: "file is truncated".into() }
        }
        tiff::TiffError::IoError(io) => DataError::read(path, io),
        other => DataError::CorruptImage { path: path.to_path_buf(), reason: one_line(other) },
    }
}

/// Copies interleaved samples into a `[height, width, out_channels]` array, keeping
/// the first `out_channels` of every `in_channels` samples (which drops alpha).
fn interleaved_to_array<T: Copy>(
    samples: &[T],
    width: usize,
    height: usize,
    in_channels: usize,
    out_channels: usize,
    convert: impl Fn(T) -> f32,
) -> Array3<f32> {
    let mut data = Vec::with_capacity(width * height * out_channels);
    for px in samples.chunks_exact(in_channels).take(width * height) {
        data.extend(px[..out_channels].iter().map(|&v| convert(v)));
    }
    // The callers check `samples.len()`, so the shape always matches.
    Array3::from_shape_vec((height, width, out_channels), data)
        .unwrap_or_else(|_| Array3::zeros((height, width, out_channels)))
}

/// Checks the PNG chunks before the first `IDAT` for what the `png` crate does not reject
/// itself: a `PLTE` chunk whose length is not a multiple of 3 (an error by the PNG
/// specification) makes `png` 0.18 panic while expanding palette pixels. Leaves `reader` at
/// the start of the file.
fn check_png_chunks(path: &Path, reader: &mut BufReader<File>) -> Result<(), DataError> {
    let io_err = |e| DataError::read(path, e);
    reader.seek(io::SeekFrom::Start(8)).map_err(io_err)?;
    let mut head = [0u8; 8];
    while read_up_to(reader, &mut head).map_err(io_err)? == head.len() {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        match &head[4..] {
            b"PLTE" if len % 3 != 0 => {
                return Err(DataError::CorruptImage {
                    path: path.to_path_buf(),
                    reason: format!("PLTE chunk of {len} bytes (not a multiple of 3)"),
                });
            }
            b"IDAT" | b"IEND" => break,
            _ => reader.seek_relative(i64::from(len) + 4).map_err(io_err)?,
        }
    }
    reader.seek(io::SeekFrom::Start(0)).map_err(io_err)?;
    Ok(())
}

/// How many decoded bytes a PNG file byte can become at most: deflate expands at most ~1032
/// times, and decoding expands 1-bit palette samples to 4-byte RGBA at most (×32). A PNG whose
/// declared pixels need more than that is truncated or corrupt: refused before the decoder
/// allocates the whole (possibly many-GiB) buffer.
const MAX_PNG_EXPANSION: u64 = 1100 * 32;

fn check_png_size_plausible(path: &Path, w: u32, h: u32, pixel_bytes: u64) -> Result<(), DataError> {
    let file_len = std::fs::metadata(path).map_err(|e| DataError::read(path, e))?.len();
    if pixel_bytes > file_len.saturating_mul(MAX_PNG_EXPANSION) {
        return Err(DataError::CorruptImage {
            path: path.to_path_buf(),
            reason: format!(
                "declares {w}x{h} pixels ({} MiB) but the file holds only {file_len} bytes: truncated",
                pixel_bytes >> 20
            ),
        });
    }
    Ok(())
}

/// Samples per pixel stored in a TIFF of this colour type, and the channels bioseg keeps
/// (alpha dropped); `None` for colour types bioseg does not read.
pub(crate) fn tiff_channels(color: tiff::ColorType) -> Option<(usize, usize)> {
    match color {
        tiff::ColorType::Gray(_) => Some((1, 1)),
        tiff::ColorType::GrayA(_) => Some((2, 1)),
        tiff::ColorType::RGB(_) => Some((3, 3)),
        tiff::ColorType::RGBA(_) => Some((4, 3)),
        _ => None,
    }
}

/// Decodes a PNG through the `image` crate.
fn read_png(path: &Path, mut reader: BufReader<File>) -> Result<Image, DataError> {
    check_png_chunks(path, &mut reader)?;
    let decoder = image::codecs::png::PngDecoder::with_limits(reader, image::Limits::no_limits())
        .map_err(|e| image_error(path, e))?;
    let (w, h) = decoder.dimensions();
    check_dimensions(path, u64::from(w), u64::from(h))?;
    check_png_size_plausible(path, w, h, image::ImageDecoder::total_bytes(&decoder))?;
    let img = DynamicImage::from_decoder(decoder).map_err(|e| image_error(path, e))?;
    let (w, h) = (w as usize, h as usize);
    let image = match img {
        DynamicImage::ImageLuma8(b) => {
            Image { data: interleaved_to_array(b.as_raw(), w, h, 1, 1, f32::from), depth: SampleDepth::U8 }
        }
        DynamicImage::ImageLumaA8(b) => {
            Image { data: interleaved_to_array(b.as_raw(), w, h, 2, 1, f32::from), depth: SampleDepth::U8 }
        }
        DynamicImage::ImageRgb8(b) => {
            Image { data: interleaved_to_array(b.as_raw(), w, h, 3, 3, f32::from), depth: SampleDepth::U8 }
        }
        DynamicImage::ImageRgba8(b) => {
            Image { data: interleaved_to_array(b.as_raw(), w, h, 4, 3, f32::from), depth: SampleDepth::U8 }
        }
        DynamicImage::ImageLuma16(b) => {
            Image { data: interleaved_to_array(b.as_raw(), w, h, 1, 1, f32::from), depth: SampleDepth::U16 }
        }
        DynamicImage::ImageLumaA16(b) => {
            Image { data: interleaved_to_array(b.as_raw(), w, h, 2, 1, f32::from), depth: SampleDepth::U16 }
        }
        DynamicImage::ImageRgb16(b) => {
            Image { data: interleaved_to_array(b.as_raw(), w, h, 3, 3, f32::from), depth: SampleDepth::U16 }
        }
        DynamicImage::ImageRgba16(b) => {
            Image { data: interleaved_to_array(b.as_raw(), w, h, 4, 3, f32::from), depth: SampleDepth::U16 }
        }
        DynamicImage::ImageRgb32F(b) => {
            Image { data: interleaved_to_array(b.as_raw(), w, h, 3, 3, |v| v), depth: SampleDepth::F32 }
        }
        DynamicImage::ImageRgba32F(b) => {
            Image { data: interleaved_to_array(b.as_raw(), w, h, 4, 3, |v| v), depth: SampleDepth::F32 }
        }
        other => {
            return Err(DataError::UnsupportedImage {
                path: path.to_path_buf(),
                reason: format!("pixel type {:?}", other.color()),
            });
        }
    };
    Ok(image)
}

/// Decodes the first page of a TIFF through the `tiff` crate.
fn read_tiff(path: &Path, reader: BufReader<File>) -> Result<Image, DataError> {
    let mut limits = tiff::decoder::Limits::default();
    limits.decoding_buffer_size = usize::MAX;
    limits.intermediate_buffer_size = usize::MAX;
    let mut decoder = tiff::decoder::Decoder::new(reader).map_err(|e| tiff_error(path, e))?.with_limits(limits);
    let (w, h) = decoder.dimensions().map_err(|e| tiff_error(path, e))?;
    check_dimensions(path, u64::from(w), u64::from(h))?;
    let colortype = decoder.colortype().map_err(|e| tiff_error(path, e))?;
    let Some((in_channels, out_channels)) = tiff_channels(colortype) else {
        return Err(DataError::UnsupportedImage {
            path: path.to_path_buf(),
            reason: format!("TIFF color type {colortype:?} (expected gray, gray+alpha, RGB or RGBA)"),
        });
    };
    let bits = colortype.bit_depth();
    if ![8, 16, 32, 64].contains(&bits) {
        return Err(DataError::UnsupportedImage {
            path: path.to_path_buf(),
            reason: format!("{bits}-bit TIFF samples (expected 8, 16, 32-bit float or 64-bit float)"),
        });
    }
    let decoded = decoder.read_image().map_err(|e| tiff_error(path, e))?;
    let (w, h) = (w as usize, h as usize);
    let expected = w * h * in_channels;
    let check_len = |len: usize| -> Result<(), DataError> {
        if len < expected {
            Err(DataError::UnsupportedImage {
                path: path.to_path_buf(),
                reason: format!("decoded {len} samples but {w}x{h}x{in_channels} needs {expected} (planar TIFF?)"),
            })
        } else {
            Ok(())
        }
    };
    let image = match decoded {
        DecodingResult::U8(v) => {
            check_len(v.len())?;
            Image { data: interleaved_to_array(&v, w, h, in_channels, out_channels, f32::from), depth: SampleDepth::U8 }
        }
        DecodingResult::U16(v) => {
            check_len(v.len())?;
            Image {
                data: interleaved_to_array(&v, w, h, in_channels, out_channels, f32::from),
                depth: SampleDepth::U16,
            }
        }
        DecodingResult::F32(v) => {
            check_len(v.len())?;
            Image { data: interleaved_to_array(&v, w, h, in_channels, out_channels, |x| x), depth: SampleDepth::F32 }
        }
        DecodingResult::F64(v) => {
            check_len(v.len())?;
            Image {
                data: interleaved_to_array(&v, w, h, in_channels, out_channels, |x| x as f32),
                depth: SampleDepth::F32,
            }
        }
        other => {
            return Err(DataError::UnsupportedImage {
                path: path.to_path_buf(),
                reason: format!("TIFF sample format {} (expected unsigned 8/16-bit or float)", sample_kind(&other)),
            });
        }
    };
    Ok(image)
}

/// A short name for a decoded TIFF buffer's sample type.
fn sample_kind(r: &DecodingResult) -> &'static str {
    match r {
        DecodingResult::U8(_) => "u8",
        DecodingResult::U16(_) => "u16",
        DecodingResult::U32(_) => "u32",
        DecodingResult::U64(_) => "u64",
        DecodingResult::F16(_) => "f16",
        DecodingResult::F32(_) => "f32",
        DecodingResult::F64(_) => "f64",
        DecodingResult::I8(_) => "i8",
        DecodingResult::I16(_) => "i16",
        DecodingResult::I32(_) => "i32",
        DecodingResult::I64(_) => "i64",
    }
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// Interleaved samples handed to the writers.
#[derive(Clone, Copy)]
enum Samples<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    F32(&'a [f32]),
}

impl Samples<'_> {
    fn len(&self) -> usize {
        match self {
            Samples::U8(s) => s.len(),
            Samples::U16(s) => s.len(),
            Samples::F32(s) => s.len(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Samples::U8(_) => "8-bit",
            Samples::U16(_) => "16-bit",
            Samples::F32(_) => "float32",
        }
    }
}

/// Writes `samples` (`channels` = 1 or 3, interleaved) to `path` in `format`.
fn write_samples(
    path: &Path,
    format: ImageFormat,
    width: u32,
    height: u32,
    channels: usize,
    samples: Samples<'_>,
) -> Result<(), DataError> {
    check_dimensions(path, u64::from(width), u64::from(height))?;
    let expected = width as usize * height as usize * channels;
    if samples.len() != expected {
        return Err(DataError::BadBuffer {
            path: path.to_path_buf(),
            reason: format!("buffer has {} samples but {width}x{height}x{channels} needs {expected}", samples.len()),
        });
    }
    match format {
        ImageFormat::Png => {
            let (bytes, color): (Vec<u8>, ExtendedColorType) = match (samples, channels) {
                (Samples::U8(s), 1) => (s.to_vec(), ExtendedColorType::L8),
                (Samples::U8(s), 3) => (s.to_vec(), ExtendedColorType::Rgb8),
                (Samples::U16(s), 1) => (ne_bytes(s), ExtendedColorType::L16),
                (Samples::U16(s), 3) => (ne_bytes(s), ExtendedColorType::Rgb16),
                (s, c) => {
                    return Err(DataError::BadBuffer {
                        path: path.to_path_buf(),
                        reason: format!("PNG cannot store {} samples with {c} channels (use .tif)", s.kind()),
                    });
                }
            };
            write_atomic_seekable(path, |w| {
                image::codecs::png::PngEncoder::new(w)
                    .write_image(&bytes, width, height, color)
                    .map_err(io::Error::other)
            })
        }
        ImageFormat::Tiff => {
            let bytes_needed = expected as u64 * 4;
            if bytes_needed > 3 << 30 {
                write_tiff::<TiffKindBig>(path, width, height, channels, samples)
            } else {
                write_tiff::<TiffKindStandard>(path, width, height, channels, samples)
            }
        }
    }
}

/// Native-endian bytes of 16-bit samples (what the PNG encoder expects).
fn ne_bytes(s: &[u16]) -> Vec<u8> {
    s.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// Writes an uncompressed TIFF (classic or BigTIFF depending on `K`).
fn write_tiff<K: TiffKind>(
    path: &Path,
    width: u32,
    height: u32,
    channels: usize,
    samples: Samples<'_>,
) -> Result<(), DataError> {
    fn tiff_io(e: tiff::TiffError) -> io::Error {
        io::Error::other(e.to_string())
    }
    write_atomic_seekable(path, |w| {
        let mut enc = TiffEncoder::<_, K>::new_generic(w).map_err(tiff_io)?;
        match (samples, channels) {
            (Samples::U8(s), 1) => enc.write_image::<colortype::Gray8>(width, height, s),
            (Samples::U8(s), _) => enc.write_image::<colortype::RGB8>(width, height, s),
            (Samples::U16(s), 1) => enc.write_image::<colortype::Gray16>(width, height, s),
            (Samples::U16(s), _) => enc.write_image::<colortype::RGB16>(width, height, s),
            (Samples::F32(s), 1) => enc.write_image::<colortype::Gray32Float>(width, height, s),
            (Samples::F32(s), _) => enc.write_image::<colortype::RGB32Float>(width, height, s),
        }
        .map_err(tiff_io)
    })
}

/// Checks that `path`'s extension names `format`.
fn require_format(path: &Path, format: ImageFormat) -> Result<(), DataError> {
    match ImageFormat::from_path(path) {
        Ok(f) if f == format => Ok(()),
        _ => Err(DataError::UnsupportedFormat {
            path: path.to_path_buf(),
            expected: match format {
                ImageFormat::Png => ".png",
                ImageFormat::Tiff => ".tif or .tiff",
            },
        }),
    }
}

/// Writes an 8-bit gray PNG (row-major `width * height` samples). `path` must end in `.png`.
pub fn write_gray_u8_png(path: impl AsRef<Path>, width: u32, height: u32, data: &[u8]) -> Result<(), DataError> {
    let path = path.as_ref();
    require_format(path, ImageFormat::Png)?;
    write_samples(path, ImageFormat::Png, width, height, 1, Samples::U8(data))
}

/// Writes a 16-bit gray PNG (row-major `width * height` samples). `path` must end in `.png`.
pub fn write_gray_u16_png(path: impl AsRef<Path>, width: u32, height: u32, data: &[u16]) -> Result<(), DataError> {
    let path = path.as_ref();
    require_format(path, ImageFormat::Png)?;
    write_samples(path, ImageFormat::Png, width, height, 1, Samples::U16(data))
}

/// Writes an 8-bit RGB PNG (row-major, interleaved `width * height * 3` samples).
/// `path` must end in `.png`.
pub fn write_rgb_u8_png(path: impl AsRef<Path>, width: u32, height: u32, data: &[u8]) -> Result<(), DataError> {
    let path = path.as_ref();
    require_format(path, ImageFormat::Png)?;
    write_samples(path, ImageFormat::Png, width, height, 3, Samples::U8(data))
}

/// Writes a 32-bit float gray TIFF (row-major `width * height` samples).
/// `path` must end in `.tif` or `.tiff`.
pub fn write_gray_f32_tiff(path: impl AsRef<Path>, width: u32, height: u32, data: &[f32]) -> Result<(), DataError> {
    let path = path.as_ref();
    require_format(path, ImageFormat::Tiff)?;
    write_samples(path, ImageFormat::Tiff, width, height, 1, Samples::F32(data))
}

/// Writes an 8-bit gray TIFF (row-major `width * height` samples).
/// `path` must end in `.tif` or `.tiff`.
pub fn write_gray_u8_tiff(path: impl AsRef<Path>, width: u32, height: u32, data: &[u8]) -> Result<(), DataError> {
    let path = path.as_ref();
    require_format(path, ImageFormat::Tiff)?;
    write_samples(path, ImageFormat::Tiff, width, height, 1, Samples::U8(data))
}

/// Writes an 8-bit gray image as PNG or TIFF, chosen by `path`'s extension.
pub fn write_gray_u8(path: impl AsRef<Path>, width: u32, height: u32, data: &[u8]) -> Result<(), DataError> {
    let path = path.as_ref();
    let format = ImageFormat::from_path(path)?;
    write_samples(path, format, width, height, 1, Samples::U8(data))
}

/// Writes a 16-bit gray image as PNG or TIFF, chosen by `path`'s extension.
pub fn write_gray_u16(path: impl AsRef<Path>, width: u32, height: u32, data: &[u16]) -> Result<(), DataError> {
    let path = path.as_ref();
    let format = ImageFormat::from_path(path)?;
    write_samples(path, format, width, height, 1, Samples::U16(data))
}

/// Writes an [`Image`] with 1 or 3 channels at its [`SampleDepth`], format chosen by
/// `path`'s extension. Integer depths round and clamp the samples to their range;
/// `F32` images can only be written as TIFF.
pub fn write_image(path: impl AsRef<Path>, image: &Image) -> Result<(), DataError> {
    let path = path.as_ref();
    let format = ImageFormat::from_path(path)?;
    let channels = image.channels();
    if channels != 1 && channels != 3 {
        return Err(DataError::BadBuffer {
            path: path.to_path_buf(),
            reason: format!("image has {channels} channels (expected 1 or 3)"),
        });
    }
    let (h, w) = (image.height(), image.width());
    let (Ok(w32), Ok(h32)) = (u32::try_from(w), u32::try_from(h)) else {
        return Err(DataError::BadDimensions {
            path: path.to_path_buf(),
            width: w as u64,
            height: h as u64,
            reason: "more than 2^31 pixels",
        });
    };
    let flat = image.data.iter().copied();
    match image.depth {
        SampleDepth::U8 => {
            let v: Vec<u8> = flat.map(|x| x.round().clamp(0.0, 255.0) as u8).collect();
            write_samples(path, format, w32, h32, channels, Samples::U8(&v))
        }
        SampleDepth::U16 => {
            let v: Vec<u16> = flat.map(|x| x.round().clamp(0.0, 65535.0) as u16).collect();
            write_samples(path, format, w32, h32, channels, Samples::U16(&v))
        }
        SampleDepth::F32 => {
            if format == ImageFormat::Png {
                return Err(DataError::BadBuffer {
                    path: path.to_path_buf(),
                    reason: "PNG cannot store float32 samples (use .tif)".into(),
                });
            }
            let v: Vec<f32> = flat.collect();
            write_samples(path, format, w32, h32, channels, Samples::F32(&v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn gray_u8_png_round_trip() {
        let d = tmp();
        let p = d.path().join("g.png");
        let data: Vec<u8> = (0..12).map(|i| (i * 20) as u8).collect();
        write_gray_u8_png(&p, 4, 3, &data).unwrap();
        let img = read_image(&p).unwrap();
        assert_eq!(img.depth, SampleDepth::U8);
        assert_eq!(img.data.dim(), (3, 4, 1));
        assert_eq!(img.data[[1, 2, 0]], 120.0);
        assert_eq!(image_dimensions(&p).unwrap(), (4, 3));
    }

    #[test]
    fn gray_u16_png_keeps_scale() {
        let d = tmp();
        let p = d.path().join("g16.png");
        let data = [0u16, 1000, 40000, 65535];
        write_gray_u16_png(&p, 2, 2, &data).unwrap();
        let img = read_image(&p).unwrap();
        assert_eq!(img.depth, SampleDepth::U16);
        assert_eq!(img.data.iter().copied().collect::<Vec<_>>(), [0.0, 1000.0, 40000.0, 65535.0]);
    }

    #[test]
    fn rgb_png_round_trip() {
        let d = tmp();
        let p = d.path().join("c.png");
        let data = [255u8, 0, 0, 0, 255, 0];
        write_rgb_u8_png(&p, 2, 1, &data).unwrap();
        let img = read_image(&p).unwrap();
        assert_eq!(img.data.dim(), (1, 2, 3));
        assert_eq!(img.data[[0, 1, 1]], 255.0);
        let gray = img.to_gray();
        assert!((gray[[0, 0]] - 0.299 * 255.0).abs() < 1e-3);
    }

    #[test]
    fn rgba_and_gray_alpha_drop_alpha() {
        let d = tmp();
        let p = d.path().join("a.png");
        let buf = image::RgbaImage::from_raw(1, 1, vec![10, 20, 30, 40]).unwrap();
        buf.save(&p).unwrap();
        let img = read_image(&p).unwrap();
        assert_eq!(img.data.iter().copied().collect::<Vec<_>>(), [10.0, 20.0, 30.0]);
        let p = d.path().join("la.png");
        let buf = image::GrayAlphaImage::from_raw(1, 1, vec![7, 0]).unwrap();
        buf.save(&p).unwrap();
        let img = read_image(&p).unwrap();
        assert_eq!(img.data.dim(), (1, 1, 1));
        assert_eq!(img.data[[0, 0, 0]], 7.0);
    }

    #[test]
    fn float_and_u8_tiff_round_trip() {
        let d = tmp();
        let p = d.path().join("f.tif");
        let data = [-1.5f32, 0.0, 3.25, 1e6, f32::MIN_POSITIVE, 42.0];
        write_gray_f32_tiff(&p, 3, 2, &data).unwrap();
        let img = read_image(&p).unwrap();
        assert_eq!(img.depth, SampleDepth::F32);
        assert_eq!(img.data.dim(), (2, 3, 1));
        assert_eq!(img.data.iter().copied().collect::<Vec<_>>(), data);

        let p = d.path().join("u.tiff");
        write_gray_u8_tiff(&p, 3, 2, &[1, 2, 3, 4, 5, 255]).unwrap();
        let img = read_image(&p).unwrap();
        assert_eq!(img.depth, SampleDepth::U8);
        assert_eq!(img.data[[1, 2, 0]], 255.0);
        assert_eq!(image_dimensions(&p).unwrap(), (3, 2));
    }

    #[test]
    fn u16_tiff_and_rgb_tiff() {
        let d = tmp();
        let p = d.path().join("u16.tif");
        write_gray_u16(&p, 2, 1, &[3, 60000]).unwrap();
        let img = read_image(&p).unwrap();
        assert_eq!(img.depth, SampleDepth::U16);
        assert_eq!(img.data[[0, 1, 0]], 60000.0);

        let rgb = Image { data: array![[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]], depth: SampleDepth::U8 };
        let p = d.path().join("rgb.tif");
        write_image(&p, &rgb).unwrap();
        assert_eq!(read_image(&p).unwrap(), rgb);
    }

    #[test]
    fn write_image_round_trips_every_depth() {
        let d = tmp();
        let img = Image::from_gray_f32(array![[0.5f32, -2.0], [7.0, 1e-3]], SampleDepth::F32);
        let p = d.path().join("x.tiff");
        write_image(&p, &img).unwrap();
        assert_eq!(read_image(&p).unwrap(), img);
        let err = write_image(d.path().join("x.png"), &img).unwrap_err();
        assert!(matches!(err, DataError::BadBuffer { .. }), "{err}");

        let img = Image::from_gray_f32(array![[0.0f32, 300.0]], SampleDepth::U16);
        let p = d.path().join("y.png");
        write_image(&p, &img).unwrap();
        assert_eq!(read_image(&p).unwrap(), img);
    }

    #[test]
    fn unknown_extension_is_an_error() {
        let d = tmp();
        let err = write_gray_u8(d.path().join("a.jpg"), 1, 1, &[0]).unwrap_err();
        assert!(matches!(err, DataError::UnsupportedFormat { .. }));
        assert!(err.to_string().contains("a.jpg"));
        let err = write_gray_u8_png(d.path().join("a.tif"), 1, 1, &[0]).unwrap_err();
        assert!(matches!(err, DataError::UnsupportedFormat { .. }));
        let err = write_gray_f32_tiff(d.path().join("a.png"), 1, 1, &[0.0]).unwrap_err();
        assert!(matches!(err, DataError::UnsupportedFormat { .. }));
        std::fs::write(d.path().join("a.bmp"), b"BM....").unwrap();
        let err = read_image(d.path().join("a.bmp")).unwrap_err();
        assert!(matches!(err, DataError::UnsupportedFormat { .. }));
        // Upper-case extensions are fine.
        write_gray_u8(d.path().join("B.PNG"), 1, 1, &[0]).unwrap();
        write_gray_u8(d.path().join("C.TIF"), 1, 1, &[0]).unwrap();
    }

    #[test]
    fn bad_buffers_and_dimensions() {
        let d = tmp();
        let p = d.path().join("a.png");
        let err = write_gray_u8_png(&p, 2, 2, &[0; 3]).unwrap_err();
        assert!(matches!(err, DataError::BadBuffer { .. }), "{err}");
        let err = write_gray_u8_png(&p, 0, 2, &[]).unwrap_err();
        assert!(matches!(err, DataError::BadDimensions { .. }), "{err}");
        let err = write_gray_u8_png(&p, 65536, 65536, &[]).unwrap_err();
        assert!(matches!(err, DataError::BadDimensions { .. }), "{err}");
        assert!(!p.exists());
    }

    #[test]
    fn truncated_and_garbage_files_are_corrupt() {
        let d = tmp();
        let p = d.path().join("t.png");
        let data: Vec<u8> = (0..64 * 64).map(|i| (i * 7 % 251) as u8).collect();
        write_gray_u8_png(&p, 64, 64, &data).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        for cut in [4, 20, 60, bytes.len() / 2, bytes.len() - 5] {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let err = read_image(&p).unwrap_err();
            assert!(matches!(err, DataError::CorruptImage { .. }), "cut {cut}: {err:?}");
            assert!(err.to_string().contains("t.png"), "{err}");
        }
        let p = d.path().join("z.tif");
        std::fs::write(&p, b"").unwrap();
        let err = read_image(&p).unwrap_err();
        assert!(matches!(err, DataError::CorruptImage { .. }), "{err:?}");
        std::fs::write(&p, b"II*\0garbage-garbage-garbage").unwrap();
        let err = read_image(&p).unwrap_err();
        assert!(matches!(err, DataError::CorruptImage { .. }), "{err:?}");
        let tif = d.path().join("ok.tif");
        write_gray_u8_tiff(&tif, 64, 64, &data).unwrap();
        let bytes = std::fs::read(&tif).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_image(&p).unwrap_err();
        assert!(matches!(err, DataError::CorruptImage { .. }), "{err:?}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_image("/definitely/not/here.png").unwrap_err();
        assert!(matches!(err, DataError::Read { .. }));
        assert!(err.to_string().contains("/definitely/not/here.png"));
    }

    #[test]
    fn unit_range() {
        let img = Image::from_gray_u8(array![[0u8, 255]].view());
        assert_eq!(img.to_unit_range()[[0, 1, 0]], 1.0);
        assert_eq!(img.width(), 2);
        assert_eq!(img.height(), 1);
        assert_eq!(img.channels(), 1);
    }
}
