"""Contract fixtures: the full app (real engine and mappings) over a live onesim.

The app runs in-process; its virtual JSON routes are reachable as the demo user through the
explicit `json_principal` (tests only). Skipped until the engine and onesim exist.
"""

from __future__ import annotations

import copy
import importlib
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from econe.config import Config
from econe.context import Principal

DEMO = Principal(name="demo", uid=2, gid=1, auth_driver="core", via="test")
# Keep each generated RunInstances small: the contract run exercises shapes, not capacity.
MAX_INSTANCES_PER_CALL = 2


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server_mod = importlib.import_module("onesim.server")
    state = tmp_path_factory.mktemp("onesim")
    server = server_mod.SimServer(str(state), port=0, seed="demo", speed=0).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def contract_app(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    engine_mod = importlib.import_module("econe.engine")
    from econe.one.client import OneClient
    from econe.one.session import ServerCipherSessions

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from econe.app import create_app

    state_dir = Path(sim.state_dir)
    upload = tmp_path_factory.mktemp("upload")
    config = Config(
        one_xmlrpc=sim.url,
        ec2_auth=str(state_dir / ".one" / "ec2_auth"),
        elasticips_vnet_id=1,
        tmpdir=str(upload),
    )
    one = OneClient(config.one_xmlrpc, timeout=10)
    engine = engine_mod.Engine(config, one, ServerCipherSessions(config.ec2_auth))
    spec_path = tmp_path_factory.mktemp("spec") / "ec2-query.yaml"
    spec_path.write_text(yaml.safe_dump(contract_spec(), sort_keys=False))
    app = create_app(  # validates with the same (capped) spec schemathesis generates from
        config,
        engine=engine,
        authenticator=_NoWireAuth(),
        spec_path=spec_path,
        json_principal=DEMO,
        swagger_ui=False,
    )
    yield app
    engine.close()
    one.close()


class _NoWireAuth:
    """The contract run uses the JSON routes only; EC2 wire requests are refused."""

    def authenticate(self, raw: Any) -> Principal:
        from econe.errors import Ec2Error

        raise Ec2Error("AuthFailure", "contract tests use the JSON routes")


def contract_spec() -> dict[str, Any]:
    """The shipped spec, with RunInstances counts capped for the run."""
    from econe.spec import load_spec

    raw = copy.deepcopy(load_spec().raw)
    props = raw["components"]["schemas"]["RunInstancesRequest"]["properties"]
    for name in ("MinCount", "MaxCount"):
        props[name]["maximum"] = MAX_INSTANCES_PER_CALL
    # the demo cloud's image and instance type, so that positive cases can succeed
    props["ImageId"]["enum"] = ["ami-00000000"]
    props["InstanceType"]["enum"] = ["m1.small"]
    return raw
