"""Key pairs: CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair.

Storage (DESIGN §5): the user's OpenNebula TEMPLATE, one vector per key pair —

    EC2_KEYPAIR = [ NAME = "…", PUBLIC_KEY = "ssh-ed25519 AAAA… name", FINGERPRINT = "…",
                    KEY_PAIR_ID = "key-<17 hex>", KEY_TYPE = "rsa|ed25519", CREATE_TIME = "<epoch>" ]

RunInstances reads NAME/PUBLIC_KEY (handlers/instances.py). The private key is never stored:
CreateKeyPair returns it once. The Ruby econe's base64 JSON `EC2_KEYPAIRS` attributes are read
(shown, usable, deletable) but never written.

oned's `*.update` merge replaces every attribute named in the update, so adding or removing one
key sends *all* EC2_KEYPAIR vectors back (`one.user.update(uid, …, 1)`): a read-modify-write of
that one attribute. The rest of the user template is never rewritten, but two key-pair changes
of the same user at the same instant can lose one of them (oned has no compare-and-swap for
templates). When no vector remains, `EC2_KEYPAIR = ""` (an empty value, ignored by readers) is
merged, because a merge cannot remove an attribute.

Fingerprints as AWS computes them: RSA created here — SHA-1 of the DER PKCS#8 private key;
RSA imported — MD5 of the DER public key (SubjectPublicKeyInfo); ED25519 — base64 SHA-256 of
the OpenSSH public key blob.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from lxml import etree

from econe.errors import Ec2Error, invalid_value, missing_parameter
from econe.mapping.ids import key_pair_id
from econe.query import as_list
from handlers.escaping import as_given, template_xml
from handlers.locks import held
from handlers.tags import json_tags, json_text, tag_specs

VECTOR = "EC2_KEYPAIR"
LEGACY = "EC2_KEYPAIRS"
_NAME = re.compile(r"[\x20-\x7e]{1,255}")
_COMMENT = re.compile(r"[A-Za-z0-9_.@:+=-]{1,255}")


def _colon(digest: bytes) -> str:
    return ":".join(f"{b:02x}" for b in digest)


def _key_name(value: Any) -> str:
    if value is None or value == "":
        raise missing_parameter("KeyName")
    name = str(value)
    if not _NAME.fullmatch(name):
        raise invalid_value("KeyName", name, "Key names have 1 to 255 printable ASCII characters.")
    return as_given(name, "KeyName")  # as EC2: no space at either end (OpenNebula trims it)


def _checked_id(raw: Any) -> str:
    """KeyPairId of DescribeKeyPairs and DeleteKeyPair: InvalidKeyPair.Malformed when it is no
    key pair id at all (the id check tags take too: econe.mapping.ids.key_pair_id)."""
    key_id = key_pair_id(str(raw))
    if key_id is None:
        raise Ec2Error("InvalidKeyPair.Malformed", f"Invalid id: '{raw}'")
    return key_id


def _user(rt: Any) -> etree._Element:
    return rt.xml(rt.call("one.user.info", -1))


def _legacy_id(name: str) -> str:
    return "key-" + hashlib.sha256(name.encode()).hexdigest()[:17]


def _legacy(user: etree._Element) -> dict[str, dict]:
    """The Ruby econe's EC2_KEYPAIRS (base64 JSON {name: {fingerprint, public_key}})."""
    pairs: dict[str, dict] = {}
    for blob in user.findall(f"TEMPLATE/{LEGACY}"):
        try:
            data = json.loads(base64.b64decode(blob.text or ""))
        except (ValueError, binascii.Error):
            continue
        if not isinstance(data, dict):
            continue
        for name, entry in data.items():
            if isinstance(entry, dict) and name not in pairs:
                pairs[str(name)] = entry
    return pairs


def key_pairs(rt: Any, user: etree._Element) -> list[dict[str, Any]]:
    """Every key pair of the user: EC2_KEYPAIR vectors (views/keypair.yaml), then the legacy
    entries they do not shadow."""
    out = []
    for vec in user.findall(f"TEMPLATE/{VECTOR}"):
        pair = rt.view("keypair", vec)
        if pair.get("KeyName"):
            pair["KeyPairId"] = pair.get("KeyPairId") or _legacy_id(pair["KeyName"])
            pair["Tags"] = json_tags(pair.get("_tags"))
            out.append(pair)
    seen = {p["KeyName"] for p in out}
    for name, entry in _legacy(user).items():
        if name in seen:
            continue
        out.append(
            {
                "KeyName": name,
                "KeyPairId": _legacy_id(name),
                "KeyFingerprint": str(entry.get("fingerprint") or ""),
                "KeyType": "rsa",
                "PublicKey": str(entry.get("public_key") or ""),
                "Tags": [],
                "_legacy": True,
            }
        )
    return out


