"""Security groups end to end: boto3 against `econe-server run --simulator`, checked against
what OpenNebula (onesim) then holds."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import xmlrpc.client
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import wait_state
from tests.e2e.test_resources import vm_xml, wait_for


def error_of(excinfo) -> tuple[str, int, str]:
    err = excinfo.value.response
    return (
        err["Error"]["Code"],
        err["ResponseMetadata"]["HTTPStatusCode"],
        err["Error"]["Message"],
    )


def secgroup_xml(demo, group_id: str) -> str:
    proxy = xmlrpc.client.ServerProxy(demo.sim_url)
    ok, body, *_ = proxy.one.secgroup.info(demo.one_auth(), int(group_id.split("-")[1]))
    assert ok, body
    return body


@pytest.fixture(scope="module")
def ami(ec2) -> str:
    return ec2.describe_images()["Images"][0]["ImageId"]


def _group(ec2, group_id: str) -> dict:
    return ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]


def _ingress(ec2, group_id: str) -> dict:
    """The group's ingress permissions by (protocol, from port)."""
    return {(p["IpProtocol"], p.get("FromPort")): p for p in _group(ec2, group_id)["IpPermissions"]}


def _tcp(first: int, last: int, *cidrs: str, **range_extra: str) -> dict:
    """One tcp permission over these CIDR blocks (extra members go in every range)."""
    return {
        "IpProtocol": "tcp",
        "FromPort": first,
        "ToPort": last,
        "IpRanges": [{"CidrIp": c, **range_extra} for c in cidrs],
    }


def test_default_group_is_there_and_cannot_be_deleted(ec2):
    groups = {g["GroupName"]: g for g in ec2.describe_security_groups()["SecurityGroups"]}
    default = groups["default"]
    assert default["GroupId"] == "sg-00000000" and default["OwnerId"] == "oneadmin"
    everything = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    for key in ("IpPermissions", "IpPermissionsEgress"):
        assert [
            {"IpProtocol": p["IpProtocol"], "IpRanges": p["IpRanges"]} for p in default[key]
        ] == [everything]
        assert default[key][0]["Ipv6Ranges"] == [{"CidrIpv6": "::/0"}]  # OpenNebula's "any"
    for kwargs in ({"GroupId": "sg-00000000"}, {"GroupName": "default"}):
        with pytest.raises(ClientError) as exc:
            ec2.delete_security_group(**kwargs)
        assert error_of(exc)[:2] == ("CannotDelete", 400)


