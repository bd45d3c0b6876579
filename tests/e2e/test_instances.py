"""Instances and images end to end: boto3 (SigV4 and SigV2) against `econe-server run --simulator`."""

from __future__ import annotations

import base64
import hashlib
import uuid
import xmlrpc.client

import botocore.handlers
import pytest
from botocore.exceptions import ClientError
from lxml import etree

from tests.e2e.conftest import DEMO_SECRET, wait_state


def error_of(excinfo) -> tuple[str, int]:
    err = excinfo.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def oneadmin(demo):
    return xmlrpc.client.ServerProxy(demo.sim_url), demo.one_auth()


def vm_xml(demo, instance_id: str) -> etree._Element:
    proxy, session = oneadmin(demo)
    ok, body, *_ = proxy.one.vm.info(session, int(instance_id.split("-")[1]))
    assert ok, body
    return etree.fromstring(body.encode())


def test_demo_image_is_an_ami(ec2):
    images = ec2.describe_images()["Images"]
    assert images, "the demo cloud registers its image as an AMI"
    assert all(i["ImageId"].startswith("ami-") for i in images)
    assert {i["State"] for i in images} == {"available"}


def test_full_life_cycle(ec2):
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    res = ec2.run_instances(ImageId=ami, MinCount=2, MaxCount=2, InstanceType="m1.small")
    ids = [i["InstanceId"] for i in res["Instances"]]
    assert len(ids) == 2 and res["ReservationId"].startswith("r-")
    assert all(i["State"]["Name"] == "pending" for i in res["Instances"])

    running = wait_state(ec2, ids, "running")
    instances = [i for r in running["Reservations"] for i in r["Instances"]]
    assert all(i["PrivateIpAddress"].startswith("10.") for i in instances)
    assert {i["InstanceType"] for i in instances} == {"m1.small"}
    assert {i["ImageId"] for i in instances} == {ami}
    assert all(i["LaunchTime"].tzinfo is not None for i in instances)

    stopping = ec2.stop_instances(InstanceIds=ids)["StoppingInstances"]
    assert {s["PreviousState"]["Name"] for s in stopping} == {"running"}
    wait_state(ec2, ids, "stopped")
    started = ec2.start_instances(InstanceIds=ids)["StartingInstances"]
    assert {s["PreviousState"]["Name"] for s in started} == {"stopped"}
    wait_state(ec2, ids, "running")
    ec2.reboot_instances(InstanceIds=ids)
    wait_state(ec2, ids, "running")

    gone = ec2.terminate_instances(InstanceIds=ids)["TerminatingInstances"]
    assert {g["InstanceId"] for g in gone} == set(ids)
    assert {g["PreviousState"]["Name"] for g in gone} == {"running"}
    wait_state(ec2, ids, "terminated")
    # Terminating again succeeds, as on EC2.
    again = ec2.terminate_instances(InstanceIds=ids)["TerminatingInstances"]
    assert {g["CurrentState"]["Name"] for g in again} == {"terminated"}


def test_filters(ec2):
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    found = ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": [iid]}])
    assert [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]] == [iid]
    by_type = ec2.describe_instances(Filters=[{"Name": "instance-type", "Values": ["nope"]}])
    assert by_type["Reservations"] == []
    with pytest.raises(ClientError) as exc:
        ec2.describe_instances(Filters=[{"Name": "bogus-filter", "Values": ["x"]}])
    assert error_of(exc) == ("InvalidParameterValue", 400)
    assert "bogus-filter" in exc.value.response["Error"]["Message"]
    # what EC2 documents of things this cloud has not (VPCs, IAM…) matches nothing, as it
    # would on EC2 for instances outside them; a Terraform data source gets an empty answer
    for name in ("vpc-id", "subnet-id", "iam-instance-profile.arn", "placement-group-name"):
        none = ec2.describe_instances(Filters=[{"Name": name, "Values": ["*"]}])
        assert none["Reservations"] == [], name
    (mine,) = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"]
    day = mine["LaunchTime"].strftime("%Y-%m-%d") + "*"
    for name, value in (("launch-time", day), ("root-device-name", mine["RootDeviceName"])):
        found = ec2.describe_instances(Filters=[{"Name": name, "Values": [value]}])
        assert iid in [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]
    # Terraform reads the tags of an instance's volumes with `resource-id` and no value
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": []}])["Tags"] == []
    for name in ("network-interface-id", "tag:Name"):  # addresses have neither here
        none = ec2.describe_addresses(Filters=[{"Name": name, "Values": ["*"]}])
        assert none["Addresses"] == [], name
    # what this cloud does have is mapped: the zone id, what instance types state
    by_zone = [{"Name": "availability-zone-id", "Values": ["opennebula-az1"]}]
    found = ec2.describe_instances(Filters=by_zone)
    assert iid in [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]
    one_thread = [{"Name": "vcpu-info.default-threads-per-core", "Values": ["1"]}]
    assert ec2.describe_instance_types(Filters=one_thread)["InstanceTypes"]
    no_efa = [{"Name": "network-info.efa-supported", "Values": ["false"]}]
    assert ec2.describe_instance_types(Filters=no_efa)["InstanceTypes"]
    ec2.terminate_instances(InstanceIds=[iid])


