"""The EC2 Query wire codec: parsing, unflatten/coerce, flatten, round trips."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from econe.errors import Ec2Error
from econe.query import coerce, flatten, parse_params, unflatten

FORM = "application/x-www-form-urlencoded; charset=utf-8"


# ------------------------------------------------------------------ parse_params


@pytest.mark.parametrize("raw", ["a%07b", "%00", "x%1Bz", "%EF%BF%BE"])
def test_a_character_xml_cannot_carry_is_refused_naming_the_parameter(raw: str) -> None:
    """It could reach neither oned (XML-RPC) nor the answer; tab, LF and CR are XML."""
    with pytest.raises(Ec2Error) as err:
        parse_params("POST", "", f"Action=CreateTags&Tag.1.Value={raw}".encode(), FORM)
    assert err.value.code == "InvalidParameterValue"
    assert "parameter Tag.1.Value is invalid" in err.value.message
    assert parse_params("POST", "", b"A=%09%0A%0D", FORM) == {"A": "\t\n\r"}


def test_query_and_body_merge():
    params = parse_params("POST", "Action=A&X=q", b"Z=b&Y=%C3%A9+z", FORM)
    assert params == {"Action": "A", "X": "q", "Z": "b", "Y": "é z"}


@pytest.mark.parametrize(
    "query,body",
    [
        ("A.1=1&A.1=2", b""),
        ("A.1=1&A.1=1", b""),  # even with the same value
        ("", b"A.1=1&A.1=2"),
        ("A.1=1", b"A.1=2"),  # once in the query string, once in the body
        ("A.1=1&A%2E1=2", b""),  # the same name once URL-decoded
    ],
)
def test_a_name_given_twice_is_recorded_for_the_front_to_refuse(query, body):
    """The last value is what authentication sees; the front refuses the request once it is
    authenticated (before, the last value won: a TerminateInstances acted on fewer ids)."""
    params = parse_params("POST", query, body, FORM)
    assert params.repeated == "A.1" and params["A.1"] in ("1", "2")
    assert parse_params("POST", "A.1=1", b"A.2=2", FORM).repeated is None


def test_plus_is_space_and_percent_20_too():
    assert parse_params("GET", "A=a+b%20c&B=%2B", b"", None) == {"A": "a b c", "B": "+"}


def test_empty_values_kept():
    assert parse_params("GET", "A=&B", b"", None) == {"A": "", "B": ""}


def test_post_without_content_type_is_a_form():
    assert parse_params("POST", "", b"A=1", None) == {"A": "1"}


def test_body_with_other_content_type_ignored():
    assert parse_params("POST", "A=1", b'{"x": 1}', "application/json") == {"A": "1"}


def test_get_body_ignored_unless_form():
    assert parse_params("GET", "A=1", b"B=2", None) == {"A": "1"}
    assert parse_params("GET", "A=1", b"B=2", FORM) == {"A": "1", "B": "2"}


@pytest.mark.parametrize(
    "query,body",
    [
        ("A=%ff", b""),  # percent-encoded byte that is not UTF-8
        ("", b"A=\xff\xfe"),  # raw body not UTF-8
        ("A=%zz", b""),  # broken escape
        ("A=%4", b""),
        ("", b"A=100%"),
    ],
)
def test_bad_encoding_is_invalid_parameter_value(query, body):
    with pytest.raises(Ec2Error) as exc:
        parse_params("POST", query, body, FORM)
    assert exc.value.code == "InvalidParameterValue"
    assert exc.value.status == 400


def test_bytes_query_string():
    assert parse_params("GET", b"A=%C3%A9", b"", None) == {"A": "é"}


def test_multipart_refused_clearly():
    with pytest.raises(Ec2Error) as exc:
        parse_params("POST", "", b"--x", "multipart/form-data; boundary=x")
    assert "multipart" in exc.value.message


# ------------------------------------------------------------------ unflatten


def test_unflatten_lists_and_structs():
    params = {
        "Action": "DescribeInstances",
        "Version": "2016-11-15",
        "InstanceId.1": "i-1",
        "InstanceId.3": "i-3",
        "InstanceId.2": "i-2",
        "Filter.1.Name": "instance-state-name",
        "Filter.1.Value.2": "pending",
        "Filter.1.Value.1": "running",
        "Filter.2.Name": "tag:x",
        "BlockDeviceMapping.1.Ebs.VolumeSize": "8",
        "DryRun": "true",
    }
    assert unflatten(params) == {
        "InstanceId": ["i-1", "i-2", "i-3"],
        "Filter": [
            {"Name": "instance-state-name", "Value": ["running", "pending"]},
            {"Name": "tag:x"},
        ],
        "BlockDeviceMapping": [{"Ebs": {"VolumeSize": "8"}}],
        "DryRun": "true",
    }


def test_unflatten_gaps_and_index_order():
    assert unflatten({"X.10": "c", "X.2": "b", "X.1": "a"}) == {"X": ["a", "b", "c"]}


def test_unflatten_records_the_wire_index_of_each_item_where_it_is_not_its_position():
    indexes: dict = {}
    params = {"F.1.V.1": "a", "F.1.V.3": "b", "F.4.V.1": "c", "I.0": "x", "I.1": "y", "J.1": "z"}
    assert unflatten(params, indexes) == {
        "F": [{"V": ["a", "b"]}, {"V": ["c"]}],
        "I": ["x", "y"],
        "J": ["z"],
    }
    assert indexes == {("F",): [1, 4], ("F", 0, "V"): [1, 3], ("I",): [0, 1]}


def test_index_0_is_taken_as_libcloud_sends_it():
    """libcloud's ex_create_tags sends ResourceId.0 and Tag.0.Key."""
    assert unflatten({"ResourceId.0": "i-1", "Tag.0.Key": "a", "Tag.1.Key": "b"}) == {
        "ResourceId": ["i-1"],
        "Tag": [{"Key": "a"}, {"Key": "b"}],
    }