def test_create_authorize_revoke_delete(ec2, demo):
    created = ec2.create_security_group(
        GroupName="e2e-web",
        Description="web servers",
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": [{"Key": "env", "Value": "test"}]}
        ],
    )
    gid = created["GroupId"]
    assert created["Tags"] == [{"Key": "env", "Value": "test"}]
    group = _group(ec2, gid)
    assert (group["GroupName"], group["Description"], group["OwnerId"]) == (
        "e2e-web",
        "web servers",
        "demo",
    )
    assert group["Tags"] == [{"Key": "env", "Value": "test"}]
    assert group["IpPermissions"] == []
    [egress] = group["IpPermissionsEgress"]  # as an EC2 group starts
    assert (egress["IpProtocol"], egress["IpRanges"], egress["Ipv6Ranges"]) == (
        "-1",
        [{"CidrIp": "0.0.0.0/0"}],
        [],
    )

    ec2.authorize_security_group_ingress(
        GroupId=gid,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [
                    {"CidrIp": "10.0.0.0/24", "Description": "ssh from the LAN"},
                    {"CidrIp": "192.0.2.8/29"},
                ],
            },
            {
                "IpProtocol": "udp",
                "FromPort": 5000,
                "ToPort": 5010,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
        ],
    )
    # the old single-permission form, by name
    ec2.authorize_security_group_ingress(
        GroupName="e2e-web", IpProtocol="icmp", FromPort=8, ToPort=-1, CidrIp="198.51.100.0/24"
    )
    perms = {
        (p["IpProtocol"], p.get("FromPort"), p.get("ToPort")): p
        for p in _group(ec2, gid)["IpPermissions"]
    }
    assert perms[("tcp", 22, 22)]["IpRanges"] == [
        {"CidrIp": "10.0.0.0/24", "Description": "ssh from the LAN"},
        {"CidrIp": "192.0.2.8/29"},
    ]
    assert perms[("udp", 5000, 5010)]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]
    assert perms[("icmp", 8, -1)]["IpRanges"] == [{"CidrIp": "198.51.100.0/24"}]
    # OpenNebula holds them as its own rules
    xml = secgroup_xml(demo, gid)
    assert "<RANGE><![CDATA[22]]></RANGE>" in xml and "<SIZE><![CDATA[256]]></SIZE>" in xml
    assert "<RANGE><![CDATA[5000:5010]]></RANGE>" in xml and "<ICMP_TYPE><![CDATA[8]]>" in xml

    # a rule that is there already: nothing changes
    with pytest.raises(ClientError) as exc:
        ec2.authorize_security_group_ingress(
            GroupId=gid,
            IpPermissions=[
                _tcp(80, 80, "0.0.0.0/0"),
                {
                    "IpProtocol": "6",
                    "FromPort": 22,
                    "ToPort": 22,
                    "IpRanges": [{"CidrIp": "10.0.0.0/24"}],
                },
            ],
        )
    code, status, message = error_of(exc)
    assert (code, status) == ("InvalidPermission.Duplicate", 400) and "10.0.0.0/24" in message
    assert ("tcp", 80, 80) not in {
        (p["IpProtocol"], p.get("FromPort"), p.get("ToPort"))
        for p in _group(ec2, gid)["IpPermissions"]
    }

    # filters see the permissions
    found = ec2.describe_security_groups(
        Filters=[
            {"Name": "ip-permission.from-port", "Values": ["22"]},
            {"Name": "ip-permission.cidr", "Values": ["10.0.0.0/24"]},
        ]
    )["SecurityGroups"]
    assert [g["GroupId"] for g in found] == [gid]
    assert (
        ec2.describe_security_groups(Filters=[{"Name": "tag:env", "Values": ["test"]}])[
            "SecurityGroups"
        ][0]["GroupId"]
        == gid
    )

    # revoking one range of a permission keeps the other
    ec2.revoke_security_group_ingress(
        GroupId=gid,
        IpPermissions=[_tcp(22, 22, "192.0.2.8/29")],
    )
    perms = _ingress(ec2, gid)
    assert perms[("tcp", 22)]["IpRanges"] == [
        {"CidrIp": "10.0.0.0/24", "Description": "ssh from the LAN"}
    ]
    with pytest.raises(ClientError) as exc:
        ec2.revoke_security_group_ingress(
            GroupId=gid,
            IpPermissions=[_tcp(22, 22, "192.0.2.8/29")],
        )
    assert error_of(exc)[:2] == ("InvalidPermission.NotFound", 400)
    # the egress rule every group starts with can go (as Terraform revokes it), and come back
    v4 = {"IpProtocol": "-1", "FromPort": 0, "ToPort": 0, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    v6 = {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}
    ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=[v4])
    assert _group(ec2, gid)["IpPermissionsEgress"] == []
    assert "<RULE_TYPE><![CDATA[OUTBOUND]]>" not in secgroup_xml(demo, gid)
    ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=[{**v4, **v6}])
    [egress] = _group(ec2, gid)["IpPermissionsEgress"]
    assert (egress["IpRanges"], egress["Ipv6Ranges"]) == (
        [{"CidrIp": "0.0.0.0/0"}],
        [{"CidrIpv6": "::/0"}],
    )
    assert secgroup_xml(demo, gid).count("<RULE_TYPE><![CDATA[OUTBOUND]]>") == 1  # one rule
    # ::/0 cannot stay alone: OpenNebula's rule for any address would match IPv4 too
    before = secgroup_xml(demo, gid)
    with pytest.raises(ClientError) as exc:
        ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=[v4])
    assert error_of(exc)[:2] == ("UnsupportedOperation", 400)
    assert secgroup_xml(demo, gid) == before
    ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=[v6])
    [egress] = _group(ec2, gid)["IpPermissionsEgress"]
    assert (egress["IpRanges"], egress["Ipv6Ranges"]) == ([{"CidrIp": "0.0.0.0/0"}], [])
    assert _group(ec2, gid)["Tags"] == [{"Key": "env", "Value": "test"}]  # the rest is kept

    with pytest.raises(ClientError) as exc:
        ec2.create_security_group(GroupName="e2e-web", Description="again")
    assert error_of(exc)[:2] == ("InvalidGroup.Duplicate", 400)
    assert ec2.delete_security_group(GroupId=gid)["Return"] is True
    with pytest.raises(ClientError) as exc:
        _group(ec2, gid)
    assert error_of(exc)[:2] == ("InvalidGroup.NotFound", 400)


