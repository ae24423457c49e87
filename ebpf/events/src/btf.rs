//! A small reader of the kernel's BTF (BPF Type Format), enough to find struct member offsets
//! by name at load time: `sctp_association.peer.port`, `sock.__sk_common.skc_net.net`, ...
//!
//! Why not `aya::Btf`: aya 0.14 parses one self-contained BTF blob only. A module's BTF
//! (`/sys/kernel/btf/sctp` on kernels that build SCTP as a module, as Debian does) is *split* BTF:
//! its type ids continue after vmlinux's and its string offsets continue after vmlinux's string
//! section, so it cannot be read without its base. This module reads a base blob plus at most one
//! split blob on top of it (the module whose types the probes need).
//!
//! Pure: [`Btf::parse`] and [`Btf::parse_split`] work on bytes, make no syscalls, never panic on
//! malformed input (every read is bounds-checked), are unit-tested on hand-made blobs and
//! fuzzed (`ebpf/events/fuzz`, target `btf`). Reading `/sys/kernel/btf` is the loader's job
//! (`sipsctp_ebpf::btf::from_sys_fs`).
//!
//! Format: <https://docs.kernel.org/bpf/btf.html>.

use std::collections::{HashMap, HashSet};

/// BTF magic, `0xeB9F`, in the blob's byte order.
pub(crate) const MAGIC: u16 = 0xeb9f;
/// Deepest nesting followed through anonymous members and type modifiers.
const MAX_DEPTH: usize = 32;

// Type kinds (`BTF_KIND_*`, include/uapi/linux/btf.h).
pub(crate) const KIND_INT: u8 = 1;
pub(crate) const KIND_PTR: u8 = 2;
pub(crate) const KIND_ARRAY: u8 = 3;
pub(crate) const KIND_STRUCT: u8 = 4;
pub(crate) const KIND_UNION: u8 = 5;
pub(crate) const KIND_ENUM: u8 = 6;
pub(crate) const KIND_FWD: u8 = 7;
pub(crate) const KIND_TYPEDEF: u8 = 8;
pub(crate) const KIND_VOLATILE: u8 = 9;
pub(crate) const KIND_CONST: u8 = 10;
pub(crate) const KIND_RESTRICT: u8 = 11;
pub(crate) const KIND_FUNC: u8 = 12;
pub(crate) const KIND_FUNC_PROTO: u8 = 13;
pub(crate) const KIND_VAR: u8 = 14;
pub(crate) const KIND_DATASEC: u8 = 15;
pub(crate) const KIND_FLOAT: u8 = 16;
pub(crate) const KIND_DECL_TAG: u8 = 17;
pub(crate) const KIND_TYPE_TAG: u8 = 18;
pub(crate) const KIND_ENUM64: u8 = 19;

/// Errors reading BTF or resolving a name in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BtfError {
    /// A BTF file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The blob ends before a structure it announces.
    #[error("BTF truncated: {what} at byte {offset}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where.
        offset: usize,
    },
    /// Not a BTF blob.
    #[error("not BTF (magic {0:#06x})")]
    BadMagic(u16),
    /// A BTF version this reader does not know.
    #[error("unsupported BTF version {0}")]
    UnsupportedVersion(u8),
    /// A type record of a kind this reader does not know (its size is unknown, so the rest of
    /// the type section cannot be walked).
    #[error("type {id} has unknown kind {kind}")]
    UnknownKind {
        /// The type id.
        id: u32,
        /// The kind number.
        kind: u8,
    },
    /// A type refers to a type id that does not exist.
    #[error("type id {0} out of range")]
    BadTypeId(u32),
    /// A name offset points outside the string section or at an unterminated string.
    #[error("bad string offset {0}")]
    BadString(u32),
    /// No struct or union of this name.
    #[error("no struct or union named {0}")]
    TypeNotFound(String),
    /// No enum of this name, or it lacks the variant.
    #[error("no enum {0} with variant {1}")]
    EnumNotFound(String, String),
    /// The struct or union has no member of this name (also not inside anonymous members).
    #[error("{path}: no member {member}")]
    MemberNotFound {
        /// The path resolved so far.
        path: String,
        /// The member looked for.
        member: String,
    },
    /// A path goes through a member that is not a struct or union.
    #[error("{0}: not a struct or union")]
    NotComposite(String),
    /// The member is a bitfield or not byte aligned: it cannot be read as a plain integer.
    #[error("{0}: a bitfield or not byte aligned")]
    Bitfield(String),
    /// The member is not a one-bit bitfield.
    #[error("{0}: not a one-bit bitfield")]
    NotAFlag(String),
    /// The member's size cannot be determined (a forward declaration, a function...).
    #[error("{0}: size unknown")]
    UnknownSize(String),
    /// Type references nest deeper than this reader follows (or loop).
    #[error("{0}: type references nest too deep")]
    TooDeep(String),
    /// Only one split blob can sit on a base.
    #[error("this BTF already has a split part")]
    SecondSplit,
    /// A path string without a member part.
    #[error("bad path {0:?}: expected type.member[.member...]")]
    BadPath(String),
}