def set_tags(rt: Any, key_id: str, change: Any) -> None:
    """The key pair's TAGS become `change(tags now)`: read-modify-write of the user's key
    vectors, read afresh under the user's lock (see the note above _vectors)."""
    with held("key pairs", rt.principal.uid):
        user = _user(rt)
        vectors, found = [], False
        for name, vec in _vectors(user):
            attrs = dict(vec)
            if attrs.get("KEY_PAIR_ID") == key_id:
                found = True
                tags = change([(t["Key"], t["Value"]) for t in json_tags(attrs.get("TAGS"))])
                vec = [(k, v) for k, v in vec if k != "TAGS"]
                if tags:
                    vec.append(("TAGS", json_text(tags)))
            vectors.append((name, vec))
        if not found:  # deleted meanwhile
            raise Ec2Error("InvalidKeyPair.NotFound", f"The key pair ID '{key_id}' does not exist")
        _write(rt, _uid(user), vectors)


# Every change of a user's key pairs rewrites all of them (a merge replaces every EC2_KEYPAIR
# vector): one at a time per user in this process (held("key pairs", uid)), each reading the
# template afresh. Across gateway processes two changes at the same instant can still lose one
# (mappings/README).


def _vectors(user: etree._Element) -> list[tuple[str, list[tuple[str, str]]]]:
    return [
        (VECTOR, [(c.tag, c.text or "") for c in vec if isinstance(c.tag, str)])
        for vec in user.findall(f"TEMPLATE/{VECTOR}")
        if vec.findtext("NAME")
    ]


def _write(rt: Any, uid: int, vectors: list) -> None:
    update = template_xml(vectors) if vectors else f'{VECTOR} = ""'
    rt.call("one.user.update", uid, update, 1)


def _uid(user: etree._Element) -> int:
    return int(user.findtext("ID"))


def _comment(name: str) -> str:
    return f" {name}" if _COMMENT.fullmatch(name) else ""


# a public key's type and blob, as oned can take them into a VM's CONTEXT
_KEY = re.compile(r"[A-Za-z0-9@.-]+ [A-Za-z0-9+/]+=*")


def context_key(name: str, line: str) -> str:
    """The public key line of key pair `name` as RunInstances puts it in CONTEXT: oned expands
    `$…` in every CONTEXT value (it has no escape for `$`), so a comment other than the ones
    ImportKeyPair keeps (_COMMENT: the Ruby econe's comment was the key's name, which may hold
    `$`) is left out: the guest gets the same key. A key line that is not a public key at all
    (someone edited their OpenNebula template) is InvalidKeyPair.Format."""
    fields = line.split(None, 2)
    key = " ".join(fields[:2])
    if not _KEY.fullmatch(key):
        raise Ec2Error(
            "InvalidKeyPair.Format",
            f"The key pair '{name}' holds no public key that can be given to an instance",
        )
    comment = fields[2].strip() if len(fields) == 3 else ""
    return f"{key} {comment}" if _COMMENT.fullmatch(comment) else key


def _add(rt: Any, name: str, public_key: str, fingerprint: str, key_type: str, tags: list) -> str:
    key_id = "key-" + secrets.token_hex(9)[:17]
    vector = [
        ("NAME", name),
        ("PUBLIC_KEY", public_key),
        ("FINGERPRINT", fingerprint),
        ("KEY_PAIR_ID", key_id),
        ("KEY_TYPE", key_type),
        ("CREATE_TIME", str(int(time.time()))),
    ]
    if tags:
        vector.append(("TAGS", json_text(tags)))
    with held("key pairs", rt.principal.uid):
        user = _user(rt)
        if any(p["KeyName"] == name for p in key_pairs(rt, user)):
            raise Ec2Error("InvalidKeyPair.Duplicate", f"The keypair '{name}' already exists.")
        _write(rt, _uid(user), [*_vectors(user), (VECTOR, vector)])
    return key_id


def create_key_pair(rt: Any) -> dict:
    body = rt.body
    name = _key_name(body.get("KeyName"))
    tags = tag_specs(body, "key-pair")
    key_type = str(body.get("KeyType") or "rsa")
    key_format = str(body.get("KeyFormat") or "pem")
    if key_format not in ("pem", "ppk"):
        raise invalid_value("KeyFormat", key_format, "Expecting pem or ppk.")
    if key_type == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        material = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        blob = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        fingerprint = _ed25519_fingerprint(blob.decode())
    elif key_type == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        material = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # BEGIN RSA PRIVATE KEY, as AWS
            serialization.NoEncryption(),
        )
        pkcs8 = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fingerprint = _colon(hashlib.sha1(pkcs8).digest())  # noqa: S324 - AWS's fingerprint
        blob = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    else:
        raise invalid_value("KeyType", key_type, "Expecting rsa or ed25519.")
    if key_format == "ppk":
        material = _ppk(private, base64.b64decode(blob.split()[1]), name).encode()
    public_key = blob.decode() + _comment(name)
    key_id = _add(rt, name, public_key, fingerprint, key_type, tags)
    return {
        "KeyName": name,
        "KeyFingerprint": fingerprint,
        "KeyMaterial": material.decode().rstrip("\n"),
        "KeyPairId": key_id,
        "Tags": [{"Key": k, "Value": v} for k, v in tags],
    }


