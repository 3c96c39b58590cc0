//! Element types, one enum for all of them: what a checkpoint tensor stores (safetensors'
//! dtype names), what a torch storage holds (its class name), and the block formats a weight
//! matrix may be quantized to. Each fact about a type lives in its row of [`DType::TABLE`].

/// An element type or block format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE half precision (widened to f32 at load).
    F16,
    /// bfloat16 (widened to f32 at load).
    BF16,
    /// 64-bit float (torch files only; never a weight format).
    F64,
    /// 64-bit signed integer.
    I64,
    /// 32-bit signed integer.
    I32,
    /// 16-bit signed integer.
    I16,
    /// 8-bit signed integer.
    I8,
    /// Byte: also the safetensors dtype of quantized blocks.
    U8,
    /// Boolean, one byte.
    Bool,
    /// ggml's Q8_0: 32 values in 34 bytes.
    Q8_0,
    /// ggml's Q4_0: 32 values in 18 bytes.
    Q4_0,
}

/// One row of the table: everything the code needs to know about a type.
#[derive(Clone, Copy, Debug)]
pub struct DTypeInfo {
    /// The type this row describes.
    pub dtype: DType,
    /// The name users type and files store for block formats (`f32`, `q8_0`).
    pub name: &'static str,
    /// The safetensors dtype string, for plain element types.
    pub safetensors: Option<&'static str>,
    /// The torch storage class (`FloatStorage`), for types torch.save writes.
    pub torch: Option<&'static str>,
    /// Values per block (1 for plain element types).
    pub block_values: usize,
    /// Bytes per block (the element size for plain types).
    pub block_bytes: usize,
}

const fn row(
    dtype: DType,
    name: &'static str,
    safetensors: Option<&'static str>,
    torch: Option<&'static str>,
    block_values: usize,
    block_bytes: usize,
) -> DTypeInfo {
    DTypeInfo {
        dtype,
        name,
        safetensors,
        torch,
        block_values,
        block_bytes,
    }
}

impl DType {
    /// Every type's facts, in declaration order (indexed by `DType as usize`).
    pub const TABLE: [DTypeInfo; 12] = [
        row(DType::F32, "f32", Some("F32"), Some("FloatStorage"), 1, 4),
        row(DType::F16, "f16", Some("F16"), Some("HalfStorage"), 1, 2),
        row(
            DType::BF16,
            "bf16",
            Some("BF16"),
            Some("BFloat16Storage"),
            1,
            2,
        ),
        row(DType::F64, "f64", Some("F64"), Some("DoubleStorage"), 1, 8),
        row(DType::I64, "i64", Some("I64"), Some("LongStorage"), 1, 8),
        row(DType::I32, "i32", Some("I32"), Some("IntStorage"), 1, 4),
        row(DType::I16, "i16", Some("I16"), Some("ShortStorage"), 1, 2),
        row(DType::I8, "i8", Some("I8"), Some("CharStorage"), 1, 1),
        row(DType::U8, "u8", Some("U8"), Some("ByteStorage"), 1, 1),
        row(DType::Bool, "bool", Some("BOOL"), Some("BoolStorage"), 1, 1),
        row(DType::Q8_0, "q8_0", None, None, 32, 34),
        row(DType::Q4_0, "q4_0", None, None, 32, 18),
    ];

    /// This type's row of [`DType::TABLE`].
    pub fn info(self) -> &'static DTypeInfo {
        // The table is in declaration order.
        &Self::TABLE[self as usize]
    }

    /// The user-facing name (`f32`, `q8_0`), as [`DType::parse`] reads it.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    fn find(pred: impl Fn(&DTypeInfo) -> bool) -> Option<DType> {
        Self::TABLE.iter().find(|r| pred(r)).map(|r| r.dtype)
    }

    /// By user-facing name, case-insensitive (`f32`, `Q8_0`).
    pub fn parse(s: &str) -> Option<DType> {
        Self::find(|r| r.name.eq_ignore_ascii_case(s))
    }

    /// By safetensors dtype string (`F32`, `BF16`).
    pub fn from_safetensors(s: &str) -> Option<DType> {
        Self::find(|r| r.safetensors == Some(s))
    }

    /// By torch storage class name (`FloatStorage`).
    pub fn from_torch_class(s: &str) -> Option<DType> {
        Self::find(|r| r.torch == Some(s))
    }

    /// Whether values come in blocks of more than one (the quantized formats).
    pub fn is_block(self) -> bool {
        self.info().block_values > 1
    }

    /// Bytes of `values` values (a multiple of the block size for block formats).
    pub fn bytes_for(self, values: usize) -> usize {
        let i = self.info();
        values / i.block_values * i.block_bytes
    }
}

impl core::fmt::Display for DType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_declaration_order_and_names_round_trip() {
        for (i, r) in DType::TABLE.iter().enumerate() {
            assert_eq!(r.dtype as usize, i);
            assert_eq!(DType::parse(r.name), Some(r.dtype));
            if let Some(s) = r.safetensors {
                assert_eq!(DType::from_safetensors(s), Some(r.dtype));
            }
            if let Some(t) = r.torch {
                assert_eq!(DType::from_torch_class(t), Some(r.dtype));
            }
        }
        assert_eq!(DType::Q4_0.bytes_for(64), 36);
        assert_eq!(DType::BF16.bytes_for(3), 6);
    }
}
