//! Multi-page TIFF volumes (classic or BigTIFF): the lazy reader and the streamed, atomic writer.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Seek, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ::tiff::decoder::{ChunkType, Decoder, DecodingResult, Limits};
use ::tiff::encoder::{TiffEncoder, TiffKindBig, TiffKindStandard};
use ::tiff::tags::Tag;
use ndarray::{Array4, ArrayViewMut3, Axis};

use crate::error::{DataError, one_line};
use crate::image::{ImageFormat, MAX_PIXELS, SampleDepth};

use super::{
    TEMP_PREFIX, VolumeDType, VolumeFormat, VolumeInfo, VolumeReader, VolumeSample, check_slab, existing_parent,
    vol_err,
};

// ---------------------------------------------------------------------------
// Multi-page TIFF
// ---------------------------------------------------------------------------

/// A multi-page TIFF (classic or BigTIFF) read lazily: the page directories are walked once
/// when opening, and a slab decodes only its pages' strips or tiles that overlap it.
///
/// Every page must have the size, colour model and sample type of the first. Gray, gray+alpha,
/// RGB and RGBA pages of 8/16-bit unsigned or float samples are read (alpha dropped);
/// planar-configuration colour pages are not.
pub struct TiffVolume {
    path: PathBuf,
    info: VolumeInfo,
    /// Stored samples per pixel (alpha included).
    samples: usize,
    decoder: Mutex<Decoder<BufReader<File>>>,
}

impl std::fmt::Debug for TiffVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiffVolume").field("path", &self.path).field("info", &self.info).finish()
    }
}

/// Size and sample layout of one TIFF page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageLayout {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) samples: usize,
    pub(crate) channels: usize,
    pub(crate) color: tiff::ColorType,
}

/// Maps a `tiff` error on `page` of `path` to a [`DataError`].
pub(crate) fn tiff_err(path: &Path, page: usize, e: tiff::TiffError) -> DataError {
    match e {
        tiff::TiffError::UnsupportedError(u) => {
            DataError::UnsupportedImage { path: path.to_path_buf(), reason: format!("page {page}: {}", one_line(u)) }
        }
        tiff::TiffError::IoError(io) if io.kind() != io::ErrorKind::UnexpectedEof => DataError::read(path, io),
        tiff::TiffError::IoError(_) => {
            DataError::CorruptImage { path: path.to_path_buf(), reason: format!("page {page}: file is truncated") }
        }
        other => {
            DataError::CorruptImage { path: path.to_path_buf(), reason: format!("page {page}: {}", one_line(other)) }
        }
    }
}

/// The layout of the decoder's current page.
pub(crate) fn page_layout(
    path: &Path,
    page: usize,
    decoder: &mut Decoder<BufReader<File>>,
) -> Result<PageLayout, DataError> {
    let (w, h) = decoder.dimensions().map_err(|e| tiff_err(path, page, e))?;
    let (width, height) = (w as usize, h as usize);
    if width == 0 || height == 0 || (width as u64).saturating_mul(height as u64) > MAX_PIXELS {
        return Err(DataError::BadDimensions {
            path: path.to_path_buf(),
            width: width as u64,
            height: height as u64,
            reason: if width == 0 || height == 0 { "zero-sized page" } else { "more than 2^31 pixels" },
        });
    }
    let color = decoder.colortype().map_err(|e| tiff_err(path, page, e))?;
    let Some((samples, channels)) = crate::image::tiff_channels(color) else {
        return Err(DataError::UnsupportedImage {
            path: path.to_path_buf(),
            reason: format!("page {page}: TIFF color type {color:?}"),
        });
    };
    if samples > 1 {
        let planar = decoder.find_tag_unsigned::<u16>(Tag::PlanarConfiguration).map_err(|e| tiff_err(path, page, e))?;
        if planar == Some(2) {
            return Err(DataError::UnsupportedImage {
                path: path.to_path_buf(),
                reason: format!("page {page}: planar (separate-plane) colour samples"),
            });
        }
    }
    Ok(PageLayout { width, height, samples, channels, color })
}

/// Decoded samples as `f32`, with the sample type they had.
fn decoded_f32(path: &Path, page: usize, r: DecodingResult) -> Result<(Vec<f32>, SampleDepth), DataError> {
    Ok(match r {
        DecodingResult::U8(v) => (v.into_iter().map(f32::from).collect(), SampleDepth::U8),
        DecodingResult::U16(v) => (v.into_iter().map(f32::from).collect(), SampleDepth::U16),
        DecodingResult::F32(v) => (v, SampleDepth::F32),
        DecodingResult::F64(v) => (v.into_iter().map(|x| x as f32).collect(), SampleDepth::F32),
        _ => {
            return Err(DataError::UnsupportedImage {
                path: path.to_path_buf(),
                reason: format!("page {page}: sample format (expected unsigned 8/16-bit or float)"),
            });
        }
    })
}

