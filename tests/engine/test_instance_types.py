"""DescribeInstanceTypes on a live onesim: econe.conf's types (read from their rendered
template) and the OpenNebula templates RunInstances would use for the user, no others."""

from __future__ import annotations

import pytest
from lxml import etree

from econe.errors import Ec2Error
from tests.engine.conftest import AMI, Sim, run


def types(engine, user: str = "demo", **body) -> dict[str, dict]:
    found = run(engine, "DescribeInstanceTypes", body, user=user)["InstanceTypes"]
    return {t["InstanceType"]: t for t in found}


@pytest.fixture(scope="module")
def templates(sim: Sim) -> None:
    """c1.arm (the user's own), m9.shared (another user's, shared: never used for others)."""
    sim.client.call(
        "demo:demo",
        "one.template.allocate",
        'NAME="arm"\nEC2_INSTANCE_TYPE="c1.arm"\nVCPU="2"\nCPU="0.5"\nMEMORY="512"\n'
        'OS=[ARCH="aarch64"]',
    )
    uid = sim.as_admin("one.user.allocate", "sharer", "pw", "core", [1])
    tid = sim.client.call(
        "sharer:pw", "one.template.allocate", 'NAME="s"\nEC2_INSTANCE_TYPE="m9.shared"\nMEMORY="64"'
    )
    core = sim.server.sim  # onesim has no one.template.chmod: share it the way chmod 644 would
    with core.lock:
        tmpl = core.store.get("template", tid)
        tmpl["perms"] = [1, 1, 0, 1, 0, 0, 1, 0, 0]
        core.store.put("template", tmpl)
    assert uid and "m9.shared" in sim.client.call("demo:demo", "one.templatepool.info", -2, -1, -1)


def test_the_types_runinstances_takes(sim: Sim, engine, templates) -> None:
    listed = types(engine)
    assert set(listed) == {"m1.small", "c1.arm"}  # econe.conf's, and the user's own template
    small = listed["m1.small"]  # templates/m1.small.j2: CPU 0.2, MEMORY 256
    assert small["VCpuInfo"]["DefaultVCpus"] == 1 and small["MemoryInfo"]["SizeInMiB"] == 256
    assert small["ProcessorInfo"]["SupportedArchitectures"] == ["x86_64"]
    arm = listed["c1.arm"]
    assert arm["VCpuInfo"]["DefaultVCpus"] == 2 and arm["MemoryInfo"]["SizeInMiB"] == 512
    assert arm["ProcessorInfo"]["SupportedArchitectures"] == ["arm64"]
    assert arm["BurstablePerformanceSupported"] is False  # what Terraform reads
    assert set(types(engine, InstanceType=["c1.arm"])) == {"c1.arm"}
    by_cpus = {"Filter": [{"Name": "vcpu-info.default-vcpus", "Value": ["2"]}]}
    assert set(types(engine, **by_cpus)) == {"c1.arm"}
    assert "m9.shared" not in types(engine)
    with pytest.raises(Ec2Error) as err:
        run(engine, "DescribeInstanceTypes", {"InstanceType": ["c5.large"]}, user="demo")
    assert err.value.code == "InvalidInstanceType" and "c5.large" in err.value.message
    # an instance of it is arm64 too, as EC2 names it (OpenNebula: aarch64), and filters so
    body = {"ImageId": "ami-00000000", "InstanceType": "c1.arm", "MinCount": 1, "MaxCount": 1}
    (inst,) = run(engine, "RunInstances", body, user="demo")["Instances"]
    try:
        assert inst["Architecture"] == "arm64"
        arm64 = {"Filter": [{"Name": "architecture", "Value": ["arm64"]}]}
        found = run(engine, "DescribeInstances", arm64, user="demo")["Reservations"]
        assert [i["InstanceId"] for r in found for i in r["Instances"]] == [inst["InstanceId"]]
    finally:
        run(engine, "TerminateInstances", {"InstanceId": [inst["InstanceId"]]}, user="demo")


def test_pages(sim: Sim, engine, templates) -> None:
    for n in range(5):
        sim.client.call(
            "demo:demo",
            "one.template.allocate",
            f'NAME="p{n}"\nEC2_INSTANCE_TYPE="p{n}.page"\nCPU="1"\nMEMORY="128"',
        )
    first = run(engine, "DescribeInstanceTypes", {"MaxResults": 5}, user="demo")
    rest = run(
        engine,
        "DescribeInstanceTypes",
        {"MaxResults": 5, "NextToken": first["NextToken"]},
        user="demo",
    )
    names = [t["InstanceType"] for t in first["InstanceTypes"] + rest["InstanceTypes"]]
    assert names == sorted(set(names)) and len(names) == 7 and rest.get("NextToken") is None


