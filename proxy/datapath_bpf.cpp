// Loader of the kernel data path (bpf/clamp.bpf.c). See datapath_bpf.h.
#include "proxy/datapath_bpf.h"

#include <net/if.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <optional>

#ifdef TUNSHIM_HAVE_BPF
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <libmnl/libmnl.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <spdlog/spdlog.h>

#include "bpf/tunshim_bpf.h"
#include "clamp.skel.h"
#endif

namespace tunshim::proxy {

#ifdef TUNSHIM_HAVE_BPF
static_assert(int{BpfCounters::kSymptoms} == int{TS_SYMPTOMS} &&
              int{BpfCounters::kRetransmit} == int{TS_SYM_RETRANSMIT} &&
              int{BpfCounters::kIcmpTooBig} == int{TS_SYM_ICMP_TOO_BIG} &&
              int{BpfCounters::kOversizeDf} == int{TS_SYM_OVERSIZE_DF});
namespace {

// libbpf's messages while open() runs: the last non-empty line names the cause of a
// failed load (usually the verifier's verdict).
thread_local std::string* g_libbpf_log = nullptr;

// libbpf's messages: kept by open() while it loads; afterwards into the daemon's log. The
// kernel's extended acks of tc queries for a filter not (yet) there ("Cannot find specified
// filter chain") are expected on every attach: debug, not the raw stderr lines they were.
int capture_libbpf(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[512];
  const int n = std::vsnprintf(line, sizeof(line), fmt, ap);
  if (n <= 0) return 0;
  std::string s(line);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (s.empty()) return 0;
  if (g_libbpf_log != nullptr) {
    if (s.find("-- END PROG LOAD LOG --") == std::string::npos) *g_libbpf_log = s;
  } else if (s.find("Kernel error message") != std::string::npos) {
    spdlog::debug("libbpf: {}", s);
  } else {
    spdlog::warn("libbpf: {}", s);
  }
  return 0;
}

std::uint64_t monotonic_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

std::string errstr(int err) { return std::strerror(err < 0 ? -err : err); }

// The name of the program with kernel id `id`, or "" if it cannot be read.
std::string prog_name(std::uint32_t id) {
  const int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return {};
  bpf_prog_info info{};
  std::uint32_t len = sizeof(info);
  std::string name;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) name = info.name;
  ::close(fd);
  return name;
}

std::uint32_t prog_id_of(int fd) {
  bpf_prog_info info{};
  std::uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

// How long ago the daemon that loaded program `id` beat (its ts_state map); nullopt if
// that cannot be read.
std::optional<std::uint64_t> heartbeat_age_ns(std::uint32_t id) {
  const int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return std::nullopt;
  std::array<std::uint32_t, 16> maps{};
  bpf_prog_info info{};
  info.nr_map_ids = maps.size();
  info.map_ids = reinterpret_cast<std::uintptr_t>(maps.data());
  std::uint32_t len = sizeof(info);
  std::optional<std::uint64_t> age;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
    for (std::uint32_t i = 0; i < info.nr_map_ids && i < maps.size(); ++i) {
      const int mfd = bpf_map_get_fd_by_id(maps[i]);
      if (mfd < 0) continue;
      bpf_map_info mi{};
      std::uint32_t mlen = sizeof(mi);
      ts_state st{};
      const std::uint32_t key = 0;
      if (bpf_obj_get_info_by_fd(mfd, &mi, &mlen) == 0 && std::string(mi.name) == "ts_state" &&
          mi.value_size == sizeof(st) && bpf_map_lookup_elem(mfd, &key, &st) == 0) {
        const std::uint64_t now = monotonic_ns();
        age =
            st.heartbeat_ns == 0 || st.heartbeat_ns > now ? UINT64_MAX : now - st.heartbeat_ns;
      }
      ::close(mfd);
    }
  }
  ::close(fd);
  return age;
}

// The attribute of `type` among those in [begin, end), or nullptr.
const nlattr* find_attr(const void* begin, const char* end, std::uint16_t type) {
  for (const auto* a = static_cast<const nlattr*>(begin);
       mnl_attr_ok(a, static_cast<int>(end - reinterpret_cast<const char*>(a)));
       a = mnl_attr_next(a)) {
    if (mnl_attr_get_type(a) == type) return a;
  }
  return nullptr;
}

// An RTM_GETTFILTER dump request for the filters on `parent` of the interface, in `buf`.
const nlmsghdr* put_filter_dump(std::array<char, 8192>& buf, unsigned ifindex,
                                std::uint32_t parent) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = RTM_GETTFILTER;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = 1;
  auto* tcm = static_cast<tcmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(tcmsg)));
  tcm->tcm_family = AF_UNSPEC;
  tcm->tcm_ifindex = static_cast<int>(ifindex);
  tcm->tcm_parent = parent;
  return nlh;
}

