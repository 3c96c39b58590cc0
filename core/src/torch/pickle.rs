//! A bounded reader for the pickles `torch.save` writes for a state dict.
//!
//! This is not a Python unpickler: it knows the opcodes of protocols 2–5 that such a pickle uses
//! and a closed list of globals (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter` and the typed `torch.*Storage` classes), each interpreted
//! here as data. Any other opcode or global is refused with an error naming it, so loading a file
//! never runs anything. Memory is bounded by the input: every value created or copied is charged
//! to a budget proportional to the pickle's length, and containers nest at most `MAX_DEPTH` deep.

use crate::dtype::DType;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// Containers nested deeper than this are refused (a state dict needs 4).
pub const MAX_DEPTH: u8 = 32;
/// Budget units per input byte: one unit is one value or one string byte.
const BUDGET_PER_BYTE: usize = 8;
const BUDGET_BASE: usize = 1 << 12;

/// A storage named by a persistent id: its bytes are the zip entry `{archive}/data/{key}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Storage {
    /// Element type, from the storage class (`FloatStorage` → f32).
    pub dtype: DType,
    /// The storage's key: its bytes are the archive's `data/{key}` entry.
    pub key: String,
    /// The device it was saved from (`cpu`, `cuda:0`); informational.
    pub location: String,
    /// Elements the storage holds, as recorded in the pickle.
    pub numel: u64,
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`: a strided view of a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// The storage viewed.
    pub storage: Storage,
    /// Offset into the storage, in elements.
    pub offset: u64,
    /// Logical shape.
    pub shape: Vec<u64>,
    /// Strides in elements.
    pub stride: Vec<u64>,
}

/// The globals this reader accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter`.
    RebuildParameter,
    /// A `torch.*Storage` class, by element type.
    Storage(DType),
}

impl Global {
    fn resolve(module: &str, name: &str) -> Option<Global> {
        match (module, name) {
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("torch", n) => DType::from_torch_class(n).map(Global::Storage),
            _ => None,
        }
    }
}

/// Containers carry their nesting depth so building one is O(1) in its children's depth.
#[derive(Clone, Debug, PartialEq)]
pub struct Seq<T> {
    /// The elements, in order.
    pub items: Vec<T>,
    depth: u8,
}

impl<T> Seq<T> {
    fn empty() -> Seq<T> {
        Seq {
            items: Vec::new(),
            depth: 1,
        }
    }
}

/// A value on the unpickler's stack: the Python values a state dict is made of.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Python `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An int that fits in i64.
    Int(i64),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// A tuple.
    Tuple(Seq<Value>),
    /// A list.
    List(Seq<Value>),
    /// dict or OrderedDict: pairs in insertion order.
    Dict(Seq<(Value, Value)>),
    /// One of the accepted globals.
    Global(Global),
    /// A storage named by a persistent id.
    Storage(Storage),
    /// A rebuilt tensor (a view of a storage).
    Tensor(TensorRef),
}

