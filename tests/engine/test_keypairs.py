"""Key pairs through the engine against a live onesim (speed 0), as real users."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from lxml import etree

from econe.errors import Ec2Error
from tests.engine.conftest import AMI, Sim, code_of, run


@pytest.fixture(scope="module")
def mallory(sim: Sim) -> str:
    sim.as_admin("one.user.allocate", "mallory", "pw", "core", [1])
    return "mallory"


def user_template(sim: Sim, name: str) -> etree._Element:
    pool = etree.fromstring(sim.as_admin("one.userpool.info").encode())
    for user in pool.iterfind("USER"):
        if user.findtext("NAME") == name:
            uid = int(user.findtext("ID"))
            return etree.fromstring(sim.as_admin("one.user.info", uid).encode()).find("TEMPLATE")
    raise AssertionError(name)


def names(engine, user: str = "demo", **body) -> list[str]:
    return [p["KeyName"] for p in run(engine, "DescribeKeyPairs", body, user=user)["KeyPairs"]]


def test_create_rsa_and_ed25519_each_visible(sim: Sim, engine) -> None:
    rsa_pair = run(engine, "CreateKeyPair", {"KeyName": "k-rsa"}, user="demo")
    assert rsa_pair["KeyMaterial"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    private = serialization.load_pem_private_key(rsa_pair["KeyMaterial"].encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    pkcs8 = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    sha1 = hashlib.sha1(pkcs8).hexdigest()
    assert rsa_pair["KeyFingerprint"] == ":".join(sha1[i : i + 2] for i in range(0, 40, 2))
    assert rsa_pair["KeyPairId"].startswith("key-") and len(rsa_pair["KeyPairId"]) == 21

    ed = run(engine, "CreateKeyPair", {"KeyName": "k-ed", "KeyType": "ed25519"}, user="demo")
    assert ed["KeyMaterial"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    ed_private = serialization.load_ssh_private_key(ed["KeyMaterial"].encode(), None)
    blob = ed_private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    wire = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + blob
    assert ed["KeyFingerprint"] == base64.b64encode(hashlib.sha256(wire).digest()).decode()

    # both visible (the Ruby econe showed only the first), private keys never stored
    pairs = run(engine, "DescribeKeyPairs", {"IncludePublicKey": True}, user="demo")["KeyPairs"]
    by_name = {p["KeyName"]: p for p in pairs}
    assert {"k-rsa", "k-ed"} <= set(by_name)
    assert by_name["k-ed"]["KeyType"] == "ed25519" and by_name["k-rsa"]["KeyType"] == "rsa"
    assert by_name["k-rsa"]["PublicKey"].startswith("ssh-rsa AAAA")
    assert by_name["k-ed"]["KeyFingerprint"] == ed["KeyFingerprint"]
    assert "PublicKey" not in run(engine, "DescribeKeyPairs", {}, user="demo")["KeyPairs"][0]
    text = etree.tostring(user_template(sim, "demo")).decode()
    assert "PRIVATE" not in text and text.count("<EC2_KEYPAIR>") >= 2
    assert "TOKEN_PASSWORD" in text  # the rest of the user template is kept

    assert code_of(run, engine, "CreateKeyPair", {"KeyName": "k-rsa"}, user="demo") == (
        "InvalidKeyPair.Duplicate"
    )
    assert names(engine, KeyPairId=[by_name["k-ed"]["KeyPairId"]]) == ["k-ed"]
    assert names(engine, KeyName=["k-rsa"]) == ["k-rsa"]
    body = {
        "Filter": [
            {"Name": "key-name", "Value": ["k-*"]},
            {"Name": "key-type", "Value": ["ed25519"]},
        ]
    }
    assert names(engine, **body) == ["k-ed"]
    fp = {"Filter": [{"Name": "fingerprint", "Value": [rsa_pair["KeyFingerprint"]]}]}
    assert names(engine, **fp) == ["k-rsa"]
    assert code_of(
        run, engine, "DescribeKeyPairs", {"KeyName": ["k-rsa", "nope"]}, user="demo"
    ) == ("InvalidKeyPair.NotFound")
    assert code_of(
        run, engine, "DescribeKeyPairs", {"KeyPairId": ["key-0123456789abcdef0"]}, user="demo"
    ) == ("InvalidKeyPair.NotFound")


@pytest.mark.parametrize("key_type", ["rsa", "ed25519"])
def test_ppk_key_material_is_what_puttygen_reads(sim: Sim, engine, tmp_path, key_type) -> None:
    """KeyFormat=ppk: a PuTTY key file PuTTY's own puttygen loads (it checks the MAC) and
    whose key is the key pair's public key."""
    puttygen = shutil.which("puttygen")
    if puttygen is None:
        pytest.fail("puttygen is not installed (.ci/run installs putty-tools)")
    name = f"ppk-{key_type}"
    body = {"KeyName": name, "KeyType": key_type, "KeyFormat": "ppk"}
    made = run(engine, "CreateKeyPair", body, user="demo")
    assert made["KeyMaterial"].startswith(
        f"PuTTY-User-Key-File-2: ssh-{key_type}\nEncryption: none\n"
    )
    ppk, converted = tmp_path / "key.ppk", tmp_path / "key"

    def convert(material: str) -> subprocess.CompletedProcess:  # reads the private part
        ppk.write_text(material + "\n")
        command = [puttygen, str(ppk), "-O", "private-openssh-new", "-o", str(converted)]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    assert convert(made["KeyMaterial"]).returncode == 0
    private = serialization.load_ssh_private_key(converted.read_bytes(), None)
    (stored,) = run(
        engine, "DescribeKeyPairs", {"KeyName": [name], "IncludePublicKey": True}, user="demo"
    )["KeyPairs"]
    assert _openssh_public(private.public_key()).split() == stored["PublicKey"].split()[:2]
    assert stored["KeyFingerprint"] == made["KeyFingerprint"]
    # the MAC covers the comment too: puttygen refuses a file changed anywhere
    assert convert(made["KeyMaterial"].replace(f"Comment: {name}", "Comment: x")).returncode
    run(engine, "DeleteKeyPair", {"KeyName": name}, user="demo")
    with pytest.raises(Ec2Error) as exc:
        run(engine, "CreateKeyPair", {"KeyName": name, "KeyFormat": "pfx"}, user="demo")
    assert exc.value.code == "InvalidParameterValue"