@pytest.mark.parametrize(
    ("perm", "code", "names"),
    [
        (
            {"IpProtocol": "gre", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
            "InvalidParameterValue",
            "IpProtocol",
        ),
        (
            {"IpProtocol": "tcp", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
            "InvalidParameterValue",
            "FromPort",
        ),
        (
            _tcp(90, 80, "10.0.0.0/8"),
            "InvalidParameterValue",
            "FromPort",
        ),
        (
            _tcp(1, 2, "10.0.0.1/8"),
            "InvalidParameterValue",
            "CidrIp",
        ),
        (
            {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2, "IpRanges": [{"CidrIp": 'x]"\n'}]},
            "InvalidParameterValue",
            "CidrIp",
        ),
        (
            {
                "IpProtocol": "icmp",
                "FromPort": 3,
                "ToPort": 4,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
            },
            "UnsupportedOperation",
            "ToPort",
        ),
        (
            {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
            "UnsupportedOperation",
            "::/0",
        ),
        (
            {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-00000000"}]},
            "UnsupportedOperation",
            "Groups",
        ),
        (
            {"IpProtocol": "-1", "PrefixListIds": [{"PrefixListId": "pl-1"}]},
            "UnsupportedOperation",
            "PrefixListIds",
        ),
        ({"IpProtocol": "-1"}, "MissingParameter", "IpRanges"),
        # forms Python reads but OpenNebula would not, or that would not read back
        *(
            ({"IpProtocol": "-1", "IpRanges": [{"CidrIp": c}]}, "InvalidParameterValue", "CidrIp")
            for c in (
                "0.0.0.0/0.0.0.0",
                "1.0.0.0/255.0.0.0",
                "1.0.0.0/08",
                "10.0.0.0",
                "١٠.0.0.0/8",
            )
        ),
        (
            {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "fe80::1%eth0/128"}]},
            "InvalidParameterValue",
            "CidrIpv6",
        ),
        # EC2's rule for a rule's description: up to 255 of a-zA-Z0-9, space and ._-:/()#,@[]+=&;{}!$*
        *(
            (_tcp(1, 2, "10.0.0.0/8", Description=d), "InvalidParameterValue", "Description")
            for d in ("e" * 256, "two\nlines", "caf\u00e9", "<b>", " padded ")
        ),
    ],
)
def test_bad_permissions_are_refused_by_name(ec2, demo, perm, code, names):
    gid = ec2.create_security_group(GroupName="e2e-bad", Description="x")["GroupId"]
    try:
        before = secgroup_xml(demo, gid)
        with pytest.raises(ClientError) as exc:
            ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[perm])
        got, status, message = error_of(exc)
        assert (got, status) == (code, 400) and names in message, message
        assert secgroup_xml(demo, gid) == before
    finally:
        ec2.delete_security_group(GroupId=gid)


def test_a_permission_given_twice_in_one_request_is_refused(ec2, demo):
    """As EC2: InvalidParameterValue, and nothing changes (it was merged into one rule)."""
    gid = ec2.create_security_group(GroupName="e2e-twice", Description="x")["GroupId"]
    try:
        ssh = _tcp(22, 22, "10.0.0.0/8")
        before = secgroup_xml(demo, gid)
        for perms in (
            [_tcp(22, 22, "10.0.0.0/8", "10.0.0.0/8")],
            [ssh, {**ssh, "IpProtocol": "6"}],  # tcp by its number: the same permission
        ):
            with pytest.raises(ClientError) as exc:
                ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=perms)
            code, status, message = error_of(exc)
            assert (code, status) == ("InvalidParameterValue", 400), message
            assert "The same permission must not appear multiple times" in message
            assert secgroup_xml(demo, gid) == before
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[ssh])
        with pytest.raises(ClientError) as exc:
            ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[ssh, ssh])
        assert error_of(exc)[:2] == ("InvalidParameterValue", 400)
        assert _ingress(ec2, gid)[("tcp", 22)]["IpRanges"] == [{"CidrIp": "10.0.0.0/8"}]
    finally:
        ec2.delete_security_group(GroupId=gid)


