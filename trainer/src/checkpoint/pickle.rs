//! A minimal, bounded pickle reader for the subset `torch.save` writes for a `state_dict`.
//!
//! It owns decoding one pickle stream into a [`Value`] tree. Only opcodes of protocols 2–4 that
//! `torch.save` emits for tensors, containers and scalars are understood; every other opcode, and
//! every callable other than the few torch rebuilds a state dict needs, is a clear error — no code
//! is ever executed. Limits bound the stack, the memo and the nesting of containers, and every
//! length is checked against the bytes that remain, so a hostile or truncated file yields an error,
//! never a panic or an unbounded allocation.
//!
//! Memoised containers are stored by value: a container mutated after `BINPUT` and fetched again
//! with `BINGET` shows its state at memoisation. `torch.save` never relies on that for the keys and
//! tensors of a state dict (only its `_metadata`, which is ignored, could).

use std::collections::HashMap;

use super::CheckpointError;

/// Most entries the memo may hold.
const MAX_MEMO: usize = 1 << 20;
/// Deepest value stack (including marks) allowed.
const MAX_STACK: usize = 1 << 20;

/// Element type of a torch storage, from its pickled class name (`torch.FloatStorage`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// 32-bit float.
    Float,
    /// 64-bit float.
    Double,
    /// 16-bit IEEE float.
    Half,
    /// 16-bit brain float.
    BFloat16,
    /// 64-bit signed integer.
    Long,
    /// 32-bit signed integer.
    Int,
    /// 16-bit signed integer.
    Short,
    /// 8-bit signed integer.
    Char,
    /// 8-bit unsigned integer.
    Byte,
    /// Boolean (one byte).
    Bool,
}

impl StorageKind {
    /// The storage kind a `torch.<Name>Storage` class stands for.
    pub fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::Float,
            "DoubleStorage" => Self::Double,
            "HalfStorage" => Self::Half,
            "BFloat16Storage" => Self::BFloat16,
            "LongStorage" => Self::Long,
            "IntStorage" => Self::Int,
            "ShortStorage" => Self::Short,
            "CharStorage" => Self::Char,
            "ByteStorage" => Self::Byte,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn element_size(self) -> usize {
        match self {
            Self::Double | Self::Long => 8,
            Self::Float | Self::Int => 4,
            Self::Half | Self::BFloat16 | Self::Short => 2,
            Self::Char | Self::Byte | Self::Bool => 1,
        }
    }

    /// The matching libtorch element kind.
    pub fn tch_kind(self) -> tch::Kind {
        match self {
            Self::Float => tch::Kind::Float,
            Self::Double => tch::Kind::Double,
            Self::Half => tch::Kind::Half,
            Self::BFloat16 => tch::Kind::BFloat16,
            Self::Long => tch::Kind::Int64,
            Self::Int => tch::Kind::Int,
            Self::Short => tch::Kind::Int16,
            Self::Char => tch::Kind::Int8,
            Self::Byte => tch::Kind::Uint8,
            Self::Bool => tch::Kind::Bool,
        }
    }
}

/// A storage reference, from a persistent id `('storage', type, key, location, numel)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// Element type.
    pub kind: StorageKind,
    /// Key naming the storage's bytes (a legacy record or a zip entry `data/<key>`).
    pub key: String,
    /// Device it was saved from (`cpu`, `cuda:7`, …); informative only.
    pub location: String,
    /// Number of elements of the storage.
    pub numel: u64,
}

/// A tensor view, from `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage the view reads.
    pub storage: StorageRef,
    /// Offset in elements.
    pub offset: i64,
    /// Shape.
    pub size: Vec<i64>,
    /// Strides in elements.
    pub stride: Vec<i64>,
}

/// A decoded pickle value (the subset a state dict needs).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// A boolean.
    Bool(bool),
    /// An integer that fits in 128 bits.
    Int(i128),
    /// A float.
    Float(f64),
    /// A text string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict or `OrderedDict`, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A global reference `module.name` not yet called.
    Global(String, String),
    /// A storage reference (a persistent id).
    Storage(StorageRef),
    /// A tensor view.
    Tensor(TensorRef),
}

/// Stack entries: values, or a MARK.
enum Slot {
    Mark,
    Val(Value),
}

