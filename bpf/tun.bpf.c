// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tun probe set: the tx ring (ptr_ring) of a tun/tap device's queues, toward its reader (a
 * VMM, vhost-net). At every xmit into the device the ring is read through CO-RE
 * (netdev_priv -> tun_struct -> tfiles[queue] -> tx_ring): fill, full, the lazily zeroed
 * slots. Reads come from consume_skb in the tun read functions, drops from kfree_skb.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "np_packet.h"
#include "np_common.h"
#include "tun.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct tun_config tun_cfg = {};

NP_EXPORT_ENUM(tun_sizes);
NP_EXPORT_ENUM(tun_ring_status);

/* Two interval generations of TUN_MAX_QUEUES queues; user space flips tun_gen, then reads. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * TUN_MAX_QUEUES);
	__type(key, __u32);
	__type(value, struct tun_queue_stats);
} queues SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_pkt);
} scratch SEC(".maps");

__u64 tun_gen = 0;
/* The device, as the last xmit saw it: tun_sample reads its rings. */
__u64 tun_dev = 0;
/* A macvtap's lower device, once a packet on it led to the macvtap (tun_dev). */
__u64 tun_lower = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TUN_MAX_QUEUES);
	__type(key, __u32);
	__type(value, struct tun_sample);
} samples SEC(".maps");

/* The device tun_struct of older kernels ended before priv[] existed (before 6.10). */
struct net_device___priv {
	u8 priv[0];
} __attribute__((preserve_access_index));

static __always_inline struct tun_queue_stats *tun_queue(__u32 q)
{
	__u32 idx = (__u32)(tun_gen & 1) * TUN_MAX_QUEUES + (q & (TUN_MAX_QUEUES - 1));

	return bpf_map_lookup_elem(&queues, &idx);
}

/* Is @dev the device we watch (its ifindex in its namespace)? */
static __always_inline int tun_is_target(struct net_device *dev, const int direct)
{
	struct net *net;

	if (!dev || NP_RD(direct, dev->ifindex, dev, ifindex) != np_filter.ifindex)
		return 0;
	net = NP_RD(direct, dev->nd_net.net, dev, nd_net.net);
	/* The per-CPU stats remember the namespace that matched: its cookie is read once. */
	return np_match_place(net, np_net_inum(net, direct), np_filter.ifindex, np_stats());
}

/* netdev_priv(dev): the priv[] flexible array (6.10+), else ALIGN(sizeof(*dev), 32). */
static __always_inline void *tun_netdev_priv(struct net_device *dev)
{
	if (bpf_core_field_exists(struct net_device___priv, priv))
		return (void *)dev + bpf_core_field_offset(struct net_device___priv, priv);
	return (void *)dev + ((bpf_core_type_size(struct net_device) + 31) & ~31);
}

static __always_inline __u32 tun_ring_distance(__u32 from, __u32 to, __u32 size, int wrapped)
{
	if (from == to)
		return wrapped ? size : 0;
	return to > from ? to - from : to + size - from;
}

/*
 * The pointer-sized word at @addr through a fault-safe load (bpf_rdonly_cast, 6.2+: callers
 * check), read as list_head.next: cheaper than a probe read, and open to the variable
 * indices that a field access like tun->tfiles[q] may not have.
 */
static __always_inline void *tun_load_word(void *addr)
{
	struct list_head *word = bpf_rdonly_cast(addr, bpf_core_type_id_kernel(struct list_head));

	return word->next;
}

/* The fill, from the consumer indices. */
static __always_inline void tun_ring_fill(struct tun_ring *r)
{
	r->pending = tun_ring_distance(r->consumer_head, r->producer, r->size, r->full);
	r->unavailable = tun_ring_distance(r->consumer_tail, r->producer, r->size, r->full);
	r->filled = 1;
}

/*
 * Whether queue[producer] is taken; with @fill (the consumer indices were read), the fill
 * too. Returns 1 when the ring is full and its fill is still to be read (the consumer
 * indices sit on the reader's cache line: an xmit reads them only when sampled or full).
 */
