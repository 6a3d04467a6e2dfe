//! Strict tensor stores: one weights file, every tensor checked.
//!
//! A [`WeightStore`] holds the tensors of one safetensors or PyTorch `.bin`
//! file. Models are built through a `candle_nn::VarBuilder` backed by the
//! store ([`WeightStore::var_builder`]): each tensor a model asks for must be
//! in the file with exactly the expected shape, and afterwards
//! [`WeightStore::check_all_used`] refuses a file with tensors no layer took
//! (a sign of a different architecture or config). Errors name the file and
//! the tensor.
//!
//! Tensors are converted to the requested dtype (an fp16 file loads into f32
//! models and the reverse) when they are handed out.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::error::{Error, Result};

/// The tensors of one weights file, with a record of which were used.
#[derive(Clone)]
pub struct WeightStore {
    inner: Arc<Inner>,
}

struct Inner {
    file: PathBuf,
    tensors: HashMap<String, Tensor>,
    used: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for WeightStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightStore")
            .field("file", &self.inner.file)
            .field("tensors", &self.inner.tensors.len())
            .finish()
    }
}

impl WeightStore {
    /// Reads a `.safetensors` file or a PyTorch `.bin` / `.pt` / `.ckpt`
    /// pickle (zip format, as `torch.save` writes it) onto `device`.
    pub fn open(file: &Path, device: &Device) -> Result<Self> {
        let is_safetensors = file.extension().is_some_and(|e| e == "safetensors");
        let tensors = if is_safetensors {
            read_safetensors(file, device)?
        } else {
            read_pickle(file, device)?
        };
        Ok(Self::from_tensors(file, tensors))
    }

    /// Reads the bytes of a safetensors file (one embedded in the program,
    /// say) onto `device`; `file` names them in messages.
    pub fn from_safetensors_bytes(file: &Path, bytes: &[u8], device: &Device) -> Result<Self> {
        Ok(Self::from_tensors(
            file,
            decode_safetensors(file, bytes, device)?,
        ))
    }

    /// Wraps tensors already in memory; `file` names them in messages.
    pub fn from_tensors(file: &Path, tensors: HashMap<String, Tensor>) -> Self {
        Self {
            inner: Arc::new(Inner {
                file: file.to_path_buf(),
                tensors,
                used: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// The file the tensors came from.
    pub fn file(&self) -> &Path {
        &self.inner.file
    }

    /// Number of tensors in the file.
    pub fn len(&self) -> usize {
        self.inner.tensors.len()
    }

    /// Whether the file holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.inner.tensors.is_empty()
    }

    /// The names of all tensors, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.tensors.keys().cloned().collect();
        names.sort();
        names
    }

    /// One tensor as stored (no dtype conversion), if present.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.inner.tensors.get(name)
    }

    /// A `VarBuilder` that hands out this store's tensors as `dtype` on
    /// `device`, with strict name and shape checks.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// Fails when a tensor of the file was never asked for, naming (up to
    /// five of) them.
    pub fn check_all_used(&self) -> Result<()> {
        let used = self.inner.used.lock().expect("weight store lock");
        let unused: Vec<&String> = self
            .inner
            .tensors
            .keys()
            .filter(|k| !used.contains(*k))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        Err(unused_tensors_error(&self.inner.file, &unused))
    }

    /// Every tensor as stored, by name (shared storage, no copy).
    pub fn to_map(&self) -> HashMap<String, Tensor> {
        self.inner.tensors.clone()
    }

    fn find(&self, name: &str) -> candle_core::Result<&Tensor> {
        self.inner.tensors.get(name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{}: tensor `{name}` is missing",
                self.inner.file.display()
            ))
        })
    }

    fn mark_used(&self, name: &str) {
        self.inner
            .used
            .lock()
            .expect("weight store lock")
            .insert(name.to_string());
    }
}

impl SimpleBackend for WeightStore {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.find(name)?;
        if t.shape() != &shape {
            return Err(candle_core::Error::Msg(format!(
                "{}: tensor `{name}` has shape {:?}, the config expects {:?}",
                self.inner.file.display(),
                t.dims(),
                shape.dims()
            )));
        }
        self.mark_used(name);
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.find(name)?;
        self.mark_used(name);
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.tensors.contains_key(name)
    }
}

/// Maps a candle error from building a model out of `file`'s tensors to a
/// checkpoint error on `file` (the store's own messages already name the
/// file; the name is not repeated).
pub(crate) fn tensor_err(file: &Path) -> impl Fn(candle_core::Error) -> Error + '_ {
    move |e| {
        let prefix = format!("{}: ", file.display());
        Error::checkpoint(file, e.to_string().replace(&prefix, ""))
    }
}

/// The error for tensors of `file` that no layer asked for (up to five
/// named): the weights belong to another architecture or config.
pub(crate) fn unused_tensors_error<S: AsRef<str>>(file: &Path, unused: &[S]) -> Error {
    let shown: Vec<&str> = unused.iter().take(5).map(|s| s.as_ref()).collect();
    Error::checkpoint(
        file,
        format!(
            "{} tensor(s) not used by the model built from the config (e.g. {}); \
             the weights belong to another architecture or config",
            unused.len(),
            shown.join(", ")
        ),
    )
}

