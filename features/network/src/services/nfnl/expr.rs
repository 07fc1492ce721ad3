//! [`Rule`]s as nf_tables expressions, the same ones `nft` generates for their text (checked
//! against `nft --debug=netlink` and, on the real kernel, by tests/services.rs comparing
//! `nft list table` after applying a ruleset both ways). Everything goes through register 1
//! (16 bytes), as `nft` does; `dnat` uses registers 1 (address) and 2 (port).

use std::net::IpAddr;

use ipnet::IpNet;

use super::nla::Writer;
use crate::services::model::{Family, Proto};
use crate::services::rule::{Action, Match, Rule};

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG_2: u32 = 2;

/// Verdict codes (`NF_DROP`, `NFT_JUMP`, ...), as the kernel's signed values.
const NF_DROP: i32 = 0;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;

const NFT_META_MARK: u32 = 3;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_NG_RANDOM: u32 = 1;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_SADDR: u32 = 1;
/// `RTN_LOCAL`, compared in host order (it is a value the kernel computed, not packet data).
const RTN_LOCAL: u32 = 2;
const NFT_DYNSET_OP_UPDATE: u32 = 1;
const NFT_NAT_DNAT: u32 = 1;
/// `NF_NAT_RANGE_PROTO_SPECIFIED`: the port register is set.
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

/// Writes `rule`'s expression list (the contents of `NFTA_RULE_EXPRESSIONS`).
pub fn rule(w: &mut Writer, rule: &Rule) {
    for m in &rule.matches {
        matches(w, m);
    }
    action(w, &rule.action);
}

/// Writes an `NFTA_DATA_VERDICT` body: code and chain.
pub fn verdict(w: &mut Writer, code: i32, chain: Option<&str>) {
    w.nested(NFTA_DATA_VERDICT, |w| {
        w.u32(NFTA_VERDICT_CODE, code.cast_unsigned());
        if let Some(c) = chain {
            w.str(NFTA_VERDICT_CHAIN, c);
        }
    });
}

/// The `goto` verdict code.
pub fn goto_code() -> i32 {
    NFT_GOTO
}

fn matches(w: &mut Writer, m: &Match) {
    match m {
        Match::FibSaddrLocal => {
            expr(w, "fib", |w| {
                w.u32(3, NFTA_FIB_F_SADDR); // NFTA_FIB_FLAGS
                w.u32(2, NFT_FIB_RESULT_ADDRTYPE); // NFTA_FIB_RESULT
                w.u32(1, REG_1); // NFTA_FIB_DREG
            });
            cmp_eq(w, &RTN_LOCAL.to_ne_bytes());
        }
        Match::Saddr(net) => saddr(w, net),
        Match::SaddrInSet(family, set) => {
            load_saddr(w, *family, full_len(*family));
            expr(w, "lookup", |w| {
                w.u32(2, REG_1); // NFTA_LOOKUP_SREG
                w.str(1, set); // NFTA_LOOKUP_SET
            });
        }
        Match::Numgen(modulus) => {
            expr(w, "numgen", |w| {
                w.u32(1, REG_1); // NFTA_NG_DREG
                w.u32(2, *modulus); // NFTA_NG_MODULUS
                w.u32(3, NFT_NG_RANDOM); // NFTA_NG_TYPE
                w.u32(4, 0); // NFTA_NG_OFFSET
            });
            cmp_eq(w, &0u32.to_ne_bytes());
        }
        Match::L4Proto(p) => {
            meta(w, NFT_META_L4PROTO);
            cmp_eq(w, &[proto_number(*p)]);
        }
    }
}

fn action(w: &mut Writer, a: &Action) {
    match a {
        Action::Jump(c) => immediate_verdict(w, NFT_JUMP, Some(c)),
        Action::Goto(c) => immediate_verdict(w, NFT_GOTO, Some(c)),
        Action::Drop => immediate_verdict(w, NF_DROP, None),
        Action::Return => immediate_verdict(w, NFT_RETURN, None),
        Action::UpdateSaddr(family, set) => {
            load_saddr(w, *family, full_len(*family));
            expr(w, "dynset", |w| {
                w.u32(4, REG_1); // NFTA_DYNSET_SREG_KEY
                w.u32(3, NFT_DYNSET_OP_UPDATE); // NFTA_DYNSET_OP
                w.str(1, set); // NFTA_DYNSET_SET_NAME
            });
        }
        Action::OrMark(bits) => {
            meta(w, NFT_META_MARK);
            expr(w, "bitwise", |w| {
                w.u32(1, REG_1); // NFTA_BITWISE_SREG
                w.u32(2, REG_1); // NFTA_BITWISE_DREG
                w.u32(6, 0); // NFTA_BITWISE_OP: NFT_BITWISE_BOOL (mask and xor)
                w.u32(3, 4); // NFTA_BITWISE_LEN
                w.nested(4, |w| w.bytes_attr(NFTA_DATA_VALUE, &(!bits).to_ne_bytes()));
                w.nested(5, |w| w.bytes_attr(NFTA_DATA_VALUE, &bits.to_ne_bytes()));
            });
            expr(w, "meta", |w| {
                w.u32(2, NFT_META_MARK); // NFTA_META_KEY
                w.u32(3, REG_1); // NFTA_META_SREG
            });
        }
        Action::Dnat(to) => {
            let addr = ip_bytes(to.ip());
            immediate_value(w, REG_1, &addr);
            immediate_value(w, REG_2, &to.port().to_be_bytes());
            let family = match to.ip() {
                IpAddr::V4(_) => NFPROTO_IPV4,
                IpAddr::V6(_) => NFPROTO_IPV6,
            };
            expr(w, "nat", |w| {
                w.u32(1, NFT_NAT_DNAT); // NFTA_NAT_TYPE
                w.u32(2, u32::from(family)); // NFTA_NAT_FAMILY
                w.u32(3, REG_1); // NFTA_NAT_REG_ADDR_MIN
                w.u32(5, REG_2); // NFTA_NAT_REG_PROTO_MIN
                w.u32(7, NF_NAT_RANGE_PROTO_SPECIFIED); // NFTA_NAT_FLAGS
            });
        }
    }
}

