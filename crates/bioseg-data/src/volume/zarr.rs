//! Zarr volumes: the reader (v2 and v3, OME-Zarr), the atomic filesystem store and the Zarr v3 /
//! OME-Zarr writer.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array4, ArrayView4};
use rayon::prelude::*;
use serde_json::{Value, json};
use zarrs::array::{Array, ArraySubset, CodecOptions};
use zarrs::filesystem::FilesystemStore;
use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::{
    Bytes, MaybeBytesIterator, OffsetBytesIterator, ReadableStorageTraits, StorageError, StoreKey, StorePrefix,
    WritableStorageTraits,
};

use crate::atomic::write_bytes_atomic;
use crate::error::{DataError, one_line};
use crate::image::SampleDepth;

use super::{
    TEMP_PREFIX, VolumeDType, VolumeFormat, VolumeInfo, VolumeReader, VolumeSample, check_slab, existing_parent,
    has_zarr_metadata, vol_err,
};

// ---------------------------------------------------------------------------
// Zarr
// ---------------------------------------------------------------------------

/// A Zarr array (v2 or v3) read chunk by chunk with `zarrs`.
///
/// The path may be the array itself or a group: an OME-Zarr group (`multiscales`, in the
/// attributes' `ome` object for 0.5 or at their top for 0.4) is read at
/// `multiscales[0].datasets[0].path`, its highest resolution. Axes come from the OME `axes`,
/// else the array's dimension names, else the rank: `(y, x)`, `(z, y, x)`, `(c, z, y, x)` or
/// `(t, c, z, y, x)` (one time point). Any integer or float data type is read.
pub struct ZarrVolume {
    path: PathBuf,
    node: String,
    array: Array<FilesystemStore>,
    /// Array dimension of t, c, z, y, x (y and x always present).
    axes: [Option<usize>; 5],
    info: VolumeInfo,
}

impl std::fmt::Debug for ZarrVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZarrVolume")
            .field("path", &self.path)
            .field("node", &self.node)
            .field("info", &self.info)
            .finish()
    }
}

/// Reads and parses a JSON file, `None` when it does not exist.
fn read_json(path: &Path) -> Result<Option<Value>, DataError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| vol_err(path, format!("invalid JSON: {}", one_line(e)))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DataError::read(path, e)),
    }
}

/// Names of OME `axes` (0.4+: objects with `name`; 0.3: strings).
fn ome_axis_names(ms: &Value) -> Option<Vec<String>> {
    let axes = ms.get("axes")?.as_array()?;
    axes.iter().map(|a| a.as_str().or_else(|| a.get("name").and_then(Value::as_str)).map(str::to_owned)).collect()
}

/// The array node of the Zarr store at `path` and its axis names if known.
fn resolve_zarr_node(path: &Path) -> Result<(String, Option<Vec<String>>), DataError> {
    let from_multiscales = |attrs: &Value, meta: &Path| -> Result<(String, Option<Vec<String>>), DataError> {
        let ms = attrs
            .get("ome")
            .and_then(|o| o.get("multiscales"))
            .or_else(|| attrs.get("multiscales"))
            .and_then(Value::as_array)
            .and_then(|m| m.first())
            .ok_or_else(|| {
                vol_err(meta, "a Zarr group without OME-Zarr multiscales: give the path of an array inside it")
            })?;
        let p = ms
            .get("datasets")
            .and_then(Value::as_array)
            .and_then(|d| d.first())
            .and_then(|d| d.get("path"))
            .and_then(Value::as_str)
            .ok_or_else(|| vol_err(meta, "OME-Zarr multiscales[0] has no datasets[0].path"))?;
        let p = p.trim_matches('/');
        if p.is_empty() || p.split('/').any(|c| c == ".." || c == "." || c.is_empty()) {
            return Err(vol_err(meta, format!("OME-Zarr dataset path `{p}` is not a relative path")));
        }
        Ok((format!("/{p}"), ome_axis_names(ms)))
    };
    let v3 = path.join("zarr.json");
    if let Some(meta) = read_json(&v3)? {
        return match meta.get("node_type").and_then(Value::as_str) {
            Some("array") => Ok(("/".into(), None)),
            Some("group") => from_multiscales(meta.get("attributes").unwrap_or(&Value::Null), &v3),
            _ => Err(vol_err(&v3, "zarr.json has no node_type `array` or `group`")),
        };
    }
    if path.join(".zarray").is_file() {
        let names = read_json(&path.join(".zattrs"))?
            .and_then(|a| a.get("_ARRAY_DIMENSIONS").cloned())
            .and_then(|d| serde_json::from_value::<Vec<String>>(d).ok());
        return Ok(("/".into(), names));
    }
    if path.join(".zgroup").is_file() {
        let attrs = read_json(&path.join(".zattrs"))?.unwrap_or(Value::Null);
        return from_multiscales(&attrs, &path.join(".zattrs"));
    }
    Err(vol_err(path, "not a Zarr store (no zarr.json, .zarray or .zgroup in the folder)"))
}