/// Decodes one pickle stream starting at `data[pos..]`; returns the value and the position just
/// after its STOP opcode.
pub fn decode(data: &[u8], pos: usize) -> Result<(Value, usize), CheckpointError> {
    Machine {
        data,
        pos,
        stack: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Value>,
}

fn bad(msg: impl Into<String>) -> CheckpointError {
    CheckpointError::Pickle(msg.into())
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CheckpointError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                CheckpointError::Truncated(format!(
                    "pickle needs {n} more bytes at offset {} but the file has {}",
                    self.pos,
                    self.data.len()
                ))
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, CheckpointError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], CheckpointError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn line(&mut self) -> Result<String, CheckpointError> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| {
            CheckpointError::Truncated("pickle GLOBAL without end of line".into())
        })?;
        let s =
            String::from_utf8(rest[..n].to_vec()).map_err(|_| bad("GLOBAL name is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn push(&mut self, v: Value) -> Result<(), CheckpointError> {
        if self.stack.len() >= MAX_STACK {
            return Err(bad("pickle stack exceeds its limit"));
        }
        self.stack.push(Slot::Val(v));
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, CheckpointError> {
        match self.stack.pop() {
            Some(Slot::Val(v)) => Ok(v),
            Some(Slot::Mark) => Err(bad("unexpected MARK on the pickle stack")),
            None => Err(bad("pickle stack underflow")),
        }
    }

    fn top(&mut self) -> Result<&mut Value, CheckpointError> {
        match self.stack.last_mut() {
            Some(Slot::Val(v)) => Ok(v),
            _ => Err(bad("pickle opcode needs a value on the stack")),
        }
    }

    /// Pops everything down to (and including) the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Value>, CheckpointError> {
        let mut items = Vec::new();
        loop {
            match self.stack.pop() {
                Some(Slot::Mark) => break,
                Some(Slot::Val(v)) => items.push(v),
                None => return Err(bad("pickle MARK missing")),
            }
        }
        items.reverse();
        Ok(items)
    }

    fn memo_put(&mut self, key: u32) -> Result<(), CheckpointError> {
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(bad("pickle memo exceeds its limit"));
        }
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), CheckpointError> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| bad(format!("memo key {key} unset")))?;
        self.push(v)
    }

    fn string(&mut self, n: usize) -> Result<Value, CheckpointError> {
        let bytes = self.take(n)?.to_vec();
        String::from_utf8(bytes)
            .map(Value::Str)
            .map_err(|_| bad("string is not UTF-8"))
    }

    fn run(mut self) -> Result<(Value, usize), CheckpointError> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(bad(format!("unsupported pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    // FRAME: an 8-byte length, only a hint.
                    self.le::<8>()?;
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok((v, self.pos));
                }
                b'(' => {
                    if self.stack.len() >= MAX_STACK {
                        return Err(bad("pickle stack exceeds its limit"));
                    }
                    self.stack.push(Slot::Mark);
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.le::<4>()?);
                    self.push(Value::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le::<2>()?);
                    self.push(Value::Int(v.into()))?;
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    if n > 16 {
                        return Err(bad(format!("LONG1 of {n} bytes is too large")));
                    }
                    let bytes = self.take(n)?;
                    let mut v: i128 = 0;
                    for (i, b) in bytes.iter().enumerate() {
                        v |= i128::from(*b) << (8 * i);
                    }
                    if n > 0 && n < 16 && bytes[n - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n);
                    }
                    self.push(Value::Int(v))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le::<8>()?);
                    self.push(Value::Float(v))?;
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.le::<4>()?) as usize;
                    let v = self.string(n)?;
                    self.push(v)?;
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let v = self.string(n)?;
                    self.push(v)?;
                }
                0x8d => {
                    let n = usize::try_from(u64::from_le_bytes(self.le::<8>()?))
                        .map_err(|_| bad("BINUNICODE8 length overflows"))?;
                    let v = self.string(n)?;
                    self.push(v)?;
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'C' => usize::from(self.u8()?),
                        b'B' => u32::from_le_bytes(self.le::<4>()?) as usize,
                        _ => usize::try_from(u64::from_le_bytes(self.le::<8>()?))
                            .map_err(|_| bad("BINBYTES8 length overflows"))?,
                    };
                    let v = self.take(n)?.to_vec();
                    self.push(Value::Bytes(v))?;
                }
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items))?;
                }
                b']' => self.push(Value::List(Vec::new()))?,
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => return Err(bad("APPEND on a non-list")),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err(bad("APPENDS on a non-list")),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => d.push((k, v)),
                        _ => return Err(bad("SETITEM on a non-dict")),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(bad("SETITEMS with an odd number of items"));
                    }
                    let mut it = items.into_iter();
                    let Value::Dict(d) = self.top()? else {
                        return Err(bad("SETITEMS on a non-dict"));
                    };
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
                b'q' => {
                    let k = self.u8()?;
                    self.memo_put(k.into())?;
                }
                b'r' => {
                    let k = u32::from_le_bytes(self.le::<4>()?);
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = u32::try_from(self.memo.len()).map_err(|_| bad("memo overflow"))?;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()?;
                    self.memo_get(k.into())?;
                }
                b'j' => {
                    let k = u32::from_le_bytes(self.le::<4>()?);
                    self.memo_get(k)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(module, name))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push(Value::Global(m, n))?,
                        _ => return Err(bad("STACK_GLOBAL needs two strings")),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = persistent_storage(pid)?;
                    self.push(Value::Storage(storage))?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = call(func, args)?;
                    self.push(v)?;
                }
                b'b' => {
                    // BUILD: state for an object; state dicts carry only `_metadata` here.
                    let _state = self.pop()?;
                    match self.top()? {
                        Value::Dict(_) | Value::Tensor(_) => {}
                        other => return Err(bad(format!("BUILD on unsupported {}", kind(other)))),
                    }
                }
                other => {
                    return Err(bad(format!(
                        "unsupported pickle opcode 0x{other:02x} at offset {}",
                        self.pos - 1
                    )));
                }
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "tuple",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        Value::Global(..) => "global",
        Value::Storage(_) => "storage",
        Value::Tensor(_) => "tensor",
    }
}

