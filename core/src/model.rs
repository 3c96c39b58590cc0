//! Model weights, assembled from and viewed as the tensors of [`crate::layout`].

use crate::config::{Config, ConfigError};
use crate::dtype::DType;
use crate::formats::{blocks_from_bytes, blocks_to_bytes, Block, BlockQ4_0, BlockQ8_0, QK};
use crate::graph::Pattn;
use crate::layout;
pub use crate::layout::{tensor_specs, tensor_specs_iter, Role, TensorSpec};
use crate::ops::rotary::RopeTable;
use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// An f32 tensor: borrowed straight from the file when it is aligned f32, owned otherwise
/// (converted from f16/bf16, or copied when misaligned).
pub type Weight<'a> = Cow<'a, [f32]>;

/// A weight matrix in one of the storage formats, rows of blocks for the quantized ones.
/// Blocks borrow from the file when 2-byte aligned, as f32 does when 4-byte aligned.
#[derive(Clone, Debug, PartialEq)]
pub enum Matrix<'a> {
    /// Row-major f32 values.
    F32(Weight<'a>),
    /// Rows of Q8_0 blocks (32 values in 34 bytes).
    Q8_0(Cow<'a, [BlockQ8_0]>),
    /// Rows of Q4_0 blocks (32 values in 18 bytes).
    Q4_0(Cow<'a, [BlockQ4_0]>),
}

/// The one place that maps storage formats to their block types: `each_format!(m, w => f32
/// arm, b => blocks arm)` matches a matrix, binding the f32 values or the blocks (the blocks arm
/// is written once, generic over [`Block`]); `each_format!(dtype, B => arm, _ => other)` names
/// the block type of a [`DType`]. A new block format adds one row to each half.
macro_rules! each_format {
    ($m:expr, $w:ident => $f32:expr, $b:ident => $blocks:expr) => {
        match $m {
            Matrix::F32($w) => $f32,
            Matrix::Q8_0($b) => $blocks,
            Matrix::Q4_0($b) => $blocks,
        }
    };
    ($d:expr, $B:ident => $blocks:expr, _ => $other:expr) => {
        match $d {
            DType::Q8_0 => {
                type $B = BlockQ8_0;
                $blocks
            }
            DType::Q4_0 => {
                type $B = BlockQ4_0;
                $blocks
            }
            _ => $other,
        }
    };
}
pub(crate) use each_format;

impl<'a> From<Cow<'a, [BlockQ8_0]>> for Matrix<'a> {
    fn from(b: Cow<'a, [BlockQ8_0]>) -> Self {
        Matrix::Q8_0(b)
    }
}

impl<'a> From<Cow<'a, [BlockQ4_0]>> for Matrix<'a> {
    fn from(b: Cow<'a, [BlockQ4_0]>) -> Self {
        Matrix::Q4_0(b)
    }
}

impl Default for Matrix<'_> {
    fn default() -> Self {
        Matrix::F32(Cow::Borrowed(&[]))
    }
}

/// The element type of a block slice.
fn dtype_of<B: Block>(_: &[B]) -> DType {
    B::DTYPE
}

impl<'a> Matrix<'a> {
    /// The storage format: f32 or a block format.
    pub fn format(&self) -> DType {
        each_format!(self, _w => DType::F32, b => dtype_of(b))
    }

    /// Number of values (not blocks).
    pub fn len(&self) -> usize {
        each_format!(self, w => w.len(), b => b.len() * QK)
    }

    /// Whether the matrix holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of storage: what a pass over the matrix reads from memory.
    pub fn bytes(&self) -> usize {
        self.format().bytes_for(self.len())
    }