def test_bad_group_names_and_ids(ec2):
    # OpenNebula would trim blanks and turn CR into LF: refused, not stored otherwise than sent
    # OpenNebula counts a name's bytes: 65 "é" are 130 (UTF-8), more than its 128
    for name in ("default", "sg-123", "a/b", "x" * 129, "é" * 65, " e2e-lead", "e2e-trail "):
        with pytest.raises(ClientError) as exc:
            ec2.create_security_group(GroupName=name, Description="x")
        assert error_of(exc)[:2] == ("InvalidParameterValue", 400), name
        assert "GroupName" in error_of(exc)[2]
    longest = "é" * 64
    gid = ec2.create_security_group(GroupName=longest, Description="x")["GroupId"]
    assert _group(ec2, gid)["GroupName"] == longest
    ec2.delete_security_group(GroupId=gid)
    for description in ("  padded  ", " ", "a\rb"):
        with pytest.raises(ClientError) as exc:
            ec2.create_security_group(GroupName="e2e-desc", Description=description)
        assert error_of(exc)[:2] == ("InvalidParameterValue", 400), description
        assert "GroupDescription" in error_of(exc)[2]
    names = [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]]
    assert not {"e2e-lead", "e2e-trail", "e2e-desc"} & set(names)
    with pytest.raises(ClientError) as exc:
        ec2.create_security_group(GroupName="e2e-v", Description="x", VpcId="vpc-1")
    assert error_of(exc)[:2] == ("UnsupportedOperation", 400)
    for kwargs, code in (
        ({"GroupIds": ["sg-zz"]}, "InvalidGroupId.Malformed"),
        ({"GroupIds": ["sg-00009999"]}, "InvalidGroup.NotFound"),
        ({"GroupNames": ["e2e-none"]}, "InvalidGroup.NotFound"),
    ):
        with pytest.raises(ClientError) as exc:
            ec2.describe_security_groups(**kwargs)
        assert error_of(exc)[:2] == (code, 400), kwargs


