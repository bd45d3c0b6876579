"""Mapping files: load-time validation, and adding an action with YAML only (no Python)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from econe.config import Config
from econe.engine import Engine
from econe.errors import Ec2Error
from econe.mapping import MappingError, load_mappings
from econe.paths import data_dir
from tests.engine.conftest import FakeSessions, GoldenOne, run

KEYPAIRS_VIEW = """\
object: EC2_KEYPAIR
fields:
  KeyName: NAME
  KeyFingerprint: FINGERPRINT
  KeyType: {value: rsa}
  _id: {expr: "0"}
"""
DESCRIBE_KEYPAIRS = """\
action: DescribeKeyPairs
doc: Key pairs kept as EC2_KEYPAIR vectors in the user's template (read-only here).
source:
  call: one.user.info
  args: [-1]
  items: /USER/TEMPLATE/EC2_KEYPAIR
by_id: {param: KeyName, field: KeyName, not_found: InvalidKeyPair.NotFound, noun: key pair}
view: keypair
filters: {key-name: KeyName, fingerprint: KeyFingerprint}
output:
  KeyPairs: "{{ items }}"
"""
USER = """<USER><ID>2</ID><NAME>alice</NAME><TEMPLATE>
<EC2_KEYPAIR><FINGERPRINT>aa:bb</FINGERPRINT><NAME>laptop</NAME><PUBLIC_KEY>ssh-rsa AAA</PUBLIC_KEY></EC2_KEYPAIR>
<EC2_KEYPAIR><FINGERPRINT>cc:dd</FINGERPRINT><NAME>ci</NAME><PUBLIC_KEY>ssh-rsa BBB</PUBLIC_KEY></EC2_KEYPAIR>
</TEMPLATE></USER>"""


def extended_mappings(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(data_dir("mappings"), target)
    (target / "views" / "keypair.yaml").write_text(KEYPAIRS_VIEW)
    (target / "DescribeKeyPairs.yaml").write_text(DESCRIBE_KEYPAIRS)
    return target


def test_add_an_action_with_yaml_only(tmp_path: Path) -> None:
    one = GoldenOne()
    one.overrides["one.user.info"] = USER
    engine = Engine(Config(), one, FakeSessions(), extended_mappings(tmp_path))
    assert "DescribeKeyPairs" in engine.actions()
    pairs = run(engine, "DescribeKeyPairs")["KeyPairs"]
    assert pairs == [
        {"KeyName": "laptop", "KeyFingerprint": "aa:bb", "KeyType": "rsa"},
        {"KeyName": "ci", "KeyFingerprint": "cc:dd", "KeyType": "rsa"},
    ]
    assert (
        run(engine, "DescribeKeyPairs", {"KeyName": ["ci"]})["KeyPairs"][0]["KeyFingerprint"]
        == "cc:dd"
    )
    with pytest.raises(Ec2Error) as err:
        run(engine, "DescribeKeyPairs", {"KeyName": ["nope"]})
    assert err.value.code == "InvalidKeyPair.NotFound" and "nope" in err.value.message
    body = {"Filter": [{"Name": "fingerprint", "Value": ["aa:*"]}]}
    assert [p["KeyName"] for p in run(engine, "DescribeKeyPairs", body)["KeyPairs"]] == ["laptop"]
    engine.close()


def test_shipped_mappings_load() -> None:
    mappings = load_mappings(data_dir("mappings"))
    assert {
        "DescribeInstances",
        "RunInstances",
        "DescribeImages",
        "RegisterImage",
        "DeregisterImage",
        "TerminateInstances",
        "StartInstances",
        "StopInstances",
        "RebootInstances",
        "DescribeRegions",
        "DescribeAvailabilityZones",
        "DescribeAccountAttributes",
    } <= set(mappings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("action: Other\noutput: {}\n", "must be 'X'"),
        ("action: X\nsurprise: 1\noutput: {}\n", "unknown key(s) ['surprise']"),
        ("action: X\n", "needs output"),
        ("action: X\nhandler: nowhere.at_all:f\n", "cannot import nowhere.at_all"),
        ("action: X\nhandler: handlers.instances:missing\n", "has no function missing"),
        ("action: X\nview: nope\noutput: {}\n", "no mappings/views/nope.yaml"),
        ("action: X\nsource: {call: vm.info, items: /X}\noutput: {}\n", "source.call"),
        ("action: X\nsource: {call: one.vm.info, items: '/VM['}\noutput: {}\n", "bad XPath"),
        ("action: X\noutput: '{{ items | }}'\n", "bad expression"),
        ("action: X\nview: image\nfilters: {a: Nope}\noutput: {}\n", "not a field of view image"),
        (
            "action: X\nby_id: {param: I, call: one.vm.info, not_found: N}\noutput: {}\n",
            "by_id.prefix",
        ),
        (
            "action: X\nsource: {static: []}\neach: {call: one.vm.action, refresh: true}\noutput: {}\n",
            "each.refresh",
        ),
        (
            "action: X\nsource: {static: []}\neach: {call: one.vm.action, errors: {OOPS: X}}\noutput: {}\n",
            "each.errors",
        ),
        (
            "action: X\nby_id: {param: N, field: N, not_found: F}\noutput: {}\n",
            "selects from source",
        ),
        (
            "action: X\nsource: {static: []}\neach: {call: one.vm.action, refuse: [{code: C}]}\n"
            "output: {}\n",
            "each.refuse[0]: an expression, or {if: EXPR, code: CODE, message}",
        ),
        (
            "action: X\nsource: {static: []}\n"
            "each: {call: one.vm.action, refuse: [item.a, {if: item.b, code: C, text: m}]}\noutput: {}\n",
            "each.refuse[1]: unknown key(s) ['text']",
        ),
        (
            "action: X\nsource: {static: []}\neach: {call: one.vm.action, refuse: 'a ++'}\n"
            "output: {}\n",
            "each.refuse: bad expression",
        ),
        (
            "action: X\nsource: {static: []}\neach: {call: one.image.update, "
            "args: ['{{ id }}', 'DESCRIPTION=\"{{ body.Description }}\"', 1]}\noutput: {}\n",
            "each.args[1]: writes a value into OpenNebula template text",
        ),
        (
            "action: X\nhandler: handlers.instances:run_instances\n"
            "refuse: [{if: 'true', code: C}]\n",
            "refuse: runs in the pipeline; a handler checks itself",
        ),
        (
            "action: X\nsource: {static: []}\neach: {call: one.vm.updateconf, "
            "args: ['{{ id }}', ['CONTEXT=[ A=\"{{ body.A }}\" ]']]}\noutput: {}\n",
            "each.args[1][0]: writes a value into OpenNebula template text",
        ),
        (
            "action: X\nsource: {static: []}\neach: {call: one.image.update, "
            "args: ['{{ id }}', {template: {'A B': x}}, 1]}\noutput: {}\n",
            "'A B' is not an OpenNebula attribute name",
        ),
        # expressions: a name the scope has not there, a field the view has not
        ("action: X\noutput: {Images: '{{ itemz }}'}\n", "itemz is not defined here"),
        ("action: X\noutput: {Return: '{{ item.Nope.x }}'}\n", "item is not defined here"),
        (
            "action: X\nsource: {static: []}\noutput: {A: {for: items, each: '{{ it.x }}'}, "
            "B: '{{ it }}'}\n",
            "output.B: bad expression: it is not defined here",
        ),
        (
            "action: X\nsource: {static: []}\nrefuse: [{if: item, code: C}]\noutput: {}\n",
            "refuse[0].if: bad expression: item is not defined here",
        ),
        (
            "action: X\nview: image\nsource: {static: []}\nwhere: item._amii\noutput: {}\n",
            "where: bad expression: '_amii' is not a field of the items (view image:",
        ),
        (
            "action: X\nview: image\nsource: {static: []}\noutput: '{{ items[0].Nme }}'\n",
            "output: bad expression: 'Nme' is not a field of the items",
        ),
        (
            "action: X\nview: image\nsource: {static: []}\neach: {call: one.image.delete, "
            "errors: {ACTION: {code: C, message: '{{ item.ImageId }}: {{ item[\"Stat\"] }}'}}}"
            "\noutput: {}\n",
            "each.errors.ACTION.message: bad expression: 'Stat' is not a field",
        ),
        # oned's methods, EC2 error codes, the answer's root element
        (
            "action: X\nsource: {static: []}\neach: {call: one.image.delet}\noutput: {}\n",
            "each.call: oned has no method 'one.image.delet'",
        ),
        (
            "action: X\nsource: {static: []}\neach: {call: one.image.delete, "
            "errors: {AUTHORIZATION: Unauthorised Operation}}\noutput: {}\n",
            "each.errors.AUTHORIZATION: 'Unauthorised Operation' is not an EC2 error code",
        ),
        (
            "action: X\nrefuse: [{if: 'true', code: bad-code}]\noutput: {}\n",
            "refuse[0].code: 'bad-code' is not an EC2 error code",
        ),
        (
            "action: X\nby_id: {param: I, prefix: ami, call: one.image.info, item: /IMAGES, "
            "not_found: N}\noutput: {}\n",
            "by_id.item: '/IMAGES' cannot match what one.image.info answers (/IMAGE",
        ),
        (
            "action: X\nsource: {call: one.secgrouppool.info, args: [-2, -1, -1], "
            "items: /SECURITY_GROUP_POOL/SECURITYGROUP}\noutput: {}\n",
            "cannot match what one.secgrouppool.info answers (/SECURITY_GROUP_POOL/SECURITY_GROUP",
        ),
    ],
)
def test_validation_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    target = tmp_path / "m"
    shutil.copytree(data_dir("mappings") / "views", target / "views")
    (target / "X.yaml").write_text(text)
    with pytest.raises(MappingError) as err:
        load_mappings(target)
    assert str(target / "X.yaml") in str(err.value)
    assert message in str(err.value)


def test_bad_view_is_reported(tmp_path: Path) -> None:
    target = tmp_path / "m"
    (target / "views").mkdir(parents=True)
    (target / "views" / "v.yaml").write_text("fields: {A: {path: ID, type: colour}}\n")
    with pytest.raises(MappingError, match=r"v.yaml: fields.A: unknown type 'colour'"):
        load_mappings(target)


SET_DESCRIPTION = """\
action: SetImageDescription
doc: A write action in YAML only; the request's value goes into the template as data.
by_id:
  param: ImageId
  prefix: ami
  call: one.image.info
  item: /IMAGE
  malformed: InvalidAMIID.Malformed
  not_found: InvalidAMIID.NotFound
  noun: image