/// Where a member lives inside its outermost struct: byte offset and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Byte offset from the start of the outermost struct.
    pub offset: u32,
    /// Size in bytes of the member's type.
    pub size: u32,
}

/// A resolved member: its type id, bit offset, bitfield width (0: not a bitfield).
#[derive(Clone, Copy, Debug)]
struct Member {
    ty: u32,
    bit_offset: u64,
    bitfield_bits: u32,
}

/// One parsed blob: its bytes, where each type record starts, and its string section.
#[derive(Debug)]
struct Part {
    data: Vec<u8>,
    little_endian: bool,
    /// Byte offset (in `data`) of each type record, in id order.
    types: Vec<usize>,
    /// Start and end (in `data`) of the string section.
    strings: (usize, usize),
}

/// Base BTF (vmlinux) plus, optionally, one split BTF (a module) on top of it.
#[derive(Debug)]
pub struct Btf {
    base: Part,
    split: Option<Part>,
    /// Ids of the named structs, unions, enums and functions, by name (ascending ids).
    names: HashMap<Vec<u8>, Vec<u32>>,
}

/// A decoded type record header.
#[derive(Clone, Copy, Debug)]
struct TypeHeader {
    id: u32,
    name_off: u32,
    kind: u8,
    kind_flag: bool,
    vlen: u16,
    /// `size` for INT/STRUCT/UNION/ENUM/DATASEC/FLOAT, `type` for the others.
    size_or_type: u32,
    /// Where the record's kind-specific data starts (in its part's `data`).
    extra: usize,
}