@pytest.mark.parametrize(
    "name,why",
    [
        ("InstanceId.01", "leading zero"),  # the same item as InstanceId.1
        ("Filter.1.Value.00", "leading zero"),
        ("InstanceId.\u0661", "ASCII digits"),  # Arabic-Indic one
        ("A.\u00b2", "ASCII digits"),  # superscript two
        ("\u00b2", "ASCII digits"),
    ],
)
def test_an_index_written_oddly_is_refused_naming_the_parameter(name, why):
    with pytest.raises(Ec2Error) as err:
        unflatten({name: "x"})
    assert err.value.code == "InvalidParameterValue"
    assert f"parameter name {name} has a list index that" in err.value.message
    assert why in err.value.message


def test_unflatten_drops_meta_params():
    params = {
        "AWSAccessKeyId": "a",
        "Signature": "s",
        "SignatureMethod": "HmacSHA256",
        "SignatureVersion": "2",
        "Timestamp": "t",
        "Expires": "e",
        "X-Amz-Date": "d",
        "X-Amz-Signature": "x",
        "x-amz-credential": "c",
        "Keep": "1",
    }
    assert unflatten(params) == {"Keep": "1"}


@pytest.mark.parametrize(
    "params,name",
    [
        ({"A": "1", "A.B": "2"}, "A"),
        ({"A.B": "2", "A": "1"}, "A"),
        ({"A.1": "x", "A.B": "y"}, "A"),
        ({"F.1.V.1": "x", "F.1.V": "y"}, "F.1.V"),
        ({"F.1.V": "y", "F.1.V.1": "x"}, "F.1.V"),
    ],
)
def test_unflatten_conflicts_name_the_parameter(params, name):
    with pytest.raises(Ec2Error) as exc:
        unflatten(params)
    assert exc.value.code == "InvalidParameterValue"
    assert name in exc.value.message


@pytest.mark.parametrize("key", ["A..B", "A.", ".A", "1.A", "1"])
def test_unflatten_malformed_names(key):
    with pytest.raises(Ec2Error) as exc:
        unflatten({key: "x"})
    assert exc.value.code == "InvalidParameterValue"


# ------------------------------------------------------------------ coerce