view: image
where: item._ami and item.State
each:
  call: one.image.update
  args: ["{{ id }}", {template: {DESCRIPTION: "{{ body.Description }}"}}, 1]
output:
  Return: true
"""


@pytest.mark.parametrize(
    "description",
    [
        "a & b <c>",
        "x</DESCRIPTION><EC2_AMI>NO</EC2_AMI><DESCRIPTION>y",
        'q" EC2_AMI="NO',
        "\u00e9t\u00e9",
    ],
)
def test_a_template_value_is_data_whatever_it_holds(sim, tmp_path: Path, description: str) -> None:
    from tests.engine.conftest import AMI

    target = tmp_path / "mappings"
    shutil.copytree(data_dir("mappings"), target)
    (target / "SetImageDescription.yaml").write_text(SET_DESCRIPTION)
    engine = sim.engine(target)
    try:
        run(engine, "RegisterImage", {"ImageLocation": AMI}, user="demo")
        body = {"ImageId": [AMI], "Description": description}
        assert run(engine, "SetImageDescription", body, user="demo") == {"Return": True}
        image = run(engine, "DescribeImages", {"ImageId": [AMI]}, user="demo")["Images"][0]
        assert image["Description"] == description  # stored as sent, still an AMI
        with pytest.raises(Ec2Error) as err:  # OpenNebula would store it otherwise
            run(engine, "SetImageDescription", {**body, "Description": " padded "}, user="demo")
        assert err.value.code == "InvalidParameterValue" and "DESCRIPTION" in err.value.message
    finally:
        engine.close()


def _spec_check(tmp_path: Path, edit) -> str:
    """check_against_spec's message for a copy of the shipped mappings changed by `edit`."""
    from econe.mapping import check_against_spec
    from econe.spec import load_spec

    target = tmp_path / "mappings"
    shutil.copytree(data_dir("mappings"), target)
    edit(target)
    with pytest.raises(MappingError) as err:
        check_against_spec(load_mappings(target), load_spec())
    return str(err.value)