def test_instances_in_groups(ec2, demo, ami):
    gid = ec2.create_security_group(GroupName="e2e-app", Description="app")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=gid,
        IpPermissions=[_tcp(8080, 8080, "10.0.0.0/8")],
    )
    by_id = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, SecurityGroupIds=[gid])
    by_name = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, SecurityGroups=["e2e-app"])
    ids = [by_id["Instances"][0]["InstanceId"], by_name["Instances"][0]["InstanceId"]]
    both = [
        {"GroupId": "sg-00000000", "GroupName": "default"},
        {"GroupId": gid, "GroupName": "e2e-app"},
    ]
    assert by_id["Instances"][0]["SecurityGroups"] == both  # the network's default group too
    assert by_name["Instances"][0]["SecurityGroups"] == both
    # OpenNebula gave the VM the group's rules
    vm = vm_xml(demo, ids[0])
    assert vm.findtext("TEMPLATE/NIC/SECURITY_GROUPS") == f"0,{int(gid[3:])}"
    assert "8080" in [r.findtext("RANGE") for r in vm.iterfind("TEMPLATE/SECURITY_GROUP_RULE")]
    found = ec2.describe_instances(Filters=[{"Name": "instance.group-id", "Values": [gid]}])
    assert sorted(i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]) == sorted(
        ids
    )
    for dry_run in (True, False):  # a dry run says so too
        with pytest.raises(ClientError) as exc:
            ec2.delete_security_group(GroupId=gid, DryRun=dry_run)
        assert error_of(exc)[:2] == ("DependencyViolation", 400)
    # unknown groups: nothing is launched
    before = len(ec2.describe_instances()["Reservations"])
    for kwargs, code in (
        ({"SecurityGroups": ["e2e-none"]}, "InvalidGroup.NotFound"),
        ({"SecurityGroupIds": ["sg-00009999"]}, "InvalidGroup.NotFound"),
        ({"SecurityGroupIds": ["sg-x"]}, "InvalidGroupId.Malformed"),
    ):
        with pytest.raises(ClientError) as exc:
            ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, **kwargs)
        assert error_of(exc)[:2] == (code, 400), kwargs
    assert len(ec2.describe_instances()["Reservations"]) == before
    ec2.terminate_instances(InstanceIds=ids)
    wait_state(ec2, ids, "terminated")
    wait_for(lambda: "<UPDATED_VMS></UPDATED_VMS>" in secgroup_xml(demo, gid), what="VMs gone")
    assert ec2.delete_security_group(GroupId=gid)["Return"] is True


def test_users_do_not_see_or_use_each_others_groups(ec2, demo, ami):
    demo.add_user("sg-eve", "evepw")
    eve = demo.client(user="sg-eve", secret=hashlib.sha256(b"evepw").hexdigest())
    gid = ec2.create_security_group(GroupName="e2e-private", Description="mine")["GroupId"]
    try:
        assert gid not in [g["GroupId"] for g in eve.describe_security_groups()["SecurityGroups"]]
        for call, kwargs in (
            (eve.describe_security_groups, {"GroupIds": [gid]}),
            (eve.describe_security_groups, {"GroupNames": ["e2e-private"]}),
            (eve.delete_security_group, {"GroupId": gid}),
            (
                eve.authorize_security_group_ingress,
                {"GroupId": gid, "IpProtocol": "-1", "CidrIp": "0.0.0.0/0"},
            ),
            (
                eve.run_instances,
                {"ImageId": ami, "MinCount": 1, "MaxCount": 1, "SecurityGroupIds": [gid]},
            ),
        ):
            with pytest.raises(ClientError) as exc:
                call(**kwargs)
            assert error_of(exc)[0] in ("InvalidGroup.NotFound", "InvalidAMIID.NotFound"), kwargs
        # eve's group of the same name is hers alone
        mine = eve.create_security_group(GroupName="e2e-private", Description="eve's")["GroupId"]
        assert mine != gid
        assert _group(ec2, gid)["Description"] == "mine"
        eve.delete_security_group(GroupName="e2e-private")
        assert _group(ec2, gid)["Description"] == "mine"
    finally:
        ec2.delete_security_group(GroupId=gid)


def test_dry_run_changes_nothing(ec2, demo):
    gid = ec2.create_security_group(GroupName="e2e-dry", Description="x")["GroupId"]
    try:
        before = secgroup_xml(demo, gid)
        for call in (ec2.authorize_security_group_ingress, ec2.revoke_security_group_egress):
            with pytest.raises(ClientError) as exc:
                call(
                    GroupId=gid,
                    DryRun=True,
                    IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
                )
            assert error_of(exc)[:2] == ("DryRunOperation", 412)
        with pytest.raises(ClientError) as exc:
            ec2.delete_security_group(GroupId=gid, DryRun=True)
        assert error_of(exc)[:2] == ("DryRunOperation", 412)
        with pytest.raises(ClientError) as exc:
            ec2.create_security_group(GroupName="e2e-dry2", Description="x", DryRun=True)
        assert error_of(exc)[:2] == ("DryRunOperation", 412)
        with pytest.raises(ClientError) as exc:  # a name of one's own, as the real request
            ec2.create_security_group(GroupName="e2e-dry", Description="x", DryRun=True)
        assert error_of(exc)[:2] == ("InvalidGroup.Duplicate", 400)
        assert secgroup_xml(demo, gid) == before
        assert "e2e-dry2" not in [
            g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]
        ]
    finally:
        ec2.delete_security_group(GroupId=gid)


