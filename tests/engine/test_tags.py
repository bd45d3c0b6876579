"""Tags through the engine against a live onesim (speed 0), as real users."""

from __future__ import annotations

import pytest
from lxml import etree

from econe.errors import Ec2Error
from tests.engine.conftest import AMI, Sim, code_of, run


@pytest.fixture(scope="module")
def oscar(sim: Sim) -> str:
    sim.as_admin("one.user.allocate", "oscar", "pw", "core", [1])
    return "oscar"


def tag(resources: list[str], user: str = "demo", **tags: str):
    return {"ResourceId": resources, "Tag": [{"Key": k, "Value": v} for k, v in tags.items()]}


def described(engine, user: str = "demo", **body) -> set[tuple[str, str, str, str]]:
    return {
        (t["ResourceId"], t["ResourceType"], t["Key"], t["Value"])
        for t in run(engine, "DescribeTags", body, user=user)["Tags"]
    }


def instance_tags(engine, iid: str, user: str = "demo") -> list[dict]:
    res = run(engine, "DescribeInstances", {"InstanceId": [iid]}, user=user)
    return res["Reservations"][0]["Instances"][0].get("Tags", [])


@pytest.fixture(scope="module")
def resources(engine) -> dict[str, str]:
    iid = run(engine, "RunInstances", {"ImageId": AMI}, user="demo")["Instances"][0]["InstanceId"]
    vol = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    snap = run(engine, "CreateSnapshot", {"VolumeId": vol}, user="demo")["SnapshotId"]
    return {"instance": iid, "volume": vol, "snapshot": snap, "image": AMI}


def test_create_describe_delete_on_every_kind(sim: Sim, engine, resources) -> None:
    ids = list(resources.values())
    assert run(engine, "CreateTags", tag(ids, Name="web", env="prod"), user="demo") == {
        "Return": True
    }
    everything = described(engine)
    for kind, rid in resources.items():
        assert (rid, kind, "Name", "web") in everything and (rid, kind, "env", "prod") in everything
    assert {"Key": "Name", "Value": "web"} in instance_tags(engine, resources["instance"])
    image = run(engine, "DescribeImages", {"ImageId": [AMI]}, user="demo")["Images"][0]
    assert {"Key": "env", "Value": "prod"} in image["Tags"]
    vol = run(engine, "DescribeVolumes", {"VolumeId": [resources["volume"]]}, user="demo")
    assert {"Key": "Name", "Value": "web"} in vol["Volumes"][0]["Tags"]
    snap = run(engine, "DescribeSnapshots", {"SnapshotId": [resources["snapshot"]]}, user="demo")
    assert {"Key": "Name", "Value": "web"} in snap["Snapshots"][0]["Tags"]
    # tag filters of the describe actions
    by_tag = {"Filter": [{"Name": "tag:env", "Value": ["prod"]}]}
    found = run(engine, "DescribeInstances", by_tag, user="demo")["Reservations"]
    assert resources["instance"] in {i["InstanceId"] for r in found for i in r["Instances"]}
    # DescribeTags filters
    only = described(engine, Filter=[{"Name": "resource-type", "Value": ["volume"]}])
    assert {t[0] for t in only} == {resources["volume"]}
    only = described(
        engine,
        Filter=[
            {"Name": "resource-id", "Value": [resources["instance"]]},
            {"Name": "key", "Value": ["N*"]},
        ],
    )
    assert only == {(resources["instance"], "instance", "Name", "web")}
    assert described(engine, Filter=[{"Name": "value", "Value": ["nothing"]}]) == set()
    assert code_of(
        run, engine, "DescribeTags", {"Filter": [{"Name": "bogus", "Value": ["x"]}]}, user="demo"
    ) == ("InvalidParameterValue")

    # overwrite a value, other tags kept; the rest of the template untouched
    run(engine, "CreateTags", tag([resources["instance"]], env="dev"), user="demo")
    assert sorted((t["Key"], t["Value"]) for t in instance_tags(engine, resources["instance"])) == [
        ("Name", "web"),
        ("env", "dev"),
    ]
    vm = sim.vm(int(resources["instance"].split("-")[1]))
    assert vm.findtext("USER_TEMPLATE/EC2_INSTANCE_TYPE") == "m1.small"
    assert len(vm.findall("USER_TEMPLATE/EC2_TAGS")) == 2

    # delete: by key, by key+value (no match keeps it), all
    run(
        engine,
        "DeleteTags",
        {"ResourceId": [resources["volume"]], "Tag": [{"Key": "env", "Value": "other"}]},
        user="demo",
    )
    assert (resources["volume"], "volume", "env", "prod") in described(engine)
    run(
        engine,
        "DeleteTags",
        {"ResourceId": [resources["volume"]], "Tag": [{"Key": "env"}]},
        user="demo",
    )
    assert (resources["volume"], "volume", "env", "prod") not in described(engine)
    assert (resources["volume"], "volume", "Name", "web") in described(engine)
    run(engine, "DeleteTags", {"ResourceId": ids}, user="demo")
    assert described(engine) == set()
    assert instance_tags(engine, resources["instance"]) == []
    img = etree.fromstring(sim.as_admin("one.image.info", 0).encode())
    assert img.findtext("TEMPLATE/EC2_AMI") == "YES"  # only EC2_TAGS changed