def test_status_checks_and_their_waiter(ec2, demo):
    """What scripts do after run-instances: boto3's instance_status_ok waiter, the AWS CLI."""
    from tests.security.helpers import aws_cli

    ami = ec2.describe_images()["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_status_ok").wait(
        InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    (status,) = aws_cli(demo.url, "opennebula", "describe-instance-status", "--instance-ids", iid)[
        "InstanceStatuses"
    ]
    assert status["InstanceState"]["Name"] == "running"
    assert status["InstanceStatus"]["Status"] == status["SystemStatus"]["Status"] == "ok"
    ec2.stop_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], "stopped")
    assert ec2.describe_instance_status(InstanceIds=[iid])["InstanceStatuses"] == []
    (stopped,) = ec2.describe_instance_status(InstanceIds=[iid], IncludeAllInstances=True)[
        "InstanceStatuses"
    ]
    assert stopped["InstanceStatus"] == {"Status": "not-applicable"}
    ec2.terminate_instances(InstanceIds=[iid])


def test_an_instance_saved_as_an_ami_and_launched_again(ec2):
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    wait_state(ec2, [iid], "running")
    name = f"golden-{uuid.uuid4().hex[:8]}"
    new = ec2.create_image(
        InstanceId=iid,
        Name=name,
        Description="saved by the e2e test",
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "k", "Value": "v"}]}],
    )["ImageId"]
    ec2.get_waiter("image_available").wait(ImageIds=[new], WaiterConfig={"Delay": 1})
    (image,) = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])[
        "Images"
    ]
    assert image["ImageId"] == new and image["Tags"] == [{"Key": "k", "Value": "v"}]
    child = ec2.run_instances(ImageId=new, MinCount=1, MaxCount=1)["Instances"][0]
    assert child["ImageId"] == new
    with pytest.raises(ClientError) as exc:
        ec2.create_image(InstanceId=iid, Name=name)
    assert error_of(exc) == ("InvalidAMIName.Duplicate", 400)
    ec2.terminate_instances(InstanceIds=[iid, child["InstanceId"]])


def test_dry_runs_check_like_the_real_request(ec2):
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    wait_state(ec2, [iid], "running")
    for call, code, status in (
        (lambda: ec2.stop_instances(InstanceIds=[iid], DryRun=True), "DryRunOperation", 412),
        (
            lambda: ec2.stop_instances(InstanceIds=["i-09999999"], DryRun=True),
            "InvalidInstanceID.NotFound",
            400,
        ),
        (
            lambda: ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, DryRun=True),
            "DryRunOperation",
            412,
        ),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == (code, status)
    (inst,) = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"]
    assert inst["State"]["Name"] == "running"
    ec2.terminate_instances(InstanceIds=[iid])