def test_aws_cli(demo):
    """The AWS CLI's own shorthand (`--protocol tcp --port 22-23 --cidr …`) works as boto3."""
    bin_dir = Path(sys.executable).parent
    env = {
        "PATH": str(bin_dir),
        "HOME": str(demo.state_dir),
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": hashlib.sha256(b"demo").hexdigest(),
        "AWS_DEFAULT_REGION": "opennebula",
    }

    def aws(*words: str) -> dict:
        cmd = [str(bin_dir / "aws"), "--endpoint-url", demo.url, "--output", "json", "ec2", *words]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    gid = aws("create-security-group", "--group-name", "e2e-cli", "--description", "cli")["GroupId"]
    aws(
        "authorize-security-group-ingress",
        "--group-id",
        gid,
        "--protocol",
        "tcp",
        "--port",
        "22-23",
        "--cidr",
        "10.1.0.0/16",
    )
    group = aws("describe-security-groups", "--group-names", "e2e-cli")["SecurityGroups"][0]
    assert [
        (p["IpProtocol"], p["FromPort"], p["ToPort"], p["IpRanges"]) for p in group["IpPermissions"]
    ] == [("tcp", 22, 23, [{"CidrIp": "10.1.0.0/16"}])]
    aws("delete-security-group", "--group-id", gid)


def test_tags_on_groups(ec2, demo):
    gid = ec2.create_security_group(GroupName="e2e-tagged", Description="x")["GroupId"]
    try:
        ec2.create_tags(
            Resources=[gid], Tags=[{"Key": "Name", "Value": "web"}, {"Key": "tier", "Value": "1"}]
        )
        assert sorted((t["Key"], t["Value"]) for t in _group(ec2, gid)["Tags"]) == [
            ("Name", "web"),
            ("tier", "1"),
        ]
        found = ec2.describe_tags(
            Filters=[{"Name": "resource-type", "Values": ["security-group"]}]
        )["Tags"]
        assert {(t["ResourceId"], t["Key"]) for t in found} >= {(gid, "Name"), (gid, "tier")}
        ec2.delete_tags(Resources=[gid], Tags=[{"Key": "tier"}])
        assert _group(ec2, gid)["Tags"] == [{"Key": "Name", "Value": "web"}]
        assert "<RULE>" in secgroup_xml(demo, gid)  # the rules stay
        # the default group is OpenNebula's: a user may not change it
        with pytest.raises(ClientError) as exc:
            ec2.create_tags(Resources=["sg-00000000"], Tags=[{"Key": "a", "Value": "b"}])
        assert error_of(exc)[:2] == ("UnauthorizedOperation", 403)
        with pytest.raises(ClientError) as exc:
            ec2.create_tags(Resources=["sg-00009999"], Tags=[{"Key": "a", "Value": "b"}])
        assert error_of(exc)[:2] == ("InvalidGroup.NotFound", 400)
    finally:
        ec2.delete_security_group(GroupId=gid)