    /// The values if the matrix is f32, `None` if it is quantized.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Matrix::F32(w) => Some(w),
            _ => None,
        }
    }

    /// Whether the storage is borrowed (from a checkpoint's bytes) rather than owned.
    pub fn is_borrowed(&self) -> bool {
        each_format!(self, w => matches!(w, Cow::Borrowed(_)), b => matches!(b, Cow::Borrowed(_)))
    }

    /// A borrowed view.
    pub fn view(&self) -> Matrix<'_> {
        each_format!(self, w => Matrix::F32(Cow::Borrowed(w)), b => Cow::Borrowed(&b[..]).into())
    }

    /// The same matrix owning its storage (copied if borrowed).
    pub fn into_owned(self) -> Matrix<'static> {
        each_format!(
            self,
            w => Matrix::F32(Cow::Owned(w.into_owned())),
            b => Cow::<[_]>::Owned(b.into_owned()).into()
        )
    }

    /// Store row-major values in format `f` (f32 or a block format; other element types store
    /// f32). Blocks never straddle rows when the row length is a multiple of 32, which callers
    /// check (`format_error`); the length must be one.
    pub fn quantize(x: &[f32], f: DType) -> Matrix<'static> {
        each_format!(f, B => {
            let mut b = vec![B::default(); x.len() / QK];
            B::quantize_row(x, &mut b);
            Cow::<[B]>::Owned(b).into()
        }, _ => Matrix::F32(Cow::Owned(x.to_vec())))
    }

    /// A block-format matrix over stored bytes (a whole number of blocks; borrowed when
    /// aligned), or `None` when `f` is not a block format.
    pub fn from_block_bytes(f: DType, bytes: &'a [u8]) -> Option<Matrix<'a>> {
        each_format!(f, B => Some(blocks_from_bytes::<B>(bytes).into()), _ => None)
    }

    /// The matrix as stored in a file: little-endian f32 values, or the blocks' bytes
    /// (borrowed on a little-endian target).
    pub fn stored_bytes(&self) -> Cow<'_, [u8]> {
        each_format!(self, w => f32_bytes(w), b => blocks_to_bytes(b))
    }

    /// Row `r` of a matrix with rows `cols` long, as f32.
    pub fn row_f32(&self, r: usize, cols: usize, out: &mut [f32]) {
        let range = r * cols..(r + 1) * cols;
        each_format!(
            self,
            w => out.copy_from_slice(&w[range]),
            b => Block::dequantize_row(&b[range.start / QK..range.end / QK], out)
        )
    }

    /// Every value as f32, in storage order.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.len()];
        each_format!(self, w => out.copy_from_slice(w), b => Block::dequantize_row(b, &mut out));
        out
    }
}

/// Keys [n, d_in] and values of one Pattention.
///
/// Values are [n, d_out] in f32, as the checkpoint names them. Quantized values are stored
/// transposed, [d_out, n], so that both products of decoding are row dot products over
/// streamed blocks: scores = K_P·x, then out = V_Pᵀ·Θ(scores).
#[derive(Clone, Debug, Default)]
pub struct PattentionWeights<'a> {
    /// Key parameter tokens K_P: [n, d_in].
    pub keys: Matrix<'a>,
    /// Value parameter tokens V_P: [n, d_out] in f32, [d_out, n] when quantized.
    pub values: Matrix<'a>,
}

impl PattentionWeights<'_> {
    /// The parameter-token count n, given the input width `d_in`.
    pub fn tokens(&self, d_in: usize) -> usize {
        self.keys.len() / d_in
    }
}

/// The five Pattentions of one layer.
#[derive(Clone, Debug, Default)]
pub struct LayerWeights<'a> {
    /// Query projection.
    pub q: PattentionWeights<'a>,
    /// Key projection.
    pub k: PattentionWeights<'a>,
    /// Value projection.
    pub v: PattentionWeights<'a>,
    /// Attention output projection.
    pub o: PattentionWeights<'a>,
    /// Feed-forward Pattention.
    pub ffn: PattentionWeights<'a>,
}