def _openssh(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def test_import_validates_and_fingerprints(sim: Sim, engine) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    line = _openssh(key) + " me@laptop"
    out = run(
        engine,
        "ImportKeyPair",
        {"KeyName": "imported", "PublicKeyMaterial": base64.b64encode(line.encode()).decode()},
        user="demo",
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    md5 = hashlib.md5(der).hexdigest()
    assert out["KeyFingerprint"] == ":".join(md5[i : i + 2] for i in range(0, 32, 2))
    pairs = run(
        engine, "DescribeKeyPairs", {"KeyName": ["imported"], "IncludePublicKey": True}, user="demo"
    )
    assert pairs["KeyPairs"][0]["PublicKey"] == line
    ed = ed25519.Ed25519PrivateKey.generate()
    run(
        engine,
        "ImportKeyPair",
        {
            "KeyName": "imported-ed",
            "PublicKeyMaterial": base64.b64encode(_openssh(ed).encode()).decode(),
        },
        user="demo",
    )
    for material in (
        base64.b64encode(b"not a key").decode(),
        base64.b64encode(b"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ garbage").decode(),
        base64.b64encode((line + "\nssh-rsa AAAA second").encode()).decode(),
        "%%%not-base64",
    ):
        body = {"KeyName": "bad", "PublicKeyMaterial": material}
        assert code_of(run, engine, "ImportKeyPair", body, user="demo") == "InvalidKey.Format"
    dup = {"KeyName": "imported", "PublicKeyMaterial": base64.b64encode(line.encode()).decode()}
    assert code_of(run, engine, "ImportKeyPair", dup, user="demo") == "InvalidKeyPair.Duplicate"
    assert "bad" not in names(engine)


def test_import_takes_every_format_aws_takes(sim: Sim, engine) -> None:
    """RFC 4716 (`ssh-keygen -e`), PEM and DER SubjectPublicKeyInfo: the same key, the same
    fingerprint and OpenSSH line as the OpenSSH form; an ECDSA key stays refused (EC2 too)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    line = _openssh_public(key)
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = "\n".join(line.split()[1][i : i + 70] for i in range(0, len(line.split()[1]), 70))
    rfc4716 = (
        "---- BEGIN SSH2 PUBLIC KEY ----\n"
        'Comment: "laptop \\\n key"\n'
        f"{body}\n---- END SSH2 PUBLIC KEY ----\n"
    ).encode()
    seen = []
    for n, raw in enumerate((line.encode(), rfc4716, pem, der)):
        material = base64.b64encode(raw).decode()
        out = run(
            engine,
            "ImportKeyPair",
            {"KeyName": f"fmt-{n}", "PublicKeyMaterial": material},
            user="demo",
        )
        seen.append(out["KeyFingerprint"])
        shown = run(
            engine,
            "DescribeKeyPairs",
            {"KeyName": [f"fmt-{n}"], "IncludePublicKey": True},
            user="demo",
        )["KeyPairs"][0]["PublicKey"]
        assert shown.split()[:2] == line.split()
        run(engine, "DeleteKeyPair", {"KeyName": f"fmt-{n}"}, user="demo")
    assert len(set(seen)) == 1
    from cryptography.hazmat.primitives.asymmetric import ec

    ecdsa = ec.generate_private_key(ec.SECP256R1()).public_key()
    for raw in (
        ecdsa.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
        ecdsa.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        b"---- BEGIN SSH2 PUBLIC KEY ----\nAAAA%%%\n---- END SSH2 PUBLIC KEY ----",
    ):
        body = {"KeyName": "bad", "PublicKeyMaterial": base64.b64encode(raw).decode()}
        assert code_of(run, engine, "ImportKeyPair", body, user="demo") == "InvalidKey.Format"


def _openssh_public(key) -> str:
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def test_delete_is_idempotent_and_keeps_the_others(sim: Sim, engine) -> None:
    for n in ("d1", "d2", "d3"):
        run(engine, "CreateKeyPair", {"KeyName": n, "KeyType": "ed25519"}, user="demo")
    assert run(engine, "DeleteKeyPair", {"KeyName": "d2"}, user="demo")["Return"] is True
    assert {"d1", "d3"} <= set(names(engine)) and "d2" not in names(engine)
    assert run(engine, "DeleteKeyPair", {"KeyName": "d2"}, user="demo") == {"Return": True}
    d3 = [p for p in run(engine, "DescribeKeyPairs", {"KeyName": ["d3"]}, user="demo")["KeyPairs"]][
        0
    ]
    run(engine, "DeleteKeyPair", {"KeyPairId": d3["KeyPairId"]}, user="demo")
    assert "d3" not in names(engine)
    assert code_of(
        run, engine, "DeleteKeyPair", {"KeyPairId": "key-0123456789abcdef0"}, user="demo"
    ) == ("InvalidKeyPair.NotFound")
    assert code_of(run, engine, "DeleteKeyPair", {}, user="demo") == "MissingParameter"


def test_name_and_id_together_name_one_key_pair(sim: Sim, engine) -> None:
    """DeleteKeyPair with KeyName and KeyPairId deletes the key pair that has both, never
    two; DescribeKeyPairs checks each against all the user's key pairs and keeps those with
    both."""
    for n in ("both1", "both2"):
        run(engine, "CreateKeyPair", {"KeyName": n, "KeyType": "ed25519"}, user="demo")
    pairs = run(engine, "DescribeKeyPairs", {"KeyName": ["both1", "both2"]}, user="demo")
    id1, id2 = (p["KeyPairId"] for p in pairs["KeyPairs"])
    body = {"KeyName": ["both1"], "KeyPairId": [id2]}
    assert run(engine, "DescribeKeyPairs", body, user="demo")["KeyPairs"] == []  # both: none
    body = {"KeyName": ["both1"], "KeyPairId": [id1]}
    assert [
        p["KeyName"] for p in run(engine, "DescribeKeyPairs", body, user="demo")["KeyPairs"]
    ] == ["both1"]
    body = {"KeyName": ["both1"], "KeyPairId": ["key-0123456789abcdef0"]}
    with pytest.raises(Ec2Error) as exc:
        run(engine, "DescribeKeyPairs", body, user="demo")
    assert exc.value.code == "InvalidKeyPair.NotFound" and "key-0123456789abcdef0" in str(exc.value)
    with pytest.raises(Ec2Error) as exc:
        run(engine, "DeleteKeyPair", {"KeyName": "both1", "KeyPairId": id2}, user="demo")
    assert exc.value.code == "InvalidKeyPair.NotFound"
    assert {"both1", "both2"} <= set(names(engine))  # neither was deleted
    run(engine, "DeleteKeyPair", {"KeyName": "both2", "KeyPairId": id2}, user="demo")
    assert "both2" not in names(engine) and "both1" in names(engine)
    run(engine, "DeleteKeyPair", {"KeyName": "both1"}, user="demo")


@pytest.mark.parametrize("name", [" lead", "trail ", " both "])
def test_key_names_with_blanks_at_either_end_are_refused(sim: Sim, engine, name: str) -> None:
    """As EC2; OpenNebula would store the name trimmed, not to be found by the name given."""
    material = base64.b64encode(
        _openssh_public(ed25519.Ed25519PrivateKey.generate().public_key()).encode()
    )
    for action, body in (
        ("CreateKeyPair", {"KeyName": name}),
        ("ImportKeyPair", {"KeyName": name, "PublicKeyMaterial": material.decode()}),
    ):
        with pytest.raises(Ec2Error) as exc:
            run(engine, action, body, user="demo")
        assert exc.value.code == "InvalidParameterValue" and "KeyName" in str(exc.value)
    assert name.strip() not in names(engine)


def test_last_key_removed_leaves_the_template_clean(sim: Sim, engine, mallory: str) -> None:
    run(engine, "CreateKeyPair", {"KeyName": "only"}, user=mallory)
    run(engine, "DeleteKeyPair", {"KeyName": "only"}, user=mallory)
    assert names(engine, user=mallory) == []
    assert [v.findtext("NAME") for v in user_template(sim, mallory).findall("EC2_KEYPAIR")] in (
        [],
        [None],
    )
    run(engine, "CreateKeyPair", {"KeyName": "again"}, user=mallory)
    assert names(engine, user=mallory) == ["again"]
    run(engine, "DeleteKeyPair", {"KeyName": "again"}, user=mallory)


def test_users_are_isolated(sim: Sim, engine, mallory: str) -> None:
    run(engine, "CreateKeyPair", {"KeyName": "secret-key"}, user="demo")
    assert "secret-key" not in names(engine, user=mallory)
    assert code_of(run, engine, "DescribeKeyPairs", {"KeyName": ["secret-key"]}, user=mallory) == (
        "InvalidKeyPair.NotFound"
    )
    run(engine, "DeleteKeyPair", {"KeyName": "secret-key"}, user=mallory)  # idempotent no-op
    assert "secret-key" in names(engine)
    run(engine, "CreateKeyPair", {"KeyName": "secret-key"}, user=mallory)  # same name, own user
    assert names(engine, user=mallory).count("secret-key") == 1


EVIL = ['x"]\nMEMORY="1', 'k]\nCPU=9\nY=[Z="1', '\\"', "$USER[TOKEN_PASSWORD]", "a'c<d>&e"]


@pytest.mark.parametrize("evil", EVIL)
def test_key_names_cannot_break_out(sim: Sim, engine, evil: str) -> None:
    if "\n" in evil:
        assert code_of(run, engine, "CreateKeyPair", {"KeyName": evil}, user="demo") == (
            "InvalidParameterValue"
        )
        evil = evil.replace("\n", " ")
    before = {c.tag for c in user_template(sim, "demo")}
    out = run(engine, "CreateKeyPair", {"KeyName": evil, "KeyType": "ed25519"}, user="demo")
    assert out["KeyName"] == evil
    assert {c.tag for c in user_template(sim, "demo")} == before | {"EC2_KEYPAIR"}
    pair = run(
        engine, "DescribeKeyPairs", {"KeyName": [evil], "IncludePublicKey": True}, user="demo"
    )
    assert pair["KeyPairs"][0]["KeyName"] == evil
    assert (
        "\n" not in pair["KeyPairs"][0]["PublicKey"]
        and evil not in pair["KeyPairs"][0]["PublicKey"]
    )
    (inst,) = run(engine, "RunInstances", {"ImageId": AMI, "KeyName": evil}, user="demo")[
        "Instances"
    ]
    assert inst["KeyName"] == evil
    vm = sim.vm(int(inst["InstanceId"].split("-")[1]))
    assert vm.findtext("TEMPLATE/CONTEXT/SSH_PUBLIC_KEY") == pair["KeyPairs"][0]["PublicKey"]
    run(engine, "TerminateInstances", {"InstanceId": [inst["InstanceId"]]}, user="demo")
    run(engine, "DeleteKeyPair", {"KeyName": evil}, user="demo")
    assert evil not in names(engine)


def test_run_instances_injects_the_public_key(sim: Sim, engine) -> None:
    run(engine, "CreateKeyPair", {"KeyName": "launch", "KeyType": "ed25519"}, user="demo")
    public = run(
        engine, "DescribeKeyPairs", {"KeyName": ["launch"], "IncludePublicKey": True}, user="demo"
    )
    key = public["KeyPairs"][0]["PublicKey"]
    res = run(engine, "RunInstances", {"ImageId": AMI, "KeyName": "launch"}, user="demo")
    vm = sim.vm(int(res["Instances"][0]["InstanceId"].split("-")[1]))
    assert vm.findtext("TEMPLATE/CONTEXT/SSH_PUBLIC_KEY") == key
    assert vm.findtext("USER_TEMPLATE/EC2_KEYNAME") == "launch"
    assert res["Instances"][0]["KeyName"] == "launch"


def ruby_key_pair(sim: Sim, name: str, public_key: str) -> None:
    """A key pair of the Ruby econe (base64 JSON EC2_KEYPAIRS) in demo's template."""
    import json

    blob = base64.b64encode(json.dumps({name: {"public_key": public_key}}).encode()).decode()
    users = etree.fromstring(sim.as_admin("one.userpool.info").encode())
    uid = int(users.xpath("USER[NAME='demo']/ID")[0].text)
    sim.as_admin("one.user.update", uid, f'EC2_KEYPAIRS="{blob}"', 1)


def test_a_key_comment_oned_would_expand_stays_out_of_the_instance(sim: Sim, engine) -> None:
    """The Ruby econe's comment is the key's name, any text: one holding `$` would reach the
    guest expanded by oned (here demo's TOKEN_PASSWORD), so the key goes without it."""
    ruby_key_pair(sim, "$USER[TOKEN_PASSWORD]", "ssh-rsa AAAAB3Nza= $USER[TOKEN_PASSWORD]")
    try:
        body = {"ImageId": AMI, "KeyName": "$USER[TOKEN_PASSWORD]"}
        (inst,) = run(engine, "RunInstances", body, user="demo")["Instances"]
        vm = sim.vm(int(inst["InstanceId"].split("-")[1]))
        assert vm.findtext("TEMPLATE/CONTEXT/SSH_PUBLIC_KEY") == "ssh-rsa AAAAB3Nza="
        assert vm.findtext("TEMPLATE/CONTEXT/EC2_PUBLIC_KEY") == "ssh-rsa AAAAB3Nza="
        assert inst["KeyName"] == "$USER[TOKEN_PASSWORD]"
        run(engine, "TerminateInstances", {"InstanceId": [inst["InstanceId"]]}, user="demo")
        ruby_key_pair(sim, "edited", "$USER[TOKEN_PASSWORD]")  # no key at all
        body = {"ImageId": AMI, "KeyName": "edited"}
        assert code_of(run, engine, "RunInstances", body, user="demo") == "InvalidKeyPair.Format"
    finally:
        for name in ("$USER[TOKEN_PASSWORD]", "edited"):
            run(engine, "DeleteKeyPair", {"KeyName": name}, user="demo")


def test_ruby_key_pairs_are_read(sim: Sim, engine, mallory: str) -> None:
    import json

    blob = base64.b64encode(
        json.dumps({"old": {"fingerprint": "aa:bb", "public_key": "ssh-rsa AAAA old"}}).encode()
    ).decode()
    uid = int(
        etree.fromstring(sim.as_admin("one.userpool.info").encode())
        .xpath("USER[NAME='mallory']/ID")[0]
        .text
    )
    sim.as_admin("one.user.update", uid, f'EC2_KEYPAIRS="{blob}"', 1)
    assert "old" in names(engine, user=mallory)
    assert code_of(run, engine, "CreateKeyPair", {"KeyName": "old"}, user=mallory) == (
        "InvalidKeyPair.Duplicate"
    )
    run(engine, "DeleteKeyPair", {"KeyName": "old"}, user=mallory)
    assert "old" not in names(engine, user=mallory)
