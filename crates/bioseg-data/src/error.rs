//! The crate's error type.
//!
//! Every message is a single line that names the file (or folder) involved and
//! the problem, so that a command-line tool can print it as it is. The
//! underlying cause (an `io::Error`, a decoder message) is part of that line
//! rather than a separate [`std::error::Error::source`], so that printing an
//! error chain does not repeat it.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in `bioseg-data`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("cannot read {}: {error}", .path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// What the operating system reported.
        error: io::Error,
    },

    /// A file could not be written (or its temporary file renamed into place).
    #[error("cannot write {}: {error}", .path.display())]
    Write {
        /// The file that could not be written.
        path: PathBuf,
        /// What the operating system reported.
        error: io::Error,
    },

    /// The folder an output should go into is missing, not a folder, or not writable.
    #[error("cannot write into folder {}: {reason}", .dir.display())]
    OutputFolder {
        /// The folder.
        dir: PathBuf,
        /// Why it cannot be written into.
        reason: String,
    },

    /// An output already exists and overwriting was not requested.
    #[error("output exists: {} (use --overwrite)", .path.display())]
    OutputExists {
        /// The existing output.
        path: PathBuf,
    },

    /// A file name's extension does not name a format this operation handles.
    #[error("unsupported file type {}: expected {expected}", .path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The extensions that would have been accepted, e.g. "`.png`, `.tif` or `.tiff`".
        expected: &'static str,
    },

    /// An image file is truncated or not a valid image.
    #[error("corrupt image {}: {reason}", .path.display())]
    CorruptImage {
        /// The image file.
        path: PathBuf,
        /// What the decoder reported.
        reason: String,
    },

    /// An image file is valid but uses a pixel layout this crate does not read
    /// (palette TIFF, CMYK, signed or 64-bit integer samples, …).
    #[error("unsupported image {}: {reason}", .path.display())]
    UnsupportedImage {
        /// The image file.
        path: PathBuf,
        /// What is not supported.
        reason: String,
    },

    /// An image's dimensions are zero or too large (more than 2^31 pixels).
    #[error("bad image dimensions {width}x{height} in {}: {reason}", .path.display())]
    BadDimensions {
        /// The image file (being read or written).
        path: PathBuf,
        /// Width in pixels.
        width: u64,
        /// Height in pixels.
        height: u64,
        /// Why the dimensions are rejected.
        reason: &'static str,
    },

    /// A pixel buffer handed to a writer does not have `width * height * channels` samples,
    /// or an image handed to a writer has a channel count the format cannot store.
    #[error("cannot write {}: {reason}", .path.display())]
    BadBuffer {
        /// The file that was to be written.
        path: PathBuf,
        /// What is wrong with the buffer.
        reason: String,
    },

    /// A tensor file (`.npy`, `.csv`) is malformed, or a tensor cannot be stored in the
    /// requested format.
    #[error("bad tensor file {}: {reason}", .path.display())]
    Tensor {
        /// The tensor file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A folder the dataset layout requires does not exist.
    #[error("missing folder: {}", .path.display())]
    MissingFolder {
        /// The folder.
        path: PathBuf,
    },

    /// Neither `label/` nor `mask/` exists next to a dataset's `image/` folder.
    #[error("missing label folder: neither {} nor {} exists", .label.display(), .mask.display())]
    MissingLabelFolder {
        /// The `label/` folder that was looked for.
        label: PathBuf,
        /// The `mask/` folder that was looked for.
        mask: PathBuf,
    },

    /// A dataset folder contains no `.png`/`.tif`/`.tiff` files.
    #[error("empty folder: {} (no .png, .tif or .tiff files)", .path.display())]
    EmptyFolder {
        /// The folder.
        path: PathBuf,
    },

    /// Two files in one dataset folder share a file stem (e.g. `3.png` and `3.tif`).
    #[error("ambiguous files: {} and {} have the same name stem", .first.display(), .second.display())]
    DuplicateStem {
        /// One file.
        first: PathBuf,
        /// The other file.
        second: PathBuf,
    },

    /// An image has no label with the same stem.
    #[error("image {} has no label in {}{}", .image.display(), .label_dir.display(), more_suffix(*.more))]
    UnpairedImage {
        /// The image file.
        image: PathBuf,
        /// The label folder that was searched.
        label_dir: PathBuf,
        /// How many further images lack a label.
        more: usize,
    },

    /// A label has no image with the same stem.
    #[error("label {} has no image in {}{}", .label.display(), .image_dir.display(), more_suffix(*.more))]
    UnpairedLabel {
        /// The label file.
        label: PathBuf,
        /// The image folder that was searched.
        image_dir: PathBuf,
        /// How many further labels lack an image.
        more: usize,
    },

    /// An image and its label differ in size.
    #[error(
        "size mismatch: image {} is {image_width}x{image_height} but label {} is {label_width}x{label_height}",
        .image.display(), .label.display()
    )]
    SizeMismatch {
        /// The image file.
        image: PathBuf,
        /// The label file.
        label: PathBuf,
        /// Image width.
        image_width: usize,
        /// Image height.
        image_height: usize,
        /// Label width.
        label_width: usize,
        /// Label height.
        label_height: usize,
    },

    /// A label image holds a value that is not one of the dataset's classes.
    #[error("unexpected label value {value} in {}: {reason}", .path.display())]
    LabelValue {
        /// The label file.
        path: PathBuf,
        /// The offending value, as text (a gray level or an `r,g,b` triple).
        value: String,
        /// What was expected instead.
        reason: String,
    },

    /// A label image (or set of label images) matches none of the known mask encodings.
    #[error("cannot decode mask {}: {reason}", .path.display())]
    MaskEncoding {
        /// The label file.
        path: PathBuf,
        /// Why no encoding fits.
        reason: String,
    },

    /// A dataset index is out of range.
    #[error("index {index} out of range for dataset {} with {len} pairs", .path.display())]
    IndexOutOfRange {
        /// The dataset's folder.
        path: PathBuf,
        /// The index asked for.
        index: usize,
        /// How many pairs the dataset has.
        len: usize,
    },

    /// Two label maps handed to a metric differ in shape (no file is involved).
    #[error("shape mismatch: prediction is {pred_width}x{pred_height} but target is {target_width}x{target_height}")]
    ShapeMismatch {
        /// Prediction width.
        pred_width: usize,
        /// Prediction height.
        pred_height: usize,
        /// Target width.
        target_width: usize,
        /// Target height.
        target_height: usize,
    },

    /// A label map handed to a metric holds a class index `>= num_classes` (no file is involved).
    #[error("class {value} in the {which} is out of range for {num_classes} classes")]
    ClassOutOfRange {
        /// `"prediction"` or `"target"`.
        which: &'static str,
        /// The offending class index.
        value: u8,
        /// The number of classes.
        num_classes: usize,
    },

    /// A volume (multi-page TIFF, folder of slices, Zarr store) is malformed, or cannot be read
    /// or written as asked.
    #[error("volume {}: {reason}", .path.display())]
    Volume {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An existing output was written with other settings (another model, other options), so
    /// it can be neither resumed nor shared.
    #[error("output {} was written with other settings: {reason}", .path.display())]
    IncompatibleOutput {
        /// The existing output.
        path: PathBuf,
        /// What differs.
        reason: String,
    },

    /// Parameters handed to a function are invalid (no file is involved).
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// Why it is rejected.
        reason: String,
    },
}