impl<'a> LayerWeights<'a> {
    /// The Pattention `p` of this layer.
    pub fn get(&self, p: Pattn) -> &PattentionWeights<'a> {
        match p {
            Pattn::Q => &self.q,
            Pattn::K => &self.k,
            Pattn::V => &self.v,
            Pattn::O => &self.o,
            Pattn::Ffn => &self.ffn,
        }
    }

    /// The Pattention `p` of this layer, mutably.
    pub fn get_mut(&mut self, p: Pattn) -> &mut PattentionWeights<'a> {
        match p {
            Pattn::Q => &mut self.q,
            Pattn::K => &mut self.k,
            Pattn::V => &mut self.v,
            Pattn::O => &mut self.o,
            Pattn::Ffn => &mut self.ffn,
        }
    }
}

/// A loaded, validated model ready to run.
#[derive(Clone, Debug)]
pub struct Model<'a> {
    /// The configuration the weights were validated against.
    pub config: Config,
    /// [vocab_size, d]; also the output head (tied). f32 or quantized by rows.
    pub embedding: Matrix<'a>,
    /// `n_layers` layers, in order.
    pub layers: Vec<LayerWeights<'a>>,
    /// Final LayerNorm gain: `[d]`.
    pub final_norm_weight: Weight<'a>,
    /// Final LayerNorm bias: `[d]`.
    pub final_norm_bias: Weight<'a>,
    /// Rotary frequencies, computed from the config (not stored in checkpoints).
    pub rope: RopeTable,
}

/// Why tensors could not be assembled into a model.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelError {
    /// The config does not validate.
    Config(ConfigError),
    /// Not one tensor per [`crate::layout`] entry.
    TensorCount {
        /// Tensors the config calls for.
        expected: usize,
        /// Tensors given.
        got: usize,
    },
    /// A tensor's element count does not match its shape under the config.
    Length {
        /// The tensor.
        name: String,
        /// Elements its shape under the config has.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// A tensor in a format its role cannot have (quantized norms, rows not whole blocks).
    Format {
        /// The tensor.
        name: String,
        /// The format it was given in.
        format: DType,
        /// Why that format is refused.
        reason: &'static str,
    },
    /// `quantize` was given a model that is already quantized.
    AlreadyQuantized,
}

impl core::fmt::Display for ModelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ModelError::Config(e) => write!(f, "{e}"),
            ModelError::TensorCount { expected, got } => {
                write!(f, "expected {expected} tensors, got {got}")
            }
            ModelError::Length {
                name,
                expected,
                got,
            } => {
                write!(
                    f,
                    "tensor `{name}` has {got} elements, the config needs {expected}"
                )
            }
            ModelError::Format {
                name,
                format,
                reason,
            } => write!(f, "tensor `{name}` cannot be {format}: {reason}"),
            ModelError::AlreadyQuantized => write!(
                f,
                "the model is already quantized; quantize an f32, f16 or bf16 checkpoint"
            ),
        }
    }
}

/// Why a matrix of this spec cannot be stored in `f` (None if it can).
pub fn format_error(spec: &TensorSpec, f: DType) -> Option<&'static str> {
    if f == DType::F32 {
        return None;
    }
    if spec.role.is_norm() {
        return Some("norms stay f32");
    }
    if !spec
        .stored_rows_cols()
        .1
        .is_multiple_of(f.info().block_values)
    {
        return Some("its stored rows are not a whole number of 32-value blocks");
    }
    None
}