def _ppk(private: Any, public: bytes, comment: str) -> str:
    """The private key as a PuTTY key file (KeyFormat=ppk), unencrypted, in version 2 of the
    format, which every PuTTY reads (0.75 and later read version 3 too). `public` is the SSH
    public key blob; the private blob is RSA's d, p, q and q⁻¹ mod p, or Ed25519's seed; the
    MAC is HMAC-SHA-1 keyed with SHA-1 of PuTTY's constant and the (empty) passphrase."""
    if isinstance(private, rsa.RSAPrivateKey):
        algorithm, n = "ssh-rsa", private.private_numbers()
        secret = b"".join(_ssh_mpint(v) for v in (n.d, n.p, n.q, n.iqmp))
    else:
        algorithm = "ssh-ed25519"
        seed = private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        secret = _ssh_string(seed)
    fields = (algorithm.encode(), b"none", comment.encode(), public, secret)
    mac_key = hashlib.sha1(b"putty-private-key-file-mac-key").digest()  # noqa: S324 - PPK v2
    mac = hmac.new(mac_key, b"".join(map(_ssh_string, fields)), hashlib.sha1).hexdigest()

    def lines(blob: bytes) -> list[str]:
        text = base64.b64encode(blob).decode()
        return [text[i : i + 64] for i in range(0, len(text), 64)]

    pub, priv = lines(public), lines(secret)
    return "\n".join(
        [
            f"PuTTY-User-Key-File-2: {algorithm}",
            "Encryption: none",
            f"Comment: {comment}",
            f"Public-Lines: {len(pub)}",
            *pub,
            f"Private-Lines: {len(priv)}",
            *priv,
            f"Private-MAC: {mac}",
        ]
    )


def _ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _ssh_mpint(value: int) -> bytes:
    """A positive integer as SSH's mpint: big-endian, a zero byte first when the top bit is set."""
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return _ssh_string(b"\0" + raw if raw and raw[0] & 0x80 else raw)


def _ed25519_fingerprint(openssh: str) -> str:
    blob = base64.b64decode(openssh.split()[1])
    return base64.b64encode(hashlib.sha256(blob).digest()).decode()


def _bad_key() -> Ec2Error:
    return Ec2Error("InvalidKey.Format", "Key is not in valid OpenSSH public key format")


def _rfc4716(text: str) -> tuple[str, str]:
    """An SSH2 public key file (RFC 4716: `---- BEGIN SSH2 PUBLIC KEY ----`, headers, base64
    body) → (OpenSSH key line without comment, its Comment header)."""
    lines = [ln.strip() for ln in text.splitlines()]
    if lines[-1] != "---- END SSH2 PUBLIC KEY ----":
        raise _bad_key()
    body, comment, header = [], "", ""
    for line in lines[1:-1]:
        if header or (":" in line and not body):  # headers come first, `\` continues one
            header += line
            if header.endswith("\\"):
                header = header[:-1]
                continue
            name, _, value = header.partition(":")
            if name.strip().lower() == "comment":
                comment = value.strip().strip('"')
            header = ""
        elif line:
            body.append(line)
    try:
        blob = base64.b64decode("".join(body), validate=True)
        kind = blob[4 : 4 + int.from_bytes(blob[:4], "big")].decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad_key() from None
    return f"{kind} {base64.b64encode(blob).decode()}", comment


def _load_public_key(raw: bytes) -> tuple[Any, str]:
    """(public key, comment) from what AWS's ImportKeyPair takes: an OpenSSH public key line,
    an RFC 4716 SSH2 public key file, or DER (or PEM) SubjectPublicKeyInfo."""
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        text = None
    try:
        if text is None:
            return serialization.load_der_public_key(raw), ""
        if text.startswith("---- BEGIN SSH2 PUBLIC KEY ----"):
            line, comment = _rfc4716(text)
            return serialization.load_ssh_public_key(line.encode()), comment
        if text.startswith("-----BEGIN "):
            return serialization.load_pem_public_key(raw), ""
        if not text or "\n" in text or "\r" in text:
            raise _bad_key()
        parts = text.split()
        if len(parts) < 2 or parts[0] not in ("ssh-rsa", "ssh-ed25519"):
            raise _bad_key()
        key = serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
        return key, " ".join(parts[2:])
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm):
        raise _bad_key() from None