def _replace(name: str, old: str, new: str):
    def edit(target: Path) -> None:
        path = target / name
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # the boto3 name instead of the wire name: the ids were ignored, every volume listed
        (
            _replace("DescribeImages.yaml", "param: ImageId", "param: ImageIds"),
            "by_id.param: the request of DescribeImages has no member 'ImageIds'",
        ),
        (
            _replace("DescribeImages.yaml", "Images:", "Image:"),
            "output.Image: the answer of DescribeImages has no such member",
        ),
        (
            _replace("DescribeInstances.yaml", "max_results: MaxResults", "max_results: MaxResult"),
            "paginate.max_results: the request of DescribeInstances has no member 'MaxResult'",
        ),
        # an expression reading a request member the action has not
        (
            _replace("DescribeImages.yaml", "not body.Owner or", "not body.Ownr or"),
            "DescribeImages.yaml: match[0]: the request of DescribeImages has no member 'Ownr'",
        ),
        (
            lambda t: (t / "DescribeRegions.yaml").rename(t / "DescribeRegion.yaml.off"),
            "DescribeRegions is in",
        ),
        (
            lambda t: (t / "DescribeHosts.yaml").write_text(
                "action: DescribeHosts\nsource: {static: []}\noutput: {Hosts: []}\n"
            ),
            "DescribeHosts is not in",
        ),
    ],
)
def test_mappings_are_checked_against_the_spec(tmp_path: Path, edit, message: str) -> None:
    assert message in _spec_check(tmp_path, edit)