impl<'a> Model<'a> {
    /// Assemble a model from f32 tensors given in `tensor_specs` order, checking every length.
    pub fn from_tensors(config: Config, tensors: Vec<Weight<'a>>) -> Result<Model<'a>, ModelError> {
        Model::from_matrices(config, tensors.into_iter().map(Matrix::F32).collect())
    }

    /// Assemble a model from matrices in `tensor_specs` order (quantized values transposed),
    /// checking every length and format.
    pub fn from_matrices(
        config: Config,
        tensors: Vec<Matrix<'a>>,
    ) -> Result<Model<'a>, ModelError> {
        config.validate().map_err(ModelError::Config)?;
        let expected = layout::count(config.n_layers).unwrap_or(usize::MAX);
        if expected != tensors.len() {
            return Err(ModelError::TensorCount {
                expected,
                got: tensors.len(),
            });
        }
        let mut model = Model {
            embedding: Matrix::default(),
            layers: vec![LayerWeights::default(); config.n_layers],
            final_norm_weight: Cow::Borrowed(&[]),
            final_norm_bias: Cow::Borrowed(&[]),
            rope: RopeTable::new(config.rotary_dims(), config.rotary_base),
            config,
        };
        for (s, t) in tensor_specs_iter(&model.config.clone()).zip(tensors) {
            let format = t.format();
            if let Some(reason) = format_error(&s, format) {
                return Err(ModelError::Format {
                    name: s.name,
                    format,
                    reason,
                });
            }
            if s.numel() != t.len() {
                return Err(ModelError::Length {
                    expected: s.numel(),
                    name: s.name,
                    got: t.len(),
                });
            }
            match (s.role, t) {
                (Role::FinalNormWeight, Matrix::F32(w)) => model.final_norm_weight = w,
                (Role::FinalNormBias, Matrix::F32(w)) => model.final_norm_bias = w,
                (r, t) => {
                    if let Some(m) = model.matrix_mut(r) {
                        *m = t;
                    }
                }
            }
        }
        Ok(model)
    }

