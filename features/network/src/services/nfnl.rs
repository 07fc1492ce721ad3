//! Incremental updates of `table inet knet-services` as nf_tables netlink batches, sent
//! straight to the kernel (NETLINK_NETFILTER) instead of through the `nft` binary, which
//! first rebuilds its cache of the whole table (~0.1 s at 10k Services) to apply a few lines.
//!
//! A [`Diff`] becomes one batch (`NFNL_MSG_BATCH_BEGIN` … `END`): NEWSET, NEWCHAIN,
//! DELRULE (flush) + NEWRULE, DELSETELEM/NEWSETELEM on the verdict maps (concatenated keys),
//! DELCHAIN, DELSET, in [`Diff`]'s order. The kernel applies a batch atomically: all of it or,
//! on any error, none of it. Only the last message asks for an acknowledgement; errors are
//! always reported, so after the send (processed synchronously by the kernel) the socket holds
//! either errors or that one ack.
//!
//! The full transaction (start, resync, after a failure) stays `nft -f -` text, which is what
//! the docs show and what `nft list table` prints.

mod expr;
mod nla;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, socket, sockopt,
};

use super::ServicesError;
use super::apply::Diff;
use super::base::TABLE;
use super::model::Family;
use super::rule::{AffinitySet, ElemKey};
use crate::kernel::in_netns;
use nla::Writer;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;

const NFPROTO_UNSPEC: u8 = 0;
const NFPROTO_INET: u8 = 1;

const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_TIMEOUT: u16 = 11;
const NFTA_SET_USERDATA: u16 = 13;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

/// `NFT_SET_TIMEOUT | NFT_SET_EVAL` (`flags dynamic,timeout`).
const AFFINITY_SET_FLAGS: u32 = 0x10 | 0x20;
/// nft's data type ids: `ipv4_addr`, `ipv6_addr`.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
/// nft's set user data: key byte order (`NFTNL_UDATA_SET_KEYBYTEORDER`) = big endian.
const UDATA_KEYBYTEORDER_BIG_ENDIAN: [u8; 6] = [0, 4, 2, 0, 0, 0];

/// Elements per NEWSETELEM/DELSETELEM message.
const ELEMENTS_PER_MESSAGE: usize = 256;
/// Default netlink send buffer; larger batches raise it (SO_SNDBUFFORCE, needs CAP_NET_ADMIN).
const DEFAULT_SNDBUF: usize = 200 * 1024;

/// One encoded batch and what each message was, for error messages.
#[derive(Debug, Default)]
pub struct Batch {
    w: Writer,
    what: Vec<String>,
    first_seq: u32,
    set_ids: u32,
    last_msg: Option<usize>,
}

/// A NETLINK_NETFILTER socket opened in the node's network namespace.
#[derive(Debug)]
pub struct NfSocket {
    fd: OwnedFd,
    seq: u32,
    sndbuf: usize,
}

// === impl Batch ===