// The name tc recorded for the filter at tunshim's handle/priority on `parent` of the
// interface ("tunshim_egress:[42]": libbpf names a filter after its program), from an
// rtnetlink dump, which needs no privilege; "" if there is none or the dump fails. Looking
// the program up by id would need CAP_SYS_ADMIN, which the systemd unit does not grant.
std::string filter_name(unsigned ifindex, std::uint32_t parent) {
  mnl_socket* nl = mnl_socket_open(NETLINK_ROUTE);
  if (nl == nullptr) return {};
  struct Found {
    std::string name;
  } found;
  std::array<char, 8192> buf{};
  const nlmsghdr* nlh = put_filter_dump(buf, ifindex, parent);
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == 0 &&
      mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) >= 0) {
    for (;;) {
      const ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
      if (n <= 0) break;
      const int rc = mnl_cb_run(
          buf.data(), static_cast<std::size_t>(n), 1, mnl_socket_get_portid(nl),
          [](const nlmsghdr* h, void* data) {
            const auto* t = static_cast<const tcmsg*>(mnl_nlmsg_get_payload(h));
            if (h->nlmsg_type != RTM_NEWTFILTER || t->tcm_handle != TS_TC_HANDLE ||
                TC_H_MAJ(t->tcm_info) >> 16 != TS_TC_PRIORITY)
              return MNL_CB_OK;
            const auto* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(h));
            const nlattr* opts =
                find_attr(mnl_nlmsg_get_payload_offset(h, sizeof(tcmsg)), tail, TCA_OPTIONS);
            if (opts == nullptr) return MNL_CB_OK;
            const auto* payload = static_cast<const char*>(mnl_attr_get_payload(opts));
            const nlattr* name =
                find_attr(payload, payload + mnl_attr_get_payload_len(opts), TCA_BPF_NAME);
            if (name != nullptr && mnl_attr_validate(name, MNL_TYPE_STRING) == 0)
              static_cast<Found*>(data)->name = mnl_attr_get_str(name);
            return MNL_CB_OK;
          },
          &found);
      if (rc <= MNL_CB_STOP) break;
    }
  }
  mnl_socket_close(nl);
  return found.name;
}

// The name of program `id`, found at tunshim's handle on `hook`: from the program itself,
// or (without CAP_SYS_ADMIN) from the filter.
std::string holder_name(const bpf_tc_hook& hook, std::uint32_t id) {
  std::string name = prog_name(id);
  if (name.empty()) {
    const std::uint32_t parent = hook.attach_point == BPF_TC_INGRESS
                                     ? TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
                                     : TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS);
    name = filter_name(static_cast<unsigned>(hook.ifindex), parent);
  }
  return name;
}