def test_errors(sim: Sim, engine, resources) -> None:
    for body, code in (
        (tag(["x-123"], a="b"), "InvalidID"),
        (tag(["i-zz"], a="b"), "InvalidID"),
        (tag(["i-99999"], a="b"), "InvalidInstanceID.NotFound"),
        (tag(["ami-99999"], a="b"), "InvalidAMIID.NotFound"),
        (tag(["vol-00000000"], a="b"), "InvalidVolume.NotFound"),  # an AMI, not a volume
        (tag([f"snap-{resources['volume'][4:]}"], a="b"), "InvalidSnapshot.NotFound"),
        (tag([resources["instance"]], **{"aws:x": "b"}), "InvalidParameterValue"),
        (tag([resources["instance"]], **{"k": "v" * 257}), "InvalidParameterValue"),
        (tag([resources["instance"]], **{"k" * 129: "v"}), "InvalidParameterValue"),
        ({"ResourceId": [resources["instance"]], "Tag": []}, "MissingParameter"),
    ):
        assert code_of(run, engine, "CreateTags", body, user="demo") == code, body
    # every id is checked before anything is written
    body = tag([resources["volume"], "i-99999"], partial="no")
    assert code_of(run, engine, "CreateTags", body, user="demo") == "InvalidInstanceID.NotFound"
    assert not any(t[2] == "partial" for t in described(engine))
    many = {f"k{i}": "v" for i in range(51)}
    assert code_of(run, engine, "CreateTags", tag([resources["volume"]], **many), user="demo") == (
        "TagLimitExceeded"
    )
    assert code_of(run, engine, "DeleteTags", {"ResourceId": ["foo-1"]}, user="demo") == "InvalidID"


def test_users_are_isolated(sim: Sim, engine, resources, oscar: str) -> None:
    run(engine, "CreateTags", tag(list(resources.values()), owner="demo"), user="demo")
    assert described(engine, user=oscar) == set()
    for prefix, rid in resources.items():
        body = tag([rid], owner="oscar")
        code = code_of(run, engine, "CreateTags", body, user=oscar)
        assert code.endswith(".NotFound"), (prefix, code)
        code = code_of(run, engine, "DeleteTags", {"ResourceId": [rid]}, user=oscar)
        assert code.endswith(".NotFound"), (prefix, code)
    assert {t[3] for t in described(engine)} == {"demo"}
    run(engine, "DeleteTags", {"ResourceId": list(resources.values())}, user="demo")