def test_root_volume_size_as_terraform_asks_for_it(ec2, demo):
    (image,) = ec2.describe_images()["Images"][:1]
    mapping = {"DeviceName": image["RootDeviceName"], "Ebs": {"VolumeSize": 8, "VolumeType": "gp3"}}
    iid = ec2.run_instances(
        ImageId=image["ImageId"], MinCount=1, MaxCount=1, BlockDeviceMappings=[mapping]
    )["Instances"][0]["InstanceId"]
    assert vm_xml(demo, iid).findtext("TEMPLATE/DISK/SIZE") == str(8 * 1024)
    with pytest.raises(ClientError) as exc:
        ec2.run_instances(
            ImageId=image["ImageId"],
            MinCount=1,
            MaxCount=1,
            BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 8}}],
        )
    assert error_of(exc) == ("InvalidBlockDeviceMapping", 400)
    ec2.terminate_instances(InstanceIds=[iid])


def test_hibernation_as_ec2_has_it(ec2, demo):
    """Launched with HibernationOptions.Configured, an instance hibernates (OpenNebula's
    suspend, memory kept), shows stopped and resumes; one launched without it is refused."""
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    (info,) = ec2.describe_instance_types(InstanceTypes=["m1.small"])["InstanceTypes"]
    assert info["HibernationSupported"] is True
    made = ec2.run_instances(
        ImageId=ami, MinCount=1, MaxCount=1, HibernationOptions={"Configured": True}
    )["Instances"][0]
    plain = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]
    ids = [made["InstanceId"], plain["InstanceId"]]
    assert made["HibernationOptions"] == {"Configured": True}
    assert plain["HibernationOptions"] == {"Configured": False}
    wait_state(ec2, ids, "running")
    with pytest.raises(ClientError) as exc:
        ec2.stop_instances(InstanceIds=ids, Hibernate=True)
    assert error_of(exc) == ("UnsupportedHibernationConfiguration", 400)
    assert plain["InstanceId"] in exc.value.response["Error"]["Message"]
    ec2.stop_instances(InstanceIds=[made["InstanceId"]], Hibernate=True)
    ec2.get_waiter("instance_stopped").wait(
        InstanceIds=[made["InstanceId"]], WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    assert vm_xml(demo, made["InstanceId"]).findtext("STATE") == "5"  # SUSPENDED
    assert wait_state(ec2, [plain["InstanceId"]], "running")  # untouched by the refusal
    ec2.start_instances(InstanceIds=[made["InstanceId"]])
    ec2.get_waiter("instance_running").wait(
        InstanceIds=[made["InstanceId"]], WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    ec2.terminate_instances(InstanceIds=ids)


def test_instance_attributes_as_terraform_reads_them(ec2):
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, UserData="#cloud-config\n")[
        "Instances"
    ][0]["InstanceId"]
    got = ec2.describe_instance_attribute(InstanceId=iid, Attribute="disableApiTermination")
    assert got["DisableApiTermination"] == {"Value": False}
    got = ec2.describe_instance_attribute(
        InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert got["InstanceInitiatedShutdownBehavior"] == {"Value": "stop"}
    got = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    assert base64.b64decode(got["UserData"]["Value"]) == b"#cloud-config\n"
    (info,) = ec2.describe_instance_types(InstanceTypes=["m1.small"])["InstanceTypes"]
    assert info["MemoryInfo"]["SizeInMiB"] == 256 and info["BurstablePerformanceSupported"] is False
    with pytest.raises(ClientError) as exc:
        ec2.describe_instance_attribute(InstanceId=iid, Attribute="bogus")
    assert error_of(exc) == ("InvalidParameterValue", 400)
    assert "Attribute" in exc.value.response["Error"]["Message"]
    ec2.terminate_instances(InstanceIds=[iid])


def test_a_stopped_instance_changes_type_as_terraform_does_it(ec2, demo):
    """Terraform's instance_type change: stop, ModifyInstanceAttribute, start."""
    proxy, _ = oneadmin(demo)
    ok, *_ = proxy.one.template.allocate(
        "demo:demo", 'NAME="e2e-big"\nEC2_INSTANCE_TYPE="e2e.big"\nCPU="2"\nVCPU="2"\nMEMORY="1024"'
    )
    assert ok
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    wait_state(ec2, [iid], "running")
    ec2.stop_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], "stopped")
    ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "e2e.big"})
    ec2.start_instances(InstanceIds=[iid])
    (inst,) = wait_state(ec2, [iid], "running")["Reservations"][0]["Instances"]
    assert inst["InstanceType"] == "e2e.big"
    assert vm_xml(demo, iid).findtext("TEMPLATE/MEMORY") == "1024"
    with pytest.raises(ClientError) as exc:
        ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "m1.small"})
    assert error_of(exc) == ("IncorrectInstanceState", 400)  # running: stop it first
    ec2.terminate_instances(InstanceIds=[iid])