// Attaches `prog_fd` at tunshim's handle/priority on one hook, replacing ("adopting") a
// tunshim program found there whose daemon is dead: this process holds the network
// namespace's datapath lock (`sole`), which a live tunshim would hold (the kernel frees it
// however its holder dies, so a restart adopts at once, and a live daemon need not beat
// to keep its programs). False with `err` if someone else's program holds the place, or a
// live tunshim's.
bool attach_one(bpf_tc_hook& hook, int prog_fd, const char* dir, bool sole, bool& adopted,
                std::string& err) {
  bpf_tc_opts q{};
  q.sz = sizeof(q);
  q.handle = TS_TC_HANDLE;
  q.priority = TS_TC_PRIORITY;
  if (bpf_tc_query(&hook, &q) == 0 && q.prog_id != prog_id_of(prog_fd)) {
    const std::string name = holder_name(hook, q.prog_id);
    if (name.rfind("tunshim_", 0) != 0) {
      err = std::string(dir) + " filter handle " + std::to_string(TS_TC_HANDLE) + " priority " +
            std::to_string(TS_TC_PRIORITY) + " holds program " + std::to_string(q.prog_id) +
            " \"" + name + "\", not tunshim's";
      return false;
    }
    if (!sole) {
      // Its heartbeat, where it can be read (CAP_SYS_ADMIN), only adds to the message.
      const auto age = heartbeat_age_ns(q.prog_id);
      err = "another tunshim is running on it (it holds this network namespace's datapath lock";
      if (age && *age != UINT64_MAX)
        err += "; its " + std::string(dir) + " program's heartbeat is " +
               std::to_string(*age / 1000000) + " ms old";
      err += "); the " + std::string(dir) + " program is left to it";
      return false;
    }
    adopted = true;
  }
  bpf_tc_opts o{};
  o.sz = sizeof(o);
  o.prog_fd = prog_fd;
  o.flags = BPF_TC_F_REPLACE;
  o.handle = TS_TC_HANDLE;
  o.priority = TS_TC_PRIORITY;
  const int rc = bpf_tc_attach(&hook, &o);
  if (rc < 0) {
    err = std::string("tc ") + dir + " attach: " + errstr(rc);
    return false;
  }
  return true;
}

void detach_one(bpf_tc_hook& hook) noexcept {
  bpf_tc_opts o{};
  o.sz = sizeof(o);
  o.handle = TS_TC_HANDLE;
  o.priority = TS_TC_PRIORITY;
  bpf_tc_detach(&hook, &o);
}

// Filters on the interface's clsact hooks (both directions), from an rtnetlink dump; -1 if
// the dump fails. tc lists a "head" per priority without a handle; those are not counted.
int other_filters(unsigned ifindex) {
  mnl_socket* nl = mnl_socket_open(NETLINK_ROUTE);
  if (nl == nullptr) return -1;
  int count = 0;
  bool ok = mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == 0;
  for (const std::uint32_t parent :
       {TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS), TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)}) {
    if (!ok) break;
    std::array<char, 8192> buf{};
    const nlmsghdr* nlh = put_filter_dump(buf, ifindex, parent);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
      ok = false;
      break;
    }
    for (;;) {
      const ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
      if (n <= 0) {
        ok = false;
        break;
      }
      const int rc = mnl_cb_run(
          buf.data(), static_cast<std::size_t>(n), 1, mnl_socket_get_portid(nl),
          [](const nlmsghdr* h, void* data) {
            const auto* t = static_cast<const tcmsg*>(mnl_nlmsg_get_payload(h));
            if (h->nlmsg_type == RTM_NEWTFILTER && t->tcm_handle != 0)
              ++*static_cast<int*>(data);
            return MNL_CB_OK;
          },
          &count);
      if (rc == MNL_CB_STOP) break;
      if (rc < 0) {
        ok = false;
        break;
      }
    }
  }
  mnl_socket_close(nl);
  return ok ? count : -1;
}

bpf_tc_hook make_hook(unsigned ifindex, bpf_tc_attach_point where) {
  bpf_tc_hook h{};
  h.sz = sizeof(h);
  h.ifindex = static_cast<int>(ifindex);
  h.attach_point = where;
  return h;
}

}  // namespace

bool BpfDatapath::compiled_in() noexcept { return true; }

BpfDatapath::~BpfDatapath() { close(); }

