//! SipHash-2-4 with a secret key ([`SipHasher24`]), for `Via` branches and `To` tags the
//! relay derives from a request: deterministic for a given key across processes and Rust
//! versions (unlike `std`'s `DefaultHasher`), and not forgeable without the key.
//!
//! Pure arithmetic; written out here (40 lines) rather than taken as a dependency, and
//! checked against the reference vectors of Aumasson and Bernstein's paper.

/// SipHash-2-4, 64-bit output, streaming.
#[derive(Debug, Clone)]
pub(crate) struct SipHasher24 {
    v: [u64; 4],
    tail: u64,
    ntail: u32,
    length: u64,
}

impl SipHasher24 {
    /// A hasher keyed with `key` (little-endian k0, k1).
    pub(crate) const fn new(key: &[u8; 16]) -> Self {
        let [
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            a6,
            a7,
            b0,
            b1,
            b2,
            b3,
            b4,
            b5,
            b6,
            b7,
        ] = *key;
        let k0 = u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
        let k1 = u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
        Self {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
            tail: 0,
            ntail: 0,
            length: 0,
        }
    }

    const fn round(v: &mut [u64; 4]) {
        let [mut v0, mut v1, mut v2, mut v3] = *v;
        v0 = v0.wrapping_add(v1);
        v1 = v1.rotate_left(13) ^ v0;
        v0 = v0.rotate_left(32);
        v2 = v2.wrapping_add(v3);
        v3 = v3.rotate_left(16) ^ v2;
        v0 = v0.wrapping_add(v3);
        v3 = v3.rotate_left(21) ^ v0;
        v2 = v2.wrapping_add(v1);
        v1 = v1.rotate_left(17) ^ v2;
        v2 = v2.rotate_left(32);
        *v = [v0, v1, v2, v3];
    }

    const fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        Self::round(&mut self.v);
        Self::round(&mut self.v);
        self.v[0] ^= m;
    }

    /// Feeds raw bytes.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.tail |= u64::from(b) << (8 * self.ntail);
            self.ntail += 1;
            self.length = self.length.wrapping_add(1);
            if self.ntail == 8 {
                self.compress(self.tail);
                self.tail = 0;
                self.ntail = 0;
            }
        }
    }

    /// Feeds one field, length-prefixed so that field boundaries cannot be shifted.
    pub(crate) fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
        self
    }

    /// The 64-bit hash.
    pub(crate) const fn finish(&self) -> u64 {
        let mut s = Self {
            v: self.v,
            tail: self.tail,
            ntail: self.ntail,
            length: self.length,
        };
        let b = ((s.length & 0xff) << 56) | s.tail;
        s.compress(b);
        s.v[2] ^= 0xff;
        Self::round(&mut s.v);
        Self::round(&mut s.v);
        Self::round(&mut s.v);
        Self::round(&mut s.v);
        s.v[0] ^ s.v[1] ^ s.v[2] ^ s.v[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> [u8; 16] {
        core::array::from_fn(|i| i as u8)
    }

    /// Reference vectors (key 00..0f, message 00..(n-1)) from the SipHash paper's appendix /
    /// the reference implementation's `vectors.h`.
    #[test]
    fn reference_vectors() {
        let want: [(usize, u64); 4] = [
            (0, 0x726f_db47_dd0e_0e31),
            (1, 0x74f8_39c5_93dc_67fd),
            (8, 0x93f5_f579_9a93_2462),
            (15, 0xa129_ca61_49be_45e5),
        ];
        for (n, h) in want {
            let msg: Vec<u8> = (0..n as u8).collect();
            let mut s = SipHasher24::new(&key());
            s.write(&msg);
            assert_eq!(s.finish(), h, "length {n}");
            // Split writes give the same result.
            let mut s = SipHasher24::new(&key());
            let (a, b) = msg.split_at(n / 2);
            s.write(a);
            s.write(b);
            assert_eq!(s.finish(), h, "split length {n}");
        }
    }

    #[test]
    fn fields_are_unambiguous() {
        let mut a = SipHasher24::new(&key());
        a.field(b"ab").field(b"c");
        let mut b = SipHasher24::new(&key());
        b.field(b"a").field(b"bc");
        assert_ne!(a.finish(), b.finish());
        let mut c = SipHasher24::new(&[1; 16]);
        c.field(b"ab").field(b"c");
        assert_ne!(a.finish(), c.finish(), "the key matters");
    }
}
