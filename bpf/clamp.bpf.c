// tunshim's kernel data path: the MSS clamp and the oversize guard as tc (clsact)
// programs on a tunnel interface. The semantics are clamp/'s, decision for decision and
// byte for byte (clamp/mss.cpp, clamp/packet.cpp); tests/unit/bpf runs the differential
// corpus through both. docs/DATAPATH.md explains the choices made here.
//
// Everything is read with bpf_skb_load_bytes (works on non-linear skbs, bounds-checked by
// the helper) and written with bpf_skb_store_bytes and the checksum helpers, which know the
// skb's checksum state: a CHECKSUM_PARTIAL packet keeps its pseudo-header sum in the TCP
// checksum field, so only pseudo-header changes (the segment length) touch it there.
// linux/bpf.h (its types) must precede libbpf's helper headers.
// clang-format off
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
// clang-format on

#include "tunshim_bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, TS_MAX_IFACES);
  __type(key, __u32);
  __type(value, struct ts_iface);
} ts_ifaces SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, TS_MAX_IFACES);
  __type(key, __u32);
  __type(value, struct ts_counters);
} ts_counters SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct ts_state);
} ts_state SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, TS_FLOW_SLOTS);
  __type(key, __u32);
  __type(value, struct ts_flow);
} ts_flows SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 256 * 1024);
} ts_reports SEC(".maps");

#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_ICMPV6_ 58
#define IP6_HOPOPTS 0
#define IP6_ROUTING 43
#define IP6_FRAGMENT 44
#define IP6_DSTOPTS 60
#define IP6_NONEXT 59
#define MAX_IP6_EXT 8  // clamp::kMaxIp6ExtHeaders
#define TCP_HDR_MIN 20
#define TCP_HDR_MAX 60
#define TCP_CHECK 16
#define DEFAULT_MSS4 536
#define DEFAULT_MSS6 1220
#define IPV6_MIN_MTU 1280
// Bytes moved on insertion: the options (at most 36: insertion needs a header < 60) and
// any link padding after the IP packet. More padding than this is declared no_room.
#define MOVE_MAX 128

enum parse_status { P_OK, P_MALFORMED, P_UNSUPPORTED };

struct ipinfo {
  __u8 status;
  __u8 family;
  __u8 proto;
  __u8 first_fragment;
  __u8 later_fragment;
  __u8 dont_fragment;
  __u32 ip_len;
  __u32 l4_off;
};

static __always_inline __u16 be16_at(const __u8 *p) { return (__u16)((p[0] << 8) | p[1]); }

// The raw 16-bit value the checksum helpers take for the bytes {a, b} in packet order.
static __always_inline __u32 raw16(__u8 a, __u8 b) {
  __u16 v;
  __u8 *p = (__u8 *)&v;
  p[0] = a;
  p[1] = b;
  return v;
}

static __always_inline int ip6_opaque(__u8 nh) {
  return nh == 50 || nh == 51 || nh == IP6_NONEXT || nh == 135 || nh == 139 || nh == 140 ||
         nh == 253 || nh == 254;
}