def test_a_stopped_instance_changes_user_data_as_terraform_does_it(ec2, demo):
    """Terraform's user_data change in place: stop, ModifyInstanceAttribute UserData (boto3
    base64-encodes the blob), start; cloud-init's USERDATA carries the new script."""
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, UserData="#!/bin/sh\necho 1\n")[
        "Instances"
    ][0]["InstanceId"]
    wait_state(ec2, [iid], "running")
    with pytest.raises(ClientError) as exc:
        ec2.modify_instance_attribute(InstanceId=iid, UserData={"Value": b"#!/bin/sh\n"})
    assert error_of(exc) == ("IncorrectInstanceState", 400)  # running: stop it first
    ec2.stop_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], "stopped")
    script = b"#cloud-config\nruncmd:\n - echo 'two' ]\n"
    ec2.modify_instance_attribute(InstanceId=iid, UserData={"Value": script})
    ec2.start_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], "running")
    context = vm_xml(demo, iid).find("TEMPLATE/CONTEXT")
    assert base64.b64decode(context.findtext("USERDATA")) == script
    assert context.findtext("USERDATA_ENCODING") == "base64"
    answer = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    assert base64.b64decode(answer["UserData"]["Value"]) == script
    ec2.terminate_instances(InstanceIds=[iid])


def test_client_token_is_idempotent(ec2):
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    token = str(uuid.uuid4())
    first = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, ClientToken=token)
    second = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, ClientToken=token)
    assert second["ReservationId"] == first["ReservationId"]
    assert [i["InstanceId"] for i in second["Instances"]] == [
        i["InstanceId"] for i in first["Instances"]
    ]


def test_user_data_reaches_cloud_init_context(ec2, demo):
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    cloud_config = '#cloud-config\nruncmd:\n - echo "hi" ]\n'
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, UserData=cloud_config)[
        "Instances"
    ][0]["InstanceId"]
    ctx = vm_xml(demo, iid).find("TEMPLATE/CONTEXT")
    assert ctx.findtext("USERDATA_ENCODING") == "base64"
    assert base64.b64decode(ctx.findtext("USERDATA")).decode() == cloud_config
    assert base64.b64decode(ctx.findtext("EC2_USER_DATA")).decode() == cloud_config


def test_template_injection_is_inert(ec2, demo):
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    evil = 'x" ]\nCPU = "64"\nMEMORY="99999" NIC=[NETWORK_ID="1"] \\'
    token = 'x"]CPU="64"MEMORY="99999"NIC=[NETWORK_ID="1"]\\'  # a token is ASCII, no newline
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": evil}]}]
    iid = ec2.run_instances(
        ImageId=ami, MinCount=1, MaxCount=1, ClientToken=token, TagSpecifications=tags
    )["Instances"][0]["InstanceId"]
    vm = vm_xml(demo, iid)
    assert vm.findtext("USER_TEMPLATE/EC2_CLIENT_TOKEN") == token
    assert vm.findtext("USER_TEMPLATE/EC2_TAGS/VALUE") == evil
    assert vm.findtext("TEMPLATE/CPU") != "64"
    assert vm.findtext("TEMPLATE/MEMORY") != "99999"
    assert [n.findtext("NETWORK_ID") for n in vm.findall("TEMPLATE/NIC")] == ["0"]