static __always_inline int tun_ring_finish(struct tun_ring *r, void **queue, const int fill,
					   const int direct)
{
	void *slot = 0;

	if (!r->size || r->producer >= r->size) {
		r->status = TUN_RING_BAD;
		return 0;
	}
	/* The slots from consumer_tail up to producer hold entries (read ones the consumer has
	 * not zeroed yet, then pending ones), the others are NULL: queue[producer] can only be
	 * taken when producer == consumer_tail. */
	if (!fill || r->producer == r->consumer_tail) {
		if (direct)
			slot = tun_load_word(&queue[r->producer]);
		else if (bpf_probe_read_kernel(&slot, sizeof(slot), &queue[r->producer])) {
			r->status = TUN_RING_BAD;
			return 0;
		}
	}
	r->full = slot != 0;
	if (fill)
		tun_ring_fill(r);
	return !fill && r->full;
}

/* @ring through probe reads; its fill with @fill or when it is full. */
static __always_inline void tun_ptr_ring_read(struct ptr_ring *ring, struct tun_ring *r,
					      const int fill)
{
	r->producer = BPF_CORE_READ(ring, producer);
	if (fill) {
		r->consumer_head = BPF_CORE_READ(ring, consumer_head);
		r->consumer_tail = BPF_CORE_READ(ring, consumer_tail);
	}
	r->size = BPF_CORE_READ(ring, size);
	r->batch = BPF_CORE_READ(ring, batch);
	if (tun_ring_finish(r, BPF_CORE_READ(ring, queue), fill, 0)) {
		r->consumer_head = BPF_CORE_READ(ring, consumer_head);
		r->consumer_tail = BPF_CORE_READ(ring, consumer_tail);
		tun_ring_fill(r);
	}
}

/* The ring of macvtap @dev's queue @q: netdev_priv is a macvtap_dev, its tap_dev holds the
 * queues (tap_queue), each with its ptr_ring. */
static __always_inline void macvtap_ring_read(struct net_device *dev, __u32 q, struct tun_ring *r,
					      const int fill)
{
	struct macvtap_dev *m;
	struct tap_queue *tq = 0;
	struct ptr_ring *ring;

	if (!bpf_core_type_exists(struct macvtap_dev)) {
		r->status = TUN_RING_NO_BTF;
		return;
	}
	m = tun_netdev_priv(dev);
	if (BPF_CORE_READ(m, tap.dev) != dev) {
		r->status = TUN_RING_NOT_TUN;
		return;
	}
	r->numqueues = BPF_CORE_READ(m, tap.numvtaps);
	if (bpf_probe_read_kernel(&tq, sizeof(tq), &m->tap.taps[q & (TUN_MAX_QUEUES - 1)]) || !tq) {
		r->status = TUN_RING_NO_QUEUE;
		return;
	}
	tun_ptr_ring_read(&tq->ring, r, fill);
}

/*
 * The tx ring of @dev's queue @q, as ptr_ring_produce() would find it now; its fill with
 * @fill or when it is full. With @direct (a BTF @dev), bpf_rdonly_cast (6.2+) and tun built
 * in, plain fault-safe loads; else probe reads.
 */
