"""Egress policy: which addresses a tenant can make us connect to (probe targets, webhook URLs).

Every tenant-supplied host is checked twice (DESIGN §5.1):
- when it is registered: literal addresses, odd numeric spellings and `localhost` names are judged as they
  are; names are resolved then and refused when any answer is refused (a name that does not resolve yet is
  accepted and judged at connect time);
- when we are about to connect: the name is resolved again, each answer is judged, and the connection goes
  to the exact address that passed (we never resolve twice, so a DNS answer cannot change in between).

Refused: every address that is not public unicast internet space (loopback, private, link-local, CGNAT,
ULA, multicast, unspecified, documentation/benchmarking/reserved ranges) and the IPv6 forms that carry
such an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo). `EGRESS_ALLOW_CIDRS` lists networks a
self-hosted install or the playground may reach anyway; empty in production.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# What a tenant sees when a probe or delivery is refused: fixed, it says nothing about what the name
# resolved to.
REFUSED = "address not allowed"

_V4_REFUSED: tuple[tuple[Network, str], ...] = tuple((ipaddress.ip_network(cidr), why) for cidr, why in (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private (RFC 1918) address"),
    ("100.64.0.0/10", "a carrier-grade NAT (RFC 6598) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address (cloud metadata lives there)"),
    ("172.16.0.0/12", "a private (RFC 1918) address"),
    ("192.0.0.0/24", "an IETF protocol assignment"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay anycast address"),
    ("192.168.0.0/16", "a private (RFC 1918) address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved or broadcast address"),
))
_V6_REFUSED: tuple[tuple[Network, str], ...] = tuple((ipaddress.ip_network(cidr), why) for cidr, why in (
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "an IPv4-compatible address (deprecated)"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/23", "an IETF protocol assignment (Teredo, benchmarking, ORCHID)"),
    ("2001:db8::/32", "a documentation address"),
    ("3fff::/20", "a documentation address"),
    ("fc00::/7", "a unique local (ULA) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address (deprecated)"),
    ("ff00::/8", "a multicast address"),
))
# The same IPv4 table as integer ranges: a monitor judges tens of thousands of new device addresses a
# second on its first interval, and `ipaddress` objects cost ~20 us each where this costs ~1 us.
# Sorted and disjoint: one bisect per address.
_V4_REFUSED_RANGES: tuple[tuple[int, int], ...] = tuple(sorted(
    (int(net.network_address), int(net.broadcast_address)) for net, _why in _V4_REFUSED))
_V4_REFUSED_STARTS = tuple(low for low, _high in _V4_REFUSED_RANGES)
_V6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

_LITERAL_CACHE_SIZE = 200_000
# Registration resolves names with these bounds: a slow resolver delays a request, it does not hang it.
_RESOLVE_TIMEOUT_S = 2.0
_RESOLVE_CONCURRENCY = 16


class EgressRefused(OSError):
    """A connection the egress policy forbids. An OSError, so every 'could not connect' path handles it."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


def _in_ranges(value: int, ranges: Iterable[tuple[int, int]]) -> bool:
    return any(low <= value <= high for low, high in ranges)


def _v4_refused(value: int) -> bool:
    at = bisect.bisect_right(_V4_REFUSED_STARTS, value) - 1
    return at >= 0 and value <= _V4_REFUSED_RANGES[at][1]