impl Batch {
    /// Encodes `diff` as one batch; messages are numbered from `first_seq`.
    pub fn encode(diff: &Diff, first_seq: u32) -> Batch {
        let mut b = Batch {
            first_seq,
            ..Batch::default()
        };
        b.control(NFNL_MSG_BATCH_BEGIN);
        for (name, decl) in &diff.sets_add {
            b.new_set(name, *decl);
        }
        for name in &diff.chains_add {
            b.chain(NFT_MSG_NEWCHAIN, NLM_F_CREATE, name, "add chain");
        }
        for (name, rules, flush) in &diff.chains_fill {
            if *flush {
                b.flush(name);
            }
            for r in rules {
                b.msg(
                    NFT_MSG_NEWRULE,
                    NLM_F_CREATE | NLM_F_APPEND,
                    format!("add rule {name} {r}"),
                    |w| {
                        w.str(NFTA_RULE_TABLE, TABLE);
                        w.str(NFTA_RULE_CHAIN, name);
                        w.nested(NFTA_RULE_EXPRESSIONS, |w| expr::rule(w, r));
                    },
                );
            }
        }
        for chunk in group_by_map(diff.elements_del.iter().map(|(m, k)| (*m, k, None))) {
            b.elements(NFT_MSG_DELSETELEM, 0, &chunk);
        }
        let adds = diff
            .elements_add
            .iter()
            .map(|(m, k, v)| (*m, k, Some(v.0.as_str())));
        for chunk in group_by_map(adds) {
            b.elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, &chunk);
        }
        for name in &diff.chains_del {
            b.flush(name);
        }
        for name in &diff.chains_del {
            b.chain(NFT_MSG_DELCHAIN, 0, name, "delete chain");
        }
        for name in &diff.sets_del {
            b.msg(NFT_MSG_DELSET, 0, format!("delete set {name}"), |w| {
                w.str(NFTA_SET_TABLE, TABLE);
                w.str(NFTA_SET_NAME, name);
            });
        }
        if let Some(at) = b.last_msg {
            b.w.or_flags(at, NLM_F_ACK);
        }
        b.control(NFNL_MSG_BATCH_END);
        b
    }

    /// The bytes to send.
    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    /// Messages between BEGIN and END.
    pub fn messages(&self) -> usize {
        self.what.len()
    }

    fn seq(&self) -> u32 {
        self.first_seq
            .wrapping_add(u32::try_from(self.what.len()).unwrap_or(u32::MAX))
    }

    fn control(&mut self, ty: u16) {
        let seq = self.seq();
        self.w.message(
            ty,
            NLM_F_REQUEST,
            seq,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
            |_| {},
        );
    }

    fn msg(&mut self, ty: u16, flags: u16, what: String, body: impl FnOnce(&mut Writer)) {
        self.what.push(what);
        self.last_msg = Some(self.w.bytes().len());
        let seq = self.seq();
        self.w.message(
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            NLM_F_REQUEST | flags,
            seq,
            NFPROTO_INET,
            0,
            body,
        );
    }

    fn chain(&mut self, ty: u16, flags: u16, name: &str, verb: &str) {
        self.msg(ty, flags, format!("{verb} {name}"), |w| {
            w.str(NFTA_CHAIN_TABLE, TABLE);
            w.str(NFTA_CHAIN_NAME, name);
        });
    }

    /// DELRULE with a chain and no handle: every rule of the chain.
    fn flush(&mut self, name: &str) {
        self.msg(NFT_MSG_DELRULE, 0, format!("flush chain {name}"), |w| {
            w.str(NFTA_RULE_TABLE, TABLE);
            w.str(NFTA_RULE_CHAIN, name);
        });
    }

    fn new_set(&mut self, name: &str, decl: AffinitySet) {
        self.set_ids += 1;
        let id = self.set_ids;
        let (ty, len) = match decl.family {
            Family::V4 => (TYPE_IPADDR, 4),
            Family::V6 => (TYPE_IP6ADDR, 16),
        };
        self.msg(
            NFT_MSG_NEWSET,
            NLM_F_CREATE,
            format!("add set {name} {{ {decl} }}"),
            |w| {
                w.str(NFTA_SET_TABLE, TABLE);
                w.str(NFTA_SET_NAME, name);
                w.u32(NFTA_SET_FLAGS, AFFINITY_SET_FLAGS);
                w.u32(NFTA_SET_KEY_TYPE, ty);
                w.u32(NFTA_SET_KEY_LEN, len);
                w.u32(NFTA_SET_ID, id);
                w.u64(NFTA_SET_TIMEOUT, u64::from(decl.timeout) * 1000);
                w.bytes_attr(NFTA_SET_USERDATA, &UDATA_KEYBYTEORDER_BIG_ENDIAN);
            },
        );
    }

    fn elements(&mut self, ty: u16, flags: u16, chunk: &ElementChunk<'_>) {
        let verb = if ty == NFT_MSG_NEWSETELEM {
            "add"
        } else {
            "delete"
        };
        let shown: Vec<String> = chunk.items.iter().map(|(k, _)| k.to_string()).collect();
        let what = format!("{verb} element {} {{ {} }}", chunk.map, shown.join(", "));
        self.msg(ty, flags, what, |w| {
            w.str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
            w.str(NFTA_SET_ELEM_LIST_SET, chunk.map);
            w.nested(NFTA_SET_ELEM_LIST_ELEMENTS, |w| {
                for (key, goto) in &chunk.items {
                    w.nested(NFTA_LIST_ELEM, |w| {
                        w.nested(NFTA_SET_ELEM_KEY, |w| {
                            w.bytes_attr(NFTA_DATA_VALUE, &key_bytes(key));
                        });
                        if let Some(chain) = goto {
                            w.nested(NFTA_SET_ELEM_DATA, |w| {
                                expr::verdict(w, expr::goto_code(), Some(chain));
                            });
                        }
                    });
                }
            });
        });
    }
}

/// Up to [`ELEMENTS_PER_MESSAGE`] elements of one map.
struct ElementChunk<'a> {
    map: &'static str,
    items: Vec<(&'a ElemKey, Option<&'a str>)>,
}

fn group_by_map<'a>(
    items: impl Iterator<Item = (&'static str, &'a ElemKey, Option<&'a str>)>,
) -> Vec<ElementChunk<'a>> {
    let mut out: Vec<ElementChunk<'a>> = Vec::new();
    for (map, key, goto) in items {
        match out.last_mut() {
            Some(c) if c.map == map && c.items.len() < ELEMENTS_PER_MESSAGE => {
                c.items.push((key, goto));
            }
            _ => out.push(ElementChunk {
                map,
                items: vec![(key, goto)],
            }),
        }
    }
    out
}