def test_a_volume_shared_in_opennebula_keeps_its_tags_to_its_owner(sim: Sim, engine, oscar) -> None:
    """Volumes are their owner's (every volume action says NotFound to others), so are their
    tags, even when OpenNebula lets the group use and manage the image."""
    vol = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    number = int(vol.split("-")[1])
    try:
        run(engine, "CreateTags", tag([vol], Name="data"), user="demo")
        sim.as_admin("one.image.chmod", number, -1, -1, -1, 1, 1, -1, -1, -1, -1)
        assert vol not in {t[0] for t in described(engine, user=oscar)}
        for action, body in (("CreateTags", tag([vol], Name="x")), ("DeleteTags", tag([vol]))):
            assert code_of(run, engine, action, body, user=oscar) == "InvalidVolume.NotFound"
        assert (vol, "volume", "Name", "data") in described(engine)
    finally:
        run(engine, "DeleteVolume", {"VolumeId": vol}, user="demo")


EVIL = ['x"\nMEMORY="1', "x]\nCPU=9\nY=[Z=1", '\\"', "$USER[TOKEN_PASSWORD]", "a\tb'c<d>&e", ""]


@pytest.mark.parametrize("evil", EVIL)
def test_tag_values_and_keys_cannot_break_out(sim: Sim, engine, resources, evil: str) -> None:
    iid, vol = resources["instance"], resources["volume"]
    key = evil or "empty"
    run(engine, "CreateTags", tag([iid, vol], **{key: evil, "plain": "1"}), user="demo")
    vm = sim.vm(int(iid.split("-")[1]))
    assert vm.findtext("TEMPLATE/MEMORY") == "256" and vm.find("USER_TEMPLATE/Y") is None
    assert {c.tag for c in vm.find("USER_TEMPLATE")} <= {
        "EC2_INSTANCE_TYPE",
        "IMAGE_ID",
        "EC2_RESERVATION_ID",
        "EC2_LAUNCH_INDEX",
        "EC2_TAGS",
    }
    assert sorted((t["Key"], t["Value"]) for t in instance_tags(engine, iid)) == sorted(
        [(key, evil), ("plain", "1")]
    )
    assert (vol, "volume", key, evil) in described(engine)
    run(engine, "DeleteTags", {"ResourceId": [iid, vol], "Tag": [{"Key": key}]}, user="demo")
    assert [t["Key"] for t in instance_tags(engine, iid)] == ["plain"]
    run(engine, "DeleteTags", {"ResourceId": [iid, vol]}, user="demo")


def test_describe_tags_pages(sim: Sim, engine, resources) -> None:
    run(
        engine,
        "CreateTags",
        tag([resources["volume"]], **{f"p{i}": str(i) for i in range(7)}),
        user="demo",
    )
    first = run(engine, "DescribeTags", {"MaxResults": 5}, user="demo")
    assert len(first["Tags"]) == 5 and first["NextToken"]
    rest = run(
        engine, "DescribeTags", {"MaxResults": 5, "NextToken": first["NextToken"]}, user="demo"
    )
    keys = [t["Key"] for t in first["Tags"] + rest["Tags"]]
    assert sorted(keys) == [f"p{i}" for i in range(7)] and "NextToken" not in rest
    run(engine, "DeleteTags", {"ResourceId": [resources["volume"]]}, user="demo")


