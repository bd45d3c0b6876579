"""EC2 filter wildcards: same answers as the obvious regex, without its exponential cases."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from econe.errors import Ec2Error
from econe.mapping.filters import paginate, wildcard

ALPHABET = st.text(alphabet="ab*?\\", max_size=8)


def regex_answer(pattern: str, text: str) -> bool:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
        i += 1
    return re.fullmatch("".join(out), text, re.S) is not None


@given(ALPHABET, ALPHABET)
def test_same_as_the_regex(pattern, text):
    assert wildcard(pattern).fullmatch(text) == regex_answer(pattern, text)


def test_examples():
    assert wildcard("i-0000*").fullmatch("i-00000012")
    assert wildcard("web-??").fullmatch("web-01") and not wildcard("web-??").fullmatch("web-1")
    assert wildcard("a\\*b").fullmatch("a*b") and not wildcard("a\\*b").fullmatch("axb")


def test_a_backtracking_bomb_answers_at_once():
    # With the regex this value took seconds at 8 repetitions and never finished at 10; the
    # suite's timeout would catch a regression.
    assert not wildcard("*a" * 40 + "b").fullmatch("a" * 4000)


def test_max_results_above_a_page_gives_a_full_page():
    items = [{"_id": n} for n in range(12)]
    page, token = paginate(items, 1000, None, "_id", 5, 5)
    assert [i["_id"] for i in page] == [0, 1, 2, 3, 4] and token
    with pytest.raises(Ec2Error, match="at least 5"):
        paginate(items, 4, None, "_id", 5, 500)


def test_a_filter_without_values_matches_nothing():
    """Terraform asks for the tags of no volumes with `resource-id` and no value: EC2 answers
    nothing, not an error. A documented name without a mapping matches nothing too; an
    unknown one is an error."""
    from econe.mapping.filters import compile_filters

    items = [{"InstanceId": "i-1"}, {"InstanceId": "i-2"}]
    spec = {"instance-id": "InstanceId"}
    for requested in (
        [{"Name": "instance-id", "Value": []}],
        [{"Name": "instance-id"}],
        [{"Name": "vpc-id", "Value": ["*"]}],
    ):
        (keep,) = compile_filters(requested, spec, frozenset({"vpc-id"}))
        assert [i for i in items if keep(i)] == [], requested
    (keep,) = compile_filters([{"Name": "instance-id", "Value": ["i-2"]}], spec)
    assert [i["InstanceId"] for i in items if keep(i)] == ["i-2"]
    with pytest.raises(Ec2Error, match="colour"):
        compile_filters([{"Name": "colour", "Value": ["x"]}], spec, frozenset({"vpc-id"}))


def test_short_ids_match_as_by_id_takes_them():
    """`i-2` names i-00000002 in InstanceId.N: in an id filter too; other text is literal."""
    from econe.mapping.filters import compile_filters

    items = [
        {"InstanceId": "i-00000002", "Tag": "web-1"},
        {"InstanceId": "i-00000012", "Tag": "i-00000007"},
    ]
    spec = {"instance-id": "InstanceId", "tag-value": "Tag"}
    ids = frozenset({"i", "ami"})

    def kept(name: str, *values: str) -> list[str]:
        (keep,) = compile_filters([{"Name": name, "Value": list(values)}], spec, ids=ids)
        return [i["InstanceId"] for i in items if keep(i)]

    assert kept("instance-id", "i-2") == ["i-00000002"]
    assert kept("instance-id", "i-000000012", "i-00000002") == ["i-00000002", "i-00000012"]
    assert kept("instance-id", "i-0000001*") == ["i-00000012"]  # a wildcard: as it is
    assert kept("instance-id", "i-1*") == []
    assert kept("tag-value", "web-1") == ["i-00000002"]
    assert kept("tag-value", "web-00000001") == []  # not an id kind: no other form
    # an id in a value that is not an id filter's is just text (a tag naming a peer)
    assert kept("tag-value", "i-7") == [] and kept("tag-value", "i-00000007") == ["i-00000012"]


def test_short_id_filters_on_sim(sim, engine):
    from tests.engine.conftest import AMI, run
    from tests.engine.test_sim import ids, launch, vm_number

    (iid,) = ids(launch(engine))
    try:
        short = f"i-{vm_number(iid)}"
        found = run(
            engine,
            "DescribeInstances",
            {"Filter": [{"Name": "instance-id", "Value": [short]}]},
            user="demo",
        )
        assert ids(found) == [iid]
        image = {"Filter": [{"Name": "image-id", "Value": ["ami-0"]}]}
        assert [
            i["ImageId"] for i in run(engine, "DescribeImages", image, user="demo")["Images"]
        ] == [AMI]
        assert ids(run(engine, "DescribeInstances", image, user="demo"))  # launched from it
        group = {"Filter": [{"Name": "group-id", "Value": ["sg-0"]}]}
        groups = run(engine, "DescribeSecurityGroups", group, user="demo")["SecurityGroups"]
        assert [g["GroupId"] for g in groups] == ["sg-00000000"]
    finally:
        run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
