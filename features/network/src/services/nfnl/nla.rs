//! Writing netlink messages: `nlmsghdr` + `nfgenmsg` headers and (nested) attributes, with the
//! lengths filled in once the contents are known. nf_tables integers in attributes are big
//! endian; register data is raw bytes.

/// `NLA_F_NESTED`.
const NESTED: u16 = 0x8000;

/// A growing buffer of netlink messages.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

// === impl Writer ===

impl Writer {
    /// The bytes written so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Writes one message: `nlmsghdr` (type, flags, seq), `nfgenmsg` (family, version 0,
    /// `res_id` in network order), then whatever `body` writes.
    pub fn message(
        &mut self,
        ty: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
        body: impl FnOnce(&mut Writer),
    ) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]); // nlmsg_len, filled in below
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        body(self);
        self.set_len(start);
    }

    /// Adds `flags` to the message starting at byte `at`.
    pub fn or_flags(&mut self, at: usize, flags: u16) {
        let old = u16::from_ne_bytes([self.buf[at + 6], self.buf[at + 7]]);
        self.buf[at + 6..at + 8].copy_from_slice(&(old | flags).to_ne_bytes());
    }

    /// An attribute with raw contents.
    pub fn bytes_attr(&mut self, ty: u16, data: &[u8]) {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// A big-endian u32 attribute.
    pub fn u32(&mut self, ty: u16, v: u32) {
        self.bytes_attr(ty, &v.to_be_bytes());
    }

    /// A big-endian u64 attribute.
    pub fn u64(&mut self, ty: u16, v: u64) {
        self.bytes_attr(ty, &v.to_be_bytes());
    }

    /// A NUL-terminated string attribute.
    pub fn str(&mut self, ty: u16, s: &str) {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.bytes_attr(ty, &data);
    }

    /// A nested attribute holding what `body` writes.
    pub fn nested(&mut self, ty: u16, body: impl FnOnce(&mut Writer)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(ty | NESTED).to_ne_bytes());
        body(self);
        let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn set_len(&mut self, start: usize) {
        let len = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nested_lengths_cover_their_contents() {
        let mut w = Writer::default();
        w.message(0x0a06, 1, 7, 1, 0, |w| {
            w.str(1, "t");
            w.nested(4, |w| w.u32(2, 0x0102_0304));
        });
        let b = w.bytes();
        assert_eq!(b.len(), 16 + 4 + 8 + 12);
        assert_eq!(&b[..4], &40u32.to_ne_bytes());
        assert_eq!(&b[8..12], &7u32.to_ne_bytes());
        // "t\0" padded to 4: len 6.
        assert_eq!(&b[20..24], &[6, 0, 1, 0]);
        assert_eq!(&b[24..28], &[b't', 0, 0, 0]);
        // Nested: len 12, type 4 | NLA_F_NESTED, then the u32 attribute in network order.
        assert_eq!(&b[28..32], &[12, 0, 4, 0x80]);
        assert_eq!(&b[36..40], &[1, 2, 3, 4]);
    }
}