def test_changing_an_instances_groups(ec2, demo, ami):
    """Terraform's `vpc_security_group_ids` change: ModifyInstanceAttribute Groups, running."""
    a = ec2.create_security_group(GroupName="e2e-a", Description="a")["GroupId"]
    b = ec2.create_security_group(GroupName="e2e-b", Description="b")["GroupId"]
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, SecurityGroupIds=[a])["Instances"][
        0
    ]["InstanceId"]
    wait_state(ec2, [iid], "running")

    def groups() -> list[str]:
        attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="groupSet")
        return [g["GroupId"] for g in attr["Groups"]]

    assert groups() == ["sg-00000000", a]
    ec2.modify_instance_attribute(InstanceId=iid, Groups=[b])
    assert groups() == [b]  # exactly these: the network's default group too is left
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert inst["SecurityGroups"] == [{"GroupId": b, "GroupName": "e2e-b"}]
    vm = vm_xml(demo, iid)
    assert vm.findtext("TEMPLATE/NIC/SECURITY_GROUPS") == str(int(b[3:]))
    assert {
        r.findtext("SECURITY_GROUP_ID") for r in vm.iterfind("TEMPLATE/SECURITY_GROUP_RULE")
    } == {str(int(b[3:]))}
    # a group without rules leaves no name in the VM: it is read from the pool
    ec2.revoke_security_group_egress(
        GroupId=b, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    assert vm_xml(demo, iid).find("TEMPLATE/SECURITY_GROUP_RULE") is None
    for found in (
        ec2.describe_instances()["Reservations"],
        ec2.describe_instances(InstanceIds=[iid])["Reservations"],
    ):
        [inst] = [i for r in found for i in r["Instances"] if i["InstanceId"] == iid]
        assert inst["SecurityGroups"] == [{"GroupId": b, "GroupName": "e2e-b"}]
    for groups_asked, code in (
        (["sg-00009999"], "InvalidGroup.NotFound"),
        (["x"], "InvalidGroupId.Malformed"),
    ):
        with pytest.raises(ClientError) as exc:
            ec2.modify_instance_attribute(InstanceId=iid, Groups=groups_asked)
        assert error_of(exc)[:2] == (code, 400)
    assert groups() == [b]
    # a group an instance is in cannot go; out of it, it can
    with pytest.raises(ClientError) as exc:
        ec2.delete_security_group(GroupId=b)
    assert error_of(exc)[0] == "DependencyViolation"
    ec2.modify_instance_attribute(InstanceId=iid, Groups=[a, "sg-00000000"])
    assert groups() == ["sg-00000000", a]
    ec2.delete_security_group(GroupId=b)
    ec2.terminate_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], "terminated")
    with pytest.raises(ClientError) as exc:
        ec2.modify_instance_attribute(InstanceId=iid, Groups=[a])
    assert error_of(exc)[0] in ("IncorrectInstanceState", "InvalidInstanceID.NotFound")
    wait_for(lambda: "<UPDATED_VMS></UPDATED_VMS>" in secgroup_xml(demo, a), what="VM gone")
    ec2.delete_security_group(GroupId=a)


def test_rules_made_in_opennebula_read_back(ec2, demo):
    """Rules EC2 cannot ask for (port lists, ranges that are no CIDR block, a SIZE past the
    end of the address space, a RULE that is no vector) show as far as they can, and survive
    a change made through EC2."""
    proxy = xmlrpc.client.ServerProxy(demo.sim_url)
    ok, sid, *_ = proxy.one.secgroup.allocate(
        "demo:demo",
        'NAME="e2e-one"\nRULE="not a rule"\n'
        'RULE=[PROTOCOL="TCP",RULE_TYPE="inbound",RANGE="22,80:90",IP="10.0.0.1",SIZE="5"]\n'
        'RULE=[PROTOCOL="UDP",RULE_TYPE="inbound",IP="255.255.255.254",SIZE="1000"]\n'
        'RULE=[PROTOCOL="ICMP",RULE_TYPE="inbound",IP="10.0.0.0",SIZE="0"]\n'
        'RULE=[PROTOCOL="ICMPV6",RULE_TYPE="inbound",IP="2001:db8::",SIZE="16"]',
    )
    assert ok, sid
    gid = f"sg-{sid:08d}"
    try:
        perms = _ingress(ec2, gid)
        assert set(perms) == {("tcp", 22), ("tcp", 80), ("udp", 0), ("icmpv6", -1)}  # not SIZE 0
        assert perms[("icmpv6", -1)]["Ipv6Ranges"] == [{"CidrIpv6": "2001:db8::/124"}]
        assert [r["CidrIp"] for r in perms[("tcp", 80)]["IpRanges"]] == [
            "10.0.0.1/32",
            "10.0.0.2/31",
            "10.0.0.4/31",
        ]
        assert perms[("udp", 0)]["IpRanges"] == [{"CidrIp": "255.255.255.254/31"}]
        # one range of the port list goes; the rest of that rule, and the other rules, stay
        ec2.revoke_security_group_ingress(
            GroupId=gid,
            IpPermissions=[_tcp(22, 22, "10.0.0.2/31")],
        )
        perms = _ingress(ec2, gid)
        assert [r["CidrIp"] for r in perms[("tcp", 22)]["IpRanges"]] == [
            "10.0.0.1/32",
            "10.0.0.4/31",
        ]
        assert [r["CidrIp"] for r in perms[("tcp", 80)]["IpRanges"]] == [
            "10.0.0.1/32",
            "10.0.0.2/31",
            "10.0.0.4/31",
        ]
        xml = secgroup_xml(demo, gid)
        assert "<RULE><![CDATA[not a rule]]></RULE>" in xml and "<SIZE><![CDATA[0]]>" in xml
    finally:
        ec2.delete_security_group(GroupId=gid)