def parse_public_key(material: Any) -> tuple[str, str, str]:
    """PublicKeyMaterial (base64 of a public key, see _load_public_key) → (OpenSSH key line,
    fingerprint, key type). Only RSA (1024–16384 bits) and ED25519, as EC2."""
    if material is None or material == "":
        raise missing_parameter("PublicKeyMaterial")
    try:
        raw = base64.b64decode("".join(str(material).split()), validate=True)  # MIME lines too
    except (binascii.Error, ValueError):
        raise _bad_key() from None
    key, comment = _load_public_key(raw)
    if not isinstance(key, ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        raise _bad_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = line.decode()
    if comment and _COMMENT.fullmatch(comment):
        line += " " + comment
    if isinstance(key, ed25519.Ed25519PublicKey):
        return line, _ed25519_fingerprint(line), "ed25519"
    if 1024 <= key.key_size <= 16384:
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return line, _colon(hashlib.md5(der).digest()), "rsa"  # noqa: S324 - AWS's fingerprint
    raise _bad_key()


def import_key_pair(rt: Any) -> dict:
    name = _key_name(rt.body.get("KeyName"))
    tags = tag_specs(rt.body, "key-pair")
    line, fingerprint, key_type = parse_public_key(rt.body.get("PublicKeyMaterial"))
    key_id = _add(rt, name, line, fingerprint, key_type, tags)
    return {
        "KeyName": name,
        "KeyFingerprint": fingerprint,
        "KeyPairId": key_id,
        "Tags": [{"Key": k, "Value": v} for k, v in tags],
    }


def describe_key_pairs(rt: Any) -> dict:
    body = rt.body
    pairs = key_pairs(rt, _user(rt))
    names, ids = (
        [str(v) for v in as_list(body.get("KeyName"))],
        [_checked_id(v) for v in as_list(body.get("KeyPairId"))],
    )
    # each name and id must be one of the user's; both given: the key pairs with both
    for wanted, field, what in ((names, "KeyName", "key pair"), (ids, "KeyPairId", "key pair ID")):
        have = {p[field] for p in pairs}
        missing = [w for w in wanted if w not in have]
        if missing:
            verb = "do not exist" if len(missing) > 1 else "does not exist"
            raise Ec2Error(
                "InvalidKeyPair.NotFound",
                f"The {what}{'s' if len(missing) > 1 else ''} '{', '.join(missing)}' {verb}",
            )
    pairs = [
        p
        for p in pairs
        if (not names or p["KeyName"] in names) and (not ids or p["KeyPairId"] in ids)
    ]
    pairs = rt.filter(pairs)
    if not body.get("IncludePublicKey"):
        for p in pairs:
            p.pop("PublicKey", None)
    return {"KeyPairs": pairs}


def delete_key_pair(rt: Any) -> dict:
    """Idempotent as EC2: deleting a key pair that does not exist succeeds. Instances launched
    with the key keep it (it is in their CONTEXT)."""
    body = rt.body
    name, key_id = body.get("KeyName"), body.get("KeyPairId")
    if not name and not key_id:
        raise missing_parameter("KeyName")
    if key_id:
        key_id = _checked_id(key_id)
    with held("key pairs", rt.principal.uid):
        user = _user(rt)
        pairs = key_pairs(rt, user)
        # both given: the one key pair with that name and that id (never two of them)
        victims = [
            p
            for p in pairs
            if (not name or p["KeyName"] == str(name))
            and (not key_id or p["KeyPairId"] == str(key_id))
        ]
        if not victims and name and key_id:
            raise Ec2Error(
                "InvalidKeyPair.NotFound",
                f"No key pair has both the name '{name}' and the ID '{key_id}'",
            )
        if not victims:
            if key_id and not name:
                raise Ec2Error(
                    "InvalidKeyPair.NotFound", f"The key pair ID '{key_id}' does not exist"
                )
            return {"Return": True}
        gone = {p["KeyName"] for p in victims}
        kept = [v for v in _vectors(user) if dict(v[1]).get("NAME") not in gone]
        if len(kept) != len(_vectors(user)):
            _write(rt, _uid(user), kept)
        if any(p.get("_legacy") for p in victims):
            legacy = {k: v for k, v in _legacy(user).items() if k not in gone}
            blob = base64.b64encode(json.dumps(legacy).encode()).decode()
            rt.call("one.user.update", _uid(user), template_xml([(LEGACY, blob)]), 1)
    return {"Return": True, "KeyPairId": victims[0]["KeyPairId"]}