def test_tag_specification_on_run_instances(sim: Sim, engine) -> None:
    spec = [{"ResourceType": "instance", "Tag": [{"Key": "Name", "Value": "spec"}]}]
    iid = run(engine, "RunInstances", {"ImageId": AMI, "TagSpecification": spec}, user="demo")[
        "Instances"
    ][0]["InstanceId"]
    assert (iid, "instance", "Name", "spec") in described(engine)
    run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
    # the same rules as every Create*: the limit, reserved keys in any spec, known types,
    # a key given twice; a refused launch makes nothing
    before = len(run(engine, "DescribeInstances", {}, user="demo")["Reservations"])
    many = [{"Key": f"k{i}", "Value": ""} for i in range(51)]
    for specs, code in (
        ([{"ResourceType": "instance", "Tag": many}], "TagLimitExceeded"),
        (
            [{"ResourceType": "volume", "Tag": [{"Key": "aws:x", "Value": ""}]}],
            "InvalidParameterValue",
        ),
        ([{"ResourceType": "image", "Tag": [{"Key": "a", "Value": ""}]}], "InvalidParameterValue"),
        # Terraform's volume_tags: there is no root volume to carry them, refused not dropped
        ([{"ResourceType": "volume", "Tag": [{"Key": "a", "Value": ""}]}], "UnsupportedOperation"),
        ([{"ResourceType": "instance", "Tag": TWICE}], "InvalidParameterValue"),
    ):
        body = {"ImageId": AMI, "TagSpecification": specs}
        assert code_of(run, engine, "RunInstances", body, user="demo") == code, specs
    assert len(run(engine, "DescribeInstances", {}, user="demo")["Reservations"]) == before


TWICE = [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]


def test_a_key_given_twice_is_refused_and_changes_nothing(sim: Sim, engine, resources) -> None:
    """EC2 answers InvalidParameterValue "Duplicate tag key 'a' specified." (econe kept the last
    value): in CreateTags, and in the TagSpecification of every Create* action, which then
    makes nothing. Keys differing in case are two keys."""
    vol = resources["volume"]
    run(engine, "CreateTags", tag([vol], a="kept"), user="demo")
    try:
        with pytest.raises(Ec2Error) as err:
            run(engine, "CreateTags", {"ResourceId": [vol], "Tag": TWICE}, user="demo")
        assert (err.value.code, err.value.message) == (
            "InvalidParameterValue",
            "Duplicate tag key 'a' specified.",
        )
        assert {t[2:] for t in described(engine) if t[0] == vol} == {("a", "kept")}
        volumes = len(run(engine, "DescribeVolumes", {}, user="demo")["Volumes"])
        groups = len(run(engine, "DescribeSecurityGroups", {}, user="demo")["SecurityGroups"])
        for action, body, kind in (
            ("CreateVolume", {"Size": 1}, "volume"),
            (
                "CreateSecurityGroup",
                {"GroupName": "twice", "GroupDescription": "x"},
                "security-group",
            ),
            ("CreateKeyPair", {"KeyName": "twice"}, "key-pair"),
        ):
            body = {**body, "TagSpecification": [{"ResourceType": kind, "Tag": TWICE}]}
            assert code_of(run, engine, action, body, user="demo") == "InvalidParameterValue"
        assert len(run(engine, "DescribeVolumes", {}, user="demo")["Volumes"]) == volumes
        assert len(run(engine, "DescribeSecurityGroups", {}, user="demo")["SecurityGroups"]) == (
            groups
        )
        keys = run(engine, "DescribeKeyPairs", {}, user="demo")["KeyPairs"]
        assert "twice" not in [k["KeyName"] for k in keys]
        run(engine, "CreateTags", tag([vol], A="upper"), user="demo")
        assert {t[2:] for t in described(engine) if t[0] == vol} == {("a", "kept"), ("A", "upper")}
    finally:
        run(engine, "DeleteTags", {"ResourceId": [vol]}, user="demo")


