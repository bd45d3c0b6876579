"""pyone as a second, independent client."""

from __future__ import annotations

import pyone
import pytest


@pytest.fixture
def api(sim):
    return pyone.OneServer(sim.url, session="demo:demo")


@pytest.fixture
def admin(sim):
    return pyone.OneServer(sim.url, session=sim.one_auth)


def test_pyone_reads_everything(api, admin) -> None:
    vid = api.template.instantiate(0, "py", False, 'DISK=[IMAGE_ID="0"]', False)
    vm = api.vm.info(vid)
    assert vm.ID == vid and vm.NAME == "py" and vm.STATE == 3 and vm.LCM_STATE == 3
    assert vm.TEMPLATE["NIC"]["IP"] == "10.0.0.2"
    assert vm.USER_TEMPLATE["EC2_INSTANCE_TYPE"] == "m1.small"
    assert vm.HISTORY_RECORDS.HISTORY[0].HOSTNAME == "host01"
    pool = api.vmpool.info(-2, -1, -1, -1)
    assert [v.ID for v in pool.VM] == [vid]
    ext = api.vmpool.infoextended(-2, -1, -1, -1)
    assert ext.VM[0].USER_TEMPLATE["EC2_INSTANCE_TYPE"] == "m1.small"
    img = api.image.info(0)
    assert img.NAME == "ttylinux" and img.STATE == 2 and img.RUNNING_VMS == 1
    assert [i.ID for i in api.imagepool.info(-2, -1, -1).IMAGE] == [0]
    vn = api.vn.info(0)
    assert vn.NAME == "private" and vn.AR_POOL.AR[0].LEASES.LEASE[0].IP == "10.0.0.2"
    assert [v.ID for v in admin.vnpool.info(-2, -1, -1).VNET] == [1, 0]
    assert api.user.info(-1).NAME == "demo"
    assert [u.ID for u in admin.userpool.info().USER] == [2, 1, 0]
    assert api.template.info(0).NAME == "m1.small"
    assert api.templatepool.info(-2, -1, -1).VMTEMPLATE[0].ID == 0
    assert api.datastore.info(1).NAME == "default"
    assert api.group.info(-1).NAME == "users"
    assert admin.system.version() == "7.4.0"
    api.vm.update(vid, {"TEMPLATE": {"EC2_TAGS": "k=v"}}, 1)  # pyone sends XML with CDATA
    assert api.vm.info(vid).USER_TEMPLATE["EC2_TAGS"] == "k=v"
    assert api.vm.action("terminate", vid) == vid


def test_pyone_exceptions(api, sim) -> None:
    with pytest.raises(pyone.OneNoExistsException):
        api.vm.info(999)
    with pytest.raises(pyone.OneAuthorizationException):
        api.vn.info(1)
    with pytest.raises(pyone.OneAuthenticationException):
        pyone.OneServer(sim.url, session="demo:wrong").user.info(-1)
    with pytest.raises(pyone.OneActionException):
        api.vm.action("explode", 0)
    with pytest.raises(pyone.OneApiException):
        api.vmpool.info(-9, -1, -1, -1)
    with pytest.raises(pyone.OneInternalException):
        pyone.OneServer(sim.url, session=sim.one_auth).vn.hold(1, 'FOO="bar"')


def test_pyone_hosts_groups_datastores(admin) -> None:
    h = admin.host.info(0)
    assert (h.NAME, h.STATE, h.IM_MAD, h.HOST_SHARE.TOTAL_CPU) == ("host01", 2, "dummy", 800)
    assert [x.ID for x in admin.hostpool.info().HOST] == [0]
    assert [g.ID for g in admin.grouppool.info().GROUP] == [1, 0]
    assert [d.ID for d in admin.datastorepool.info().DATASTORE] == [2, 1, 0]
    assert admin.datastore.info(0).TYPE == 1