@pytest.mark.parametrize(
    "call, code, status",
    [
        (
            lambda c: c.describe_instances(InstanceIds=["i-nothex!"]),
            "InvalidInstanceID.Malformed",
            400,
        ),
        (
            lambda c: c.describe_instances(InstanceIds=["i-99999999"]),
            "InvalidInstanceID.NotFound",
            400,
        ),
        (
            lambda c: c.terminate_instances(InstanceIds=["i-99999999"]),
            "InvalidInstanceID.NotFound",
            400,
        ),
        (lambda c: c.describe_images(ImageIds=["ami-zz"]), "InvalidAMIID.Malformed", 400),
        (lambda c: c.describe_images(ImageIds=["ami-99999999"]), "InvalidAMIID.NotFound", 400),
        (
            lambda c: c.run_instances(ImageId="ami-99999999", MinCount=1, MaxCount=1),
            "InvalidAMIID.NotFound",
            400,
        ),
        (
            lambda c: c.run_instances(
                ImageId="ami-00000000", MinCount=1, MaxCount=1, InstanceType="x9.huge"
            ),
            "InvalidParameterValue",
            400,
        ),
        (
            lambda c: c.run_instances(ImageId="ami-00000000", MinCount=3, MaxCount=1),
            "InvalidParameterValue",
            400,
        ),
    ],
)
def test_error_codes(ec2, call, code, status):
    with pytest.raises(ClientError) as exc:
        call(ec2)
    assert error_of(exc) == (code, status)


def test_what_cannot_be_given_is_refused_by_name(ec2, demo):
    """Termination protection and encryption do not exist here: asking for them is an error
    naming the parameter (the spec says so), never a silent success; nothing is created."""
    vms = oneadmin_vm_count(demo)
    with pytest.raises(ClientError) as exc:
        ec2.run_instances(
            ImageId="ami-00000000", MinCount=1, MaxCount=1, DisableApiTermination=True
        )
    assert error_of(exc) == ("InvalidParameterValue", 400)
    assert "DisableApiTermination" in exc.value.response["Error"]["Message"]
    assert "false" in exc.value.response["Error"]["Message"]  # what may be asked
    assert oneadmin_vm_count(demo) == vms
    for extra, code in (
        ({"Encrypted": True}, "InvalidParameterValue"),
        ({"MultiAttachEnabled": True}, "InvalidParameterValue"),
        ({"Iops": 3000}, "UnsupportedOperation"),
        ({"KmsKeyId": "alias/x"}, "UnsupportedOperation"),
        ({"VolumeType": "io1"}, "InvalidParameterValue"),  # provisioned IOPS: needs Iops
        ({"VolumeType": "io2"}, "InvalidParameterValue"),
        ({"AvailabilityZoneId": "opennebula-az1"}, "InvalidParameterCombination"),  # with the zone
    ):
        with pytest.raises(ClientError) as exc:
            ec2.create_volume(Size=1, AvailabilityZone="opennebula", **extra)
        assert error_of(exc) == (code, 400), extra
        assert next(iter(extra)) in exc.value.response["Error"]["Message"]
    root = [{"DeviceName": "/dev/sda", "Ebs": {"VolumeType": "io2"}}]
    with pytest.raises(ClientError) as exc:
        ec2.run_instances(ImageId="ami-00000000", MinCount=1, MaxCount=1, BlockDeviceMappings=root)
    assert error_of(exc) == ("InvalidParameterValue", 400)
    assert "VolumeType" in exc.value.response["Error"]["Message"]
    # what the overlay marks unsupported: UnsupportedOperation naming the parameter
    for extra, wire in (
        ({"LaunchTemplate": {"LaunchTemplateName": "web"}}, "LaunchTemplate"),
        ({"SubnetId": "subnet-0123"}, "SubnetId"),
        ({"NetworkInterfaces": [{"DeviceIndex": 0}]}, "NetworkInterface"),
        ({"InstanceMarketOptions": {"MarketType": "spot"}}, "InstanceMarketOptions"),
        ({"PrivateIpAddress": "10.0.0.200"}, "PrivateIpAddress"),
        ({"IamInstanceProfile": {"Name": "web"}}, "IamInstanceProfile"),
        ({"MetadataOptions": {"HttpTokens": "required"}}, "MetadataOptions"),
        ({"CpuOptions": {"CoreCount": 2}}, "CpuOptions"),
        ({"Placement": {"GroupName": "spread"}}, "GroupName"),
    ):
        with pytest.raises(ClientError) as exc:
            ec2.run_instances(ImageId="ami-00000000", MinCount=1, MaxCount=1, **extra)
        assert error_of(exc) == ("UnsupportedOperation", 400), wire
        assert wire in exc.value.response["Error"]["Message"]
    for extra, code in (
        ({"InstanceInitiatedShutdownBehavior": "terminate"}, "InvalidParameterValue"),
        ({"SecurityGroups": ["web"]}, "InvalidGroup.NotFound"),
        ({"Monitoring": {"Enabled": True}}, "InvalidParameterValue"),
        ({"EbsOptimized": True}, "InvalidParameterValue"),
        ({"Placement": {"Tenancy": "dedicated"}}, "InvalidParameterValue"),
        ({"Placement": {"AvailabilityZoneId": "use1-az1"}}, "InvalidParameterValue"),
        (
            {
                "CapacityReservationSpecification": {
                    "CapacityReservationTarget": {"CapacityReservationId": "cr-1"}
                }
            },
            "UnsupportedOperation",
        ),
    ):
        with pytest.raises(ClientError) as exc:
            ec2.run_instances(ImageId="ami-00000000", MinCount=1, MaxCount=1, **extra)
        assert error_of(exc) == (code, 400), extra
    assert oneadmin_vm_count(demo) == vms