/// Assigns t, c, z, y, x to array dimensions from names (when they are all known) or the rank.
fn assign_axes(path: &Path, rank: usize, names: Option<&[String]>) -> Result<[Option<usize>; 5], DataError> {
    const ORDER: [&str; 5] = ["t", "c", "z", "y", "x"];
    if let Some(names) = names.filter(|n| n.len() == rank) {
        let mut axes = [None; 5];
        let mut ok = true;
        for (d, n) in names.iter().enumerate() {
            match ORDER.iter().position(|o| n.eq_ignore_ascii_case(o)) {
                Some(i) if axes[i].is_none() => axes[i] = Some(d),
                _ => ok = false,
            }
        }
        if ok && axes[3].is_some() && axes[4].is_some() {
            return Ok(axes);
        }
    }
    let by_rank: &[usize] = match rank {
        2 => &[3, 4],
        3 => &[2, 3, 4],
        4 => &[1, 2, 3, 4],
        5 => &[0, 1, 2, 3, 4],
        _ => {
            return Err(vol_err(
                path,
                format!("a rank-{rank} array: bioseg reads (y,x), (z,y,x), (c,z,y,x) or (t,c,z,y,x)"),
            ));
        }
    };
    let mut axes = [None; 5];
    for (d, &a) in by_rank.iter().enumerate() {
        axes[a] = Some(d);
    }
    Ok(axes)
}

/// Reads `subset` of `array` as `f32`, whatever its numeric data type.
fn retrieve_f32<S: ?Sized + ReadableStorageTraits + 'static>(
    array: &Array<S>,
    subset: &ArraySubset,
) -> Result<Vec<f32>, String> {
    use zarrs::array::data_type as dt;
    let t = array.data_type();
    macro_rules! get {
        ($ty:ty) => {
            array
                .retrieve_array_subset::<Vec<$ty>>(subset)
                .map(|v| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>())
                .map_err(one_line)
        };
    }
    if *t == dt::uint8() {
        get!(u8)
    } else if *t == dt::uint16() {
        get!(u16)
    } else if *t == dt::float32() {
        get!(f32)
    } else if *t == dt::float64() {
        get!(f64)
    } else if *t == dt::int8() {
        get!(i8)
    } else if *t == dt::int16() {
        get!(i16)
    } else if *t == dt::int32() {
        get!(i32)
    } else if *t == dt::uint32() {
        get!(u32)
    } else if *t == dt::int64() {
        get!(i64)
    } else if *t == dt::uint64() {
        get!(u64)
    } else if *t == dt::bool() {
        array
            .retrieve_array_subset::<Vec<bool>>(subset)
            .map(|v| v.into_iter().map(|x| f32::from(u8::from(x))).collect())
            .map_err(one_line)
    } else {
        Err(format!("data type {t} is not supported (expected an integer or float type)"))
    }
}