impl Value {
    fn depth(&self) -> u8 {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(s) => s.depth,
            _ => 0,
        }
    }

    /// Budget units of a copy: values plus string bytes (recursion bounded by `MAX_DEPTH`).
    fn cost(&self) -> usize {
        1 + match self {
            Value::Str(s) => s.len(),
            Value::Tuple(s) | Value::List(s) => s.items.iter().map(Value::cost).sum(),
            Value::Dict(s) => s.items.iter().map(|(k, v)| k.cost() + v.cost()).sum(),
            Value::Storage(s) => s.key.len() + s.location.len(),
            Value::Tensor(t) => t.storage.key.len() + t.storage.location.len() + 2 * t.shape.len(),
            _ => 0,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// Why a pickle was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum PickleError {
    /// A byte that is not an opcode of any protocol.
    UnknownOpcode {
        /// The byte.
        opcode: u8,
        /// Its offset in the pickle.
        offset: usize,
    },
    /// A global other than those a state dict needs ([`Global`]).
    ForbiddenGlobal {
        /// Its module.
        module: String,
        /// Its name.
        name: String,
        /// Offset in the pickle.
        offset: usize,
    },
    /// A pickle protocol past 5.
    UnsupportedProtocol(u8),
    /// The input ends inside an opcode's argument.
    Truncated {
        /// Offset in the pickle.
        offset: usize,
    },
    /// The pickle ends without STOP.
    NoStop,
    /// An opcode found too few values on the stack.
    StackUnderflow {
        /// The opcode's byte.
        opcode: u8,
        /// Offset in the pickle.
        offset: usize,
    },
    /// An opcode that needs a MARK found none.
    NoMark {
        /// Offset in the pickle.
        offset: usize,
    },
    /// A memo index that was never stored.
    MemoMissing {
        /// The index.
        index: u32,
        /// Offset in the pickle.
        offset: usize,
    },
    /// A string that is not UTF-8.
    BadString {
        /// Offset in the pickle.
        offset: usize,
    },
    /// Containers nested deeper than [`MAX_DEPTH`].
    TooDeep {
        /// Offset in the pickle.
        offset: usize,
    },
    /// The values built or copied exceed the budget the input's size allows.
    TooLarge {
        /// Offset in the pickle.
        offset: usize,
    },
    /// An opcode applied to a value of the wrong kind (e.g. SETITEMS on a list).
    WrongType {
        /// The opcode's byte.
        opcode: u8,
        /// The kind it needs.
        expected: &'static str,
        /// The kind it found.
        got: &'static str,
        /// Offset in the pickle.
        offset: usize,
    },
    /// Arguments of a known global that are not what torch.save writes.
    BadArguments {
        /// The global called.
        call: &'static str,
        /// What is wrong with its arguments.
        reason: &'static str,
        /// Offset in the pickle.
        offset: usize,
    },
    /// A persistent id that is not a storage tuple.
    BadPersistentId {
        /// Offset in the pickle.
        offset: usize,
    },
    /// The pickle's result is not a dict of name → tensor.
    NotStateDict {
        /// Why not.
        reason: String,
    },
    /// A state-dict key that occurs twice.
    DuplicateKey(String),
}

macro_rules! opcodes {
    ($($name:ident = $byte:literal,)*) => {
        /// Every pickle opcode of protocols 0 to 5, so that an error names even one this reader
        /// refuses; `Machine::run` executes the few a state dict needs.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum OpCode {
            $(#[doc = concat!("`", stringify!($name), "` (", stringify!($byte), ").")] $name,)*
        }

        impl OpCode {
            /// The opcode of byte `b`, `None` if no protocol defines it.
            pub fn from_byte(b: u8) -> Option<OpCode> {
                match b {
                    $($byte => Some(OpCode::$name),)*
                    _ => None,
                }
            }

            /// The opcode's name in the pickle spec (`BINUNICODE`).
            pub fn name(self) -> &'static str {
                match self {
                    $(OpCode::$name => stringify!($name),)*
                }
            }
        }
    };
}

opcodes! {
    MARK = b'(',
    STOP = b'.',
    POP = b'0',
    POP_MARK = b'1',
    DUP = b'2',
    FLOAT = b'F',
    INT = b'I',
    BININT = b'J',
    BININT1 = b'K',
    LONG = b'L',
    BININT2 = b'M',
    NONE = b'N',
    PERSID = b'P',
    BINPERSID = b'Q',
    REDUCE = b'R',
    STRING = b'S',
    BINSTRING = b'T',
    SHORT_BINSTRING = b'U',
    UNICODE = b'V',
    BINUNICODE = b'X',
    APPEND = b'a',
    BUILD = b'b',
    GLOBAL = b'c',
    DICT = b'd',
    EMPTY_DICT = b'}',
    APPENDS = b'e',
    GET = b'g',
    BINGET = b'h',
    INST = b'i',
    LONG_BINGET = b'j',
    LIST = b'l',
    EMPTY_LIST = b']',
    OBJ = b'o',
    PUT = b'p',
    BINPUT = b'q',
    LONG_BINPUT = b'r',
    SETITEM = b's',
    TUPLE = b't',
    EMPTY_TUPLE = b')',
    SETITEMS = b'u',
    BINFLOAT = b'G',
    PROTO = 0x80,
    NEWOBJ = 0x81,
    EXT1 = 0x82,
    EXT2 = 0x83,
    EXT4 = 0x84,
    TUPLE1 = 0x85,
    TUPLE2 = 0x86,
    TUPLE3 = 0x87,
    NEWTRUE = 0x88,
    NEWFALSE = 0x89,
    LONG1 = 0x8a,
    LONG4 = 0x8b,
    BINBYTES = b'B',
    SHORT_BINBYTES = b'C',
    SHORT_BINUNICODE = 0x8c,
    BINUNICODE8 = 0x8d,
    BINBYTES8 = 0x8e,
    EMPTY_SET = 0x8f,
    ADDITEMS = 0x90,
    FROZENSET = 0x91,
    NEWOBJ_EX = 0x92,
    STACK_GLOBAL = 0x93,
    MEMOIZE = 0x94,
    FRAME = 0x95,
    BYTEARRAY8 = 0x96,
    NEXT_BUFFER = 0x97,
    READONLY_BUFFER = 0x98,
}