bool BpfDatapath::open(std::string& why, std::uint64_t stale_ns) {
  close();
  stale_ns_ = stale_ns;
  std::string log;
  g_libbpf_log = &log;
  libbpf_set_print(capture_libbpf);
  skel_ = tunshim_bpf__open();
  int rc = skel_ == nullptr ? -errno : tunshim_bpf__load(skel_);
  g_libbpf_log = nullptr;
  if (skel_ == nullptr || rc != 0) {
    if (rc == -EPERM || rc == -EACCES) {
      if (log.find("R") == 0 || log.find("invalid") != std::string::npos) {
        why = "the kernel's verifier refused the programs: " + log;
      } else {
        why =
            "no privileges to load eBPF programs (needs root, or CAP_BPF, CAP_PERFMON "
            "and CAP_NET_ADMIN): " +
            errstr(rc);
      }
    } else {
      why = "the kernel cannot load tunshim's eBPF programs (" + errstr(rc) + ")" +
            (log.empty() ? std::string() : ": " + log);
    }
    if (skel_ != nullptr) tunshim_bpf__destroy(skel_);
    skel_ = nullptr;
    return false;
  }
  ring_ = ring_buffer__new(bpf_map__fd(skel_->maps.ts_reports), &BpfDatapath::on_sample, this,
                           nullptr);
  if (ring_ == nullptr) {
    why = "cannot map the report ring buffer: " + errstr(errno);
    close();
    return false;
  }
  stop_heartbeat();
  // The network namespace's datapath lock: an abstract socket name, per namespace like the
  // interfaces, freed by the kernel when its holder dies however it dies. Held, it proves
  // that programs found at tunshim's handle belong to no live tunshim.
  lock_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  static constexpr char kLock[] = "tunshim-datapath-bpf";
  std::memcpy(a.sun_path + 1, kLock, sizeof(kLock) - 1);
  if (lock_fd_ >= 0 && ::bind(lock_fd_, reinterpret_cast<const sockaddr*>(&a),
                              offsetof(sockaddr_un, sun_path) + sizeof(kLock)) != 0) {
    ::close(lock_fd_);
    lock_fd_ = -1;
  }
  return true;
}

void BpfDatapath::close() noexcept {
  while (!ifaces_.empty()) detach(ifaces_.back().ifindex);
  if (ring_ != nullptr) ring_buffer__free(ring_);
  ring_ = nullptr;
  if (skel_ != nullptr) tunshim_bpf__destroy(skel_);
  skel_ = nullptr;
  slots_.fill(false);
  if (lock_fd_ >= 0) ::close(lock_fd_);
  lock_fd_ = -1;
}

BpfDatapath::Iface* BpfDatapath::find(unsigned ifindex) noexcept {
  for (auto& i : ifaces_)
    if (i.ifindex == ifindex) return &i;
  return nullptr;
}

const BpfDatapath::Iface* BpfDatapath::find(unsigned ifindex) const noexcept {
  for (const auto& i : ifaces_)
    if (i.ifindex == ifindex) return &i;
  return nullptr;
}

bool BpfDatapath::claim_slot(std::uint16_t& slot) noexcept {
  for (std::size_t s = 0; s < slots_.size(); ++s) {
    if (slots_[s]) continue;
    // A fresh slot starts from zero on every CPU.
    const int ncpu = libbpf_num_possible_cpus();
    if (ncpu <= 0) return false;
    std::vector<ts_counters> zero(static_cast<std::size_t>(ncpu));
    const auto key = static_cast<std::uint32_t>(s);
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.ts_counters), &key, zero.data(), 0) != 0)
      return false;
    slots_[s] = true;
    slot = static_cast<std::uint16_t>(s);
    return true;
  }
  return false;
}