impl Btf {
    /// Parses a self-contained (base) BTF blob, such as `/sys/kernel/btf/vmlinux`.
    ///
    /// # Errors
    /// When the blob is malformed or uses an unknown type kind.
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let mut btf = Btf {
            base: Part::parse(data, 1)?,
            split: None,
            names: HashMap::new(),
        };
        btf.index_from(1)?;
        Ok(btf)
    }

    /// Parses a split BTF blob (a module's) on top of this base, consuming the base.
    ///
    /// # Errors
    /// When the blob is malformed, or this BTF already has a split part.
    pub fn parse_split(self, data: &[u8]) -> Result<Btf, BtfError> {
        if self.split.is_some() {
            return Err(BtfError::SecondSplit);
        }
        let first_id =
            u32::try_from(self.base.types.len() + 1).map_err(|_| BtfError::BadTypeId(u32::MAX))?;
        let split = Part::parse(data, first_id)?;
        let mut btf = Btf {
            base: self.base,
            split: Some(split),
            names: self.names,
        };
        btf.index_from(first_id as usize)?;
        Ok(btf)
    }

    /// Adds the named types from id `first` on to the name index.
    fn index_from(&mut self, first: usize) -> Result<(), BtfError> {
        for id in first..self.type_count() {
            let id = u32::try_from(id).map_err(|_| BtfError::BadTypeId(u32::MAX))?;
            let h = self.header(id)?;
            if matches!(
                h.kind,
                KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 | KIND_FUNC
            ) {
                let name = self.name(h)?;
                if !name.is_empty() {
                    let name = name.to_vec();
                    self.names.entry(name).or_default().push(id);
                }
            }
        }
        Ok(())
    }

    /// The ids of named types called `name` whose kind is one of `kinds`, ascending.
    fn named(&self, name: &str, kinds: &[u8]) -> impl Iterator<Item = (u32, TypeHeader)> + '_ {
        let kinds = kinds.to_vec();
        self.names
            .get(name.as_bytes())
            .into_iter()
            .flatten()
            .filter_map(move |&id| {
                let h = self.header(id).ok()?;
                kinds.contains(&h.kind).then_some((id, h))
            })
    }

    /// Number of type ids, `void` (id 0) included.
    pub fn type_count(&self) -> usize {
        1 + self.base.types.len() + self.split.as_ref().map_or(0, |s| s.types.len())
    }

    /// Resolves `type.member[.member...]` to the byte offset and size of the last member,
    /// counted from the start of `type` (a struct or union name). Members of anonymous structs
    /// and unions are found as if they were direct members, as in C. Typedefs and qualifiers
    /// are followed.
    ///
    /// # Errors
    /// When a name is missing, a member on the way is not a struct/union, or the last member
    /// is a bitfield (see [`BtfError`]; use [`Btf::flag`] for one-bit bitfields).
    pub fn field(&self, path: &str) -> Result<Field, BtfError> {
        let m = self.member(path)?;
        if m.bitfield_bits != 0 || !m.bit_offset.is_multiple_of(8) {
            return Err(BtfError::Bitfield(path.into()));
        }
        let offset =
            u32::try_from(m.bit_offset / 8).map_err(|_| BtfError::Bitfield(path.into()))?;
        let size = self.size_of(m.ty, path)?;
        Ok(Field { offset, size })
    }

    /// Resolves a one-bit bitfield (e.g. `sctp_association.temp`) to the byte that holds it
    /// and the mask of its bit in that byte, for a little-endian kernel (BTF numbers bitfield
    /// bits from the least significant bit of the storage unit, which on little endian is bit
    /// `offset % 8` of byte `offset / 8`).
    ///
    /// # Errors
    /// As [`Btf::field`], and when the member is not a one-bit bitfield.
    pub fn flag(&self, path: &str) -> Result<(u32, u8), BtfError> {
        let m = self.member(path)?;
        if m.bitfield_bits != 1 {
            return Err(BtfError::NotAFlag(path.into()));
        }
        let byte = u32::try_from(m.bit_offset / 8).map_err(|_| BtfError::NotAFlag(path.into()))?;
        Ok((byte, 1 << (m.bit_offset % 8)))
    }

    /// Walks `type.member[.member...]`: the last member's type, bit offset from the start of
    /// `type`, and bitfield width (0 when not a bitfield).
    fn member(&self, path: &str) -> Result<Member, BtfError> {
        let mut parts = path.split('.');
        let (Some(root), Some(_)) = (parts.next(), path.split('.').nth(1)) else {
            return Err(BtfError::BadPath(path.into()));
        };
        let mut ty = self.find_composite(root)?;
        let mut bits: u64 = 0;
        let mut walked = root.to_owned();
        let mut bitfield_bits = 0;
        for member in parts {
            let composite = self.resolve(ty, &walked)?;
            if !matches!(composite.kind, KIND_STRUCT | KIND_UNION) {
                return Err(BtfError::NotComposite(walked));
            }
            let (member_ty, member_bits, width) = self
                .find_member(composite, member, 0, &mut HashSet::new())?
                .ok_or_else(|| BtfError::MemberNotFound {
                    path: walked.clone(),
                    member: member.to_owned(),
                })?;
            walked.push('.');
            walked.push_str(member);
            bits += member_bits;
            ty = member_ty;
            bitfield_bits = width;
        }
        Ok(Member {
            ty,
            bit_offset: bits,
            bitfield_bits,
        })
    }

    /// The byte size of the struct or union `name`.
    ///
    /// # Errors
    /// When there is no such struct or union.
    pub fn composite_size(&self, name: &str) -> Result<u32, BtfError> {
        let id = self.find_composite(name)?;
        self.size_of(id, name)
    }

    /// The value of `variant` in `enum name` (ENUM or ENUM64).
    ///
    /// # Errors
    /// When there is no such enum or variant.
    pub fn enum_value(&self, name: &str, variant: &str) -> Result<i64, BtfError> {
        let not_found = || BtfError::EnumNotFound(name.into(), variant.into());
        for (id, h) in self.named(name, &[KIND_ENUM, KIND_ENUM64]) {
            let part = self.part_of(id)?;
            let stride = if h.kind == KIND_ENUM { 8 } else { 12 };
            for i in 0..usize::from(h.vlen) {
                let at = h.extra + i * stride;
                let name_off = part.u32_at(at, "enum value")?;
                if self.string(name_off)? != variant.as_bytes() {
                    continue;
                }
                let lo = part.u32_at(at + 4, "enum value")?;
                return Ok(if h.kind == KIND_ENUM {
                    // BTF_KIND_ENUM values are 32-bit; signedness is in kind_flag.
                    if h.kind_flag {
                        i64::from(lo as i32)
                    } else {
                        i64::from(lo)
                    }
                } else {
                    let hi = part.u32_at(at + 8, "enum64 value")?;
                    ((u64::from(hi) << 32) | u64::from(lo)) as i64
                });
            }
        }
        Err(not_found())
    }

    /// Whether a `FUNC` of this name exists (a function the kernel was built with; whether a
    /// kprobe can attach to it is for the kernel to say).
    pub fn has_func(&self, name: &str) -> bool {
        self.named(name, &[KIND_FUNC]).next().is_some()
    }

    /// The struct or union called `name` with a body (not a forward declaration). The split
    /// part is searched first: a module's own types shadow nothing in vmlinux, but a module
    /// whose types are needed is usually why there is a split part.
    fn find_composite(&self, name: &str) -> Result<u32, BtfError> {
        let split_start = 1 + self.base.types.len();
        let mut found = self
            .named(name, &[KIND_STRUCT, KIND_UNION])
            .map(|(id, _)| id);
        let first = found.next();
        let in_split = first
            .into_iter()
            .chain(found)
            .find(|&id| id as usize >= split_start);
        in_split
            .or(first)
            .ok_or_else(|| BtfError::TypeNotFound(name.into()))
    }

    /// Looks for `name` among the members of `composite`, descending into anonymous struct and
    /// union members. Returns the member's type, its bit offset from `composite`'s start and
    /// its bitfield width (0 when not a bitfield).
    ///
    /// `searched` holds the anonymous composites already entered during this lookup: each is
    /// searched once, so a blob whose anonymous members repeat a type (several times, or
    /// itself) costs one visit per type, not one per path (exponential in the depth).
    fn find_member(
        &self,
        composite: TypeHeader,
        name: &str,
        depth: usize,
        searched: &mut HashSet<u32>,
    ) -> Result<Option<(u32, u64, u32)>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep(name.into()));
        }
        let part = self.part_of(composite.id)?;
        let mut anonymous = Vec::new();
        for i in 0..usize::from(composite.vlen) {
            let at = composite.extra + i * 12;
            let name_off = part.u32_at(at, "member")?;
            let ty = part.u32_at(at + 4, "member")?;
            let raw = part.u32_at(at + 8, "member")?;
            // With kind_flag set, the offset word holds a 24-bit bit offset and an 8-bit
            // bitfield size; otherwise all 32 bits are the bit offset.
            let (bits, bitfield) = if composite.kind_flag {
                (u64::from(raw & 0x00ff_ffff), raw >> 24)
            } else {
                (u64::from(raw), 0)
            };
            let member_name = self.string(name_off)?;
            if member_name == name.as_bytes() {
                return Ok(Some((ty, bits, bitfield)));
            }
            if member_name.is_empty() {
                anonymous.push((ty, bits));
            }
        }
        for (ty, bits) in anonymous {
            let inner = self.resolve(ty, name)?;
            if !matches!(inner.kind, KIND_STRUCT | KIND_UNION) || !searched.insert(inner.id) {
                continue;
            }
            if let Some((t, b, bf)) = self.find_member(inner, name, depth + 1, searched)? {
                return Ok(Some((t, bits + b, bf)));
            }
        }
        Ok(None)
    }

    /// Follows typedefs, qualifiers and type tags to the underlying type.
    fn resolve(&self, mut id: u32, path: &str) -> Result<TypeHeader, BtfError> {
        for _ in 0..MAX_DEPTH {
            let h = self.header(id)?;
            match h.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = h.size_or_type;
                }
                _ => return Ok(h),
            }
        }
        Err(BtfError::TooDeep(path.into()))
    }

    /// The size in bytes of type `id`.
    fn size_of(&self, id: u32, path: &str) -> Result<u32, BtfError> {
        let mut multiplier: u64 = 1;
        let mut id = id;
        for _ in 0..MAX_DEPTH {
            let h = self.resolve(id, path)?;
            let size = match h.kind {
                KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 | KIND_FLOAT => {
                    u64::from(h.size_or_type)
                }
                // Pointers are the kernel's word; this loader runs on the kernel it probes.
                KIND_PTR => std::mem::size_of::<usize>() as u64,
                KIND_ARRAY => {
                    let part = self.part_of(h.id)?;
                    let elem = part.u32_at(h.extra, "array")?;
                    let n = part.u32_at(h.extra + 8, "array")?;
                    multiplier = multiplier.saturating_mul(u64::from(n));
                    id = elem;
                    continue;
                }
                _ => return Err(BtfError::UnknownSize(path.into())),
            };
            return u32::try_from(size.saturating_mul(multiplier))
                .map_err(|_| BtfError::UnknownSize(path.into()));
        }
        Err(BtfError::TooDeep(path.into()))
    }

    fn part_of(&self, id: u32) -> Result<&Part, BtfError> {
        let idx = usize::try_from(id).map_err(|_| BtfError::BadTypeId(id))?;
        if idx == 0 {
            return Err(BtfError::BadTypeId(id));
        }
        if idx <= self.base.types.len() {
            return Ok(&self.base);
        }
        match &self.split {
            Some(s) if idx < self.type_count() => Ok(s),
            _ => Err(BtfError::BadTypeId(id)),
        }
    }

    fn header(&self, id: u32) -> Result<TypeHeader, BtfError> {
        let part = self.part_of(id)?;
        let idx = usize::try_from(id).map_err(|_| BtfError::BadTypeId(id))?;
        let local = if std::ptr::eq(part, &self.base) {
            idx - 1
        } else {
            idx - 1 - self.base.types.len()
        };
        let at = *part.types.get(local).ok_or(BtfError::BadTypeId(id))?;
        let mut h = part.header_at(at)?;
        h.id = id;
        Ok(h)
    }

    fn name(&self, h: TypeHeader) -> Result<&[u8], BtfError> {
        self.string(h.name_off)
    }

    /// A string by offset: offsets past the base's string section belong to the split part.
    fn string(&self, off: u32) -> Result<&[u8], BtfError> {
        let base_len = self.base.strings.1 - self.base.strings.0;
        let off_usize = usize::try_from(off).map_err(|_| BtfError::BadString(off))?;
        if off_usize < base_len {
            return self.base.string(off_usize).ok_or(BtfError::BadString(off));
        }
        match &self.split {
            Some(s) => s
                .string(off_usize - base_len)
                .ok_or(BtfError::BadString(off)),
            None => Err(BtfError::BadString(off)),
        }
    }
}