/// A concatenated key as nft lays it out: each field padded to 4 bytes (address, protocol
/// number, port in network order).
fn key_bytes(k: &ElemKey) -> Vec<u8> {
    let mut b = Vec::with_capacity(24);
    if let Some(a) = k.addr {
        b.extend_from_slice(&expr::ip_bytes(a));
    }
    b.extend_from_slice(&[expr::proto_number(k.proto), 0, 0, 0]);
    b.extend_from_slice(&k.port.to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b
}

// === impl NfSocket ===

impl NfSocket {
    /// Opens a socket in `netns` (the daemon's own namespace when `None`).
    pub async fn open(netns: Option<&Path>) -> Result<NfSocket, ServicesError> {
        let fd = match netns {
            None => open_here(),
            Some(path) => in_netns(path, open_here).await?,
        }?;
        Ok(NfSocket {
            fd,
            seq: 1,
            sndbuf: DEFAULT_SNDBUF,
        })
    }

    /// Applies `diff` as one batch; returns the number of messages and bytes sent.
    pub fn apply(&mut self, diff: &Diff) -> Result<(usize, usize), ServicesError> {
        if diff.is_empty() {
            return Ok((0, 0));
        }
        self.drain();
        let batch = Batch::encode(diff, self.seq);
        // BEGIN and END take a number each too.
        self.seq = self
            .seq
            .wrapping_add(u32::try_from(batch.messages() + 2).unwrap_or(0));
        let bytes = batch.bytes();
        if bytes.len() + 64 * 1024 > self.sndbuf {
            let size = bytes.len() + 64 * 1024;
            setsockopt(&self.fd, sockopt::SndBufForce, &size)
                .map_err(|e| nl_err(format!("raising the send buffer to {size} bytes: {e}")))?;
            self.sndbuf = size;
        }
        let sent = send(self.fd.as_raw_fd(), bytes, MsgFlags::empty())
            .map_err(|e| nl_err(format!("sending a {} byte batch: {e}", bytes.len())))?;
        if sent != bytes.len() {
            return Err(nl_err(format!("sent {sent} of {} bytes", bytes.len())));
        }
        self.outcome(&batch)?;
        Ok((batch.messages(), bytes.len()))
    }

    /// Reads the kernel's answers to `batch`: an error for a failed message, or the ack of
    /// the last one.
    fn outcome(&self, batch: &Batch) -> Result<(), ServicesError> {
        let last = batch
            .first_seq
            .wrapping_add(u32::try_from(batch.messages()).unwrap_or(u32::MAX));
        let mut acked = false;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => return Err(nl_err(format!("reading the kernel's answer: {e}"))),
            };
            for (seq, errno) in errors(&buf[..n]) {
                if errno != 0 {
                    let what = seq
                        .checked_sub(batch.first_seq)
                        .and_then(|i| i.checked_sub(1))
                        .and_then(|i| batch.what.get(usize::try_from(i).ok()?))
                        .map_or("the batch".to_owned(), Clone::clone);
                    let err = nix::errno::Errno::from_raw(-errno);
                    return Err(nl_err(format!("{what}: {err}")));
                }
                if seq == last {
                    acked = true;
                }
            }
        }
        if acked {
            Ok(())
        } else {
            Err(nl_err("the kernel did not acknowledge the batch".into()))
        }
    }

    /// Drops answers left from an earlier batch.
    fn drain(&self) {
        let mut buf = vec![0u8; 8 * 1024];
        while recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).is_ok() {}
    }
}

fn open_here() -> Result<OwnedFd, ServicesError> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .map_err(|e| nl_err(format!("opening a NETLINK_NETFILTER socket: {e}")))?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
        .map_err(|e| nl_err(format!("binding the netlink socket: {e}")))?;
    Ok(fd)
}

/// `(seq, error)` of every NLMSG_ERROR in a datagram (error 0 is an ack).
fn errors(mut b: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    while b.len() >= 16 {
        let word = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let len = usize::try_from(word(0)).unwrap_or(usize::MAX);
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        if len < 16 || len > b.len() {
            break;
        }
        // The error's payload: the errno, then the header of the message it answers.
        if ty == NLMSG_ERROR && len >= 16 + 4 + 16 {
            let errno = word(16).cast_signed();
            let seq = word(20 + 8);
            out.push((seq, errno));
        }
        b = &b[(len + 3) & !3..];
        if b.len() < 16 {
            break;
        }
    }
    out
}

fn nl_err(msg: String) -> ServicesError {
    ServicesError::Netlink(msg)
}

#[cfg(test)]
mod tests;