bool BpfDatapath::write_iface(const Iface& i, const BpfTargets& t) noexcept {
  ts_iface v{};
  v.mss4 = t.mss4;
  v.mss6 = t.mss6;
  v.guard_mtu = t.guard_mtu;
  v.probe_ident = t.probe_ident.value_or(0);
  v.probe_valid = t.probe_ident.has_value() ? 1 : 0;
  v.l2_len = i.l2_len;
  v.slot = i.slot;
  v.symptoms = t.symptoms ? 1 : 0;
  v.watch_mtu = t.watch_mtu;
  v.full4 = t.full4;
  v.full6 = t.full6;
  const std::uint32_t key = i.ifindex;
  return bpf_map_update_elem(bpf_map__fd(skel_->maps.ts_ifaces), &key, &v, BPF_ANY) == 0;
}

bool BpfDatapath::set_iface_for_test(unsigned ifindex, std::uint8_t l2_len,
                                     const BpfTargets& t) {
  if (skel_ == nullptr) return false;
  Iface* have = find(ifindex);
  if (have == nullptr) {
    Iface i;
    i.ifindex = ifindex;
    if (!claim_slot(i.slot)) return false;
    ifaces_.push_back(i);
    have = &ifaces_.back();
  }
  have->l2_len = l2_len;
  return write_iface(*have, t);
}