/// `value`'s text with line breaks (and runs of whitespace) folded into single
/// spaces, so that a decoder's message fits the one-line error format.
pub(crate) fn one_line(value: impl std::fmt::Display) -> String {
    value.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Formats the "(and N more)" tail of the unpaired-file messages.
fn more_suffix(more: usize) -> String {
    if more == 0 { String::new() } else { format!(" (and {more} more)") }
}

impl DataError {
    /// A [`DataError::Read`] for `path`.
    pub(crate) fn read(path: impl Into<PathBuf>, error: io::Error) -> Self {
        DataError::Read { path: path.into(), error }
    }

    /// A [`DataError::Write`] for `path`.
    pub(crate) fn write(path: impl Into<PathBuf>, error: io::Error) -> Self {
        DataError::Write { path: path.into(), error }
    }

    /// A [`DataError::InvalidParameter`].
    pub(crate) fn param(name: &'static str, reason: impl Into<String>) -> Self {
        DataError::InvalidParameter { name, reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_name_the_files() {
        let e = DataError::SizeMismatch {
            image: "/a/3.png".into(),
            label: "/a/label/3.png".into(),
            image_width: 512,
            image_height: 512,
            label_width: 256,
            label_height: 256,
        };
        assert_eq!(e.to_string(), "size mismatch: image /a/3.png is 512x512 but label /a/label/3.png is 256x256");
        let e = DataError::CorruptImage { path: "/x/1.png".into(), reason: "unexpected end of file".into() };
        assert_eq!(e.to_string(), "corrupt image /x/1.png: unexpected end of file");
        let e = DataError::OutputExists { path: "/o/model.onnx".into() };
        assert_eq!(e.to_string(), "output exists: /o/model.onnx (use --overwrite)");
    }

    #[test]
    fn unpaired_mentions_how_many_more() {
        let e = DataError::UnpairedImage { image: "/d/image/3.png".into(), label_dir: "/d/label".into(), more: 2 };
        assert_eq!(e.to_string(), "image /d/image/3.png has no label in /d/label (and 2 more)");
        let e = DataError::UnpairedLabel { label: "/d/label/4.png".into(), image_dir: "/d/image".into(), more: 0 };
        assert_eq!(e.to_string(), "label /d/label/4.png has no image in /d/image");
    }

    #[test]
    fn one_line_folds_breaks() {
        assert_eq!(one_line("a\n  b\r\nc "), "a b c");
    }

    #[test]
    fn io_errors_carry_their_cause_in_the_message() {
        let e = DataError::read("/nope.png", io::Error::new(io::ErrorKind::NotFound, "gone"));
        assert_eq!(e.to_string(), "cannot read /nope.png: gone");
        assert!(std::error::Error::source(&e).is_none());
        assert!(!e.to_string().contains('\n'));
    }
}
