/*
 * stage2_net.c: pid 1's network namespace: loopback up, every address
 * routed to it (AnyIP), and the egress relay's sockets, made here and passed
 * to the supervisor.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stage2_int.h"

/* tc_loopback_up brings up lo, the namespace's only interface. */
void tc_loopback_up(void)
{
	struct ifreq ifr = {0};
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		tc_fail("loopback", "socket");
	strcpy(ifr.ifr_name, "lo");
	tc_check(ioctl(s, SIOCGIFFLAGS, &ifr), "loopback", "get flags");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	tc_check(ioctl(s, SIOCSIFFLAGS, &ifr), "loopback", "set flags");
	close(s);
}

/* route_local makes every address of family local to the sandbox's
 * loopback (ip route add local 0.0.0.0/0 dev lo table local): a connection
 * to any address reaches the relay's listeners, so direct IP attempts are
 * seen and recorded instead of failing unseen. Nothing leaves: loopback is
 * the namespace's only interface. */
static void route_local(int family)
{
	struct {
		struct nlmsghdr n;
		struct rtmsg r;
		char attrs[16];
	} req;
	union {
		struct nlmsghdr h;
		char b[256];
	} ack;
	struct rtattr *a;
	struct nlmsghdr *h = &ack.h;
	const char *what = family == AF_INET ? "0.0.0.0/0" : "::/0";
	int s, oif = (int)if_nametoindex("lo");
	ssize_t n;

	if (oif == 0)
		tc_fail("route_lo", what);
	memset(&req, 0, sizeof req);
	req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
	req.n.nlmsg_type = RTM_NEWROUTE;
	req.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
	req.n.nlmsg_seq = 1;
	req.r.rtm_family = (unsigned char)family;
	req.r.rtm_table = RT_TABLE_LOCAL;
	req.r.rtm_protocol = RTPROT_BOOT;
	req.r.rtm_scope = RT_SCOPE_HOST;
	req.r.rtm_type = RTN_LOCAL;
	a = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.n.nlmsg_len));
	a->rta_type = RTA_OIF;
	a->rta_len = RTA_LENGTH(sizeof oif);
	memcpy(RTA_DATA(a), &oif, sizeof oif);
	req.n.nlmsg_len = NLMSG_ALIGN(req.n.nlmsg_len) + RTA_ALIGN(a->rta_len);

	s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (s < 0)
		tc_fail("route_socket", what);
	if (send(s, &req, req.n.nlmsg_len, 0) != (ssize_t)req.n.nlmsg_len)
		tc_fail("route_send", what);
	do
		n = recv(s, ack.b, sizeof ack.b, 0);
	while (n < 0 && errno == EINTR);
	if (n < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) || h->nlmsg_type != NLMSG_ERROR)
		tc_fail_errno(EBADMSG, "route_ack", what);
	if (((struct nlmsgerr *)NLMSG_DATA(h))->error != 0)
		tc_fail_errno(-((struct nlmsgerr *)NLMSG_DATA(h))->error, "route_add", what);
	close(s);
}

/* tc_make_sockets creates the plan's sockets in the sandbox's network
 * namespace (while pid 1 still holds its capabilities there: ports below
 * 1024) and passes them to the supervisor, which serves them from outside.
 * They are close-on-exec: the tool, which shares pid 1's descriptor table
 * until its execve, never holds one. */
void tc_make_sockets(struct plan *pl)
{
	int fds[TC_MAX_SOCKETS];
	char s[8];
	struct buf b = {s, 0, sizeof s};

	if (pl->flags & TC_PLAN_ROUTE4)
		route_local(AF_INET);
	if (pl->flags & TC_PLAN_ROUTE6)
		route_local(AF_INET6);
	if (pl->nsock == 0)
		return;
	for (uint32_t i = 0; i < pl->nsock; i++) {
		struct sock *k = &pl->socks[i];
		int one = 1, zero = 0, v6 = k->kind == TC_SOCK_TCP6 || k->kind == TC_SOCK_UDP6;
		int tcp = k->kind == TC_SOCK_TCP || k->kind == TC_SOCK_TCP6;
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)k->port),
		                         .sin_addr = {htonl(k->addr)}};
		struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)k->port),
		                           .sin6_addr = IN6ADDR_ANY_INIT};
		if (k->kind < TC_SOCK_TCP || k->kind > TC_SOCK_UDP6)
			tc_fail_errno(EINVAL, "socket", "unknown kind");
		fds[i] = socket(v6 ? AF_INET6 : AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
		if (fds[i] < 0)
			tc_fail("socket", NULL);
		/* Not on UDP: there SO_REUSEADDR would let the tool bind the
		 * same port and take datagrams meant for the supervisor. */
		if (tcp && setsockopt(fds[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
			tc_fail("socket", "SO_REUSEADDR");
		/* TCP over IPv6 takes IPv4 too; UDP answers from the address
		 * asked, so each family has its own socket and PKTINFO. */
		if (v6 && setsockopt(fds[i], IPPROTO_IPV6, IPV6_V6ONLY, tcp ? &zero : &one, sizeof one) < 0)
			tc_fail("socket", "IPV6_V6ONLY");
		if (!tcp && !v6 && setsockopt(fds[i], IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0)
			tc_fail("socket", "IP_PKTINFO");
		if (!tcp && v6 && setsockopt(fds[i], IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) < 0)
			tc_fail("socket", "IPV6_RECVPKTINFO");
		if ((v6 ? bind(fds[i], (struct sockaddr *)&sa6, sizeof sa6) : bind(fds[i], (struct sockaddr *)&sa, sizeof sa)) < 0)
			tc_fail("socket", "bind");
		if (tcp && listen(fds[i], 128) < 0)
			tc_fail("socket", "listen");
	}
	tc_put_u32(&b, TC_MSG_SOCKETS);
	tc_put_u32(&b, pl->nsock);
	if (!tc_send_fds(&b, fds, (int)pl->nsock))
		tc_fail("socket", "send");
	for (uint32_t i = 0; i < pl->nsock; i++)
		close(fds[i]);
}