static __always_inline void tun_ring_read(struct net_device *dev, __u32 q, struct tun_ring *r,
					  const int direct, const int fill)
{
	struct tun_struct *tun;
	struct tun_file *tf = 0;

	__builtin_memset(r, 0, sizeof(*r));
	if (tun_cfg.macvtap) {
		macvtap_ring_read(dev, q, r, fill);
		return;
	}
	if (!bpf_core_type_exists(struct tun_struct)) {
		r->status = TUN_RING_NO_BTF;
		return;
	}
	if (q >= TUN_MAX_QUEUES) {
		r->status = TUN_RING_NO_QUEUE;
		return;
	}
	/* bpf_rdonly_cast takes vmlinux type IDs only: tun built in, not a module. */
	if (direct && tun_cfg.vmlinux_tun && bpf_ksym_exists(bpf_rdonly_cast)) {
		void *tfiles = tun_netdev_priv(dev) + bpf_core_field_offset(struct tun_struct, tfiles);

		tun = bpf_rdonly_cast(tun_netdev_priv(dev), bpf_core_type_id_kernel(struct tun_struct));
		/* Each load is a cache line of the tun device: a device found to be a tun once
		 * (tun_dev) is checked again, and its queues counted, at sampled xmits. */
		if (fill || (__u64)dev != tun_dev) {
			if (tun->dev != dev) {
				r->status = TUN_RING_NOT_TUN;
				return;
			}
			r->numqueues = tun->numqueues;
		}
		tf = tun_load_word(tfiles + (q & (TUN_MAX_QUEUES - 1)) * sizeof(tf));
		if (!tf) {
			r->status = TUN_RING_NO_QUEUE;
			return;
		}
		tf = bpf_rdonly_cast(tf, bpf_core_type_id_kernel(struct tun_file));
		r->producer = tf->tx_ring.producer;
		if (fill) {
			r->consumer_head = tf->tx_ring.consumer_head;
			r->consumer_tail = tf->tx_ring.consumer_tail;
		}
		r->size = tf->tx_ring.size;
		r->batch = tf->tx_ring.batch;
		if (tun_ring_finish(r, tf->tx_ring.queue, fill, 1)) {
			r->consumer_head = tf->tx_ring.consumer_head;
			r->consumer_tail = tf->tx_ring.consumer_tail;
			tun_ring_fill(r);
		}
		return;
	}
	tun = tun_netdev_priv(dev);
	if (BPF_CORE_READ(tun, dev) != dev) {
		r->status = TUN_RING_NOT_TUN;
		return;
	}
	r->numqueues = BPF_CORE_READ(tun, numqueues);
	if (bpf_probe_read_kernel(&tf, sizeof(tf), &tun->tfiles[q & (TUN_MAX_QUEUES - 1)]) || !tf) {
		r->status = TUN_RING_NO_QUEUE;
		return;
	}
	tun_ptr_ring_read(&tf->tx_ring, r, fill);
}

static __always_inline void tun_ring_stats(struct tun_queue_stats *s, const struct tun_ring *r)
{
	if (r->status != TUN_RING_OK) {
		s->unknown_ring++;
		s->last_status = r->status;
		return;
	}
	if (!s->first_ts) {
		s->first_ts = bpf_ktime_get_ns();
		s->first_pending = r->pending;
	}
	s->size = r->size;
	s->batch = r->batch;
	if (r->full)
		s->full++;
	if (!r->filled)
		return;
	s->fill_samples++;
	s->sum_pending += r->pending;
	{
		__u32 slot = np_log2_slot(r->pending);

		if (slot >= TUN_HIST_SLOTS)
			slot = TUN_HIST_SLOTS - 1;
		barrier_var(slot);
		if (slot < TUN_HIST_SLOTS)
			s->pending_hist[slot]++;
	}
	if (r->pending > s->max_pending)
		s->max_pending = r->pending;
	if (r->unavailable > s->max_unavailable)
		s->max_unavailable = r->unavailable;
}

static __always_inline void tun_report(struct sk_buff *skb, const struct tun_ring *r, __u32 q,
				       const int direct)
{
	struct np_stats *st = np_stats();
	struct tun_event *e;
	__u32 zero = 0;
	struct np_pkt *p;

	p = bpf_map_lookup_elem(&scratch, &zero);
	if (!p)
		return;
	__builtin_memset(&p->flow, 0, sizeof(p->flow));
	if (!direct || !np_parse_flow_btf(skb, p)) {
		__u8 buf[NP_L3_READ];

		np_parse_skb(skb, p, buf, 0, 0, direct);
	}
	if (!np_match_flow(&p->flow) || !np_rate_ok(st))
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		np_lost_event(st);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->flow = p->flow;
	e->ring = *r;
	e->queue = q;
	e->cpu = bpf_get_smp_processor_id();
	e->len = NP_RD(direct, skb->len, skb, len);
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	np_submit(&events, e);
}