/// The opcode's name, for errors.
fn opcode_name(op: u8) -> &'static str {
    OpCode::from_byte(op).map_or("not a pickle opcode", OpCode::name)
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PickleError::*;
        match self {
            UnknownOpcode { opcode: o, offset } => {
                let (n, c) = (opcode_name(*o), if o.is_ascii_graphic() { *o as char } else { '?' });
                write!(
                    f,
                    "pickle opcode {n} (0x{o:02x} '{c}') at byte {offset} is not one torch.save uses for a state dict; refused"
                )
            }
            ForbiddenGlobal { module, name, offset } => write!(
                f,
                "pickle global `{module}.{name}` at byte {offset} is not allowed (only OrderedDict, _rebuild_tensor_v2, _rebuild_parameter and torch storages); nothing was executed"
            ),
            UnsupportedProtocol(p) => write!(f, "pickle protocol {p} is not supported (2 to 5)"),
            Truncated { offset } => write!(f, "pickle truncated at byte {offset}"),
            NoStop => write!(f, "pickle ends without STOP"),
            StackUnderflow { opcode, offset } => {
                write!(f, "pickle opcode {} at byte {offset} finds too few values on the stack", opcode_name(*opcode))
            }
            NoMark { offset } => write!(f, "pickle at byte {offset} needs a MARK that is not there"),
            MemoMissing { index, offset } => write!(f, "pickle at byte {offset} reads memo {index}, never stored"),
            BadString { offset } => write!(f, "pickle string at byte {offset} is not UTF-8"),
            TooDeep { offset } => write!(f, "pickle containers nest deeper than {MAX_DEPTH} at byte {offset}"),
            TooLarge { offset } => write!(
                f,
                "pickle at byte {offset} builds more values than its size can justify; refused"
            ),
            WrongType { opcode, expected, got, offset } => write!(
                f,
                "pickle opcode {} at byte {offset} needs a {expected}, found a {got}",
                opcode_name(*opcode)
            ),
            BadArguments { call, reason, offset } => write!(f, "pickle call to {call} at byte {offset}: {reason}"),
            BadPersistentId { offset } => write!(
                f,
                "pickle persistent id at byte {offset} is not ('storage', torch.*Storage, key, location, numel)"
            ),
            NotStateDict { reason } => write!(f, "the pickle is not a state dict: {reason}"),
            DuplicateKey(k) => write!(f, "the state dict has `{k}` twice"),
        }
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed, for errors.
    at: usize,
    op: u8,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: BTreeMap<u32, Value>,
    budget: usize,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(PickleError::Truncated { offset: self.pos })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn charge(&mut self, units: usize) -> Result<(), PickleError> {
        self.budget = self
            .budget
            .checked_sub(units)
            .ok_or(PickleError::TooLarge { offset: self.at })?;
        Ok(())
    }

    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        self.charge(1)?;
        self.stack.push(v);
        Ok(())
    }

    fn underflow(&self) -> PickleError {
        PickleError::StackUnderflow {
            opcode: self.op,
            offset: self.at,
        }
    }

    /// Values above the innermost mark belong to it; reaching past it is an underflow.
    fn above_mark(&self) -> Result<(), PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        (self.stack.len() > floor)
            .then_some(())
            .ok_or_else(|| self.underflow())
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        self.above_mark()?;
        Ok(self.stack.pop().unwrap_or(Value::None))
    }

    /// The last `n` values, in stack order.
    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>, PickleError> {
        let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
        items.reverse();
        Ok(items)
    }

    /// The value on top of the stack, which must not belong to an open MARK.
    fn top(&mut self) -> Result<&mut Value, PickleError> {
        self.above_mark()?;
        let e = self.underflow();
        self.stack.last_mut().ok_or(e)
    }

    /// Everything above the innermost MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let m = self
            .marks
            .pop()
            .ok_or(PickleError::NoMark { offset: self.at })?;
        Ok(self.stack.split_off(m))
    }

    fn string(&mut self, n: u64) -> Result<(), PickleError> {
        let at = self.pos;
        let n = usize::try_from(n).map_err(|_| PickleError::Truncated { offset: at })?;
        let b = self.take(n)?;
        self.charge(n)?;
        let s = core::str::from_utf8(b).map_err(|_| PickleError::BadString { offset: at })?;
        self.push(Value::Str(s.to_string()))
    }

    fn seq(&self, items: Vec<Value>) -> Result<Seq<Value>, PickleError> {
        let depth = items.iter().map(Value::depth).max().unwrap_or(0) + 1;
        if depth > MAX_DEPTH {
            return Err(PickleError::TooDeep { offset: self.at });
        }
        Ok(Seq { items, depth })
    }

    fn tuple(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let s = self.seq(items)?;
        self.push(Value::Tuple(s))
    }

    fn wrong(&self, expected: &'static str, got: &Value) -> PickleError {
        PickleError::WrongType {
            opcode: self.op,
            expected,
            got: got.kind(),
            offset: self.at,
        }
    }

    /// Append to the list under the values, or insert pairs into the dict under them.
    fn extend_top(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let Seq { items, depth } = self.seq(items)?;
        let is_dict = matches!(self.op, b's' | b'u');
        if is_dict && !items.len().is_multiple_of(2) {
            return Err(self.underflow());
        }
        match (self.top()?, is_dict) {
            (Value::List(l), false) => {
                l.depth = l.depth.max(depth);
                l.items.extend(items);
            }
            (Value::Dict(d), true) => {
                d.depth = d.depth.max(depth);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.items.push((k, v));
                }
            }
            (other, dict) => {
                let other = other.clone();
                return Err(self.wrong(if dict { "dict" } else { "list" }, &other));
            }
        }
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), PickleError> {
        let g = Global::resolve(module, name).ok_or_else(|| PickleError::ForbiddenGlobal {
            module: module.into(),
            name: name.into(),
            offset: self.at,
        })?;
        self.push(Value::Global(g))
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated { offset: self.pos })?;
        let at = self.pos;
        let s =
            core::str::from_utf8(&rest[..n]).map_err(|_| PickleError::BadString { offset: at })?;
        self.pos += n + 1;
        Ok(s)
    }

    fn memo_get(&mut self, index: u32) -> Result<(), PickleError> {
        let v = self.memo.get(&index).ok_or(PickleError::MemoMissing {
            index,
            offset: self.at,
        })?;
        let cost = v.cost();
        let v = v.clone();
        self.charge(cost)?;
        self.push(v)
    }

    fn memo_put(&mut self, index: u32) -> Result<(), PickleError> {
        let v = self.top()?.clone();
        // Copies are what a hostile pickle could multiply: each one is paid for.
        self.charge(v.cost())?;
        self.memo.insert(index, v);
        Ok(())
    }

    fn persistent(&mut self) -> Result<(), PickleError> {
        let pid = self.pop()?;
        let bad = PickleError::BadPersistentId { offset: self.at };
        let Value::Tuple(t) = pid else {
            return Err(bad);
        };
        let storage = match t.items.as_slice() {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(location), Value::Int(numel)]
                if tag == "storage" && *numel >= 0 =>
            {
                Storage {
                    dtype: *dtype,
                    key: key.clone(),
                    location: location.clone(),
                    numel: *numel as u64,
                }
            }
            _ => return Err(bad),
        };
        self.push(Value::Storage(storage))
    }

    fn reduce(&mut self) -> Result<(), PickleError> {
        let args = self.pop()?;
        let f = self.pop()?;
        let at = self.at;
        let Value::Tuple(args) = args else {
            return Err(self.wrong("tuple of arguments", &args));
        };
        let Value::Global(g) = f else {
            return Err(self.wrong("global to call", &f));
        };
        let bad = |call, reason| PickleError::BadArguments {
            call,
            reason,
            offset: at,
        };
        let v = match g {
            Global::OrderedDict => {
                if !args.items.is_empty() {
                    return Err(bad("OrderedDict", "expected no arguments"));
                }
                Value::Dict(Seq::empty())
            }
            Global::RebuildTensorV2 => {
                const CALL: &str = "_rebuild_tensor_v2";
                let a = args.items;
                if !(a.len() == 6 || a.len() == 7) {
                    return Err(bad(CALL, "expected 6 or 7 arguments"));
                }
                let mut a = a.into_iter();
                let storage = match a.next() {
                    Some(Value::Storage(s)) => s,
                    _ => return Err(bad(CALL, "argument 1 is not a storage")),
                };
                let offset = match a.next() {
                    Some(Value::Int(o)) if o >= 0 => o as u64,
                    _ => return Err(bad(CALL, "storage offset is not a non-negative int")),
                };
                let ints = |v: Option<Value>| -> Option<Vec<u64>> {
                    match v {
                        Some(Value::Tuple(t)) => t
                            .items
                            .iter()
                            .map(|x| match x {
                                Value::Int(i) if *i >= 0 => Some(*i as u64),
                                _ => None,
                            })
                            .collect(),
                        _ => None,
                    }
                };
                let shape =
                    ints(a.next()).ok_or(bad(CALL, "size is not a tuple of non-negative ints"))?;
                let stride = ints(a.next())
                    .ok_or(bad(CALL, "stride is not a tuple of non-negative ints"))?;
                if shape.len() != stride.len() {
                    return Err(bad(CALL, "size and stride differ in length"));
                }
                if !matches!(a.next(), Some(Value::Bool(_))) {
                    return Err(bad(CALL, "requires_grad is not a bool"));
                }
                match a.next() {
                    Some(Value::Dict(h)) if h.items.is_empty() => {}
                    _ => return Err(bad(CALL, "backward hooks are not an empty OrderedDict")),
                }
                if !matches!(a.next(), None | Some(Value::None) | Some(Value::Dict(_))) {
                    return Err(bad(CALL, "metadata is not a dict"));
                }
                Value::Tensor(TensorRef {
                    storage,
                    offset,
                    shape,
                    stride,
                })
            }
            Global::RebuildParameter => {
                const CALL: &str = "_rebuild_parameter";
                match <[Value; 3]>::try_from(args.items) {
                    Ok([Value::Tensor(t), Value::Bool(_), Value::Dict(h)])
                        if h.items.is_empty() =>
                    {
                        Value::Tensor(t)
                    }
                    _ => return Err(bad(CALL, "expected (tensor, requires_grad, empty hooks)")),
                }
            }
            Global::Storage(_) => {
                return Err(bad(
                    "a torch storage class",
                    "storages are only named by persistent ids",
                ))
            }
        };
        self.push(v)
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            self.at = self.pos;
            let op = match self.take(1) {
                Ok(b) => b[0],
                Err(_) => return Err(PickleError::NoStop),
            };
            self.op = op;
            let Some(code) = OpCode::from_byte(op) else {
                return Err(PickleError::UnknownOpcode {
                    opcode: op,
                    offset: self.at,
                });
            };
            match code {
                OpCode::PROTO => {
                    let p = self.u8()?;
                    if !(2..=5).contains(&p) {
                        return Err(PickleError::UnsupportedProtocol(p));
                    }
                }
                OpCode::FRAME => _ = self.take(8)?, // a length hint only
                OpCode::STOP => return self.pop(),
                OpCode::MARK => {
                    self.charge(1)?;
                    self.marks.push(self.stack.len());
                }
                OpCode::EMPTY_TUPLE => self.tuple(Vec::new())?,
                OpCode::TUPLE => {
                    let items = self.pop_mark()?;
                    self.tuple(items)?
                }
                OpCode::TUPLE1 | OpCode::TUPLE2 | OpCode::TUPLE3 => {
                    let items = self.pop_n((op - 0x84) as usize)?;
                    self.tuple(items)?
                }
                OpCode::EMPTY_LIST => self.push(Value::List(Seq::empty()))?,
                OpCode::EMPTY_DICT => self.push(Value::Dict(Seq::empty()))?,
                OpCode::APPEND | OpCode::SETITEM => {
                    let items = self.pop_n(if code == OpCode::APPEND { 1 } else { 2 })?;
                    self.extend_top(items)?
                }
                OpCode::APPENDS | OpCode::SETITEMS => {
                    let items = self.pop_mark()?;
                    self.extend_top(items)?
                }
                OpCode::NONE => self.push(Value::None)?,
                OpCode::NEWTRUE => self.push(Value::Bool(true))?,
                OpCode::NEWFALSE => self.push(Value::Bool(false))?,
                OpCode::BININT | OpCode::BININT1 | OpCode::BININT2 => {
                    let v = match code {
                        OpCode::BININT => i32::from_le_bytes(self.le()?).into(),
                        OpCode::BININT1 => self.u8()?.into(),
                        _ => u16::from_le_bytes(self.le()?).into(),
                    };
                    self.push(Value::Int(v))?
                }
                OpCode::LONG1 => {
                    // LONG1: n bytes of little-endian two's complement; up to 8 fit an i64.
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err(PickleError::BadArguments {
                            call: "LONG1",
                            reason: "integer wider than 64 bits",
                            offset: self.at,
                        });
                    }
                    let b = self.take(n)?;
                    let mut x = [0u8; 8];
                    x[..n].copy_from_slice(b);
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        x[n..].fill(0xff);
                    }
                    self.push(Value::Int(i64::from_le_bytes(x)))?
                }
                OpCode::BINFLOAT => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Value::Float(v))?
                }
                OpCode::SHORT_BINUNICODE | OpCode::BINUNICODE | OpCode::BINUNICODE8 => {
                    let n = match code {
                        OpCode::SHORT_BINUNICODE => self.u8()?.into(),
                        OpCode::BINUNICODE => u32::from_le_bytes(self.le()?).into(),
                        _ => u64::from_le_bytes(self.le()?),
                    };
                    self.string(n)?
                }
                OpCode::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?
                }
                OpCode::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&module, &name) {
                        (Value::Str(m), Value::Str(n)) => {
                            let (m, n) = (m.clone(), n.clone());
                            self.global(&m, &n)?
                        }
                        _ => return Err(self.wrong("module and name strings", &module)),
                    }
                }
                OpCode::BINPUT | OpCode::LONG_BINPUT | OpCode::MEMOIZE => {
                    let i = match code {
                        OpCode::BINPUT => self.u8()?.into(),
                        OpCode::LONG_BINPUT => u32::from_le_bytes(self.le()?),
                        _ => u32::try_from(self.memo.len()).unwrap_or(u32::MAX),
                    };
                    self.memo_put(i)?
                }
                OpCode::BINGET | OpCode::LONG_BINGET => {
                    let i = match code {
                        OpCode::BINGET => self.u8()?.into(),
                        _ => u32::from_le_bytes(self.le()?),
                    };
                    self.memo_get(i)?
                }
                OpCode::BINPERSID => self.persistent()?,
                OpCode::REDUCE => self.reduce()?,
                OpCode::BUILD => {
                    // BUILD on a state dict sets attributes such as `_metadata` (module versions):
                    // nothing a converter needs, so the state is checked to be data and dropped.
                    let state = self.pop()?;
                    let top = self.top()?;
                    if !matches!(top, Value::Dict(_)) {
                        let top = top.clone();
                        return Err(self.wrong("dict to BUILD", &top));
                    }
                    if !matches!(state, Value::Dict(_) | Value::None) {
                        return Err(self.wrong("dict of attributes", &state));
                    }
                }
                _ => {
                    return Err(PickleError::UnknownOpcode {
                        opcode: op,
                        offset: self.at,
                    })
                }
            }
        }
    }
}