/// Trimming a real blob into a small one (for fuzz seeds and tests; feature `test-util`).
#[cfg(any(test, feature = "test-util"))]
impl Btf {
    /// A little-endian base blob holding the types reachable from the named types `roots`
    /// (breadth first, at most `max` types), plus the first small type of each kind the walk
    /// did not reach, so that every kind this reader knows appears. A reference to a type
    /// left out becomes `void` (id 0); ids are renumbered in their original order and the
    /// string section holds only the names kept.
    ///
    /// # Errors
    /// When this BTF is malformed (it parsed, so only a bug would do that) or has a split
    /// part (only a base can be trimmed).
    pub fn subset(&self, roots: &[&str], max: usize) -> Result<Vec<u8>, BtfError> {
        use std::collections::{BTreeMap, BTreeSet, VecDeque};

        if self.split.is_some() {
            return Err(BtfError::SecondSplit);
        }
        let mut queue: VecDeque<u32> = VecDeque::new();
        let mut seen: HashSet<u32> = HashSet::new();
        for root in roots {
            let all = [KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64, KIND_FUNC];
            for (id, _) in self.named(root, &all) {
                if seen.insert(id) {
                    queue.push_back(id);
                }
            }
        }
        // Types a kept type is made of come before the targets of its pointers, so that the
        // roots' members resolve down to their leaves before the budget runs out.
        let mut pointees: VecDeque<u32> = VecDeque::new();
        let mut keep: BTreeSet<u32> = BTreeSet::new();
        while let Some(id) = queue.pop_front().or_else(|| pointees.pop_front()) {
            if keep.len() >= max {
                break;
            }
            keep.insert(id);
            let next = if self.header(id)?.kind == KIND_PTR {
                &mut pointees
            } else {
                &mut queue
            };
            self.record(
                id,
                &mut |t| {
                    if t != 0 && seen.insert(t) {
                        next.push_back(t);
                    }
                    t
                },
                &mut Ok,
            )?;
        }
        let mut kinds: BTreeSet<u8> = keep
            .iter()
            .filter_map(|&id| self.header(id).ok().map(|h| h.kind))
            .collect();
        for id in 1..self.type_count() {
            let id = u32::try_from(id).map_err(|_| BtfError::BadTypeId(u32::MAX))?;
            let h = self.header(id)?;
            let small = h.vlen <= 4 || matches!(h.kind, KIND_FUNC);
            if small && kinds.insert(h.kind) {
                keep.insert(id);
            }
        }
        let new_id: BTreeMap<u32, u32> = keep
            .iter()
            .zip(1u32..)
            .map(|(&old, new)| (old, new))
            .collect();
        let mut strings: Vec<u8> = vec![0];
        let mut new_str: BTreeMap<u32, u32> = BTreeMap::new();
        let mut types = Vec::new();
        for &id in &keep {
            let rec = self.record(
                id,
                &mut |t| new_id.get(&t).copied().unwrap_or(0),
                &mut |off| {
                    if off == 0 {
                        return Ok(0);
                    }
                    if let Some(&n) = new_str.get(&off) {
                        return Ok(n);
                    }
                    let n = u32::try_from(strings.len()).map_err(|_| BtfError::BadString(off))?;
                    strings.extend_from_slice(self.string(off)?);
                    strings.push(0);
                    new_str.insert(off, n);
                    Ok(n)
                },
            )?;
            types.extend_from_slice(&rec);
        }
        let too_big = |_| BtfError::BadTypeId(u32::MAX);
        let type_len = u32::try_from(types.len()).map_err(too_big)?;
        let str_len = u32::try_from(strings.len()).map_err(too_big)?;
        let mut out = Vec::with_capacity(24 + types.len() + strings.len());
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [24, 0, type_len, type_len, str_len] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        Ok(out)
    }