/* @skb goes into the ring of @dev's queue @q: the ring before the produce. */
static __always_inline void tun_enqueue(struct sk_buff *skb, struct net_device *dev, __u32 q,
					const int direct)
{
	struct tun_queue_stats *s;
	struct tun_ring r;

	if (tun_cfg.has_queue && q != tun_cfg.queue)
		return;
	s = tun_queue(q);
	if (!s)
		return;
	/* The fill of a sample of xmits (the first of the interval, then every
	 * TUN_FILL_SAMPLE-th per CPU), of every full one, and of every event. */
	tun_ring_read(dev, q, &r, direct,
		      tun_cfg.events || !s->first_ts || !(s->xmit & (TUN_FILL_SAMPLE - 1)));
	if (tun_dev != (__u64)dev && r.status != TUN_RING_NOT_TUN)
		tun_dev = (__u64)dev;
	s->xmit++;
	tun_ring_stats(s, &r);
	if (tun_cfg.events && (tun_cfg.all || r.full))
		tun_report(skb, &r, q, direct);
}

/* The stack hands @skb to the tap's xmit (tun_net_xmit). */
static __always_inline void tun_xmit(struct sk_buff *skb, struct net_device *dev,
				     const int direct)
{
	if (!skb || tun_cfg.macvtap || !tun_is_target(dev, direct))
		return;
	tun_enqueue(skb, dev, NP_RD(direct, skb->queue_mapping, skb, queue_mapping), direct);
}

/*
 * @skb reaches macvtap @dev's rx handler (tap_handle_frame), which puts it in one queue's ring
 * as tap_get_queue() picks it: the only queue; else by the flow hash (a NIC's RSS hash), else
 * by the recorded rx queue. A multi-queue macvtap's packet with neither is not attributed.
 */
static __always_inline void macvtap_xmit(struct sk_buff *skb, struct net_device *dev)
{
	struct macvtap_dev *m = tun_netdev_priv(dev);
	__u32 n = 0, hash, rxq, q = 0;
	struct tun_queue_stats *s;

	if (bpf_core_type_exists(struct macvtap_dev))
		n = BPF_CORE_READ(m, tap.numvtaps);
	if (n > 1) {
		hash = BPF_CORE_READ(skb, hash);
		rxq = BPF_CORE_READ(skb, queue_mapping);
		if (hash) {
			q = hash % n;
		} else if (rxq) {
			q = (rxq - 1) % n;
		} else {
			s = tun_queue(0);
			if (s) {
				s->unknown_ring++;
				s->last_status = TUN_RING_QUEUE_UNKNOWN;
			}
			return;
		}
	}
	tun_enqueue(skb, dev, q, 0);
}

/* The macvtap behind lower device @dev: one of the macvlans on its macvlan_port. */
static __always_inline struct net_device *macvtap_of_lower(struct net_device *dev)
{
	struct macvlan_port *port;
	struct list_head *head, *pos;

	if (tun_lower)
		return (__u64)dev == tun_lower ? (struct net_device *)tun_dev : 0;
	if (!tun_cfg.macvlan_rx_handler || !bpf_core_type_exists(struct macvlan_port) ||
	    (__u64)BPF_CORE_READ(dev, rx_handler) != tun_cfg.macvlan_rx_handler)
		return 0;
	port = BPF_CORE_READ(dev, rx_handler_data);
	head = &port->vlans;
	pos = BPF_CORE_READ(port, vlans.next);
	for (int i = 0; i < TUN_MACVLAN_WALK && pos && pos != head; i++) {
		struct macvlan_dev *v =
			(void *)pos - bpf_core_field_offset(struct macvlan_dev, list);
		struct net_device *vdev = BPF_CORE_READ(v, dev);

		if (tun_is_target(vdev, 0)) {
			tun_dev = (__u64)vdev;
			tun_lower = (__u64)dev;
			return vdev;
		}
		pos = BPF_CORE_READ(pos, next);
	}
	return 0;
}

/* Is @skb's destination MAC the one of @dev? */
static __always_inline int tun_mac_is(struct sk_buff *skb, struct net_device *dev)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 mh = BPF_CORE_READ(skb, mac_header);
	const unsigned char *addr = BPF_CORE_READ(dev, dev_addr);
	__u8 dst[6] = {}, mac[6] = {};

	if (bpf_probe_read_kernel(dst, sizeof(dst), head + mh) ||
	    bpf_probe_read_kernel(mac, sizeof(mac), addr))
		return 0;