impl ZarrVolume {
    /// Opens a Zarr array, or the level 0 of an OME-Zarr group.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        if !path.is_dir() {
            return Err(vol_err(path, "a Zarr store must be a folder"));
        }
        let (node, names) = resolve_zarr_node(path)?;
        let store = Arc::new(FilesystemStore::new(path).map_err(|e| vol_err(path, one_line(e)))?);
        let array = Array::open(store, &node)
            .map_err(|e| vol_err(path, format!("cannot open array {node}: {}", one_line(e))))?;
        let shape: Vec<usize> = array.shape().iter().map(|&n| n as usize).collect();
        let dim_names: Option<Vec<String>> = names.or_else(|| {
            let meta = read_json(&path.join(node.trim_start_matches('/')).join("zarr.json")).ok()??;
            serde_json::from_value(meta.get("dimension_names")?.clone()).ok()
        });
        let axes = assign_axes(path, shape.len(), dim_names.as_deref())?;
        let size = |a: usize| axes[a].map(|d| shape[d]).unwrap_or(1);
        if size(0) != 1 {
            return Err(vol_err(path, format!("the array has {} time points; bioseg reads volumes with one", size(0))));
        }
        if shape.contains(&0) {
            return Err(vol_err(path, format!("empty array of shape {shape:?}")));
        }
        use zarrs::array::data_type as dt;
        let t = array.data_type();
        let depth = if *t == dt::uint8() || *t == dt::bool() {
            SampleDepth::U8
        } else if *t == dt::uint16() {
            SampleDepth::U16
        } else {
            SampleDepth::F32
        };
        let chunk: Vec<usize> = array
            .chunk_shape(&vec![0; shape.len()])
            .map_err(|e| vol_err(path, one_line(e)))?
            .iter()
            .map(|n| n.get() as usize)
            .collect();
        let chunk_of = |a: usize| axes[a].map(|d| chunk[d]).unwrap_or(1);
        let info = VolumeInfo {
            shape: [size(2), size(3), size(4)],
            channels: size(1),
            depth,
            chunks: [chunk_of(2), chunk_of(3), chunk_of(4)],
            format: VolumeFormat::Zarr,
        };
        Ok(ZarrVolume { path: path.to_path_buf(), node, array, axes, info })
    }

    /// The node path of the array read inside the store (e.g. `/0` for OME-Zarr).
    pub fn node(&self) -> &str {
        &self.node
    }
}

impl VolumeReader for ZarrVolume {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &VolumeInfo {
        &self.info
    }

    fn read_slab(&self, z: Range<usize>, y: Range<usize>, x: Range<usize>) -> Result<Array4<f32>, DataError> {
        check_slab(&self.path, self.info.shape, &z, &y, &x)?;
        let rank = self.array.dimensionality();
        let mut ranges = vec![0..1u64; rank];
        let c = self.info.channels;
        let wanted = [0..1, 0..c, z.clone(), y.clone(), x.clone()];
        for (a, r) in wanted.iter().enumerate() {
            if let Some(d) = self.axes[a] {
                ranges[d] = r.start as u64..r.end as u64;
            }
        }
        let dims: Vec<usize> = ranges.iter().map(|r| (r.end - r.start) as usize).collect();
        let values = retrieve_f32(&self.array, &ArraySubset::new_with_ranges(&ranges))
            .map_err(|e| vol_err(&self.path, format!("reading array {}: {e}", self.node)))?;
        if values.len() != dims.iter().product::<usize>() {
            return Err(vol_err(&self.path, "the array returned a wrong number of samples"));
        }
        let mut strides = vec![1usize; rank];
        for d in (0..rank.saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * dims[d + 1];
        }
        let stride = |a: usize| self.axes[a].map(|d| strides[d]).unwrap_or(0);
        let (sc, sz, sy, sx) = (stride(1), stride(2), stride(3), stride(4));
        Ok(Array4::from_shape_fn((z.len(), y.len(), x.len(), c), |(i, j, k, ch)| {
            values[i * sz + j * sy + k * sx + ch * sc]
        }))
    }
}