impl TiffVolume {
    /// Opens a (multi-page) TIFF and checks that all pages agree.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| DataError::read(path, e))?;
        let mut decoder =
            Decoder::new(BufReader::new(file)).map_err(|e| tiff_err(path, 0, e))?.with_limits(Limits::unlimited());
        let first = page_layout(path, 0, &mut decoder)?;
        let (cw, ch) = decoder.chunk_dimensions();
        let chunks = [1, (ch as usize).clamp(1, first.height), (cw as usize).clamp(1, first.width)];
        let (_, depth) = decoded_f32(path, 0, decoder.read_chunk(0).map_err(|e| tiff_err(path, 0, e))?)?;
        // Later page directories are parsed with the `tiff` crate's default limits (see
        // `DIRECTORY_LIMITS_NOTE` at `tiff_page_count`); pixel reads get unlimited ones again.
        let mut decoder = decoder.with_limits(Limits::default());
        let mut pages = 1usize;
        while decoder.more_images() {
            decoder.next_image().map_err(|e| tiff_err(path, pages, e))?;
            let l = page_layout(path, pages, &mut decoder)?;
            if l != first {
                return Err(vol_err(
                    path,
                    format!(
                        "page {pages} is {}x{} {:?} but page 0 is {}x{} {:?}; a volume's pages must agree",
                        l.width, l.height, l.color, first.width, first.height, first.color
                    ),
                ));
            }
            pages += 1;
        }
        let decoder = decoder.with_limits(Limits::unlimited());
        Ok(TiffVolume {
            path: path.to_path_buf(),
            info: VolumeInfo {
                shape: [pages, first.height, first.width],
                channels: first.channels,
                depth,
                chunks,
                format: VolumeFormat::Tiff,
            },
            samples: first.samples,
            decoder: Mutex::new(decoder),
        })
    }

    /// Reads rows `y` and columns `x` of the current page into `out` (`[y, x, c]`).
    fn read_region(
        &self,
        page: usize,
        decoder: &mut Decoder<BufReader<File>>,
        y: &Range<usize>,
        x: &Range<usize>,
        out: &mut ArrayViewMut3<f32>,
    ) -> Result<(), DataError> {
        let [_, height, width] = self.info.shape;
        let (cw, ch) = decoder.chunk_dimensions();
        let (cw, ch) = (cw.max(1) as usize, ch.max(1) as usize);
        let (cw, across) = match decoder.get_chunk_type() {
            ChunkType::Strip => (width, 1),
            ChunkType::Tile => (cw, width.div_ceil(cw)),
        };
        let (cin, cout) = (self.samples, self.info.channels);
        for ty in y.start / ch..=(y.end - 1) / ch {
            for tx in x.start / cw..=(x.end - 1) / cw {
                let index = ty * across + tx;
                let (dw, dh) = (cw.min(width - tx * cw), ch.min(height - ty * ch));
                let chunk = decoder.read_chunk(index as u32).map_err(|e| tiff_err(&self.path, page, e))?;
                let (samples, depth) = decoded_f32(&self.path, page, chunk)?;
                if depth != self.info.depth {
                    return Err(vol_err(
                        &self.path,
                        format!("page {page} has {depth:?} samples but page 0 has {:?}", self.info.depth),
                    ));
                }
                if samples.len() < dw * dh * cin {
                    return Err(DataError::CorruptImage {
                        path: self.path.clone(),
                        reason: format!(
                            "page {page}: block {index} decoded {} samples, expected {}",
                            samples.len(),
                            dw * dh * cin
                        ),
                    });
                }
                let rows = y.start.max(ty * ch)..y.end.min(ty * ch + dh);
                let cols = x.start.max(tx * cw)..x.end.min(tx * cw + dw);
                for row in rows {
                    let base = (row - ty * ch) * dw;
                    for col in cols.clone() {
                        let s = (base + col - tx * cw) * cin;
                        for k in 0..cout {
                            out[[row - y.start, col - x.start, k]] = samples[s + k];
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl VolumeReader for TiffVolume {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &VolumeInfo {
        &self.info
    }

    fn read_slab(&self, z: Range<usize>, y: Range<usize>, x: Range<usize>) -> Result<Array4<f32>, DataError> {
        check_slab(&self.path, self.info.shape, &z, &y, &x)?;
        let mut out = Array4::<f32>::zeros((z.len(), y.len(), x.len(), self.info.channels));
        let mut decoder =
            self.decoder.lock().map_err(|_| vol_err(&self.path, "an earlier read failed midway (poisoned lock)"))?;
        for (i, page) in z.enumerate() {
            decoder.seek_to_image(page).map_err(|e| tiff_err(&self.path, page, e))?;
            let mut plane = out.index_axis_mut(Axis(0), i);
            self.read_region(page, &mut decoder, &y, &x, &mut plane)?;
        }
        Ok(out)
    }
}

/// The number of pages of a TIFF file (1 for other images), without decoding pixel data.
pub fn tiff_page_count(path: impl AsRef<Path>) -> Result<usize, DataError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| DataError::read(path, e))?;
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = &file;
        let n = f.read(&mut magic).map_err(|e| DataError::read(path, e))?;
        if n < 4 || !(magic == *b"II*\0" || magic == *b"MM\0*" || magic == *b"II+\0" || magic == *b"MM\0+") {
            return Ok(1);
        }
    }
    let mut reader = BufReader::new(file);
    reader.seek(io::SeekFrom::Start(0)).map_err(|e| DataError::read(path, e))?;
    // DIRECTORY_LIMITS_NOTE: the `tiff` crate's default limits, not unlimited ones. In `tiff`
    // 0.11 a directory's value arrays (strip offsets, byte counts, ...) are bounded only by
    // `decoding_buffer_size`, which the pixel readers lift; with it lifted, a corrupt directory
    // declaring billions of values made the decoder allocate them (hundreds of GiB) before
    // reading any. Pixel data is never decoded here, so the default limits only bound the
    // directories (as they already do for the first page, parsed by `Decoder::new`).
    let mut decoder = Decoder::new(reader).map_err(|e| tiff_err(path, 0, e))?;
    let mut pages = 1;
    while decoder.more_images() {
        decoder.next_image().map_err(|e| tiff_err(path, pages, e))?;
        pages += 1;
    }
    Ok(pages)
}

// ---------------------------------------------------------------------------
// Multi-page TIFF writer
// ---------------------------------------------------------------------------

/// A file shared between the TIFF encoder and the writer that finishes it.
#[derive(Clone)]
struct SharedFile(Arc<Mutex<BufWriter<File>>>);

impl SharedFile {
    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, BufWriter<File>>> {
        self.0.lock().map_err(|_| io::Error::other("poisoned writer"))
    }
}

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock()?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.lock()?.flush()
    }
}

impl Seek for SharedFile {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.lock()?.seek(pos)
    }
}