fn read_safetensors(file: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
    decode_safetensors(file, &bytes, device)
}

fn decode_safetensors(
    file: &Path,
    bytes: &[u8],
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        Error::checkpoint(
            file,
            format!("not a readable safetensors file (truncated or damaged?): {e}"),
        )
    })?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::F64 => DType::F64,
            safetensors::Dtype::I64 => DType::I64,
            safetensors::Dtype::U8 => DType::U8,
            safetensors::Dtype::U32 => DType::U32,
            other => {
                return Err(Error::checkpoint(
                    file,
                    format!("tensor `{name}` has unsupported dtype {other:?}"),
                ))
            }
        };
        let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), device)
            .map_err(|e| Error::checkpoint(file, format!("tensor `{name}` cannot be read: {e}")))?;
        out.insert(name, t);
    }
    Ok(out)
}

fn read_pickle(file: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !file.exists() {
        return Err(Error::io(
            file,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    // Lightning checkpoints keep the weights under "state_dict". The
    // pickle reader can panic on a damaged file (an overflowing shift):
    // that is an error naming the file too.
    let read = || {
        let mut all = candle_core::pickle::read_all_with_key(file, None);
        if matches!(&all, Ok(v) if v.is_empty()) {
            all = candle_core::pickle::read_all_with_key(file, Some("state_dict"));
        }
        all.map_err(|e| {
            Error::checkpoint(
                file,
                format!("not a readable PyTorch checkpoint (truncated or damaged?): {e}"),
            )
        })
    };
    let all = crate::panic_guard::guarded(read, |m| {
        Error::checkpoint(
            file,
            format!("not a readable PyTorch checkpoint: the reader failed ({m})"),
        )
    })?;
    let mut out = HashMap::new();
    for (name, t) in all {
        let t = t
            .to_device(device)
            .map_err(|e| Error::checkpoint(file, format!("tensor `{name}`: {e}")))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Tensors as the bytes of a safetensors file (copied to the CPU first).
pub fn safetensors_bytes(tensors: &[(String, Tensor)], context: &Path) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t
            .to_device(&Device::Cpu)
            .and_then(|t| t.contiguous())
            .map_err(|e| Error::Tensor {
                context: format!("{}: tensor `{name}`", context.display()),
                source: e,
            })?;
        data.push((name.as_str(), t));
    }
    safetensors::serialize(data.iter().map(|(n, t)| (*n, t)), None)
        .map_err(|e| Error::checkpoint(context, e.to_string()))
}

/// Writes tensors as a safetensors file (atomically), for tests, exports
/// and `--init-latents` files.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    crate::fsutil::write_bytes_atomic(path, &safetensors_bytes(tensors, path)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_damaged_pytorch_file_is_an_error_naming_it() {
        // found by the `checkpoints` fuzz target: the pickle reader's
        // shift overflowed (a panic in builds with overflow checks)
        let file = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/fuzz/shift-overflow.bin"
        ));
        let e = WeightStore::open(file, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("shift-overflow.bin") && e.contains("PyTorch"),
            "{e}"
        );
    }

    use super::*;

    fn store() -> WeightStore {
        let mut m = HashMap::new();
        m.insert(
            "a.weight".to_string(),
            Tensor::zeros((2, 3), DType::F16, &Device::Cpu).unwrap(),
        );
        m.insert(
            "a.bias".to_string(),
            Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
        );
        WeightStore::from_tensors(Path::new("w.safetensors"), m)
    }

    #[test]
    fn converts_dtype_and_checks_shapes_and_use() {
        let s = store();
        let vb = s.var_builder(DType::F32, &Device::Cpu);
        let w = vb.pp("a").get((2, 3), "weight").unwrap();
        assert_eq!(w.dtype(), DType::F32);
        let e = vb.pp("a").get((3, 2), "bias").unwrap_err().to_string();
        assert!(e.contains("w.safetensors") && e.contains("a.bias"), "{e}");
        let e = vb.get(1, "b").unwrap_err().to_string();
        assert!(e.contains("`b` is missing"), "{e}");
        let e = s.check_all_used().unwrap_err().to_string();
        assert!(e.contains("a.bias"), "{e}");
        vb.pp("a").get(2, "bias").unwrap();
        s.check_all_used().unwrap();
    }

    #[test]
    fn safetensors_round_trip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let x = Tensor::arange(0f32, 6., &Device::Cpu)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        let h = x.to_dtype(DType::F16).unwrap();
        write_safetensors(&p, &[("x".into(), x.clone()), ("h".into(), h)]).unwrap();
        let s = WeightStore::open(&p, &Device::Cpu).unwrap();
        assert_eq!(s.len(), 2);
        let back: Vec<Vec<f32>> = s.tensor("x").unwrap().to_vec2().unwrap();
        assert_eq!(back, vec![vec![0., 1., 2.], vec![3., 4., 5.]]);
        assert_eq!(s.tensor("h").unwrap().dtype(), DType::F16);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        let e = WeightStore::open(&p, &Device::Cpu).unwrap_err().to_string();
        assert!(
            e.contains("t.safetensors") && e.contains("truncated"),
            "{e}"
        );
    }
}