// ---------------------------------------------------------------------------
// Atomic filesystem store
// ---------------------------------------------------------------------------

/// A `zarrs` filesystem store whose writes are atomic: each value is written to a hidden
/// temporary file in its folder, synced, and renamed over its key (`zarrs`' own
/// [`FilesystemStore`] truncates and writes in place, so a killed writer leaves a torn chunk).
/// Reads go to the wrapped store.
#[derive(Debug)]
pub struct AtomicFilesystemStore {
    inner: FilesystemStore,
}

impl AtomicFilesystemStore {
    /// A store rooted at `root` (a folder; created on the first write if missing).
    pub fn new(root: impl AsRef<Path>) -> Result<Self, DataError> {
        let root = root.as_ref();
        Ok(AtomicFilesystemStore { inner: FilesystemStore::new(root).map_err(|e| vol_err(root, one_line(e)))? })
    }

    /// The file that holds `key`.
    pub fn key_path(&self, key: &StoreKey) -> PathBuf {
        self.inner.key_to_fspath(key)
    }
}

impl ReadableStorageTraits for AtomicFilesystemStore {
    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        self.inner.get_partial_many(key, byte_ranges)
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        self.inner.size_key(key)
    }

    fn supports_get_partial(&self) -> bool {
        self.inner.supports_get_partial()
    }
}

impl WritableStorageTraits for AtomicFilesystemStore {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        let path = self.key_path(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_bytes_atomic(&path, &value).map_err(|e| StorageError::Other(e.to_string()))
    }

    fn set_partial_many(&self, key: &StoreKey, offset_values: OffsetBytesIterator) -> Result<(), StorageError> {
        let mut bytes: Vec<u8> = self.inner.get(key)?.map(|b| b.to_vec()).unwrap_or_default();
        for (offset, value) in offset_values {
            let offset =
                usize::try_from(offset).map_err(|_| StorageError::Other(format!("offset {offset} too large")))?;
            if bytes.len() < offset + value.len() {
                bytes.resize(offset + value.len(), 0);
            }
            bytes[offset..offset + value.len()].copy_from_slice(&value);
        }
        self.set(key, Bytes::from(bytes))
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        self.inner.erase(key)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        self.inner.erase_prefix(prefix)
    }

    fn supports_set_partial(&self) -> bool {
        false
    }
}

/// What a [`ZarrVolumeWriter`] creates.
#[derive(Debug, Clone, PartialEq)]
pub struct ZarrVolumeSpec {
    /// Size `[z, y, x]`.
    pub shape: [usize; 3],
    /// `Some(c)`: a `(c, z, y, x)` array whose chunks hold all channels; `None`: `(z, y, x)`.
    pub channels: Option<usize>,
    /// Chunk size `[z, y, x]`.
    pub chunks: [usize; 3],
    /// Sample type.
    pub dtype: VolumeDType,
    /// Position `[z, y, x]` of the first voxel in the source volume (the OME translation).
    pub origin: [usize; 3],
    /// Name of the multiscale (shown by viewers).
    pub name: String,
    /// Stored as the group attribute `bioseg`; a store is joined only when it is equal.
    pub identity: Value,
    /// A 2-D image: the array has no `z` axis (`(c, y, x)` or `(y, x)`); `shape[0]` and
    /// `chunks[0]` must be 1 and `origin[0]` 0.
    pub planar: bool,
    /// Names of the channels (OME `omero` labels; `channel N` where missing).
    pub channel_labels: Vec<String>,
}