/// `ip saddr <net>` as nft builds it: a whole address compares all of it, a byte-aligned
/// prefix loads and compares only its bytes, any other prefix masks the whole address.
fn saddr(w: &mut Writer, net: &IpNet) {
    let family = Family::of(net.addr());
    let full = full_len(family);
    let prefix = usize::from(net.prefix_len());
    let network = ip_bytes(net.network());
    if prefix == full * 8 {
        load_saddr(w, family, full);
        cmp_eq(w, &network);
    } else if prefix > 0 && prefix.is_multiple_of(8) {
        load_saddr(w, family, prefix / 8);
        cmp_eq(w, &network[..prefix / 8]);
    } else {
        load_saddr(w, family, full);
        let mask = ip_bytes(net.netmask());
        let len = u32::try_from(full).unwrap_or(u32::MAX);
        expr(w, "bitwise", |w| {
            w.u32(1, REG_1); // NFTA_BITWISE_SREG
            w.u32(2, REG_1); // NFTA_BITWISE_DREG
            w.u32(3, len); // NFTA_BITWISE_LEN
            w.nested(4, |w| w.bytes_attr(NFTA_DATA_VALUE, &mask)); // NFTA_BITWISE_MASK
            w.nested(5, |w| w.bytes_attr(NFTA_DATA_VALUE, &vec![0; full])); // NFTA_BITWISE_XOR
        });
        cmp_eq(w, &network);
    }
}

/// `meta nfproto <family>` (the dependency nft adds in an `inet` table), then `len` bytes of
/// the source address into register 1.
fn load_saddr(w: &mut Writer, family: Family, len: usize) {
    meta(w, NFT_META_NFPROTO);
    let (nfproto, offset) = match family {
        Family::V4 => (NFPROTO_IPV4, 12),
        Family::V6 => (NFPROTO_IPV6, 8),
    };
    cmp_eq(w, &[nfproto]);
    expr(w, "payload", |w| {
        w.u32(1, REG_1); // NFTA_PAYLOAD_DREG
        w.u32(2, NFT_PAYLOAD_NETWORK_HEADER); // NFTA_PAYLOAD_BASE
        w.u32(3, offset); // NFTA_PAYLOAD_OFFSET
        w.u32(4, u32::try_from(len).unwrap_or(u32::MAX)); // NFTA_PAYLOAD_LEN
    });
}

fn meta(w: &mut Writer, key: u32) {
    expr(w, "meta", |w| {
        w.u32(2, key); // NFTA_META_KEY
        w.u32(1, REG_1); // NFTA_META_DREG
    });
}

fn cmp_eq(w: &mut Writer, data: &[u8]) {
    expr(w, "cmp", |w| {
        w.u32(1, REG_1); // NFTA_CMP_SREG
        w.u32(2, 0); // NFTA_CMP_OP: NFT_CMP_EQ
        w.nested(3, |w| w.bytes_attr(NFTA_DATA_VALUE, data)); // NFTA_CMP_DATA
    });
}

fn immediate_verdict(w: &mut Writer, code: i32, chain: Option<&str>) {
    expr(w, "immediate", |w| {
        w.u32(1, REG_VERDICT); // NFTA_IMMEDIATE_DREG
        w.nested(2, |w| verdict(w, code, chain)); // NFTA_IMMEDIATE_DATA
    });
}

fn immediate_value(w: &mut Writer, reg: u32, data: &[u8]) {
    expr(w, "immediate", |w| {
        w.u32(1, reg); // NFTA_IMMEDIATE_DREG
        w.nested(2, |w| w.bytes_attr(NFTA_DATA_VALUE, data)); // NFTA_IMMEDIATE_DATA
    });
}

fn expr(w: &mut Writer, name: &str, data: impl FnOnce(&mut Writer)) {
    w.nested(NFTA_LIST_ELEM, |w| {
        w.str(NFTA_EXPR_NAME, name);
        w.nested(NFTA_EXPR_DATA, data);
    });
}

fn full_len(family: Family) -> usize {
    match family {
        Family::V4 => 4,
        Family::V6 => 16,
    }
}

/// An address in network order.
pub fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The IANA protocol number.
pub fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
        Proto::Sctp => 132,
    }
}
