"""RunInstances' ClientToken through two gateway processes on one onesim: a retry sent to the
second while the first still launches (oned slow) never answers a part of the launch."""

from __future__ import annotations

import threading
import time
import xmlrpc.client

import pytest
from botocore.exceptions import ClientError

from tests.addresses.conftest import boto_client, start_gateway
from tests.e2e.conftest import DEMO_SECRET


@pytest.fixture(scope="module")
def second(demo, tmp_path_factory):
    """A second gateway process on the demo's onesim; → its URL."""
    proc, url = start_gateway(tmp_path_factory.mktemp("second-gateway"), demo, "second")
    yield url
    proc.terminate()
    proc.wait(timeout=15)


def test_a_retry_at_another_gateway_answers_the_whole_launch_or_in_progress(demo, second):
    first, other = (
        boto_client(demo.url, "demo", DEMO_SECRET),
        boto_client(second, "demo", DEMO_SECRET),
    )
    ami = first.describe_images()["Images"][0]["ImageId"]
    body = {"ImageId": ami, "MinCount": 1, "MaxCount": 4, "ClientToken": "two-gateways"}
    sim = xmlrpc.client.ServerProxy(demo.sim_url)
    sim.onesim.fault.set(demo.one_auth(), "one.vm.allocate", 0, "", 0.5, 4)  # slow, not failing
    answer: dict = {}
    launching = threading.Thread(target=lambda: answer.update(first.run_instances(**body)))
    try:
        launching.start()
        time.sleep(1.2)  # two of the four made
        with pytest.raises(ClientError) as err:
            other.run_instances(**body)
        assert err.value.response["Error"]["Code"] == "Unavailable"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        launching.join(timeout=30)
    finally:
        sim.onesim.fault.clear(demo.one_auth())
    made = [i["InstanceId"] for i in answer["Instances"]]
    assert len(made) == 4
    again = other.run_instances(**body)
    assert [i["InstanceId"] for i in again["Instances"]] == made
    assert again["ReservationId"] == answer["ReservationId"]
    first.terminate_instances(InstanceIds=made)