/// Run a pickle and return its result (a data value; nothing is executed).
pub fn parse(data: &[u8]) -> Result<Value, PickleError> {
    let budget = data
        .len()
        .saturating_mul(BUDGET_PER_BYTE)
        .saturating_add(BUDGET_BASE);
    let mut m = Machine {
        data,
        pos: 0,
        at: 0,
        op: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: BTreeMap::new(),
        budget,
    };
    m.run()
}

/// A `torch.save`d state dict: (name, tensor) in file order, names unique.
pub fn state_dict(data: &[u8]) -> Result<Vec<(String, TensorRef)>, PickleError> {
    let Value::Dict(d) = parse(data)? else {
        return Err(PickleError::NotStateDict {
            reason: "the top-level value is not a dict".into(),
        });
    };
    let mut seen = BTreeMap::new();
    let mut out = Vec::with_capacity(d.items.len());
    for (k, v) in d.items {
        let (Value::Str(k), Value::Tensor(t)) = (k, v) else {
            return Err(PickleError::NotStateDict {
                reason: "an entry is not a string key with a tensor value".into(),
            });
        };
        if seen.insert(k.clone(), ()).is_some() {
            return Err(PickleError::DuplicateKey(k));
        }
        out.push((k, t));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn tensor_pickle(proto: u8) -> Vec<u8> {
        // {'w': _rebuild_parameter(_rebuild_tensor_v2(storage, 2, (2, 3), (1, 2), False, OrderedDict()), True, OrderedDict())}
        // written with protocol-4 opcodes (FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE).
        let mut p = vec![0x80, proto, 0x95];
        p.extend_from_slice(&0u64.to_le_bytes());
        p.push(b'}');
        p.push(0x94);
        p.extend_from_slice(b"\x8c\x01w");
        p.extend_from_slice(b"\x8c\x0ctorch._utils\x8c\x12_rebuild_parameter\x93");
        p.extend_from_slice(b"\x8c\x0ctorch._utils\x8c\x12_rebuild_tensor_v2\x93\x94(");
        p.extend_from_slice(
            b"(\x8c\x07storage\x8c\x05torch\x8c\x0bHalfStorage\x93\x8c\x010\x8c\x03cpu",
        );
        p.extend_from_slice(b"\x8a\x01\x08tQ"); // numel 8 as LONG1
        p.extend_from_slice(b"K\x02K\x02K\x03\x86K\x01K\x02\x86\x89");
        p.extend_from_slice(b"\x8c\x0bcollections\x8c\x0bOrderedDict\x93\x94)R");
        p.extend_from_slice(b"tR"); // the tensor
        p.extend_from_slice(b"\x88h\x02)R\x87R"); // _rebuild_parameter(t, True, OrderedDict())
        p.extend_from_slice(b"s.");
        p
    }

    #[test]
    fn reads_protocol_4_and_parameters() {
        for proto in [2, 4, 5] {
            let d = state_dict(&tensor_pickle(proto)).unwrap();
            assert_eq!(d.len(), 1);
            let (name, t) = &d[0];
            assert_eq!(name, "w");
            assert_eq!(t.storage.dtype, DType::F16);
            assert_eq!((t.storage.key.as_str(), t.storage.numel), ("0", 8));
            assert_eq!(
                (t.offset, &t.shape[..], &t.stride[..]),
                (2, &[2, 3][..], &[1, 2][..])
            );
        }
        assert_eq!(
            state_dict(&tensor_pickle(1)),
            Err(PickleError::UnsupportedProtocol(1))
        );
    }

    #[test]
    fn integers_decode_as_python_does() {
        for (bytes, want) in [
            (&b"\x80\x02J\xff\xff\xff\xff."[..], -1i64),
            (b"\x80\x02M\xff\xff.", 65535),
            (b"\x80\x02\x8a\x01\xff.", -1),
            (b"\x80\x02\x8a\x02\x00\x80.", -32768),
            (b"\x80\x02\x8a\x05\x00\x00\x00\x00\x01.", 1 << 32),
            (b"\x80\x02\x8a\x00.", 0),
        ] {
            assert_eq!(parse(bytes), Ok(Value::Int(want)), "{bytes:?}");
        }
    }

    #[test]
    fn refuses_and_names_what_it_does_not_know() {
        let err = |p: &[u8]| parse(p).unwrap_err();
        assert_eq!(
            err(b"\x80\x02cos\nsystem\n."),
            PickleError::ForbiddenGlobal {
                module: "os".into(),
                name: "system".into(),
                offset: 2
            }
        );
        assert!(err(b"\x80\x02cos\nsystem\n.")
            .to_string()
            .contains("os.system"));
        // STACK_GLOBAL is checked the same way.
        assert!(matches!(
            err(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93."),
            PickleError::ForbiddenGlobal { .. }
        ));
        for op in [
            b'i', b'o', 0x81, 0x92, b'P', b'S', b'0', b'2', b'd', b'l', b'B', 0x82, 0xff,
        ] {
            let e = err(&[0x80, 2, op, b'.']);
            assert_eq!(
                e,
                PickleError::UnknownOpcode {
                    opcode: op,
                    offset: 2
                }
            );
            assert!(e.to_string().contains(opcode_name(op)));
        }
        // Calling a storage class, REDUCE on a string, wrong _rebuild_tensor_v2 arguments.
        assert!(matches!(
            err(b"\x80\x02ctorch\nFloatStorage\n)R."),
            PickleError::BadArguments { .. }
        ));
        assert!(matches!(
            err(b"\x80\x02X\x00\x00\x00\x00)R."),
            PickleError::WrongType { .. }
        ));
        assert!(matches!(
            err(b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(K\x01t\x85R."),
            PickleError::BadArguments { .. }
        ));
        // Persistent ids other than ('storage', torch.*Storage, key, location, numel).
        assert!(matches!(
            err(b"\x80\x02(X\x01\x00\x00\x00xtQ."),
            PickleError::BadPersistentId { .. }
        ));
        // Stack and memo misuse.
        assert!(matches!(
            err(b"\x80\x02R."),
            PickleError::StackUnderflow { .. }
        ));
        assert!(matches!(
            err(b"\x80\x02(K\x01\x86."),
            PickleError::StackUnderflow { .. }
        ));
        assert!(matches!(
            err(b"\x80\x02h\x05."),
            PickleError::MemoMissing { index: 5, .. }
        ));
        assert!(matches!(err(b"\x80\x02t."), PickleError::NoMark { .. }));
        assert!(matches!(err(b"\x80\x02K\x01"), PickleError::NoStop));
        assert!(matches!(
            err(b"\x80\x02X\xff\xff\xff\x7f"),
            PickleError::Truncated { .. }
        ));
        assert!(matches!(
            err(b"\x80\x02X\x01\x00\x00\x00\xff."),
            PickleError::BadString { .. }
        ));
        assert!(matches!(
            err(b"\x80\x02]K\x01K\x02s."),
            PickleError::WrongType { .. }
        ));
        // A dict of a non-tensor is not a state dict; duplicate keys are refused.
        assert!(matches!(
            state_dict(b"\x80\x02}X\x01\x00\x00\x00aK\x01s."),
            Err(PickleError::NotStateDict { .. })
        ));
        assert!(matches!(
            state_dict(b"\x80\x02K\x01."),
            Err(PickleError::NotStateDict { .. })
        ));
    }

    #[test]
    fn memory_is_bounded_by_the_input() {
        // A "billion laughs": each step memoizes a pair of two copies of the previous value,
        // 2^40 values from 300 bytes if copies were free.
        let mut q = vec![0x80, 2, b']', b'q', 0];
        for i in 0..40u8 {
            q.extend_from_slice(&[b'h', i, b'h', i, 0x86, b'q', i + 1]);
        }
        q.push(b'.');
        assert!(matches!(parse(&q), Err(PickleError::TooLarge { .. })));
        // Deep nesting is refused before recursion could matter.
        let mut deep = vec![0x80, 2, b')'];
        deep.extend(core::iter::repeat_n(0x85, 1000));
        deep.push(b'.');
        assert!(matches!(parse(&deep), Err(PickleError::TooDeep { .. })));
        let mut ok = vec![0x80, 2, b')'];
        ok.extend(core::iter::repeat_n(0x85, (MAX_DEPTH - 1) as usize));
        ok.push(b'.');
        assert!(parse(&ok).is_ok());
    }
}