enum StackEncoder {
    Standard(TiffEncoder<SharedFile, TiffKindStandard>),
    Big(TiffEncoder<SharedFile, TiffKindBig>),
}

/// A multi-page gray TIFF written page by page into a hidden temporary file in the target's
/// folder, renamed to the target by [`finish`](TiffStackWriter::finish) (dropping the writer
/// unfinished removes the temporary file). BigTIFF when the pages add up to more than 3 GiB.
/// [`hyperstack`](TiffStackWriter::hyperstack) makes it an ImageJ hyperstack of channels and
/// slices, which Fiji opens as such and `tifffile` reads as `(Z, C, Y, X)`.
pub struct TiffStackWriter {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
    file: SharedFile,
    encoder: StackEncoder,
    width: u32,
    height: u32,
    dtype: VolumeDType,
    pages: usize,
    expected: usize,
    /// The first page's `ImageDescription` (ImageJ's metadata), if any.
    description: Option<String>,
}

impl std::fmt::Debug for TiffStackWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiffStackWriter")
            .field("path", &self.path)
            .field("pages", &self.pages)
            .field("expected", &self.expected)
            .finish()
    }
}

impl TiffStackWriter {
    /// Starts a stack of `pages` pages of `width × height` `dtype` samples at `path` (`.tif` or
    /// `.tiff`). An existing file is refused unless `overwrite`.
    pub fn create(
        path: impl AsRef<Path>,
        width: usize,
        height: usize,
        pages: usize,
        dtype: VolumeDType,
        overwrite: bool,
    ) -> Result<Self, DataError> {
        let path = path.as_ref();
        if ImageFormat::from_path(path)? != ImageFormat::Tiff {
            return Err(DataError::UnsupportedFormat { path: path.to_path_buf(), expected: ".tif or .tiff" });
        }
        crate::atomic::ensure_absent_or_overwrite(path, overwrite)?;
        if width == 0 || height == 0 || pages == 0 || width > u32::MAX as usize || height > u32::MAX as usize {
            return Err(DataError::BadDimensions {
                path: path.to_path_buf(),
                width: width as u64,
                height: height as u64,
                reason: "zero-sized or oversized pages",
            });
        }
        let parent = existing_parent(path)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(TEMP_PREFIX).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o644));
        }
        let tmp = builder
            .tempfile_in(&parent)
            .map_err(|e| DataError::OutputFolder { dir: parent.clone(), reason: e.to_string() })?;
        let clone = tmp.as_file().try_clone().map_err(|e| DataError::write(path, e))?;
        let file = SharedFile(Arc::new(Mutex::new(BufWriter::with_capacity(1 << 20, clone))));
        let total = (width * height * pages * dtype.bytes()) as u64;
        let tiff_io = |e: tiff::TiffError| DataError::write(path, io::Error::other(e.to_string()));
        let encoder = if total > 3 << 30 {
            StackEncoder::Big(TiffEncoder::new_big(file.clone()).map_err(tiff_io)?)
        } else {
            StackEncoder::Standard(TiffEncoder::new(file.clone()).map_err(tiff_io)?)
        };
        Ok(TiffStackWriter {
            path: path.to_path_buf(),
            tmp,
            file,
            encoder,
            width: width as u32,
            height: height as u32,
            dtype,
            pages: 0,
            expected: pages,
            description: None,
        })
    }

    /// Declares the pages an ImageJ hyperstack of `channels` channels × `slices` slices (pages
    /// in ImageJ's order: channel fastest, page `z·channels + c`; their product must be the page
    /// count), written as the first page's `ImageDescription` with the display range of the
    /// sample type (0–255, or 0–1 for float32 probabilities). Call before the first page.
    pub fn hyperstack(mut self, channels: usize, slices: usize) -> Result<Self, DataError> {
        if channels * slices != self.expected || self.pages > 0 {
            return Err(DataError::BadBuffer {
                path: self.path.clone(),
                reason: format!(
                    "{channels} channels × {slices} slices for a stack of {} pages ({} written)",
                    self.expected, self.pages
                ),
            });
        }
        let max = match self.dtype {
            VolumeDType::U8 => "255.0",
            VolumeDType::F32 => "1.0",
        };
        let mut d = format!("ImageJ=1.11a\nimages={}\n", self.expected);
        if channels > 1 {
            d += &format!("channels={channels}\n");
        }
        if slices > 1 {
            d += &format!("slices={slices}\n");
        }
        if channels > 1 {
            d += "hyperstack=true\nmode=grayscale\n";
        }
        d += &format!("loop=false\nmin=0.0\nmax={max}\n");
        self.description = Some(d);
        Ok(self)
    }

    /// The target file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_page(&self, len: usize, dtype: VolumeDType) -> Result<(), DataError> {
        let n = self.width as usize * self.height as usize;
        if len != n || dtype != self.dtype || self.pages >= self.expected {
            return Err(DataError::BadBuffer {
                path: self.path.clone(),
                reason: format!(
                    "page {} of {} with {len} {dtype:?} samples, expected {}x{} {:?}",
                    self.pages, self.expected, self.width, self.height, self.dtype
                ),
            });
        }
        Ok(())
    }

    /// Appends a page of samples (row-major, of the stack's sample type).
    pub fn write_page<T: VolumeSample>(&mut self, data: &[T]) -> Result<(), DataError> {
        self.check_page(data.len(), T::DTYPE)?;
        let (w, h) = (self.width, self.height);
        let description = if self.pages == 0 { self.description.as_deref() } else { None };
        let r = match &mut self.encoder {
            StackEncoder::Standard(e) => T::tiff_page(e, w, h, data, description),
            StackEncoder::Big(e) => T::tiff_page(e, w, h, data, description),
        };
        r.map_err(|e| DataError::write(&self.path, io::Error::other(e.to_string())))?;
        self.pages += 1;
        Ok(())
    }

    /// Flushes, syncs and renames the file into place once every page was written.
    pub fn finish(self) -> Result<(), DataError> {
        if self.pages != self.expected {
            return Err(DataError::BadBuffer {
                path: self.path.clone(),
                reason: format!("{} of {} pages written", self.pages, self.expected),
            });
        }
        drop(self.encoder);
        {
            let mut f = self.file.lock().map_err(|e| DataError::write(&self.path, e))?;
            f.flush().map_err(|e| DataError::write(&self.path, e))?;
            f.get_ref().sync_all().map_err(|e| DataError::write(&self.path, e))?;
        }
        self.tmp.persist(&self.path).map_err(|e| DataError::write(&self.path, e.error))?;
        Ok(())
    }
}