    /// Type record `id` re-encoded little endian, every type id passed through `ty` and every
    /// string offset through `name`.
    fn record(
        &self,
        id: u32,
        ty: &mut dyn FnMut(u32) -> u32,
        name: &mut dyn FnMut(u32) -> Result<u32, BtfError>,
    ) -> Result<Vec<u8>, BtfError> {
        let h = self.header(id)?;
        let part = self.part_of(id)?;
        let word = |i: usize| part.u32_at(h.extra + 4 * i, "type record");
        let mut out = Vec::new();
        let mut put = |w: u32| out.extend_from_slice(&w.to_le_bytes());
        put(name(h.name_off)?);
        put(part.u32_at(h.extra - 8, "type header")?);
        let refers = matches!(
            h.kind,
            KIND_PTR
                | KIND_TYPEDEF
                | KIND_VOLATILE
                | KIND_CONST
                | KIND_RESTRICT
                | KIND_FUNC
                | KIND_FUNC_PROTO
                | KIND_VAR
                | KIND_DECL_TAG
                | KIND_TYPE_TAG
        );
        put(if refers {
            ty(h.size_or_type)
        } else {
            h.size_or_type
        });
        let vlen = usize::from(h.vlen);
        match h.kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => put(word(0)?),
            KIND_ARRAY => {
                put(ty(word(0)?));
                put(ty(word(1)?));
                put(word(2)?);
            }
            KIND_STRUCT | KIND_UNION => {
                for i in 0..vlen {
                    put(name(word(3 * i)?)?);
                    put(ty(word(3 * i + 1)?));
                    put(word(3 * i + 2)?);
                }
            }
            KIND_ENUM => {
                for i in 0..vlen {
                    put(name(word(2 * i)?)?);
                    put(word(2 * i + 1)?);
                }
            }
            KIND_ENUM64 => {
                for i in 0..vlen {
                    put(name(word(3 * i)?)?);
                    put(word(3 * i + 1)?);
                    put(word(3 * i + 2)?);
                }
            }
            KIND_FUNC_PROTO => {
                for i in 0..vlen {
                    put(name(word(2 * i)?)?);
                    put(ty(word(2 * i + 1)?));
                }
            }
            KIND_DATASEC => {
                for i in 0..vlen {
                    put(ty(word(3 * i)?));
                    put(word(3 * i + 1)?);
                    put(word(3 * i + 2)?);
                }
            }
            _ => {}
        }
        Ok(out)
    }
}