impl ZarrVolumeSpec {
    fn validate(&self, path: &Path) -> Result<(), DataError> {
        if self.planar && (self.shape[0] != 1 || self.chunks[0] != 1 || self.origin[0] != 0) {
            return Err(vol_err(path, format!("a 2-D array cannot have {} planes", self.shape[0])));
        }
        if self.shape.contains(&0) || self.chunks.contains(&0) || self.channels == Some(0) {
            return Err(vol_err(
                path,
                format!(
                    "cannot create an array of shape {:?} with chunks {:?} and channels {:?}",
                    self.shape, self.chunks, self.channels
                ),
            ));
        }
        Ok(())
    }

    /// The array's axes: `c` where there are channels, `z` unless planar, `y`, `x`.
    fn axis_names(&self) -> Vec<&'static str> {
        let mut v = self.channels.map(|_| vec!["c"]).unwrap_or_default();
        if !self.planar {
            v.push("z");
        }
        v.extend(["y", "x"]);
        v
    }

    /// `per_channel` (the channel axis) followed by the `[z, y, x]` values of the array's axes.
    fn along_axes<T: Copy>(&self, per_channel: T, zyx: [T; 3]) -> Vec<T> {
        let mut v = self.channels.map(|_| vec![per_channel]).unwrap_or_default();
        v.extend(&zyx[usize::from(self.planar)..]);
        v
    }

    fn array_shape(&self) -> Vec<usize> {
        self.along_axes(self.channels.unwrap_or(1), self.shape)
    }

    fn array_chunks(&self) -> Vec<usize> {
        self.along_axes(self.channels.unwrap_or(1), self.chunks)
    }

    /// OME `omero` rendering settings of a multi-channel array: one gray channel per label,
    /// its window the sample type's range (0–1 for float32 probabilities).
    fn omero(&self) -> Option<Value> {
        let k = self.channels?;
        let max = match self.dtype {
            VolumeDType::U8 => 255.0,
            VolumeDType::F32 => 1.0,
        };
        let channels: Vec<Value> = (0..k)
            .map(|c| {
                let label = self.channel_labels.get(c).cloned().unwrap_or_else(|| format!("channel {c}"));
                json!({
                    "label": label,
                    "color": "FFFFFF",
                    "active": true,
                    "coefficient": 1.0,
                    "family": "linear",
                    "inverted": false,
                    "window": {"min": 0.0, "max": max, "start": 0.0, "end": max}
                })
            })
            .collect();
        Some(json!({"channels": channels, "rdefs": {"model": "greyscale", "defaultZ": 0, "defaultT": 0}}))
    }

    /// The root group's `zarr.json`: OME-Zarr 0.5 multiscales (one level at `0`) and the
    /// identity.
    fn group_metadata(&self) -> Value {
        let axes: Vec<Value> = self
            .axis_names()
            .into_iter()
            .map(|n| if n == "c" { json!({"name": n, "type": "channel"}) } else { json!({"name": n, "type": "space"}) })
            .collect();
        let scale = vec![1.0f64; axes.len()];
        let translation = self.along_axes(0.0, self.origin.map(|o| o as f64));
        let mut ome = json!({
            "version": "0.5",
            "multiscales": [{
                "name": self.name,
                "axes": axes,
                "datasets": [{
                    "path": "0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": scale},
                        {"type": "translation", "translation": translation}
                    ]
                }]
            }]
        });
        if let Some(omero) = self.omero() {
            ome["omero"] = omero;
        }
        json!({
            "zarr_format": 3,
            "node_type": "group",
            "attributes": {"ome": ome, "bioseg": self.identity}
        })
    }

    /// The array's `zarr.json`: regular chunks, `/` chunk keys, bytes + zstd.
    fn array_metadata(&self) -> Value {
        let names = self.axis_names();
        let fill = match self.dtype {
            VolumeDType::U8 => json!(0),
            VolumeDType::F32 => json!(0.0),
        };
        json!({
            "zarr_format": 3,
            "node_type": "array",
            "shape": self.array_shape(),
            "data_type": self.dtype.zarr_name(),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": self.array_chunks()}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": fill,
            "codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "zstd", "configuration": {"level": 3, "checksum": false}}
            ],
            "attributes": {},
            "dimension_names": names
        })
    }
}