def test_dry_run_answers_what_opennebula_would(ec2):
    with pytest.raises(ClientError) as exc:
        ec2.authorize_security_group_ingress(
            GroupId="sg-00000000", DryRun=True, IpProtocol="-1", CidrIp="10.0.0.0/8"
        )
    assert error_of(exc)[:2] == ("UnauthorizedOperation", 403)
    with pytest.raises(ClientError) as exc:
        ec2.create_tags(Resources=["sg-00000000"], Tags=[{"Key": "a", "Value": "b"}], DryRun=True)
    assert error_of(exc)[:2] == ("UnauthorizedOperation", 403)


def test_one_description_for_any_address(ec2):
    gid = ec2.create_security_group(GroupName="e2e-desc", Description="x")["GroupId"]
    try:
        with pytest.raises(ClientError) as exc:
            ec2.authorize_security_group_ingress(
                GroupId=gid,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": 22,
                        "ToPort": 22,
                        "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "ssh"}],
                        "Ipv6Ranges": [{"CidrIpv6": "::/0", "Description": "ssh6"}],
                    }
                ],
            )
        assert error_of(exc)[:2] == ("UnsupportedOperation", 400)
        assert _group(ec2, gid)["IpPermissions"] == []
    finally:
        ec2.delete_security_group(GroupId=gid)


@pytest.mark.parametrize("signature_version", ["2", "4"])
def test_libcloud(demo, ami, signature_version):
    """libcloud's EC2 driver: its own requests and its own parsing of the answers."""
    from urllib.parse import urlsplit

    from libcloud.compute.providers import get_driver
    from libcloud.compute.types import Provider

    parts = urlsplit(demo.url)
    driver = get_driver(Provider.EC2)(
        "demo",
        hashlib.sha256(b"demo").hexdigest(),
        secure=False,
        host=parts.hostname,
        port=parts.port,
        region="us-east-1",
        signature_version=signature_version,
    )
    name = f"e2e-lc{signature_version}"
    made = driver.ex_create_security_group(name, "libcloud")
    gid = made["group_id"]
    try:
        assert name in driver.ex_list_security_groups()
        assert driver.ex_authorize_security_group_ingress(gid, 443, 443, cidr_ips=["192.0.2.0/24"])
        [group] = driver.ex_get_security_groups(group_ids=[gid])
        assert (group.name, group.id) == (name, gid)
        ingress = [
            (r["protocol"], r["from_port"], r["to_port"], r["cidr_ips"])
            for r in group.ingress_rules
        ]
        assert ingress == [("tcp", "443", "443", ["192.0.2.0/24"])]
        assert driver.ex_revoke_security_group_ingress(gid, 443, 443, cidr_ips=["192.0.2.0/24"])
        assert driver.ex_get_security_groups(group_ids=[gid])[0].ingress_rules == []
    finally:
        assert driver.ex_delete_security_group_by_id(gid)
