"""Address ranges and leases (``AddressRange``/``AddressRangePool``), IPv4 only.

An AR is ``{ar_id, type, ip, mac, size, next_index, leases: {"index": vm_id}, attrs,
allocated_ever}``; a lease held with ``one.vn.hold`` has vm id -1."""

from __future__ import annotations

from . import errors
from .docs import _ip_int, ip_str, mac_for

NOT_IN_RANGE = "Address is not part of the address range or in use."


def make_ar(ar_id: int, vec: list) -> dict:
    """``AddressRange::from_attr`` for IPv4 ranges (other types are not simulated)."""
    d = {k: v for k, v in vec}
    typ = d.get("TYPE", "").upper()
    if typ not in ("IP4", "IP6", "IP4_6", "ETHER", "IP6_STATIC", "IP4_6_STATIC"):
        raise errors.internal("Unknown or missing address range TYPE.")
    if typ != "IP4":
        raise errors.internal(f"onesim simulates IP4 address ranges only, not {typ}")
    try:
        start = _ip_int(d.get("IP", ""))
    except (ValueError, TypeError):
        raise errors.internal("Wrong or empty IP attribute") from None
    try:
        size = int(d.get("SIZE", ""))
        if size < 0:
            raise ValueError
    except ValueError:
        raise errors.internal("Wrong SIZE for address range") from None
    skip = {"AR_ID", "TYPE", "SIZE", "IP", "MAC", "ALLOCATED", "NEXT_INDEX", "SHARED"}
    return {
        "ar_id": ar_id,
        "type": typ,
        "ip": ip_str(start),
        "mac": mac_for(start),
        "size": size,
        "next_index": 0,
        "leases": {},
        "allocated_ever": False,
        "attrs": [[k, v] for k, v in vec if k not in skip],
    }


def _index(ar: dict, ip: str) -> int | None:
    try:
        i = _ip_int(ip) - _ip_int(ar["ip"])
    except (ValueError, AttributeError):
        return None
    return i if 0 <= i < ar["size"] else None


def _take(ar: dict, i: int, vid: int) -> tuple[str, str]:
    ar["leases"][str(i)] = vid
    ar["allocated_ever"] = True
    n = _ip_int(ar["ip"]) + i
    return ip_str(n), mac_for(n)


def allocate(vn: dict, vid: int, ip: str | None = None) -> tuple[dict, str, str]:
    """Lease an address (a given one, or the next free one) for VM ``vid``."""
    for ar in vn["ars"]:
        if ip is not None:
            i = _index(ar, ip)
            if i is not None and str(i) not in ar["leases"]:
                return (ar, *_take(ar, i, vid))
            continue
        for k in range(ar["size"]):
            i = (ar["next_index"] + k) % ar["size"]
            if str(i) not in ar["leases"]:
                ar["next_index"] = (i + 1) % ar["size"] if ar["size"] > 1 else 0
                return (ar, *_take(ar, i, vid))
    if ip is not None:
        raise errors.internal(f"Cannot get IP/MAC lease from virtual network {vn['id']}.")
    raise errors.internal(f"Cannot get IP/MAC lease from virtual network {vn['id']}.")


def free_vm(vn: dict, vid: int) -> None:
    for ar in vn["ars"]:
        for k in [k for k, v in ar["leases"].items() if v == vid]:
            del ar["leases"][k]


def _lease_spec(tmpl: list) -> tuple[dict, int | None]:
    vecs = [v for k, v in tmpl if k == "LEASES" and isinstance(v, list)]
    if not vecs:
        raise errors.internal("Empty lease description.")
    d = {k: v for k, v in vecs[0]}
    if not (d.get("IP") or d.get("MAC") or d.get("IP6")):
        raise errors.internal("Missing MAC, IP or IP6.")
    ar_id = d.get("AR_ID")
    try:
        return d, (int(ar_id) if ar_id is not None else None)
    except ValueError:
        raise errors.internal("Wrong AR_ID") from None