def test_only_what_runinstances_would_launch(sim: Sim, tmp_path) -> None:
    """A broken econe.conf type keeps its name (RunInstances uses the file, not a template of
    the same name) and is left out; so are types whose numbers oned would refuse."""
    (tmp_path / "broken.j2").write_text("NAME = x\nCPU = {{ nonexistent.attr }}\n")
    (tmp_path / "huge.j2").write_text("NAME = x\nCPU = 1\nMEMORY = 1e400\n")
    (tmp_path / "fine.j2").write_text("NAME = x\nVCPU = 4\nCPU = 1\nMEMORY = 2048\n")
    sim.client.call(
        "demo:demo", "one.template.allocate", 'NAME="b"\nEC2_INSTANCE_TYPE="b1.broken"\nCPU="8"'
    )
    sim.client.call(
        "demo:demo", "one.template.allocate", 'NAME="v"\nEC2_INSTANCE_TYPE="v1.half"\nVCPU="2.5"'
    )
    sim.client.call(  # no CPU: oned would refuse the VM
        "demo:demo", "one.template.allocate", 'NAME="c"\nEC2_INSTANCE_TYPE="c0.nocpu"\nMEMORY="64"'
    )
    for name, cpu in (("n1.nan", "nan"), ("n1.inf", "inf")):  # float() reads them
        sim.client.call(
            "demo:demo",
            "one.template.allocate",
            f'NAME="{name}"\nEC2_INSTANCE_TYPE="{name}"\nCPU="{cpu}"\nVCPU="2"\nMEMORY="512"',
        )
    conf = {n: {"template": f"{n.split('.')[0]}.j2"} for n in ("broken.x", "huge.x", "fine.x")}
    conf["b1.broken"] = {"template": "broken.j2"}
    engine = sim.engine(instance_types=conf, template_location=str(tmp_path))
    try:
        listed = types(engine)
        assert "fine.x" in listed and listed["fine.x"]["VCpuInfo"]["DefaultVCpus"] == 4
        assert not {
            "broken.x",
            "huge.x",
            "b1.broken",
            "v1.half",
            "n1.nan",
            "n1.inf",
            "c0.nocpu",
        } & set(listed)
    finally:
        engine.close()


def test_pages_stay_in_place_as_types_go(sim: Sim, engine, templates) -> None:
    ids = [
        sim.client.call(
            "demo:demo",
            "one.template.allocate",
            f'NAME="q{n}"\nEC2_INSTANCE_TYPE="q{n}.move"\nCPU="1"\nMEMORY="128"',
        )
        for n in range(6)
    ]
    first = run(engine, "DescribeInstanceTypes", {"MaxResults": 5}, user="demo")
    served = [t["InstanceType"] for t in first["InstanceTypes"]]
    sim.client.call("demo:demo", "one.template.delete", ids[0], False)  # one served already
    rest = run(
        engine,
        "DescribeInstanceTypes",
        {"MaxResults": 100, "NextToken": first["NextToken"]},
        user="demo",
    )
    after = [t["InstanceType"] for t in rest["InstanceTypes"]]
    assert after and min(after) > served[-1]  # nothing skipped, nothing again
    assert set(served) | set(after) >= {f"q{n}.move" for n in range(1, 6)}


def test_a_thousand_templates(sim: Sim, engine, templates) -> None:
    """A user with a thousand tagged templates gets every one of them listed, and none of
    another user's. (Each type's template is chosen in one pass over the pool: choosing it
    per type was quadratic, minutes that held the engine's threads for every user.)"""
    for n in range(1000):
        sim.client.call(
            "demo:demo",
            "one.template.allocate",
            f'NAME="many{n}"\nEC2_INSTANCE_TYPE="many.t{n}"\nCPU="1"\nMEMORY="64"',
        )
    body = {"Filter": [{"Name": "instance-type", "Value": ["many.*"]}]}
    listed = types(engine, **body)
    assert len(listed) == 1000 and "m9.shared" not in types(engine)