def test_aws_keys_cannot_be_deleted(sim: Sim, engine, resources) -> None:
    """DeleteTags refuses an `aws:` key as CreateTags does (same code and message)."""
    vol = resources["volume"]
    run(engine, "CreateTags", tag([vol], kept="yes"), user="demo")
    try:
        refused = []
        for action, body in (
            ("CreateTags", tag([vol], **{"aws:cloudformation:stack-name": "x"})),
            (
                "DeleteTags",
                {"ResourceId": [vol], "Tag": [{"Key": "aws:cloudformation:stack-name"}]},
            ),
            ("DeleteTags", {"ResourceId": [vol], "Tag": [{"Key": "kept"}, {"Key": "AWS:x"}]}),
        ):
            with pytest.raises(Ec2Error) as err:
                run(engine, action, body, user="demo")
            refused.append((err.value.code, err.value.message))
        assert refused[0] == refused[1], refused
        assert refused[2][0] == "InvalidParameterValue" and "AWS:x" in refused[2][1]
        assert all(m.endswith("Tag keys starting with 'aws:' are reserved.") for _, m in refused)
        assert {t[2:] for t in described(engine) if t[0] == vol} == {("kept", "yes")}
    finally:
        run(engine, "DeleteTags", {"ResourceId": [vol]}, user="demo")


def set_other_use(sim: Sim, image_id: int, bit: int) -> None:
    """The image's OTHER_U permission, set in onesim's store (onesim has no one.image.chmod)."""
    store = sim.server.sim.store
    image = store.get("image", image_id)
    image["perms"][6] = bit
    store.put("image", image)
    store.invalidate("image", image_id)


def test_a_refused_resource_leaves_the_others_untagged(sim: Sim, engine, oscar: str) -> None:
    """oscar may see demo's public AMI but not change it: tagging it with his own volume
    answers UnauthorizedOperation and leaves his volume as it was (all or nothing)."""
    image_id = int(AMI.split("-")[1])
    set_other_use(sim, image_id, 1)
    vol = run(engine, "CreateVolume", {"Size": 1}, user=oscar)["VolumeId"]
    try:
        run(engine, "CreateTags", tag([vol], kept="yes"), user=oscar)
        body = tag([vol, AMI], kept="no", extra="x")
        assert code_of(run, engine, "CreateTags", body, user=oscar) == "UnauthorizedOperation"
        assert {(t[2], t[3]) for t in described(engine, user=oscar)} == {("kept", "yes")}
        run(engine, "CreateTags", tag([AMI], team="demo"), user="demo")
        body = {"ResourceId": [vol, AMI]}
        assert code_of(run, engine, "DeleteTags", body, user=oscar) == "UnauthorizedOperation"
        # demo's AMI is visible to oscar, its tags are not (EC2 does not share them)
        assert {(t[2], t[3]) for t in described(engine, user=oscar)} == {("kept", "yes")}
        (seen,) = run(engine, "DescribeImages", {"ImageId": [AMI]}, user=oscar)["Images"]
        assert seen["Tags"] == []
        by_tag = {"Filter": [{"Name": "tag:team", "Value": ["demo"]}]}
        assert run(engine, "DescribeImages", by_tag, user=oscar)["Images"] == []
        assert [
            i["ImageId"] for i in run(engine, "DescribeImages", by_tag, user="demo")["Images"]
        ] == [AMI]
        # nor with MANAGE, which OpenNebula grants for changing the image: its tags stay demo's
        store = sim.server.sim.store
        image = store.get("image", image_id)
        image["perms"][7] = 1  # OTHER_M
        store.put("image", image)
        store.invalidate("image", image_id)
        for action, body in (
            ("CreateTags", tag([AMI], mine="x")),
            ("DeleteTags", {"ResourceId": [AMI]}),
        ):
            assert code_of(run, engine, action, body, user=oscar) == "UnauthorizedOperation"
        assert {(t[2], t[3]) for t in described(engine, user="demo")} >= {("team", "demo")}
    finally:
        run(engine, "DeleteTags", {"ResourceId": [AMI]}, user="demo")
        image = sim.server.sim.store.get("image", image_id)
        image["perms"][7] = 0
        sim.server.sim.store.put("image", image)
        set_other_use(sim, image_id, 0)
        run(engine, "DeleteVolume", {"VolumeId": vol}, user=oscar)