SCHEMA = {
    "type": "object",
    "properties": {
        "MinCount": {"type": "integer"},
        "Ratio": {"type": "number"},
        "DryRun": {"type": "boolean"},
        "InstanceId": {"type": "array", "items": {"type": "string"}},
        "Filter": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "Name": {"type": "string"},
                    "Value": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "Block": {
            "type": "array",
            "items": {
                "allOf": [
                    {"type": "object", "properties": {"Size": {"type": "integer"}}},
                    {"properties": {"On": {"type": "boolean"}}},
                ]
            },
        },
        "Tags": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}


def test_coerce_types():
    body = {
        "MinCount": "3",
        "Ratio": "1.5",
        "DryRun": "TRUE",
        "InstanceId": ["1", "2"],
        "Filter": [{"Name": "42", "Value": ["true"]}],
        "Block": [{"Size": "8", "On": "False"}],
        "Tags": {"a": "-1"},
        "Unknown": "7",
    }
    assert coerce(body, SCHEMA) == {
        "MinCount": 3,
        "Ratio": 1.5,
        "DryRun": True,
        "InstanceId": ["1", "2"],
        "Filter": [{"Name": "42", "Value": ["true"]}],
        "Block": [{"Size": 8, "On": False}],
        "Tags": {"a": -1},
        "Unknown": "7",
    }


@pytest.mark.parametrize(
    "field,value", [("MinCount", "abc"), ("MinCount", "1.5"), ("Ratio", "nan"), ("DryRun", "yes")]
)
def test_coerce_leaves_unparsable_strings(field, value):
    assert coerce({field: value}, SCHEMA) == {field: value}


def test_coerce_takes_an_unnumbered_member_of_a_list_of_plain_values():
    """`KeyName=k` as libcloud sends it: the list of that one value; a structure list is
    not guessed at (validation names it)."""
    assert coerce({"InstanceId": "i-1"}, SCHEMA) == {"InstanceId": ["i-1"]}
    assert coerce({"Filter": "x"}, SCHEMA) == {"Filter": "x"}
    assert coerce({"DryRun": "1"}, SCHEMA) == {"DryRun": True}  # libcloud's Force=1
    assert coerce({"DryRun": "0"}, SCHEMA) == {"DryRun": False}
    assert coerce({"DryRun": "yes"}, SCHEMA) == {"DryRun": "yes"}


# ------------------------------------------------------------------ flatten


def test_flatten_like_botocore():
    body = {
        "InstanceId": ["i-1", "i-2"],
        "Filter": [{"Name": "n", "Value": ["a", "b"]}],
        "DryRun": False,
        "MinCount": 1,
        "Empty": [],
        "Nested": {"Deep": {"X": 1.5}},
    }
    assert flatten(body) == {
        "InstanceId.1": "i-1",
        "InstanceId.2": "i-2",
        "Filter.1.Name": "n",
        "Filter.1.Value.1": "a",
        "Filter.1.Value.2": "b",
        "DryRun": "false",
        "MinCount": "1",
        "Nested.Deep.X": "1.5",
    }


def test_flatten_matches_botocore_serializer():
    """Our flatten and botocore's own EC2 serializer agree on a real operation."""
    import botocore.session
    from botocore.serialize import EC2Serializer

    model = botocore.session.get_session().get_service_model("ec2")
    op = model.operation_model("DescribeInstances")
    args = {
        "InstanceIds": ["i-1", "i-2"],
        "Filters": [{"Name": "instance-state-name", "Values": ["running", "pending"]}],
        "DryRun": True,
        "MaxResults": 5,
    }
    wire = EC2Serializer().serialize_to_request(args, op)["body"]
    wire = {k: v for k, v in wire.items() if k not in ("Action", "Version")}
    ours = flatten(
        {
            "InstanceId": ["i-1", "i-2"],
            "Filter": [{"Name": "instance-state-name", "Value": ["running", "pending"]}],
            "DryRun": True,
            "MaxResults": 5,
        }
    )
    assert {k: str(v) for k, v in wire.items()} == ours


# ------------------------------------------------------------------ property: round trip

_META = {"Action", "Version", "Signature", "Timestamp", "Expires", "SecurityToken"}
_names = st.from_regex(r"[A-Z][A-Za-z]{0,6}", fullmatch=True).filter(
    lambda n: n not in _META and not n.startswith("Signature") and n != "AWSAccessKeyId"
)
# what XML 1.0 can carry (anything else is refused at once, see above)
_NOT_XML = [chr(c) for c in range(32) if c not in (9, 10, 13)] + ["\ufffe", "\uffff"]
_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters=_NOT_XML), max_size=8
)

_leaf_schemas = st.sampled_from(
    [{"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}]
)


def _extend(children):
    return st.one_of(
        st.builds(lambda items: {"type": "array", "items": items}, children),
        st.dictionaries(_names, children, min_size=1, max_size=4).map(
            lambda props: {"type": "object", "properties": props}
        ),
    )


_schemas = st.recursive(_leaf_schemas, _extend, max_leaves=8)


def _values(schema):
    kind = schema["type"]
    if kind == "string":
        return _text
    if kind == "integer":
        return st.integers(-(2**40), 2**40)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(_values(schema["items"]), max_size=3)
    props = schema["properties"]
    return st.fixed_dictionaries({}, optional={k: _values(v) for k, v in props.items()})


def _drop_empty(value):
    """What survives the wire: botocore sends nothing for empty lists and structures."""
    if isinstance(value, dict):
        out = {k: _drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ({}, [])}
    if isinstance(value, list):
        out = [_drop_empty(v) for v in value]
        return [v for v in out if v not in ({}, [])]
    return value


@st.composite
def _bodies(draw):
    props = draw(st.dictionaries(_names, _schemas, min_size=1, max_size=4))
    schema = {"type": "object", "properties": props}
    body = draw(_values(schema))
    return schema, body


@settings(max_examples=100, deadline=None)
@given(_bodies())
def test_round_trip_coerce_unflatten_flatten(case):
    schema, body = case
    assert coerce(unflatten(flatten(body)), schema) == _drop_empty(body)


@settings(max_examples=60, deadline=None)
@given(_bodies())
def test_round_trip_through_the_wire(case):
    schema, body = case
    wire = urlencode(flatten(body)).encode()
    params = parse_params("POST", "", wire, FORM)
    assert coerce(unflatten(params), schema) == _drop_empty(body)


# ------------------------------------------------------------------ against the real spec

REAL_CASES = {
    "RunInstances": {
        "ImageId": "ami-00000001",
        "MinCount": 1,
        "MaxCount": 2,
        "InstanceType": "m1.small",
        "UserData": "aGVsbG8=",
        "ClientToken": "t-1",
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/sdb", "Ebs": {"VolumeSize": 8, "DeleteOnTermination": True}}
        ],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "a", "Value": "b c"}]}],
        "DryRun": False,
    },
    "DescribeInstances": {
        "InstanceIds": ["i-00000001", "i-2"],
        "Filters": [{"Name": "instance-state-name", "Values": ["running", "pending"]}],
        "MaxResults": 5,
    },
    "CreateTags": {"Resources": ["i-00000001"], "Tags": [{"Key": "k", "Value": ""}]},
}


