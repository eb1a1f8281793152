//! Data handling shared by bioseg's trainer and its inference tool, with no ML
//! framework: image I/O, the dataset layout, mask decoding, synthetic data,
//! segmentation metrics, atomic writes and tensor files.
//!
//! Every fallible function returns [`DataError`], whose messages are one line
//! naming the file involved and the problem. Nothing here panics on bad input.
//!
//! | module | what |
//! | --- | --- |
//! | [`error`] | [`DataError`] |
//! | [`atomic`] | [`write_atomic`], [`write_bytes_atomic`], [`ensure_absent_or_overwrite`] |
//! | [`image`] | [`Image`], [`read_image`], PNG/TIFF writers |
//! | [`tensor_file`] | [`read_tensor`] / [`write_tensor`] for `.npy` and `.csv`; [`parse_npy`] / [`npy_bytes`] in memory |
//! | [`mask`] | [`Mask`], [`MaskEncoding`] detection and decoding |
//! | [`dataset`] | [`SegmentationDataset`] over `ROOT/<class>/<split>/{image,label}` |
//! | [`synth`] | the synthetic EM generator and dataset writer |
//! | [`metrics`] | Dice, IoU, pixel error |
//! | [`challenge_pixel_error`] | the ISBI 2012 challenge's pixel error (1 − maximal F-score over thresholds) |
//! | [`pages`] | multi-page TIFF stacks: [`read_image_pages`], [`write_gray_u8_pages`] |
//! | [`overlay`] | colour overlays of label maps and error maps |
//! | [`segmentation_scores`] | ISBI 2012 `V_rand`/`V_info`, adapted Rand error, variation of information |
//! | [`env`](mod@env) | [`isbi2012_dir`], [`natural_cmp`] |
//! | [`weight_map`] | the U-Net paper's border-weighted loss weights ([`weight_map::unet_weight_map`]) |
//! | [`volume`] | 3-D volumes: multi-page TIFF, slice folders, Zarr v2/v3 readers ([`open_volume`]); OME-Zarr, TIFF stack and slice writers |

#![warn(missing_docs)]

pub mod atomic;
pub mod challenge_pixel_error;
pub mod cli_support;
pub mod dataset;
pub mod env;
pub mod error;
pub mod image;
pub mod mask;
pub mod metrics;
pub mod overlay;
pub mod pages;
pub mod segmentation_scores;
pub mod synth;
pub mod tensor_file;
pub mod volume;
pub mod weight_map;

pub use atomic::{ensure_absent_or_overwrite, write_atomic, write_bytes_atomic};
pub use challenge_pixel_error::{ChallengePixelError, PixelFScoreSweep};
pub use dataset::{SamplePair, SegmentationDataset, list_images};
pub use env::{isbi2012_dir, natural_cmp};
pub use error::DataError;
pub use image::{
    Image, ImageFormat, SampleDepth, image_dimensions, read_image, write_gray_f32_tiff, write_gray_u8,
    write_gray_u8_png, write_gray_u8_tiff, write_gray_u16, write_gray_u16_png, write_image, write_rgb_u8_png,
};
pub use mask::{LabelValues, Mask, MaskEncoding};
pub use metrics::{
    ClassScores, ConfusionMatrix, SegmentationScores, confusion_matrix, dice, iou, pixel_error, segmentation_scores,
};
pub use pages::{read_image_pages, write_gray_u8_pages};
pub use segmentation_scores::{
    AdaptedRand, ContingencyTable, IsbiScores, adapted_rand_error, cells, class_regions, connected_components,
    isbi_scores, isbi_scores_with_alpha, variation_of_information,
};
pub use synth::{SynthParams, SynthSample, generate, write_dataset};
pub use tensor_file::{TensorFormat, npy_bytes, parse_npy, read_tensor, write_tensor};
pub use volume::{
    AtomicFilesystemStore, CreateMode, SliceFolderVolume, SliceFolderWriter, TiffStackWriter, TiffVolume, VolumeDType,
    VolumeFormat, VolumeInfo, VolumeReader, VolumeSample, ZarrVolume, ZarrVolumeSpec, ZarrVolumeWriter,
    detect_volume_format, open_volume, tiff_page_count,
};
