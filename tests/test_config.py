"""econe.conf as operators write it: the seed's keys and forms, and clear refusals."""

from __future__ import annotations

import pytest

from econe.config import Config, ConfigError, load_config, script_is_set


def load(tmp_path, text: str):
    path = tmp_path / "econe.conf"
    path.write_text(text)
    return load_config(path)


def test_a_key_left_without_a_value_keeps_its_default(tmp_path):
    """Uncommenting `#:datastore_id:` alone (as the seed's file shows it) is not an error."""
    cfg = load(tmp_path, ":debug_level:\n:datastore_id:\n:cluster_id:\n:port: 4568\n")
    assert (cfg.debug_level, cfg.datastore_id, cfg.cluster_id, cfg.port) == (3, 1, None, 4568)


def test_the_guides_elastic_ip_key_name_is_read(tmp_path):
    assert load(tmp_path, ":elastic_ips_vnet: 8\n").elasticips_vnet_id == 8
    assert load(tmp_path, ":elasticips_vnet_id: 9\n").elasticips_vnet_id == 9


@pytest.mark.parametrize(
    "text, said",
    [
        (":instance_types: [m1.small]\n", ":instance_types: must be a mapping"),
        (
            ":instance_types:\n  :m1.x:\n    :template: m1.small.j2\n    :network_id: abc\n",
            ":instance_types: 'm1.x': :network_id: must be an OpenNebula network id",
        ),
        (
            ":instance_types:\n  :m1.x:\n    :template: [a]\n",
            ":instance_types: 'm1.x': :template: must be a file name",
        ),
        (
            ":instance_types:\n  :m1.x:\n    :template: m1.small.j2\n    :network_idd: 7\n",
            ":instance_types: 'm1.x': unknown key(s) :network_idd:; known: :network_id:, :template:",
        ),
        (":port: 99999\n", ":port: must be 1 to 65535"),
        (":port: 0\n", ":port: must be 1 to 65535"),
        (":trusted_proxies: [nginx.example.org]\n", "'nginx.example.org' is not an IP address"),
        (":host: [a, b]\n", ":host: must be a single value"),
        (":debug_level: 7\n", ":debug_level: must be 0"),
        (":elastic_ips_per_user: -1\n", ":elastic_ips_per_user: must be 0 or more"),
        (":source: x\n", "unknown configuration key(s): :source:"),
        (":datastore_id: one\n", ":datastore_id: must be a whole number"),
        # a value of another type is refused, never read as something else
        (":port: true\n", ":port: must be a whole number, not True"),
        (":port: 5568.7\n", ":port: must be a whole number, not 5568.7"),
        (":debug_level: 2.9\n", ":debug_level: must be a whole number"),
        (":describe_with_terminated_instances: maybe\n", "must be true or false, not 'maybe'"),
        (":signature_window: -1\n", ":signature_window: must be above 0"),
        (":one_timeout: 0\n", ":one_timeout: must be a number of seconds above 0"),
        (":max_body_size: -1\n", ":max_body_size: must be above 0"),
        (":upload_max_per_user: 0\n", ":upload_max_per_user: must be 1 or more uploads"),
        (":upload_max_concurrent: -3\n", ":upload_max_concurrent: must be 1 or more uploads"),
        (":upload_min_free: -1\n", ":upload_min_free: must be 0 or more"),
        (":upload_min_rate: fast\n", ":upload_min_rate: must be a whole number"),
        (":upload_min_rate: -5\n", ":upload_min_rate: must be 0 or more"),
        (":script_timeout: -1\n", ":script_timeout: must be a number of seconds above 0"),
        (":terminated_instances_expiration_time: -5\n", "must be 0 or more seconds"),
        (":one_xmlrpc: not-a-url\n", ":one_xmlrpc: must be oned's http(s)://host:port/RPC2"),
        (":template_location: {tmp}/none\n", ":template_location: {tmp}/none is not a dir"),
        (
            ":elasticips_vnet_id: 1\n:associate_script: /nonexistent/assoc.sh 1\n",
            "/nonexistent/assoc.sh is not an executable",
        ),
        (
            ":elasticips_vnet_id: 1\n:disassociate_script: no-such-program-here\n",
            "no-such-program-here is not an exec",
        ),
        (
            ':elasticips_vnet_id: 1\n:associate_script: "\'unbalanced"\n',
            ':associate_script: "\'unbalanced" is not a command line',
        ),
        (":port: [1\n", "is not valid YAML: expected ',' or ']', but got '<stream end>'"),
        (":no_such_key: 1\n", "unknown configuration key(s): :no_such_key:"),
        (
            ":unix_socket_mode: 660\n",
            ":unix_socket_mode: must be a file mode such as 0660, not 660",
        ),
        (
            ":unix_socket_mode: rw\n",
            ":unix_socket_mode: must be a file mode such as 0660, not 'rw'",
        ),
        (":unix_socket_mode: 0666\n", ":unix_socket_mode: 0666 lets every local user connect"),
        (":ssl_server: true\n", ":ssl_server: must be the public URL clients use"),
        (":ssl_server: ftp://x\n", "such as https://ec2.example.org/, not 'ftp://x'"),
        (":datastore_id: -1\n", ":datastore_id: must be an OpenNebula datastore id, not -1"),
        (":tmpdir: {tmp}/econe.conf\n", ":tmpdir: {tmp}/econe.conf is not a directory"),
        (
            ":unix_socket: {tmp}/e.sock\n:unix_socket_group: 0\n:unix_socket_mode: 0640\n",
            ":unix_socket_mode: 0640 gives :unix_socket_group: no write permission",
        ),
        (":unix_socket: {tmp}/none/econe.sock\n", "the directory of {tmp}/none/econe.sock"),
        (f":unix_socket: /tmp/{'s' * 120}\n", "is longer than 107 bytes"),
        (
            ":unix_socket: /tmp/e.sock\n:unix_socket_group: no-such-group-here\n",
            ":unix_socket_group: there is no group 'no-such-group-here'",
        ),
    ],
)
def test_bad_values_are_refused_with_a_message(tmp_path, text, said):
    """`{tmp}`: a fresh directory, so a path under it surely does not exist."""
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text.replace("{tmp}", str(tmp_path)))
    assert said.replace("{tmp}", str(tmp_path)) in str(err.value)