def test_what_the_docs_call_yaml_only_runs_no_python() -> None:
    """mappings/README.md's "YAML only" actions and README's "no Python" ones have no handler
    and no hooks (the docs once said so of DescribeInstanceAttribute, which runs two)."""
    import re

    import yaml

    root = Path(__file__).resolve().parents[2]
    docs = (root / "mappings" / "README.md").read_text()
    names = re.findall(r"^\| ([A-Za-z /]+?) \| YAML only", docs, re.M)
    readme = (root / "README.md").read_text()
    names += re.findall(r"\| (\w+) \| ✓ \|[^\n]*; a mapping and a view, no Python \|", readme)
    actions = [
        a for n in names for a in n.split(" / ") if (root / "mappings" / f"{a}.yaml").is_file()
    ]
    assert "DescribeInstanceStatus" in actions
    for action in actions:
        data = yaml.safe_load((root / "mappings" / f"{action}.yaml").read_text())
        assert not {"handler", "enrich", "after"} & set(data), action


def test_text_around_an_expression_is_fine_where_no_template_is_taken(tmp_path: Path) -> None:
    """The lint looks at calls that take a template only: a name may hold brackets."""
    target = tmp_path / "m"
    shutil.copytree(data_dir("mappings") / "views", target / "views")
    (target / "X.yaml").write_text(
        "action: X\nsource: {static: []}\n"
        "each: {call: one.vm.rename, args: ['{{ id }}', 'web[{{ id }}]']}\noutput: {_note: x}\n"
    )
    assert "X" in load_mappings(target)


def test_refuse_comes_before_any_call(sim, tmp_path: Path) -> None:
    """A mapping's refuse: checks the request alone: a refused request sends oned nothing
    (here oned is not even reachable: the refusal, not Unavailable)."""
    from econe.one.client import OneClient
    from econe.one.session import ServerCipherSessions

    target = tmp_path / "m"
    shutil.copytree(data_dir("mappings"), target)
    (target / "X.yaml").write_text(
        "action: X\nsource: {call: one.vmpool.info, args: [-2, -1, -1, -1], items: /VM_POOL/VM}\n"
        "refuse: [{if: body.Bad, code: InvalidParameterCombination, message: not so}]\n"
        "output: {Return: true}\n"
    )
    nowhere = OneClient("http://127.0.0.1:9/RPC2", timeout=1)
    engine = Engine(sim.config(), nowhere, ServerCipherSessions(sim.ec2_auth), target)
    try:
        with pytest.raises(Ec2Error) as err:
            run(engine, "X", {"Bad": True}, user="demo")
        assert (err.value.code, err.value.message) == ("InvalidParameterCombination", "not so")
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("name", "old", "new", "message"),
    [
        # the item is not in the output's scope: every request failed after the write
        (
            "DeregisterImage.yaml",
            "  Return: true",
            '  Return: "{{ item.Nope.x }}"',
            "DeregisterImage.yaml: output.Return: bad expression: item is not defined here",
        ),
        # a field neither the view nor the enrich hooks (which declare theirs) give
        (
            "DescribeInstanceAttribute.yaml",
            "{'Value': items[0].InstanceType}",
            "{'Value': items[0].InstanceTypo.Value}",
            "'InstanceTypo' is not a field of the items (view instance_attribute and its hooks",
        ),
        (
            "DeleteVolume.yaml",
            "call: one.image.delete",
            "call: one.image.delet",
            "DeleteVolume.yaml: each.call: oned has no method 'one.image.delet'",
        ),
    ],
)
def test_start_up_refuses_what_would_fail_at_every_request(
    tmp_path: Path, name: str, old: str, new: str, message: str
) -> None:
    """What `econe-server run` checks before starting: these started fine, then answered
    every request with an error (DeregisterImage's after the image was deregistered)."""
    from econe.app import check_mappings

    target = tmp_path / "mappings"
    shutil.copytree(data_dir("mappings"), target)
    _replace(name, old, new)(target)
    with pytest.raises(MappingError) as err:
        check_mappings(target)
    assert message in str(err.value)