    /// The embedding, key or value matrix of `role` (None for the norms).
    fn matrix_mut(&mut self, role: Role) -> Option<&mut Matrix<'a>> {
        match role {
            Role::Embedding => Some(&mut self.embedding),
            Role::Keys(l, p) => Some(&mut self.layers.get_mut(l)?.get_mut(p).keys),
            Role::Values(l, p) => Some(&mut self.layers.get_mut(l)?.get_mut(p).values),
            Role::FinalNormWeight | Role::FinalNormBias => None,
        }
    }

    fn matrix(&self, role: Role) -> Option<&Matrix<'a>> {
        match role {
            Role::Embedding => Some(&self.embedding),
            Role::Keys(l, p) => Some(&self.layers.get(l)?.get(p).keys),
            Role::Values(l, p) => Some(&self.layers.get(l)?.get(p).values),
            Role::FinalNormWeight | Role::FinalNormBias => None,
        }
    }

    /// The tensor of `role` as a borrowed view.
    pub fn tensor(&self, role: Role) -> Matrix<'_> {
        match role {
            Role::FinalNormWeight => Matrix::F32(Cow::Borrowed(&self.final_norm_weight)),
            Role::FinalNormBias => Matrix::F32(Cow::Borrowed(&self.final_norm_bias)),
            r => self.matrix(r).map(Matrix::view).unwrap_or_default(),
        }
    }

    /// The tensors in `tensor_specs` order, as borrowed views (for writing checkpoints and
    /// comparing models); quantized values are transposed (see [`PattentionWeights`]).
    pub fn tensors(&self) -> Vec<Matrix<'_>> {
        layout::roles(self.config.n_layers)
            .map(|r| self.tensor(r))
            .collect()
    }

    /// The embedding and every key and value matrix, in layout order.
    fn matrices(&self) -> Vec<&Matrix<'a>> {
        layout::roles(self.config.n_layers)
            .filter_map(|r| self.matrix(r))
            .collect()
    }

    /// Every tensor as f32 in `tensor_specs` order and logical layout (values [n, d]),
    /// dequantizing quantized ones.
    pub fn tensors_f32(&self) -> Vec<Vec<f32>> {
        tensor_specs_iter(&self.config)
            .map(|spec| {
                let m = self.tensor(spec.role);
                let x = m.to_f32();
                if m.format() != DType::F32 && spec.role.transposed_when_quantized() {
                    transpose(&x, spec.shape[1], spec.shape[0])
                } else {
                    x
                }
            })
            .collect()
    }

    /// A copy that owns all of its weights.
    pub fn into_owned(self) -> Model<'static> {
        let own = |w: Weight<'a>| -> Weight<'static> { Cow::Owned(w.into_owned()) };
        let pw = |p: PattentionWeights<'a>| PattentionWeights {
            keys: p.keys.into_owned(),
            values: p.values.into_owned(),
        };
        Model {
            config: self.config,
            embedding: self.embedding.into_owned(),
            layers: self
                .layers
                .into_iter()
                .map(|l| LayerWeights {
                    q: pw(l.q),
                    k: pw(l.k),
                    v: pw(l.v),
                    o: pw(l.o),
                    ffn: pw(l.ffn),
                })
                .collect(),
            final_norm_weight: own(self.final_norm_weight),
            final_norm_bias: own(self.final_norm_bias),
            rope: self.rope,
        }
    }

    /// How many weight bytes are borrowed from the file (not copied).
    pub fn borrowed_bytes(&self) -> usize {
        let norms = [&self.final_norm_weight, &self.final_norm_bias]
            .iter()
            .filter(|w| matches!(w, Cow::Borrowed(_)))
            .map(|w| w.len() * 4)
            .sum::<usize>();
        self.matrices()
            .iter()
            .filter(|m| m.is_borrowed())
            .map(|m| m.bytes())
            .sum::<usize>()
            + norms
    }

    /// Bytes of every weight: what one decoded token streams from memory (the tied embedding is
    /// read whole by the logits, one of its rows by the lookup).
    pub fn weight_bytes(&self) -> usize {
        self.matrices().iter().map(|m| m.bytes()).sum::<usize>()
            + 4 * (self.final_norm_weight.len() + self.final_norm_bias.len())
    }

    /// A copy with the embedding in `embedding` and every key and value matrix in `layers`.
    /// Values are transposed into [d_out, n] rows. A matrix whose stored rows are not whole
    /// 32-value blocks (only tiny test models have such) stays f32.
    pub fn quantize(&self, layers: DType, embedding: DType) -> Result<Model<'static>, ModelError> {
        if self.matrices().iter().any(|m| m.format() != DType::F32) {
            return Err(ModelError::AlreadyQuantized);
        }
        let specs = tensor_specs(&self.config);
        let mut out = Vec::with_capacity(specs.len());
        for (spec, m) in specs.iter().zip(self.matrices()) {
            let x = m.as_f32().unwrap_or(&[]);
            let f = if spec.role == Role::Embedding {
                embedding
            } else {
                layers
            };
            let q = if format_error(spec, f).is_some() {
                Matrix::F32(Cow::Owned(x.to_vec()))
            } else if f != DType::F32 && spec.role.transposed_when_quantized() {
                Matrix::quantize(&transpose(x, spec.shape[0], spec.shape[1]), f)
            } else {
                Matrix::quantize(x, f)
            };
            out.push(q);
        }
        // matrices() stops before the norms, which stay f32.
        out.push(Matrix::F32(Cow::Owned(self.final_norm_weight.to_vec())));
        out.push(Matrix::F32(Cow::Owned(self.final_norm_bias.to_vec())));
        Model::from_matrices(self.config.clone(), out)
    }

    /// The token count whose √ scales the scores of Pattention `p` (see
    /// [`Config::scale_tokens`]).
    pub fn scale_tokens(&self, p: Pattn) -> usize {
        self.config.scale_tokens(p.kind())
    }
}

/// [rows, cols] → [cols, rows].
pub fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; x.len()];
    for (r, row) in x.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = v;
        }
    }
    t
}

/// Little-endian bytes of f32 values: the values themselves on a little-endian target.
fn f32_bytes(x: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: u8 has no alignment or validity requirements and the length covers exactly
        // the f32 slice, which on a little-endian target is its file layout.
        return Cow::Borrowed(unsafe {
            core::slice::from_raw_parts(x.as_ptr().cast::<u8>(), x.len() * 4)
        });
    }
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}