// clamp::parse_ip over the skb's bytes [l2, l2 + len).
static __always_inline void parse_ip(struct __sk_buff *skb, __u32 l2, __u32 len,
                                     struct ipinfo *ip) {
  __u8 h[20];
  ip->status = P_MALFORMED;
  if (len == 0 || bpf_skb_load_bytes(skb, l2, h, 1) < 0) return;
  const __u8 version = h[0] >> 4;
  if (version == 4) {
    ip->family = 4;
    if (len < 20 || bpf_skb_load_bytes(skb, l2, h, 20) < 0) return;
    const __u32 hlen = (h[0] & 0x0fu) * 4;
    const __u32 total = be16_at(h + 2);
    if (hlen < 20 || total < hlen || total > len) return;
    const __u16 frag = be16_at(h + 6);
    ip->dont_fragment = (frag & 0x4000u) != 0;
    ip->later_fragment = (frag & 0x1fffu) != 0;
    ip->first_fragment = (frag & 0x2000u) && !ip->later_fragment;
    ip->proto = h[9];
    ip->ip_len = total;
    ip->l4_off = hlen;
    ip->status = P_OK;
    return;
  }
  if (version != 6) return;
  ip->family = 6;
  ip->dont_fragment = 1;
  if (len < 40 || bpf_skb_load_bytes(skb, l2, h, 8) < 0) return;
  const __u32 payload = be16_at(h + 4);
  __u8 nh = h[6];
  // A jumbogram (RFC 2675) or a header claiming a payload it does not have.
  if (payload == 0 && nh != IP6_NONEXT) return;
  const __u32 ip_len = 40 + payload;
  if (ip_len > len) return;
  ip->ip_len = ip_len;
  __u32 off = 40;
  for (int walked = 0; walked <= MAX_IP6_EXT; ++walked) {
    const int ext =
        nh == IP6_HOPOPTS || nh == IP6_ROUTING || nh == IP6_DSTOPTS || nh == IP6_FRAGMENT;
    if (!ext) {
      ip->proto = nh;
      ip->l4_off = off;
      ip->status = ip6_opaque(nh) ? P_UNSUPPORTED : P_OK;
      return;
    }
    if (walked == MAX_IP6_EXT) {
      ip->proto = nh;  // a chain longer than clamp/ follows
      ip->l4_off = off;
      ip->status = P_UNSUPPORTED;
      return;
    }
    if (nh == IP6_HOPOPTS && walked != 0) return;
    if (off + 8 > ip_len) return;
    __u8 e[8];
    if (bpf_skb_load_bytes(skb, l2 + off, e, 8) < 0) return;
    const __u8 next = e[0];
    if (nh == IP6_FRAGMENT) {
      const __u16 fo = be16_at(e + 2);
      off += 8;
      if (fo & 0xfff8u) {
        ip->later_fragment = 1;
        ip->first_fragment = 0;
        ip->proto = next;
        ip->l4_off = off;
        ip->status = P_OK;
        return;
      }
      if (fo & 1u) ip->first_fragment = 1;
    } else {
      const __u32 hlen = ((__u32)e[1] + 1) * 8;
      if (off + hlen > ip_len) return;
      off += hlen;
    }
    nh = next;
  }
}

// The option walk of clamp/mss.cpp's scan_options, one option per bpf_loop step (each
// step moves at least one byte, so 40 steps cover any header). A callback is verified
// once, where an unrolled walk multiplies the verifier's states by every path through it.
struct scan {
  __u8 hdr[64];
  __u32 hlen;
  __u32 i;
  __u32 mss_at;
  __u32 bad;
};

static int scan_step(__u32 n __attribute__((unused)), struct scan *sc) {
  const __u32 i = sc->i;
  if (i >= sc->hlen) return 1;
  const __u8 kind = sc->hdr[i & 63];
  if (kind == 0) return 1;  // EOL: the rest is padding
  if (kind == 1) {
    sc->i = i + 1;
    return 0;
  }
  if (i + 1 >= sc->hlen) goto bad;
  const __u32 len = sc->hdr[(i + 1) & 63];
  if (len < 2 || i + len > sc->hlen) goto bad;
  if (kind == 2) {
    if (len != 4 || sc->mss_at != 0) goto bad;
    sc->mss_at = i;
  }
  sc->i = i + len;
  return 0;
bad:
  sc->bad = 1;
  return 1;
}