def test_a_type_that_cannot_launch_is_unsupported_and_nothing_is_made(sim: Sim, tmp_path) -> None:
    """A type the administrator broke (a template failing as it renders, even with a Python
    error; a missing file; MEMORY oned refuses; a network that is not there) is EC2's
    `Unsupported` (400, not retried), launches nothing, and leaves the other types listed."""
    (tmp_path / "zerodiv.j2").write_text(
        "CPU = 1\nMEMORY = {{ 128 // (launch_index - launch_index) }}\n"
    )
    (tmp_path / "keylen.j2").write_text("CPU = 1\nMEMORY = 64\nKEYLEN = {{ key_name | length }}\n")
    (tmp_path / "memfrac.j2").write_text("CPU = 0.5\nMEMORY = 512.7\n")
    (tmp_path / "fine.j2").write_text("CPU = 1\nMEMORY = 64\n")
    (tmp_path / "net.j2").write_text(
        "CPU = 1\nMEMORY = 64\nNIC = [ NETWORK_ID = {{ network_id }} ]\n"
    )
    conf = {n: {"template": f"{n}.j2"} for n in ("zerodiv", "keylen", "memfrac", "fine")}
    conf["missing"] = {"template": "nowhere.j2"}
    conf["net9"] = {"template": "net.j2", "network_id": 9}
    engine = sim.engine(instance_types=conf, template_location=str(tmp_path))
    try:
        listed = types(engine)
        assert "fine" in listed and not {"zerodiv", "keylen", "memfrac", "missing"} & set(listed)

        def alive() -> int:
            pool = etree.fromstring(sim.client.call("demo:demo", "one.vmpool.info", -3, -1, -1, -1))
            return sum(vm.findtext("STATE") != "6" for vm in pool.iterfind("VM"))

        before = alive()
        for name in ("zerodiv", "keylen", "memfrac", "missing", "net9"):
            with pytest.raises(Ec2Error) as exc:
                run(engine, "RunInstances", {"ImageId": AMI, "InstanceType": name}, user="demo")
            assert (exc.value.code, exc.value.status) == ("Unsupported", 400), name
            assert f"Instance type {name} cannot be launched here" in exc.value.message
        assert alive() == before  # nothing launched, nothing left half-made
        body = {"ImageId": AMI, "InstanceType": "keylen", "KeyName": "k"}  # a key: it renders
        run(engine, "CreateKeyPair", {"KeyName": "k", "KeyType": "ed25519"}, user="demo")
        (made,) = run(engine, "RunInstances", body, user="demo")["Instances"]
        run(engine, "TerminateInstances", {"InstanceId": [made["InstanceId"]]}, user="demo")
        run(engine, "DeleteKeyPair", {"KeyName": "k"}, user="demo")
    finally:
        engine.close()


def test_a_types_own_key_and_user_data_stay_unless_the_request_gives_them(
    sim: Sim, tmp_path
) -> None:
    """A type's CONTEXT may give the user's OpenNebula profile key ($USER[SSH_PUBLIC_KEY]) and
    preset user data: a launch without KeyName or UserData keeps them; one with them replaces
    only those. As a VM template type and as a file type."""
    users = etree.fromstring(sim.as_admin("one.userpool.info").encode())
    uid = int(users.xpath("USER[NAME='demo']/ID")[0].text)
    profile = "ssh-ed25519 AAAAC3Nz profile"
    sim.as_admin("one.user.update", uid, f'SSH_PUBLIC_KEY="{profile}"', 1)
    context = 'CONTEXT=[SSH_PUBLIC_KEY="$USER[SSH_PUBLIC_KEY]", USERDATA="preset", NETWORK="YES"]'
    sim.client.call(
        "demo:demo",
        "one.template.allocate",
        f'NAME="own"\nEC2_INSTANCE_TYPE="k1.own"\nCPU="1"\nMEMORY="64"\n{context}',
    )
    (tmp_path / "own.j2").write_text(f"NAME = x\nCPU = 1\nMEMORY = 64\n{context}\n")
    engine = sim.engine(
        instance_types={"k2.file": {"template": "own.j2"}}, template_location=str(tmp_path)
    )
    try:
        run(engine, "RegisterImage", {"ImageLocation": AMI}, user="demo")
        run(engine, "CreateKeyPair", {"KeyName": "given", "KeyType": "ed25519"}, user="demo")
        given = run(
            engine,
            "DescribeKeyPairs",
            {"KeyName": ["given"], "IncludePublicKey": True},
            user="demo",
        )["KeyPairs"][0]["PublicKey"]
        data = "I2Nsb3VkLWNvbmZpZwo="
        for kind in ("k1.own", "k2.file"):
            body = {"ImageId": AMI, "InstanceType": kind}
            for extra, key, user_data in (
                ({}, profile, "preset"),
                ({"KeyName": "given"}, given, "preset"),
                ({"UserData": data}, profile, data),
            ):
                (inst,) = run(engine, "RunInstances", {**body, **extra}, user="demo")["Instances"]
                ctx = sim.vm(int(inst["InstanceId"].split("-")[1])).find("TEMPLATE/CONTEXT")
                assert (kind, ctx.findtext("SSH_PUBLIC_KEY"), ctx.findtext("USERDATA")) == (
                    kind,
                    key,
                    user_data,
                )
                assert ctx.findtext("NETWORK") == "YES"
                run(engine, "TerminateInstances", {"InstanceId": [inst["InstanceId"]]}, user="demo")
    finally:
        engine.close()