def test_what_tools_send_by_default_is_accepted(ec2, demo):
    """Terraform's aws_instance always sends HibernationOptions.Configured=false, Monitoring,
    EbsOptimized and DisableApiTermination false; fog (vagrant-aws) SecurityGroup default:
    values that ask for nothing pass (checked with a dry run: nothing is made)."""
    with pytest.raises(ClientError) as exc:
        ec2.run_instances(
            ImageId="ami-00000000",
            MinCount=1,
            MaxCount=1,
            DryRun=True,
            HibernationOptions={"Configured": False},
            EnclaveOptions={"Enabled": False},
            CapacityReservationSpecification={"CapacityReservationPreference": "open"},
            Monitoring={"Enabled": False},
            EbsOptimized=False,
            DisableApiTermination=False,
            SecurityGroups=["default"],
            SecurityGroupIds=[],
            Placement={"AvailabilityZone": "opennebula", "Tenancy": "default"},
        )
    assert error_of(exc) == ("DryRunOperation", 412)


def oneadmin_vm_count(demo) -> int:
    proxy, session = oneadmin(demo)
    ok, pool, *_ = proxy.one.vmpool.info(session, -2, -1, -1, -2)
    assert ok
    return len(etree.fromstring(pool.encode()).findall("VM"))


def test_wrong_secret_and_unknown_user(demo):
    with pytest.raises(ClientError) as exc:
        demo.client(secret="0" * 64).describe_instances()
    assert error_of(exc) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as exc:
        demo.client(user="nobody").describe_instances()
    assert error_of(exc) == ("AuthFailure", 401)


def test_the_log_says_why_a_request_was_refused_under_its_request_id(demo):
    """The reason line carries the request id the client got (and the access line), so an
    operator finds the reason for one refusal among many. An unknown key is logged by its
    first letters only: it may be a secret sent in its place (key and secret swapped)."""
    import time

    from tests.e2e.conftest import DEMO_SECRET

    for key in ("nosuchkey0", "nosuchkey1", DEMO_SECRET):  # the first miss refreshes the pool
        with pytest.raises(ClientError) as exc:
            demo.client(user=key, secret="demo").describe_instances()
        rid = exc.value.response["ResponseMetadata"]["RequestId"]
        line = (
            f"request {rid}: EC2 key {key[:3]!r}… ({len(key)} characters) refused: "
            "no such user or access key"
        )
        deadline = time.monotonic() + 10
        while line not in demo.log.read_text():
            assert time.monotonic() < deadline, f"no {line!r} in the log"
            time.sleep(0.1)
        assert f" {rid} - POST DescribeInstances 401 " in demo.log.read_text()
        # (the demo banner at the top of this output shows the demo secret, as it should)
        assert not [
            line for line in demo.log.read_text().splitlines() if rid in line and key in line
        ]