#pragma unroll
	for (int i = 0; i < 6; i++)
		if (dst[i] != mac[i])
			return 0;
	return 1;
}

/*
 * A packet received: on the macvtap itself (a broadcast or multicast, or from a macvlan
 * neighbour), or unicast to it on its lower device, where macvlan passes it on (another round
 * of the same receive, which no tracepoint sees).
 */
static __always_inline void macvtap_rx(struct sk_buff *skb, const int direct)
{
	struct net_device *dev, *tap;

	if (!tun_cfg.macvtap || !skb)
		return;
	dev = NP_RD(direct, skb->dev, skb, dev);
	if (!dev)
		return;
	if (tun_is_target(dev, direct)) {
		macvtap_xmit(skb, dev);
		return;
	}
	tap = macvtap_of_lower(dev);
	if (tap && tun_mac_is(skb, tap))
		macvtap_xmit(skb, tap);
}

/* Did @skb come from the reader (the VM's transmit)? A tap's come in through it (skb_iif); a
 * macvtap's packets toward the reader are the ones that do (the receive's second round). */
static __always_inline int tun_from_reader(struct sk_buff *skb, const int direct)
{
	int in = NP_RD(direct, skb->skb_iif, skb, skb_iif) == np_filter.ifindex;

	return tun_cfg.macvtap ? !in : in;
}

/* Is @loc inside one of the tun read functions user space found in kallsyms? */
static __always_inline int tun_in_read_fn(__u64 loc)
{
#pragma unroll
	for (int i = 0; i < TUN_READ_RANGES; i++)
		if (tun_cfg.read_fn[i].end && loc >= tun_cfg.read_fn[i].start &&
		    loc < tun_cfg.read_fn[i].end)
			return 1;
	return 0;
}

/*
 * consume_skb of a packet of the tap. With a location (6.3+) it must be in a tun read
 * function; without one, a packet that came in through the tap (skb_iif == the tap) was not
 * read from its ring.
 */
static __always_inline void tun_consumed(struct sk_buff *skb, __u64 loc, const int direct)
{
	struct net_device *dev = NP_RD(direct, skb->dev, skb, dev);
	struct tun_queue_stats *s;
	__u32 q;

	if (!tun_is_target(dev, direct))
		return;
	if (loc) {
		if (!tun_in_read_fn(loc))
			return;
	} else if (tun_from_reader(skb, direct)) {
		return;
	}
	q = NP_RD(direct, skb->queue_mapping, skb, queue_mapping);
	if (tun_cfg.has_queue && q != tun_cfg.queue)
		return;
	s = tun_queue(q);
	if (!s)
		return;
	s->read++;
}

static __always_inline void tun_dropped(struct sk_buff *skb, __u32 reason, const int direct)
{
	struct net_device *dev = NP_RD(direct, skb->dev, skb, dev);
	struct tun_queue_stats *s;
	__u32 q;

	if (!tun_is_target(dev, direct))
		return;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		return;
	/* A packet from the reader (the VM's transmit) dropped in the stack is not the ring's. */
	if (tun_from_reader(skb, direct))
		return;
	q = NP_RD(direct, skb->queue_mapping, skb, queue_mapping);
	if (tun_cfg.has_queue && q != tun_cfg.queue)
		return;
	s = tun_queue(q);
	if (!s)
		return;
	s->drops++;
#pragma unroll
	for (int i = 0; i < TUN_DROP_REASONS; i++) {
		if (s->drop_count[i] && s->drop_reason[i] != reason)
			continue;
		s->drop_reason[i] = reason;
		s->drop_count[i]++;
		break;
	}
}

/* ---- tp_btf (BTF pointers: direct loads) ---- */

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tun_xmit_btf, struct sk_buff *skb, struct net_device *dev)
{
	tun_xmit(skb, dev, 1);
	return 0;
}