@pytest.mark.parametrize(
    "value, read",
    [('""', ""), ("false", "false"), ('"false"', "false"), ("/usr/bin/false", "/usr/bin/false")],
)
def test_no_elastic_ip_script_is_a_choice_not_an_error(tmp_path, value, read):
    """The seed's defaults, YAML's unquoted `false` and an empty value mean "no scripts here"
    (association answers UnsupportedOperation): the server starts with them."""
    cfg = load(
        tmp_path,
        f":elasticips_vnet_id: 1\n:associate_script: {value}\n:disassociate_script: {value}\n",
    )
    assert (cfg.associate_script, cfg.disassociate_script) == (read, read)
    assert not script_is_set(cfg.associate_script)


def test_trusted_proxies_as_a_list_or_a_comma_string(tmp_path):
    cfg = load(tmp_path, ":trusted_proxies: 127.0.0.1, 10.0.0.0/8, ::1\n")
    assert cfg.trusted_proxies == ["127.0.0.1", "10.0.0.0/8", "::1"]


def test_a_migrated_5x_file_with_use_file_templates_starts(tmp_path):
    """4.4-5.x's `:use_file_templates:` chose between the two kinds of types; econe offers
    both (README, Instance types): the key is taken and changes nothing."""
    assert load(tmp_path, ":use_file_templates: false\n").instance_types == Config().instance_types


def test_forms_that_have_always_been_taken_still_are(tmp_path):
    """Strict about types, not about spelling: yes/no, quoted numbers, 900.0, a key or a
    :network_id: left without a value, and scripts that are not there while elastic IPs are
    off (the guide's own file names /usr/bin/associate_ip.sh)."""
    cfg = load(
        tmp_path,
        ':describe_with_terminated_instances: no\n:port: "4568"\n'
        ":terminated_instances_expiration_time: 900.0\n"
        ":associate_script: /usr/bin/associate_ip.sh\n"
        ":instance_types:\n  :m1.small:\n    :template: m1.small.j2\n    :network_id:\n",
    )
    assert (cfg.describe_with_terminated_instances, cfg.port) == (False, 4568)
    assert cfg.terminated_instances_expiration_time == 900
    assert load(
        tmp_path, ":describe_with_terminated_instances: yes\n"
    ).describe_with_terminated_instances


def test_unix_socket_mode_is_octal_as_chmod_reads_it(tmp_path):
    """`0660` (YAML reads it as octal) and "0660" or "640" quoted: the modes chmod means."""
    assert load(tmp_path, ":unix_socket_mode: 0660\n").unix_socket_mode == 0o660
    assert load(tmp_path, ':unix_socket_mode: "0600"\n').unix_socket_mode == 0o600
    assert load(tmp_path, ':unix_socket_mode: "640"\n').unix_socket_mode == 0o640
    assert Config().unix_socket_mode == 0o660 and Config().unix_socket is None