def test_a_hook_that_does_not_say_what_it_adds_turns_the_field_check_off(tmp_path: Path) -> None:
    """Fields are checked only where every key is known: a hook without `adds` may add any."""
    target = tmp_path / "m"
    shutil.copytree(data_dir("mappings") / "views", target / "views")
    text = (
        "action: X\nview: image\nsource: {static: []}\n{hook}"
        "output: {Return: '{{ items[0].Extra }}'}\n"
    )
    (target / "X.yaml").write_text(text.replace("{hook}", "enrich: handlers.tags:own_tags_only\n"))
    with pytest.raises(MappingError, match="'Extra' is not a field of the items"):
        load_mappings(target)
    (target / "X.yaml").write_text(
        text.replace("{hook}", "enrich: tests.engine.test_mappings:hook\n")
    )
    assert "X" in load_mappings(target)


def hook(rt, items) -> None:
    """An enrich hook that does not declare the keys it sets."""
    for item in items:
        item["Extra"] = 1


def test_the_scope_names_are_the_engines() -> None:
    """The loader checks expressions against SCOPE_NAMES; the engine's scope must hold them."""
    from econe.engine import Runtime
    from econe.mapping.loader import SCOPE_NAMES
    from tests.engine.conftest import context

    engine = Engine(Config(), GoldenOne(), FakeSessions())
    try:
        rt = Runtime(engine, engine.mappings["DescribeImages"], {}, context("alice", "X"))
        assert set(rt.scope()) == SCOPE_NAMES
    finally:
        engine.close()


def test_onesim_implements_oned_methods_only() -> None:
    """onesim's methods are oned's (econe/one/methods.py, from oned's registry), so a mapping
    the simulator runs also runs against oned."""
    import onesim.methods  # noqa: F401  (registers them)
    from econe.one.methods import ONED_METHODS
    from onesim.core import METHODS

    oned_like = {name for name in METHODS if name.startswith("one.")}  # not onesim.fault.*
    assert oned_like and oned_like - ONED_METHODS == set()


def test_an_answer_failing_after_the_change_says_the_change_was_made(
    sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An output that fails at run time (what the load-time checks cannot see) after `each`
    changed something: not InternalError (500), which SDKs retry, sending the done write
    again, but a 4xx saying it was done; the log names the mapping. A read-only action
    failing so stays an InternalError."""
    from tests.engine.conftest import AMI

    target = tmp_path / "mappings"
    shutil.copytree(data_dir("mappings"), target)
    broken = 'output:\n  Return: "{{ (items | length) // 0 }}"\n'  # ZeroDivisionError
    (target / "SetImageDescription.yaml").write_text(
        SET_DESCRIPTION.replace("output:\n  Return: true\n", broken)
    )
    (target / "CountImages.yaml").write_text(
        "action: CountImages\nsource: {call: one.imagepool.info, args: [-2, -1, -1], "
        "items: /IMAGE_POOL/IMAGE}\nview: image\n" + broken
    )
    engine = sim.engine(target)
    try:
        run(engine, "RegisterImage", {"ImageLocation": AMI}, user="demo")
        body = {"ImageId": [AMI], "Description": "changed"}
        with pytest.raises(Ec2Error) as err:
            run(engine, "SetImageDescription", body, user="demo")
        assert (err.value.code, err.value.status) == ("ChangeMadeAnswerFailed", 400)
        assert "SetImageDescription was carried out" in err.value.message
        assert "SetImageDescription.yaml" in caplog.text
        image = run(engine, "DescribeImages", {"ImageId": [AMI]}, user="demo")["Images"][0]
        assert image["Description"] == "changed"
        with pytest.raises(Ec2Error) as err:
            run(engine, "CountImages", user="demo")
        assert (err.value.code, err.value.status) == ("InternalError", 500)
    finally:
        engine.close()