def test_what_describe_shows_is_what_can_be_tagged(sim: Sim, engine) -> None:
    """A disabled volume is listed (state error) by DescribeVolumes: it can be tagged and its
    tags are described. A deleting one is listed by nothing: NotFound."""
    vol = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    number = int(vol.split("-")[1])
    sim.as_admin("one.image.enable", number, False)
    try:
        (shown,) = run(engine, "DescribeVolumes", {"VolumeId": [vol]}, user="demo")["Volumes"]
        assert shown["State"] == "error"
        run(engine, "CreateTags", tag([vol], kept="yes"), user="demo")
        assert (vol, "volume", "kept", "yes") in described(engine)
    finally:
        sim.as_admin("one.image.enable", number, True)
    run(engine, "DeleteVolume", {"VolumeId": vol}, user="demo")
    assert code_of(run, engine, "CreateTags", tag([vol], late="no"), user="demo") == (
        "InvalidVolume.NotFound"
    )


def test_ec2_form_ids_are_not_found(sim: Sim, engine) -> None:
    for raw, code in (
        ("vol-0123456789abcdef0", "InvalidVolume.NotFound"),
        ("ami-0a1b2c3d", "InvalidAMIID.NotFound"),
        ("vol-xyz", "InvalidID"),
    ):
        assert code_of(run, engine, "CreateTags", tag([raw], k="v"), user="demo") == code, raw


def test_blanks_around_a_key_or_value_are_refused(sim: Sim, engine) -> None:
    """OpenNebula trims template values: "Name " would land as a second "Name" tag; and a
    carriage return would come back as a line feed."""
    vol = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    run(engine, "CreateTags", tag([vol], Name="a"), user="demo")
    for body in (
        tag([vol], **{"Name ": "b"}),
        tag([vol], Name=" b "),
        tag([vol], Name="b\r\nc"),
        tag([vol], **{"a\rb": "c"}),
    ):
        assert code_of(run, engine, "CreateTags", body, user="demo") == "InvalidParameterValue"
    assert {t[2:] for t in described(engine) if t[0] == vol} == {("Name", "a")}
    run(engine, "DeleteVolume", {"VolumeId": vol}, user="demo")


def test_concurrent_tag_changes_of_one_resource_all_count(sim: Sim, engine, resources) -> None:
    """One gateway process, ten requests at once, each adding its own tag (then removing
    it) to one resource: every acknowledged change is kept; a security group's rule change
    at the same time keeps the tags and the rule."""
    from concurrent.futures import ThreadPoolExecutor

    group = run(
        engine,
        "CreateSecurityGroup",
        {"GroupName": "tagged-at-once", "GroupDescription": "tags and rules at once"},
        user="demo",
    )["GroupId"]
    rule = {
        "GroupId": group,
        "IpPermissions": [
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
            }
        ],
    }
    for rid in (resources["volume"], resources["instance"], group):

        def add(n: int, rid: str = rid) -> dict:
            return run(engine, "CreateTags", tag([rid], **{f"par{n}": str(n)}), user="demo")

        with ThreadPoolExecutor(10) as pool:
            jobs = [pool.submit(add, n) for n in range(10)]
            if rid == group:
                jobs.append(
                    pool.submit(run, engine, "AuthorizeSecurityGroupIngress", rule, user="demo")
                )
            assert all(j.result() for j in jobs)
        keys = {k for r, _, k, _ in described(engine) if r == rid}
        assert {f"par{n}" for n in range(10)} <= keys, rid

        def remove(n: int, rid: str = rid) -> dict:
            body = {"ResourceId": [rid], "Tag": [{"Key": f"par{n}"}]}
            return run(engine, "DeleteTags", body, user="demo")

        with ThreadPoolExecutor(10) as pool:
            assert all(pool.map(remove, range(10)))
        assert not {k for r, _, k, _ in described(engine) if r == rid} & {
            f"par{n}" for n in range(10)
        }, rid
    (sg,) = run(engine, "DescribeSecurityGroups", {"GroupId": [group]}, user="demo")[
        "SecurityGroups"
    ]
    assert [p["FromPort"] for p in sg["IpPermissions"]] == [22]
    run(engine, "DeleteSecurityGroup", {"GroupId": group}, user="demo")