def _mac_int(mac: str) -> int | None:
    try:
        parts = [int(x, 16) for x in mac.strip().split(":")]
    except ValueError:
        return None
    if len(parts) != 6 or any(not 0 <= p <= 255 for p in parts):
        return None
    return int.from_bytes(bytes(parts), "big")


def _spec_index(ar: dict, d: dict) -> int | None:
    """Index of the address named by ``d`` (IP, else MAC) in ``ar``; None if outside."""
    if d.get("IP"):
        return _index(ar, d["IP"])
    m = _mac_int(d.get("MAC", ""))
    base = _mac_int(ar["mac"])
    if m is None or base is None:
        return None
    i = m - base
    return i if 0 <= i < ar["size"] else None


def _candidates(vn: dict, ar_id: int | None) -> list[dict]:
    return [ar for ar in vn["ars"] if ar_id is None or ar["ar_id"] == ar_id]


def hold(vn: dict, tmpl: list) -> None:
    """``one.vn.hold``: by IP or MAC (IPv6 is not simulated)."""
    d, ar_id = _lease_spec(tmpl)
    for ar in _candidates(vn, ar_id):
        i = _spec_index(ar, d)
        if i is not None:
            if str(i) in ar["leases"]:
                break
            _take(ar, i, -1)
            return
    raise errors.internal(NOT_IN_RANGE)


def release(vn: dict, tmpl: list) -> None:
    """oned answers success even when the address was not held or is in no AR."""
    d, ar_id = _lease_spec(tmpl)
    for ar in _candidates(vn, ar_id):
        i = _spec_index(ar, d)
        if i is not None and ar["leases"].get(str(i)) == -1:
            del ar["leases"][str(i)]
            return


def update_ar(vn: dict, tmpl: list) -> None:
    vecs = [v for k, v in tmpl if k == "AR" and isinstance(v, list)]
    d = {k: v for k, v in vecs[0]} if vecs else {}
    if "AR_ID" not in d:
        raise errors.internal("AR/AR_ID attribute is missing.")
    try:
        ar_id = int(d["AR_ID"])
    except ValueError:
        raise errors.internal("AR/AR_ID attribute is missing.") from None
    ars = [a for a in vn["ars"] if a["ar_id"] == ar_id]
    if not ars:
        raise errors.internal(f"Address Range with ID {ar_id} was not found.")
    ar = ars[0]
    # AddressRange::update_attributes: the AR's attribute set is *replaced* by the new one;
    # only TYPE, SHARED, MAC, IP, AR_ID, ALLOCATED, SIZE (if not given) and NEXT_INDEX are kept
    size = ar["size"]
    if d.get("SIZE", "") != "":
        try:
            size = int(d["SIZE"])
            if size < 0:
                raise ValueError
        except ValueError:
            raise errors.internal(
                "Unable to read the SIZE attribute, it must be number >= 0"
            ) from None
        if any(int(i) >= size for i in ar["leases"]):
            raise errors.internal(
                "New SIZE cannot be applied. There are used leases that would fall outside "
                "the range."
            )
    ar["size"] = size
    if ar["next_index"] >= size:
        ar["next_index"] = 0
    ar["allocated_ever"] = True  # ALLOCATED is copied over, even when empty
    dropped = {
        "AR_ID",
        "TYPE",
        "SIZE",
        "IP",
        "IP6",
        "MAC",
        "ALLOCATED",
        "NEXT_INDEX",
        "SHARED",
        "USED_LEASES",
        "LEASES",
        "PARENT_NETWORK_AR_ID",
        "MAC_END",
        "IP_END",
        "IP6_END",
        "IP6_ULA",
        "IP6_ULA_END",
        "IP6_GLOBAL",
        "IP6_GLOBAL_END",
        "PREFIX_LENGTH",
        "GLOBAL_PREFIX",
        "ULA_PREFIX",
    }
    ar["attrs"] = [[k, v] for k, v in vecs[0] if k not in dropped]