impl Part {
    /// Parses the header and indexes the type records; `first_id` is the id of the first
    /// record (1 for a base, base count + 1 for a split blob).
    fn parse(data: &[u8], first_id: u32) -> Result<Part, BtfError> {
        let magic_le = u16::from_le_bytes(take::<2>(data, 0, "magic")?);
        let little_endian = match magic_le {
            MAGIC => true,
            m if m.swap_bytes() == MAGIC => false,
            m => return Err(BtfError::BadMagic(m)),
        };
        let mut part = Part {
            data: data.to_vec(),
            little_endian,
            types: Vec::new(),
            strings: (0, 0),
        };
        let version = *data.get(2).ok_or(BtfError::Truncated {
            what: "header",
            offset: 2,
        })?;
        if version != 1 {
            return Err(BtfError::UnsupportedVersion(version));
        }
        let hdr_len = part.u32_at(4, "header")? as usize;
        let type_off = part.u32_at(8, "header")? as usize;
        let type_len = part.u32_at(12, "header")? as usize;
        let str_off = part.u32_at(16, "header")? as usize;
        let str_len = part.u32_at(20, "header")? as usize;
        let types_start = hdr_len.checked_add(type_off).ok_or(BtfError::Truncated {
            what: "type section",
            offset: hdr_len,
        })?;
        let types_end = types_start
            .checked_add(type_len)
            .filter(|&e| e <= data.len())
            .ok_or(BtfError::Truncated {
                what: "type section",
                offset: types_start,
            })?;
        let str_start = hdr_len.checked_add(str_off).ok_or(BtfError::Truncated {
            what: "string section",
            offset: hdr_len,
        })?;
        let str_end = str_start
            .checked_add(str_len)
            .filter(|&e| e <= data.len())
            .ok_or(BtfError::Truncated {
                what: "string section",
                offset: str_start,
            })?;
        part.strings = (str_start, str_end);
        let mut at = types_start;
        let mut id = first_id;
        while at < types_end {
            let h = part.header_at(at)?;
            let vlen = usize::from(h.vlen);
            let extra = match h.kind {
                KIND_INT => 4,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                KIND_VAR | KIND_DECL_TAG => 4,
                kind => return Err(BtfError::UnknownKind { id, kind }),
            };
            part.types.push(at);
            at = at + 12 + extra;
            if at > types_end {
                return Err(BtfError::Truncated {
                    what: "type record",
                    offset: at,
                });
            }
            id = id.checked_add(1).ok_or(BtfError::BadTypeId(id))?;
        }
        Ok(part)
    }