/// What to do when a [`ZarrVolumeWriter`]'s store already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// Fail with [`DataError::OutputExists`].
    New,
    /// Replace it (only a Zarr store, or a file, is ever replaced).
    Overwrite,
    /// Join it when it was created with the same spec (resume, or another shard of the same
    /// job), else fail with [`DataError::IncompatibleOutput`].
    Join,
}

/// How many chunks a [`ZarrVolumeWriter::write_region`] wrote and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionWrite {
    /// Chunks written.
    pub written: usize,
    /// Chunks skipped because they existed.
    pub skipped: usize,
}

/// A Zarr v3 store with OME-Zarr 0.5 metadata, written chunk by chunk, atomically.
///
/// Layout: `PATH/zarr.json` (group: `ome` multiscales with one level, `bioseg` identity) and
/// `PATH/0/zarr.json` (the array), chunks at `PATH/0/c/<i>/<j>/...`.
pub struct ZarrVolumeWriter {
    path: PathBuf,
    store: Arc<AtomicFilesystemStore>,
    array: Array<AtomicFilesystemStore>,
    spec: ZarrVolumeSpec,
}

impl std::fmt::Debug for ZarrVolumeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZarrVolumeWriter").field("path", &self.path).field("spec", &self.spec).finish()
    }
}

/// The first key whose values differ between two JSON objects, for error messages.
fn first_difference(stored: &Value, wanted: &Value) -> String {
    match (stored.as_object(), wanted.as_object()) {
        (Some(a), Some(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (x, y) = (a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null));
                if x != y {
                    if x.is_object() && y.is_object() {
                        return format!("{k}.{}", first_difference(x, y));
                    }
                    return format!("{k} is {x} there, {y} now");
                }
            }
            "(no difference)".into()
        }
        _ => format!("{stored} there, {wanted} now"),
    }
}

impl ZarrVolumeWriter {
    /// Creates the store at `path` (its parent folder must exist), or per `mode` replaces or
    /// joins an existing one. Returns the writer and whether this call created the store.
    ///
    /// Creation is atomic and safe when several processes race: the metadata is written into
    /// a hidden temporary folder next to `path` that is then renamed to `path`; the rename
    /// fails for all but one process, and the others join (in [`CreateMode::Join`]) after
    /// checking the winner's metadata.
    pub fn create(path: impl AsRef<Path>, spec: ZarrVolumeSpec, mode: CreateMode) -> Result<(Self, bool), DataError> {
        let path = path.as_ref();
        spec.validate(path)?;
        let parent = existing_parent(path)?;
        let exists = std::fs::symlink_metadata(path).is_ok();
        if exists {
            match mode {
                CreateMode::New => {
                    return Err(DataError::OutputExists { path: path.to_path_buf() });
                }
                CreateMode::Join => {
                    Self::check_existing(path, &spec)?;
                    return Ok((Self::open_store(path, spec)?, false));
                }
                CreateMode::Overwrite => {
                    let meta = std::fs::symlink_metadata(path).map_err(|e| DataError::read(path, e))?;
                    let empty_dir =
                        meta.is_dir() && std::fs::read_dir(path).map(|mut d| d.next().is_none()).unwrap_or(false);
                    if meta.is_dir() && !empty_dir && !has_zarr_metadata(path) {
                        return Err(vol_err(path, "refusing to replace a folder that is not a Zarr store"));
                    }
                    let tmp = Self::build_temp(&parent, path, &spec)?;
                    let trash = tempfile::Builder::new()
                        .prefix(TEMP_PREFIX)
                        .tempdir_in(&parent)
                        .map_err(|e| DataError::OutputFolder { dir: parent.clone(), reason: e.to_string() })?;
                    let old = trash.path().join("old");
                    std::fs::rename(path, &old).map_err(|e| DataError::write(path, e))?;
                    std::fs::rename(tmp.path(), path).map_err(|e| DataError::write(path, e))?;
                    drop(trash);
                    return Ok((Self::open_store(path, spec)?, true));
                }
            }
        }
        let tmp = Self::build_temp(&parent, path, &spec)?;
        match std::fs::rename(tmp.path(), path) {
            Ok(()) => Ok((Self::open_store(path, spec)?, true)),
            Err(e) => {
                drop(tmp);
                if std::fs::symlink_metadata(path).is_err() {
                    return Err(DataError::write(path, e));
                }
                // Another process created it first.
                match mode {
                    CreateMode::Join => {
                        Self::check_existing(path, &spec)?;
                        Ok((Self::open_store(path, spec)?, false))
                    }
                    _ => Err(DataError::OutputExists { path: path.to_path_buf() }),
                }
            }
        }
    }