def canonical(address: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 (::ffff:a.b.c.d) is the IPv4 address it carries: judge and connect to that."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _listed(address: IPAddress, table: tuple[tuple[Network, str], ...]) -> str | None:
    for network, why in table:
        if address.version == network.version and address in network:
            return why
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why `address` is not a public internet address (e.g. 'a loopback address'), or None."""
    address = canonical(address)
    if isinstance(address, ipaddress.IPv4Address):
        return _listed(address, _V4_REFUSED)
    if address.scope_id:
        return "an address with a zone index"
    carried: ipaddress.IPv4Address | None = None
    if address in _NAT64:
        carried, form = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    elif address.sixtofour is not None:
        carried, form = address.sixtofour, "6to4"
    if carried is not None:
        why = _listed(carried, _V4_REFUSED)
        return f"{why} in {form} form" if why else None
    why = _listed(address, _V6_REFUSED)
    if why:
        return why
    return None if address in _V6_GLOBAL_UNICAST else "not a global unicast address"


@functools.lru_cache(maxsize=65536)
def parse_ip(host: str) -> IPAddress | None:
    """The address when `host` is an IP literal in standard notation (brackets allowed), else None.
    Cached: probes look at the same device hosts every interval."""
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def odd_numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a resolver would make of a non-standard numeric host, e.g. `2130706433`,
    `0x7f000001`, `0177.0.0.1`, `127.1` (all 127.0.0.1); None for anything else."""
    if not host or parse_ip(host) is not None or not all(c.isalnum() or c == "." for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def is_localhost_name(host: str) -> bool:
    """`localhost` and `*.localhost` always mean this machine (RFC 6761), whatever DNS says."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


@dataclass(frozen=True)
class EgressPolicy:
    """The address rules plus the networks allowed anyway (`allow`). The default allows nothing extra."""

    allow: tuple[Network, ...] = ()
    # literal -> address to connect to ("" when refused); probes judge the same hosts every interval
    _literals: dict[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)
    _v4_allow: tuple[tuple[int, int], ...] = field(default=(), compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_v4_allow", tuple(
            (int(net.network_address), int(net.broadcast_address)) for net in self.allow if net.version == 4))

    @classmethod
    def parse(cls, cidrs: str) -> EgressPolicy:
        """From `EGRESS_ALLOW_CIDRS` ('10.0.0.0/8, 127.0.0.1/32'); ValueError naming a bad entry."""
        networks = []
        for item in (part.strip() for part in cidrs.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not a CIDR; give networks like 172.30.0.0/24 or ::1/128, "
                                 "comma-separated") from None
        return cls(tuple(networks))

    def is_allow_listed(self, address: IPAddress) -> bool:
        address = canonical(address)
        return any(address.version == net.version and address in net for net in self.allow)

    def refusal(self, address: IPAddress) -> str | None:
        """Why we must not connect to `address`, or None (public, or allow-listed)."""
        if self.is_allow_listed(address):
            return None
        return address_refusal(address)

    # --- connect time -----------------------------------------------------------------------------

    def connect_address(self, address: str) -> str:
        """`address` (an IP literal, e.g. from a resolver) as we connect to it; EgressRefused if forbidden."""
        checked = self._literals.get(address)
        if checked is None:
            if len(self._literals) >= _LITERAL_CACHE_SIZE:
                self._literals.clear()
            checked = self._judge_dotted_quad(address)
            if checked is None:
                parsed = parse_ip(address)
                checked = "" if parsed is None or self.refusal(parsed) else str(canonical(parsed))
            self._literals[address] = checked
        if not checked:
            raise EgressRefused()
        return checked

    def _judge_dotted_quad(self, address: str) -> str | None:
        """`connect_address`'s verdict for a standard dotted-quad IPv4 literal (the address, or "" when
        refused) without building `ipaddress` objects; None for anything else (judged the slow way)."""
        try:
            packed = socket.inet_pton(socket.AF_INET, address)  # strict: no octal, hex or short forms
        except OSError:
            return None
        value = int.from_bytes(packed, "big")
        if not _v4_refused(value) or (self._v4_allow and _in_ranges(value, self._v4_allow)):
            return socket.inet_ntop(socket.AF_INET, packed)
        return ""

    def check_unresolved(self, host: str, *, allow_listed_only: bool = False) -> None:
        """For URL hosts an HTTP client connects to without a resolver (IP literals, numeric spellings):
        raise EgressRefused when the policy forbids them; names pass (the `EgressResolver` judges those)."""
        if parse_ip(host) is None and odd_numeric_ipv4(host) is None:
            return
        address = ipaddress.ip_address(self.connect_address(host))  # EgressRefused for numeric spellings
        if allow_listed_only and not self.is_allow_listed(address):
            raise EgressRefused()

    async def resolve(self, host: str, *, allow_listed_only: bool = False) -> str:
        """The one address to connect to for `host`, judged now (IPv4 preferred).

        Raises EgressRefused when the policy forbids every answer (or, with `allow_listed_only`, when no
        answer is in the allow-list), OSError when the name does not resolve.
        """
        if host in self._literals or parse_ip(host) is not None:
            address = self.connect_address(host)
            if allow_listed_only and not self.is_allow_listed(ipaddress.ip_address(address)):
                raise EgressRefused()
            return address
        if is_localhost_name(host) and not self.usable(_LOOPBACK, allow_listed_only):
            raise EgressRefused()
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        allowed = [a for a in _addresses(infos) if self.usable(a, allow_listed_only)]
        if not allowed:
            raise EgressRefused()
        allowed.sort(key=lambda a: a.version)  # IPv4 first: monitors may be bound to an IPv4 source
        return str(allowed[0])

    def usable(self, address: IPAddress, allow_listed_only: bool = False) -> bool:
        """May we connect to `address`? (`allow_listed_only`: only if it is in the allow-list.)"""
        if allow_listed_only:
            return self.is_allow_listed(address)
        return self.refusal(address) is None

    # --- registration -----------------------------------------------------------------------------

    def host_problem(self, host: str) -> str | None:
        """Why `host` is refused as it is written (without resolving it), or None."""
        if odd_numeric_ipv4(host) is not None:
            return (f"{host!r} is an IPv4 address in a non-standard notation ({odd_numeric_ipv4(host)}); "
                    "write addresses as a.b.c.d")
        address = parse_ip(host)
        if address is not None:
            why = self.refusal(address)
            return f"{host} is {why}" if why else None
        if is_localhost_name(host) and self.refusal(_LOOPBACK):
            return f"{host!r} is this machine (a loopback name)"
        return None

    async def registration_problems(self, hosts: Iterable[str]) -> dict[str, str]:
        """host -> why a tenant may not register it, for every refused host. Names are resolved now
        (bounded in time); a name that does not resolve yet is accepted: it is judged again at connect time."""
        problems: dict[str, str] = {}
        names: list[str] = []
        for host in set(hosts):
            problem = self.host_problem(host)
            if problem:
                problems[host] = problem
            elif parse_ip(host) is None:
                names.append(host)
        if names:
            slots = asyncio.Semaphore(_RESOLVE_CONCURRENCY)
            found = await asyncio.gather(*(self._name_problem(name, slots) for name in names))
            problems.update({name: problem for name, problem in zip(names, found, strict=True) if problem})
        return problems

    async def _name_problem(self, name: str, slots: asyncio.Semaphore) -> str | None:
        async with slots:
            try:
                infos = await asyncio.wait_for(
                    asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM), _RESOLVE_TIMEOUT_S
                )
            except (OSError, TimeoutError, UnicodeError):
                return None
        for address in _addresses(infos):
            why = self.refusal(address)
            if why:
                return f"{name!r} resolves to {why}"
        return None

    async def all_allow_listed(self, host: str) -> bool:
        """True when `host` is (or resolves now only to) allow-listed addresses."""
        address = parse_ip(host)
        if address is not None:
            return self.is_allow_listed(address)
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM), _RESOLVE_TIMEOUT_S
            )
        except (OSError, TimeoutError, UnicodeError):
            return False
        addresses = _addresses(infos)
        return bool(addresses) and all(self.is_allow_listed(a) for a in addresses)


# The production default: public internet addresses only, nothing allow-listed.
PUBLIC_ONLY = EgressPolicy()


def _addresses(infos: list) -> list[IPAddress]:
    found: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = ipaddress.ip_address(sockaddr[0])
            if isinstance(address, ipaddress.IPv6Address) and len(sockaddr) > 3 and sockaddr[3]:
                address = ipaddress.IPv6Address(f"{sockaddr[0]}%{sockaddr[3]}")
            found.append(address)
    return found


class EgressResolver(ThreadedResolver):
    """aiohttp resolver that hands the connector only addresses the policy allows.

    aiohttp connects to the address this returns and keeps the URL's name for the Host header and TLS
    SNI/certificate checks, so the checked address is the one connected to. IP-literal URLs never reach a
    resolver: check them with `EgressPolicy.connect_address` before the request.
    """

    def __init__(self, policy: EgressPolicy, *, allow_listed_only: bool = False) -> None:
        super().__init__()
        self._policy = policy
        self._allow_listed_only = allow_listed_only

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if is_localhost_name(host) and not self._policy.usable(_LOOPBACK, self._allow_listed_only):
            raise EgressRefused()
        kept: list[ResolveResult] = []
        for result in await super().resolve(host, port, family):
            address = ipaddress.ip_address(result["host"])
            if not self._policy.usable(address, self._allow_listed_only):
                continue
            address = canonical(address)
            family_of = socket.AF_INET if address.version == 4 else socket.AF_INET6
            kept.append({**result, "host": str(address), "family": family_of})
        if not kept:
            raise EgressRefused()
        return kept