fn as_int(v: &Value, what: &str) -> Result<i64, CheckpointError> {
    match v {
        Value::Int(i) => i64::try_from(*i).map_err(|_| bad(format!("{what} out of range"))),
        other => Err(bad(format!("{what} should be an int, got {}", kind(other)))),
    }
}

fn int_tuple(v: &Value, what: &str) -> Result<Vec<i64>, CheckpointError> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(|i| as_int(i, what)).collect(),
        other => Err(bad(format!(
            "{what} should be a tuple, got {}",
            kind(other)
        ))),
    }
}

/// Decodes `('storage', torch.XStorage, key, location, numel[, view_metadata])`.
fn persistent_storage(pid: Value) -> Result<StorageRef, CheckpointError> {
    let Value::Tuple(items) = pid else {
        return Err(bad(format!(
            "persistent id should be a tuple, got {}",
            kind(&pid)
        )));
    };
    match items.as_slice() {
        [
            Value::Str(tag),
            Value::Global(module, class),
            key,
            Value::Str(location),
            numel,
            ..,
        ] if tag == "storage" => {
            let storage_kind = (module == "torch")
                .then(|| StorageKind::from_class(class))
                .flatten()
                .ok_or_else(|| bad(format!("unsupported storage type {module}.{class}")))?;
            let key = match key {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                other => {
                    return Err(bad(format!(
                        "storage key should be a str, got {}",
                        kind(other)
                    )));
                }
            };
            let numel = u64::try_from(as_int(numel, "storage size")?)
                .map_err(|_| bad("negative storage size"))?;
            Ok(StorageRef {
                kind: storage_kind,
                key,
                location: location.clone(),
                numel,
            })
        }
        _ => Err(bad(
            "persistent id is not a ('storage', type, key, location, numel) tuple",
        )),
    }
}

/// Applies the few callables a state dict uses; anything else is refused.
fn call(func: Value, args: Value) -> Result<Value, CheckpointError> {
    let Value::Global(module, name) = func else {
        return Err(bad(format!("REDUCE on a {}, not a global", kind(&func))));
    };
    let Value::Tuple(args) = args else {
        return Err(bad(format!(
            "arguments of {module}.{name} should be a tuple"
        )));
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") if args.is_empty() => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") if (6..=7).contains(&args.len()) => {
            let Value::Storage(storage) = &args[0] else {
                return Err(bad("_rebuild_tensor_v2 without a storage"));
            };
            let size = int_tuple(&args[2], "tensor size")?;
            let stride = int_tuple(&args[3], "tensor stride")?;
            if size.len() != stride.len() {
                return Err(bad("tensor size and stride have different ranks"));
            }
            Ok(Value::Tensor(TensorRef {
                storage: storage.clone(),
                offset: as_int(&args[1], "storage offset")?,
                size,
                stride,
            }))
        }
        ("torch._utils", "_rebuild_parameter") if (2..=3).contains(&args.len()) => {
            match args.into_iter().next() {
                Some(t @ Value::Tensor(_)) => Ok(t),
                _ => Err(bad("_rebuild_parameter without a tensor")),
            }
        }
        _ => Err(bad(format!(
            "refusing to call {module}.{name} with {} arguments (only OrderedDict and tensor \
             rebuilds are allowed)",
            args.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_scalars_and_containers() {
        // pickle.dumps({'a': (1, -2, 'x'), 'b': [True, None]}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01J\xfe\xff\xff\xffX\x01\x00\x00\x00xq\x02\x87q\x03X\x01\x00\x00\x00bq\x04]q\x05(\x88Ne\x80u.";
        // The trailing 0x80 before 'u' is not valid pickle; check it is refused cleanly.
        assert!(decode(data, 0).is_err());
        let ok = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01J\xfe\xff\xff\xffX\x01\x00\x00\x00xq\x02\x87q\x03X\x01\x00\x00\x00bq\x04]q\x05(\x88Neu.";
        let (v, end) = decode(ok, 0).unwrap();
        assert_eq!(end, ok.len());
        let Value::Dict(d) = v else {
            panic!("not a dict")
        };
        assert_eq!(d[0].0, Value::Str("a".into()));
        assert_eq!(
            d[0].1,
            Value::Tuple(vec![Value::Int(1), Value::Int(-2), Value::Str("x".into())])
        );
        assert_eq!(d[1].1, Value::List(vec![Value::Bool(true), Value::None]));
    }

    #[test]
    fn refuses_arbitrary_callables_and_truncation() {
        let evil = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
        let err = decode(evil, 0).unwrap_err().to_string();
        assert!(err.contains("os.system"), "{err}");
        let truncated = b"\x80\x02X\xff\x00\x00\x00ab";
        assert!(matches!(
            decode(truncated, 0),
            Err(CheckpointError::Truncated(_))
        ));
        assert!(decode(b"", 0).is_err());
    }
}