bool BpfDatapath::attach(unsigned ifindex, std::uint8_t l2_len, const BpfTargets& t,
                         std::string& err) {
  if (skel_ == nullptr) {
    err = "the eBPF data path is not loaded";
    return false;
  }
  char name[IF_NAMESIZE] = {};
  if (if_indextoname(ifindex, name) == nullptr) {
    err = "no interface with index " + std::to_string(ifindex);
    return false;
  }
  if (find(ifindex) != nullptr) {
    set_targets(ifindex, t);
    return true;
  }
  Iface i;
  i.ifindex = ifindex;
  i.l2_len = l2_len;
  if (!claim_slot(i.slot)) {
    err = "no free interface slot (at most " + std::to_string(TS_MAX_IFACES) + ")";
    return false;
  }
  // The settings first: from the moment a program runs here it has its targets.
  if (!write_iface(i, t)) {
    err = "cannot write the interface's settings: " + errstr(errno);
    slots_[i.slot] = false;
    return false;
  }
  bpf_tc_hook both =
      make_hook(ifindex, static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  const int rc = bpf_tc_hook_create(&both);
  if (rc != 0 && rc != -EEXIST) {
    err = std::string("cannot create the clsact qdisc on ") + name + ": " + errstr(rc);
  } else {
    i.created_qdisc = rc == 0;
    i.on_tc = true;
    bpf_tc_hook eg = make_hook(ifindex, BPF_TC_EGRESS);
    bpf_tc_hook in = make_hook(ifindex, BPF_TC_INGRESS);
    bool adopted = false;
    const bool eg_ok = attach_one(eg, bpf_program__fd(skel_->progs.tunshim_egress), "egress",
                                  lock_fd_ >= 0, adopted, err);
    if (eg_ok && attach_one(in, bpf_program__fd(skel_->progs.tunshim_ingress), "ingress",
                            lock_fd_ >= 0, adopted, err)) {
      i.adopted = adopted;
      ifaces_.push_back(i);
      return true;
    }
    if (eg_ok) detach_one(eg);  // only what this call attached: never a live tunshim's
    if (i.created_qdisc) bpf_tc_hook_destroy(&both);
    err = std::string(name) + ": " + err;
  }
  const std::uint32_t key = ifindex;
  bpf_map_delete_elem(bpf_map__fd(skel_->maps.ts_ifaces), &key);
  slots_[i.slot] = false;
  return false;
}

bool BpfDatapath::reattach(unsigned ifindex, std::string& err) {
  Iface* i = skel_ == nullptr ? nullptr : find(ifindex);
  if (i == nullptr || !i->on_tc) {
    err = "not attached";
    return false;
  }
  bpf_tc_hook both =
      make_hook(ifindex, static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  const int rc = bpf_tc_hook_create(&both);
  if (rc != 0 && rc != -EEXIST) {
    err = "cannot create the clsact qdisc: " + errstr(rc);
    return false;
  }
  if (rc == 0) i->created_qdisc = true;  // made by this run now: a clean stop removes it
  // attach_one() puts a missing program back and replaces one of ours by itself.
  bool adopted = false;
  bpf_tc_hook eg = make_hook(ifindex, BPF_TC_EGRESS);
  bpf_tc_hook in = make_hook(ifindex, BPF_TC_INGRESS);
  return attach_one(eg, bpf_program__fd(skel_->progs.tunshim_egress), "egress", lock_fd_ >= 0,
                    adopted, err) &&
         attach_one(in, bpf_program__fd(skel_->progs.tunshim_ingress), "ingress", lock_fd_ >= 0,
                    adopted, err);
}

void BpfDatapath::detach(unsigned ifindex) noexcept {
  for (auto it = ifaces_.begin(); it != ifaces_.end(); ++it) {
    if (it->ifindex != ifindex) continue;
    char name[IF_NAMESIZE] = {};
    if (it->on_tc && if_indextoname(ifindex, name) != nullptr) {
      bpf_tc_hook eg = make_hook(ifindex, BPF_TC_EGRESS);
      bpf_tc_hook in = make_hook(ifindex, BPF_TC_INGRESS);
      // Only tunshim's own filters: someone else's at another handle stays.
      bpf_tc_opts q{};
      q.sz = sizeof(q);
      q.handle = TS_TC_HANDLE;
      q.priority = TS_TC_PRIORITY;
      if (bpf_tc_query(&eg, &q) == 0 && holder_name(eg, q.prog_id).rfind("tunshim_", 0) == 0)
        detach_one(eg);
      q.prog_id = 0;
      if (bpf_tc_query(&in, &q) == 0 && holder_name(in, q.prog_id).rfind("tunshim_", 0) == 0)
        detach_one(in);
      // The qdisc goes if this run created it, or if it adopted a dead run's programs (which
      // created it) and no filter of anyone else is left on it.
      if (it->created_qdisc || (it->adopted && other_filters(ifindex) == 0)) {
        bpf_tc_hook both = make_hook(
            ifindex, static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
        bpf_tc_hook_destroy(&both);
      }
    }
    if (skel_ != nullptr) {
      const std::uint32_t key = ifindex;
      bpf_map_delete_elem(bpf_map__fd(skel_->maps.ts_ifaces), &key);
    }
    slots_[it->slot] = false;
    ifaces_.erase(it);
    return;
  }
}

bool BpfDatapath::attached(unsigned ifindex) const noexcept { return find(ifindex) != nullptr; }

bool BpfDatapath::adopted(unsigned ifindex) const noexcept {
  const Iface* i = find(ifindex);
  return i != nullptr && i->adopted;
}

bool BpfDatapath::set_targets(unsigned ifindex, const BpfTargets& t) noexcept {
  const Iface* i = find(ifindex);
  return i != nullptr && skel_ != nullptr && write_iface(*i, t);
}

std::optional<BpfCounters> BpfDatapath::counters(unsigned ifindex) const {
  const Iface* i = find(ifindex);
  if (i == nullptr || skel_ == nullptr) return std::nullopt;
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return std::nullopt;
  std::vector<ts_counters> per_cpu(static_cast<std::size_t>(ncpu));
  const std::uint32_t key = i->slot;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.ts_counters), &key, per_cpu.data()) != 0)
    return std::nullopt;
  BpfCounters c;
  for (const auto& p : per_cpu) {
    for (std::size_t d = 0; d < 2; ++d)
      for (std::size_t o = 0; o < BpfCounters::kOutcomes; ++o) c.clamp[d][o] += p.clamp[d][o];
    c.guard_dropped += p.guard[TS_GUARD_DROPPED];
    c.guard_lost += p.guard[TS_GUARD_LOST];
    c.guard_probe += p.guard[TS_GUARD_PROBE];
    c.guard_stale += p.guard[TS_GUARD_STALE];
    c.guard_gso += p.guard[TS_GUARD_OVERSIZE_GSO];
    for (std::size_t k = 0; k < c.symptom.size(); ++k) c.symptom[k] += p.symptom[k];
  }
  return c;
}