// murmur3's 32-bit finaliser: every input bit reaches every output bit.
static __always_inline __u32 fmix32(__u32 h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

// A trigger symptom (a full-size retransmission, an ICMP too-big) on a tunnel whose path MTU
// the daemon measured: wake the daemon so that it reads the counters now (a burst brings
// its path-MTU re-check forward). Rate-limited per CPU; nothing without a live daemon.
static __always_inline void symptom_nudge(const struct ts_iface *cfg, struct ts_counters *c,
                                          __u32 ifindex) {
  if (cfg->watch_mtu == 0) return;
  const __u64 now = bpf_ktime_get_ns();
  if (now - c->nudge_ns < TS_NUDGE_GAP_NS) return;
  const __u32 zero = 0;
  const struct ts_state *st = bpf_map_lookup_elem(&ts_state, &zero);
  if (!st || st->heartbeat_ns == 0 || now - st->heartbeat_ns > st->stale_ns) return;
  c->nudge_ns = now;
  struct ts_report *r = bpf_ringbuf_reserve(&ts_reports, sizeof(*r), 0);
  if (!r) return;
  r->ifindex = ifindex;
  r->mtu = 0;
  r->cap_len = 0;
  r->wire_len = 0;
  r->pad = 0;
  bpf_ringbuf_submit(r, 0);
}

// The retransmission symptom (egress, TCP without SYN/RST/FIN, `hdr` its first 20 bytes):
// a segment of at least full4 / full6 bytes on the wire (a GSO packet: one segment) whose
// data ends at or before the end of the highest full-size segment this CPU saw of the
// flow. Flows hash into a direct-mapped per-CPU table: no locks, no allocation, a lookup
// the verifier inlines. A flow whose packets change CPU, or whose slot another flow took,
// is missed until its next segments (a retransmission then reads as new); a false count
// needs two flows with the same 32-bit hash. docs/DOCTOR.md, "In the daemon".
static __always_inline void retransmit_symptom(struct __sk_buff *skb, __u32 l2,
                                               const struct ipinfo *ip,
                                               const struct ts_iface *cfg, const __u8 *hdr,
                                               __u32 tcp_len, struct ts_counters *c) {
  const __u32 full = ip->family == 4 ? cfg->full4 : cfg->full6;
  if (full == 0 || !c || ip->first_fragment) return;
  const __u32 hlen = (__u32)(hdr[12] >> 4) * 4;
  if (hlen < TCP_HDR_MIN || hlen >= tcp_len) return;  // no payload
  const __u32 payload = tcp_len - hlen;
  const __u32 wire = skb->gso_size != 0 ? ip->l4_off + hlen + skb->gso_size : ip->ip_len;
  if (wire < full) return;
  __u32 h;
  if (ip->family == 4) {
    __u32 a[2];
    if (bpf_skb_load_bytes(skb, l2 + 12, a, 8) < 0) return;
    h = fmix32(a[0]) ^ a[1];
  } else {
    __u32 a[8];
    if (bpf_skb_load_bytes(skb, l2 + 8, a, 32) < 0) return;
    h = fmix32(a[0] ^ a[1] ^ a[2] ^ a[3]) ^ a[4] ^ a[5] ^ a[6] ^ a[7];
  }
  __u32 ports;
  __builtin_memcpy(&ports, hdr, 4);
  h = fmix32(fmix32(h ^ skb->ifindex) ^ ports);
  const __u32 slot = h & (TS_FLOW_SLOTS - 1);
  const __u32 tag = (h >> 13) | 1u;  // 19 bits beside the slot's 13; never 0
  struct ts_flow *f = bpf_map_lookup_elem(&ts_flows, &slot);
  if (!f) return;
  const __u32 seq =
      ((__u32)hdr[4] << 24) | ((__u32)hdr[5] << 16) | ((__u32)hdr[6] << 8) | hdr[7];
  const __u32 end = seq + payload;
  if (f->tag != tag) {
    f->tag = tag;
    f->next_seq = end;
    return;
  }
  if ((__s32)(end - f->next_seq) <= 0) {
    c->symptom[TS_SYM_RETRANSMIT]++;
    symptom_nudge(cfg, c, skb->ifindex);
  } else {
    f->next_seq = end;
  }
}

// clamp::clamp_mss on the parsed packet; returns its outcome. `end` is skb->len (the IP
// packet and any padding after it end there).
static __always_inline int clamp_mss(struct __sk_buff *skb, __u32 l2, const struct ipinfo *ip,
                                     const struct ts_iface *cfg, int dir,
                                     struct ts_counters *c) {
  if (ip->status == P_MALFORMED) return TS_MALFORMED;
  if (ip->later_fragment) return TS_FRAGMENT;
  if (ip->status == P_UNSUPPORTED || ip->proto != IPPROTO_TCP_) return TS_NOT_TCP;
  if (ip->l4_off + TCP_HDR_MIN > ip->ip_len) return TS_MALFORMED;
  const __u32 tcp_len = ip->ip_len - ip->l4_off;
  const __u32 l4 = l2 + ip->l4_off;
  __u8 hdr[64];
  if (bpf_skb_load_bytes(skb, l4, hdr, TCP_HDR_MIN) < 0) return TS_MALFORMED;
  const __u8 flags = hdr[13];
  if (dir == TS_EGRESS && cfg->symptoms && !(flags & 0x07))  // no SYN, RST or FIN
    retransmit_symptom(skb, l2, ip, cfg, hdr, tcp_len, c);
  // SYN set and RST clear (SYN+FIN is clamped, as by `--tcp-flags SYN,RST SYN`).
  if (!(flags & 0x02) || (flags & 0x04)) return TS_NOT_SYN;
  const __u16 want = ip->family == 4 ? cfg->mss4 : cfg->mss6;
  if (want == 0) return TS_DISABLED;
  const __u32 hlen = (__u32)(hdr[12] >> 4) * 4;
  if (hlen < TCP_HDR_MIN || hlen > tcp_len) return TS_MALFORMED;
  __u32 olen = hlen - TCP_HDR_MIN;
  if (olen > 0) {
    if (olen > TCP_HDR_MAX - TCP_HDR_MIN) return TS_MALFORMED;
    if (bpf_skb_load_bytes(skb, l4 + TCP_HDR_MIN, hdr + TCP_HDR_MIN, olen) < 0)
      return TS_MALFORMED;
  }

  struct scan sc = {.hlen = hlen, .i = TCP_HDR_MIN};
  __builtin_memcpy(sc.hdr, hdr, sizeof(sc.hdr));
  bpf_loop(TCP_HDR_MAX - TCP_HDR_MIN, scan_step, &sc, 0);
  if (sc.bad) return TS_MALFORMED;
  const __u32 mss_at = sc.mss_at;
  if (mss_at != 0) {
    const __u32 val = mss_at + 2;
    const __u8 hi = hdr[val & 63];
    const __u8 lo = hdr[(val + 1) & 63];
    const __u16 mss = (__u16)((hi << 8) | lo);
    if (mss <= want) return TS_UNCHANGED;  // never raise
    const __u8 nv[2] = {(__u8)(want >> 8), (__u8)want};
    if (bpf_skb_store_bytes(skb, l4 + val, nv, 2, 0) < 0) return TS_MALFORMED;
    // Options need no alignment: a value at an odd offset pairs with the other half of
    // each checksum word, which is the byte-swapped value (clamp::csum_replace_bytes).
    const int odd = val & 1;
    const __u32 from = odd ? raw16(lo, hi) : raw16(hi, lo);
    const __u32 to = odd ? raw16(nv[1], nv[0]) : raw16(nv[0], nv[1]);
    bpf_l4_csum_replace(skb, l4 + TCP_CHECK, from, to, 2);
    return TS_CLAMPED;
  }

  // No MSS option: insert one where clamp/ would (no payload, room in the header, not a
  // first fragment).
  if (tcp_len > hlen || hlen >= TCP_HDR_MAX || ip->first_fragment) return TS_UNCHANGED;
  const __u16 mss = want < (ip->family == 4 ? DEFAULT_MSS4 : DEFAULT_MSS6)
                        ? want
                        : (ip->family == 4 ? DEFAULT_MSS4 : DEFAULT_MSS6);
  // The packet grows at its tail and the options (and any padding) move 4 bytes on, so
  // the TCP header stays where it is: a CHECKSUM_PARTIAL skb's csum_start still points
  // at it. (bpf_skb_adjust_room would open the gap after a fixed 20/40-byte IP header,
  // in front of the TCP header, and csum_start would then point 4 bytes into it.)
  const __u32 opt = l4 + TCP_HDR_MIN;
  const __u32 end = skb->len;
  if (end < opt) return TS_MALFORMED;
  const __u64 move = (__u64)end - opt;  // 64-bit, or clang loses the bound
  if (move > MOVE_MAX) return TS_NO_ROOM;
  __u8 buf[MOVE_MAX];
  if (move > 0 && bpf_skb_load_bytes(skb, opt, buf, move) < 0) return TS_NO_ROOM;
  if (bpf_skb_change_tail(skb, end + 4, 0) < 0) return TS_NO_ROOM;
  if (move > 0 && bpf_skb_store_bytes(skb, opt + 4, buf, move, 0) < 0) return TS_MALFORMED;
  const __u8 o[4] = {2, 4, (__u8)(mss >> 8), (__u8)mss};
  bpf_skb_store_bytes(skb, opt, o, 4, 0);
  const __u8 doff = hdr[12] + 0x10;  // the data offset shares its word with the flags
  bpf_skb_store_bytes(skb, l4 + 12, &doff, 1, 0);

  const __u32 check = l4 + TCP_CHECK;
  bpf_l4_csum_replace(skb, check, raw16(hdr[12], hdr[13]), raw16(doff, hdr[13]), 2);
  bpf_l4_csum_replace(skb, check, 0, raw16(2, 4), 2);
  bpf_l4_csum_replace(skb, check, 0, raw16(o[2], o[3]), 2);
  // The pseudo-header's length grows by 4 (a payload-free SYN: the high word stays 0).
  const __u16 seg = (__u16)tcp_len;
  bpf_l4_csum_replace(skb, check, bpf_htons(seg), bpf_htons(seg + 4), BPF_F_PSEUDO_HDR | 2);
  if (ip->family == 4) {
    const __u16 total = (__u16)ip->ip_len;
    const __be16 nt = bpf_htons(total + 4);
    bpf_skb_store_bytes(skb, l2 + 2, &nt, 2, 0);
    bpf_l3_csum_replace(skb, l2 + 10, bpf_htons(total), nt, 2);
  } else {
    const __be16 np = bpf_htons((__u16)(ip->ip_len - 40 + 4));
    // No checksum covers the IPv6 length, so a CHECKSUM_COMPLETE sum must follow it.
    bpf_skb_store_bytes(skb, l2 + 4, &np, 2, BPF_F_RECOMPUTE_CSUM);
  }
  return TS_INSERTED;
}

// The size a packet has on the wire: its length, or for a GSO packet the size of one
// segment (gso_size payload bytes behind copies of its headers: that, not its total
// length, is what meets the path). 0 if its TCP header cannot be read.
static __always_inline __u32 wire_size(struct __sk_buff *skb, __u32 l2,
                                       const struct ipinfo *ip) {
  if (skb->gso_size == 0) return skb->len - l2;
  __u32 hdrs = ip->l4_off;
  if (ip->proto == IPPROTO_TCP_) {
    __u8 doff;
    if (bpf_skb_load_bytes(skb, l2 + ip->l4_off + 12, &doff, 1) < 0) return 0;
    hdrs += (doff >> 4) * 4;
  } else if (ip->proto == IPPROTO_UDP_) {
    hdrs += 8;
  }
  return hdrs + skb->gso_size;
}

// The daemon's own path-MTU probe: an echo request with its identifier, larger than the
// path on purpose while a search looks upward.
static __always_inline int own_probe(struct __sk_buff *skb, __u32 l2, const struct ipinfo *ip,
                                     const struct ts_iface *cfg) {
  if (!cfg->probe_valid || ip->status != P_OK || ip->later_fragment ||
      ip->l4_off + 8 > ip->ip_len ||
      ip->proto != (ip->family == 4 ? IPPROTO_ICMP_ : IPPROTO_ICMPV6_))
    return 0;
  __u8 icmp[6];
  return bpf_skb_load_bytes(skb, l2 + ip->l4_off, icmp, 6) == 0 &&
         icmp[0] == (ip->family == 4 ? 8 : 128) && icmp[1] == 0 &&
         be16_at(icmp + 4) == cfg->probe_ident;
}

// The guard (egress): TC_ACT_SHOT for a packet that would leave larger than guard_mtu
// with DF (IPv4) or at all (IPv6, when the path carries IPv6's minimum), else TC_ACT_OK.
// Mirrors OversizeGuard::decide's drop test; the daemon answers the reported ones.
static __always_inline int guard(struct __sk_buff *skb, __u32 l2, const struct ipinfo *ip,
                                 const struct ts_iface *cfg, struct ts_counters *c) {
  const __u32 mtu = cfg->guard_mtu;
  if (ip->status == P_MALFORMED) return TC_ACT_OK;
  if (ip->family == 4 && !ip->dont_fragment) return TC_ACT_OK;
  if (ip->family == 6 && mtu < IPV6_MIN_MTU) return TC_ACT_OK;
  const __u32 wire = wire_size(skb, l2, ip);
  const int gso = skb->gso_size != 0;
  if (wire == 0 || wire <= mtu) return TC_ACT_OK;
  if (own_probe(skb, l2, ip, cfg)) {
    if (c) c->guard[TS_GUARD_PROBE]++;
    return TC_ACT_OK;  // the daemon's own path-MTU probe
  }

  // Never drop without a daemon to answer: a heartbeat older than stale_ns opens the guard.
  const __u32 zero = 0;
  const struct ts_state *st = bpf_map_lookup_elem(&ts_state, &zero);
  if (!st || st->heartbeat_ns == 0 || bpf_ktime_get_ns() - st->heartbeat_ns > st->stale_ns) {
    if (c) c->guard[TS_GUARD_STALE]++;
    return TC_ACT_OK;
  }

  struct ts_report *r = bpf_ringbuf_reserve(&ts_reports, sizeof(*r), 0);
  if (r) {
    // 64-bit, so that clang keeps the bound the verifier checks on the register it passes.
    __u64 cap = (__u64)skb->len - l2;
    if (cap > TS_REPORT_BYTES) cap = TS_REPORT_BYTES;
    r->ifindex = skb->ifindex;
    r->mtu = (__u16)mtu;
    r->wire_len = wire;
    r->pad = 0;
    if (cap == 0 || bpf_skb_load_bytes(skb, l2, r->data, cap) < 0) cap = 0;
    r->cap_len = (__u16)cap;
    bpf_ringbuf_submit(r, 0);
  } else if (c) {
    c->guard[TS_GUARD_LOST]++;
  }
  if (c) {
    c->guard[TS_GUARD_DROPPED]++;
    if (gso) c->guard[TS_GUARD_OVERSIZE_GSO]++;
  }
  return TC_ACT_SHOT;
}

// The ICMP symptom (ingress): a frag-needed (type 3 code 4) or ICMPv6 packet-too-big
// (type 2) arriving by the tunnel, ours or anyone's.
static __always_inline void icmp_symptom(struct __sk_buff *skb, __u32 l2,
                                         const struct ipinfo *ip, const struct ts_iface *cfg,
                                         struct ts_counters *c) {
  if (ip->status != P_OK || ip->later_fragment || ip->l4_off + 8 > ip->ip_len) return;
  if (ip->proto != (ip->family == 4 ? IPPROTO_ICMP_ : IPPROTO_ICMPV6_)) return;
  __u8 t[2];
  if (bpf_skb_load_bytes(skb, l2 + ip->l4_off, t, 2) < 0) return;
  if (ip->family == 4 ? (t[0] == 3 && t[1] == 4) : t[0] == 2) {
    c->symptom[TS_SYM_ICMP_TOO_BIG]++;
    symptom_nudge(cfg, c, skb->ifindex);
  }
}

// The oversize symptom (egress): a DF (or IPv6) packet larger than the measured path MTU,
// by its size on the wire (a GSO packet: one segment). The daemon's own probes, larger on
// purpose while a search looks upward, are not counted.
static __always_inline void oversize_symptom(struct __sk_buff *skb, __u32 l2,
                                             const struct ipinfo *ip,
                                             const struct ts_iface *cfg,
                                             struct ts_counters *c) {
  if (ip->status == P_MALFORMED || (ip->family == 4 && !ip->dont_fragment)) return;
  const __u32 wire = wire_size(skb, l2, ip);
  if (wire == 0 || wire <= cfg->watch_mtu || own_probe(skb, l2, ip, cfg)) return;
  c->symptom[TS_SYM_OVERSIZE_DF]++;
}

static __always_inline int handle(struct __sk_buff *skb, int dir) {
  const __u32 ifindex = skb->ifindex;
  const struct ts_iface *cfg = bpf_map_lookup_elem(&ts_ifaces, &ifindex);
  if (!cfg) return TC_ACT_OK;
  if (skb->protocol != bpf_htons(ETH_P_IP) && skb->protocol != bpf_htons(ETH_P_IPV6))
    return TC_ACT_OK;
  const __u32 l2 = cfg->l2_len;
  if (skb->len < l2) return TC_ACT_OK;
  const __u32 slot = cfg->slot;
  struct ts_counters *c = bpf_map_lookup_elem(&ts_counters, &slot);

  struct ipinfo ip = {};
  parse_ip(skb, l2, skb->len - l2, &ip);
  if (cfg->symptoms && c) {
    if (dir == TS_INGRESS) {
      icmp_symptom(skb, l2, &ip, cfg, c);
    } else if (cfg->watch_mtu != 0) {
      oversize_symptom(skb, l2, &ip, cfg, c);
    }
  }
  if (dir == TS_EGRESS && cfg->guard_mtu != 0 && guard(skb, l2, &ip, cfg, c) == TC_ACT_SHOT)
    return TC_ACT_SHOT;
  const int outcome = clamp_mss(skb, l2, &ip, cfg, dir, c);
  if (c && outcome >= 0 && outcome < TS_OUTCOMES) c->clamp[dir & 1][outcome]++;
  return TC_ACT_OK;
}

SEC("tc")
int tunshim_egress(struct __sk_buff *skb) { return handle(skb, TS_EGRESS); }

SEC("tc")
int tunshim_ingress(struct __sk_buff *skb) { return handle(skb, TS_INGRESS); }