def test_a_shared_security_group_keeps_its_tags_to_its_owner(sim: Sim, engine, oscar) -> None:
    """A group shared in OpenNebula (USE for others) is listed for oscar without its tags, as
    an AMI or snapshot is: DescribeSecurityGroups, its tag filters and DescribeTags; and
    oscar cannot change them, even where OpenNebula grants him MANAGE."""
    spec = [{"ResourceType": "security-group", "Tag": [{"Key": "team", "Value": "demo"}]}]
    body = {"GroupName": "shared-tags", "GroupDescription": "x", "TagSpecification": spec}
    gid = run(engine, "CreateSecurityGroup", body, user="demo")["GroupId"]
    number = int(gid.split("-")[1])
    by_tag = {"Filter": [{"Name": "tag:team", "Value": ["demo"]}]}
    try:
        sim.as_admin("one.secgroup.chmod", number, -1, -1, -1, -1, -1, -1, 1, 0, -1)  # OTHER_U
        (seen,) = run(engine, "DescribeSecurityGroups", {"GroupId": [gid]}, user=oscar)[
            "SecurityGroups"
        ]
        assert seen["Tags"] == []
        listed = run(engine, "DescribeSecurityGroups", {}, user=oscar)["SecurityGroups"]
        assert [g["Tags"] for g in listed if g["GroupId"] == gid] == [[]]
        assert run(engine, "DescribeSecurityGroups", by_tag, user=oscar)["SecurityGroups"] == []
        assert gid not in {t[0] for t in described(engine, user=oscar)}
        # its owner sees them as before
        found = run(engine, "DescribeSecurityGroups", by_tag, user="demo")["SecurityGroups"]
        assert [g["GroupId"] for g in found] == [gid]
        assert (gid, "security-group", "team", "demo") in described(engine)
        for other_manage in (0, 1):
            sim.as_admin("one.secgroup.chmod", number, -1, -1, -1, -1, -1, -1, 1, other_manage, -1)
            for action, change in (
                ("CreateTags", tag([gid], mine="x")),
                ("DeleteTags", {"ResourceId": [gid]}),
            ):
                assert code_of(run, engine, action, change, user=oscar) == (
                    "UnauthorizedOperation"
                ), (action, other_manage)
        assert {t[2:] for t in described(engine) if t[0] == gid} == {("team", "demo")}
    finally:
        run(engine, "DeleteSecurityGroup", {"GroupId": gid}, user="demo")