SEC("tp_btf/consume_skb")
int BPF_PROG(tun_consume_btf, struct sk_buff *skb)
{
	/* The location argument came with 6.3. */
	__u64 loc = bpf_core_field_exists(struct trace_event_raw_consume_skb, location) ? ctx[1] : 0;

	tun_consumed(skb, loc, 1);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(tun_drop_btf, struct sk_buff *skb)
{
	/* The tracepoint gained its reason argument together with this field (5.17). */
	__u32 reason = bpf_core_field_exists(struct trace_event_raw_kfree_skb, reason) ?
			       (__u32)ctx[2] : 0;

	tun_dropped(skb, reason, 1);
	return 0;
}

/* ---- classic tracepoints (probe reads) ---- */

SEC("tracepoint/net/net_dev_start_xmit")
int tun_xmit_tp(struct trace_event_raw_net_dev_start_xmit *args)
{
	struct sk_buff *skb = (struct sk_buff *)args->skbaddr;

	tun_xmit(skb, BPF_CORE_READ(skb, dev), 0);
	return 0;
}

SEC("tracepoint/skb/consume_skb")
int tun_consume_tp(struct trace_event_raw_consume_skb *args)
{
	__u64 loc = 0;

	if (bpf_core_field_exists(args->location))
		loc = (__u64)BPF_CORE_READ(args, location);
	tun_consumed((struct sk_buff *)args->skbaddr, loc, 0);
	return 0;
}

SEC("tracepoint/skb/kfree_skb")
int tun_drop_tp(struct trace_event_raw_kfree_skb *args)
{
	__u32 reason = 0;

	if (bpf_core_field_exists(args->reason))
		reason = args->reason;
	tun_dropped((struct sk_buff *)args->skbaddr, reason, 0);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tun_rx_btf, struct sk_buff *skb)
{
	macvtap_rx(skb, 1);
	return 0;
}

SEC("tracepoint/net/netif_receive_skb")
int tun_rx_tp(struct trace_event_raw_net_dev_template *args)
{
	macvtap_rx((struct sk_buff *)args->skbaddr, 0);
	return 0;
}

/* ---- tap_handle_frame (fentry, else kprobe): a macvtap's rx handler ---- */

static __always_inline void macvtap_handle(struct sk_buff **pskb)
{
	struct sk_buff *skb = 0;

	if (!tun_cfg.macvtap || bpf_probe_read_kernel(&skb, sizeof(skb), pskb) || !skb)
		return;
	if (tun_is_target(BPF_CORE_READ(skb, dev), 0))
		macvtap_xmit(skb, BPF_CORE_READ(skb, dev));
}

SEC("fentry/tap_handle_frame")
int BPF_PROG(tun_tap_fe, struct sk_buff **pskb)
{
	macvtap_handle(pskb);
	return 0;
}

SEC("kprobe/tap_handle_frame")
int BPF_KPROBE(tun_tap_kp, struct sk_buff **pskb)
{
	macvtap_handle(pskb);
	return 0;
}

/* ---- tun_net_xmit (fentry, else kprobe): where the tracepoints are missing ---- */

SEC("fentry/tun_net_xmit")
int BPF_PROG(tun_xmit_fe, struct sk_buff *skb, struct net_device *dev)
{
	tun_xmit(skb, dev, 1);
	return 0;
}

SEC("kprobe/tun_net_xmit")
int BPF_KPROBE(tun_xmit_kp, struct sk_buff *skb, struct net_device *dev)
{
	tun_xmit(skb, dev, 0);
	return 0;
}

/*
 * Run by user space (BPF_PROG_TEST_RUN) at the end of an interval: every queue's ring now,
 * so the packets read are known without a program per read (fill before + produced - fill now).
 */
SEC("raw_tp")
int tun_sample(void *ctx)
{
	struct net_device *dev = (struct net_device *)tun_dev;
	struct tun_sample *out;
	struct tun_ring r;
	__u32 n = 1;

	if (!dev)
		return 0;
	for (__u32 q = 0; q < TUN_MAX_QUEUES && q < n; q++) {
		__u32 key = q;

		out = bpf_map_lookup_elem(&samples, &key);
		if (!out)
			return 0;
		tun_ring_read(dev, q, &r, 0, 1);
		out->ring = r;
		out->valid = r.status == TUN_RING_OK;
		if (q == 0 && r.numqueues)
			n = r.numqueues;
	}
	return 0;
}

struct tun_event tun_event_type = {};
struct tun_queue_stats tun_queue_stats_type = {};
struct tun_sample tun_sample_type = {};