@pytest.mark.parametrize("action", sorted(REAL_CASES))
def test_botocore_wire_gives_valid_bodies_for_the_spec(action):
    """What botocore sends, decoded by our codec, passes the action's own schema, typed."""
    import botocore.session
    from botocore.serialize import EC2Serializer

    from econe.spec import load_spec

    act = load_spec().action(action)
    if act is None:
        pytest.fail(f"{action} is not in spec/ec2-query.yaml")
    model = botocore.session.get_session().get_service_model("ec2")
    wire = EC2Serializer().serialize_to_request(REAL_CASES[action], model.operation_model(action))
    form = urlencode(wire["body"]).encode()
    body = coerce(unflatten(parse_params("POST", "", form, FORM)), act.request_schema)
    assert [e.message for e in act.validator.iter_errors(body)] == []
    if action == "RunInstances":
        assert body["MinCount"] == 1 and body["DryRun"] is False
        assert body["BlockDeviceMapping"][0]["Ebs"]["VolumeSize"] == 8


_key_parts = st.one_of(st.sampled_from(["A", "B", "1", "2", "10", "", "Value"]), _text)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.lists(_key_parts, min_size=1, max_size=4).map(".".join), _text, max_size=6),
    st.binary(max_size=40),
    st.text(max_size=30),
)
def test_garbage_gives_ec2_errors_only(params, body, query):
    for call in (
        lambda: unflatten(params),
        lambda: parse_params("POST", query, body, FORM),
        lambda: parse_params("GET", query.encode("utf-8", "surrogatepass"), body, None),
    ):
        try:
            call()
        except Ec2Error as exc:
            assert exc.code == "InvalidParameterValue"


def test_a_huge_integer_stays_a_string_for_validation_to_name():
    schema = {"type": "object", "properties": {"MaxResults": {"type": "integer"}}}
    assert coerce({"MaxResults": "1" * 5000}, schema) == {"MaxResults": "1" * 5000}
    assert coerce({"MaxResults": "25"}, schema) == {"MaxResults": 25}


@pytest.mark.parametrize(
    "name",
    [
        "Filter." + "9" * 5000 + ".Name",  # int() refuses more than 4300 digits
        "Filter.1234567890.Name",  # an index no EC2 list reaches
        "Filter" + ".a" * 3000,  # deeper than any EC2 structure (was a RecursionError)
        "A.B.C.D.E.F.G.H.I.J.K",
    ],
)
def test_absurd_parameter_names_are_refused_by_name(name):
    with pytest.raises(Ec2Error) as err:
        unflatten({name: "x"})
    assert err.value.code == "InvalidParameterValue" and name[:20] in err.value.message
    assert len(err.value.message) < 200


def test_the_deepest_ec2_names_still_decode():
    deep = "TagSpecification.1.Tag.2.Key"
    assert unflatten({deep: "k"}) == {"TagSpecification": [{"Tag": [{"Key": "k"}]}]}
    assert unflatten({"InstanceId.999999999": "i-1"}) == {"InstanceId": ["i-1"]}


def test_too_many_parameters_are_refused_before_decoding():
    body = "&".join(f"Filter.{n}.Name=x" for n in range(1, 2002)).encode()
    for call in (
        lambda: parse_params("POST", b"", body, FORM),
        lambda: parse_params("GET", body, b"", None),
        # each part under the limit, both together over it
        lambda: parse_params("POST", body[: len(body) // 2], body[len(body) // 2 :], FORM),
    ):
        with pytest.raises(Ec2Error) as err:
            call()
        assert err.value.code == "InvalidParameterValue" and "2000" in err.value.message
    fine = "&".join(f"InstanceId.{n}=i-{n:08d}" for n in range(1, 1001)).encode()
    assert len(parse_params("POST", b"", fine, FORM)) == 1000
