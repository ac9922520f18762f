"""A DNS server on loopback (dnslib) answering from a small fixed zone, for DNS check tests."""

from __future__ import annotations

from dnslib import AAAA, CNAME, MX, NS, QTYPE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

ZONE = {
    ("pump.example.com.", "A"): [A("192.0.2.10"), A("192.0.2.11")],
    ("pump.example.com.", "AAAA"): [AAAA("2001:db8::10")],
    ("alias.example.com.", "CNAME"): [CNAME("pump.example.com.")],
    ("example.com.", "MX"): [MX("mail.example.com.", 10), MX("backup.example.com.", 20)],
    ("example.com.", "TXT"): [TXT("v=spf1 -all"), TXT(["site=", "berlin"])],
    ("example.com.", "NS"): [NS("ns1.example.com."), NS("ns2.example.com.")],
}


class ZoneResolver(BaseResolver):
    def resolve(self, request: DNSRecord, handler) -> DNSRecord:  # noqa: ANN001
        reply = request.reply()
        qname, qtype = str(request.q.qname).lower(), QTYPE[request.q.qtype]
        records = ZONE.get((qname, qtype))
        if records:
            for rdata in records:
                reply.add_answer(RR(qname, getattr(QTYPE, qtype), rdata=rdata, ttl=60))
        elif not any(name == qname for name, _ in ZONE):
            reply.header.rcode = 3  # NXDOMAIN
        return reply


def start_zone_server() -> tuple[DNSServer, str]:
    """A running UDP server for ZONE on 127.0.0.1 and its "address:port" (stop() it when done)."""
    server = DNSServer(ZoneResolver(), address="127.0.0.1", port=0, logger=DNSLogger("-request,-reply,-truncated"))
    server.start_thread()
    return server, f"127.0.0.1:{server.server.server_address[1]}"