def test_tags_the_ruby_econe_wrote_read_right_and_survive_a_change(
    sim: Sim, engine, resources
) -> None:
    """The Ruby econe kept all of a resource's tags in one vector, a child per tag named by its
    key: a tag named `key` among them is a tag, not econe's KEY (which read it as one tag
    `prod` and lost `owner`, then wrote that back)."""
    iid = resources["instance"]
    vid = int(iid.split("-")[1])
    group = run(
        engine, "CreateSecurityGroup", {"GroupName": "ruby-tags", "GroupDescription": "x"}, "demo"
    )["GroupId"]
    sid = int(group.split("-")[1])
    ruby = 'EC2_TAGS=[KEY="prod", OWNER="bob"]'
    both = {("key", "prod"), ("owner", "bob")}
    try:
        sim.as_admin("one.vm.update", vid, ruby, 1)
        sim.as_admin("one.secgroup.update", sid, ruby, 1)
        assert {(t["Key"], t["Value"]) for t in instance_tags(engine, iid)} == both
        (sg,) = run(engine, "DescribeSecurityGroups", {"GroupId": [group]}, user="demo")[
            "SecurityGroups"
        ]
        assert {(t["Key"], t["Value"]) for t in sg["Tags"]} == both
        for rid in (iid, group):
            assert {t[2:] for t in described(engine) if t[0] == rid} == both
        by_tag = {"Filter": [{"Name": "tag:owner", "Value": ["bob"]}]}
        found = run(engine, "DescribeInstances", by_tag, user="demo")["Reservations"]
        assert [i["InstanceId"] for r in found for i in r["Instances"]] == [iid]
        # a change rewrites them in econe's form, all of them
        run(engine, "CreateTags", tag([iid, group], env="dev"), user="demo")
        run(engine, "DeleteTags", {"ResourceId": [iid, group], "Tag": [{"Key": "owner"}]}, "demo")
        for rid in (iid, group):
            assert {t[2:] for t in described(engine) if t[0] == rid} == {
                ("key", "prod"),
                ("env", "dev"),
            }
        assert instance_tags(engine, iid) == [
            {"Key": "key", "Value": "prod"},
            {"Key": "env", "Value": "dev"},
        ]
        # the one set both could have written (the Ruby econe's `key` and `value` alone) reads
        # as econe's own tag, and a change keeps that vector as it was
        sim.as_admin("one.vm.update", vid, 'EC2_TAGS=[KEY="prod", VALUE="x"]', 1)
        run(engine, "CreateTags", tag([iid], env="dev"), user="demo")
        kept = [
            {c.tag: c.text for c in vec} for vec in sim.vm(vid).iterfind("USER_TEMPLATE/EC2_TAGS")
        ]
        assert kept == [{"KEY": "prod", "VALUE": "x"}, {"KEY": "env", "VALUE": "dev"}]
    finally:
        run(engine, "DeleteTags", {"ResourceId": [iid]}, user="demo")
        run(engine, "DeleteSecurityGroup", {"GroupId": group}, user="demo")


def test_an_id_named_many_times_is_looked_up_once(sim: Sim, resources) -> None:
    """1000 copies of one id (in both its forms) cost one lookup, not 1000 oned calls: a way
    for one user to keep the workers from everyone else."""
    from econe.engine import Engine
    from econe.one.session import ServerCipherSessions
    from tests.engine.test_event_loop import Counting

    client = Counting(sim.url, timeout=10)
    counted = Engine(sim.config(), client, ServerCipherSessions(sim.ec2_auth))
    try:
        iid = resources["instance"]
        short = "i-" + str(int(iid.split("-")[1], 16))
        for action in ("CreateTags", "DeleteTags"):
            client.sent.clear()
            body = {"ResourceId": [iid, short] * 500, "Tag": [{"Key": "many", "Value": "1"}]}
            run(counted, action, body, user="demo")
            assert client.sent.count("one.vm.info") <= 2, (action, len(client.sent))
    finally:
        counted.close()


NO_TYPE = [{"Tag": [{"Key": "a", "Value": "b"}]}]  # EC2 assumes no resource type


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("RunInstances", {"ImageId": AMI}),
        ("CreateVolume", {"Size": 1, "AvailabilityZone": "opennebula"}),
        ("CreateSecurityGroup", {"GroupName": "no-type", "GroupDescription": "x"}),
        ("CreateKeyPair", {"KeyName": "no-type"}),
        ("RegisterImage", {"ImageLocation": AMI}),
    ],
)
def test_a_tag_specification_without_resource_type_is_refused(
    sim: Sim, engine, action: str, body: dict
) -> None:
    with pytest.raises(Ec2Error) as err:
        run(engine, action, {**body, "TagSpecification": NO_TYPE}, user="demo")
    assert err.value.code == "InvalidParameterValue"
    assert err.value.message == "Tag specification resource type must have a value"