void BpfDatapath::heartbeat() noexcept {
  if (skel_ == nullptr) return;
  const std::uint32_t key = 0;
  const ts_state s{monotonic_ns(), stale_ns_};
  bpf_map_update_elem(bpf_map__fd(skel_->maps.ts_state), &key, &s, BPF_ANY);
}

void BpfDatapath::stop_heartbeat() noexcept {
  if (skel_ == nullptr) return;
  const std::uint32_t key = 0;
  const ts_state s{0, stale_ns_};
  bpf_map_update_elem(bpf_map__fd(skel_->maps.ts_state), &key, &s, BPF_ANY);
}

int BpfDatapath::report_fd() const noexcept {
  return ring_ == nullptr ? -1 : ring_buffer__epoll_fd(ring_);
}

int BpfDatapath::consume_reports() noexcept {
  return ring_ == nullptr ? 0 : ring_buffer__consume(ring_);
}

int BpfDatapath::on_sample(void* ctx, void* data, std::size_t size) {
  auto* self = static_cast<BpfDatapath*>(ctx);
  if (size < sizeof(ts_report) || !self->on_report_) return 0;
  const auto* r = static_cast<const ts_report*>(data);
  BpfReport rep;
  rep.ifindex = r->ifindex;
  rep.mtu = r->mtu;
  rep.wire_len = r->wire_len;
  const std::size_t cap = r->cap_len <= TS_REPORT_BYTES ? r->cap_len : 0;
  rep.head = clamp::ConstBytes(r->data, cap);
  self->on_report_(rep);
  return 0;
}

int BpfDatapath::egress_prog_fd() const noexcept {
  return skel_ == nullptr ? -1 : bpf_program__fd(skel_->progs.tunshim_egress);
}
int BpfDatapath::ingress_prog_fd() const noexcept {
  return skel_ == nullptr ? -1 : bpf_program__fd(skel_->progs.tunshim_ingress);
}

#else  // built without the eBPF data path: every operation reports why.

bool BpfDatapath::compiled_in() noexcept { return false; }
BpfDatapath::~BpfDatapath() = default;
bool BpfDatapath::open(std::string& why, std::uint64_t) {
  why = "tunshim was built without the eBPF data path (TUNSHIM_BPF=OFF)";
  return false;
}
void BpfDatapath::close() noexcept {}
bool BpfDatapath::attach(unsigned, std::uint8_t, const BpfTargets&, std::string& err) {
  err = "the eBPF data path is not built in";
  return false;
}
void BpfDatapath::detach(unsigned) noexcept {}
bool BpfDatapath::attached(unsigned) const noexcept { return false; }
bool BpfDatapath::reattach(unsigned, std::string& err) {
  err = "the eBPF data path is not built in";
  return false;
}
bool BpfDatapath::adopted(unsigned) const noexcept { return false; }
bool BpfDatapath::set_targets(unsigned, const BpfTargets&) noexcept { return false; }
std::optional<BpfCounters> BpfDatapath::counters(unsigned) const { return std::nullopt; }
void BpfDatapath::heartbeat() noexcept {}
void BpfDatapath::stop_heartbeat() noexcept {}
int BpfDatapath::report_fd() const noexcept { return -1; }
int BpfDatapath::consume_reports() noexcept { return 0; }
int BpfDatapath::on_sample(void*, void*, std::size_t) { return 0; }
int BpfDatapath::egress_prog_fd() const noexcept { return -1; }
int BpfDatapath::ingress_prog_fd() const noexcept { return -1; }
bool BpfDatapath::set_iface_for_test(unsigned, std::uint8_t, const BpfTargets&) {
  return false;
}

#endif

}  // namespace tunshim::proxy
