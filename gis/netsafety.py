"""Which network addresses a webhook may be sent to (pure: the caller resolves the name).

Link-local and cloud metadata addresses are never allowed: they reach the machine's own
credentials. Loopback and private addresses are allowed only for a subscription an admin marked
``allow_private``. Everything not globally routable (reserved, multicast, unspecified) is refused.
"""

from __future__ import annotations

import ipaddress

# Metadata services that are not link-local: Alibaba Cloud (100.100.100.200, in CGNAT space),
# AWS's IPv6 endpoint, and the usual IPv4 one (link-local, listed for the message).
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "100.100.100.200", "fd00:ec2::254", "169.254.170.2")
)


def refusal(address: str, *, allow_private: bool) -> str | None:
    """Why ``address`` may not be contacted, or None when it may."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_unspecified or ip.is_multicast:
        return f"{ip} is not a host address"
    if ip.is_loopback or ip.is_private or ip in ipaddress.ip_network("100.64.0.0/10"):
        if allow_private:
            return None
        return (
            f"{ip} is a loopback or private address; an admin may allow it for this "
            "subscription (--allow-private)"
        )
    if ip.is_reserved or not ip.is_global:
        return f"{ip} is not a public address"
    return None