    /// Writes the metadata into a temporary folder beside `path`.
    fn build_temp(parent: &Path, path: &Path, spec: &ZarrVolumeSpec) -> Result<tempfile::TempDir, DataError> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "volume".into());
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{TEMP_PREFIX}{name}-"))
            .tempdir_in(parent)
            .map_err(|e| DataError::OutputFolder { dir: parent.to_path_buf(), reason: e.to_string() })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(|e| DataError::write(tmp.path(), e))?;
        }
        let json = |v: &Value| serde_json::to_vec_pretty(v).unwrap_or_default();
        write_bytes_atomic(tmp.path().join("zarr.json"), &json(&spec.group_metadata()))?;
        let arr = tmp.path().join("0");
        std::fs::create_dir(&arr).map_err(|e| DataError::write(&arr, e))?;
        write_bytes_atomic(arr.join("zarr.json"), &json(&spec.array_metadata()))?;
        Ok(tmp)
    }

    /// Checks that the store at `path` was created with `spec`.
    fn check_existing(path: &Path, spec: &ZarrVolumeSpec) -> Result<(), DataError> {
        let incompatible = |reason: String| DataError::IncompatibleOutput { path: path.to_path_buf(), reason };
        let group = read_json(&path.join("zarr.json"))?
            .ok_or_else(|| incompatible("it is not a Zarr v3 store written by bioseg".into()))?;
        let stored = group
            .get("attributes")
            .and_then(|a| a.get("bioseg"))
            .ok_or_else(|| incompatible("it was not written by bioseg predict".into()))?;
        if *stored != spec.identity {
            return Err(incompatible(first_difference(stored, &spec.identity)));
        }
        let array = read_json(&path.join("0").join("zarr.json"))?
            .ok_or_else(|| incompatible("its array 0/zarr.json is missing".into()))?;
        let wanted = spec.array_metadata();
        for key in ["shape", "data_type", "chunk_grid", "dimension_names"] {
            if array.get(key) != wanted.get(key) {
                return Err(incompatible(format!(
                    "array {key} is {} there, {} now",
                    array.get(key).unwrap_or(&Value::Null),
                    wanted.get(key).unwrap_or(&Value::Null)
                )));
            }
        }
        Ok(())
    }

    fn open_store(path: &Path, spec: ZarrVolumeSpec) -> Result<Self, DataError> {
        let store = Arc::new(AtomicFilesystemStore::new(path)?);
        let array = Array::open(store.clone(), "/0")
            .map_err(|e| vol_err(path, format!("cannot open array 0: {}", one_line(e))))?;
        Ok(ZarrVolumeWriter { path: path.to_path_buf(), store, array, spec })
    }

    /// The store's folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the store holds.
    pub fn spec(&self) -> &ZarrVolumeSpec {
        &self.spec
    }

    /// Number of chunks along z, y, x.
    pub fn chunk_grid(&self) -> [usize; 3] {
        let s = &self.spec;
        [0, 1, 2].map(|i| s.shape[i].div_ceil(s.chunks[i]))
    }

    fn chunk_indices(&self, chunk: [usize; 3]) -> Vec<u64> {
        self.spec.along_axes(0, chunk.map(|c| c as u64))
    }

    /// The file that holds chunk `[iz, iy, ix]`.
    pub fn chunk_path(&self, chunk: [usize; 3]) -> PathBuf {
        self.store.key_path(&self.array.chunk_key(&self.chunk_indices(chunk)))
    }

    /// Whether chunk `[iz, iy, ix]` was written (chunks appear only complete).
    pub fn chunk_exists(&self, chunk: [usize; 3]) -> bool {
        self.chunk_path(chunk).is_file()
    }

    /// Writes `data` (`[channels, z, y, x]`) at voxel `origin` (`[z, y, x]`). The region must
    /// start on chunk boundaries and end on chunk boundaries or at the array's end, so every
    /// chunk is written whole (in parallel); with `skip_existing`, chunks already in the store
    /// are left as they are.
    pub fn write_region<T: VolumeSample>(
        &self,
        origin: [usize; 3],
        data: ArrayView4<T>,
        skip_existing: bool,
    ) -> Result<RegionWrite, DataError> {
        let s = &self.spec;
        let (kc, nz, ny, nx) = data.dim();
        let size = [nz, ny, nx];
        let bad = |reason: String| DataError::BadBuffer { path: self.path.clone(), reason };
        if T::DTYPE != s.dtype {
            return Err(bad(format!("{:?} samples for a {:?} array", T::DTYPE, s.dtype)));
        }
        if kc != s.channels.unwrap_or(1) {
            return Err(bad(format!("{kc} channels for an array of {:?}", s.channels)));
        }
        for i in 0..3 {
            let end = origin[i] + size[i];
            if !origin[i].is_multiple_of(s.chunks[i])
                || end > s.shape[i]
                || (!end.is_multiple_of(s.chunks[i]) && end != s.shape[i])
            {
                return Err(bad(format!(
                    "region at {origin:?} of size {size:?} is not aligned to chunks {:?} of an array {:?}",
                    s.chunks, s.shape
                )));
            }
        }
        let c0 = [0, 1, 2].map(|i| origin[i] / s.chunks[i]);
        let c1 = [0, 1, 2].map(|i| (origin[i] + size[i]).div_ceil(s.chunks[i]));
        let mut chunks = Vec::new();
        for iz in c0[0]..c1[0] {
            for iy in c0[1]..c1[1] {
                for ix in c0[2]..c1[2] {
                    chunks.push([iz, iy, ix]);
                }
            }
        }
        let options = CodecOptions::default().with_store_empty_chunks(true);
        let [cz, cy, cx] = s.chunks;
        let results: Vec<Result<bool, DataError>> = chunks
            .par_iter()
            .map(|&chunk| {
                if skip_existing && self.chunk_exists(chunk) {
                    return Ok(false);
                }
                let mut buf = vec![T::default(); kc * cz * cy * cx];
                let start = [0, 1, 2].map(|i| chunk[i] * s.chunks[i] - origin[i]);
                let end = [0, 1, 2].map(|i| (start[i] + s.chunks[i]).min(size[i]));
                for k in 0..kc {
                    for z in start[0]..end[0] {
                        for y in start[1]..end[1] {
                            let row = ((k * cz + z - start[0]) * cy + y - start[1]) * cx;
                            for x in start[2]..end[2] {
                                buf[row + x - start[2]] = data[[k, z, y, x]];
                            }
                        }
                    }
                }
                self.array
                    .store_chunk_opt(&self.chunk_indices(chunk), buf, &options)
                    .map_err(|e| vol_err(&self.path, format!("writing chunk {chunk:?}: {}", one_line(e))))?;
                Ok(true)
            })
            .collect();
        let mut report = RegionWrite::default();
        for r in results {
            if r? {
                report.written += 1;
            } else {
                report.skipped += 1;
            }
        }
        Ok(report)
    }
}