    fn header_at(&self, at: usize) -> Result<TypeHeader, BtfError> {
        let name_off = self.u32_at(at, "type header")?;
        let info = self.u32_at(at + 4, "type header")?;
        let size_or_type = self.u32_at(at + 8, "type header")?;
        Ok(TypeHeader {
            id: 0,
            name_off,
            kind: ((info >> 24) & 0x1f) as u8,
            kind_flag: info >> 31 != 0,
            vlen: (info & 0xffff) as u16,
            size_or_type,
            extra: at + 12,
        })
    }

    fn u32_at(&self, at: usize, what: &'static str) -> Result<u32, BtfError> {
        let b = take::<4>(&self.data, at, what)?;
        Ok(if self.little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    /// The NUL-terminated string at `off` within the string section.
    fn string(&self, off: usize) -> Option<&[u8]> {
        let (start, end) = self.strings;
        let s = self.data.get(start.checked_add(off)?..end)?;
        let nul = s.iter().position(|&b| b == 0)?;
        s.get(..nul)
    }
}

fn take<const N: usize>(data: &[u8], at: usize, what: &'static str) -> Result<[u8; N], BtfError> {
    at.checked_add(N)
        .and_then(|end| data.get(at..end))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(BtfError::Truncated { what, offset: at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Builder, kernel_like};

    fn kernel_btf() -> Btf {
        let (base, split) = kernel_like();
        Btf::parse(&base).unwrap().parse_split(&split).unwrap()
    }

    #[test]
    fn resolves_members_across_base_and_split_parts() {
        let btf = kernel_btf();
        assert_eq!(
            btf.field("sock.__sk_common.skc_net.net").unwrap(),
            Field {
                offset: 40,
                size: 8
            }
        );
        assert_eq!(
            btf.field("net.ns.inum").unwrap(),
            Field {
                offset: 144,
                size: 4
            }
        );
        assert_eq!(
            btf.field("sctp_transport.rto").unwrap(),
            Field {
                offset: 176,
                size: 8
            }
        );
        assert_eq!(
            btf.field("sctp_transport.rtt").unwrap(),
            Field {
                offset: 184,
                size: 4
            }
        );
        assert_eq!(
            btf.field("sctp_transport.asoc").unwrap(),
            Field {
                offset: 168,
                size: 8
            }
        );
        assert_eq!(
            btf.field("sctp_association.assoc_id").unwrap(),
            Field {
                offset: 128,
                size: 4
            }
        );
        assert_eq!(
            btf.field("sctp_association.peer.port").unwrap(),
            Field {
                offset: 258,
                size: 2
            }
        );
        assert_eq!(
            btf.field("sctp_association.peer.primary_path").unwrap(),
            Field {
                offset: 264,
                size: 8
            }
        );
        assert_eq!(
            btf.field("sctp_association.base.sk").unwrap(),
            Field {
                offset: 16,
                size: 8
            }
        );
        assert_eq!(
            btf.field("sctp_association.base.bind_addr.port").unwrap(),
            Field {
                offset: 56,
                size: 2
            }
        );
        assert_eq!(
            btf.field("sctp_transport.ipaddr.v4.sin_addr").unwrap(),
            Field {
                offset: 140,
                size: 4
            }
        );
        assert_eq!(
            btf.field("sctp_transport.ipaddr.v6.sin6_addr").unwrap(),
            Field {
                offset: 144,
                size: 16
            }
        );
        assert_eq!(
            btf.field("sctp_transport.ipaddr.sa.sa_family").unwrap(),
            Field {
                offset: 136,
                size: 2
            }
        );
        assert_eq!(btf.composite_size("sctp_addr").unwrap(), 28);
    }

    #[test]
    fn finds_members_of_anonymous_unions() {
        let btf = kernel_btf();
        assert_eq!(
            btf.field("sock_common.skc_u16hashes").unwrap(),
            Field { offset: 4, size: 4 }
        );
        assert_eq!(
            btf.field("sock.__sk_common.skc_hash").unwrap(),
            Field { offset: 4, size: 4 }
        );
    }

    #[test]
    fn reports_what_is_missing() {
        let btf = kernel_btf();
        assert!(matches!(
            btf.field("sctp_transport.nope"),
            Err(BtfError::MemberNotFound { .. })
        ));
        assert!(matches!(
            btf.field("sctp_nothing.rto"),
            Err(BtfError::TypeNotFound(_))
        ));
        assert!(matches!(
            btf.field("sctp_transport.rto.x"),
            Err(BtfError::NotComposite(_))
        ));
        assert!(matches!(
            btf.field("sock_common.skc_state"),
            Err(BtfError::Bitfield(_))
        ));
        assert!(matches!(
            btf.field("sctp_transport"),
            Err(BtfError::BadPath(_))
        ));
        assert!(matches!(
            btf.enum_value("sctp_retransmit_reason", "NOPE"),
            Err(BtfError::EnumNotFound(..))
        ));
    }

    #[test]
    fn resolves_one_bit_flags() {
        let btf = kernel_btf();
        // `temp` is bit 1 of byte 1756 (bit offset 14049), as on Debian's 6.1 and 6.12.
        assert_eq!(btf.flag("sctp_association.temp").unwrap(), (1756, 0x02));
        assert!(matches!(
            btf.field("sctp_association.temp"),
            Err(BtfError::Bitfield(_))
        ));
    }

    #[test]
    fn reads_enums_and_functions() {
        let btf = kernel_btf();
        assert_eq!(
            btf.enum_value("sctp_retransmit_reason", "SCTP_RTXR_PMTUD")
                .unwrap(),
            2
        );
        assert!(btf.has_func("sctp_transport_update_rto"));
        assert!(!btf.has_func("sctp_nothing"));
    }

    #[test]
    fn the_base_alone_lacks_module_types() {
        let (base, _) = kernel_like();
        let btf = Btf::parse(&base).unwrap();
        assert!(btf.field("net.ns.inum").is_ok());
        assert!(matches!(
            btf.field("sctp_transport.rto"),
            Err(BtfError::TypeNotFound(_))
        ));
    }

    #[test]
    fn big_endian_blobs_parse_too() {
        // A base with one int and one struct, written big endian by hand.
        let mut b = Builder::base();
        let int = b.int("int", 4);
        b.structure("s", 8, &[("a", int, 0, 0), ("b", int, 32, 0)]);
        let le = b.build();
        let mut be = le.clone();
        // Swap every 32-bit word after the 4-byte magic/version/flags prefix except the string
        // section, and the 16-bit magic.
        be[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        let str_start = 24 + b.types.len();
        for w in be[4..str_start].chunks_exact_mut(4) {
            w.reverse();
        }
        let btf = Btf::parse(&be).unwrap();
        assert_eq!(btf.field("s.b").unwrap(), Field { offset: 4, size: 4 });
    }

    #[test]
    fn anonymous_members_are_searched_in_linear_time() {
        // Found while writing the fuzz target `btf` (a hang, not a panic). C allows neither,
        // but a blob can make a struct its own anonymous member (a cycle), or stack structs
        // that each hold the next one several times as anonymous members (a chain). The
        // member search used to walk every path through them: 8^16 visits for this chain
        // (within the depth limit, which stops the cycle but not the fan-out): it never ended.
        let mut b = Builder::base();
        let int = b.int("int", 4);
        let mut inner = b.structure("", 4, &[("x", int, 0, 0)]);
        for _ in 0..16 {
            let anon: Vec<(&str, u32, u32, u32)> = (0..8).map(|i| ("", inner, i * 32, 0)).collect();
            inner = b.structure("", 32, &anon);
        }
        b.structure("chain", 32, &[("", inner, 0, 0)]);
        // A struct of 8 anonymous members of its own type (id known in advance: the next one).
        let cyclic = inner + 2;
        let anon: Vec<(&str, u32, u32, u32)> = (0..8).map(|i| ("", cyclic, i * 32, 0)).collect();
        assert_eq!(b.structure("cycle", 32, &anon), cyclic);
        let btf = Btf::parse(&b.build()).unwrap();
        let t0 = std::time::Instant::now();
        assert!(matches!(
            btf.field("chain.y"),
            Err(BtfError::MemberNotFound { .. })
        ));
        assert_eq!(btf.field("chain.x").unwrap(), Field { offset: 0, size: 4 });
        assert!(matches!(
            btf.field("cycle.y"),
            Err(BtfError::MemberNotFound { .. })
        ));
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn malformed_blobs_are_errors_not_panics() {
        let (base, split) = kernel_like();
        assert!(matches!(Btf::parse(&[]), Err(BtfError::Truncated { .. })));
        assert!(matches!(
            Btf::parse(&[0, 0, 1, 0]),
            Err(BtfError::BadMagic(0))
        ));
        let mut v2 = base.clone();
        v2[2] = 2;
        assert!(matches!(
            Btf::parse(&v2),
            Err(BtfError::UnsupportedVersion(2))
        ));
        for len in 0..base.len() {
            let _ = Btf::parse(&base[..len]);
        }
        let full = || Btf::parse(&base).unwrap();
        for len in 0..split.len() {
            if let Ok(btf) = full().parse_split(&split[..len]) {
                let _ = btf.field("sctp_association.peer.port");
            }
        }
        // Flip bytes one at a time: whatever parses must still answer without panicking.
        for i in 0..split.len() {
            let mut bad = split.clone();
            bad[i] ^= 0xa5;
            if let Ok(btf) = full().parse_split(&bad) {
                let _ = btf.field("sctp_association.peer.port");
                let _ = btf.field("sctp_transport.ipaddr.v6.sin6_addr");
                let _ = btf.enum_value("sctp_retransmit_reason", "SCTP_RTXR_T1_RTX");
            }
        }
    }
}