def test_sigv2_client(demo):
    v2 = demo.client(signature_version="v2")
    assert v2.describe_images()["Images"]
    assert "Reservations" in v2.describe_instances()


def test_regions_zones_and_account(ec2):
    assert [r["RegionName"] for r in ec2.describe_regions()["Regions"]] == ["opennebula"]
    zones = ec2.describe_availability_zones()["AvailabilityZones"]
    assert zones and zones[0]["State"] == "available"
    attrs = ec2.describe_account_attributes()["AccountAttributes"]
    platforms = [a for a in attrs if a["AttributeName"] == "supported-platforms"]
    assert platforms[0]["AttributeValues"] == [{"AttributeValue": "EC2"}]


def test_users_are_isolated(ec2, demo):
    name = f"eve{uuid.uuid4().hex[:6]}"
    demo.add_user(name, "evepw")
    eve = demo.client(user=name, secret=hashlib.sha256(b"evepw").hexdigest())
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    mine = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    listed = [
        i["InstanceId"] for r in eve.describe_instances()["Reservations"] for i in r["Instances"]
    ]
    assert mine not in listed
    for call in (
        lambda: eve.describe_instances(InstanceIds=[mine]),
        lambda: eve.terminate_instances(InstanceIds=[mine]),
        lambda: eve.stop_instances(InstanceIds=[mine]),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc)[0] in ("InvalidInstanceID.NotFound", "UnauthorizedOperation")
    assert DEMO_SECRET != hashlib.sha256(b"evepw").hexdigest()
    state = ec2.describe_instances(InstanceIds=[mine])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] in ("pending", "running")


def test_user_data_that_is_not_base64(demo):
    raw = demo.client()
    # botocore base64-encodes UserData itself; unhook that to send what a broken client sends.
    raw.meta.events.unregister(
        "before-parameter-build.ec2.RunInstances", botocore.handlers.base64_encode_user_data
    )
    with pytest.raises(ClientError) as exc:
        raw.run_instances(ImageId="ami-00000000", MinCount=1, MaxCount=1, UserData="!!not*b64")
    assert error_of(exc) == ("InvalidParameterValue", 400)
    assert (
        "UserData" in exc.value.response["Error"]["Message"]
        or "BASE64" in exc.value.response["Error"]["Message"].upper()
    )


def test_user_data_in_mime_lines_is_taken(demo):
    """Base64 as `base64` writes it (lines of 76, LF or CRLF) is taken as user data, by
    RunInstances and ModifyInstanceAttribute alike (the SDKs encode it in one piece)."""
    raw = demo.client()
    raw.meta.events.unregister(
        "before-parameter-build.ec2.RunInstances", botocore.handlers.base64_encode_user_data
    )
    text = b"#cloud-config\n" + b"# padding to pass one line of 76\n" * 4
    wrapped = base64.encodebytes(text).decode()  # newline every 76 characters
    assert "\n" in wrapped.rstrip("\n")
    iid = raw.run_instances(ImageId="ami-00000000", MinCount=1, MaxCount=1, UserData=wrapped)[
        "Instances"
    ][0]["InstanceId"]
    got = raw.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    assert base64.b64decode(got["UserData"]["Value"]) == text
    wait_state(raw, [iid], "running")
    raw.stop_instances(InstanceIds=[iid])
    wait_state(raw, [iid], "stopped")
    crlf = wrapped.replace("\n", "\r\n")
    raw.modify_instance_attribute(InstanceId=iid, Attribute="userData", Value=crlf)
    got = raw.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    assert base64.b64decode(got["UserData"]["Value"]) == text
    raw.terminate_instances(InstanceIds=[iid])


def test_upload_image_without_a_file_part(demo):
    raw = demo.client()
    with pytest.raises(ClientError) as exc:
        raw._make_api_call("DescribeRegions", {})  # warm the client
        raw.meta.events.register(
            "before-call.ec2.DescribeRegions",
            lambda params, **_: params["body"].update(Action="UploadImage"),
        )
        raw.describe_regions()
    assert error_of(exc) == ("MissingParameter", 400)
    assert "file" in exc.value.response["Error"]["Message"]
